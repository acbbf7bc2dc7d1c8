//! Agents control plane and threads, through the real binary and HTTP.

mod common;

use std::time::Duration;

use common::{Node, NodeOpts, Result};
use serde_json::{Value, json};

fn registry() -> String {
    let a = format!("{}/tests/agents/fake_acp_agent.py", env!("CARGO_MANIFEST_DIR"));
    format!(
        "targets:\n\
         \x20 alice:\n    adapter: acp\n    launch:\n      command: [python3, {a}]\n    capabilities: [chat]\n\
         \x20 bob:\n    adapter: acp\n    launch:\n      command: [python3, {a}]\n    capabilities: [chat]\n\
         \x20 la:\n    adapter: loopback\n    capabilities: [chat]\n\
         \x20 lb:\n    adapter: loopback\n    capabilities: [chat]\n"
    )
}

fn opts() -> NodeOpts {
    NodeOpts { registry: Some(registry()), extra_args: vec![], ..NodeOpts::default() }
}

async fn thread(node: &Node, a: &str, b: &str) -> Result<String> {
    let (status, v) = node.post("/v1/threads", json!({"agent_a_id": a, "agent_b_id": b})).await?;
    assert_eq!(status, 201, "{v}");
    Ok(v["thread"]["thread_id"].as_str().ok_or("thread id")?.to_owned())
}

async fn continue_turn(node: &Node, thread_id: &str, body: Value) -> Result<Value> {
    let (status, v) = node.post(&format!("/v1/threads/{thread_id}/continue"), body).await?;
    assert_eq!(status, 202, "{v}");
    let task = v["task"].clone();
    node.events_until_done(task["task_id"].as_str().ok_or("task id")?).await?;
    Ok(task)
}

async fn turns(node: &Node, thread_id: &str) -> Result<Vec<Value>> {
    Ok(node.get(&format!("/v1/threads/{thread_id}/turns")).await?.1["turns"].as_array().cloned().unwrap_or_default())
}

async fn result_of(node: &Node, task_id: &str) -> Result<String> {
    let t = node.task(task_id).await?;
    let id = t["result_artifact_id"].as_str().ok_or("no result")?;
    Ok(node.get(&format!("/v1/artifacts/{id}")).await?.1["text"].as_str().unwrap_or("").to_owned())
}

async fn until<F: Fn(&Value) -> bool>(node: &Node, path: &str, pred: F) -> Result<Value> {
    for _ in 0..200 {
        let (_, v) = node.get(path).await?;
        if pred(&v) {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{path} never reached the expected state").into())
}

#[tokio::test]
async fn presence_leases_heartbeat_expiry_and_unregister() -> Result {
    let node = Node::start_with(opts())?;
    let (status, v) = node
        .post("/v1/agents/register", json!({"agent_id": "ag", "display_name": "Ag", "transport_kind": "local_managed", "adapter": "loopback", "capabilities": ["ag.work"], "lease_ttl_seconds": 1}))
        .await?;
    assert_eq!(status, 202, "{v}");
    assert_eq!(node.get("/v1/agents/ag").await?.1["status"], "online");
    until(&node, "/v1/agents/ag", |v| v["status"] == "offline").await?;
    for _ in 0..40 {
        if node.log().contains("agent.offline") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(node.log().contains("agent.offline"), "lease lapse logged");
    // Offline agents stay launchable targets.
    let id = node
        .create_with(json!({"target_agent_id": "ag", "intent": "ag.work", "payload": {"text": "still here"}}))
        .await?;
    assert_eq!(node.events_until_done(&id).await?.last().map(|e| e["state"].clone()), Some(json!("completed")));
    let (status, v) = node.post("/v1/agents/ag/heartbeat", json!({"lease_ttl_seconds": 60})).await?;
    assert_eq!((status, v["agent"]["status"].clone()), (202, json!("online")));
    until(&node, "/v1/agents/ag", |v| v["status"] == "online").await?;
    for _ in 0..40 {
        if node.log().contains("agent.online") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(node.log().contains("agent.online"));
    let (status, v) = node.post("/v1/agents/ag/unregister", json!({})).await?;
    assert_eq!((status, v), (200, json!({"agent_id": "ag", "status": "offline"})));
    assert_eq!(node.get("/v1/agents/ag").await?.1["status"], "offline");
    assert_eq!(node.post("/v1/agents/nobody/heartbeat", json!({})).await?.0, 404);
    assert_eq!(node.post("/v1/agents/nobody/unregister", json!({})).await?.0, 404);
    Ok(())
}

#[tokio::test]
async fn targets_list_live_runtime_state() -> Result {
    let node = Node::start_with(opts())?;
    let state = |v: &Value, id: &str| {
        v["targets"].as_array().and_then(|ts| ts.iter().find(|t| t["target_id"] == id).cloned()).unwrap_or_default()
    };
    let (_, v) = node.get("/v1/targets").await?;
    assert_eq!(state(&v, "alice")["state"], "down");
    assert_eq!(state(&v, "la")["state"], "up");
    node.post("/v1/targets/alice/start", json!({})).await?;
    let (_, v) = node.get("/v1/targets").await?;
    let alice = state(&v, "alice");
    assert_eq!(alice["state"], "up");
    assert!(alice["runtimes"][0]["process_id"].as_u64().is_some(), "{alice}");
    assert_eq!(alice["runtimes"][0]["tasks_in_flight"], 0);
    Ok(())
}

#[tokio::test]
async fn thread_creation_is_validated() -> Result {
    let node = Node::start_with(opts())?;
    // Contract §10.2: a missing participant is the same refusal as an identical one.
    assert_eq!(node.post("/v1/threads", json!({"agent_a_id": "la"})).await?.0, 422);
    assert_eq!(node.post("/v1/threads", json!({"agent_a_id": "la", "agent_b_id": "la"})).await?.0, 422);
    assert_eq!(node.post("/v1/threads", json!({"agent_a_id": "la", "agent_b_id": "ghost"})).await?.0, 404);
    assert_eq!(node.post("/v1/threads", json!({"agent_a_id": "la", "agent_b_id": "lb", "x": 1})).await?.0, 400);
    let (status, v) = node.post("/v1/threads", json!({"agent_a_id": "la", "agent_b_id": "lb"})).await?;
    assert_eq!(status, 201);
    let id = v["thread"]["thread_id"].as_str().ok_or("id")?;
    assert_eq!(v["links"]["turns"], format!("/v1/threads/{id}/turns"));
    assert_eq!(v["thread"]["continuity_key"], "la:lb");
    assert_eq!(node.get(&format!("/v1/threads/{id}")).await?.1["status"], "active");
    assert_eq!(node.get("/v1/threads/none").await?.0, 404);
    let (_, list) = node.get("/v1/threads?agent=lb").await?;
    assert_eq!(list["threads"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn manual_continuation_alternates_senders_with_turn_indices() -> Result {
    let node = Node::start_with(opts())?;
    let t = thread(&node, "la", "lb").await?;
    let mut senders = Vec::new();
    for i in 0..4 {
        let task =
            continue_turn(&node, &t, json!({"intent": "chat", "payload": {"text": format!("turn {i}")}})).await?;
        assert_eq!(task["conversation_id"], t.as_str(), "conversation id = thread id");
        assert_eq!(task["thread_id"], t.as_str());
        senders.push(task["sender"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(senders, ["la", "lb", "la", "lb"]);
    let all = turns(&node, &t).await?;
    let idx: Vec<u64> = all.iter().filter_map(|t| t["turn_index"].as_u64()).collect();
    assert_eq!(idx, [1, 2, 3, 4]);
    assert!(all.iter().all(|t| t["status"] == "completed"), "turns mirror their tasks: {all:?}");
    // Explicit sender/target and the 422 cases.
    let task = continue_turn(&node, &t, json!({"intent": "chat", "sender": "lb", "target_agent_id": "la"})).await?;
    assert_eq!((task["sender"].clone(), task["resolved_agent_id"].clone()), (json!("lb"), json!("la")));
    for bad in [
        json!({"intent": "chat", "sender": "x"}),
        json!({"intent": "chat", "sender": "la", "target_agent_id": "la"}),
        json!({"intent": "chat", "target_agent_id": "zz"}),
    ] {
        let (status, v) = node.post(&format!("/v1/threads/{t}/continue"), bad.clone()).await?;
        assert_eq!(status, 422, "{bad}: {v}");
    }
    // Thread-bound POST /v1/tasks: sender must be a participant.
    let (status, _) = node.post("/v1/tasks", json!({"thread_id": t, "intent": "chat"})).await?;
    assert_eq!(status, 422, "sender defaults to local, which is not a participant");
    let (status, v) = node.post("/v1/tasks", json!({"thread_id": t, "intent": "chat", "sender": "la"})).await?;
    assert_eq!((status, v["task"]["resolved_agent_id"].clone()), (202, json!("lb")));
    assert_eq!(node.post("/v1/threads/nope/continue", json!({"intent": "chat"})).await?.0, 404);
    Ok(())
}

#[tokio::test]
async fn turns_to_the_same_target_reuse_one_remote_session_and_inspection_says_so() -> Result {
    let node = Node::start_with(opts())?;
    let t = thread(&node, "alice", "bob").await?;
    continue_turn(&node, &t, json!({"intent": "chat", "payload": {"text": "say exactly MANGO"}})).await?; // alice → bob
    continue_turn(&node, &t, json!({"intent": "chat", "payload": {"text": "say exactly PEAR"}})).await?; // bob → alice
    let t3 =
        continue_turn(&node, &t, json!({"intent": "chat", "payload": {"text": "What did I ask you to say exactly?"}}))
            .await?; // alice → bob
    assert_eq!(t3["resolved_agent_id"], "bob");
    assert_eq!(
        result_of(&node, t3["task_id"].as_str().unwrap_or("")).await?,
        "MANGO",
        "bob's session was reused across turns"
    );
    let all = turns(&node, &t).await?;
    assert_eq!(all[0]["remote_session_id"], all[2]["remote_session_id"]);
    assert!(all[0]["remote_session_id"].is_string());
    // Next: bob → alice; alice holds a live session for this thread.
    let (_, view) = node.get(&format!("/v1/threads/{t}/inspect")).await?;
    assert_eq!(
        view["next_continue"],
        json!({"sender_agent_id": "bob", "target_agent_id": "alice", "will_reuse_remote_session": true})
    );
    assert_eq!(view["participants"][0]["owner"], "local");
    let bob =
        view["continuity"].as_array().and_then(|c| c.iter().find(|c| c["agent_id"] == "bob").cloned()).ok_or("bob")?;
    assert_eq!(bob["last_remote_session_id"], all[2]["remote_session_id"]);
    assert_eq!(bob["session_bindings"].as_array().map(Vec::len), Some(1));
    assert!(view.get("interruption_reason").is_none_or(Value::is_null));
    node.post("/v1/targets/alice/stop", json!({})).await?;
    let (_, view) = node.get(&format!("/v1/threads/{t}/inspect")).await?;
    assert_eq!(view["next_continue"]["will_reuse_remote_session"], false, "after target-stop the session is gone");
    Ok(())
}

#[tokio::test]
async fn auto_continue_bounded_by_max_turns_and_stop_flags() -> Result {
    let node = Node::start_with(opts())?;
    let t = thread(&node, "la", "lb").await?;
    let (status, _) = node
        .post(
            &format!("/v1/threads/{t}/continue"),
            json!({"intent": "chat", "payload": {"text": "go"}, "auto_continue": true, "max_turns": 3}),
        )
        .await?;
    assert_eq!(status, 202);
    // Read-your-writes: the plan is recorded before the 202.
    let (_, right_after) = node.get(&format!("/v1/threads/{t}")).await?;
    assert_eq!(right_after["handoff"]["max_turns"], 3, "{right_after}");
    let th = until(&node, &format!("/v1/threads/{t}"), |v| v["handoff"]["active"] == false).await?;
    assert_eq!(th["handoff"]["turns_done"], 3);
    assert!(th["handoff"]["stopped_reason"].as_str().unwrap_or("").contains("max_turns"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = turns(&node, &t).await?;
    assert_eq!(all.len(), 3, "exactly 3 turns");
    let senders: Vec<&str> = all.iter().filter_map(|t| t["sender_agent_id"].as_str()).collect();
    assert_eq!(senders, ["la", "lb", "la"]);

    // stop_on_terminal_error: lb's turn fails (payload keyed by the sender).
    let t2 = thread(&node, "la", "lb").await?;
    node.post(
        &format!("/v1/threads/{t2}/continue"),
        json!({"intent": "chat", "payload_by_agent": {"la": {"text": "hi"}, "lb": {"mode": "fail", "reason": "boom"}}, "auto_continue": true, "max_turns": 5, "stop_on_terminal_error": true}),
    )
    .await?;
    let th = until(&node, &format!("/v1/threads/{t2}"), |v| v["handoff"]["active"] == false).await?;
    assert!(th["handoff"]["stopped_reason"].as_str().unwrap_or("").contains("stop_on_terminal_error"), "{th}");
    assert_eq!(turns(&node, &t2).await?.len(), 2);
    let (_, view) = node.get(&format!("/v1/threads/{t2}/inspect")).await?;
    assert_eq!(view["interruption_reason"], "last task failed: boom");

    // Without the flag a failed turn does not stop the run.
    let t3 = thread(&node, "la", "lb").await?;
    node.post(&format!("/v1/threads/{t3}/continue"), json!({"intent": "chat", "payload_by_agent": {"la": {"text": "hi"}, "lb": {"mode": "fail"}}, "auto_continue": true, "max_turns": 3})).await?;
    until(&node, &format!("/v1/threads/{t3}"), |v| v["handoff"]["active"] == false).await?;
    assert_eq!(turns(&node, &t3).await?.len(), 3);

    // awaiting_input stops only when asked.
    let t4 = thread(&node, "la", "lb").await?;
    node.post(&format!("/v1/threads/{t4}/continue"), json!({"intent": "chat", "payload": {"mode": "await_input"}, "auto_continue": true, "max_turns": 3, "stop_on_awaiting_input": true})).await?;
    let th = until(&node, &format!("/v1/threads/{t4}"), |v| v["handoff"]["active"] == false).await?;
    assert!(th["handoff"]["stopped_reason"].as_str().unwrap_or("").contains("stop_on_awaiting_input"));
    assert_eq!(turns(&node, &t4).await?.len(), 1);
    let t5 = thread(&node, "la", "lb").await?;
    let (_, v) = node
        .post(
            &format!("/v1/threads/{t5}/continue"),
            json!({"intent": "chat", "payload": {"mode": "await_input"}, "auto_continue": true, "max_turns": 2}),
        )
        .await?;
    let first = v["task"]["task_id"].as_str().ok_or("task")?.to_owned();
    node.wait_status(&first, "awaiting_input").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(turns(&node, &t5).await?.len(), 1, "waits while the turn awaits input");
    node.post(&format!("/v1/tasks/{first}/resume"), json!({"payload": {"text": "ok"}})).await?;
    until(&node, &format!("/v1/threads/{t5}"), |v| v["handoff"]["turns_done"] == 2).await?;
    Ok(())
}

#[tokio::test]
async fn restart_interrupts_in_flight_threads_and_keeps_idle_ones_active() -> Result {
    let mut node = Node::start_with(opts())?;
    let dir = node.dir.clone();
    let busy = thread(&node, "la", "lb").await?;
    let (_, v) = node
        .post(&format!("/v1/threads/{busy}/continue"), json!({"intent": "chat", "payload": {"mode": "hang"}}))
        .await?;
    node.wait_status(v["task"]["task_id"].as_str().ok_or("task")?, "running").await?;
    let idle = thread(&node, "la", "lb").await?;
    continue_turn(&node, &idle, json!({"intent": "chat", "payload": {"text": "done"}})).await?;
    node.stop()?;

    let node = Node::start_in(&dir, opts())?;
    let (_, b) = node.get(&format!("/v1/threads/{busy}")).await?;
    assert_eq!(b["status"], "interrupted");
    assert_eq!(b["interruption_reason"], "restart interrupted the thread while the last task was still in progress");
    let (_, view) = node.get(&format!("/v1/threads/{busy}/inspect")).await?;
    assert_eq!(view["interruption_reason"], b["interruption_reason"]);
    assert_eq!(node.get(&format!("/v1/threads/{idle}")).await?.1["status"], "active");
    // The idle one continues; the interrupted one is re-activated by continuing.
    let task = continue_turn(&node, &idle, json!({"intent": "chat", "payload": {"text": "again"}})).await?;
    assert_eq!(task["sender"], "lb");
    assert_eq!(turns(&node, &idle).await?.len(), 2);
    continue_turn(&node, &busy, json!({"intent": "chat", "payload": {"text": "resume"}})).await?;
    assert_eq!(node.get(&format!("/v1/threads/{busy}")).await?.1["status"], "active");
    Ok(())
}

#[tokio::test]
async fn auto_handoff_progress_survives_a_restart() -> Result {
    let mut node = Node::start_with(opts())?;
    let dir = node.dir.clone();
    // Turn 1 (la → lb) hangs; the plan allows 3 turns and continues past failures.
    let go_on = thread(&node, "la", "lb").await?;
    let (_, v) = node
        .post(&format!("/v1/threads/{go_on}/continue"), json!({"intent": "chat", "payload_by_agent": {"la": {"mode": "hang"}, "lb": {"text": "next"}}, "auto_continue": true, "max_turns": 3}))
        .await?;
    node.wait_status(v["task"]["task_id"].as_str().ok_or("task")?, "running").await?;
    // Same, but asked to stop on a terminal error.
    let stops = thread(&node, "la", "lb").await?;
    let (_, v) = node
        .post(&format!("/v1/threads/{stops}/continue"), json!({"intent": "chat", "payload": {"mode": "hang"}, "auto_continue": true, "max_turns": 3, "stop_on_terminal_error": true}))
        .await?;
    node.wait_status(v["task"]["task_id"].as_str().ok_or("task")?, "running").await?;
    node.stop()?;

    let node = Node::start_in(&dir, opts())?;
    // Turn 1 was interrupted by the restart; the first plan goes on from the persisted progress.
    // (Turn 3 is la's again, whose payload hangs: the plan has created all 3 turns.)
    let th = until(&node, &format!("/v1/threads/{go_on}"), |v| v["handoff"]["turns_done"] == 3).await?;
    assert_eq!(th["status"], "active", "creating a turn re-activates the interrupted thread");
    let all = turns(&node, &go_on).await?;
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["status"], "failed");
    // The second stops, with the reason recorded in the thread.
    let th = until(&node, &format!("/v1/threads/{stops}"), |v| v["handoff"]["active"] == false).await?;
    assert!(th["handoff"]["stopped_reason"].as_str().unwrap_or("").contains("interrupted"), "{th}");
    assert_eq!(turns(&node, &stops).await?.len(), 1);
    assert_eq!(th["status"], "interrupted");
    Ok(())
}

#[tokio::test]
async fn a_threads_turns_use_the_thread_id_as_conversation_and_sticky_key() -> Result {
    let node = Node::start_with(opts())?;
    let t = thread(&node, "alice", "bob").await?;
    let turn = continue_turn(&node, &t, json!({"intent": "chat", "payload": {"text": "say exactly KIWI"}})).await?;
    assert_eq!(turn["conversation_id"], t.as_str(), "a thread turn's conversation is the thread");
    assert_eq!(result_of(&node, turn["task_id"].as_str().unwrap_or("")).await?, "KIWI");
    let (_, view) = node.get(&format!("/v1/threads/{t}/inspect")).await?;
    let bob =
        view["continuity"].as_array().and_then(|c| c.iter().find(|c| c["agent_id"] == "bob").cloned()).ok_or("bob")?;
    let bindings = bob["session_bindings"].as_array().cloned().unwrap_or_default();
    assert_eq!(bindings.len(), 1, "{view}");
    assert_eq!(bindings[0]["sticky_key"], t.as_str(), "the binding's sticky key is the thread id: {view}");
    let (status, body) = node.post("/v1/threads", json!({"agent_b_id": "bob"})).await?;
    assert_eq!(status, 422);
    assert!(body["error"].as_str().is_some_and(|e| e.starts_with("thread agent pair invalid")), "{body}");
    Ok(())
}

/// The result text of a turn's task.
async fn turn_result(node: &Node, turn: &Value) -> Result<String> {
    let task_id = turn["task_id"].as_str().ok_or("turn without task")?;
    let task = node.wait_status(task_id, "completed").await?;
    let artifact = task["result_artifact_id"].as_str().ok_or("no result")?;
    let (_, result) = node.get(&format!("/v1/artifacts/{artifact}")).await?;
    Ok(result["text"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn auto_continue_passes_each_turns_result_to_the_next_unless_told_not_to() -> Result {
    let node = Node::start_with(opts())?;
    let payloads = json!({"la": {"text": "from la"}, "lb": {"text": "from lb"}});
    for (pass_result, second) in [(None, "from la"), (Some(false), "from lb")] {
        let t = thread(&node, "la", "lb").await?;
        let mut body = json!({"intent": "chat", "payload_by_agent": payloads, "auto_continue": true, "max_turns": 2});
        if let Some(p) = pass_result {
            body["pass_result"] = json!(p);
        }
        assert_eq!(node.post(&format!("/v1/threads/{t}/continue"), body).await?.0, 202);
        until(&node, &format!("/v1/threads/{t}"), |v| v["handoff"]["active"] == false).await?;
        let all = turns(&node, &t).await?;
        assert_eq!(all.len(), 2);
        assert_eq!(turn_result(&node, &all[0]).await?, "from la");
        // The second turn (lb → la) echoes its input: the first turn's result, or lb's own payload.
        assert_eq!(turn_result(&node, &all[1]).await?, second, "pass_result {pass_result:?}");
    }
    Ok(())
}
