//! A real third-party ACP agent: `tests/agents/sdk_agent.py`, written on the official ACP Python
//! SDK (`agent-client-protocol` from PyPI), driven through the node. The interpreter is
//! `ALINK_ACP_SDK_PYTHON` if set (`.ci/run` sets it), else a venv this test provisions once under
//! `target/acp-sdk-venv`. If neither works the test is skipped locally and fails under CI
//! (`CI=true`), so CI can never silently skip it.

mod common;

use common::{Node, NodeOpts, Result, kinds};
use serde_json::{Value, json};

/// The SDK version the agent is written against.
const SDK: &str = "agent-client-protocol==0.12.1";

fn provision() -> Option<String> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/acp-sdk-venv");
    let python = venv.join("bin/python");
    let has_sdk = |py: &std::path::Path| {
        std::process::Command::new(py).args(["-c", "import acp"]).status().is_ok_and(|s| s.success())
    };
    if !has_sdk(&python) {
        let made =
            std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).status().is_ok_and(|s| s.success());
        let installed = made
            && std::process::Command::new(venv.join("bin/pip"))
                .args(["install", "-q", SDK])
                .status()
                .is_ok_and(|s| s.success());
        if !installed || !has_sdk(&python) {
            return None;
        }
    }
    Some(python.display().to_string())
}

fn sdk_python() -> Option<String> {
    let found = match std::env::var("ALINK_ACP_SDK_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => provision(),
    };
    if found.is_none() {
        assert!(std::env::var("CI").is_err(), "CI must provide the ACP Python SDK (see .ci/run)");
        eprintln!("skipped: could not provision a python with {SDK}; set ALINK_ACP_SDK_PYTHON");
    }
    found
}

fn registry(python: &str) -> String {
    let agent = format!("{}/tests/agents/sdk_agent.py", env!("CARGO_MANIFEST_DIR"));
    format!(
        "targets:\n  sdk:\n    adapter: acp\n    launch:\n      command: [{python}, {agent}]\n    capabilities: [sdk.chat]\n"
    )
}

fn text(events: &[Value]) -> String {
    events.last().and_then(|e| e["data"]["result"]["text"].as_str()).unwrap_or("").to_owned()
}

#[tokio::test]
async fn official_python_sdk_agent_streams_asks_permission_and_cancels() -> Result {
    let Some(python) = sdk_python() else { return Ok(()) };
    let node =
        Node::start_with(NodeOpts { registry: Some(registry(&python)), extra_args: vec![], ..NodeOpts::default() })?;

    // Permission → awaiting_input → allow → streamed chunks → completed.
    let id =
        node.create_with(json!({"target_agent_id": "sdk", "intent": "sdk.chat", "payload": {"text": "go"}})).await?;
    let awaiting = node.wait_status(&id, "awaiting_input").await?;
    assert_eq!(awaiting["status"], "awaiting_input");
    let (status, body) = node.post(&format!("/v1/tasks/{id}/resume"), json!({"decision": "allow"})).await?;
    assert_eq!(status, 202, "{body}");
    let events = node.events_until_done(&id).await?;
    let k = kinds(&events);
    assert!(k.contains(&"runtime.launching".to_owned()) && k.contains(&"task.awaiting_input".to_owned()), "{k:?}");
    assert!(events.iter().any(|e| e["data"].get("tool_call").is_some()), "tool call streamed");
    assert_eq!(text(&events), "allowed-0 allowed-1 allowed-2 allowed-3 allowed-4");

    // Reject.
    let id =
        node.create_with(json!({"target_agent_id": "sdk", "intent": "sdk.chat", "payload": {"text": "go"}})).await?;
    node.wait_status(&id, "awaiting_input").await?;
    node.post(&format!("/v1/tasks/{id}/resume"), json!({"decision": "reject"})).await?;
    assert!(text(&node.events_until_done(&id).await?).starts_with("denied-0"));

    // Cancel mid-stream: the SDK agent answers the prompt with stopReason cancelled.
    let id =
        node.create_with(json!({"target_agent_id": "sdk", "intent": "sdk.chat", "payload": {"text": "slow"}})).await?;
    node.wait_status(&id, "awaiting_input").await?;
    node.post(&format!("/v1/tasks/{id}/resume"), json!({"decision": "allow"})).await?;
    node.wait_status(&id, "running").await?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    node.post(&format!("/v1/tasks/{id}/cancel"), json!({"reason": "enough"})).await?;
    let events = node.events_until_done(&id).await?;
    let last = events.last().ok_or("events")?;
    assert_eq!(last["kind"], "task.cancelled");
    assert!(
        last["message"].as_str().unwrap_or("").contains("cancelled the task"),
        "confirmed by the agent, not by the node's backstop: {last}"
    );
    Ok(())
}
