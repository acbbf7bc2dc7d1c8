//! `alink-cli` as a person meets it, against real nodes: help on every flag, answering a task
//! that awaits input (`--decision`, `--option-id`, the printed resume command), `task-wait`,
//! the `targets` table, `task-get` with its result, a closed stdout (`| head -1`), a refused
//! connection, the sender in use and the state file, `ensure-registered` by display name, and
//! followers that ride out a node restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Node, NodeOpts, REGISTRY, Result, cli_bin};
use serde_json::{Value, json};

/// `alink-cli --server <node> <args>` with the test's own HOME (state file).
fn command<S: AsRef<std::ffi::OsStr>>(node: &Node, args: &[S]) -> std::process::Command {
    let mut cmd = std::process::Command::new(cli_bin());
    cmd.arg("--server").arg(&node.base).args(args).env("HOME", node.dir.join("home")).env_remove("ALINK_SERVER");
    cmd
}

/// Runs the CLI off the async runtime (commands may wait on the node).
async fn run<S: AsRef<std::ffi::OsStr>>(node: &Node, args: &[S]) -> Result<Output> {
    let mut cmd = command(node, args);
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Both streams, for assertion messages.
fn both(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), stdout(o), stderr(o))
}

/// The task id a command announced on its first line (`task <id> accepted …`).
fn announced_task_id(o: &Output) -> Result<String> {
    announced_in(&stdout(o))
}

fn announced_in(out: &str) -> Result<String> {
    let first = out.lines().next().ok_or("no output")?;
    let rest = first.strip_prefix("task ").ok_or_else(|| first.to_owned())?;
    Ok(rest.split(' ').next().unwrap_or("").to_owned())
}

fn fake_acp_agent() -> String {
    format!("{}/tests/agents/fake_acp_agent.py", env!("CARGO_MANIFEST_DIR"))
}

/// The usual registry plus an ACP target on the test-double agent.
fn acp_opts() -> NodeOpts {
    let registry = format!(
        "{REGISTRY}  fake:\n    adapter: acp\n    launch:\n      command: [python3, {}]\n    capabilities: [chat]\n",
        fake_acp_agent()
    );
    NodeOpts { registry: Some(registry), extra_args: Vec::new(), ..NodeOpts::default() }
}

/// The flags of one `--help` text's `Options:` section that have no description. Handles
/// clap's layouts: help on the flag's line, on the next line, or in paragraphs below it; clap's
/// own annotations (`[default: …]`, `[env: …]`, `Possible values:`) do not count as help.
fn flags_without_help(help: &str) -> Vec<String> {
    help_entries(help)
        .into_iter()
        .filter(|(_, text)| {
            let mut words = text.clone();
            for annotation in ["[env:", "[default:", "[possible values:", "[aliases:"] {
                while let Some(at) = words.find(annotation) {
                    let end = words[at..].find(']').map_or(words.len(), |e| at + e + 1);
                    words.replace_range(at..end, "");
                }
            }
            let words = words.split("Possible values:").next().unwrap_or("");
            words.trim().is_empty()
        })
        .map(|(name, _)| name)
        .collect()
}

/// The `Options:` entries of a `--help` text: each flag and the text that follows it.
fn help_entries(help: &str) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut in_options = false;
    for line in help.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_options = line.trim_end() == "Options:";
            continue;
        }
        if !in_options {
            continue;
        }
        let trimmed = line.trim_start();
        let spec = trimmed.strip_prefix("-").filter(|_| trimmed.len() > 1 && trimmed.chars().nth(2) == Some(','));
        let trimmed = spec.map_or(trimmed, |_| trimmed[3..].trim_start());
        if let Some(rest) = trimmed.strip_prefix("--") {
            let name_end = rest.find(' ').unwrap_or(rest.len());
            let (name, mut rest) = (format!("--{}", &rest[..name_end]), &rest[name_end..]);
            if let Some(after_value) = rest.strip_prefix(" <").and_then(|r| r.split_once('>')).map(|(_, r)| r) {
                rest = after_value;
            }
            entries.push((name, rest.trim_start_matches("...").to_owned()));
        } else if let Some((_, text)) = entries.last_mut() {
            text.push(' ');
            text.push_str(trimmed);
        }
    }
    entries
}

#[test]
fn the_help_checker_sees_a_flag_without_help() {
    let help = "Do it\n\nUsage: x\n\nOptions:\n      --described <V>  Has help [default: 1]\n      --bare <BARE>    [default: 300]\n      --next\n          Help below\n      --empty\n          \n  -h, --help  Print help\n";
    assert_eq!(flags_without_help(help), vec!["--bare".to_owned(), "--empty".to_owned()]);
}

#[test]
fn every_command_and_flag_has_help() -> Result {
    let top = std::process::Command::new(cli_bin()).arg("--help").output()?;
    let text = stdout(&top);
    assert!(top.status.success(), "{}", both(&top));
    assert!(text.contains("Exit codes:") && text.contains("3  a waited-for task is awaiting input"), "{text}");
    let commands: Vec<(String, String)> = text
        .lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.trim().split_once(' ').map(|(c, d)| (c.to_owned(), d.trim().to_owned())))
        .filter(|(c, _)| c != "help")
        .collect();
    assert!(commands.len() >= 24, "{commands:?}");
    assert!(commands.iter().any(|(c, _)| c == "task-wait"), "{commands:?}");
    let mut missing = Vec::new();
    for (command, description) in &commands {
        if description.is_empty() {
            missing.push(command.clone());
        }
        let help = std::process::Command::new(cli_bin()).args([command.as_str(), "--help"]).output()?;
        assert!(help.status.success(), "{command} --help: {}", both(&help));
        let text = stdout(&help);
        if command == "call" {
            let flags: Vec<String> = help_entries(&text).into_iter().map(|(f, _)| f).collect();
            for flag in ["--server", "--json", "--intent", "--conversation-id", "--wait", "--reconnect-for", "--help"] {
                assert!(flags.iter().any(|f| f == flag), "{flag} read from call --help: {flags:?}");
            }
        }
        let flags = flags_without_help(&text);
        missing.extend(flags.into_iter().map(|f| format!("{command} {f}")));
    }
    assert!(missing.is_empty(), "commands or flags without help: {missing:?}");
    Ok(())
}

#[tokio::test]
async fn a_task_awaiting_input_prints_the_resume_commands_that_answer_it() -> Result {
    let node = Node::start_with(acp_opts())?;
    // A permission request: --decision and --option-id, each printed as a command to run.
    for (answer, expected) in
        [("--decision allow", "allowed"), ("--decision reject", "rejected"), ("--option-id deny", "rejected")]
    {
        let call =
            run(&node, &["call", "--target-agent-id", "fake", "--intent", "chat", "--text", "!permission", "--wait"])
                .await?;
        assert_eq!(call.status.code(), Some(3), "awaiting input exits 3: {}", both(&call));
        let id = announced_task_id(&call)?;
        let err = stderr(&call);
        assert!(err.contains(&format!("task {id} is awaiting input (Permission requested: Write out.txt)")), "{err}");
        let base = format!("alink-cli --server {} task-resume --task-id {id}", node.base);
        for option in ["--decision allow", "--decision reject", "--option-id allow-once", "--option-id deny"] {
            assert!(err.contains(&format!("\n  {base} {option}\n")), "{option}: {err}");
        }
        // The printed command is exact: run it as printed.
        let printed = err.lines().map(str::trim).find(|l| l.ends_with(answer)).ok_or("printed command")?;
        let script = printed.replacen("alink-cli", "\"$0\"", 1);
        let mut sh = std::process::Command::new("sh");
        sh.args(["-c", &script, cli_bin()]);
        let resumed = tokio::task::spawn_blocking(move || sh.output()).await??;
        assert!(resumed.status.success(), "{printed}: {}", both(&resumed));
        let waited = run(&node, &["task-wait", "--task-id", &id]).await?;
        assert!(waited.status.success(), "{}", both(&waited));
        assert_eq!(node.task(&id).await?["status"], "completed");
        let events = node.events_until_done(&id).await?;
        assert_eq!(events.last().and_then(|e| e["data"]["result"]["text"].as_str()), Some(expected), "{answer}");
    }
    // The flags are checked before anything is sent.
    let both_answers =
        run(&node, &["task-resume", "--task-id", "x", "--decision", "allow", "--option-id", "deny"]).await?;
    assert_eq!(both_answers.status.code(), Some(2), "{}", both(&both_answers));
    let bad_decision = run(&node, &["task-resume", "--task-id", "x", "--decision", "maybe"]).await?;
    assert_eq!(bad_decision.status.code(), Some(2), "{}", both(&bad_decision));

    // Free input (loopback): a --text answer; thread-continue --wait stops the same way.
    let call = run(
        &node,
        &[
            "call",
            "--target-agent-id",
            "echo",
            "--intent",
            "demo.echo",
            "--payload-json",
            r#"{"mode":"await_input","prompt":"approve?"}"#,
            "--wait",
        ],
    )
    .await?;
    assert_eq!(call.status.code(), Some(3), "{}", both(&call));
    let id = announced_task_id(&call)?;
    assert!(stdout(&call).contains("task.awaiting_input"), "the events are streamed: {}", both(&call));
    assert!(
        stderr(&call).ends_with(&format!(
            "alink-cli: task {id} is awaiting input (approve?); resume it with:\n  alink-cli --server {} task-resume --task-id {id} --text '<answer>'\n",
            node.base
        )),
        "{}",
        both(&call)
    );
    let resumed = run(&node, &["task-resume", "--task-id", &id, "--text", "approved"]).await?;
    assert!(resumed.status.success(), "{}", both(&resumed));
    let waited = run(&node, &["task-wait", "--task-id", &id]).await?;
    assert!(waited.status.success(), "{}", both(&waited));
    let result = stdout(&waited).lines().last().unwrap_or("").to_owned();
    assert!(result.starts_with("result: {") && result.contains(r#""text":"approved""#), "{}", both(&waited));

    let created = run(&node, &["--json", "thread-create", "--agent-a-id", "echo", "--agent-b-id", "other"]).await?;
    let thread: Value = serde_json::from_str(stdout(&created).trim())?;
    let thread = thread["thread"]["thread_id"].as_str().ok_or("thread id")?.to_owned();
    let turn = run(
        &node,
        &[
            "--json",
            "thread-continue",
            "--thread-id",
            &thread,
            "--intent",
            "shared.cap",
            "--payload-json",
            r#"{"mode":"await_input"}"#,
            "--wait",
        ],
    )
    .await?;
    assert_eq!(turn.status.code(), Some(3), "{}", both(&turn));
    let turn_task = serde_json::from_str::<Value>(stdout(&turn).lines().next().unwrap_or(""))?["task"]["task_id"]
        .as_str()
        .ok_or("turn task")?
        .to_owned();
    assert!(stderr(&turn).contains(&format!("task-resume --task-id {turn_task} --text '<answer>'")), "{}", both(&turn));
    let lines: Vec<Value> = stdout(&turn).lines().map(serde_json::from_str).collect::<std::result::Result<_, _>>()?;
    assert_eq!(lines.last().map(|e| e["kind"].clone()), Some(json!("task.awaiting_input")), "stdout stays JSON lines");
    Ok(())
}

#[tokio::test]
async fn task_wait_until_a_status_or_the_end() -> Result {
    let node = Node::start()?;
    let waiting = node.create(json!({"mode": "await_input"})).await?;
    node.wait_status(&waiting, "awaiting_input").await?;
    let reached = run(&node, &["task-wait", "--task-id", &waiting, "--until", "awaiting_input"]).await?;
    assert_eq!(reached.status.code(), Some(0), "{}", both(&reached));
    assert!(stdout(&reached).contains("task.awaiting_input"), "prints the event it stopped at: {}", both(&reached));
    let default = run(&node, &["task-wait", "--task-id", &waiting]).await?;
    assert_eq!(default.status.code(), Some(3), "without --until, awaiting input stops the wait: {}", both(&default));
    assert!(stderr(&default).contains(&format!("task-resume --task-id {waiting} --text")), "{}", both(&default));

    // --until completed waits through awaiting input, until someone answers.
    let mut cmd = command(&node, &["task-wait", "--task-id", &waiting, "--until", "completed"]);
    let until_completed = tokio::task::spawn_blocking(move || cmd.output());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!until_completed.is_finished(), "still waiting while the task awaits input");
    node.post(&format!("/v1/tasks/{waiting}/resume"), json!({"payload": {"text": "go"}})).await?;
    let done = until_completed.await??;
    assert_eq!(done.status.code(), Some(0), "{}", both(&done));
    assert!(stdout(&done).contains("task.completed"), "{}", both(&done));

    // A status the task will not reach again: exit 4, saying how it ended.
    let past = run(&node, &["task-wait", "--task-id", &waiting, "--until", "running"]).await?;
    assert_eq!(past.status.code(), Some(4), "{}", both(&past));
    assert!(stderr(&past).contains(&format!("task {waiting} ended completed (not running)")), "{}", both(&past));

    // A live task reaches running, then completes.
    let sleeping = node.create(json!({"mode": "sleep", "ms": 3000})).await?;
    let running = run(&node, &["task-wait", "--task-id", &sleeping, "--until", "running"]).await?;
    assert_eq!(running.status.code(), Some(0), "{}", both(&running));
    assert_eq!(node.task(&sleeping).await?["status"], "running", "it stopped at running, before the end");
    let completed = run(&node, &["--json", "task-wait", "--task-id", &sleeping]).await?;
    assert_eq!(completed.status.code(), Some(0), "{}", both(&completed));
    let last: Value = serde_json::from_str(stdout(&completed).trim())?;
    assert_eq!(last["kind"], "task.completed", "--json prints the event as JSON, and no result line");

    // Without --until, a failure exits 1 with the reason.
    let failing = node.create(json!({"mode": "fail", "reason": "nope"})).await?;
    let failed = run(&node, &["task-wait", "--task-id", &failing]).await?;
    assert_eq!(failed.status.code(), Some(1), "{}", both(&failed));
    assert!(
        stderr(&failed).contains(&format!("task {failing} ended failed: Loopback failed: nope")),
        "{}",
        both(&failed)
    );
    let unknown = run(&node, &["task-wait", "--task-id", "nope", "--until", "done"]).await?;
    assert_eq!(unknown.status.code(), Some(2), "a status is checked: {}", both(&unknown));
    Ok(())
}

#[tokio::test]
async fn targets_is_a_table_with_state_pid_and_tasks_in_flight() -> Result {
    let node = Node::start_with(acp_opts())?;
    let (status, started) = node.post("/v1/targets/fake/start", json!({})).await?;
    assert_eq!(status, 202, "{started}");
    let pid = started["process_id"].as_u64().ok_or("pid")?;
    let hung =
        node.create_with(json!({"target_agent_id": "fake", "intent": "chat", "payload": {"text": "!hang"}})).await?;
    node.wait_status(&hung, "running").await?;

    let table = run(&node, &["targets"]).await?;
    assert!(table.status.success(), "{}", both(&table));
    let text = stdout(&table);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows.first().cloned().unwrap_or_default(),
        ["TARGET", "ADAPTER", "SOURCE", "STATE", "PID", "IN-FLIGHT", "CAPABILITIES"],
        "{text}"
    );
    let row = |id: &str| rows.iter().find(|r| r.first() == Some(&id)).cloned().unwrap_or_default();
    assert_eq!(row("fake"), ["fake", "acp", "file", "up", pid.to_string().as_str(), "1", "chat"], "{text}");
    assert_eq!(row("echo"), ["echo", "loopback", "file", "up", "-", "-", "demo.echo,demo.any,shared.cap"], "{text}");
    // Every cell starts under its column's header.
    let header = text.lines().next().unwrap_or("");
    for column in ["ADAPTER", "SOURCE", "STATE", "PID", "IN-FLIGHT", "CAPABILITIES"] {
        let at = header.find(column).ok_or(column)?;
        for line in text.lines().skip(1) {
            let (before, cell) = (line.as_bytes().get(at - 1), line.as_bytes().get(at));
            assert!(before == Some(&b' ') && cell.is_some_and(|c| *c != b' '), "{column} in {line:?}:\n{text}");
        }
    }

    // --json is the API's body as it is.
    let raw = run(&node, &["--json", "targets"]).await?;
    let listed: Value = serde_json::from_str(stdout(&raw).trim())?;
    let (_, api) = node.get("/v1/targets").await?;
    assert_eq!(listed, api);
    node.post(&format!("/v1/tasks/{hung}/cancel"), json!({})).await?;
    Ok(())
}

#[tokio::test]
async fn task_get_shows_a_completed_tasks_result() -> Result {
    let node = Node::start()?;
    let done = node.create(json!({"text": "hello there"})).await?;
    node.events_until_done(&done).await?;
    let got = run(&node, &["task-get", "--task-id", &done]).await?;
    assert!(got.status.success(), "{}", both(&got));
    let text = stdout(&got);
    assert!(text.contains("\n  status:       completed\n"), "{text}");
    assert!(text.contains("\n  result:       {\"text\":\"hello there\"}\n"), "{text}");
    let artifact = node.task(&done).await?["result_artifact_id"].as_str().ok_or("artifact")?.to_owned();
    assert!(text.contains(&format!("\n  artifact:     /v1/artifacts/{artifact}")), "{text}");
    // --json stays the task record.
    let raw = run(&node, &["--json", "task-get", "--task-id", &done]).await?;
    assert_eq!(serde_json::from_str::<Value>(stdout(&raw).trim())?, node.task(&done).await?);
    // A task without a result shows none.
    let waiting = node.create(json!({"mode": "await_input"})).await?;
    node.wait_status(&waiting, "awaiting_input").await?;
    let pending = run(&node, &["task-get", "--task-id", &waiting]).await?;
    assert!(!stdout(&pending).contains("result:"), "{}", both(&pending));
    Ok(())
}

#[tokio::test]
async fn a_closed_stdout_ends_the_command_quietly() -> Result {
    // Enough targets that the table is far larger than a pipe holds.
    let mut registry = String::from("targets:\n");
    for i in 0..1500 {
        registry.push_str(&format!(
            "  target-{i:04}:\n    adapter: loopback\n    capabilities: [cap.{i:04}.one, cap.{i:04}.two, cap.{i:04}.three]\n"
        ));
    }
    let node = Node::start_with(NodeOpts { registry: Some(registry), extra_args: Vec::new(), ..NodeOpts::default() })?;
    let home = node.dir.join("home");
    for script in [
        // `| head -1`, as a person types it.
        r#"{ "$0" --server "$1" targets; echo "cli-exit=$?" >&2; } | head -1"#,
        // The reader is gone before anything is written.
        r#"{ sleep 0.3; "$0" --server "$1" targets; echo "cli-exit=$?" >&2; } | true"#,
        // Raw output too.
        r#"{ "$0" --server "$1" --json targets; echo "cli-exit=$?" >&2; } | head -c 10"#,
    ] {
        let mut sh = std::process::Command::new("sh");
        sh.args(["-c", script, cli_bin(), &node.base]).env("HOME", &home);
        let o = tokio::task::spawn_blocking(move || sh.output()).await??;
        assert_eq!(stderr(&o), "cli-exit=0\n", "{script}: exit 0, nothing on stderr (no panic): {}", both(&o));
        if script.contains("head -1") {
            assert_eq!(stdout(&o).split_whitespace().next(), Some("TARGET"), "the header: {}", both(&o));
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_refused_connection_asks_whether_the_node_runs() -> Result {
    let url = format!("http://127.0.0.1:{}", common::free_port()?);
    let commands = [
        vec!["targets"],
        vec!["call", "--intent", "x", "--wait"],
        vec!["task-wait", "--task-id", "t"],
        // A follower retries a stream it had, never one it could not open.
        vec!["task-events", "--follow", "--task-id", "t"],
    ];
    for args in commands {
        let o = std::process::Command::new(cli_bin())
            .arg("--server")
            .arg(&url)
            .args(&args)
            .env_remove("ALINK_SERVER")
            .output()?;
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", both(&o));
        assert_eq!(
            stderr(&o),
            format!("alink-cli: cannot reach {url}: connection refused — is alink-node running at {url}?\n"),
            "{args:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_sender_in_use_and_the_state_file_are_told() -> Result {
    let node = Node::start()?;
    let state_file = node.dir.join("home/.aethrolink/agent.json");
    // No state file: sent as "local", nothing said.
    let plain = run(&node, &["call", "--intent", "demo.echo", "--text", "x"]).await?;
    assert!(plain.status.success() && stderr(&plain).is_empty(), "{}", both(&plain));

    let reg =
        run(&node, &["register", "--display-name", "Helper", "--adapter", "loopback", "--capabilities", "help.me"])
            .await?;
    assert!(reg.status.success(), "{}", both(&reg));
    let id = stored_id(&state_file)?;
    assert!(stdout(&reg).contains(&format!("agent {id} registered")), "stdout unchanged: {}", both(&reg));
    assert!(
        stderr(&reg).contains(&format!("saved agent id {id} to {}", state_file.display())),
        "register says where the identity went: {}",
        both(&reg)
    );
    let call = run(&node, &["call", "--intent", "help.me", "--text", "x"]).await?;
    assert!(call.status.success(), "{}", both(&call));
    assert!(
        stderr(&call).contains(&format!("sending as agent {id} (from {}; --agent-id overrides)", state_file.display())),
        "{}",
        both(&call)
    );
    let explicit = run(&node, &["call", "--agent-id", "someone", "--intent", "help.me", "--text", "x"]).await?;
    assert!(explicit.status.success() && stderr(&explicit).is_empty(), "{}", both(&explicit));

    // --heartbeat renews the sender's lease before sending.
    let before = node.get(&format!("/v1/agents/{id}")).await?.1["last_seen_at"].clone();
    let beat = run(&node, &["call", "--heartbeat", "--intent", "help.me", "--text", "x"]).await?;
    assert!(beat.status.success(), "{}", both(&beat));
    assert_ne!(node.get(&format!("/v1/agents/{id}")).await?.1["last_seen_at"], before);
    Ok(())
}

fn stored_id(state_file: &Path) -> Result<String> {
    let state: Value = serde_json::from_str(&std::fs::read_to_string(state_file)?)?;
    Ok(state["agent_id"].as_str().ok_or("agent id in the state file")?.to_owned())
}

async fn agent_count(node: &Node) -> Result<usize> {
    Ok(node.get("/v1/agents").await?.1["agents"].as_array().map_or(0, Vec::len))
}

async fn ensure_registered(node: &Node, name: &str) -> Result<Output> {
    run(node, &["ensure-registered", "--display-name", name, "--adapter", "loopback", "--capabilities", "me.work"])
        .await
}

#[tokio::test]
async fn ensure_registered_finds_the_agent_by_display_name() -> Result {
    let node = Node::start()?;
    let state_file = node.dir.join("home/.aethrolink/agent.json");
    let ensure = |name| ensure_registered(&node, name);
    let first = ensure("Me").await?;
    assert!(first.status.success(), "{}", both(&first));
    let me = stored_id(&state_file)?;
    // The state file is lost (another machine, a new HOME): the agent is found by its name.
    std::fs::remove_file(&state_file)?;
    let again = ensure("Me").await?;
    assert!(again.status.success(), "{}", both(&again));
    assert_eq!(stored_id(&state_file)?, me, "the same agent, not a new one");
    assert_eq!(agent_count(&node).await?, 1);
    assert!(stderr(&again).contains(&format!("agent {me} is registered as 'Me'")), "{}", both(&again));
    // The state file names another agent: a different name is a different agent.
    let other = ensure("Other").await?;
    assert!(other.status.success(), "{}", both(&other));
    let other_id = stored_id(&state_file)?;
    assert_ne!(other_id, me);
    assert_eq!(agent_count(&node).await?, 2);
    // …and the stored one, matching by name, is kept.
    let kept = ensure("Other").await?;
    assert!(stdout(&kept).contains(&format!("agent {other_id} is registered")), "{}", both(&kept));
    // Two agents of one name: ambiguous, nothing registered.
    node.post("/v1/agents/register", json!({"display_name": "Twin", "transport_kind": "local_managed"})).await?;
    node.post("/v1/agents/register", json!({"display_name": "Twin", "transport_kind": "local_managed"})).await?;
    let twins = ensure("Twin").await?;
    assert_eq!(twins.status.code(), Some(1), "{}", both(&twins));
    assert!(stderr(&twins).contains("several agents are named 'Twin'"), "{}", both(&twins));
    assert_eq!(agent_count(&node).await?, 4);
    Ok(())
}

/// A CLI process writing to files (to read what it said while it runs).
struct Follower {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Follower {
    fn spawn(node: &Node, name: &str, args: &[&str]) -> Result<Follower> {
        let out = node.dir.join(format!("{name}.out"));
        let err = node.dir.join(format!("{name}.err"));
        let child = command(node, args)
            .stdout(Stdio::from(std::fs::File::create(&out)?))
            .stderr(Stdio::from(std::fs::File::create(&err)?))
            .spawn()?;
        Ok(Follower { child, out, err })
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the exit code (killing it after `limit`).
    async fn exit_code(&mut self, limit: Duration) -> Result<Option<i32>> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if started.elapsed() > limit {
                self.child.kill()?;
                self.child.wait()?;
                return Err(format!("still running after {limit:?}; stderr:\n{}", self.stderr()).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seqs of the readable event lines (`#7   task.failed …`).
fn printed_seqs(text: &str) -> Vec<u64> {
    text.lines().filter_map(|l| l.strip_prefix('#')?.split_whitespace().next()?.parse().ok()).collect()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Result {
    for _ in 0..200 {
        if check() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("timed out waiting for {what}").into())
}

#[tokio::test]
async fn followers_reconnect_across_a_node_restart_without_inventing_an_outcome() -> Result {
    let port = common::free_port()?;
    let opts = NodeOpts { extra_args: vec!["--port".into(), port.to_string()], ..NodeOpts::default() };
    let dir = tempfile::tempdir()?.keep();
    let mut node = Node::start_in(&dir, opts.clone())?;
    let waiting = node.create(json!({"mode": "await_input"})).await?;
    node.wait_status(&waiting, "awaiting_input").await?;

    let mut events = Follower::spawn(&node, "events", &["task-events", "--follow", "--task-id", &waiting])?;
    let mut until = Follower::spawn(&node, "until", &["task-wait", "--task-id", &waiting, "--until", "completed"])?;
    let mut call = Follower::spawn(
        &node,
        "call",
        &[
            "call",
            "--target-agent-id",
            "echo",
            "--intent",
            "demo.echo",
            "--payload-json",
            r#"{"mode":"hang"}"#,
            "--wait",
        ],
    )?;
    let mut short =
        Follower::spawn(&node, "short", &["task-events", "--follow", "--task-id", &waiting, "--reconnect-for", "1s"])?;
    eventually("the followers to catch up", || {
        events.stdout().contains("task.awaiting_input")
            && call.stdout().contains("task.running")
            && short.stdout().contains("task.awaiting_input")
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(1000)).await; // task-wait prints nothing until it stops

    let (code, _) = node.stop()?;
    assert_eq!(code, Some(0));
    // While the node is down nobody reports an outcome: they wait for it to come back.
    eventually("the followers to notice", || {
        [&events, &until, &call].iter().all(|f| f.stderr().contains("reconnecting for up to 60s"))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (name, f) in [("task-events", &mut events), ("task-wait", &mut until), ("call --wait", &mut call)] {
        assert!(f.running(), "{name} exited while the node was down: {}{}", f.stdout(), f.stderr());
        assert!(!f.stderr().contains("ended"), "{name}: {}", f.stderr());
    }
    // One that may not wait that long says the outcome is unknown (exit 5).
    assert_eq!(short.exit_code(Duration::from_secs(10)).await?, Some(5), "{}", short.stderr());
    assert!(
        short.stderr().contains(&format!(
            "while following task {waiting} (last event #7, status awaiting_input); its outcome is unknown"
        )),
        "{}",
        short.stderr()
    );

    let node = Node::start_in(&dir, opts)?;
    assert_eq!(node.base, format!("http://127.0.0.1:{port}"));
    // The restart ends both tasks `interrupted`: the followers report that, the node's outcome.
    assert_eq!(events.exit_code(Duration::from_secs(30)).await?, Some(0), "{}", events.stderr());
    assert_eq!(call.exit_code(Duration::from_secs(30)).await?, Some(1), "{}", call.stderr());
    assert_eq!(until.exit_code(Duration::from_secs(30)).await?, Some(4), "{}", until.stderr());
    for (name, f) in [("task-events", &events), ("task-wait", &until), ("call --wait", &call)] {
        assert!(f.stderr().contains("node restarted; following task"), "{name}: {}", f.stderr());
    }
    // Every event once, in order: the reconnection asked for what came after the last one seen.
    let seqs = printed_seqs(&events.stdout());
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>(), "{}", events.stdout());
    assert!(events.stdout().lines().last().unwrap_or("").contains("task.failed"), "{}", events.stdout());
    let call_seqs = printed_seqs(&call.stdout());
    assert_eq!(call_seqs, (1..=call_seqs.len() as u64).collect::<Vec<u64>>(), "{}", call.stdout());
    let hung = announced_in(&call.stdout())?;
    assert!(
        call.stderr().contains(&format!("task {hung} ended failed: Task interrupted by node restart")),
        "{}",
        call.stderr()
    );
    assert!(until.stderr().contains(&format!("task {waiting} ended failed (not completed)")), "{}", until.stderr());
    assert_eq!(node.task(&hung).await?["last_error"]["reason"], "interrupted");
    Ok(())
}
