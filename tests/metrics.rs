//! `GET /metrics`, black-box: the real node's Prometheus text moves with what it does — tasks
//! created, transitions, outcomes and their durations, storage commits, a runtime launch, HTTP
//! requests by route and status (a 404 too), and a refused node-protocol request.

mod common;

use common::{Node, NodeOpts, REGISTRY, Result};
use serde_json::json;

/// The value of the first sample of `name` whose labels include every `labels` pair (`0` if none).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|(_, value)| value.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(node: &Node) -> Result<String> {
    let resp = node.http.get(node.url("/metrics")).send().await?;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Ok(resp.text().await?)
}

#[tokio::test]
async fn metrics_move_with_tasks_launches_requests_and_refusals() -> Result {
    let agent = format!("{}/tests/agents/fake_acp_agent.py", env!("CARGO_MANIFEST_DIR"));
    let registry = format!(
        "{REGISTRY}  fake:\n    adapter: acp\n    launch:\n      command: [python3, {agent}]\n    capabilities: [chat]\n"
    );
    let node = Node::start_with(NodeOpts { registry: Some(registry), extra_args: Vec::new(), ..NodeOpts::default() })?;
    scrape(&node).await?;

    for i in 0..3 {
        let id = node.create(json!({ "text": format!("m{i}") })).await?;
        node.wait_status(&id, "completed").await?;
    }
    let failed = node.create(json!({ "mode": "fail", "reason": "boom" })).await?;
    node.wait_status(&failed, "failed").await?;
    let acp =
        node.create_with(json!({ "target_agent_id": "fake", "intent": "chat", "payload": {"text": "hi"} })).await?;
    node.wait_status(&acp, "completed").await?;
    assert_eq!(node.get("/v1/no-such-route").await?.0, 404);
    // Unsigned node-protocol requests are refused by default.
    let (status, _) = node.post("/v1/node/tasks", json!({ "origin_node_id": "x" })).await?;
    assert_eq!(status, 401);

    let text = scrape(&node).await?;
    let created = sample(&text, "alink_tasks_created_total", &[("target", "echo"), ("adapter", "loopback")]);
    assert_eq!(created, 4.0, "{text}");
    assert_eq!(sample(&text, "alink_tasks_created_total", &[("target", "fake"), ("adapter", "acp")]), 1.0);
    assert!(
        sample(&text, "alink_task_transitions_total", &[("from", "running"), ("to", "completed")]) >= 4.0,
        "{text}"
    );
    assert_eq!(sample(&text, "alink_tasks_finished_total", &[("status", "completed"), ("reason", "none")]), 4.0);
    assert_eq!(sample(&text, "alink_tasks_finished_total", &[("status", "failed"), ("reason", "boom")]), 1.0);
    assert_eq!(sample(&text, "alink_task_duration_seconds_count", &[("status", "completed")]), 4.0, "{text}");
    assert!(sample(&text, "alink_task_dispatch_latency_seconds_count", &[]) >= 5.0);
    assert!(sample(&text, "alink_storage_commits_total", &[]) > 0.0);
    assert!(sample(&text, "alink_storage_commit_duration_seconds_count", &[]) > 0.0);
    assert_eq!(sample(&text, "alink_runtime_launches_total", &[("adapter", "acp"), ("outcome", "ready")]), 1.0);
    assert_eq!(sample(&text, "alink_runtime_launch_duration_seconds_count", &[]), 1.0);
    assert_eq!(sample(&text, "alink_runtimes_live", &[]), 1.0);
    let created_route = [("method", "POST"), ("route", "/v1/tasks"), ("status", "202")];
    assert_eq!(sample(&text, "alink_http_requests_total", &created_route), 5.0, "{text}");
    assert_eq!(sample(&text, "alink_http_requests_total", &[("route", "unmatched"), ("status", "404")]), 1.0);
    assert_eq!(sample(&text, "alink_auth_failures_total", &[("reason", "unsigned")]), 1.0);
    assert!(text.contains("alink_http_request_duration_seconds_bucket"), "real histograms, not summaries");
    assert!(text.contains("# HELP alink_tasks_created_total Tasks created"), "described:\n{text}");

    // Stopping the agent's runtime takes it off the live gauge.
    let (status, v) = node.post("/v1/targets/fake/stop", json!({})).await?;
    assert!(status < 300, "{status} {v}");
    let text = scrape(&node).await?;
    assert_eq!(sample(&text, "alink_runtimes_live", &[]), 0.0, "{text}");
    Ok(())
}
