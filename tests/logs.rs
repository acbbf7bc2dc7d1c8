//! The node's log as a daemon's operator reads it (real binary, real ACP agent processes):
//! supervision events of a launch, a crash and a restart, one INFO line per task, access log
//! lines for refused requests, one line per record, and JSON lines with unique keys.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Node, NodeOpts, Result};
use serde_json::{Value, json};

fn registry() -> String {
    let a = format!("{}/tests/agents/fake_acp_agent.py", env!("CARGO_MANIFEST_DIR"));
    format!(
        "targets:\n  fake:\n    adapter: acp\n    launch:\n      command: [python3, {a}]\n    capabilities: [chat]\n"
    )
}

fn node(json: bool) -> Result<Node> {
    let mut extra_args = Vec::new();
    if json {
        extra_args.extend(["--log-format".to_owned(), "json".to_owned()]);
    }
    Node::start_with(NodeOpts { registry: Some(registry()), extra_args, ..NodeOpts::default() })
}

async fn run(node: &Node, text: &str) -> Result<String> {
    let id = node.create_with(json!({"target_agent_id": "fake", "intent": "chat", "payload": {"text": text}})).await?;
    node.events_until_done(&id).await?;
    Ok(id)
}

/// Waits until the log has a line containing every one of `parts`.
async fn line_with(node: &Node, parts: &[&str]) -> Result<String> {
    for _ in 0..200 {
        if let Some(line) = node.log().lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return Ok(line.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(format!("no log line with {parts:?}:\n{}", node.log()).into())
}

/// The keys of a JSON object line, refusing a key seen twice (serde_json's `Value` would keep
/// only the last of them).
fn unique_keys(line: &str) -> std::result::Result<Vec<String>, String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<Keys, A::Error> {
                    let mut seen = HashSet::new();
                    let mut keys = Vec::new();
                    while let Some(k) = m.next_key::<String>()? {
                        let _: serde::de::IgnoredAny = m.next_value()?;
                        if !seen.insert(k.clone()) {
                            return Err(serde::de::Error::custom(format!("duplicate key {k}")));
                        }
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Keys>(line).map(|k| k.0).map_err(|e| format!("{e}: {line}"))
}

#[tokio::test]
async fn pretty_log_of_a_launch_a_crash_and_a_restart() -> Result {
    let node = node(false)?;
    let first = run(&node, "hello").await?;
    let crashed = run(&node, "!crash").await?;
    let again = run(&node, "again").await?;

    let launching = line_with(&node, &["INFO", "runtime launching", "target_id=fake", "pid="]).await?;
    assert!(launching.contains("command=\"python3 "), "{launching}");
    let ready = line_with(&node, &["INFO", "runtime ready", "target_id=fake", "ready_ms="]).await?;
    let ms = ready.split("ready_ms=").nth(1).and_then(|s| s.split(' ').next()).unwrap_or("");
    assert!(ms.parse::<u64>().is_ok(), "ready_ms is whole ms: {ready}");
    assert!(!ready.contains("Some("), "{ready}");
    let exited = line_with(&node, &["WARN", "runtime exited unexpectedly", "attempt=1", "backoff_ms="]).await?;
    assert!(exited.contains("exit_code=1") && exited.contains("crashing on purpose"), "{exited}");

    // One INFO line per task, at its end; per-event lines only at DEBUG.
    for (id, status) in [(&first, "completed"), (&crashed, "failed"), (&again, "completed")] {
        let end = line_with(&node, &["INFO", "task finished", &format!("task_id={id}")]).await?;
        assert!(end.contains(&format!("status={status}")) && end.contains("target_id=fake"), "{end}");
        assert!(end.contains("duration_ms=") && end.contains("events="), "{end}");
    }
    let failed = line_with(&node, &["task finished", &format!("task_id={crashed}")]).await?;
    assert!(failed.contains("reason=runtime_exited"), "{failed}");
    let log = node.log();
    assert!(!log.contains("task event"), "no per-event lines at INFO:\n{log}");
    assert_eq!(log.matches("task finished").count(), 3, "{log}");
    assert!(!log.contains("Some("), "no debug text:\n{log}");
    Ok(())
}

#[tokio::test]
async fn access_log_names_refused_requests() -> Result {
    let node = node(false)?;
    let (status, body) = node.get("/v1/tasks/nope").await?;
    assert_eq!(status, 404, "{body}");
    let line = line_with(&node, &["INFO", "request refused", "path=/v1/tasks/nope", "status=404"]).await?;
    let error = body["error"].as_str().unwrap_or("");
    assert!(!error.is_empty() && line.contains(error), "the answer's error in the line: {line}");
    assert!(line.contains("method=GET") && line.contains(" ms="), "{line}");
    // 2xx only at DEBUG.
    let (status, _) = node.get("/v1/targets").await?;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!node.log().contains("path=/v1/targets "), "{}", node.log());
    Ok(())
}

#[tokio::test]
async fn json_log_lines_parse_with_unique_keys_through_a_crash_loop() -> Result {
    let node = node(true)?;
    run(&node, "hello").await?;
    // Four crashes within the window pause launches.
    for _ in 0..4 {
        run(&node, "!crash").await?;
    }
    let paused = line_with(&node, &["runtime crash loop: launches paused"]).await?;
    let (status, _) = node.get("/v1/tasks/nope").await?;
    assert_eq!(status, 404);
    line_with(&node, &["request refused", "/v1/tasks/nope"]).await?;
    // Any record still being written is complete once the node stops.
    let mut node = node;
    node.stop()?;
    let log = node.log();
    let mut records = Vec::new();
    for line in log.lines() {
        unique_keys(line)?;
        records.push(serde_json::from_str::<Value>(line)?);
    }
    let v: Value = serde_json::from_str(&paused)?;
    assert_eq!(v["level"], "ERROR");
    assert_eq!(v["target_id"], "fake");
    let until = v["paused_until"].as_str().unwrap_or("");
    assert!(until.len() > 20 && until.ends_with('Z'), "paused_until RFC 3339: {v}");
    let find = |message: &str| records.iter().find(|r| r["message"] == message).cloned().ok_or(message.to_owned());
    let ready = find("runtime ready")?;
    assert!(ready["ready_ms"].is_u64() && ready["pid"].is_u64(), "{ready}");
    let restart = find("runtime exited unexpectedly; restarting on demand")?;
    assert!(restart["attempt"].is_u64() && restart["backoff_ms"].is_u64(), "{restart}");
    let end = find("task finished")?;
    assert!(end["duration_ms"].is_u64() && end["events"].is_u64() && end["status"] == "completed", "{end}");
    let access = find("request refused")?;
    assert_eq!(access["target"], "aethrolink::access");
    assert_eq!(access["status"], 404);
    // The actor a record came from is its own field, a plain string.
    assert!(records.iter().any(|r| r["actor"].is_string()), "no actor field:\n{log}");
    assert!(records.iter().all(|r| r.get("spans").is_none() && r.get("fields").is_none()), "{log}");
    Ok(())
}

fn cli(node: &Node, args: &[&str]) -> Result<std::process::Output> {
    Ok(std::process::Command::new(common::cli_bin())
        .arg("--server")
        .arg(&node.base)
        .args(args)
        .env("HOME", node.dir.join("home"))
        .output()?)
}

#[tokio::test]
async fn a_crash_loop_shows_until_when_and_a_forced_start_relaunches() -> Result {
    let node = node(false)?;
    for _ in 0..4 {
        run(&node, "!crash").await?;
    }
    let (status, health) = node.get("/v1/targets/fake/health").await?;
    assert_eq!(status, 200, "{health}");
    let until = health["paused_until"].as_str().ok_or_else(|| format!("no paused_until: {health}"))?.to_owned();
    assert!(until.ends_with('Z') && until.as_str() > health["last_exit"]["at"].as_str().unwrap_or("~"), "{health}");
    assert_eq!(health["last_exit"]["exit_code"], 1, "{health}");
    assert_eq!(health["last_exit"]["status"], "exit status 1", "{health}");
    assert_eq!(health["healthy"], false);

    let (_, targets) = node.get("/v1/targets").await?;
    let row = targets["targets"].as_array().and_then(|ts| ts.iter().find(|t| t["target_id"] == "fake")).cloned();
    let row = row.ok_or("no row")?;
    assert_eq!(row["runtimes"][0]["paused_until"], until.as_str(), "{row}");
    assert_eq!(row["runtimes"][0]["last_exit"]["exit_code"], 1, "{row}");
    let table = cli(&node, &["targets"])?;
    let text = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.status.success(), "{text}{}", String::from_utf8_lossy(&table.stderr));
    assert!(text.lines().any(|l| l.starts_with("fake ") && l.contains("paused")), "{text}");
    assert!(text.contains(&format!("launches paused until {until}")) && text.contains("exit status 1"), "{text}");

    // Without force: 409 naming when launches resume; the pause stays.
    let (status, v) = node.post("/v1/targets/fake/start", json!({})).await?;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["paused_until"], until.as_str(), "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains(&until), "{v}");
    let refused = cli(&node, &["target-start", "--target-agent-id", "fake"])?;
    assert!(!refused.status.success(), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains(&until), "{refused:?}");

    // With force: the pause is cleared and the runtime launches.
    let started = cli(&node, &["target-start", "--target-agent-id", "fake", "--force"])?;
    assert!(started.status.success(), "{started:?}\n{}", node.log());
    let (status, health) = node.get("/v1/targets/fake/health").await?;
    assert_eq!(status, 200);
    assert!(health.get("paused_until").is_none() && health["healthy"] == true, "{health}");
    assert!(health["process_id"].is_u64(), "{health}");
    line_with(&node, &["crash-loop pause cleared (forced start)", "target_id=fake"]).await?;
    let id = run(&node, "after").await?;
    assert_eq!(node.task(&id).await?["status"], "completed");
    Ok(())
}
