//! Relayed tasks where the Go node is defective (contract §9.6), black-box with real
//! `alink-node` processes: resume and cancel of a proxy task are relayed to the destination; a
//! destination stream that closes early is re-opened with `Last-Event-ID` and reaches the
//! destination's real outcome (or fails `remote event stream failed` past the bound); after an
//! origin SIGKILL the relay re-attaches from the last mirrored seq (or, killed before it heard
//! the destination accept, submits again and the destination runs the task once); a destination
//! that lost the task fails the proxy `remote relay interrupted`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// A finished proxy's history: contiguous seqs, each destination frame mirrored at most once.
async fn assert_clean_mirror(a: &Node, proxy: &str) -> Result {
    let events = a.events_until_done(proxy).await?;
    common::assert_contiguous(&events);
    assert_mirrored_once(&events);
    Ok(())
}

/// The result artifact of a finished task.
async fn result_of(node: &Node, task: &Value) -> Result<Value> {
    let artifact = task["result_artifact_id"].as_str().ok_or("no result")?;
    Ok(node.get(&format!("/v1/artifacts/{artifact}")).await?.1)
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
    let result = result_of(&a, &task).await?;
    assert!(result.to_string().contains("approved"), "{result}");
    assert_clean_mirror(&a, &proxy).await?;
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
    let result = result_of(&a, &task).await?;
    assert_eq!(result["text"], "completed 30 steps");
    assert_clean_mirror(&a, &proxy).await?;
    assert!(a.log().contains("re-attaching a relay after an origin restart"), "{}", a.log());
    Ok(())
}

/// A TCP relay in front of a node: it forwards every request, and on connections accepted while
/// `hold` is set it never forwards the answers — a submit that reaches the destination whose
/// answer the origin never gets (a network fault no real peer can be made to have on cue).
struct AnswerHolder {
    base: String,
    hold: Arc<AtomicBool>,
}

async fn answer_holder(upstream: &str) -> Result<AnswerHolder> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let hold = Arc::new(AtomicBool::new(false));
    let holding = hold.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let held = holding.load(Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let requests = tokio::spawn(async move { tokio::io::copy(&mut from_client, &mut to_server).await });
                let _ = if held {
                    tokio::io::copy(&mut from_server, &mut tokio::io::sink()).await
                } else {
                    tokio::io::copy(&mut from_server, &mut to_client).await
                };
                requests.abort();
            });
        }
    });
    Ok(AnswerHolder { base, hold })
}

/// The destination's tasks (it runs only this test's).
async fn tasks_of(node: &Node) -> Result<Vec<Value>> {
    let (_, list) = node.get("/v1/tasks").await?;
    Ok(list["tasks"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_killed_before_it_heard_the_acceptance_submits_again_and_the_task_runs_once() -> Result {
    let b = destination_in(&tempfile::tempdir()?.keep(), 0)?;
    let holder = answer_holder(&b.base).await?;
    let mut a = origin_in(&tempfile::tempdir()?.keep())?;
    let (status, v) = a.post("/v1/peers", json!({ "peer_id": "b", "base_url": holder.base })).await?;
    assert_eq!(status, 201, "{v}");
    let (status, v) = a.post("/v1/peers/b/sync", json!({})).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["peer"]["metadata"]["idempotent_submit"], true, "{v}");
    // The submit reaches the destination, which creates the task; its acceptance never comes back.
    holder.hold.store(true, Ordering::SeqCst);
    let proxy = relay(&a, json!({ "mode": "progress", "steps": 3, "interval_ms": 50 })).await?;
    let mut first = Vec::new();
    for _ in 0..200 {
        first = tasks_of(&b).await?;
        if !first.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let first_id = first.first().and_then(|t| t["task_id"].as_str()).ok_or("the submit never reached b")?.to_owned();
    // The dispatch is recorded (a deferred write waits 20 ms at most), the acceptance is not.
    let held = a.wait_status(&proxy, "dispatching").await?;
    assert!(held["remote"]["binding"].as_str().is_none(), "{held}");
    let dir = a.dir.clone();
    a.kill()?;
    holder.hold.store(false, Ordering::SeqCst);
    let a = origin_in(&dir)?;
    let task = wait_long(&a, &proxy, "completed", 30).await?;
    assert_eq!(task["remote"]["binding"].as_str(), Some(first_id.as_str()), "{task}");
    let result = result_of(&a, &task).await?;
    assert_eq!(result["text"], "completed 3 steps");
    // Submitted twice (before the kill and after the restart), run once.
    let runs = tasks_of(&b).await?;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "completed", "{runs:?}");
    assert_clean_mirror(&a, &proxy).await?;
    Ok(())
}

#[tokio::test]
async fn a_retried_proxy_task_is_a_new_task_at_the_destination() -> Result {
    let (a, b) = pair().await?;
    let proxy = relay(&a, json!({ "mode": "fail", "reason": "boom" })).await?;
    let first = wait_long(&a, &proxy, "failed", 10).await?;
    let first_dest = first["remote"]["binding"].as_str().ok_or("first attempt never accepted")?.to_owned();
    let (status, retried) = a.post("/v1/tasks/bulk", json!({ "action": "retry", "ids": [proxy] })).await?;
    assert_eq!((status, retried["applied"].as_u64()), (200, Some(1)), "{retried}");
    let mut second = Value::Null;
    for _ in 0..400 {
        second = a.task(&proxy).await?;
        if second["attempt"] == 2 && second["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!((&second["attempt"], &second["status"]), (&json!(2), &json!("failed")), "{second}");
    let second_dest = second["remote"]["binding"].as_str().ok_or("second attempt never accepted")?;
    assert_ne!(second_dest, first_dest, "the retry replayed the first attempt's destination task");
    let ran = tasks_of(&b).await?;
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert!(ran.iter().all(|t| t["status"] == "failed"), "{ran:?}");
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
