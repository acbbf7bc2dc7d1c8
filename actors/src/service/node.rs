//! Node operations: liveness, readiness (every core service running, storage answering), stats.

use serde::Serialize;

use super::{Caller, Need, ServiceError, Services};
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

/// Node identity and protocol (contract §9.3).
#[derive(Clone, Debug, Serialize)]
pub struct NodeHealth {
    pub node_id: String,
    pub ok: bool,
    pub protocol: &'static str,
    pub checked_at: String,
}

impl Services {
    /// Ready when storage answers and every core service is running.
    pub async fn readiness(&self, caller: &Caller) -> Result<Readiness, ServiceError> {
        caller.require(Need::Read)?;
        self.dir.reader.ping().await.map_err(|e| ServiceError::unavailable(format!("storage: {e}")))?;
        let d = &self.dir;
        let services = [
            d.storage.get().map(|_| ()),
            d.registry.get().map(|_| ()),
            d.runtimes.get().map(|_| ()),
            d.sse.get().map(|_| ()),
            d.threads.get().map(|_| ()),
            d.tasks.get().map(|_| ()),
            d.peers.get().map(|_| ()),
        ];
        for s in services {
            s?;
        }
        Ok(Readiness { ready: true, node_id: self.node_id.to_string() })
    }

    /// Live actor counts and storage counters.
    pub async fn node_stats(&self, caller: &Caller) -> Result<NodeStats, ServiceError> {
        caller.require(Need::Read)?;
        let tasks = self.dir.tasks.ask(ASK_TIMEOUT, TaskSupMsg::Count).await?;
        let subscribers = self.dir.sse.ask(ASK_TIMEOUT, SseHubMsg::Count).await?;
        let storage = self.dir.storage.ask(ASK_TIMEOUT, StorageMsg::Stats).await?;
        Ok(NodeStats {
            node_id: self.node_id.to_string(),
            live_task_actors: tasks,
            sse_subscribers: subscribers,
            storage: StorageCounters { commits: storage.commits, writes: storage.writes, max_batch: storage.max_batch },
        })
    }

    /// This node's identity and protocol.
    pub fn node_health(&self, caller: &Caller) -> Result<NodeHealth, ServiceError> {
        caller.require(Need::Read)?;
        Ok(NodeHealth {
            node_id: self.node_id.to_string(),
            ok: true,
            protocol: "aethrolink.node.v1",
            checked_at: crate::clock::now_rfc3339(),
        })
    }
}
