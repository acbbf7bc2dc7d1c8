//! Node operations: liveness, readiness (every core service running, storage answering), stats,
//! and the node's identity (its id bound to its public key).

use serde::Serialize;

use super::{Caller, Need, ServiceError, Services};
use crate::clock::Timestamp;
use crate::identity::{KeyId, PublishedKey};
use crate::sse::SseHubMsg;
use crate::storage::StorageMsg;
use crate::supervision::ASK_TIMEOUT;
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
    pub live_task_actors: usize,
    pub sse_subscribers: usize,
    pub storage: StorageCounters,
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
        let storage = self.dir.storage.ask(ASK_TIMEOUT, StorageMsg::Stats).await?;
        Ok(NodeStats {
            node_id: self.node_id().to_owned(),
            live_task_actors: tasks,
            sse_subscribers: subscribers,
            storage: StorageCounters { commits: storage.commits, writes: storage.writes, max_batch: storage.max_batch },
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
        })
    }
}
