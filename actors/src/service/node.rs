//! Node operations: liveness, readiness (every core service running, storage answering), stats,
//! and the node's identity (its id bound to its public key).

use serde::Serialize;

use super::{Caller, Need, ServiceError, Services};
use crate::clock::Timestamp;
use crate::identity::{KeyId, PublishedKey};
use crate::runtime::{RuntimeChild, RuntimeSupMsg};
use crate::sse::SseHubMsg;
use crate::storage::StorageMsg;
use crate::supervision::{ASK_TIMEOUT, Slot, actor_label};
use crate::task_supervisor::TaskSupMsg;

/// What `readyz` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub node_id: String,
}

/// Storage commit counters.
#[derive(Clone, Debug, Serialize)]
pub struct StorageCounters {
    pub commits: u64,
    pub writes: u64,
    pub max_batch: usize,
}

/// Live actor counts and storage counters: what an operator checks for leaks and batching.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStats {
    pub node_id: String,
    /// This build's version.
    pub version: &'static str,
    pub live_task_actors: usize,
    pub sse_subscribers: usize,
    /// Open watchers of every task's events (`GET /v1/events`).
    pub sse_watchers: usize,
    pub storage: StorageCounters,
    /// The supervision tree as it is now.
    pub supervision: Supervision,
}

/// The root supervisor's children as they are now, in start order.
#[derive(Clone, Debug, Serialize)]
pub struct Supervision {
    pub root: &'static str,
    pub services: Vec<ServiceNode>,
}

/// One service under the root.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceNode {
    /// `storage`, `registry`, `peer_directory`, `runtime_supervisor`, `sse_hub`,
    /// `thread_coordinator`, `task_supervisor`.
    pub service: &'static str,
    /// The live incarnation's actor name (`<service>:<generation>`); absent while it restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub running: bool,
    /// Restarts after failures since the node started.
    pub restarts: u64,
    /// Runtime supervisor: its runtime actors (absent if it did not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtimes: Option<Vec<RuntimeChild>>,
    /// SSE hub: subscriber actors (one per task stream) and watchers of every task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchers: Option<usize>,
    /// Task supervisor: live task actors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_actors: Option<usize>,
}

impl ServiceNode {
    fn of<M: ractor::Message>(service: &'static str, slot: &Slot<M>) -> Self {
        let actor = slot.get().ok().map(|a| actor_label(&a.get_cell()));
        ServiceNode {
            service,
            running: actor.is_some(),
            actor,
            restarts: slot.restarts(),
            runtimes: None,
            subscribers: None,
            watchers: None,
            task_actors: None,
        }
    }
}

/// Node identity and protocol (contract §9.4), plus this node's public key and its id: fields
/// the Go reference does not send (its peers ignore unknown fields).
#[derive(Clone, Debug, Serialize)]
pub struct NodeHealth {
    pub node_id: String,
    pub ok: bool,
    pub protocol: &'static str,
    pub checked_at: String,
    pub public_key: PublishedKey,
    pub key_id: KeyId,
}

/// The identity document: the node id bound to the key that will sign this node's requests.
#[derive(Clone, Debug, Serialize)]
pub struct NodeIdentityDocument {
    pub node_id: String,
    pub public_key: PublishedKey,
    /// The key's RFC 7638 thumbprint; what signatures name in `keyid`.
    pub key_id: KeyId,
    /// When the key was made.
    pub created_at: Timestamp,
    /// Node-protocol submits are idempotent per origin node and `origin_proxy_task_id`: a submit
    /// sent again answers with the task it created (within the idempotency retention), so an
    /// origin may send it again after a restart. Always `true` here; a Go node publishes no
    /// identity document at all.
    pub idempotent_submit: bool,
}

impl Services {
    /// Ready when storage answers and every core service is running.
    pub async fn readiness(&self, caller: &Caller) -> Result<Readiness, ServiceError> {
        caller.require(Need::Read)?;
        self.dir.reader.ping().await.map_err(|e| {
            ServiceError::hidden(crate::service::ErrorKind::Unavailable, "storage is not answering", e.to_string())
        })?;
        let d = &self.dir;
        let services = [
            d.storage.get().map(|_| ()),
            d.registry.get().map(|_| ()),
            d.runtimes.get().map(|_| ()),
            d.sse.get().map(|_| ()),
            d.threads.get().map(|_| ()),
            d.tasks.get().map(|_| ()),
            d.peers.get().map(|_| ()),
            d.presence.get().map(|_| ()),
        ];
        for s in services {
            s?;
        }
        Ok(Readiness { ready: true, node_id: self.node_id().to_owned() })
    }

    /// Live actor counts and storage counters.
    pub async fn node_stats(&self, caller: &Caller) -> Result<NodeStats, ServiceError> {
        caller.require(Need::Read)?;
        let tasks = self.dir.tasks.ask(ASK_TIMEOUT, TaskSupMsg::Count).await?;
        let subscribers = self.dir.sse.ask(ASK_TIMEOUT, SseHubMsg::Count).await?;
        let watchers = self.dir.sse.ask(ASK_TIMEOUT, SseHubMsg::WatcherCount).await?;
        let storage = self.dir.storage.ask(ASK_TIMEOUT, StorageMsg::Stats).await?;
        let runtimes = self.dir.runtimes.ask(ASK_TIMEOUT, RuntimeSupMsg::Children).await.ok();
        let d = &self.dir;
        let services = vec![
            ServiceNode::of("storage", &d.storage),
            ServiceNode::of("registry", &d.registry),
            ServiceNode::of("peer_directory", &d.peers),
            ServiceNode { runtimes, ..ServiceNode::of("runtime_supervisor", &d.runtimes) },
            ServiceNode {
                subscribers: Some(subscribers),
                watchers: Some(watchers),
                ..ServiceNode::of("sse_hub", &d.sse)
            },
            ServiceNode::of("thread_coordinator", &d.threads),
            ServiceNode { task_actors: Some(tasks), ..ServiceNode::of("task_supervisor", &d.tasks) },
        ];
        Ok(NodeStats {
            node_id: self.node_id().to_owned(),
            version: env!("CARGO_PKG_VERSION"),
            live_task_actors: tasks,
            sse_subscribers: subscribers,
            sse_watchers: watchers,
            storage: StorageCounters { commits: storage.commits, writes: storage.writes, max_batch: storage.max_batch },
            supervision: Supervision { root: "aethrolink.root", services },
        })
    }

    /// This node's identity and protocol.
    pub fn node_health(&self, caller: &Caller) -> Result<NodeHealth, ServiceError> {
        caller.require(Need::Read)?;
        let public = self.identity.public_key();
        Ok(NodeHealth {
            node_id: self.node_id().to_owned(),
            ok: true,
            protocol: "aethrolink.node.v1",
            checked_at: crate::clock::now_rfc3339(),
            public_key: public.published(),
            key_id: public.key_id(),
        })
    }

    /// This node's id and the public key bound to it.
    pub fn node_identity(&self, caller: &Caller) -> Result<NodeIdentityDocument, ServiceError> {
        caller.require(Need::Read)?;
        let public = self.identity.public_key();
        Ok(NodeIdentityDocument {
            node_id: self.node_id().to_owned(),
            public_key: public.published(),
            key_id: public.key_id(),
            created_at: self.identity.created_at().clone(),
            idempotent_submit: true,
        })
    }
}
