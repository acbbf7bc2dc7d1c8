//! Opt-in tests against real ACP runtimes (see docs/runtimes.md). Skipped unless enabled:
//!
//! * `ALINK_TEST_HERMES=1` — Hermes Agent (`pip install "hermes-agent[acp]==0.19.0"`); the
//!   `hermes` executable from `ALINK_HERMES_BIN` (default `hermes` on PATH). The test runs it
//!   offline against `tests/agents/fake_openai.py` through a fresh `HERMES_HOME/config.yaml`.
//! * `ALINK_TEST_OPENCLAW=1` — OpenClaw's ACP bridge; `ALINK_OPENCLAW_CMD` is the whole bridge
//!   command (e.g. `openclaw acp --url ws://127.0.0.1:18789 --token-file /path/token`), with its
//!   gateway already running.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{Node, NodeOpts, Result, kinds};
use serde_json::{Value, json};

fn enabled(var: &str) -> bool {
    let on = std::env::var(var).is_ok_and(|v| v == "1");
    if !on {
        eprintln!("skipped: set {var}=1 to run (docs/runtimes.md)");
    }
    on
}

struct FakeLlm(Child, u16);

impl FakeLlm {
    fn start() -> Result<FakeLlm> {
        let script = format!("{}/tests/agents/fake_openai.py", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new("python3").arg(script).args(["--port", "0"]).stdout(Stdio::piped()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
        let port = line.trim().strip_prefix("LISTENING ").ok_or("fake llm did not start")?.parse()?;
        Ok(FakeLlm(child, port))
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(events: &[Value]) -> String {
    events.last().and_then(|e| e["data"]["result"]["text"].as_str()).unwrap_or("").to_owned()
}

#[tokio::test]
async fn hermes_answers_and_reuses_its_session() -> Result {
    if !enabled("ALINK_TEST_HERMES") {
        return Ok(());
    }
    let hermes = std::env::var("ALINK_HERMES_BIN").unwrap_or_else(|_| "hermes".into());
    let llm = FakeLlm::start()?;
    let home = tempfile::tempdir()?;
    std::fs::write(
        home.path().join("config.yaml"),
        format!(
            "model:\n  provider: custom\n  base_url: http://127.0.0.1:{}/v1\n  default: fake-model\n  api_key: sk-fake-local\n  context_length: 200000\n",
            llm.1
        ),
    )?;
    let registry = format!(
        "targets:\n  hermes:\n    adapter: acp\n    dialect: hermes\n    launch:\n      command: [{hermes}, acp]\n      env: {{HERMES_HOME: {}}}\n      timeout_ms: 120000\n    permissions: allow\n    capabilities: [code.patch]\n",
        home.path().display()
    );
    let node = Node::start_with(NodeOpts { registry: Some(registry), extra_args: vec![], ..NodeOpts::default() })?;
    let id = node.create_with(json!({"target_agent_id": "hermes", "intent": "code.patch", "payload": {"text": "Say exactly OK"}, "conversation_id": "h1"})).await?;
    let events = node
        .sse(&id, "", None, std::time::Duration::from_secs(180))
        .await?
        .into_iter()
        .map(|(_, v)| v)
        .collect::<Vec<_>>();
    assert_eq!(events.last().map(|e| e["state"].clone()), Some(json!("completed")), "{events:?}\n{}", node.log());
    assert!(text(&events).contains("OK"), "{}", text(&events));
    assert!(kinds(&events).contains(&"runtime.launching".to_owned()));
    assert_eq!(
        events
            .iter()
            .find(|e| e["kind"] == "task.dispatching" && e["source"] == "adapter")
            .map(|e| e["data"]["binding"].clone()),
        Some(json!("hermes_acp"))
    );
    let id = node.create_with(json!({"target_agent_id": "hermes", "intent": "code.patch", "payload": {"text": "Say exactly AGAIN"}, "conversation_id": "h1"})).await?;
    let again = node
        .sse(&id, "", None, std::time::Duration::from_secs(180))
        .await?
        .into_iter()
        .map(|(_, v)| v)
        .collect::<Vec<_>>();
    assert!(text(&again).contains("AGAIN"));
    assert!(!kinds(&again).contains(&"runtime.launching".to_owned()), "warm runtime reused");
    let first_session = events.iter().find_map(|e| e["data"]["session_id"].as_str().map(str::to_owned));
    let second_session = again.iter().find_map(|e| e["data"]["session_id"].as_str().map(str::to_owned));
    assert_eq!(first_session, second_session, "same conversation, same Hermes session");
    Ok(())
}

#[tokio::test]
async fn openclaw_bridge_answers() -> Result {
    if !enabled("ALINK_TEST_OPENCLAW") {
        return Ok(());
    }
    let cmd = std::env::var("ALINK_OPENCLAW_CMD")?;
    let argv: Vec<String> = cmd.split_whitespace().map(|s| format!("\"{s}\"")).collect();
    let registry = format!(
        "targets:\n  gateway:\n    adapter: acp\n    dialect: openclaw\n    launch:\n      command: [{}]\n      timeout_ms: 90000\n    permissions: allow\n    defaults: {{session_key: main}}\n    capabilities: [gateway.chat]\n",
        argv.join(", ")
    );
    let node = Node::start_with(NodeOpts { registry: Some(registry), extra_args: vec![], ..NodeOpts::default() })?;
    let id = node.create_with(json!({"target_agent_id": "gateway", "intent": "gateway.chat", "payload": {"text": "Say exactly OPENCLAW OK"}})).await?;
    let events = node
        .sse(&id, "", None, std::time::Duration::from_secs(240))
        .await?
        .into_iter()
        .map(|(_, v)| v)
        .collect::<Vec<_>>();
    assert_eq!(events.last().map(|e| e["state"].clone()), Some(json!("completed")), "{events:?}\n{}", node.log());
    assert!(text(&events).contains("OPENCLAW OK"));
    Ok(())
}
