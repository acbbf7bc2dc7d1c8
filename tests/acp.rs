//! The ACP stdio adapter through the real node, over HTTP/SSE, against the test-double agent
//! `tests/agents/fake_acp_agent.py` (real child processes, real JSON-RPC over stdio).

mod common;

use std::time::Duration;

use common::{Node, NodeOpts, Result, assert_contiguous, kinds};
use serde_json::{Value, json};

fn agent() -> String {
    format!("{}/tests/agents/fake_acp_agent.py", env!("CARGO_MANIFEST_DIR"))
}

/// A registry with ACP targets on the fake agent.
fn registry(extra: &str) -> String {
    let a = agent();
    format!(
        "targets:\n\
         \x20 fake:\n    adapter: acp\n    launch:\n      command: [python3, {a}]\n    capabilities: [chat]\n\
         \x20 loader:\n    adapter: acp\n    launch:\n      command: [python3, {a}, --load-session, --state, state.json]\n    capabilities: [load]\n\
         \x20 broken:\n    adapter: acp\n    launch:\n      command: [python3, {a}, --mode, exit-before-init]\n    capabilities: [broken]\n\
         \x20 hanging:\n    adapter: acp\n    launch:\n      command: [python3, {a}, --mode, hang-init]\n      timeout_ms: 700\n    capabilities: [hanging]\n\
         \x20 allow:\n    adapter: acp\n    permissions: allow\n    launch:\n      command: [python3, {a}]\n    capabilities: [allow]\n\
         \x20 idle:\n    adapter: acp\n    launch:\n      command: [python3, {a}]\n      idle_timeout_ms: 300\n    capabilities: [idle]\n\
         \x20 sticky:\n    adapter: acp\n    launch:\n      command: [sh, -c, \"python3 {a}; sleep 300; true\"]\n    capabilities: [sticky]\n\
         {extra}"
    )
}

fn opts() -> NodeOpts {
    NodeOpts {
        registry: Some(registry("")),
        extra_args: vec!["--cancel-grace-ms".into(), "1500".into()],
        ..NodeOpts::default()
    }
}

async fn task(node: &Node, target: &str, text: &str, extra: Value) -> Result<String> {
    let intent = node.get("/v1/targets").await?.1["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["target_id"] == target))
        .and_then(|t| t["capabilities"][0].as_str().map(str::to_owned))
        .ok_or("target")?;
    let mut body = json!({"target_agent_id": target, "intent": intent, "payload": {"text": text}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    node.create_with(body).await
}

async fn run(node: &Node, target: &str, text: &str, extra: Value) -> Result<Vec<Value>> {
    let id = task(node, target, text, extra).await?;
    node.events_until_done(&id).await
}

fn result_text(events: &[Value]) -> String {
    events.last().and_then(|e| e["data"]["result"]["text"].as_str()).unwrap_or("").to_owned()
}

fn launch_pid(events: &[Value]) -> Option<u64> {
    events.iter().find(|e| e["kind"] == "runtime.launching").and_then(|e| e["data"]["pid"].as_u64())
}

fn group_alive(pgid: u64) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("for p in /proc/[0-9]*; do s=$(cat $p/stat 2>/dev/null) || continue; set -- ${{s##*)}}; [ \"$3\" = {pgid} ] && [ \"$1\" != Z ] && exit 0; done; exit 1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

async fn wait_gone(pgid: u64) -> bool {
    for _ in 0..200 {
        if !group_alive(pgid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test]
async fn cold_launch_sequence_then_warm_reuse() -> Result {
    let node = Node::start_with(opts())?;
    let cold = run(&node, "fake", "say exactly ONE", json!({})).await?;
    assert_contiguous(&cold);
    assert_eq!(
        kinds(&cold),
        [
            "task.created",
            "task.routed",
            "runtime.pending_launch",
            "runtime.launching",
            "runtime.ready",
            "task.dispatching",
            "task.dispatching",
            "task.running",
            "task.running",
            "task.completed"
        ]
    );
    assert_eq!(cold[6]["data"]["binding"], "acp_stdio");
    assert_eq!(result_text(&cold), "ONE");
    assert_eq!(cold.last().map(|e| e["data"]["result"]["stop_reason"].clone()), Some(json!("end_turn")));
    let warm = run(&node, "fake", "hello", json!({})).await?;
    assert!(!kinds(&warm).contains(&"runtime.launching".to_owned()), "warm: {:?}", kinds(&warm));
    assert_eq!(result_text(&warm), "echo: hello");
    let (_, health) = node.get("/v1/targets/fake/health").await?;
    assert_eq!((health["healthy"].clone(), health["state"].clone()), (json!(true), json!("up")));
    assert_eq!(health["process_id"].as_u64(), launch_pid(&cold));
    let (_, launches) = node.get("/v1/targets/fake/launches").await?;
    assert_eq!(launches["launches"].as_array().map(Vec::len), Some(1));
    assert_eq!(launches["launches"][0]["status"], "ready");
    Ok(())
}

#[tokio::test]
async fn concurrent_first_tasks_cause_exactly_one_launch() -> Result {
    let node = std::sync::Arc::new(Node::start_with(opts())?);
    let mut handles = Vec::new();
    for i in 0..6 {
        let node = node.clone();
        handles.push(tokio::spawn(async move { run(&node, "fake", &format!("n{i}"), json!({})).await }));
    }
    let mut pids = std::collections::HashSet::new();
    for h in handles {
        let events = h.await??;
        assert_eq!(events.last().map(|e| e["state"].clone()), Some(json!("completed")), "{events:?}");
        pids.extend(launch_pid(&events));
    }
    assert_eq!(pids.len(), 1, "every waiting task saw the same launch");
    let (_, launches) = node.get("/v1/targets/fake/launches").await?;
    assert_eq!(launches["launches"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn launch_failure_and_launch_timeout_fail_the_task_with_the_reason() -> Result {
    let node = Node::start_with(opts())?;
    let events = run(&node, "broken", "x", json!({})).await?;
    let last = events.last().ok_or("events")?;
    assert_eq!(last["kind"], "task.failed");
    let id = last["task_id"].as_str().ok_or("id")?;
    let t = node.task(id).await?;
    assert_eq!(t["last_error"]["reason"], "launch_failed");
    let detail = t["last_error"]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("exit status 3") && detail.contains("cannot start"), "{detail}");

    let started = std::time::Instant::now();
    let events = run(&node, "hanging", "x", json!({})).await?;
    let id = events.last().and_then(|e| e["task_id"].as_str()).ok_or("id")?;
    let t = node.task(id).await?;
    assert_eq!(t["last_error"]["reason"], "launch_failed");
    assert!(t["last_error"]["detail"].as_str().unwrap_or("").contains("within 700 ms"), "{t}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let pgid = launch_pid(&events).ok_or("pid")?;
    assert!(wait_gone(pgid).await, "a timed-out launch leaves no process");
    let (_, launches) = node.get("/v1/targets/hanging/launches").await?;
    assert_eq!(launches["launches"][0]["status"], "failed");
    Ok(())
}

#[tokio::test]
async fn launch_if_down_false_on_a_down_runtime_fails_unavailable() -> Result {
    let node = Node::start_with(opts())?;
    let events = run(&node, "fake", "x", json!({"delivery": {"launch_if_down": false}})).await?;
    let id = events.last().and_then(|e| e["task_id"].as_str()).ok_or("id")?;
    assert_eq!(node.task(id).await?["last_error"]["reason"], "runtime unavailable");
    Ok(())
}

#[tokio::test]
async fn crash_mid_task_fails_promptly_and_the_next_task_relaunches() -> Result {
    let node = Node::start_with(opts())?;
    let first = run(&node, "fake", "hello", json!({})).await?;
    let started = std::time::Instant::now();
    let crashed = run(&node, "fake", "!crash", json!({})).await?;
    assert!(started.elapsed() < Duration::from_secs(5), "failed promptly");
    let id = crashed.last().and_then(|e| e["task_id"].as_str()).ok_or("id")?;
    let t = node.task(id).await?;
    assert_eq!(t["status"], "failed");
    assert_eq!(t["last_error"]["reason"], "runtime_exited");
    let next = run(&node, "fake", "again", json!({})).await?;
    assert_eq!(result_text(&next), "echo: again");
    let (old, new) = (launch_pid(&first), launch_pid(&next));
    assert!(new.is_some() && new != old, "a new process: {old:?} → {new:?}");
    let log = node.log();
    assert!(
        log.contains("runtime exited unexpectedly") && log.contains("crashing on purpose"),
        "supervision event with stderr tail"
    );
    Ok(())
}

#[tokio::test]
async fn permission_awaits_input_then_resume_allow_or_reject() -> Result {
    let node = Node::start_with(opts())?;
    for (answer, expected) in [
        (json!({"decision": "allow"}), "allowed"),
        (json!({"decision": "reject"}), "rejected"),
        (json!({"option_id": "allow-once"}), "allowed"),
    ] {
        let id = task(&node, "fake", "!permission", json!({})).await?;
        let awaiting = node.wait_status(&id, "awaiting_input").await?;
        assert_eq!(awaiting["status"], "awaiting_input");
        // A resume that names no offered option is refused before anything is appended.
        let (status, body) = node.post(&format!("/v1/tasks/{id}/resume"), json!({"option_id": "nope"})).await?;
        assert_eq!(status, 400, "{body}");
        let (status, body) = node.post(&format!("/v1/tasks/{id}/resume"), answer.clone()).await?;
        assert_eq!(status, 202, "{body}");
        let events = node.events_until_done(&id).await?;
        assert_contiguous(&events);
        let awaiting_event = events.iter().find(|e| e["kind"] == "task.awaiting_input").ok_or("awaiting event")?;
        assert_eq!(awaiting_event["data"]["options"].as_array().map(Vec::len), Some(2));
        assert_eq!(awaiting_event["data"]["tool_call"]["title"], "Write out.txt");
        let k = kinds(&events);
        assert!(k.contains(&"task.resume_requested".to_owned()) && k.contains(&"task.resumed".to_owned()));
        assert_eq!(result_text(&events), expected, "{answer}");
    }
    // Nothing pending → 409.
    let id = task(&node, "fake", "!hang", json!({})).await?;
    node.wait_status(&id, "running").await?;
    let (status, _) = node.post(&format!("/v1/tasks/{id}/resume"), json!({"decision": "allow"})).await?;
    assert_eq!(status, 409);
    node.post(&format!("/v1/tasks/{id}/cancel"), json!({})).await?;
    Ok(())
}

#[tokio::test]
async fn permission_policy_answers_automatically() -> Result {
    let node = Node::start_with(opts())?;
    let events = run(&node, "allow", "!permission", json!({})).await?;
    assert!(!kinds(&events).contains(&"task.awaiting_input".to_owned()));
    assert_eq!(result_text(&events), "allowed");
    Ok(())
}

#[tokio::test]
async fn cancel_mid_prompt_while_awaiting_and_of_a_stubborn_agent() -> Result {
    let node = Node::start_with(opts())?;
    let id = task(&node, "fake", "!hang", json!({})).await?;
    node.wait_status(&id, "running").await?;
    node.post(&format!("/v1/tasks/{id}/cancel"), json!({"reason": "stop"})).await?;
    let events = node.events_until_done(&id).await?;
    assert_eq!(events.last().map(|e| e["kind"].clone()), Some(json!("task.cancelled")));

    let id = task(&node, "fake", "!permission", json!({})).await?;
    node.wait_status(&id, "awaiting_input").await?;
    node.post(&format!("/v1/tasks/{id}/cancel"), json!({})).await?;
    assert_eq!(node.wait_status(&id, "cancelled").await?["status"], "cancelled");

    // An agent that ignores session/cancel: past the bound its process group is killed.
    let stubborn = task(&node, "fake", "!stubborn", json!({})).await?;
    node.wait_status(&stubborn, "running").await?;
    let (_, health) = node.get("/v1/targets/fake/health").await?;
    let pgid = health["process_id"].as_u64().ok_or("pid")?;
    node.post(&format!("/v1/tasks/{stubborn}/cancel"), json!({})).await?;
    assert_eq!(node.wait_status(&stubborn, "cancelled").await?["status"], "cancelled");
    assert!(wait_gone(pgid).await, "the stubborn agent's group was killed");
    // The runtime comes back for the next task.
    assert_eq!(result_text(&run(&node, "fake", "after", json!({})).await?), "echo: after");
    Ok(())
}

#[tokio::test]
async fn session_reuse_by_conversation_and_session_key() -> Result {
    let node = Node::start_with(opts())?;
    run(&node, "fake", "say exactly KIWI", json!({"conversation_id": "conv-a"})).await?;
    let same = run(&node, "fake", "What did I ask you to say exactly?", json!({"conversation_id": "conv-a"})).await?;
    assert_eq!(result_text(&same), "KIWI");
    let other = run(&node, "fake", "What did I ask you to say exactly?", json!({"conversation_id": "conv-b"})).await?;
    assert_eq!(result_text(&other), "UNKNOWN", "another conversation has another session");
    run(&node, "fake", "say exactly PEAR", json!({"runtime_options": {"session_key": "k1"}})).await?;
    let keyed =
        run(&node, "fake", "What did I ask you to say exactly?", json!({"runtime_options": {"session_key": "k1"}}))
            .await?;
    assert_eq!(result_text(&keyed), "PEAR", "session_key wins over the (fresh) conversation id");
    Ok(())
}

#[tokio::test]
async fn session_load_after_the_runtime_restarted() -> Result {
    let node = Node::start_with(opts())?;
    run(&node, "loader", "say exactly FIG", json!({"conversation_id": "c"})).await?;
    let (status, _) = node.post("/v1/targets/loader/stop", json!({})).await?;
    assert_eq!(status, 202);
    let after = run(&node, "loader", "What did I ask you to say exactly?", json!({"conversation_id": "c"})).await?;
    assert!(kinds(&after).contains(&"runtime.launching".to_owned()), "relaunched");
    assert_eq!(result_text(&after), "FIG", "session/load of the persisted binding");
    Ok(())
}

#[tokio::test]
async fn busy_scope_runs_tasks_fifo() -> Result {
    let node = std::sync::Arc::new(Node::start_with(opts())?);
    run(&node, "fake", "warm up", json!({})).await?;
    let mut ids = Vec::new();
    // The first keeps the scope busy (~300 ms); the others queue behind it instead of failing.
    for text in ["!stream", "say exactly SECOND", "What did I ask you to say exactly?"] {
        ids.push(task(&node, "fake", text, json!({"conversation_id": "fifo"})).await?);
    }
    let mut ends = Vec::new();
    for id in &ids {
        let events = node.events_until_done(id).await?;
        assert_eq!(events.last().map(|e| e["state"].clone()), Some(json!("completed")), "{events:?}");
        ends.push((
            events.last().and_then(|e| e["created_at"].as_str()).unwrap_or("").to_owned(),
            result_text(&events),
        ));
    }
    // One prompt at a time on the session (the agent flags overlapping prompts), in order.
    assert!(ends.iter().all(|(_, text)| !text.contains("OVERLAP")), "{ends:?}");
    assert_eq!(ends[0].1, "c0 c1 c2 c3 c4 c5 c6 c7 c8 c9");
    assert_eq!(ends[2].1, "SECOND", "the third ran after the second: {ends:?}");
    Ok(())
}

#[tokio::test]
async fn garbage_big_lines_and_unoffered_requests_never_hang_a_task() -> Result {
    let node = Node::start_with(opts())?;
    assert_eq!(result_text(&run(&node, "fake", "!garbage", json!({})).await?), "ok");
    let big = run(&node, "fake", "!bigline", json!({})).await?;
    assert_eq!(result_text(&big).len(), 1024 * 1024);
    assert_eq!(result_text(&run(&node, "fake", "!fs", json!({})).await?), "fs error -32601");
    let refused = run(&node, "fake", "!refuse", json!({})).await?;
    let id = refused.last().and_then(|e| e["task_id"].as_str()).ok_or("id")?;
    assert_eq!(node.task(id).await?["last_error"]["reason"], "refusal");
    let streamed = run(&node, "fake", "!stream", json!({})).await?;
    let k = kinds(&streamed);
    assert!(streamed.iter().any(|e| e["data"].get("plan").is_some()), "plan event");
    assert!(streamed.iter().any(|e| e["data"].get("tool_call").is_some()), "tool call event");
    assert!(k.iter().filter(|k| *k == "task.running").count() < 12, "deltas coalesced: {k:?}");
    assert_eq!(result_text(&streamed), "c0 c1 c2 c3 c4 c5 c6 c7 c8 c9");
    Ok(())
}

#[tokio::test]
async fn target_start_stop_health_and_idle_stop() -> Result {
    let node = Node::start_with(opts())?;
    let (status, started) = node.post("/v1/targets/fake/start", json!({})).await?;
    assert_eq!(status, 202, "{started}");
    let pgid = started["process_id"].as_u64().ok_or("pid")?;
    assert!(group_alive(pgid));
    let (status, stopped) = node.post("/v1/targets/fake/stop", json!({})).await?;
    assert_eq!((status, stopped["healthy"].clone()), (202, json!(false)));
    assert!(wait_gone(pgid).await);
    let (_, health) = node.get("/v1/targets/fake/health").await?;
    assert_eq!(health["healthy"], false);
    let (status, _) = node.get("/v1/targets/ghost/health").await?;
    assert_eq!(status, 404);
    // Idle stop.
    let events = run(&node, "idle", "x", json!({})).await?;
    let pgid = launch_pid(&events).ok_or("pid")?;
    assert!(wait_gone(pgid).await, "idle runtime stopped");
    Ok(())
}

#[tokio::test]
async fn no_process_left_after_stop_or_after_kill_9_and_restart() -> Result {
    let mut node = Node::start_with(opts())?;
    let dir = node.dir.clone();
    let events = run(&node, "sticky", "x", json!({})).await?;
    let pgid = launch_pid(&events).ok_or("pid")?;
    let (code, _) = node.stop()?;
    assert_eq!(code, Some(0));
    assert!(wait_gone(pgid).await, "graceful stop kills the runtime's whole group");

    let mut node = Node::start_in(&dir, opts())?;
    let events = run(&node, "sticky", "x", json!({})).await?;
    let pgid = launch_pid(&events).ok_or("pid")?;
    node.kill()?;
    // The group dies with the node (parent-death signal, keeper); the next start finds nothing.
    assert!(wait_gone(pgid).await, "the group died with the node");
    let _node = Node::start_in(&dir, opts())?;
    assert!(wait_gone(pgid).await, "recorded process group killed at start-up");
    Ok(())
}
