//! Restart and shutdown: every task and event survives a restart exactly; live loopback tasks
//! are recovered by the task supervisor; SIGTERM exits 0 promptly even with open streams.

mod common;

use std::time::Duration;

use common::{Node, NodeOpts, Result, assert_contiguous, kinds};
use serde_json::{Value, json};

async fn history(node: &Node, id: &str) -> Result<Vec<Value>> {
    let v: Value = node
        .http
        .get(node.url(&format!("/v1/tasks/{id}/events")))
        .header("accept", "application/json")
        .send()
        .await?
        .json()
        .await?;
    Ok(v["events"].as_array().cloned().unwrap_or_default())
}

#[tokio::test]
async fn tasks_and_events_survive_restart_and_live_ones_are_recovered() -> Result {
    let mut node = Node::start()?;
    let dir = node.dir.clone();
    let (_, health) = node.get("/v1/node/health").await?;
    let node_id = health["node_id"].as_str().ok_or("node id")?.to_owned();
    let done = node.create(json!({"text": "kept"})).await?;
    node.events_until_done(&done).await?;
    let hung = node.create(json!({"mode": "hang"})).await?;
    node.wait_status(&hung, "running").await?;
    let waiting = node.create(json!({"mode": "await_input"})).await?;
    node.wait_status(&waiting, "awaiting_input").await?;
    let before_task = node.task(&done).await?;
    let before_events = history(&node, &done).await?;
    let (code, _) = node.stop()?;
    assert_eq!(code, Some(0));

    let node = Node::start_in(&dir, NodeOpts::default())?;
    assert_eq!(node.task(&done).await?, before_task, "task row unchanged");
    assert_eq!(history(&node, &done).await?, before_events, "events unchanged");
    let (_, health) = node.get("/v1/node/health").await?;
    assert_eq!(health["node_id"], node_id.as_str(), "node id is stable");
    for id in [&hung, &waiting] {
        let t = node.task(id).await?;
        assert_eq!(t["status"], "failed", "{t}");
        assert_eq!(t["last_error"]["reason"], "interrupted");
        let events = history(&node, id).await?;
        assert_contiguous(&events);
        assert_eq!(kinds(&events).last().map(String::as_str), Some("task.failed"));
        assert!(events.last().and_then(|e| e["message"].as_str()).unwrap_or("").contains("interrupted"));
    }
    // A human reading stderr can follow what happened.
    // (An event is visible over HTTP as soon as it is durable, a moment before its log line.)
    let mut log = String::new();
    for _ in 0..100 {
        log = node.log();
        if log.matches("Task interrupted by node restart").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(log.contains("restart recovery done") && log.contains("recovered=2"), "{log}");
    assert!(
        log.contains(&format!("task_id={hung}")) && log.matches("Task interrupted by node restart").count() >= 2,
        "{log}"
    );
    // The node keeps working.
    let id = node.create(json!({"text": "after"})).await?;
    assert_eq!(node.events_until_done(&id).await?.last().map(|e| e["state"].clone()), Some(json!("completed")));
    Ok(())
}

#[tokio::test]
async fn crash_with_sigkill_loses_nothing_acknowledged() -> Result {
    let mut node = Node::start()?;
    let dir = node.dir.clone();
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(node.create(json!({"text": "x"})).await?);
    }
    let hung = node.create(json!({"mode": "hang"})).await?;
    node.wait_status(&hung, "running").await?;
    node.kill()?;
    let node = Node::start_in(&dir, NodeOpts::default())?;
    for id in &ids {
        // Every acknowledged task exists; it either completed before the crash or was recovered.
        let t = node.task(id).await?;
        let status = t["status"].as_str().unwrap_or("");
        assert!(status == "completed" || status == "failed", "{t}");
        assert_contiguous(&history(&node, id).await?);
    }
    assert_eq!(node.task(&hung).await?["last_error"]["reason"], "interrupted");
    Ok(())
}

#[tokio::test]
async fn sigterm_with_open_streams_exits_zero_promptly() -> Result {
    let mut node = Node::start()?;
    let id = node.create(json!({"mode": "hang"})).await?;
    node.wait_status(&id, "running").await?;
    let resp = node.http.get(node.url(&format!("/v1/tasks/{id}/events"))).send().await?;
    let mut body = futures::StreamExt::boxed(resp.bytes_stream());
    let mut streamed = String::new();
    // The stream is live once its history (up to task.running) has arrived.
    while !streamed.contains("task.running") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut body))
            .await?
            .ok_or("stream ended early")??;
        streamed.push_str(&String::from_utf8_lossy(&chunk));
    }
    let (code, took) = tokio::task::spawn_blocking(move || node.stop().map(|r| (r, node))).await??.0;
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // …and shutdown ended it.
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = futures::StreamExt::next(&mut body).await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(rest.is_ok(), "stream not ended by shutdown");
    Ok(())
}
