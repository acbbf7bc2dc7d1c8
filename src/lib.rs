//! AethroLink node: the edges around the orchestration core (`aethrolink_actors`).
//!
//! * [`config`] — node flags (with `ALINK_*` environment equivalents) and the registry YAML file.
//! * [`api`] — the HTTP API (AethroLink v1) with SSE.
//! * [`gateway`] — the Aether control-plane gateway (gRPC).
//! * [`node`] — wires the supervision tree, the listener and shutdown together.
//! * [`listener`] — the HTTP accept loop: timeouts, connection limit, bounded shutdown.
//! * [`tls`] — the listener's TLS configuration (`--tls-cert`, `--tls-key`).
//! * [`cli`] — `alink-cli`, a thin HTTP client.
//! * [`logging`] — the node's one-line log records (pretty or JSON).
//!
//! The binaries in `src/bin/` only parse arguments, set up logging and call into here.

pub mod api;
pub mod cli;
pub mod config;
pub mod duration;
pub mod gateway;
pub mod listener;
pub mod local_token;
pub mod logging;
pub mod node;
pub mod tls;
