//! Retries, deadlines and bulk actions, through the real node: a flaky ACP agent completes on
//! its third attempt, a retry timer survives `kill -9`, cancel wins over a scheduled retry, a
//! started turn caught by a restart is retried, each deadline fails its attempt with its own
//! reason, and bulk cancel / retry by filter or ids (with a dry run).

mod common;

use std::time::Duration;

use common::{Node, NodeOpts, Result, kinds};
use serde_json::{Value, json};

fn agent() -> String {
    format!("{}/tests/agents/fake_acp_agent.py", env!("CARGO_MANIFEST_DIR"))
}

/// `fake` (ACP, retried by its target default up to 4 attempts 50 ms apart), `plain` (the same
/// agent without a default), `echo` (loopback).
fn opts() -> NodeOpts {
    let a = agent();
    let registry = format!(
        "targets:\n\
         \x20 fake:\n    adapter: acp\n    launch:\n      command: [python3, {a}]\n    capabilities: [chat]\n\
         \x20   defaults:\n      retry_policy: {{max_attempts: 4, backoff: fixed, initial_delay_ms: 50}}\n\
         \x20 plain:\n    adapter: acp\n    launch:\n      command: [python3, {a}]\n    capabilities: [chat]\n\
         \x20 echo:\n    adapter: loopback\n    capabilities: [demo.echo]\n"
    );
    NodeOpts {
        registry: Some(registry),
        extra_args: vec!["--cancel-grace-ms".into(), "1500".into()],
        ..NodeOpts::default()
    }
}

async fn done(node: &Node, id: &str) -> Result<(Value, Vec<Value>)> {
    let events = node.events_until_done(id).await?;
    Ok((node.task(id).await?, events))
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["kind"] == kind).count()
}

#[tokio::test]
async fn a_flaky_agent_completes_on_its_third_attempt() -> Result {
    let node = Node::start_with(opts())?;
    let counter = node.dir.join("flaky-count");
    let text = format!("!flaky {} 2", counter.display());
    let id = node.create_with(json!({"target_agent_id": "fake", "intent": "chat", "payload": {"text": text}})).await?;
    let (task, events) = done(&node, &id).await?;
    assert_eq!(task["status"], "completed", "{events:?}");
    assert_eq!((task["attempt"].as_u64(), task["max_attempts"].as_u64()), (Some(3), Some(4)), "{task}");
    assert!(task.get("next_retry_at").is_none() && task.get("last_error").is_none(), "{task}");
    assert_eq!(task["retry_policy"]["backoff"], "fixed", "the target default is the task's policy: {task}");
    // Two failed attempts, each a retry_scheduled (never a terminal failed), then the result.
    assert_eq!(count(&events, "task.retry_scheduled"), 2, "{:?}", kinds(&events));
    assert_eq!(count(&events, "task.failed"), 0, "{:?}", kinds(&events));
    let retries: Vec<&Value> = events.iter().filter(|e| e["kind"] == "task.retry_scheduled").collect();
    for (i, r) in retries.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(r["state"], "created");
        assert_eq!((r["data"]["attempt"].as_u64(), r["data"]["next_attempt"].as_u64()), (Some(n), Some(n + 1)), "{r}");
        assert_eq!(r["data"]["reason"], "prompt_failed", "{r}");
        assert_eq!(r["data"]["delay_ms"], 50);
        assert!(r["data"]["next_retry_at"].is_string());
    }
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["data"]["result"]["text"], "ok after 2 failures", "{last}");
    common::assert_contiguous(&events);

    // A request's policy overrides the target default field by field; a reason it does not
    // list fails the task at once.
    let counter2 = node.dir.join("flaky-count-2");
    let text = format!("!flaky {} 1", counter2.display());
    let id = node
        .create_with(json!({"target_agent_id": "fake", "intent": "chat", "payload": {"text": text},
            "retry_policy": {"retry_on": ["timeout"]}}))
        .await?;
    let (task, events) = done(&node, &id).await?;
    assert_eq!((task["status"].as_str(), task["attempt"].as_u64()), (Some("failed"), Some(1)), "{events:?}");
    assert_eq!(task["last_error"]["reason"], "prompt_failed");
    assert_eq!(task["max_attempts"], 4, "{task}");
    Ok(())
}

#[tokio::test]
async fn a_retry_timer_survives_kill_9_and_cancel_wins_over_a_scheduled_retry() -> Result {
    let mut node = Node::start_with(opts())?;
    let policy = json!({"max_attempts": 2, "backoff": "fixed", "initial_delay_ms": 1500});
    let id = node
        .create_with(json!({"target_agent_id": "echo", "intent": "demo.echo",
            "payload": {"mode": "fail", "reason": "boom"}, "retry_policy": policy}))
        .await?;
    let waiting = node.wait_status(&id, "created").await?;
    // Created again once the first attempt failed: the retry is scheduled.
    for _ in 0..100 {
        if node.task(&id).await?["next_retry_at"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = node.task(&id).await?;
    assert!(t["next_retry_at"].is_string(), "{t} (was {waiting})");
    assert_eq!((t["attempt"].as_u64(), t["last_error"]["reason"].as_str()), (Some(2), Some("boom")), "{t}");
    let (_, listed) = node.get("/v1/tasks?retrying=true").await?;
    let ids: Vec<&str> =
        listed["tasks"].as_array().into_iter().flatten().filter_map(|t| t["task_id"].as_str()).collect();
    assert_eq!(ids, vec![id.as_str()], "{listed}");

    // A crash during the backoff: the restarted node re-arms the timer from next_retry_at and
    // runs attempt 2 (which fails again, for good: the policy allows two).
    node.kill()?;
    let dir = node.dir.clone();
    let node = Node::start_in(&dir, opts())?;
    assert_eq!(node.task(&id).await?["status"], "created");
    let (task, events) = done(&node, &id).await?;
    assert_eq!((task["status"].as_str(), task["attempt"].as_u64()), (Some("failed"), Some(2)), "{events:?}");
    assert!(task.get("next_retry_at").is_none(), "{task}");
    assert_eq!(count(&events, "task.retry_scheduled"), 1, "{:?}", kinds(&events));
    let (_, listed) = node.get("/v1/tasks?retrying=true").await?;
    assert_eq!(listed["tasks"], json!([]), "{listed}");

    // Cancel during a backoff: cancelled at once, and no further attempt runs.
    let policy = json!({"max_attempts": 5, "initial_delay_ms": 600});
    let id = node
        .create_with(json!({"target_agent_id": "echo", "intent": "demo.echo",
            "payload": {"mode": "fail", "reason": "boom"}, "retry_policy": policy}))
        .await?;
    for _ in 0..100 {
        if node.task(&id).await?["next_retry_at"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = node.post(&format!("/v1/tasks/{id}/cancel"), json!({})).await?;
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")), "{body}");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (task, events) = done(&node, &id).await?;
    assert_eq!(task["status"], "cancelled", "{task}");
    assert!(task.get("next_retry_at").is_none(), "{task}");
    let after_retry: Vec<String> = kinds(&events).into_iter().skip_while(|k| k != "task.retry_scheduled").collect();
    assert_eq!(after_retry, ["task.retry_scheduled", "task.cancel_requested", "task.cancelled"], "{events:?}");
    Ok(())
}

#[tokio::test]
async fn a_started_turn_caught_by_a_restart_is_retried_by_its_policy() -> Result {
    let mut node = Node::start_with(opts())?;
    let marker = node.dir.join("hang-once");
    let text = format!("!hang-once {}", marker.display());
    let id = node.create_with(json!({"target_agent_id": "fake", "intent": "chat", "payload": {"text": text}})).await?;
    node.wait_status(&id, "running").await?;
    let (code, _) = node.stop()?;
    assert_eq!(code, Some(0));
    let dir = node.dir.clone();
    let node = Node::start_in(&dir, opts())?;
    let (task, events) = done(&node, &id).await?;
    assert_eq!((task["status"].as_str(), task["attempt"].as_u64()), (Some("completed"), Some(2)), "{events:?}");
    let retry = events.iter().find(|e| e["kind"] == "task.retry_scheduled").cloned().unwrap_or_default();
    assert_eq!(retry["data"]["reason"], "interrupted", "{retry}");
    Ok(())
}

#[tokio::test]
async fn each_deadline_fails_its_attempt_with_its_own_reason() -> Result {
    let node = Node::start_with(opts())?;
    // schedule_to_start: the target is paused, so no attempt starts.
    let (status, _) = node.post("/v1/targets/echo/pause", json!({})).await?;
    assert_eq!(status, 200);
    let id = node
        .create_with(json!({"target_agent_id": "echo", "intent": "demo.echo", "payload": {"text": "x"},
            "deadlines": {"schedule_to_start_ms": 300}}))
        .await?;
    let (task, _) = done(&node, &id).await?;
    assert_eq!(task["last_error"]["reason"], "schedule_to_start_timeout", "{task}");
    assert!(task["last_error"]["detail"].as_str().unwrap_or_default().contains("schedule_to_start_ms = 300"));
    assert_eq!(task["deadlines"]["schedule_to_start_ms"], 300);
    let (status, _) = node.post("/v1/targets/echo/resume", json!({})).await?;
    assert_eq!(status, 200);

    // start_to_close: the agent starts and never ends.
    let id = node
        .create_with(json!({"target_agent_id": "plain", "intent": "chat", "payload": {"text": "!hang"},
            "deadlines": {"start_to_close_ms": 600}}))
        .await?;
    let (task, _) = done(&node, &id).await?;
    assert_eq!(task["last_error"]["reason"], "start_to_close_timeout", "{task}");
    assert!(task["attempt_started_at"].is_string(), "{task}");

    // heartbeat: silence after the start; a chatty turn under the same bound completes.
    let id = node
        .create_with(json!({"target_agent_id": "plain", "intent": "chat", "conversation_id": "hb",
            "payload": {"text": "!hang"}, "deadlines": {"heartbeat_timeout_ms": 400}}))
        .await?;
    let (task, _) = done(&node, &id).await?;
    assert_eq!(task["last_error"]["reason"], "heartbeat_timeout", "{task}");
    let id = node
        .create_with(json!({"target_agent_id": "plain", "intent": "chat", "conversation_id": "hb2",
            "payload": {"text": "!structured-heartbeat"}, "deadlines": {"heartbeat_timeout_ms": 1000}}))
        .await?;
    let (task, _) = done(&node, &id).await?;
    assert_eq!(task["status"], "completed", "{task}");

    // A deadline's failure is retried when the policy says so.
    let id = node
        .create_with(json!({"target_agent_id": "plain", "intent": "chat", "conversation_id": "hb3",
            "payload": {"text": "!hang"}, "deadlines": {"heartbeat_timeout_ms": 300},
            "retry_policy": {"max_attempts": 2, "initial_delay_ms": 100, "retry_on": ["heartbeat_timeout"]}}))
        .await?;
    let (task, events) = done(&node, &id).await?;
    assert_eq!(
        (task["status"].as_str(), task["attempt"].as_u64(), task["last_error"]["reason"].as_str()),
        (Some("failed"), Some(2), Some("heartbeat_timeout")),
        "{events:?}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_policies_and_deadlines_are_refused_naming_the_field() -> Result {
    let node = Node::start_with(opts())?;
    let cases = [
        (json!({"retry_policy": {"max_attempts": 0}}), "max_attempts"),
        (json!({"retry_policy": {"max_attempts": 101}}), "max_attempts"),
        (json!({"retry_policy": {"initial_delay_ms": 10, "max_delay_ms": 5}}), "max_delay_ms"),
        (json!({"retry_policy": {"backoff": "random"}}), "random"),
        (json!({"retry_policy": {"colour": "red"}}), "colour"),
        (json!({"deadlines": {"heartbeat_timeout_ms": 0}}), "heartbeat_timeout_ms"),
        (json!({"deadlines": {"run_ms": 5}}), "run_ms"),
    ];
    for (extra, needle) in cases {
        let mut body = json!({"target_agent_id": "echo", "intent": "demo.echo", "payload": {}});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, answer) = node.post("/v1/tasks", body).await?;
        assert!((400..500).contains(&status), "{extra}: {status} {answer}");
        assert!(answer["error"].as_str().unwrap_or_default().contains(needle), "{extra}: {answer}");
    }
    let (_, listed) = node.get("/v1/tasks").await?;
    assert_eq!(listed["tasks"], json!([]), "nothing was created: {listed}");
    Ok(())
}

#[tokio::test]
async fn bulk_cancel_by_filter_with_a_dry_run_then_bulk_retry_by_ids() -> Result {
    let node = Node::start_with(opts())?;
    let mut waiting = Vec::new();
    for _ in 0..5 {
        waiting.push(node.create(json!({"mode": "await_input"})).await?);
    }
    let finished = node.create(json!({"text": "done"})).await?;
    done(&node, &finished).await?;
    for id in &waiting {
        node.wait_status(id, "awaiting_input").await?;
    }
    let filter = json!({"status": ["awaiting_input"], "target": "echo"});
    let (status, dry) =
        node.post("/v1/tasks/bulk", json!({"action": "cancel", "filter": filter, "dry_run": true})).await?;
    assert_eq!(status, 200, "{dry}");
    assert_eq!((dry["matched"].as_u64(), dry["applied"].as_u64()), (Some(5), Some(0)), "{dry}");
    let mut matched: Vec<String> =
        dry["task_ids"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    matched.sort();
    let mut expected = waiting.clone();
    expected.sort();
    assert_eq!(matched, expected);
    assert_eq!(node.task(&waiting[0]).await?["status"], "awaiting_input", "a dry run changes nothing");

    let (status, applied) =
        node.post("/v1/tasks/bulk", json!({"action": "cancel", "filter": filter, "reason": "cleanup"})).await?;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(
        (applied["matched"].as_u64(), applied["applied"].as_u64(), applied["failed"].as_u64()),
        (Some(5), Some(5), Some(0))
    );
    for id in &waiting {
        done(&node, id).await?;
        assert_eq!(node.task(id).await?["status"], "cancelled");
    }

    // An empty filter, neither or both selectors, an unknown field: refused, naming why.
    for body in [
        json!({"action": "cancel", "filter": {}}),
        json!({"action": "cancel"}),
        json!({"action": "cancel", "ids": [finished], "filter": {"status": "running"}}),
        json!({"action": "cancel", "filter": {"colour": "red"}}),
        json!({"action": "explode", "ids": [finished]}),
    ] {
        let (status, answer) = node.post("/v1/tasks/bulk", body.clone()).await?;
        assert!((400..500).contains(&status), "{body}: {status} {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }

    // Retry by ids: the cancelled tasks run again (attempt 2) and await input again; a
    // completed task and an unknown id are listed as failures.
    let mut ids = waiting[..2].to_vec();
    ids.push(finished.clone());
    ids.push("no-such-task".into());
    let (status, retried) = node.post("/v1/tasks/bulk", json!({"action": "retry", "ids": ids})).await?;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(
        (retried["matched"].as_u64(), retried["applied"].as_u64(), retried["failed"].as_u64()),
        (Some(4), Some(2), Some(2)),
        "{retried}"
    );
    let failures = retried["failures"].as_array().cloned().unwrap_or_default();
    assert!(failures.iter().any(|f| f["task_id"] == finished.as_str() && f["status"] == "completed"), "{retried}");
    assert!(failures.iter().any(|f| f["task_id"] == "no-such-task"), "{retried}");
    for id in &waiting[..2] {
        let t = node.wait_status(id, "awaiting_input").await?;
        assert_eq!(t["attempt"], 2, "{t}");
    }
    let (status, _) =
        node.post(&format!("/v1/tasks/{}/resume", waiting[0]), json!({"payload": {"answer": "again"}})).await?;
    assert!(status < 300);
    let (task, events) = done(&node, &waiting[0]).await?;
    assert_eq!(task["status"], "completed", "{events:?}");
    assert!(kinds(&events).contains(&"task.retry_scheduled".to_owned()));
    Ok(())
}

#[tokio::test]
async fn a_deadline_is_re_armed_after_a_restart_with_what_is_left_of_it() -> Result {
    let mut node = Node::start_with(opts())?;
    let (status, _) = node.post("/v1/targets/echo/pause", json!({})).await?;
    assert_eq!(status, 200);
    let id = node
        .create_with(json!({"target_agent_id": "echo", "intent": "demo.echo", "payload": {"text": "x"},
            "deadlines": {"schedule_to_start_ms": 1500}}))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.kill()?;
    let dir = node.dir.clone();
    let node = Node::start_in(&dir, opts())?;
    // The target is still paused: only the re-armed deadline can end the task.
    let (task, _) = done(&node, &id).await?;
    assert_eq!(task["last_error"]["reason"], "schedule_to_start_timeout", "{task}");
    Ok(())
}
