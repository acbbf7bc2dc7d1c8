//! Work waiting on a runtime scope, through the real node: priorities reorder a busy ACP
//! session, a paused target holds its tasks (durably) until resumed, and a task queued behind a
//! running turn survives a SIGTERM restart and completes while the started turn fails
//! `interrupted`.

mod common;

use std::time::Duration;

use common::{Node, NodeOpts, Result};
use serde_json::{Value, json};

fn agent() -> String {
    format!("{}/tests/agents/fake_acp_agent.py", env!("CARGO_MANIFEST_DIR"))
}

fn opts() -> NodeOpts {
    let a = agent();
    let registry = format!(
        "targets:\n\
         \x20 fake:\n    adapter: acp\n    launch:\n      command: [python3, {a}]\n    capabilities: [chat]\n\
         \x20 echo:\n    adapter: loopback\n    capabilities: [demo.echo]\n"
    );
    NodeOpts {
        registry: Some(registry),
        extra_args: vec!["--cancel-grace-ms".into(), "1500".into()],
        ..NodeOpts::default()
    }
}

/// A prompt to the fake agent in conversation `conv` (one session).
async fn prompt(node: &Node, conv: &str, text: &str, priority: Option<&str>) -> Result<String> {
    let mut body = json!({"target_agent_id": "fake", "intent": "chat", "conversation_id": conv,
        "payload": {"text": text}});
    if let Some(p) = priority {
        body["priority"] = json!(p);
    }
    node.create_with(body).await
}

async fn done(node: &Node, id: &str) -> Result<Value> {
    node.events_until_done(id).await?;
    node.task(id).await
}

#[tokio::test]
async fn priorities_reorder_a_busy_session() -> Result {
    let node = Node::start_with(opts())?;
    let busy = prompt(&node, "c1", "!hang", None).await?;
    node.wait_status(&busy, "running").await?;
    // Queued behind the running turn in creation order low, normal, high, normal; each names
    // the turn that ran before it (the agent remembers it per session).
    let low = prompt(&node, "c1", "!after low", Some("low")).await?;
    let normal = prompt(&node, "c1", "!after normal", None).await?;
    let high = prompt(&node, "c1", "!after high", Some("high")).await?;
    let normal2 = prompt(&node, "c1", "!after normal2", Some("normal")).await?;
    for id in [&low, &normal, &high, &normal2] {
        node.wait_status(id, "dispatching").await?;
    }
    assert_eq!(node.task(&high).await?["priority"], "high");
    assert_eq!(node.task(&normal).await?["priority"], "normal");
    let (status, _) = node.post(&format!("/v1/tasks/{busy}/cancel"), json!({})).await?;
    assert!(status < 300);
    let mut previous = Vec::new();
    for id in [&high, &normal, &normal2, &low] {
        let events = node.events_until_done(id).await?;
        let last = events.last().cloned().unwrap_or_default();
        assert_eq!(last["kind"], "task.completed", "{events:?}");
        previous.push(last["data"]["result"]["text"].as_str().unwrap_or_default().to_owned());
    }
    // High first, FIFO within a priority, low last.
    assert_eq!(previous, ["after:none", "after:high", "after:normal", "after:normal2"]);

    // A priority that is not one is refused, naming the field.
    let (status, body) =
        node.post("/v1/tasks", json!({"target_agent_id": "echo", "intent": "demo.echo", "priority": "urgent"})).await?;
    assert!((400..500).contains(&status), "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("urgent"), "{body}");
    Ok(())
}

#[tokio::test]
async fn a_paused_target_holds_its_tasks_until_resumed_even_across_a_restart() -> Result {
    let mut node = Node::start_with(opts())?;
    let before = node.create(json!({"mode": "await_input"})).await?;
    node.wait_status(&before, "awaiting_input").await?;
    let (status, paused) = node.post("/v1/targets/echo/pause", json!({})).await?;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["dispatch_paused"], true);
    assert!(paused["dispatch_paused_at"].is_string());
    let (status, again) = node.post("/v1/targets/echo/pause", json!({})).await?;
    assert_eq!(
        (status, &again["dispatch_paused_at"]),
        (200, &paused["dispatch_paused_at"]),
        "a second pause keeps the first"
    );

    // A task created for a paused target is accepted and waits; one already running finishes.
    let waiting = node.create(json!({"text": "later"})).await?;
    let (status, _) = node.post(&format!("/v1/tasks/{before}/resume"), json!({"payload": {"answer": "go"}})).await?;
    assert!(status < 300);
    assert_eq!(done(&node, &before).await?["status"], "completed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.task(&waiting).await?["status"], "created");

    let (_, targets) = node.get("/v1/targets").await?;
    let echo = targets["targets"].as_array().and_then(|ts| ts.iter().find(|t| t["target_id"] == "echo")).cloned();
    assert_eq!(echo.as_ref().map(|t| &t["dispatch_paused"]), Some(&json!(true)), "{targets}");
    let fake = targets["targets"].as_array().and_then(|ts| ts.iter().find(|t| t["target_id"] == "fake")).cloned();
    assert_eq!(fake.as_ref().map(|t| &t["dispatch_paused"]), Some(&json!(false)));
    let (_, health) = node.get("/v1/targets/echo/health").await?;
    assert_eq!(health["dispatch_paused"], true, "{health}");

    // The pause is durable: after a restart the task still waits.
    node.stop()?;
    let dir = node.dir.clone();
    let node = Node::start_in(&dir, opts())?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.task(&waiting).await?["status"], "created");
    let (_, health) = node.get("/v1/targets/echo/health").await?;
    assert_eq!(health["dispatch_paused"], true, "{health}");

    let (status, resumed) = node.post("/v1/targets/echo/resume", json!({})).await?;
    assert_eq!((status, &resumed["dispatch_paused"]), (200, &json!(false)), "{resumed}");
    assert_eq!(done(&node, &waiting).await?["status"], "completed");
    let (_, health) = node.get("/v1/targets/echo/health").await?;
    assert_eq!(health["dispatch_paused"], false);

    let (status, body) = node.post("/v1/targets/nope/pause", json!({})).await?;
    assert_eq!(status, 404, "{body}");
    Ok(())
}

#[tokio::test]
async fn a_queued_acp_task_survives_a_sigterm_restart() -> Result {
    let mut node = Node::start_with(opts())?;
    let started = prompt(&node, "c2", "!hang", None).await?;
    node.wait_status(&started, "running").await?;
    let queued = prompt(&node, "c2", "say exactly survived", None).await?;
    node.wait_status(&queued, "dispatching").await?;
    let (code, _) = node.stop()?;
    assert_eq!(code, Some(0));

    let dir = node.dir.clone();
    let node = Node::start_in(&dir, opts())?;
    let t = node.task(&started).await?;
    assert_eq!(
        (t["status"].as_str(), t["last_error"]["reason"].as_str()),
        (Some("failed"), Some("interrupted")),
        "{t}"
    );
    let t = done(&node, &queued).await?;
    assert_eq!(t["status"], "completed", "{t}");
    let events = node.events_until_done(&queued).await?;
    let text = events.last().and_then(|e| e["data"]["result"]["text"].as_str()).unwrap_or_default().to_owned();
    assert!(text.contains("survived"), "{events:?}");
    Ok(())
}

#[tokio::test]
async fn a_pause_holds_turns_already_queued_in_a_session_and_running_ones_finish() -> Result {
    let node = Node::start_with(opts())?;
    let running = prompt(&node, "c3", "!permission", None).await?;
    node.wait_status(&running, "awaiting_input").await?;
    let queued = prompt(&node, "c3", "say exactly held", None).await?;
    node.wait_status(&queued, "dispatching").await?;
    let (status, _) = node.post("/v1/targets/fake/pause", json!({})).await?;
    assert_eq!(status, 200);
    // The running turn finishes while paused; the one queued behind it in the same session
    // does not start.
    let (status, _) =
        node.post(&format!("/v1/tasks/{running}/resume"), json!({"payload": {"decision": "allow"}})).await?;
    assert!(status < 300);
    assert_eq!(done(&node, &running).await?["status"], "completed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = node.task(&queued).await?;
    assert_eq!(t["status"], "dispatching", "{t}");
    assert!(t.get("remote").is_none(), "the agent never got it: {t}");
    let (status, _) = node.post("/v1/targets/fake/resume", json!({})).await?;
    assert_eq!(status, 200);
    let t = done(&node, &queued).await?;
    assert_eq!(t["status"], "completed", "{t}");
    Ok(())
}
