//! `alink-cli` commands that wait for a task (`call --wait`, `thread-continue --wait`) end the
//! same way: the same terminal summary on stderr (with the failure's reason) and the same exit
//! code, non-zero unless the task completed.

mod common;

use std::process::Output;

use common::{Node, Result, cli_bin};
use serde_json::Value;

/// Runs `alink-cli --server <node> <args>` off the async runtime (waiting commands block on the node).
async fn run(node: &Node, args: &[&str]) -> Result<Output> {
    let mut cmd = std::process::Command::new(cli_bin());
    cmd.arg("--server").arg(&node.base).args(args).env("HOME", node.dir.join("home"));
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The id of the task a waiting command announced on its first line (`task <id> …` / `turn task <id>: …`).
fn announced_task_id(o: &Output) -> Result<String> {
    let out = stdout(o);
    let first = out.lines().next().ok_or("no output")?;
    let rest = first.strip_prefix("turn task ").or_else(|| first.strip_prefix("task ")).ok_or(first.to_owned())?;
    Ok(rest.split([' ', ':']).next().unwrap_or("").to_owned())
}

async fn new_thread(node: &Node) -> Result<String> {
    let created = run(node, &["--json", "thread-create", "--agent-a-id", "echo", "--agent-b-id", "other"]).await?;
    let v: Value = serde_json::from_str(stdout(&created).trim())?;
    Ok(v["thread"]["thread_id"].as_str().ok_or("thread id")?.to_owned())
}

const FAIL: &str = r#"{"mode":"fail","reason":"nope"}"#;

#[tokio::test]
async fn thread_continue_wait_reports_a_failed_turn_like_call_wait() -> Result {
    let node = Node::start()?;
    let call =
        run(&node, &["call", "--target-agent-id", "other", "--intent", "shared.cap", "--payload-json", FAIL, "--wait"])
            .await?;
    let thread = new_thread(&node).await?;
    let turn = run(
        &node,
        &["thread-continue", "--thread-id", &thread, "--intent", "shared.cap", "--payload-json", FAIL, "--wait"],
    )
    .await?;

    for (name, o) in [("call", &call), ("thread-continue", &turn)] {
        assert_eq!(o.status.code(), Some(1), "{name} exits 1 when the task fails: {}{}", stdout(o), stderr(o));
        assert!(stdout(o).contains("task.failed"), "{name} streamed the events: {}", stdout(o));
        assert!(!stdout(o).contains("result:"), "{name} prints no result: {}", stdout(o));
    }
    let turn_task = announced_task_id(&turn)?;
    assert_eq!(
        stderr(&turn).trim(),
        format!("alink-cli: task {turn_task} ended failed: Loopback failed: nope"),
        "the failure reason is printed"
    );
    let call_task = announced_task_id(&call)?;
    assert_eq!(
        stderr(&turn).replace(&turn_task, "<id>"),
        stderr(&call).replace(&call_task, "<id>"),
        "the same terminal summary as call --wait"
    );
    // The node agrees on why the turn failed.
    let (_, task) = node.get(&format!("/v1/tasks/{turn_task}")).await?;
    assert_eq!(task["last_error"]["reason"], "nope", "{task}");
    Ok(())
}

#[tokio::test]
async fn waiting_commands_print_the_result_of_a_completed_task_the_same_way() -> Result {
    let node = Node::start()?;
    let call =
        run(&node, &["call", "--target-agent-id", "other", "--intent", "shared.cap", "--text", "hi", "--wait"]).await?;
    let thread = new_thread(&node).await?;
    let turn =
        run(&node, &["thread-continue", "--thread-id", &thread, "--intent", "shared.cap", "--text", "hi", "--wait"])
            .await?;
    for (name, o) in [("call", &call), ("thread-continue", &turn)] {
        assert!(o.status.success(), "{name}: {}{}", stdout(o), stderr(o));
        assert_eq!(stdout(o).lines().last(), Some(r#"result: {"text":"hi"}"#), "{name}: {}", stdout(o));
        assert_eq!(stderr(o), "", "{name}");
    }
    // --json prints the events as JSON and no readable result line.
    let raw = run(
        &node,
        &["--json", "thread-continue", "--thread-id", &thread, "--intent", "shared.cap", "--text", "hi", "--wait"],
    )
    .await?;
    assert!(raw.status.success(), "{}", stderr(&raw));
    let lines: Vec<Value> = stdout(&raw).lines().map(serde_json::from_str).collect::<std::result::Result<_, _>>()?;
    assert_eq!(lines.last().map(|e| e["state"].clone()), Some(Value::from("completed")), "{lines:?}");
    Ok(())
}
