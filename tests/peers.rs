//! Static peers, black-box: real `alink-node` processes on port 0 that know each other as peers
//! (contract §9.3–9.6): registration and its validation, sync (one, all, background), peer
//! targets listed with `owner` = the peer id, routing (local wins; one id from two peers is a
//! 409 naming both), a peer that is down, and relaying a task to a peer; by default a node
//! refuses unsigned node-protocol callers.

mod common;

use std::time::Duration;

use common::{Node, NodeOpts, Result, cli_bin};
use serde_json::{Value, json};

/// The origin's own targets: `echo` collides with the peer's, `mine` is only local.
const ORIGIN_REGISTRY: &str = "targets:\n  echo:\n    adapter: loopback\n    capabilities: [demo.echo]\n  mine:\n    adapter: loopback\n    capabilities: [mine.only]\n";

fn origin(extra: &[&str]) -> Result<Node> {
    Node::start_with(NodeOpts {
        registry: Some(ORIGIN_REGISTRY.to_owned()),
        extra_args: extra.iter().map(|s| (*s).to_owned()).collect(),
        ..NodeOpts::default()
    })
}

/// A peer in the Go-compatibility mode (`--allow-unsigned-peers`): it accepts unsigned callers,
/// and signed ones it has not registered (signed relays between registered peers are in
/// tests/signed_peers.rs).
fn destination() -> Result<Node> {
    Node::start_with(NodeOpts { extra_args: vec!["--allow-unsigned-peers".into()], ..NodeOpts::default() })
}

async fn add_peer(node: &Node, peer_id: &str, base_url: &str) -> Result<Value> {
    let (status, v) = node.post("/v1/peers", json!({ "peer_id": peer_id, "base_url": base_url })).await?;
    assert_eq!(status, 201, "{v}");
    Ok(v)
}

/// `(target_id, owner)` of every listed target.
fn listed(targets: &Value) -> Vec<(String, String)> {
    targets["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (t["target_id"].as_str().unwrap_or("").to_owned(), t["owner"].as_str().unwrap_or("").to_owned()))
        .collect()
}

fn pair(t: &str, o: &str) -> (String, String) {
    (t.to_owned(), o.to_owned())
}

/// A port nothing listens on.
fn closed_port_url() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    Ok(format!("http://127.0.0.1:{port}"))
}

#[tokio::test]
async fn peers_are_validated_added_listed_and_synced() -> Result {
    let (a, b) = (origin(&[])?, destination()?);
    let cases: [(Value, &str); 4] = [
        (json!({ "base_url": "http://x" }), "peer_id required"),
        (json!({ "peer_id": "b", "base_url": "ftp://x" }), "peer base_url invalid"),
        (json!({ "peer_id": "b", "base_url": "no url" }), "peer base_url invalid"),
        (json!({ "peer_id": "b", "base_url": "http://x", "nope": 1 }), "unknown field"),
    ];
    for (body, want) in cases {
        let (status, v) = a.post("/v1/peers", body.clone()).await?;
        assert_eq!(status, 400, "{body} → {v}");
        assert!(v["error"].as_str().unwrap_or("").contains(want), "{body} → {v}");
    }
    let added = add_peer(&a, "b", &format!("{}/", b.base)).await?;
    assert_eq!((added["peer_id"].as_str(), added["status"].as_str()), (Some("b"), Some("offline")));
    assert_eq!(added["base_url"], b.base.as_str(), "normalised without the trailing slash");
    assert_eq!(added["display_name"], "b");
    let (_, peers) = a.get("/v1/peers").await?;
    assert_eq!(peers["peers"].as_array().map(Vec::len), Some(1), "{peers}");

    let (status, _) = a.post("/v1/peers/nope/sync", json!({})).await?;
    assert_eq!(status, 404);
    let (status, synced) = a.post("/v1/peers/b/sync", json!({})).await?;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["peer"]["status"], "online");
    let (_, b_health) = b.get("/v1/node/health").await?;
    assert_eq!(synced["peer"]["metadata"]["node_id"], b_health["node_id"]);
    let ids: Vec<&str> =
        synced["targets"].as_array().into_iter().flatten().filter_map(|t| t["target_id"].as_str()).collect();
    assert_eq!(ids, ["echo", "other"]);
    assert_eq!(synced["targets"][0]["metadata"]["source_node_id"], b_health["node_id"]);

    // Listed after the local ones, owned by the peer; the peer's own listing is unchanged.
    let (_, targets) = a.get("/v1/targets").await?;
    assert_eq!(listed(&targets), [pair("echo", "local"), pair("mine", "local"), pair("echo", "b"), pair("other", "b")]);
    let peer_echo = &targets["targets"][2];
    assert_eq!((peer_echo["peer_id"].as_str(), peer_echo["peer_status"].as_str()), (Some("b"), Some("online")));
    assert_eq!(peer_echo["peer_base_url"], b.base.as_str());
    let (_, b_targets) = b.get("/v1/targets").await?;
    assert_eq!(listed(&b_targets), [pair("echo", "local"), pair("other", "local")]);

    // Durable: a restarted origin lists the peer and its cached targets without syncing.
    let dir = a.dir.clone();
    let mut a = a;
    a.stop()?;
    let a = Node::start_in(
        &dir,
        NodeOpts { registry: Some(ORIGIN_REGISTRY.to_owned()), extra_args: vec![], ..NodeOpts::default() },
    )?;
    let (_, targets) = a.get("/v1/targets").await?;
    assert!(listed(&targets).contains(&pair("other", "b")), "{targets}");
    let (_, peers) = a.get("/v1/peers").await?;
    assert_eq!(peers["peers"][0]["status"], "online");
    Ok(())
}

#[tokio::test]
async fn refresh_syncs_every_peer_and_a_down_peer_does_not_stop_the_others() -> Result {
    let (a, b) = (origin(&[])?, destination()?);
    add_peer(&a, "a-down", &closed_port_url()?).await?;
    add_peer(&a, "b", &b.base).await?;
    let (_, before) = a.get("/v1/targets").await?;
    assert_eq!(listed(&before).len(), 2, "nothing cached before a sync: {before}");

    let (status, targets) = a.get("/v1/targets?refresh=true").await?;
    assert_eq!(status, 200, "{targets}");
    assert!(listed(&targets).contains(&pair("other", "b")), "{targets}");
    let (_, peers) = a.get("/v1/peers").await?;
    let down = &peers["peers"][0];
    assert_eq!((down["peer_id"].as_str(), down["status"].as_str()), (Some("a-down"), Some("offline")), "{peers}");
    assert!(down["last_error"].as_str().is_some_and(|e| e.contains("peer health")), "{peers}");
    assert_eq!(peers["peers"][1]["status"], "online");
    assert!(peers["peers"][1].get("last_error").is_none());

    // Syncing the down peer alone is a 400 naming it; its error stays on its record.
    let (status, v) = a.post("/v1/peers/a-down/sync", json!({})).await?;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("a-down"), "{v}");
    Ok(())
}

#[tokio::test]
async fn background_sync_caches_peer_targets() -> Result {
    let b = destination()?;
    let a = origin(&["--peer-sync-interval", "200ms"])?;
    add_peer(&a, "b", &b.base).await?;
    for _ in 0..100 {
        let (_, targets) = a.get("/v1/targets").await?;
        if listed(&targets).contains(&pair("other", "b")) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the background sync never cached b's targets".into())
}

#[tokio::test]
async fn local_targets_win_and_one_id_from_two_peers_is_a_conflict() -> Result {
    let (a, b, c) = (origin(&[])?, destination()?, destination()?);
    add_peer(&a, "b", &b.base).await?;
    add_peer(&a, "c", &c.base).await?;
    let (status, _) = a.get("/v1/targets?refresh=true").await?;
    assert_eq!(status, 200);

    // `echo` is local here and exported by both peers: the local one runs it.
    let task_id = a.create(json!({ "text": "here" })).await?;
    let events = a.events_until_done(&task_id).await?;
    assert_eq!(events.last().map(|e| e["state"].clone()), Some(json!("completed")));
    assert_eq!(events[1]["message"], "Route resolved");
    assert!(events.iter().all(|e| e["source"] != "transport"), "{events:?}");

    // `other` is exported by b and c only.
    let (status, v) =
        a.post("/v1/tasks", json!({ "target_agent_id": "other", "intent": "other.only", "payload": {} })).await?;
    assert_eq!(status, 409, "{v}");
    let error = v["error"].as_str().unwrap_or("");
    assert!(error.contains("routing conflict") && error.contains("b, c"), "{v}");
    Ok(())
}

#[tokio::test]
async fn cli_adds_lists_and_syncs_peers() -> Result {
    let (a, b) = (origin(&[])?, destination()?);
    let cli = |args: &[&str]| -> Result<Value> {
        let out =
            std::process::Command::new(cli_bin()).arg("--server").arg(&a.base).arg("--json").args(args).output()?;
        if !out.status.success() {
            return Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let added = cli(&["peer-add", "--peer-id", "b", "--base-url", &b.base, "--capabilities", "x, y"])?;
    assert_eq!(added["capabilities"], json!(["x", "y"]));
    assert_eq!(cli(&["peer-list"])?["peers"][0]["peer_id"], "b");
    assert_eq!(cli(&["peer-sync", "--peer-id", "b"])?["peer"]["status"], "online");
    let targets = cli(&["targets", "--refresh"])?;
    assert!(listed(&targets).contains(&pair("other", "b")), "{targets}");
    Ok(())
}

/// An origin that knows `b` (synced).
async fn origin_with_peer(b: &Node) -> Result<Node> {
    let a = origin(&[])?;
    add_peer(&a, "b", &b.base).await?;
    let (status, v) = a.post("/v1/peers/b/sync", json!({})).await?;
    assert_eq!(status, 200, "{v}");
    Ok(a)
}

#[tokio::test]
async fn a_task_for_a_peer_target_is_relayed_with_mirrored_events_and_its_result() -> Result {
    let b = destination()?;
    let a = origin_with_peer(&b).await?;
    let payload = json!({ "mode": "progress", "steps": 2, "interval_ms": 30 });
    let task_id =
        a.create_with(json!({ "target_agent_id": "other", "intent": "other.only", "payload": payload })).await?;
    let events = a.events_until_done(&task_id).await?;
    common::assert_contiguous(&events);
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(
        (last["kind"].as_str(), last["source"].as_str()),
        (Some("task.completed"), Some("transport")),
        "{events:?}"
    );
    assert_eq!(events[1]["message"], "Remote route resolved");
    assert_eq!(events[1]["data"]["remote_peer_id"], "b");
    let accepted = events.iter().position(|e| e["message"] == "Remote task accepted").ok_or("no acceptance")?;
    assert_eq!(events[accepted]["source"], "transport");
    let destination_task_id =
        events[accepted]["data"]["destination_task_id"].as_str().ok_or("no destination id")?.to_owned();
    let (_, b_health) = b.get("/v1/node/health").await?;
    assert_eq!(events[accepted]["data"]["destination_node_id"], b_health["node_id"]);

    // Mirrored: the destination's running events, each with its destination seq; and the
    // status never walked back (the destination's replayed created/launch events were refused).
    let mirrored: Vec<&Value> = events[accepted + 1..].iter().collect();
    assert!(
        mirrored
            .iter()
            .all(|e| e["source"] == "transport" && e["data"]["destination_task_id"] == destination_task_id.as_str()),
        "{mirrored:?}"
    );
    assert!(mirrored.iter().filter(|e| e["kind"] == "task.running").count() >= 2, "{mirrored:?}");
    assert!(mirrored.iter().all(|e| e["data"]["remote_event_seq"].as_u64().is_some()), "{mirrored:?}");
    let order = ["created", "ready", "dispatching", "running", "completed"];
    let rank = |e: &Value| order.iter().position(|s| e["state"] == *s).unwrap_or(0);
    assert!(events.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])), "status walked back: {:?}", common::kinds(&events));

    // The proxy's result is the destination's.
    let task = a.task(&task_id).await?;
    assert_eq!(
        (task["status"].as_str(), task["remote"]["binding"].as_str()),
        (Some("completed"), Some(destination_task_id.as_str()))
    );
    let artifact = task["result_artifact_id"].as_str().ok_or("no result")?;
    let (_, result) = a.get(&format!("/v1/artifacts/{artifact}")).await?;
    assert_eq!(result["text"], "completed 2 steps");

    // On the destination it is a normal local task, sent by the origin node.
    let dest = b.task(&destination_task_id).await?;
    let (_, a_health) = a.get("/v1/node/health").await?;
    assert_eq!((dest["status"].as_str(), &dest["sender"]), (Some("completed"), &a_health["node_id"]));
    Ok(())
}

#[tokio::test]
async fn a_relay_to_a_peer_that_is_down_fails_remote_relay_failed() -> Result {
    let mut b = destination()?;
    let a = origin_with_peer(&b).await?;
    b.kill()?;
    let task_id = a.create_with(json!({ "target_agent_id": "other", "intent": "other.only", "payload": {} })).await?;
    let task = a.wait_status(&task_id, "failed").await?;
    assert_eq!(task["last_error"]["reason"], "remote relay failed", "{task}");
    let events = a.events_until_done(&task_id).await?;
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!((last["source"].as_str(), last["data"]["remote_peer_id"].as_str()), (Some("transport"), Some("b")));
    Ok(())
}

#[tokio::test]
async fn destination_endpoints_answer_typed_errors() -> Result {
    let b = destination()?;
    let submit = |body: Value| b.post("/v1/node/tasks", body);
    let full = json!({ "origin_node_id": "a", "origin_proxy_task_id": "p", "target_agent_id": "echo", "intent": "demo.echo", "payload": {"text": "x"} });
    let cases: [(Value, u16, &str, bool); 4] = [
        (json!({ "origin_node_id": "a" }), 400, "invalid_task_submit", false),
        (json!({ "nope": 1 }), 400, "invalid_json", false),
        (
            json!({ "origin_node_id": "a", "origin_proxy_task_id": "p", "target_agent_id": "missing", "intent": "x", "payload": {} }),
            404,
            "task_submit_failed",
            true,
        ),
        (full.clone(), 202, "", false),
    ];
    let mut accepted = Value::Null;
    for (body, want_status, code, retryable) in cases {
        let (status, v) = submit(body.clone()).await?;
        assert_eq!(status, want_status, "{body} → {v}");
        if status == 202 {
            accepted = v;
            continue;
        }
        assert_eq!(
            (v["message_type"].as_str(), v["code"].as_str(), v["retryable"].as_bool()),
            (Some("task.submit"), Some(code), Some(retryable)),
            "{v}"
        );
    }
    assert_eq!(accepted["origin_proxy_task_id"], "p");
    let dest = accepted["destination_task_id"].as_str().ok_or("no destination task")?.to_owned();

    let (status, v) = b.get(&format!("/v1/node/tasks/{dest}/events")).await?;
    assert_eq!((status, v["code"].as_str()), (400, Some("invalid_task_events")), "{v}");
    let (status, v) = b.get("/v1/node/tasks/nope/events?origin_proxy_task_id=p").await?;
    assert_eq!(
        (status, v["code"].as_str(), v["retryable"].as_bool()),
        (404, Some("task_events_failed"), Some(true)),
        "{v}"
    );

    // The stream: frames of the destination task, closing after the terminal one.
    let resp = b.http.get(b.url(&format!("/v1/node/tasks/{dest}/events?origin_proxy_task_id=p"))).send().await?;
    assert_eq!(resp.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(20), resp.text()).await??;
    let frames: Vec<Value> =
        text.lines().filter_map(|l| l.strip_prefix("data: ")).filter_map(|d| serde_json::from_str(d).ok()).collect();
    let last = frames.last().cloned().unwrap_or_default();
    assert_eq!(
        (last["kind"].as_str(), last["origin_proxy_task_id"].as_str()),
        (Some("task.completed"), Some("p")),
        "{text}"
    );
    assert_eq!(last["destination_task_id"], dest.as_str());

    let control = json!({ "origin_node_id": "a", "origin_proxy_task_id": "p", "destination_task_id": "other" });
    let (status, v) = b.post(&format!("/v1/node/tasks/{dest}/cancel"), control).await?;
    assert_eq!((status, v["code"].as_str()), (400, Some("task_id_mismatch")), "{v}");
    let (status, v) = b.post(&format!("/v1/node/tasks/{dest}/resume"), json!({ "origin_node_id": "a" })).await?;
    assert_eq!(
        (status, v["code"].as_str(), v["message_type"].as_str()),
        (400, Some("invalid_task_resume"), Some("task.resume")),
        "{v}"
    );
    let control = json!({ "origin_node_id": "a", "origin_proxy_task_id": "p", "destination_task_id": dest });
    let (status, v) = b.post(&format!("/v1/node/tasks/{dest}/cancel"), control).await?;
    assert_eq!((status, v["status"].as_str()), (200, Some("completed")), "already terminal: {v}");
    Ok(())
}

#[tokio::test]
async fn a_relayed_task_awaiting_input_is_mirrored_and_can_be_cancelled_at_the_origin() -> Result {
    let b = destination()?;
    let a = origin_with_peer(&b).await?;
    let payload = json!({ "mode": "await_input" });
    let task_id =
        a.create_with(json!({ "target_agent_id": "other", "intent": "other.only", "payload": payload })).await?;
    a.wait_status(&task_id, "awaiting_input").await?;
    // (Resume relayed to the destination: tests/relay.rs.)
    let (status, v) = a.post(&format!("/v1/tasks/{task_id}/cancel"), json!({})).await?;
    assert!(status == 200 || status == 202, "{status} {v}");
    a.wait_status(&task_id, "cancelled").await?;
    Ok(())
}

#[tokio::test]
async fn a_relay_names_the_node_id_the_origin_runs_under() -> Result {
    let b = destination()?;
    let a = origin(&["--node-id", "custom-origin"])?;
    add_peer(&a, "b", &b.base).await?;
    assert_eq!(a.post("/v1/peers/b/sync", json!({})).await?.0, 200);
    let task_id = a.create_with(json!({ "target_agent_id": "other", "intent": "other.only", "payload": {} })).await?;
    a.wait_status(&task_id, "completed").await?;
    let task = a.task(&task_id).await?;
    let destination = task["remote"]["binding"].as_str().ok_or("no destination task")?;
    assert_eq!(b.task(destination).await?["sender"], "custom-origin");
    Ok(())
}

#[tokio::test]
async fn by_default_unsigned_node_protocol_callers_are_refused_and_nothing_runs() -> Result {
    let b = Node::start()?;
    let submit = json!({ "origin_node_id": "a", "origin_proxy_task_id": "p", "target_agent_id": "echo", "intent": "demo.echo", "payload": {"text": "x"} });
    let (status, frame) = b.post("/v1/node/tasks", submit).await?;
    assert_eq!(status, 401, "{frame}");
    assert_eq!((frame["code"].as_str(), frame["retryable"].as_bool()), (Some("unauthenticated"), Some(false)));
    assert!(frame["message"].as_str().is_some_and(|m| m.contains("--allow-unsigned-peers")), "{frame}");
    let (status, frame) = b.post("/v1/node/tasks/x/cancel", json!({})).await?;
    assert_eq!((status, frame["message_type"].as_str()), (401, Some("task.cancel")));
    let (_, tasks) = b.get("/v1/tasks").await?;
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(0), "nothing ran: {tasks}");
    Ok(())
}
