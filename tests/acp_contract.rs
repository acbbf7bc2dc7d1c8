//! Two rows of the AethroLink v1 contract for ACP stdio agents, through the real node against
//! the test-double agent `tests/agents/fake_acp_agent.py`: OpenClaw's structured events
//! (`params.event`, contract §8.3) and `initialize_timeout_ms` (§6.7, §8.2).

mod common;

use std::time::Duration;

use common::{Node, NodeOpts, Result, assert_contiguous, kinds};
use serde_json::{Value, json};

fn agent() -> String {
    format!("{}/tests/agents/fake_acp_agent.py", env!("CARGO_MANIFEST_DIR"))
}

/// A file path no other test uses (the first-initialize marker of the fake agent).
fn marker(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("alink-{name}-{}-{nanos}", std::process::id())).display().to_string()
}

/// OpenClaw targets on the fake agent, and targets whose first or every `initialize` hangs.
fn registry(first_init_marker: &str) -> String {
    let a = agent();
    format!(
        "targets:\n\
         \x20 claw:\n    adapter: acp\n    dialect: openclaw\n    launch:\n      command: [python3, {a}]\n    capabilities: [claw]\n\
         \x20 plain:\n    adapter: acp\n    launch:\n      command: [python3, {a}]\n    capabilities: [plain]\n\
         \x20 flaky:\n    adapter: acp\n    launch:\n      command: [python3, {a}, --hang-first-init, {first_init_marker}]\n      timeout_ms: 20000\n    defaults: {{initialize_timeout_ms: 600}}\n    capabilities: [flaky]\n\
         \x20 dead:\n    adapter: acp\n    launch:\n      command: [python3, {a}, --mode, hang-init]\n      timeout_ms: 20000\n    capabilities: [dead]\n"
    )
}

fn opts(first_init_marker: &str) -> NodeOpts {
    NodeOpts {
        registry: Some(registry(first_init_marker)),
        extra_args: vec!["--cancel-grace-ms".into(), "1500".into()],
        ..NodeOpts::default()
    }
}

async fn task(node: &Node, target: &str, text: &str, extra: Value) -> Result<String> {
    let mut body = json!({"target_agent_id": target, "intent": target, "payload": {"text": text}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    node.create_with(body).await
}

fn result_text(events: &[Value]) -> String {
    events.last().and_then(|e| e["data"]["result"]["text"].as_str()).unwrap_or("").to_owned()
}

#[tokio::test]
async fn structured_await_refuses_resume_then_cancel_ends_it() -> Result {
    let node = Node::start_with(opts(&marker("unused")))?;
    let id = task(&node, "claw", "!structured-await", json!({})).await?;
    let awaiting = node.wait_status(&id, "awaiting_input").await?;
    assert_eq!(awaiting["status"], "awaiting_input");
    let (status, body) = node.post(&format!("/v1/tasks/{id}/resume"), json!({"text": "yes"})).await?;
    assert_eq!(status, 400, "{body}");
    // Refused before anything was appended: still awaiting, no resume_requested event.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(node.task(&id).await?["status"], "awaiting_input");
    let (status, _) = node.post(&format!("/v1/tasks/{id}/cancel"), json!({})).await?;
    assert!(status == 202 || status == 200, "cancel: {status}");
    let events = node.events_until_done(&id).await?;
    assert_contiguous(&events);
    let k = kinds(&events);
    assert!(!k.contains(&"task.resume_requested".to_owned()), "{k:?}");
    let awaited = events.iter().find(|e| e["kind"] == "task.awaiting_input").ok_or("no awaiting event")?;
    assert_eq!(
        (awaited["message"].clone(), awaited["data"]["prompt"].clone()),
        (json!("Runtime requires additional input"), json!("Approve?"))
    );
    assert_eq!(awaited["source"], "adapter");
    assert_eq!(k.last().map(String::as_str), Some("task.cancelled"));
    assert_eq!(node.task(&id).await?["status"], "cancelled");
    Ok(())
}

#[tokio::test]
async fn structured_heartbeats_are_running_events() -> Result {
    let node = Node::start_with(opts(&marker("unused")))?;
    let id = task(&node, "claw", "!structured-heartbeat", json!({})).await?;
    let events = node.events_until_done(&id).await?;
    assert_contiguous(&events);
    let beats: Vec<&Value> =
        events.iter().filter(|e| e["kind"] == "task.running" && e["message"] == "Heartbeat").collect();
    assert_eq!(beats.len(), 3, "{:?}", kinds(&events));
    assert!(beats.iter().all(|e| e["data"]["heartbeat"] == true && e["source"] == "adapter"));
    assert_eq!(events.last().map(|e| e["kind"].clone()), Some(json!("task.completed")));
    assert_eq!(result_text(&events), "delayed_ok");
    // Dialects without structured events ignore them.
    let plain = task(&node, "plain", "!structured-heartbeat", json!({})).await?;
    let events = node.events_until_done(&plain).await?;
    assert!(!events.iter().any(|e| e["message"] == "Heartbeat"), "{:?}", kinds(&events));
    assert_eq!(result_text(&events), "delayed_ok");
    Ok(())
}

#[tokio::test]
async fn structured_completed_and_failed_end_the_task_not_the_next_one() -> Result {
    let node = Node::start_with(opts(&marker("unused")))?;
    // Both OpenClaw tasks share the session `main`: the second waits for the first's turn, and
    // the first prompt's late chunk and answer (after its structured end) must not touch it.
    let done = task(&node, "claw", "!structured-complete", json!({})).await?;
    let next = task(&node, "claw", "say exactly TWO", json!({})).await?;
    let events = node.events_until_done(&done).await?;
    assert_contiguous(&events);
    let last = events.last().ok_or("no events")?;
    assert_eq!((last["kind"].clone(), last["message"].clone()), (json!("task.completed"), json!("Task completed")));
    assert_eq!(result_text(&events), "structured ok");
    assert_eq!(events.iter().filter(|e| e["kind"] == "task.completed").count(), 1);
    let events = node.events_until_done(&next).await?;
    assert_eq!(events.last().map(|e| e["kind"].clone()), Some(json!("task.completed")));
    assert_eq!(result_text(&events), "TWO");

    let failed = task(&node, "claw", "!structured-fail", json!({})).await?;
    let after = task(&node, "claw", "say exactly THREE", json!({})).await?;
    let events = node.events_until_done(&failed).await?;
    assert_contiguous(&events);
    let k = kinds(&events);
    assert_eq!(k.last().map(String::as_str), Some("task.failed"), "{k:?}");
    assert!(events.iter().any(|e| e["kind"] == "task.running" && e["message"] == "Runtime accepted the task"));
    let record = node.wait_status(&failed, "failed").await?;
    assert_eq!(record["last_error"], json!({"reason": "remote_failed", "detail": "tool exploded"}));
    let events = node.events_until_done(&after).await?;
    assert_eq!(result_text(&events), "THREE");
    // Nothing more arrived for the ended tasks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node.task(&failed).await?["status"], "failed");
    assert_eq!(node.task(&done).await?["status"], "completed");
    Ok(())
}

#[tokio::test]
async fn initialize_timeout_relaunches_once_then_runs() -> Result {
    let first = marker("first-init");
    let node = Node::start_with(opts(&first))?;
    let id = task(&node, "flaky", "say exactly OK", json!({})).await?;
    let events = node.events_until_done(&id).await?;
    assert_contiguous(&events);
    assert_eq!(events.last().map(|e| e["kind"].clone()), Some(json!("task.completed")), "{:?}", kinds(&events));
    assert_eq!(result_text(&events), "OK");
    let (_, health) = node.get("/v1/targets/flaky/health").await?;
    assert_eq!((health["healthy"].clone(), health["state"].clone()), (json!(true), json!("up")));
    let (_, launches) = node.get("/v1/targets/flaky/launches").await?;
    let launches = launches["launches"].as_array().cloned().ok_or("launches")?;
    assert_eq!(launches.len(), 2, "{launches:?}");
    let statuses: Vec<&str> = launches.iter().filter_map(|l| l["status"].as_str()).collect();
    assert!(statuses.contains(&"failed") && statuses.contains(&"ready"), "{statuses:?}");
    let failed = launches.iter().find(|l| l["status"] == "failed").ok_or("failed launch")?;
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("initialize_timeout_ms")), "{failed}");
    let _ = std::fs::remove_file(&first);
    Ok(())
}

#[tokio::test]
async fn initialize_timeout_twice_fails_launch_failed() -> Result {
    let node = Node::start_with(opts(&marker("unused")))?;
    let started = std::time::Instant::now();
    let id = task(&node, "dead", "hi", json!({"runtime_options": {"initialize_timeout_ms": 400}})).await?;
    let events = node.events_until_done(&id).await?;
    assert_contiguous(&events);
    assert_eq!(events.last().map(|e| e["kind"].clone()), Some(json!("task.failed")), "{:?}", kinds(&events));
    // Two bounded attempts, far below the 20 s launch timeout.
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let record = node.wait_status(&id, "failed").await?;
    assert_eq!(record["last_error"]["reason"], "launch_failed");
    let detail = record["last_error"]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("initialize within 400 ms") && detail.contains("initialize_timeout_ms"), "{detail}");
    let (_, launches) = node.get("/v1/targets/dead/launches").await?;
    let launches = launches["launches"].as_array().cloned().ok_or("launches")?;
    assert_eq!(launches.len(), 2, "{launches:?}");
    assert!(launches.iter().all(|l| l["status"] == "failed"), "{launches:?}");
    let (_, health) = node.get("/v1/targets/dead/health").await?;
    assert_eq!(health["healthy"], false);
    Ok(())
}
