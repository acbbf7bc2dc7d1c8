//! The AethroLink orchestration core.
//!
//! Everything that moves a task through its life lives here, as `ractor` actors under one
//! supervision tree (see `docs/architecture.md`):
//!
//! * [`service`] — the service layer: every operation a client can ask for, one function taking a
//!   `Caller`; the only way in for bindings.
//! * [`root`] — the root supervisor; it builds each actor's typed handles from [`root::CoreHandles`].
//! * [`storage`] — the storage actor (the only writer to SQLite, group commit) and the read side.
//! * [`registry`] — the registry actor: targets from the YAML file and from HTTP registrations,
//!   agent presence leases.
//! * [`task`] / [`task_supervisor`] — one actor per live task; the supervisor spawns, restarts and
//!   recovers them.
//! * [`state_machine`] — the pure transition table every task actor enforces.
//! * [`adapters`] — adapter kinds and the catalog of kinds this build runs (filled in by
//!   `runtime::adapter_catalog()`), each with its target check.
//! * [`port`] — what tasks and runtimes exchange (dispatches, reports, session messages); it
//!   imports neither side.
//! * [`runtime`] — the runtime supervisor and the runtimes it owns: the in-process `loopback`
//!   runtime and the ACP adapter (a runtime actor per agent process, a session actor per sticky
//!   scope).
//! * [`threads`] — the thread coordinator: thread recovery and bounded auto-handoff.
//! * [`intake`] — the one task-creation path (API, thread continue, auto-handoff).
//! * [`node_proto`] — the node-to-node protocol's wire types (`aethrolink.node.v1`).
//! * [`peers`] — the peer directory: static peers, their cached targets, sync.
//! * [`sse`] — the SSE hub and one subscriber actor per connection.
//! * [`aether`] — the Aether gateway's core: principals and identity strings, the presence actor
//!   (identity locks) and one connection actor per gateway stream.
//! * [`restart`] — the one restart policy every supervisor uses.
//! * [`identity`] — the node's Ed25519 key pair and id, and HTTP Message Signatures (RFC 9421)
//!   with it (pure; the node-protocol binding will sign and verify with it).
//! * [`tokens`] — API tokens: scopes, the HMAC-stored secret, checks (pure; the service layer
//!   keeps the book).
//!
//! Bindings (the HTTP API in the `aethrolink` crate; later the node protocol and the Aether
//! gateway) call [`service::Services`] and use the model types; module layers are checked by
//! `tests/layering.rs`.

pub mod adapters;
pub mod aether;
pub mod artifacts;
pub mod clock;
pub mod error;
pub mod identity;
pub mod ids;
pub mod intake;
pub mod model;
pub mod node_proto;
pub mod peers;
pub mod port;
pub mod registry;
pub mod restart;
pub mod root;
pub mod runtime;
pub mod service;
pub mod sse;
pub mod state_machine;
pub mod storage;
pub mod supervision;
pub mod task;
pub mod task_supervisor;
pub mod telemetry;
pub mod threads;
pub mod tokens;

// The plain value types the model's records are made of live under `model` (the bottom layer's
// modules may not import each other, see `tests/layering.rs`); their paths stay `crate::clock`
// and `crate::ids`.
