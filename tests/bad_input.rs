//! Bad input gets a clear 4xx naming what was wrong — never a 500, never a panic — and the node
//! keeps serving.

mod common;

use common::{Node, NodeOpts, Result};
use serde_json::json;

#[tokio::test]
async fn task_creation_rejects_bad_bodies_with_the_field_named() -> Result {
    let node = Node::start_with(NodeOpts {
        extra_args: vec!["--max-body-bytes".into(), "2048".into()],
        ..NodeOpts::default()
    })?;
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("malformed", "application/json", "{\"intent\": ".into(), 400, "invalid JSON body"),
        ("trailing", "application/json", "{\"intent\": \"demo.echo\"} x".into(), 400, "invalid JSON body"),
        ("empty", "application/json", "".into(), 400, "empty"),
        ("not an object", "application/json", "[1,2]".into(), 400, "invalid JSON body"),
        ("unknown field", "application/json", "{\"intent\":\"demo.echo\",\"colour\":1}".into(), 400, "colour"),
        (
            "wrong type",
            "application/json",
            "{\"intent\":\"demo.echo\",\"delivery\":{\"timeout_ms\":\"soon\"}}".into(),
            400,
            "delivery.timeout_ms",
        ),
        (
            "bad mode",
            "application/json",
            "{\"intent\":\"demo.echo\",\"delivery\":{\"mode\":\"carrier-pigeon\"}}".into(),
            400,
            "delivery.mode",
        ),
        (
            "zero timeout",
            "application/json",
            "{\"intent\":\"demo.echo\",\"delivery\":{\"timeout_ms\":0}}".into(),
            400,
            "timeout_ms",
        ),
        ("missing intent", "application/json", "{\"payload\":{}}".into(), 400, "intent is required"),
        ("blank intent", "application/json", "{\"intent\":\"  \"}".into(), 400, "intent is required"),
        (
            "payload array",
            "application/json",
            "{\"intent\":\"demo.echo\",\"payload\":[1]}".into(),
            400,
            "payload must be a JSON object",
        ),
        (
            "payload string",
            "application/json",
            "{\"intent\":\"demo.echo\",\"payload\":\"x\"}".into(),
            400,
            "payload must be a JSON object",
        ),
        (
            "runtime_options type",
            "application/json",
            "{\"intent\":\"demo.echo\",\"runtime_options\":3}".into(),
            400,
            "runtime_options",
        ),
        (
            "thread unknown",
            "application/json",
            "{\"intent\":\"demo.echo\",\"thread_id\":\"t1\"}".into(),
            404,
            "thread not found",
        ),
        ("content type", "text/plain", "{\"intent\":\"demo.echo\"}".into(), 415, "Content-Type"),
        (
            "too large",
            "application/json",
            format!("{{\"intent\":\"demo.echo\",\"payload\":{{\"text\":\"{}\"}}}}", "x".repeat(4096)),
            413,
            "limit",
        ),
    ];
    for (name, ctype, body, code, needle) in cases {
        let (status, v) = node.post_raw("/v1/tasks", ctype, body).await?;
        assert_eq!(status, code, "{name}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{name}: error {msg:?} should mention {needle:?}");
    }
    // Still serving, nothing half-created.
    let (_, list) = node.get("/v1/tasks").await?;
    assert_eq!(list["tasks"], json!([]));
    assert_eq!(node.get("/healthz").await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn unknown_ids_routes_and_params_are_clear_4xx() -> Result {
    let node = Node::start()?;
    let cases = [
        ("GET", "/v1/tasks/NOPE", 404, "task not found"),
        ("GET", "/v1/tasks/NOPE/events", 404, "task not found"),
        ("POST", "/v1/tasks/NOPE/cancel", 404, "task not found"),
        ("POST", "/v1/tasks/NOPE/resume", 404, "task not found"),
        ("GET", "/v1/artifacts/NOPE", 404, "artifact not found"),
        ("GET", "/artifacts/NOPE", 404, "artifact not found"),
        ("GET", "/v1/agents/NOPE", 404, "agent not found"),
        ("GET", "/v1/nothing-here", 404, "no route"),
        ("DELETE", "/v1/tasks", 405, "not allowed"),
        ("GET", "/v1/tasks?status=sleeping", 400, "not a task status"),
        ("GET", "/v1/tasks?limit=0", 400, "limit"),
        ("GET", "/v1/tasks?limit=abc", 400, "limit"),
        ("GET", "/v1/tasks?colour=red", 400, "unknown query parameter"),
    ];
    for (method, path, code, needle) in cases {
        let body = match (method, path.ends_with("/cancel")) {
            ("POST", true) => Some(json!({})),
            ("POST", false) => Some(json!({"payload": {}})),
            _ => None,
        };
        let (status, v) = node.request(method.parse()?, path, body).await?;
        assert_eq!(status, code, "{method} {path}: {v}");
        assert!(v["error"].as_str().unwrap_or_default().contains(needle), "{method} {path}: {v}");
    }
    let id = node.create(json!({"text": "x"})).await?;
    node.events_until_done(&id).await?;
    for q in ["?after=abc", "?after=-1", "?bogus=1"] {
        let (status, v) = node.get(&format!("/v1/tasks/{id}/events{q}")).await?;
        assert_eq!(status, 400, "{q}: {v}");
    }
    let resp = node.http.get(node.url(&format!("/v1/tasks/{id}/events"))).header("last-event-id", "x1").send().await?;
    assert_eq!(resp.status(), 400);
    let (status, v) = node.post(&format!("/v1/tasks/{id}/resume"), json!({"payload": {}, "extra": 1})).await?;
    assert_eq!(status, 400, "{v}");
    let (status, v) = node.post(&format!("/v1/tasks/{id}/cancel"), json!({"reason": 5})).await?;
    assert_eq!(status, 400, "{v}");
    Ok(())
}

#[tokio::test]
async fn agents_register_list_get_and_route() -> Result {
    let node = Node::start()?;
    let (status, v) = node
        .post("/v1/agents/register", json!({"agent_id": "helper", "display_name": "Helper", "transport_kind": "local_managed",
                                             "adapter": "loopback", "capabilities": ["help.me"], "defaults": {"k": "v"}}))
        .await?;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["agent"]["agent_id"], "helper");
    assert_eq!(v["agent"]["status"], "online");
    let (status, one) = node.get("/v1/agents/helper").await?;
    assert_eq!((status, one["display_name"].clone()), (200, json!("Helper")));
    let (_, all) = node.get("/v1/agents").await?;
    assert_eq!(all["agents"].as_array().map(Vec::len), Some(1));
    let (_, targets) = node.get("/v1/targets").await?;
    let ids: Vec<&str> =
        targets["targets"].as_array().ok_or("targets")?.iter().filter_map(|t| t["target_id"].as_str()).collect();
    assert_eq!(ids, ["echo", "helper", "other"]);
    // A registered target takes tasks like a file target.
    let id = node.create_with(json!({"intent": "help.me", "payload": {"text": "ok"}})).await?;
    let events = node.events_until_done(&id).await?;
    assert_eq!(events.last().map(|e| e["data"]["result"]["text"].clone()), Some(json!("ok")));
    assert_eq!(node.task(&id).await?["runtime_options"], json!({"k": "v"}));

    let bad = [
        (json!({"display_name": "", "transport_kind": "x"}), 400, "display_name"),
        (json!({"display_name": "a"}), 400, "transport_kind"),
        (json!({"display_name": "a", "transport_kind": "x", "adapter": "warp-drive"}), 400, "adapter 'warp-drive'"),
        (json!({"display_name": "a", "transport_kind": "x", "flavour": 1}), 400, "flavour"),
        (
            json!({"agent_id": "echo", "display_name": "a", "transport_kind": "x", "adapter": "loopback"}),
            409,
            "registry file",
        ),
    ];
    for (body, code, needle) in bad {
        let (status, v) = node.post("/v1/agents/register", body.clone()).await?;
        assert_eq!(status, code, "{body}: {v}");
        assert!(v["error"].as_str().unwrap_or_default().contains(needle), "{v}");
    }
    // …unless the operator asks to replace it.
    let (status, v) = node
        .post("/v1/agents/register", json!({"agent_id": "echo", "display_name": "Echo2", "transport_kind": "x", "adapter": "loopback", "capabilities": ["echo2"], "replace": true}))
        .await?;
    assert_eq!(status, 202, "{v}");
    let (status, _) = node.post("/v1/tasks", json!({"target_agent_id": "echo", "intent": "demo.echo"})).await?;
    assert_eq!(status, 422, "the replacement's capabilities apply");
    Ok(())
}

#[tokio::test]
async fn invalid_registry_file_refuses_to_start_naming_file_line_and_field() -> Result {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "targets:\n  echo:\n    adapter: loopback\n    capabilitees: [x]\n")?;
    let out = std::process::Command::new(common::node_bin())
        .args(["--port", "0", "--aether-port", "0", "--database", "sqlite::memory:", "--registry"])
        .arg(&path)
        .arg("--artifact-dir")
        .arg(dir.path().join("a"))
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml") && err.contains("capabilitees") && err.contains("line 4"), "{err}");

    let missing = std::process::Command::new(common::node_bin())
        .args([
            "--port",
            "0",
            "--aether-port",
            "0",
            "--database",
            "sqlite::memory:",
            "--registry",
            "/nonexistent/registry.yaml",
        ])
        .output()?;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/registry.yaml"));
    Ok(())
}

#[tokio::test]
async fn missing_default_registry_is_fine_and_memory_database_works() -> Result {
    let dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new(common::node_bin())
        .args(["--port", "0", "--aether-port", "0", "--database", "sqlite::memory:"])
        .arg("--artifact-dir")
        .arg(dir.path().join("a"))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().ok_or("stdout")?), &mut line)?;
    let base = line.trim().strip_prefix("alink-node listening on ").ok_or("address")?.to_owned();
    let targets: serde_json::Value = reqwest::get(format!("{base}/v1/targets")).await?.json().await?;
    assert_eq!(targets, json!({"targets": []}));
    let ready = reqwest::get(format!("{base}/readyz")).await?;
    assert_eq!(ready.status(), 200);
    child.kill()?;
    child.wait()?;
    Ok(())
}
