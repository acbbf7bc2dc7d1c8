//! Signed node protocol, black-box: real `alink-node` processes sign relays and peer sync (RFC
//! 9421, ed25519) and verify who signed: registered peers by pinned key (given at `peer-add` or
//! pinned at the first sync, re-pinned only explicitly), any signed node with
//! `--accept-from-any-node`; forged, stale and replayed requests are refused 401 with nothing
//! run; only the origin that created a destination task may cancel it (403).

mod common;

use aethrolink_actors::clock::Timestamp;
use aethrolink_actors::identity::node_auth::{NODE_ID_HEADER, NODE_KEY_HEADER, signed_headers, unix_now};
use aethrolink_actors::identity::signature::{self, RequestParts};
use aethrolink_actors::identity::{NodeIdentity, NodeKey};
use common::{Node, NodeOpts, Result};
use serde_json::{Value, json};

/// The origin's own targets (the destination's `other` is only there).
const ORIGIN_REGISTRY: &str = "targets:\n  mine:\n    adapter: loopback\n    capabilities: [mine.only]\n";

fn origin() -> Result<Node> {
    Node::start_with(NodeOpts { registry: Some(ORIGIN_REGISTRY.to_owned()), extra_args: vec![], ..NodeOpts::default() })
}

fn node(extra: &[&str]) -> Result<Node> {
    Node::start_with(NodeOpts { extra_args: extra.iter().map(|s| (*s).to_owned()).collect(), ..NodeOpts::default() })
}

/// A node identity the test signs with.
fn signer(seed: u8) -> NodeIdentity {
    NodeIdentity::new(format!("test-node-{seed}"), NodeKey::from_seed(&[seed; 32]), Timestamp::now())
}

async fn add_peer(node: &Node, body: Value) -> Result<Value> {
    let (status, v) = node.post("/v1/peers", body.clone()).await?;
    assert_eq!(status, 201, "{body} → {v}");
    Ok(v)
}

/// Sends `body` to `path` with exactly `headers`.
async fn send(node: &Node, path: &str, body: &[u8], headers: &[(&'static str, String)]) -> Result<(u16, Value)> {
    let mut req = node.http.post(node.url(path)).header("content-type", "application/json").body(body.to_vec());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

fn submit_body(proxy: &str, payload: Value) -> Vec<u8> {
    json!({ "origin_node_id": "test-origin", "origin_proxy_task_id": proxy, "target_agent_id": "echo", "intent": "demo.echo", "payload": payload })
        .to_string()
        .into_bytes()
}

async fn task_count(node: &Node) -> Result<usize> {
    let (_, tasks) = node.get("/v1/tasks").await?;
    Ok(tasks["tasks"].as_array().map_or(0, Vec::len))
}

fn assert_unauthenticated(status: u16, frame: &Value, says: &str) {
    assert_eq!((status, frame["code"].as_str()), (401, Some("unauthenticated")), "{frame}");
    assert!(frame["message"].as_str().is_some_and(|m| m.contains(says)), "want '{says}': {frame}");
}

#[tokio::test]
async fn two_nodes_that_add_each_other_relay_signed_without_unsigned_mode() -> Result {
    let (a, b) = (origin()?, node(&[])?);
    add_peer(&a, json!({ "peer_id": "b", "base_url": b.base })).await?;
    add_peer(&b, json!({ "peer_id": "a", "base_url": a.base })).await?;
    assert_eq!(a.post("/v1/peers/b/sync", json!({})).await?.0, 200);
    assert_eq!(b.post("/v1/peers/a/sync", json!({})).await?.0, 200);
    let (_, a_identity) = a.get("/v1/node/identity").await?;
    let (_, b_peers) = b.get("/v1/peers").await?;
    assert_eq!(b_peers["peers"][0]["key_id"], a_identity["key_id"], "pinned at the first sync: {b_peers}");

    let task_id = a.create_with(json!({ "target_agent_id": "other", "intent": "other.only", "payload": {} })).await?;
    let task = a.wait_status(&task_id, "completed").await?;
    let destination = task["remote"]["binding"].as_str().ok_or("no destination task")?;
    let dest = b.task(destination).await?;
    assert_eq!(dest["metadata"]["authenticated_origin_node_id"], a_identity["node_id"], "{dest}");
    Ok(())
}

#[tokio::test]
async fn an_unknown_signed_node_is_refused_unless_the_destination_accepts_any_node() -> Result {
    let (a, strict, open) = (origin()?, node(&[])?, node(&["--accept-from-any-node"])?);
    add_peer(&a, json!({ "peer_id": "strict", "base_url": strict.base })).await?;
    assert_eq!(a.post("/v1/peers/strict/sync", json!({})).await?.0, 200);
    let task_id = a.create_with(json!({ "target_agent_id": "other", "intent": "other.only", "payload": {} })).await?;
    let task = a.wait_status(&task_id, "failed").await?;
    assert_eq!(task["last_error"]["reason"], "remote relay failed", "{task}");
    let events = a.events_until_done(&task_id).await?;
    let detail = events.last().and_then(|e| e["data"]["detail"].as_str()).unwrap_or("").to_owned();
    assert!(detail.contains("unauthenticated") && detail.contains("not the pinned key"), "{detail}");
    assert_eq!(task_count(&strict).await?, 0, "nothing ran");

    // The same origin, unknown to a destination that accepts any signed node.
    let origin2 = origin()?;
    add_peer(&origin2, json!({ "peer_id": "open", "base_url": open.base })).await?;
    assert_eq!(origin2.post("/v1/peers/open/sync", json!({})).await?.0, 200);
    let a = origin2;
    let task_id = a.create_with(json!({ "target_agent_id": "other", "intent": "other.only", "payload": {} })).await?;
    a.wait_status(&task_id, "completed").await?;
    Ok(())
}

#[tokio::test]
async fn forged_stale_and_replayed_requests_are_refused_and_nothing_runs() -> Result {
    let b = node(&[])?;
    let (k1, k2) = (signer(1), signer(2));
    add_peer(
        &b,
        json!({ "peer_id": "k1", "base_url": "http://127.0.0.1:9", "public_key": k1.public_key().to_base64url() }),
    )
    .await?;
    let body = submit_body("p1", json!({ "text": "x" }));
    let headers = signed_headers(&k1, "POST", "/v1/node/tasks", &body);

    // Forged: k1's headers with k2's signature of the same request.
    let theirs = signed_headers(&k2, "POST", "/v1/node/tasks", &body);
    let mut forged = headers.clone();
    for (name, value) in forged.iter_mut() {
        if *name == "signature" {
            *value = theirs.iter().find(|(n, _)| *n == "signature").map(|(_, v)| v.clone()).unwrap_or_default();
        }
    }
    let (status, frame) = send(&b, "/v1/node/tasks", &body, &forged).await?;
    assert_unauthenticated(status, &frame, "signature does not verify");
    // Another body under the same signature.
    let (status, frame) = send(&b, "/v1/node/tasks", &submit_body("p2", json!({})), &headers).await?;
    assert_unauthenticated(status, &frame, "content-digest does not match");
    // Stale: created an hour ago.
    let request = RequestParts { method: "POST", target: "/v1/node/tasks", body: &body };
    let old = signature::sign(k1.key(), &request, unix_now() - 3600, &signature::new_nonce());
    let mut stale: Vec<(&'static str, String)> = old.pairs().iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
    stale.push((NODE_KEY_HEADER, k1.public_key().to_base64url()));
    stale.push((NODE_ID_HEADER, k1.node_id().to_owned()));
    let (status, frame) = send(&b, "/v1/node/tasks", &body, &stale).await?;
    assert_unauthenticated(status, &frame, "too old");
    // Unsigned.
    let (status, frame) = send(&b, "/v1/node/tasks", &body, &[]).await?;
    assert_unauthenticated(status, &frame, "--allow-unsigned-peers");
    assert_eq!(task_count(&b).await?, 0, "nothing ran");

    // The genuine request once; its captured headers resent are a replay.
    let (status, accepted) = send(&b, "/v1/node/tasks", &body, &headers).await?;
    assert_eq!(status, 202, "{accepted}");
    let (status, frame) = send(&b, "/v1/node/tasks", &body, &headers).await?;
    assert_unauthenticated(status, &frame, "nonce already used");
    assert_eq!(task_count(&b).await?, 1, "the replay ran nothing");
    let dest = b.task(accepted["destination_task_id"].as_str().ok_or("no id")?).await?;
    assert_eq!(dest["metadata"]["authenticated_origin_node_id"], "k1", "the pinned peer: {dest}");
    Ok(())
}

#[tokio::test]
async fn keys_are_pinned_at_first_sync_re_pinned_only_explicitly_and_durable() -> Result {
    let (a, b) = (origin()?, node(&[])?);
    let (_, b_identity) = b.get("/v1/node/identity").await?;
    let added = add_peer(&a, json!({ "peer_id": "b", "base_url": b.base })).await?;
    assert!(added.get("public_key").is_none(), "nothing pinned before a sync: {added}");
    assert_eq!(a.post("/v1/peers/b/sync", json!({})).await?.0, 200);
    let (_, peers) = a.get("/v1/peers").await?;
    assert_eq!(
        (&peers["peers"][0]["public_key"], &peers["peers"][0]["key_id"]),
        (&b_identity["public_key"]["key"], &b_identity["key_id"]),
        "{peers}"
    );

    // Changing the pinned key is explicit.
    let other = signer(9).public_key();
    let change = json!({ "peer_id": "b", "base_url": b.base, "public_key": other.to_base64url() });
    let (status, v) = a.post("/v1/peers", change.clone()).await?;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("replace_key"), "{v}");
    let mut replace = change;
    replace["replace_key"] = json!(true);
    let replaced = add_peer(&a, replace).await?;
    assert_eq!(replaced["key_id"], other.key_id().as_str());

    // The peer now presents a key other than the pinned one: not re-pinned, the error recorded.
    let (status, v) = a.post("/v1/peers/b/sync", json!({})).await?;
    assert_eq!(status, 400, "{v}");
    let (_, peers) = a.get("/v1/peers").await?;
    let peer = &peers["peers"][0];
    assert_eq!(peer["key_id"], other.key_id().as_str(), "not silently re-pinned: {peer}");
    assert!(peer["last_error"].as_str().unwrap_or("").contains("peer key changed"), "{peer}");

    // Re-pinned explicitly to the real key: syncs again; durable across a restart.
    let fix = json!({ "peer_id": "b", "base_url": b.base, "public_key": b_identity["public_key"]["key"], "replace_key": true });
    add_peer(&a, fix).await?;
    assert_eq!(a.post("/v1/peers/b/sync", json!({})).await?.0, 200);
    let dir = a.dir.clone();
    let mut a = a;
    a.stop()?;
    let a = Node::start_in(
        &dir,
        NodeOpts { registry: Some(ORIGIN_REGISTRY.to_owned()), extra_args: vec![], ..NodeOpts::default() },
    )?;
    let (_, peers) = a.get("/v1/peers").await?;
    assert_eq!(peers["peers"][0]["key_id"], b_identity["key_id"], "{peers}");
    Ok(())
}

#[tokio::test]
async fn only_the_origin_that_created_a_task_may_cancel_it() -> Result {
    let b = node(&[])?;
    let (k1, k2) = (signer(1), signer(2));
    for (id, k) in [("k1", &k1), ("k2", &k2)] {
        add_peer(
            &b,
            json!({ "peer_id": id, "base_url": "http://127.0.0.1:9", "public_key": k.public_key().to_base64url() }),
        )
        .await?;
    }
    let body = submit_body("p1", json!({ "mode": "await_input" }));
    let (status, accepted) =
        send(&b, "/v1/node/tasks", &body, &signed_headers(&k1, "POST", "/v1/node/tasks", &body)).await?;
    assert_eq!(status, 202, "{accepted}");
    let dest = accepted["destination_task_id"].as_str().ok_or("no id")?.to_owned();
    b.wait_status(&dest, "awaiting_input").await?;
    let path = format!("/v1/node/tasks/{dest}/cancel");
    let control = json!({ "origin_node_id": "x", "origin_proxy_task_id": "p1", "destination_task_id": dest })
        .to_string()
        .into_bytes();
    let (status, frame) = send(&b, &path, &control, &signed_headers(&k2, "POST", &path, &control)).await?;
    assert_eq!((status, frame["code"].as_str()), (403, Some("task_cancel_failed")), "{frame}");
    assert!(frame["message"].as_str().unwrap_or("").contains("relayed by node k1"), "{frame}");
    let resume = format!("/v1/node/tasks/{dest}/resume");
    let (status, frame) = send(&b, &resume, &control, &signed_headers(&k2, "POST", &resume, &control)).await?;
    assert_eq!(status, 403, "{frame}");
    assert_eq!(b.task(&dest).await?["status"], "awaiting_input", "nothing ran");
    let (status, v) = send(&b, &path, &control, &signed_headers(&k1, "POST", &path, &control)).await?;
    assert!(status == 200 || status == 202, "{status} {v}");
    b.wait_status(&dest, "cancelled").await?;
    Ok(())
}
