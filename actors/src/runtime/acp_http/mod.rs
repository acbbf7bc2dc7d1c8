//! The Agent Communication Protocol adapter (`acp_http`), by job. The server's process (or, for
//! `launch.mode: external`, only its health check) belongs to the shared runtime actor
//! ([`crate::runtime::acp::runtime`]); what differs from stdio agents lives here:
//!
//! * [`session`] — the HTTP session actor, one per sticky scope: FIFO runs, session reuse,
//!   resume, cancel, re-attach.
//! * [`follow`] — the follower tasks doing a turn's IO (submit + SSE, resume, re-sync, polling).
//! * [`replay`] — rebuilding a run from its event history after a node restart (pure).
//!
//! Request bodies, the SSE parser and the run trackers are in [`crate::runtime::http`].

pub mod follow;
pub mod replay;
pub mod session;

pub use follow::Remote;
pub use session::{HttpSession, HttpSessionArgs, HttpSessionMsg, HttpSessionState};
