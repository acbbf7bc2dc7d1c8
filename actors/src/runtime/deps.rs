//! What the runtime side needs from the rest of the node: storage (to write), the read side, and
//! the cancel grace. Nothing else, so runtimes never depend on the node's directory.

use std::sync::Arc;
use std::time::Duration;

use crate::storage::{StorageMsg, StoreReader, WriteOp};
use crate::supervision::Slot;

/// Which targets an operator paused, as the runtime supervisor last published it: a session
/// starts no queued turn of a paused target (running ones finish), and starts them again once
/// it is resumed. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DispatchPauses(tokio::sync::watch::Receiver<Arc<std::collections::BTreeSet<String>>>);

impl DispatchPauses {
    /// A publisher and the view it updates.
    pub fn channel() -> (tokio::sync::watch::Sender<Arc<std::collections::BTreeSet<String>>>, DispatchPauses) {
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(std::collections::BTreeSet::new()));
        (tx, DispatchPauses(rx))
    }

    pub fn is_paused(&self, target_id: &str) -> bool {
        self.0.borrow().contains(target_id)
    }

    /// Completes once `target_id` is not paused (or the publisher is gone).
    pub async fn resumed(mut self, target_id: String) {
        while self.0.borrow_and_update().contains(&target_id) {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The runtime supervisor's arguments, shared (`Arc`) by every runtime actor it spawns.
pub struct RuntimeDeps {
    /// The storage actor's slot: launch history, lease release and session bindings are written
    /// through it (the storage actor is the only writer).
    pub storage: Arc<Slot<StorageMsg>>,
    /// Reads: leases left by a previous run (reaped at start), persisted session bindings.
    pub reader: StoreReader,
    /// How long a session waits for an agent to confirm a cancel before it ends the turn itself
    /// (stdio: and kills the process group).
    pub cancel_grace: Duration,
    /// Signs relayed node-protocol requests with this node's key (`None`: unsigned).
    pub signer: Option<Arc<crate::identity::NodeIdentity>>,
    /// Paused targets (published by the runtime supervisor).
    pub pauses: DispatchPauses,
    /// The session actor of `aether` targets (the gateway's presence actor, once it runs).
    pub aether: Arc<crate::port::SessionSlot>,
}

impl RuntimeDeps {
    /// Makes `op` durable without waiting for it: bookkeeping (launch history, session bindings)
    /// whose loss is logged but never blocks the actor that produced it.
    pub fn write_in_background(&self, op: WriteOp) {
        crate::storage::write_in_background(&self.storage, op);
    }
}
