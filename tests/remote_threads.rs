//! Threads with a remote participant, black-box (contract §10, §9.6 step 4): two real
//! `alink-node` processes on port 0; the origin knows the destination as a synced peer, and a
//! thread pairs a local agent with the peer's cached target. A turn to the remote participant is
//! relayed, and its turn records the peer and the destination's ids; inspection reports where
//! each participant runs.

mod common;

use common::{Node, NodeOpts, Result};
use serde_json::{Value, json};

/// The origin's own targets (`other` is only the peer's).
const ORIGIN_REGISTRY: &str = "targets:\n  echo:\n    adapter: loopback\n    capabilities: [demo.echo]\n  mine:\n    adapter: loopback\n    capabilities: [mine.only]\n";

fn origin() -> Result<Node> {
    Node::start_with(NodeOpts { registry: Some(ORIGIN_REGISTRY.to_owned()), extra_args: vec![], ..NodeOpts::default() })
}

/// A peer in the Go-compatibility mode (`--allow-unsigned-peers`), exporting `echo` and `other`.
fn destination() -> Result<Node> {
    Node::start_with(NodeOpts { extra_args: vec!["--allow-unsigned-peers".into()], ..NodeOpts::default() })
}

async fn add_peer(node: &Node, peer_id: &str, base_url: &str) -> Result<Value> {
    let (status, v) = node.post("/v1/peers", json!({ "peer_id": peer_id, "base_url": base_url })).await?;
    assert_eq!(status, 201, "{v}");
    Ok(v)
}

async fn register(node: &Node, body: Value) -> Result {
    let (status, v) = node.post("/v1/agents/register", body).await?;
    assert_eq!(status, 202, "{v}");
    Ok(())
}

async fn create_thread(node: &Node, a: &str, b: &str) -> Result<(u16, Value)> {
    node.post("/v1/threads", json!({ "agent_a_id": a, "agent_b_id": b })).await
}

/// Continues the thread and waits for the turn's task to complete.
async fn continue_turn(node: &Node, thread_id: &str, body: Value) -> Result<Value> {
    let (status, v) = node.post(&format!("/v1/threads/{thread_id}/continue"), body).await?;
    assert_eq!(status, 202, "{v}");
    let task_id = v["task"]["task_id"].as_str().ok_or("no task id")?.to_owned();
    node.wait_status(&task_id, "completed").await
}

#[tokio::test]
async fn a_thread_with_a_peer_target_relays_its_turns_and_inspection_says_where_each_runs() -> Result {
    let b = destination()?;
    let a = origin()?;
    register(&a, json!({ "agent_id": "alice", "display_name": "Alice", "transport_kind": "local_managed", "adapter": "loopback", "capabilities": ["chat"] })).await?;
    // Not cached before the sync: an unknown participant.
    let (status, v) = create_thread(&a, "alice", "other").await?;
    assert_eq!(status, 404, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("target agent not found"), "{v}");

    add_peer(&a, "b", &b.base).await?;
    let (status, v) = a.post("/v1/peers/b/sync", json!({})).await?;
    assert_eq!(status, 200, "{v}");
    let (_, b_health) = b.get("/v1/node/health").await?;
    let (_, a_health) = a.get("/v1/node/health").await?;
    let b_node = b_health["node_id"].as_str().ok_or("no node id")?.to_owned();
    let a_node = a_health["node_id"].as_str().ok_or("no node id")?.to_owned();

    let (status, v) = create_thread(&a, "alice", "other").await?;
    assert_eq!(status, 201, "{v}");
    let thread_id = v["thread"]["thread_id"].as_str().ok_or("no thread id")?.to_owned();
    for (x, y) in [("alice", "nope"), ("nope", "other")] {
        let (status, v) = create_thread(&a, x, y).await?;
        assert_eq!(status, 404, "{x}, {y}: {v}");
        assert!(v["error"].as_str().unwrap_or("").contains("target agent not found: nope"), "{v}");
    }

    // Before any turn the cached target makes `other` remote, with the peer id as its node.
    let (_, view) = a.get(&format!("/v1/threads/{thread_id}/inspect")).await?;
    assert_eq!(
        view["participants"],
        json!([
            { "agent_id": "alice", "owner": "local", "node_id": a_node },
            { "agent_id": "other", "owner": "remote", "peer_id": "b", "node_id": "b" },
        ])
    );

    // alice → other: relayed to b; other → alice: local. Intents are keyed by the sender.
    let body = json!({
        "intent_by_agent": { "alice": "other.only", "other": "chat" },
        "payload": { "text": "hello" },
    });
    let proxy = continue_turn(&a, &thread_id, body.clone()).await?;
    assert_eq!(proxy["resolved_agent_id"], "other");
    let binding = proxy["remote"]["binding"].as_str().ok_or("no remote binding")?.to_owned();
    let (_, view) = a.get(&format!("/v1/threads/{thread_id}/inspect")).await?;
    assert_eq!(view["next_continue"]["target_agent_id"], "alice", "{view}");
    let back = continue_turn(&a, &thread_id, body).await?;
    assert_eq!(back["resolved_agent_id"], "alice");

    let (_, listed) = a.get(&format!("/v1/threads/{thread_id}/turns")).await?;
    let turns = listed["turns"].as_array().cloned().unwrap_or_default();
    assert_eq!(turns.len(), 2, "{listed}");
    let relayed = &turns[0];
    assert_eq!(
        (
            relayed["task_id"].as_str(),
            relayed["target_agent_id"].as_str(),
            relayed["target_owner"].as_str(),
            relayed["remote_peer_id"].as_str(),
            relayed["status"].as_str(),
        ),
        (proxy["task_id"].as_str(), Some("other"), Some("remote"), Some("b"), Some("completed")),
        "{relayed}"
    );
    assert_eq!(relayed["destination_node_id"], b_node.as_str(), "{relayed}");
    assert_eq!(relayed["destination_task_id"], binding.as_str(), "the proxy task's remote binding: {relayed}");
    assert_eq!(b.task(&binding).await?["status"], "completed", "the destination task ran on b");
    // The local turn has none of the relay fields (omitted, not null).
    let local = &turns[1];
    assert_eq!((local["target_agent_id"].as_str(), local["status"].as_str()), (Some("alice"), Some("completed")));
    for key in ["target_owner", "remote_peer_id", "destination_node_id", "destination_task_id", "destination_thread_id"]
    {
        assert!(local.get(key).is_none(), "{key} on a local turn: {local}");
    }

    // Inspection: the relayed turn names b's node; the next turn goes to the remote target,
    // whose session this node cannot predict.
    let (status, view) = a.get(&format!("/v1/threads/{thread_id}/inspect")).await?;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        view["participants"],
        json!([
            { "agent_id": "alice", "owner": "local", "node_id": a_node },
            { "agent_id": "other", "owner": "remote", "peer_id": "b", "node_id": b_node },
        ])
    );
    assert_eq!(view["turns"], listed["turns"], "inspection lists the same turns");
    assert_eq!(
        view["next_continue"],
        json!({ "sender_agent_id": "alice", "target_agent_id": "other", "will_reuse_remote_session": false })
    );
    Ok(())
}

#[tokio::test]
async fn an_adapter_less_agent_may_pair_with_a_remote_target() -> Result {
    let b = destination()?;
    let a = origin()?;
    add_peer(&a, "b", &b.base).await?;
    assert_eq!(a.post("/v1/peers/b/sync", json!({})).await?.0, 200);
    register(&a, json!({ "agent_id": "carol", "display_name": "Carol", "transport_kind": "external" })).await?;
    let (status, v) = create_thread(&a, "carol", "other").await?;
    assert_eq!(status, 201, "{v}");
    let thread_id = v["thread"]["thread_id"].as_str().ok_or("no thread id")?.to_owned();
    // carol only speaks: her turn to `other` is relayed.
    let proxy = continue_turn(&a, &thread_id, json!({ "intent": "other.only", "payload": {} })).await?;
    let (_, listed) = a.get(&format!("/v1/threads/{thread_id}/turns")).await?;
    let turn = &listed["turns"][0];
    assert_eq!((turn["target_owner"].as_str(), turn["status"].as_str()), (Some("remote"), Some("completed")), "{turn}");
    assert_eq!(turn["destination_task_id"], proxy["remote"]["binding"]);
    Ok(())
}
