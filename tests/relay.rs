//! Relayed tasks where the Go node is defective (contract §9.6), black-box with real
//! `alink-node` processes: resume and cancel of a proxy task are relayed to the destination; a
//! destination stream that closes early is re-opened with `Last-Event-ID` and reaches the
//! destination's real outcome (or fails `remote event stream failed` past the bound); after an
//! origin SIGKILL the relay re-attaches from the last mirrored seq (or, killed before the
//! destination answered, submits again and the destination runs the task once); a destination
//! that lost the task fails the proxy `remote relay interrupted`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Node, NodeOpts, Result};
use serde_json::{Value, json};

/// The destination, in the Go-compatibility mode (accepts the origin unsigned-or-unknown; signed
/// relays between registered peers are in tests/signed_peers.rs), on `port` (0: any).
fn destination_in(dir: &Path, port: u16) -> Result<Node> {
    let extra = vec!["--allow-unsigned-peers".into(), "--port".into(), port.to_string()];
    Node::start_in(dir, NodeOpts { extra_args: extra, ..NodeOpts::default() })
}

/// The origin (no local `other` target: tasks for it are relayed).
fn origin_in(dir: &Path) -> Result<Node> {
    let registry = "targets:\n  mine:\n    adapter: loopback\n    capabilities: [mine.only]\n";
    Node::start_in(dir, NodeOpts { registry: Some(registry.into()), extra_args: Vec::new(), ..NodeOpts::default() })
}

/// A node's port (from its base URL).
fn port_of(node: &Node) -> Result<u16> {
    Ok(node.base.rsplit(':').next().ok_or("no port")?.trim_end_matches('/').parse()?)
}

/// A fresh pair: destination `b`, origin `a` that knows and synced `b`.
async fn pair() -> Result<(Node, Node)> {
    let b = destination_in(&tempfile::tempdir()?.keep(), 0)?;
    let a = origin_in(&tempfile::tempdir()?.keep())?;
    let (status, v) = a.post("/v1/peers", json!({ "peer_id": "b", "base_url": b.base })).await?;
    assert_eq!(status, 201, "{v}");
    let (status, v) = a.post("/v1/peers/b/sync", json!({})).await?;
    assert_eq!(status, 200, "{v}");
    Ok((a, b))
}

async fn relay(a: &Node, payload: Value) -> Result<String> {
    a.create_with(json!({ "target_agent_id": "other", "intent": "other.only", "payload": payload })).await
}

/// The destination task of a proxy task (its `remote.binding`), once accepted.
async fn destination_task(a: &Node, proxy: &str) -> Result<String> {
    for _ in 0..200 {
        if let Some(d) = a.task(proxy).await?["remote"]["binding"].as_str() {
            return Ok(d.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(format!("proxy {proxy} was never accepted").into())
}

/// Polls until the task has `status`, for up to `secs` (past the relay's re-open budget).
async fn wait_long(node: &Node, task_id: &str, status: &str, secs: u64) -> Result<Value> {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        let t = node.task(task_id).await?;
        if t["status"] == status {
            return Ok(t);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("task {task_id} never reached {status} within {secs} s: {}", node.task(task_id).await?).into())
}

/// Mirrored destination seqs of a proxy's events: each at most once, increasing.
fn assert_mirrored_once(events: &[Value]) {
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["data"]["remote_event_seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "mirrored seqs repeat or go back: {seqs:?}");
}

#[tokio::test]
async fn a_proxy_awaiting_input_is_resumed_at_the_origin_and_the_destination_answers() -> Result {
    let (a, b) = pair().await?;
    let proxy = relay(&a, json!({ "mode": "await_input", "prompt": "approve?" })).await?;
    a.wait_status(&proxy, "awaiting_input").await?;
    let dest = destination_task(&a, &proxy).await?;
    b.wait_status(&dest, "awaiting_input").await?;

    let (status, v) = a.post(&format!("/v1/tasks/{proxy}/resume"), json!({ "payload": { "approved": true } })).await?;
    assert_eq!(status, 202, "{v}");
    let task = a.wait_status(&proxy, "completed").await?;
    assert_eq!(b.task(&dest).await?["status"], "completed");
    // The destination's agent got the answer: its result (mirrored) carries the resume payload.
    let artifact = task["result_artifact_id"].as_str().ok_or("no result")?;
    let (_, result) = a.get(&format!("/v1/artifacts/{artifact}")).await?;
    assert!(result.to_string().contains("approved"), "{result}");
    let events = a.events_until_done(&proxy).await?;
    common::assert_contiguous(&events);
    assert_mirrored_once(&events);
    Ok(())
}

#[tokio::test]
async fn a_cancel_at_the_origin_is_relayed_and_both_tasks_end_cancelled() -> Result {
    let (a, b) = pair().await?;
    let proxy = relay(&a, json!({ "mode": "await_input" })).await?;
    a.wait_status(&proxy, "awaiting_input").await?;
    let dest = destination_task(&a, &proxy).await?;
    let (status, v) = a.post(&format!("/v1/tasks/{proxy}/cancel"), json!({})).await?;
    assert!(status == 200 || status == 202, "{status} {v}");
    b.wait_status(&dest, "cancelled").await?;
    a.wait_status(&proxy, "cancelled").await?;
    let events = a.events_until_done(&proxy).await?;
    let last = events.last().cloned().unwrap_or_default();
    // The proxy ends on the destination's own cancel, mirrored.
    assert_eq!((last["kind"].as_str(), last["source"].as_str()), (Some("task.cancelled"), Some("transport")));
    Ok(())
}

#[tokio::test]
async fn a_stream_closed_early_is_reopened_with_last_event_id_and_reaches_the_real_outcome() -> Result {
    let (a, mut b) = pair().await?;
    let proxy = relay(&a, json!({ "mode": "await_input" })).await?;
    a.wait_status(&proxy, "awaiting_input").await?;
    let dest = destination_task(&a, &proxy).await?;
    // The destination restarts where the origin expects it: its stream closes without a terminal
    // frame, and its loopback task (which keeps nothing across a restart) fails `interrupted`.
    let (port, dir) = (port_of(&b)?, b.dir.clone());
    b.stop()?;
    let b = destination_in(&dir, port)?;
    let task = wait_long(&a, &proxy, "failed", 30).await?;
    assert_eq!(task["last_error"]["reason"], "interrupted", "the destination's outcome, not a relay failure: {task}");
    assert_eq!(b.task(&dest).await?["status"], "failed");
    let events = a.events_until_done(&proxy).await?;
    assert_mirrored_once(&events);
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["source"], "transport", "{last}");
    Ok(())
}

#[tokio::test]
async fn a_destination_that_stays_down_fails_the_proxy_remote_event_stream_failed() -> Result {
    let (a, mut b) = pair().await?;
    let proxy = relay(&a, json!({ "mode": "await_input" })).await?;
    a.wait_status(&proxy, "awaiting_input").await?;
    b.kill()?;
    let task = wait_long(&a, &proxy, "failed", 30).await?;
    assert_eq!(task["last_error"]["reason"], "remote event stream failed", "{task}");
    let detail = task["last_error"]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("gave up after 5 re-opens"), "{detail}");
    Ok(())
}

#[tokio::test]
async fn after_an_origin_sigkill_the_relay_reattaches_and_completes() -> Result {
    let (mut a, b) = pair().await?;
    let proxy = relay(&a, json!({ "mode": "progress", "steps": 30, "interval_ms": 100 })).await?;
    a.wait_status(&proxy, "running").await?;
    let dest = destination_task(&a, &proxy).await?;
    let dir = a.dir.clone();
    a.kill()?;
    let a = origin_in(&dir)?;
    let task = wait_long(&a, &proxy, "completed", 30).await?;
    assert_eq!(b.task(&dest).await?["status"], "completed");
    let artifact = task["result_artifact_id"].as_str().ok_or("no result")?;
    let (_, result) = a.get(&format!("/v1/artifacts/{artifact}")).await?;
    assert_eq!(result["text"], "completed 30 steps");
    let events = a.events_until_done(&proxy).await?;
    common::assert_contiguous(&events);
    assert_mirrored_once(&events);
    assert!(a.log().contains("re-attaching a relay after an origin restart"), "{}", a.log());
    Ok(())
}

#[tokio::test]
async fn an_origin_killed_before_the_destination_answered_submits_again_and_the_task_runs_once() -> Result {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let (mut a, b) = pair().await?;
    // The destination is frozen: the origin's submit gets no answer.
    let destination = Pid::from_raw(i32::try_from(b.pid())?);
    kill(destination, Signal::SIGSTOP)?;
    let proxy = relay(&a, json!({ "mode": "progress", "steps": 3, "interval_ms": 50 })).await?;
    let waited = a.wait_status(&proxy, "dispatching").await;
    let task = a.task(&proxy).await;
    let dir = a.dir.clone();
    a.kill()?;
    kill(destination, Signal::SIGCONT)?;
    // The dispatch was recorded (a deferred write waits 20 ms at most), the acceptance never was.
    waited?;
    assert!(task?["remote"]["binding"].as_str().is_none(), "accepted while the destination was stopped");
    let a = origin_in(&dir)?;
    let task = wait_long(&a, &proxy, "completed", 30).await?;
    let artifact = task["result_artifact_id"].as_str().ok_or("no result")?;
    let (_, result) = a.get(&format!("/v1/artifacts/{artifact}")).await?;
    assert_eq!(result["text"], "completed 3 steps");
    // Submitted twice (before the kill and after the restart), run once.
    let (_, list) = b.get("/v1/tasks").await?;
    let runs = list["tasks"].as_array().map(Vec::len);
    assert_eq!(runs, Some(1), "{list}");
    assert_eq!(list["tasks"][0]["status"], "completed", "{list}");
    let events = a.events_until_done(&proxy).await?;
    common::assert_contiguous(&events);
    assert_mirrored_once(&events);
    Ok(())
}

#[tokio::test]
async fn a_proxy_awaiting_input_across_an_origin_restart_can_still_be_resumed() -> Result {
    let (mut a, b) = pair().await?;
    let proxy = relay(&a, json!({ "mode": "await_input" })).await?;
    a.wait_status(&proxy, "awaiting_input").await?;
    let dest = destination_task(&a, &proxy).await?;
    let dir = a.dir.clone();
    a.stop()?;
    let a = origin_in(&dir)?;
    assert_eq!(a.task(&proxy).await?["status"], "awaiting_input");
    let mut accepted = None;
    // Re-attach is asynchronous; a resume before it holds the task is refused with a clear error.
    for _ in 0..100 {
        let (status, v) = a.post(&format!("/v1/tasks/{proxy}/resume"), json!({ "payload": { "ok": 1 } })).await?;
        if status == 202 {
            accepted = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted.is_some(), "resume never accepted after the restart");
    a.wait_status(&proxy, "completed").await?;
    assert_eq!(b.task(&dest).await?["status"], "completed");
    Ok(())
}

#[tokio::test]
async fn a_destination_that_lost_the_task_fails_the_proxy_remote_relay_interrupted() -> Result {
    let (mut a, mut b) = pair().await?;
    let proxy = relay(&a, json!({ "mode": "await_input" })).await?;
    a.wait_status(&proxy, "awaiting_input").await?;
    let a_dir = a.dir.clone();
    a.kill()?;
    // The destination is wiped: same address, a fresh database that never saw the task.
    let port = port_of(&b)?;
    b.stop()?;
    let b = destination_in(&tempfile::tempdir()?.keep(), port)?;
    let a = origin_in(&a_dir)?;
    let task = wait_long(&a, &proxy, "failed", 30).await?;
    assert_eq!(task["last_error"]["reason"], "remote relay interrupted", "{task}");
    let events = a.events_until_done(&proxy).await?;
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(
        (last["message"].as_str(), last["source"].as_str(), last["data"]["relay_status"].as_str()),
        (Some("Remote relay interrupted by origin restart"), Some("transport"), Some("relay_interrupted"))
    );
    drop(b);
    Ok(())
}
