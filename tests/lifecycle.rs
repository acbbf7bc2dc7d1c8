//! Every lifecycle path of the loopback runtime, through the real binary over HTTP and SSE.

mod common;

use std::time::Duration;

use common::{Node, Result, assert_contiguous, kinds};
use serde_json::json;

const WARM_PREFIX: [&str; 5] = ["task.created", "task.routed", "runtime.ready", "task.dispatching", "task.dispatching"];

#[tokio::test]
async fn echo_completes_with_result_and_artifacts() -> Result {
    let node = Node::start()?;
    let (status, created) = node
        .post(
            "/v1/tasks",
            json!({"target_agent_id": "echo", "intent": "demo.echo", "payload": {"text": "hi"},
                   "runtime_options": {"nested": {"b": 2}}, "metadata": {"origin": "test"}, "sender": "agent-a"}),
        )
        .await?;
    assert_eq!(status, 202, "{created}");
    let task = &created["task"];
    let id = task["task_id"].as_str().ok_or("id")?;
    assert_eq!(
        created["links"],
        json!({"self": format!("/v1/tasks/{id}"), "events": format!("/v1/tasks/{id}/events")})
    );
    assert_eq!(task["status"], "created");
    assert_eq!(task["sender"], "agent-a");
    assert_eq!(task["requested_agent_id"], "echo");
    assert_eq!(
        task["runtime_options"],
        json!({"greeting": "hello", "nested": {"a": 1, "b": 2}}),
        "deep-merged over defaults"
    );
    assert_eq!(task["delivery"], json!({"mode": "stream", "launch_if_down": true}));
    assert_eq!(task["metadata"], json!({"origin": "test"}));
    assert_eq!(task["conversation_id"].as_str().map(str::len), Some(26), "conversation id generated");

    let events = node.events_until_done(id).await?;
    let mut expected: Vec<&str> = WARM_PREFIX.to_vec();
    expected.extend(["task.running", "task.completed"]);
    assert_eq!(kinds(&events), expected);
    assert_contiguous(&events);
    assert_eq!(events[4]["source"], "adapter");
    assert_eq!(events[1]["data"]["resolved_agent_id"], "echo");
    let last = events.last().ok_or("no events")?;
    assert_eq!(last["data"]["result"], json!({"text": "hi"}));

    let done = node.task(id).await?;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["metadata"], json!({"origin": "test"}), "metadata persisted");
    assert_eq!(done["remote"]["binding"], "loopback");
    let result_id = done["result_artifact_id"].as_str().ok_or("result artifact")?;
    for prefix in ["/artifacts/", "/v1/artifacts/"] {
        let resp = node.http.get(node.url(&format!("{prefix}{result_id}"))).send().await?;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.json::<serde_json::Value>().await?, json!({"text": "hi"}));
    }
    let payload_id = done["payload_artifact_id"].as_str().ok_or("payload artifact")?;
    let (status, payload) = node.get(&format!("/v1/artifacts/{payload_id}")).await?;
    assert_eq!((status, payload), (200, json!({"text": "hi"})));
    Ok(())
}

#[tokio::test]
async fn large_artifacts_go_to_files_and_round_trip() -> Result {
    let node = Node::start()?;
    let text = "x".repeat(40_000);
    let id = node.create(json!({"text": text})).await?;
    node.events_until_done(&id).await?;
    let done = node.task(&id).await?;
    let result_id = done["result_artifact_id"].as_str().ok_or("artifact")?;
    assert!(node.dir.join("artifacts").join(format!("{result_id}.bin")).exists(), "large result stored as a file");
    let (status, body) = node.get(&format!("/v1/artifacts/{result_id}")).await?;
    assert_eq!(status, 200);
    assert_eq!(body["text"].as_str().map(str::len), Some(40_000));
    Ok(())
}

#[tokio::test]
async fn progress_emits_each_step_then_completes() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"mode": "progress", "steps": 4, "interval_ms": 5})).await?;
    let events = node.events_until_done(&id).await?;
    assert_contiguous(&events);
    let steps: Vec<u64> = events.iter().filter_map(|e| e["data"]["step"].as_u64()).collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
    assert_eq!(kinds(&events).iter().filter(|k| *k == "task.running").count(), 5, "accepted + 4 steps");
    assert_eq!(events.last().map(|e| e["state"].clone()), Some(json!("completed")));
    Ok(())
}

#[tokio::test]
async fn await_input_resume_completes_with_the_resume_payload() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"mode": "await_input", "prompt": "approve?"})).await?;
    node.wait_status(&id, "awaiting_input").await?;
    let (status, body) =
        node.post(&format!("/v1/tasks/{id}/resume"), json!({"payload": {"text": "yes", "n": 1}})).await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["task_id"], id.as_str());
    let events = node.events_until_done(&id).await?;
    assert_contiguous(&events);
    let k = kinds(&events);
    let tail: Vec<&str> = k.iter().skip(6).map(String::as_str).collect();
    assert_eq!(tail, ["task.awaiting_input", "task.resume_requested", "task.resumed", "task.completed"]);
    let awaiting = &events[6];
    assert_eq!(awaiting["data"]["prompt"], "approve?");
    assert_eq!(events[7]["state"], "awaiting_input", "resume_requested keeps the state");
    assert_eq!(events[8]["state"], "running");
    assert_eq!(events[9]["data"]["result"]["resume"], json!({"text": "yes", "n": 1}));
    assert_eq!(events[9]["data"]["result"]["text"], "yes");

    // Resume only from awaiting_input.
    let (status, body) = node.post(&format!("/v1/tasks/{id}/resume"), json!({"payload": {}})).await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["status"], "completed");
    assert!(body["error"].as_str().unwrap_or("").contains("not awaitable"));
    Ok(())
}

#[tokio::test]
async fn resume_of_a_running_task_is_409_and_appends_nothing() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"mode": "hang"})).await?;
    node.wait_status(&id, "running").await?;
    let (status, body) = node.post(&format!("/v1/tasks/{id}/resume"), json!({"payload": {}})).await?;
    assert_eq!((status, body["status"].clone()), (409, json!("running")), "{body}");
    let resp =
        node.http.get(node.url(&format!("/v1/tasks/{id}/events"))).header("accept", "application/json").send().await?;
    let history: serde_json::Value = resp.json().await?;
    assert!(!kinds(history["events"].as_array().ok_or("events")?).contains(&"task.resume_requested".to_owned()));
    Ok(())
}

#[tokio::test]
async fn fail_records_the_reason() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"mode": "fail", "reason": "disk on fire"})).await?;
    let events = node.events_until_done(&id).await?;
    let last = events.last().ok_or("events")?;
    assert_eq!((last["kind"].clone(), last["state"].clone()), (json!("task.failed"), json!("failed")));
    let t = node.task(&id).await?;
    assert_eq!(t["status"], "failed");
    assert_eq!(t["last_error"]["reason"], "disk on fire");
    Ok(())
}

#[tokio::test]
async fn unknown_loopback_mode_fails_the_task_with_a_clear_reason() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"mode": "teleport"})).await?;
    node.events_until_done(&id).await?;
    let t = node.task(&id).await?;
    assert_eq!(t["last_error"]["reason"], "submit_failed");
    assert!(t["last_error"]["detail"].as_str().unwrap_or("").contains("unknown loopback mode 'teleport'"));
    Ok(())
}

#[tokio::test]
async fn sleep_completes_after_the_delay() -> Result {
    let node = Node::start()?;
    let started = std::time::Instant::now();
    let id = node.create(json!({"mode": "sleep", "ms": 300})).await?;
    let events = node.events_until_done(&id).await?;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(events.last().map(|e| e["data"]["result"]["slept_ms"].clone()), Some(json!(300)));
    Ok(())
}

#[tokio::test]
async fn cancel_during_work_then_cancel_again_is_a_noop() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"mode": "hang"})).await?;
    node.wait_status(&id, "running").await?;
    let (status, body) = node.post(&format!("/v1/tasks/{id}/cancel"), json!({"reason": "changed my mind"})).await?;
    assert!(status == 202 || status == 200, "{status} {body}");
    let events = node.events_until_done(&id).await?;
    assert_contiguous(&events);
    let k = kinds(&events);
    assert_eq!(&k[k.len() - 2..], ["task.cancel_requested", "task.cancelled"]);
    assert_eq!(events[k.len() - 2]["data"]["reason"], "changed my mind");
    assert_eq!(events[k.len() - 2]["state"], "running", "cancel_requested keeps the state");
    let count = events.len();

    let (status, body) = node.post(&format!("/v1/tasks/{id}/cancel"), json!({})).await?;
    assert_eq!((status, body["status"].clone()), (200, json!("cancelled")));
    let again = node.events_until_done(&id).await?;
    assert_eq!(again.len(), count, "no event after a terminal state");
    Ok(())
}

#[tokio::test]
async fn cancel_while_awaiting_input() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"mode": "await_input"})).await?;
    node.wait_status(&id, "awaiting_input").await?;
    let (status, _) = node.post_raw(&format!("/v1/tasks/{id}/cancel"), "application/json", "").await?;
    assert!(status == 202 || status == 200);
    let t = node.wait_status(&id, "cancelled").await?;
    assert_eq!(t["status"], "cancelled");
    Ok(())
}

#[tokio::test]
async fn cancel_of_a_completed_task_is_200_without_event() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"text": "x"})).await?;
    let before = node.events_until_done(&id).await?;
    let (status, body) = node.post(&format!("/v1/tasks/{id}/cancel"), json!({})).await?;
    assert_eq!((status, body), (200, json!({"task_id": id, "status": "completed"})));
    assert_eq!(node.events_until_done(&id).await?.len(), before.len());
    Ok(())
}

#[tokio::test]
async fn delivery_timeout_fails_the_task_with_reason_timeout() -> Result {
    let node = Node::start()?;
    let id = node
        .create_with(json!({"target_agent_id": "echo", "intent": "demo.echo", "payload": {"mode": "hang"}, "delivery": {"timeout_ms": 200}}))
        .await?;
    let events = node.events_until_done(&id).await?;
    let last = events.last().ok_or("events")?;
    assert_eq!(last["kind"], "task.failed");
    let t = node.task(&id).await?;
    assert_eq!(t["last_error"]["reason"], "timeout");
    assert_eq!(
        t["delivery"],
        json!({"mode": "stream", "launch_if_down": true, "timeout_ms": 200}),
        "partial delivery defaults per field"
    );
    Ok(())
}

#[tokio::test]
async fn routing_by_intent_and_its_errors() -> Result {
    let node = Node::start()?;
    // Unique capability → routed.
    let (status, v) = node.post("/v1/tasks", json!({"intent": "other.only", "payload": {"text": "a"}})).await?;
    assert_eq!(status, 202);
    assert_eq!(v["task"]["resolved_agent_id"], "other");
    assert!(v["task"].get("requested_agent_id").is_none());
    // target_runtime is accepted as an alias of target_agent_id.
    let (status, v) = node.post("/v1/tasks", json!({"target_runtime": "echo", "intent": "demo.echo"})).await?;
    assert_eq!((status, v["task"]["resolved_agent_id"].clone()), (202, json!("echo")));
    let cases = [
        (json!({"target_agent_id": "ghost", "intent": "demo.echo"}), 404, "target agent not found"),
        (json!({"target_agent_id": "other", "intent": "demo.echo"}), 422, "cannot satisfy intent"),
        (json!({"intent": "nobody.does.this"}), 404, "route not found"),
        (json!({"intent": "shared.cap"}), 409, "routing conflict"),
    ];
    for (body, code, text) in cases {
        let (status, v) = node.post("/v1/tasks", body.clone()).await?;
        assert_eq!(status, code, "{body} → {v}");
        assert!(v["error"].as_str().unwrap_or("").contains(text), "{v}");
    }
    Ok(())
}

#[tokio::test]
async fn list_filters_and_cursor() -> Result {
    let node = Node::start()?;
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = node
            .create_with(json!({"target_agent_id": "echo", "intent": "demo.echo", "payload": {"text": "x"},
                                "sender": if i % 2 == 0 { "even" } else { "odd" }, "conversation_id": "conv-1"}))
            .await?;
        node.events_until_done(&id).await?;
        ids.push(id);
    }
    let (status, page) = node.get("/v1/tasks?limit=2").await?;
    assert_eq!(status, 200);
    let first: Vec<&str> =
        page["tasks"].as_array().ok_or("tasks")?.iter().filter_map(|t| t["task_id"].as_str()).collect();
    assert_eq!(first, [ids[4].as_str(), ids[3].as_str()], "newest first");
    let cursor = page["next_cursor"].as_str().ok_or("cursor")?;
    let (_, page2) = node.get(&format!("/v1/tasks?limit=2&cursor={cursor}")).await?;
    let second: Vec<&str> =
        page2["tasks"].as_array().ok_or("tasks")?.iter().filter_map(|t| t["task_id"].as_str()).collect();
    assert_eq!(second, [ids[2].as_str(), ids[1].as_str()]);
    let (_, evens) = node.get("/v1/tasks?sender=even&status=completed&target=echo&conversation_id=conv-1").await?;
    assert_eq!(evens["tasks"].as_array().map(Vec::len), Some(3));
    assert!(evens["next_cursor"].is_null());
    let (_, none) = node.get("/v1/tasks?status=failed").await?;
    assert_eq!(none["tasks"], json!([]));
    Ok(())
}
