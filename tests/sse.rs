//! SSE: history then live with no gap and no duplicate, close after terminal, resume from
//! Last-Event-ID / ?after, and the same under 100 concurrent tasks and subscribers.

mod common;

use std::time::Duration;

use common::{Node, Result, assert_contiguous};
use serde_json::{Value, json};

#[tokio::test]
async fn replay_of_a_finished_task_then_resume_points() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"mode": "progress", "steps": 3, "interval_ms": 1})).await?;
    let all = node.events_until_done(&id).await?;
    assert_contiguous(&all);
    let n = all.len() as u64;
    let frames = node.sse(&id, "", None, Duration::from_secs(5)).await?;
    let ids: Vec<String> = frames.iter().map(|(i, _)| i.clone()).collect();
    let expected: Vec<String> = (1..=n).map(|s| s.to_string()).collect();
    assert_eq!(ids, expected, "SSE id is the seq");
    let after = node.sse(&id, "?after=4", None, Duration::from_secs(5)).await?;
    assert_eq!(after.first().map(|(i, _)| i.as_str()), Some("5"));
    assert_eq!(after.len() as u64, n - 4);
    let resumed = node.sse(&id, "", Some(n - 1), Duration::from_secs(5)).await?;
    assert_eq!(resumed.len(), 1, "Last-Event-ID resumes after that seq");
    let past_end = node.sse(&id, &format!("?after={n}"), None, Duration::from_secs(5)).await?;
    assert!(past_end.is_empty(), "nothing after the terminal event, and the stream closes");
    Ok(())
}

#[tokio::test]
async fn live_stream_joined_mid_task_has_no_gap_or_duplicate() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"mode": "progress", "steps": 30, "interval_ms": 10})).await?;
    tokio::time::sleep(Duration::from_millis(120)).await;
    let events = node.events_until_done(&id).await?;
    assert_contiguous(&events);
    assert_eq!(events.len(), 37, "5 lifecycle events, accepted, 30 steps, completed");
    // A subscriber that resumes mid-stream gets exactly the rest.
    let id2 = node.create(json!({"mode": "progress", "steps": 20, "interval_ms": 10})).await?;
    tokio::time::sleep(Duration::from_millis(60)).await;
    let tail = node.sse(&id2, "?after=5", None, Duration::from_secs(10)).await?;
    let seqs: Vec<u64> = tail.iter().filter_map(|(_, v)| v["seq"].as_u64()).collect();
    assert_eq!(seqs, (6..=27).collect::<Vec<u64>>());
    Ok(())
}

#[tokio::test]
async fn hundred_concurrent_tasks_and_subscribers() -> Result {
    let node = std::sync::Arc::new(Node::start()?);
    let mut handles = Vec::new();
    for i in 0..100u64 {
        let node = node.clone();
        handles.push(tokio::spawn(async move {
            let steps = 1 + i % 5;
            let id = node.create(json!({"mode": "progress", "steps": steps, "interval_ms": 2})).await?;
            // Two subscribers per task: one from the start, one resuming after seq 3.
            let (a, b) = tokio::join!(
                node.sse(&id, "", None, Duration::from_secs(60)),
                node.sse(&id, "?after=3", None, Duration::from_secs(60))
            );
            let a: Vec<Value> = a?.into_iter().map(|(_, v)| v).collect();
            let b: Vec<Value> = b?.into_iter().map(|(_, v)| v).collect();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((steps, a, b))
        }));
    }
    for h in handles {
        let (steps, a, b) = h.await??;
        assert_contiguous(&a);
        assert_eq!(a.len() as u64, 7 + steps, "created, routed, ready, 2× dispatching, accepted, steps, completed");
        assert_eq!(a.last().map(|e| e["state"].clone()), Some(json!("completed")));
        let b_seqs: Vec<u64> = b.iter().filter_map(|e| e["seq"].as_u64()).collect();
        assert_eq!(b_seqs, (4..=a.len() as u64).collect::<Vec<u64>>());
    }
    Ok(())
}

#[tokio::test]
async fn slow_subscriber_catches_up_in_order_without_slowing_the_task() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"mode": "progress", "steps": 400, "interval_ms": 0})).await?;
    // Open the stream but read nothing for a while: the server-side channel fills up.
    let resp = node.http.get(node.url(&format!("/v1/tasks/{id}/events"))).send().await?;
    let done = node.wait_status(&id, "completed").await?;
    assert_eq!(done["status"], "completed", "the task finished while its subscriber stalled");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let body = tokio::time::timeout(Duration::from_secs(20), resp.text()).await??;
    let seqs: Vec<u64> = body.lines().filter_map(|l| l.strip_prefix("id: ")).filter_map(|s| s.parse().ok()).collect();
    assert_eq!(seqs, (1..=407).collect::<Vec<u64>>());
    Ok(())
}

#[tokio::test]
async fn json_history_view() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"text": "x"})).await?;
    node.events_until_done(&id).await?;
    let v: Value = node
        .http
        .get(node.url(&format!("/v1/tasks/{id}/events?after=2")))
        .header("accept", "application/json")
        .send()
        .await?
        .json()
        .await?;
    let events = v["events"].as_array().ok_or("events")?;
    assert_eq!(events.first().map(|e| e["seq"].clone()), Some(json!(3)));
    Ok(())
}

#[tokio::test]
async fn finished_tasks_and_closed_streams_leave_no_actor_behind() -> Result {
    let node = Node::start()?;
    for _ in 0..30 {
        let id = node.create(json!({"text": "x"})).await?;
        node.events_until_done(&id).await?;
    }
    let hung = node.create(json!({"mode": "hang"})).await?;
    node.wait_status(&hung, "running").await?;
    // A client that walks away mid-stream.
    let resp = node.http.get(node.url(&format!("/v1/tasks/{hung}/events"))).send().await?;
    drop(resp);
    let mut stats = json!(null);
    for _ in 0..100 {
        stats = node.get("/v1/node/stats").await?.1;
        if stats["live_task_actors"] == 1 && stats["sse_subscribers"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats["live_task_actors"], 1, "only the hung task keeps an actor: {stats}");
    assert_eq!(stats["sse_subscribers"], 0, "closed streams release their subscriber: {stats}");
    assert!(stats["storage"]["writes"].as_u64().unwrap_or(0) >= 30 * 3, "3 durable writes per echo task: {stats}");
    Ok(())
}

#[tokio::test]
async fn a_stream_resumed_past_the_end_of_a_live_task_closes_when_the_task_ends() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({ "mode": "await_input" })).await?;
    node.wait_status(&id, "awaiting_input").await?;
    // The stream (resumed far past the task's last seq) is open — its head arrives once the
    // subscription is registered — before the task ends.
    let resp =
        node.http.get(node.url(&format!("/v1/tasks/{id}/events"))).header("last-event-id", "1000").send().await?;
    assert_eq!(resp.status(), 200);
    let (status, v) = node.post(&format!("/v1/tasks/{id}/resume"), json!({ "payload": { "ok": true } })).await?;
    assert_eq!(status, 202, "{v}");
    let body =
        tokio::time::timeout(Duration::from_secs(10), resp.text()).await.map_err(|_| "stream never closed")??;
    assert!(!body.contains("data:"), "nothing past seq 1000: {body}");
    assert_eq!(node.wait_status(&id, "completed").await?["status"], "completed");
    Ok(())
}
