//! The HTTP Agent Communication Protocol adapter (`acp_http`) through the real node, against a
//! real `acp-sdk` 1.0.3 server (`tests/agents/acp_http_server.py`) that the node launches as a
//! managed target (or, for restart tests, that the test runs as an external server), and against
//! the `polling` dialect's test double (`tests/agents/polling_agent.py`).
//!
//! The interpreter is `ALINK_ACP_HTTP_PYTHON` if set (`.ci/run` sets it), else a venv this test
//! provisions once under `target/acp-http-venv`. If neither works the tests skip locally and fail
//! under CI (`CI=true`).

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::{Node, NodeOpts, Result, assert_contiguous, kinds};
use serde_json::{Value, json};

/// The pins the reference server needs (newer uvicorn breaks `acp_sdk.server`).
const PINS: &[&str] = &["acp-sdk==1.0.3", "uvicorn[standard]==0.35.0", "fastapi[standard]==0.116.1"];

static PROVISION: Mutex<Option<Option<String>>> = Mutex::new(None);

fn provision() -> Option<String> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/acp-http-venv");
    let python = venv.join("bin/python");
    let ok = |py: &std::path::Path| {
        Command::new(py).args(["-c", "import acp_sdk.server"]).status().is_ok_and(|s| s.success())
    };
    if !ok(&python) {
        let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().is_ok_and(|s| s.success());
        let installed = made
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q"])
                .args(PINS)
                .status()
                .is_ok_and(|s| s.success());
        if !installed || !ok(&python) {
            return None;
        }
    }
    Some(python.display().to_string())
}

/// The Python with acp-sdk, provisioned once per test binary.
fn sdk_python() -> Option<String> {
    let mut guard = PROVISION.lock().unwrap_or_else(|p| p.into_inner());
    let found = guard
        .get_or_insert_with(|| match std::env::var("ALINK_ACP_HTTP_PYTHON") {
            Ok(p) if !p.is_empty() => Some(p),
            _ => provision(),
        })
        .clone();
    if found.is_none() {
        assert!(std::env::var("CI").is_err(), "CI must provide acp-sdk (see .ci/run)");
        eprintln!("skipped: could not provision a python with acp-sdk; set ALINK_ACP_HTTP_PYTHON");
    }
    found
}

fn server_script() -> String {
    format!("{}/tests/agents/acp_http_server.py", env!("CARGO_MANIFEST_DIR"))
}

/// A target on our acp-sdk server at `port`; `launch` is its YAML `launch` block body.
fn target(name: &str, port: u16, cap: &str, launch: &str, defaults: &str) -> String {
    format!(
        "  {name}:\n    adapter: acp_http\n    endpoint: http://127.0.0.1:{port}\n    capabilities: [{cap}]\n    defaults: {defaults}\n    launch:\n{launch}"
    )
}

fn managed_launch(python: &str, port: u16) -> String {
    format!("      command: [{python}, {}, --port, '{port}']\n      timeout_ms: 30000\n", server_script())
}

/// A node with one managed acp-sdk target `acp` (agent chosen per task).
fn managed_node(python: &str, defaults: &str) -> Result<(Node, u16)> {
    let port = common::free_port()?;
    let registry = format!("targets:\n{}", target("acp", port, "chat", &managed_launch(python, port), defaults));
    let node = Node::start_with(NodeOpts {
        registry: Some(registry),
        extra_args: vec!["--cancel-grace-ms".into(), "3000".into()],
        ..NodeOpts::default()
    })?;
    Ok((node, port))
}

async fn create(node: &Node, target: &str, agent: &str, payload: Value, extra: Value) -> Result<String> {
    let mut body = json!({
        "target_agent_id": target, "intent": "chat", "payload": payload,
        "runtime_options": {"agent_name": agent},
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if k == "runtime_options" {
                if let (Some(ro), Some(more)) = (b["runtime_options"].as_object_mut(), v.as_object()) {
                    ro.extend(more.clone());
                }
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    node.create_with(body).await
}

async fn done(node: &Node, id: &str) -> Result<Vec<Value>> {
    let events: Vec<Value> =
        node.sse(id, "", None, Duration::from_secs(60)).await?.into_iter().map(|(_, v)| v).collect();
    assert_contiguous(&events);
    Ok(events)
}

fn result_text(events: &[Value]) -> String {
    events.last().and_then(|e| e["data"]["result"]["text"].as_str()).unwrap_or("").to_owned()
}

/// Waits until the task has an event matching `pred`.
async fn wait_event(node: &Node, id: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
    for _ in 0..600 {
        let events = history(node, id).await?;
        if let Some(e) = events.iter().find(|e| pred(e)) {
            return Ok(e.clone());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("task {id}: expected event never came; log:\n{}", node.log()).into())
}

/// The task's stored events (JSON history).
async fn history(node: &Node, id: &str) -> Result<Vec<Value>> {
    let resp =
        node.http.get(node.url(&format!("/v1/tasks/{id}/events"))).header("accept", "application/json").send().await?;
    let v: Value = resp.json().await?;
    Ok(v["events"].as_array().cloned().unwrap_or_default())
}

fn is_delta(e: &Value) -> bool {
    e["kind"] == "task.running" && e["data"]["delta"].is_string()
}

fn launch_pid(events: &[Value]) -> Option<i32> {
    events.iter().find(|e| e["kind"] == "runtime.launching").and_then(|e| e["data"]["pid"].as_i64()).map(|p| p as i32)
}

/// A process the test runs itself (external servers); killed with its group on drop.
struct Server(Child);

impl Server {
    fn start(program: &str, script: &str, port: u16) -> Result<Server> {
        use std::os::unix::process::CommandExt;
        let child = Command::new(program)
            .args([script, "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Server(child))
    }

    async fn ready(&self, port: u16) -> Result {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client.get(format!("http://127.0.0.1:{port}/ping")).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("server did not come up".into())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(pgid) = i32::try_from(self.0.id())
            && pgid > 1
        {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn streams_text_and_completes_with_the_run_output() -> Result {
    let Some(py) = sdk_python() else { return Ok(()) };
    let (node, port) = managed_node(&py, "{agent_name: echo}")?;

    let id = create(&node, "acp", "echo", json!({"text": "Hello"}), json!({})).await?;
    let events = done(&node, &id).await?;
    let k = kinds(&events);
    for expected in
        ["runtime.pending_launch", "runtime.launching", "runtime.ready", "task.dispatching", "task.completed"]
    {
        assert!(k.contains(&expected.to_owned()), "{expected} missing: {k:?}");
    }
    assert_eq!(result_text(&events), "Hello");
    let done_event = events.last().ok_or("no events")?;
    assert_eq!(done_event["data"]["result"]["output"][0]["role"], "agent/echo");
    let task = node.task(&id).await?;
    assert_eq!(task["remote"]["binding"], "acp_comm_http");
    let run_id = task["remote"]["remote_execution_id"].as_str().ok_or("no run id")?.to_owned();
    assert!(task["remote"]["remote_session_id"].is_string());
    // The run really is the server's.
    let run: Value = reqwest::get(format!("http://127.0.0.1:{port}/runs/{run_id}")).await?.json().await?;
    assert_eq!(run["status"], "completed");
    // The result artifact keeps the full output messages.
    let art = task["result_artifact_id"].as_str().ok_or("no result artifact")?;
    let (status, body) = node.get(&format!("/v1/artifacts/{art}")).await?;
    assert_eq!(status, 200, "{body}");

    // Many parts: every one lands in the result, and the deltas are coalesced.
    let id = create(&node, "acp", "streaming", json!({"text": "parts=200"}), json!({})).await?;
    let events = done(&node, &id).await?;
    let expected: String = (0..200).map(|i| format!("p{i} ")).collect();
    assert_eq!(result_text(&events), expected);
    let deltas: String = events.iter().filter(|e| is_delta(e)).filter_map(|e| e["data"]["delta"].as_str()).collect();
    assert_eq!(deltas, expected, "streamed deltas add up to the result");
    let n = events.iter().filter(|e| is_delta(e)).count();
    assert!(n < 100, "200 parts in ~1 s should be coalesced to a few events, got {n}");
    // The second task reused the running server: no second launch.
    assert!(!kinds(&events).contains(&"runtime.launching".to_owned()));
    Ok(())
}

#[tokio::test]
async fn the_control_part_comes_first_and_names_the_task() -> Result {
    let Some(py) = sdk_python() else { return Ok(()) };
    let (node, _) = managed_node(&py, "{}")?;
    let id = create(&node, "acp", "control", json!({"text": "hi"}), json!({"sender": "agent-a"})).await?;
    let events = done(&node, &id).await?;
    let control: Value = serde_json::from_str(&result_text(&events))?;
    assert_eq!(control["task_id"], id.as_str());
    assert_eq!(control["sender"], "agent-a");
    assert_eq!(control["intent"], "chat");
    assert_eq!(control["target_agent_id"], "acp");
    assert!(control["trace"]["trace_id"].is_string() && control["conversation_id"].is_string());
    assert_eq!(control["delivery"]["launch_if_down"], true);

    // No agent name anywhere: a clear submit failure, not a hang.
    let (status, v) =
        node.post("/v1/tasks", json!({"target_agent_id": "acp", "intent": "chat", "payload": {"text": "x"}})).await?;
    assert_eq!(status, 202, "{v}");
    let id = v["task"]["task_id"].as_str().ok_or("id")?.to_owned();
    let events = done(&node, &id).await?;
    let last = events.last().ok_or("no events")?;
    assert_eq!(last["kind"], "task.failed");
    assert!(last["data"]["detail"].as_str().unwrap_or("").contains("agent_name"), "{last}");
    Ok(())
}

#[tokio::test]
async fn await_then_resume_completes_with_the_answer() -> Result {
    let Some(py) = sdk_python() else { return Ok(()) };
    let (node, _) = managed_node(&py, "{}")?;
    let id = create(&node, "acp", "approver", json!({"text": "deploy to prod"}), json!({})).await?;
    let awaiting = wait_event(&node, &id, |e| e["kind"] == "task.awaiting_input").await?;
    assert_eq!(awaiting["data"]["prompt"], "Approve? (yes/no)");
    assert_eq!(awaiting["data"]["await_request"]["type"], "message");

    // A resume without an answer is refused before anything is recorded.
    let (status, v) = node.post(&format!("/v1/tasks/{id}/resume"), json!({"payload": {"colour": "red"}})).await?;
    assert!((400..500).contains(&status), "{status} {v}");
    assert!(v.to_string().contains("text"), "{v}");

    let (status, v) = node.post(&format!("/v1/tasks/{id}/resume"), json!({"payload": {"text": "yes"}})).await?;
    assert_eq!(status, 202, "{v}");
    let events = done(&node, &id).await?;
    let k = kinds(&events);
    assert!(k.contains(&"task.resumed".to_owned()), "{k:?}");
    assert_eq!(events.last().map(|e| e["kind"].clone()), Some(json!("task.completed")));
    assert_eq!(result_text(&events), "You asked: deploy to prod. Got answer: yes");
    Ok(())
}

#[tokio::test]
async fn cancel_mid_stream_cancels_the_remote_run() -> Result {
    let Some(py) = sdk_python() else { return Ok(()) };
    let (node, port) = managed_node(&py, "{}")?;
    let id = create(&node, "acp", "slow", json!({"text": "ticks=40"}), json!({})).await?;
    wait_event(&node, &id, is_delta).await?;
    let (status, v) = node.post(&format!("/v1/tasks/{id}/cancel"), json!({"reason": "changed my mind"})).await?;
    assert_eq!(status, 202, "{v}");
    let started = std::time::Instant::now();
    let events = done(&node, &id).await?;
    let last = events.last().ok_or("no events")?;
    assert_eq!(last["kind"], "task.cancelled", "{last}");
    assert_eq!(last["source"], "adapter", "the server confirmed the cancel: {last}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let run_id = node.task(&id).await?["remote"]["remote_execution_id"].as_str().ok_or("run")?.to_owned();
    let run: Value = reqwest::get(format!("http://127.0.0.1:{port}/runs/{run_id}")).await?.json().await?;
    assert_eq!(run["status"], "cancelled");
    Ok(())
}

#[tokio::test]
async fn server_errors_become_task_errors() -> Result {
    let Some(py) = sdk_python() else { return Ok(()) };
    let (node, _) = managed_node(&py, "{}")?;
    let id = create(&node, "acp", "failing", json!({"text": "x"}), json!({})).await?;
    let events = done(&node, &id).await?;
    let last = events.last().ok_or("no events")?;
    assert_eq!(last["kind"], "task.failed");
    let task = node.task(&id).await?;
    assert_eq!(task["last_error"]["reason"], "server_error", "{task}");
    assert_eq!(task["last_error"]["detail"], "boom", "{task}");

    let id = create(&node, "acp", "nope", json!({"text": "x"}), json!({})).await?;
    let events = done(&node, &id).await?;
    assert_eq!(events.last().map(|e| e["kind"].clone()), Some(json!("task.failed")));
    let task = node.task(&id).await?;
    assert_eq!(task["last_error"]["reason"], "not_found", "{task}");
    assert_eq!(task["last_error"]["detail"], "Agent nope not found", "{task}");
    assert!(task.get("remote").is_none(), "never submitted: {task}");
    Ok(())
}

#[tokio::test]
async fn a_killed_server_fails_its_task_and_is_relaunched_for_the_next() -> Result {
    let Some(py) = sdk_python() else { return Ok(()) };
    let (node, _) = managed_node(&py, "{}")?;
    let id = create(&node, "acp", "slow", json!({"text": "ticks=40"}), json!({})).await?;
    wait_event(&node, &id, is_delta).await?;
    let pid = launch_pid(&history(&node, &id).await?).ok_or("no pid")?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)?;
    let started = std::time::Instant::now();
    let events = done(&node, &id).await?;
    let last = events.last().ok_or("no events")?;
    assert_eq!(last["kind"], "task.failed");
    assert_eq!(last["data"]["reason"], "runtime_exited", "{last}");
    assert!(last["data"]["detail"].as_str().unwrap_or("").contains("signal 9"), "{last}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let id = create(&node, "acp", "echo", json!({"text": "again"}), json!({})).await?;
    let events = done(&node, &id).await?;
    assert_eq!(result_text(&events), "again", "{:?}", kinds(&events));
    let new_pid = launch_pid(&events).ok_or("the runtime was not relaunched")?;
    assert_ne!(new_pid, pid);
    Ok(())
}

#[tokio::test]
async fn a_dropped_stream_is_resynced_and_the_task_completes() -> Result {
    let Some(py) = sdk_python() else { return Ok(()) };
    // The server closes each run's stream after 4 frames while the run goes on.
    let (node, _) = managed_node(&py, "{headers: {x-test-drop-stream-after: '4'}}")?;
    let id = create(&node, "acp", "slow", json!({"text": "ticks=6"}), json!({})).await?;
    let events = done(&node, &id).await?;
    let expected: String = (0..6).map(|i| format!("tick {i} ")).collect();
    assert_eq!(events.last().map(|e| e["kind"].clone()), Some(json!("task.completed")), "{:?}", kinds(&events));
    assert_eq!(result_text(&events), expected);
    assert!(
        events.iter().any(|e| e["message"].as_str().unwrap_or("").contains("re-syncing")),
        "the drop is visible: {:?}",
        events.iter().map(|e| e["message"].clone()).collect::<Vec<_>>()
    );
    let deltas: String = events.iter().filter(|e| is_delta(e)).filter_map(|e| e["data"]["delta"].as_str()).collect();
    assert_eq!(deltas, expected, "no part lost or repeated across the re-sync");
    Ok(())
}

#[tokio::test]
async fn tasks_of_one_conversation_share_the_remote_session() -> Result {
    let Some(py) = sdk_python() else { return Ok(()) };
    let (node, _) = managed_node(&py, "{}")?;
    let conv = json!({"conversation_id": "conv-1"});
    let a = create(&node, "acp", "history", json!({"text": "one"}), conv.clone()).await?;
    let a_events = done(&node, &a).await?;
    let b = create(&node, "acp", "history", json!({"text": "two"}), conv).await?;
    let b_events = done(&node, &b).await?;
    let c = create(&node, "acp", "history", json!({"text": "three"}), json!({"conversation_id": "conv-2"})).await?;
    let c_events = done(&node, &c).await?;
    let (sa, sb, sc) = (
        node.task(&a).await?["remote"]["remote_session_id"].clone(),
        node.task(&b).await?["remote"]["remote_session_id"].clone(),
        node.task(&c).await?["remote"]["remote_session_id"].clone(),
    );
    assert!(sa.is_string());
    assert_eq!(sa, sb, "same conversation, same server session");
    assert_ne!(sa, sc);
    assert_eq!(result_text(&a_events), "history: 0");
    assert_ne!(result_text(&b_events), "history: 0", "the second task sees the first one's messages");
    assert_eq!(result_text(&c_events), "history: 0");
    Ok(())
}

#[tokio::test]
async fn a_server_that_never_gets_healthy_fails_the_launch_in_time() -> Result {
    let registry = "targets:\n  mute:\n    adapter: acp_http\n    endpoint: http://127.0.0.1:9\n    capabilities: [chat]\n    defaults: {agent_name: echo}\n    launch:\n      command: [sleep, '60']\n      timeout_ms: 800\n";
    let node =
        Node::start_with(NodeOpts { registry: Some(registry.into()), extra_args: vec![], ..NodeOpts::default() })?;
    let started = std::time::Instant::now();
    let id = create(&node, "mute", "echo", json!({"text": "x"}), json!({})).await?;
    let events = done(&node, &id).await?;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let last = events.last().ok_or("no events")?;
    assert_eq!(last["kind"], "task.failed");
    let task = node.task(&id).await?;
    assert_eq!(task["last_error"]["reason"], "launch_failed", "{task}");
    assert!(last["data"]["detail"].as_str().unwrap_or("").contains("not healthy within 800 ms"), "{last}");
    let pid = launch_pid(&events).ok_or("no pid")?;
    for _ in 0..100 {
        if std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z ")) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("the unhealthy server {pid} was left running").into())
}

#[tokio::test]
async fn after_a_node_restart_running_and_awaiting_tasks_reattach() -> Result {
    let Some(py) = sdk_python() else { return Ok(()) };
    let port = common::free_port()?;
    let server = Server::start(&py, &server_script(), port)?;
    server.ready(port).await?;
    let registry = format!("targets:\n{}", target("ext", port, "chat", "      mode: external\n", "{}"));
    let opts = NodeOpts { registry: Some(registry), extra_args: vec![], ..NodeOpts::default() };
    let mut node = Node::start_with(opts.clone())?;
    let running = create(&node, "ext", "slow", json!({"text": "ticks=10"}), json!({})).await?;
    let paused = create(&node, "ext", "approver", json!({"text": "ship it"}), json!({})).await?;
    wait_event(&node, &running, is_delta).await?;
    wait_event(&node, &paused, |e| e["kind"] == "task.awaiting_input").await?;
    node.stop()?;

    let node = Node::start_in(&node.dir.clone(), opts)?;
    let events = done(&node, &running).await?;
    let expected: String = (0..10).map(|i| format!("tick {i} ")).collect();
    assert_eq!(
        events.last().map(|e| e["kind"].clone()),
        Some(json!("task.completed")),
        "{:?}\n{}",
        kinds(&events),
        node.log()
    );
    assert_eq!(result_text(&events), expected);
    assert!(events.iter().any(|e| e["message"].as_str().unwrap_or("").contains("Re-attached")));

    assert_eq!(node.task(&paused).await?["status"], "awaiting_input");
    let (status, v) = node.post(&format!("/v1/tasks/{paused}/resume"), json!({"payload": {"text": "no"}})).await?;
    assert_eq!(status, 202, "{v}");
    let events = done(&node, &paused).await?;
    assert_eq!(result_text(&events), "You asked: ship it. Got answer: no", "{:?}", kinds(&events));
    drop(server);
    Ok(())
}

#[tokio::test]
async fn the_polling_dialect_runs_the_go_nodes_api() -> Result {
    let port = common::free_port()?;
    let script = format!("{}/tests/agents/polling_agent.py", env!("CARGO_MANIFEST_DIR"));
    let registry = format!(
        "targets:\n  poll:\n    adapter: acp_http\n    dialect: polling\n    endpoint: http://127.0.0.1:{port}/\n    capabilities: [chat]\n    launch:\n      command: [python3, {script}, --port, '{port}']\n"
    );
    let node = Node::start_with(NodeOpts { registry: Some(registry), extra_args: vec![], ..NodeOpts::default() })?;
    let create = |payload: Value| {
        let node = &node;
        async move { node.create_with(json!({"target_agent_id": "poll", "intent": "chat", "payload": payload})).await }
    };

    let id = create(json!({"mode": "success"})).await?;
    let events = done(&node, &id).await?;
    assert_eq!(result_text(&events), "ok", "{:?}", kinds(&events));
    let task = node.task(&id).await?;
    assert_eq!(task["remote"]["binding"], "acp_comm_http");
    assert!(task["remote"]["remote_execution_id"].as_str().unwrap_or("").starts_with("run_"));

    let id = create(json!({"mode": "await_then_resume"})).await?;
    node.wait_status(&id, "awaiting_input").await?;
    let (status, v) = node.post(&format!("/v1/tasks/{id}/resume"), json!({"payload": {"text": "yes"}})).await?;
    assert_eq!(status, 202, "{v}");
    let events = done(&node, &id).await?;
    assert_eq!(result_text(&events), "resumed: yes", "{:?}", kinds(&events));

    let id = create(json!({"mode": "submit_fail"})).await?;
    let events = done(&node, &id).await?;
    assert_eq!(node.task(&id).await?["last_error"]["reason"], "submit_failed", "{:?}", kinds(&events));

    let id = create(json!({"mode": "launch_fail"})).await?;
    done(&node, &id).await?;
    assert_eq!(node.task(&id).await?["last_error"]["reason"], "launch_failed");

    let id = create(json!({"mode": "hang"})).await?;
    node.wait_status(&id, "running").await?;
    let (status, _) = node.post(&format!("/v1/tasks/{id}/cancel"), json!({})).await?;
    assert_eq!(status, 202);
    let events = done(&node, &id).await?;
    assert_eq!(events.last().map(|e| e["source"].clone()), Some(json!("adapter")), "{:?}", kinds(&events));
    assert_eq!(events.last().map(|e| e["kind"].clone()), Some(json!("task.cancelled")));
    Ok(())
}

#[tokio::test]
async fn http_targets_are_validated_at_registration() -> Result {
    let node = Node::start()?;
    let (status, v) = node
        .post(
            "/v1/agents/register",
            json!({"display_name": "h", "transport_kind": "http", "adapter": "acp_http", "capabilities": ["chat"]}),
        )
        .await?;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("endpoint is required"), "{v}");
    let (status, v) = node
        .post(
            "/v1/agents/register",
            json!({"display_name": "h", "transport_kind": "http", "adapter": "acp_http", "endpoint": "localhost:80", "capabilities": ["chat"]}),
        )
        .await?;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("endpoint"), "{v}");
    Ok(())
}

#[tokio::test]
async fn thread_inspection_predicts_reuse_of_an_http_session() -> Result {
    let Some(py) = sdk_python() else { return Ok(()) };
    let port = common::free_port()?;
    let registry = format!(
        "targets:\n{}\n  echo:\n    adapter: loopback\n    capabilities: [chat]\n",
        target("acp", port, "chat", &managed_launch(&py, port), "{agent_name: history}")
    );
    let node = Node::start_with(NodeOpts { registry: Some(registry), extra_args: vec![], ..NodeOpts::default() })?;
    let (status, created) = node.post("/v1/threads", json!({"agent_a_id": "echo", "agent_b_id": "acp"})).await?;
    assert_eq!(status, 201, "{created}");
    let thread = created["thread"]["thread_id"].as_str().ok_or("thread id")?.to_owned();
    let continue_turn = |sender: &'static str| json!({"sender": sender, "intent": "chat", "payload": {"text": format!("from {sender}")}});
    // echo → acp, then acp → echo: the next turn goes to the HTTP agent again.
    for sender in ["echo", "acp"] {
        let (status, body) = node.post(&format!("/v1/threads/{thread}/continue"), continue_turn(sender)).await?;
        assert_eq!(status, 202, "{body}");
        let task = body["task"]["task_id"].as_str().ok_or("task id")?.to_owned();
        let events = done(&node, &task).await?;
        assert_eq!(events.last().map(|e| e["state"].clone()), Some(json!("completed")), "{events:?}");
    }
    let (_, inspection) = node.get(&format!("/v1/threads/{thread}/inspect")).await?;
    assert_eq!(inspection["next_continue"]["target_agent_id"], "acp", "{inspection}");
    assert_eq!(inspection["next_continue"]["will_reuse_remote_session"], true, "{inspection}");
    Ok(())
}
