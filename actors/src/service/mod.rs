//! The service layer: the only way into the core. Every operation a client can ask for — over
//! HTTP, the node protocol or the Aether gateway — is one method here taking a [`Caller`] and
//! returning a typed result or a [`ServiceError`] with one [`ErrorKind`]. Bindings decode their
//! wire format, call a method, and encode the answer; they hold no domain rules.
//!
//! * [`tasks`] — create, get, list, cancel, resume; event history and live subscription;
//!   artifacts.
//! * [`bulk`] — cancel or retry many tasks by id or listing filter, with a dry run.
//! * [`agents`] — register, heartbeat, unregister, list, get.
//! * [`targets`] — targets with their runtime state; health, start, stop, launches.
//! * [`threads`] — create, get, list, turns, continue (with auto-handoff), inspect.
//! * [`peers`] — static peers: add, list, sync (their targets are listed by [`targets`]).
//! * [`node_tasks`] — the destination side of the node protocol: submit, events, resume, cancel.
//! * [`node`] — health, readiness, stats, identity.
//! * [`auth`] — credentials into callers (tokens, the admin key); tokens made, listed, revoked.
//! * [`aether`] — the Aether gateway: an `InitConnection` into a session (principal, credential,
//!   identity lock) served by its connection actor.
//! * [`aether_admin`] — the gateway's admin operations: sessions (list, get, disconnect) and API
//!   tokens (the same store as [`auth`]).
//! * [`aether_tasks`] — Aether tasks on the node's task model: create (self-assign, targeted,
//!   pool), operations, queries, progress, event subscriptions.

pub mod aether;
pub mod aether_admin;
pub mod aether_tasks;
pub mod agents;
pub mod auth;
pub mod bulk;
pub mod caller;
pub mod error;
pub mod node;
pub mod node_tasks;
pub mod peers;
pub mod targets;
pub mod tasks;
pub mod threads;

use std::sync::Arc;

pub use caller::{Binding, Caller, Need, Principal, Rights};
pub use error::{ErrorKind, ServiceError};

use crate::identity::NodeIdentity;
use crate::root::CoreHandles;

/// Budget for a request to a task actor or the task supervisor.
const TASK_ASK: std::time::Duration = std::time::Duration::from_secs(10);

/// The service layer over a running core. Cheap to clone; every binding holds one.
#[derive(Clone)]
pub struct Services {
    /// The core's handles (service slots, reader, routing snapshot, intake).
    dir: Arc<CoreHandles>,
    /// This node's stable id bound to its key pair (health, readiness, thread participants,
    /// the identity document; the key will sign node-protocol requests).
    identity: Arc<NodeIdentity>,
    /// Tokens and the admin key: what turns a presented credential into a caller.
    auth: Arc<auth::Authenticator>,
    /// One-shot task tokens of agents the node asked an orchestrator to launch (lazy launch);
    /// held briefly (mint, redeem), never across an await.
    launches: Arc<std::sync::Mutex<crate::aether::launch::LaunchBook>>,
    /// Where the Aether gateway listens (`host:port`), once it does: agents the node launches
    /// itself are told to connect there.
    gateway_address: Arc<std::sync::OnceLock<String>>,
}

impl Services {
    pub fn new(dir: Arc<CoreHandles>, identity: NodeIdentity) -> Self {
        let hasher = crate::tokens::TokenHasher::new(identity.key().derive_key(b"aethrolink api token hmac v1"));
        Services {
            dir,
            identity: Arc::new(identity),
            auth: Arc::new(auth::Authenticator::new(hasher)),
            launches: Arc::default(),
            gateway_address: Arc::default(),
        }
    }

    /// Records where the Aether gateway listens (set once, by the binary that bound it).
    pub fn set_gateway_address(&self, address: String) {
        let _ = self.gateway_address.set(address);
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        self.identity.node_id()
    }
}

/// Trims and drops empty strings: optional text fields treat `""` as absent.
pub(crate) fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}
