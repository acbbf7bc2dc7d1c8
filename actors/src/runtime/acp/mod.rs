//! The Agent Client Protocol adapter (stdio JSON-RPC), by job:
//!
//! * [`runtime`] — the runtime actor of every process-backed target (stdio agents and HTTP
//!   servers): IO around the pure [`super::lifecycle::ProcessLifecycle`], routing to sessions.
//! * [`session`] — the stdio session actor, one per sticky key: FIFO prompts, permission,
//!   cancel.
//! * [`updates`] — what the agent's `session/update` notifications and `session/prompt`
//!   answers mean for a task (pure).

pub mod runtime;
pub mod session;
pub mod updates;

pub use runtime::{AcpMsg, AcpRuntime, AcpRuntimeArgs, AcpRuntimeState, DEFAULT_LAUNCH_TIMEOUT, initialize_timeout_of};
pub use session::{AcpSession, AcpSessionArgs, AcpSessionMsg, AcpSessionState};
pub use updates::{UpdateEffect, map_update, prompt_outcome};
