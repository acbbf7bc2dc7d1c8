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

pub use runtime::{AcpMsg, AcpRuntime, AcpRuntimeArgs, AcpRuntimeState, DEFAULT_LAUNCH_TIMEOUT, RuntimeHealth};
pub use session::{AcpSession, AcpSessionArgs, AcpSessionMsg, AcpSessionState};
pub use updates::{UpdateEffect, map_update, prompt_outcome};

use ractor::ActorRef;

use super::queue::{SessionQueue, Turn};
use crate::port::{AdapterEvent, Dispatch};

/// Sends a task its runtime events (nothing if there are none).
pub(crate) fn emit(d: &Dispatch, events: Vec<AdapterEvent>) {
    d.report(events);
}

/// Cancels a task still waiting in a session's queue (its turn ends there); `false` if it is not
/// there. Shared by the stdio and the HTTP session.
pub(crate) fn cancel_queued<T: Turn<Work = Dispatch>>(
    work: &mut SessionQueue<T>,
    task_id: &str,
    runtime: &ActorRef<AcpMsg>,
) -> bool {
    let Some((d, event)) = work.cancel_waiting(task_id) else { return false };
    emit(&d, vec![event]);
    let _ = runtime.cast(AcpMsg::TurnEnded { task_id: d.task_id });
    true
}
