//! What the runtime side needs from the rest of the node: storage (to write), the read side, and
//! the cancel grace. Nothing else, so runtimes never depend on the node's directory.

use std::sync::Arc;
use std::time::Duration;

use crate::storage::{StorageMsg, StoreReader, WriteOp};
use crate::supervision::Slot;

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
}

impl RuntimeDeps {
    /// Makes `op` durable without waiting for it: bookkeeping (launch history, session bindings)
    /// whose loss is logged but never blocks the actor that produced it.
    pub fn write_in_background(&self, op: WriteOp) {
        crate::storage::write_in_background(&self.storage, op);
    }
}
