//! `alink-cli` against a real node: every command, readable and `--json` output, exit codes.

mod common;

use std::process::Output;

use common::{Node, Result, cli_bin};
use serde_json::{Value, json};

/// `alink-cli --server <node> <args>` with the test's own HOME (state file).
fn command<S: AsRef<std::ffi::OsStr>>(node: &Node, args: &[S]) -> std::process::Command {
    let mut cmd = std::process::Command::new(cli_bin());
    cmd.arg("--server").arg(&node.base).args(args).env("HOME", node.dir.join("home"));
    cmd
}

fn cli(node: &Node, args: &[&str]) -> Result<Output> {
    Ok(command(node, args).output()?)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs the CLI off the async runtime (for commands that wait on the node).
fn background<S: AsRef<std::ffi::OsStr>>(node: &Node, args: &[S]) -> tokio::task::JoinHandle<std::io::Result<Output>> {
    let mut cmd = command(node, args);
    tokio::task::spawn_blocking(move || cmd.output())
}

async fn run(node: &Node, args: Vec<String>) -> Result<Output> {
    Ok(background(node, &args).await??)
}

#[tokio::test]
async fn call_wait_streams_events_and_exit_codes_follow_the_outcome() -> Result {
    let node = Node::start()?;
    let ok = run(
        &node,
        vec![
            "call".into(),
            "--target-agent-id".into(),
            "echo".into(),
            "--intent".into(),
            "demo.echo".into(),
            "--text".into(),
            "hello there".into(),
            "--wait".into(),
        ],
    )
    .await?;
    let out = stdout(&ok);
    assert!(ok.status.success(), "{out}\n{}", String::from_utf8_lossy(&ok.stderr));
    assert!(out.contains("task.created") && out.contains("task.completed"), "{out}");
    assert!(out.contains("hello there"), "result printed: {out}");

    let failed = run(
        &node,
        vec![
            "call".into(),
            "--target-agent-id".into(),
            "echo".into(),
            "--intent".into(),
            "demo.echo".into(),
            "--payload-json".into(),
            r#"{"mode":"fail","reason":"nope"}"#.into(),
            "--wait".into(),
        ],
    )
    .await?;
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("ended failed"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );

    let raw = run(
        &node,
        vec!["--json".into(), "call".into(), "--intent".into(), "demo.echo".into(), "--text".into(), "j".into()],
    )
    .await?;
    let created: Value = serde_json::from_str(stdout(&raw).trim())?;
    assert_eq!(created["task"]["resolved_agent_id"], "echo", "routed by intent");

    let bad = run(
        &node,
        vec!["call".into(), "--target-agent-id".into(), "ghost".into(), "--intent".into(), "demo.echo".into()],
    )
    .await?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("http 404"));
    Ok(())
}

#[tokio::test]
async fn task_commands() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"mode": "await_input"})).await?;
    node.wait_status(&id, "awaiting_input").await?;
    let got = cli(&node, &["task-get", "--task-id", &id])?;
    assert!(got.status.success() && stdout(&got).contains("awaiting_input"), "{}", stdout(&got));
    let resumed = cli(&node, &["task-resume", "--task-id", &id, "--text", "go"])?;
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    node.wait_status(&id, "completed").await?;
    let events = cli(&node, &["task-events", "--task-id", &id])?;
    let text = stdout(&events);
    assert!(text.contains("task.resume_requested") && text.contains("task.completed"), "{text}");
    let json_events = cli(&node, &["--json", "task-events", "--task-id", &id, "--after", "8"])?;
    let lines: Vec<Value> = stdout(&json_events).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(lines.first().map(|e| e["seq"].clone()), Some(json!(9)));

    let hung = node.create(json!({"mode": "hang"})).await?;
    node.wait_status(&hung, "running").await?;
    let follow = background(&node, &["task-events", "--follow", "--task-id", &hung]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let cancelled = cli(&node, &["task-cancel", "--task-id", &hung, "--reason", "test"])?;
    assert!(cancelled.status.success(), "{}", String::from_utf8_lossy(&cancelled.stderr));
    let followed = follow.await??;
    assert!(stdout(&followed).contains("task.cancelled"), "--follow streams until the end: {}", stdout(&followed));

    let list = cli(&node, &["task-list", "--status", "cancelled"])?;
    assert!(stdout(&list).contains(&hung) && !stdout(&list).contains(&id));
    let bad = cli(&node, &["task-resume", "--task-id", &hung, "--text", "late"])?;
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("409"));
    Ok(())
}

#[tokio::test]
async fn register_agents_and_targets() -> Result {
    let node = Node::start()?;
    let reg = cli(
        &node,
        &[
            "register",
            "--display-name",
            "Helper",
            "--adapter",
            "loopback",
            "--capabilities",
            "help.me, other",
            "--defaults",
            "n=3,name=x",
        ],
    )?;
    assert!(reg.status.success(), "{}", String::from_utf8_lossy(&reg.stderr));
    let state: Value = serde_json::from_str(&std::fs::read_to_string(node.dir.join("home/.aethrolink/agent.json"))?)?;
    let agent_id = state["agent_id"].as_str().ok_or("agent id in state file")?.to_owned();
    let (_, agent) = node.get(&format!("/v1/agents/{agent_id}")).await?;
    assert_eq!(agent["defaults"], json!({"n": 3, "name": "x"}), "--defaults values parsed as JSON when they parse");
    assert_eq!(agent["capabilities"], json!(["help.me", "other"]));
    let agents = cli(&node, &["agents"])?;
    assert!(stdout(&agents).contains(&agent_id));
    let targets = cli(&node, &["targets"])?;
    assert!(stdout(&targets).contains("echo") && stdout(&targets).contains(&agent_id));
    // The registered agent is the default sender of `call`.
    let call = cli(&node, &["--json", "call", "--intent", "help.me", "--text", "x"])?;
    let created: Value = serde_json::from_str(stdout(&call).trim())?;
    assert_eq!(created["task"]["sender"], agent_id.as_str());
    Ok(())
}

#[tokio::test]
async fn unreachable_node_is_a_clear_error() -> Result {
    let out = std::process::Command::new(cli_bin()).args(["--server", "http://127.0.0.1:9", "targets"]).output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach http://127.0.0.1:9"));
    Ok(())
}

#[tokio::test]
async fn agent_target_and_thread_commands() -> Result {
    let node = Node::start()?;
    // ensure-registered registers once, then keeps the stored id.
    let first = cli(
        &node,
        &["ensure-registered", "--display-name", "Me", "--adapter", "loopback", "--capabilities", "me.work"],
    )?;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let state: Value = serde_json::from_str(&std::fs::read_to_string(node.dir.join("home/.aethrolink/agent.json"))?)?;
    let me = state["agent_id"].as_str().ok_or("id")?.to_owned();
    let again = cli(
        &node,
        &["ensure-registered", "--display-name", "Me", "--adapter", "loopback", "--capabilities", "me.work"],
    )?;
    assert!(stdout(&again).contains(&format!("agent {me} is registered")), "{}", stdout(&again));
    let hb = cli(&node, &["heartbeat", "--lease-ttl-seconds", "120"])?;
    assert!(hb.status.success() && stdout(&hb).contains(&me));
    let un = cli(&node, &["unregister"])?;
    assert!(un.status.success() && stdout(&un).contains("offline"));
    assert!(stdout(&cli(&node, &["agents"])?).contains("offline"));
    // Targets.
    let health = cli(&node, &["target-health", "--target-agent-id", "echo"])?;
    assert!(stdout(&health).contains("echo up"), "{}", stdout(&health));
    assert!(cli(&node, &["target-start", "--target-agent-id", "echo"])?.status.success());
    assert!(cli(&node, &["target-stop", "--target-agent-id", "echo"])?.status.success());
    assert!(!cli(&node, &["target-health", "--target-agent-id", "ghost"])?.status.success());
    // Threads.
    let created = cli(&node, &["--json", "thread-create", "--agent-a-id", "echo", "--agent-b-id", "other"])?;
    let v: Value = serde_json::from_str(stdout(&created).trim())?;
    let thread = v["thread"]["thread_id"].as_str().ok_or("thread")?.to_owned();
    let turn = run(
        &node,
        vec![
            "thread-continue".into(),
            "--thread-id".into(),
            thread.clone(),
            "--intent".into(),
            "shared.cap".into(),
            "--text".into(),
            "hello".into(),
            "--wait".into(),
        ],
    )
    .await?;
    assert!(turn.status.success(), "{}{}", stdout(&turn), String::from_utf8_lossy(&turn.stderr));
    assert!(stdout(&turn).contains("task.completed") && stdout(&turn).contains("echo → other"), "{}", stdout(&turn));
    let turns = cli(&node, &["thread-turns", "--thread-id", &thread])?;
    assert!(stdout(&turns).contains("#1") && stdout(&turns).contains("completed"), "{}", stdout(&turns));
    let view = cli(&node, &["thread-get", "--thread-id", &thread])?;
    assert!(stdout(&view).contains("next: other → echo"), "{}", stdout(&view));
    let list = cli(&node, &["threads", "--agent", "echo"])?;
    assert!(stdout(&list).contains(&thread));
    Ok(())
}

#[tokio::test]
async fn heartbeat_every_keeps_the_lease_alive_until_interrupted() -> Result {
    let node = Node::start()?;
    let (_, v) = node
        .post(
            "/v1/agents/register",
            json!({"agent_id": "hb", "display_name": "hb", "transport_kind": "local_managed", "lease_ttl_seconds": 1}),
        )
        .await?;
    assert_eq!(v["agent"]["agent_id"], "hb");
    let mut child = command(&node, &["heartbeat", "--agent-id", "hb", "--lease-ttl-seconds", "1", "--every", "300ms"])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let first = node.get("/v1/agents/hb").await?.1["last_seen_at"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let agent = node.get("/v1/agents/hb").await?.1;
    assert_eq!(agent["status"], "online", "renewed past its 1 s TTL: {agent}");
    assert_ne!(agent["last_seen_at"], first);
    child.kill()?;
    child.wait()?;
    Ok(())
}

#[tokio::test]
async fn call_with_a_retry_policy_and_task_bulk() -> Result {
    let node = Node::start()?;
    let out = run(
        &node,
        [
            "call",
            "--target-agent-id",
            "echo",
            "--intent",
            "demo.echo",
            "--payload-json",
            r#"{"mode":"fail","reason":"boom"}"#,
            "--retry-json",
            r#"{"max_attempts":2,"initial_delay_ms":10}"#,
            "--priority",
            "high",
            "--json",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_str(stdout(&out).trim())?;
    let id = created["task"]["task_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(created["task"]["max_attempts"], 2);
    node.events_until_done(&id).await?;
    let t = node.task(&id).await?;
    assert_eq!(
        (t["status"].as_str(), t["attempt"].as_u64(), t["priority"].as_str()),
        (Some("failed"), Some(2), Some("high"))
    );

    let bad = cli(&node, &["call", "--intent", "demo.echo", "--retry-json", "[1]"])?;
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--retry-json"));

    let dry = cli(&node, &["task-bulk", "retry", "--status", "failed", "--dry-run"])?;
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(stdout(&dry).contains("1 tasks match") && stdout(&dry).contains(&id), "{}", stdout(&dry));
    let retried = cli(&node, &["task-bulk", "retry", "--id", &id])?;
    assert!(stdout(&retried).contains("1 applied"), "{}", stdout(&retried));
    let empty = cli(&node, &["task-bulk", "cancel"])?;
    assert!(!empty.status.success());
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("names no condition"),
        "{}",
        String::from_utf8_lossy(&empty.stderr)
    );
    Ok(())
}
