//! The runtime port: everything task actors and runtimes exchange, and nothing else.
//!
//! This module sits below both sides: it imports neither the task actor nor any runtime, so a
//! runtime can be written (and tested) without the task actor, and the task actor can change its
//! own messages without touching the runtimes. A runtime reports to a task through a
//! [`TaskReplyTo`], a narrow reference that accepts only [`TaskReport`]s; a task reaches its
//! runtime through a [`SessionPort`], which accepts only [`SessionMsg`]s.

use ractor::DerivedActorRef;
use serde_json::Value;

use crate::model::{DeliveryPolicy, EventKind, FailureReason, JsonObject, RemoteRef};

/// Something a runtime reports about a task.
#[derive(Clone, Debug, PartialEq)]
pub enum AdapterEvent {
    /// The runtime took the task.
    Submitted { binding: String, remote_execution_id: Option<String>, remote_session_id: Option<String> },
    /// Progress.
    Running { message: String, data: JsonObject },
    /// The runtime needs input; `POST /v1/tasks/{id}/resume` answers. `pending` says what kind
    /// of answer it takes (the task checks a resume against it before anything is appended).
    AwaitingInput { message: String, data: JsonObject, pending: PendingInput },
    /// The runtime accepted a resume and continues.
    Resumed { message: String },
    /// The runtime refused a resume (nothing pending); the task stays awaiting.
    ResumeRefused { reason: String },
    /// Finished; `result` becomes the result artifact.
    Completed { message: String, result: Value },
    /// Failed with a machine-readable reason.
    Failed { reason: FailureReason, detail: Option<String>, message: String },
    /// Cancellation confirmed.
    Cancelled { message: String },
    /// An event another node reported about the task (a relay mirrors the destination's events,
    /// source `transport`): the task's state machine decides whether it applies (a replayed
    /// `task.created` after dispatch does not). `completed` carries the result in
    /// `data.result`, `failed` its reason and detail in `data.reason` / `data.detail`.
    Relayed { kind: EventKind, message: String, data: JsonObject, remote: Option<RemoteRef> },
}

/// What a task awaiting input waits for: the adapter that asked says so, so a resume is checked
/// against the request's kind, never by looking for keys in its data.
#[derive(Clone, Debug, PartialEq)]
pub enum PendingInput {
    /// An ACP permission request: the answer names one of these options (by id or by kind).
    Permission { options: Vec<Value> },
    /// An HTTP agent's await request (Agent Communication Protocol): the answer carries a
    /// message (`text` or `message`).
    AwaitRequest,
    /// A structured `task.awaiting_input` event of an agent whose protocol has no way to answer
    /// it (OpenClaw over ACP): a resume is refused; cancel ends the task.
    Structured,
    /// A relayed task's destination awaits input: answering it is not relayed yet, so a resume
    /// is refused; cancel ends the task.
    Relayed,
    /// Any JSON object answers (loopback scripts, the polling dialect).
    Free,
}

/// Launch progress a runtime reports to a task waiting for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchPhase {
    /// The runtime is down and will be launched for this task.
    PendingLaunch,
    /// The process was spawned (pid).
    Launching { pid: u32 },
}

/// What a runtime tells a task actor. Every report carries the generation of the task actor it
/// is meant for, so a restarted task ignores what was meant for its previous incarnation.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskReport {
    /// What the runtime reported; events that happened together arrive together and are made
    /// durable in one transaction.
    Adapter { generation: u64, events: Vec<AdapterEvent> },
    /// The runtime is being launched for this task.
    Phase { generation: u64, phase: LaunchPhase },
}

/// Where a runtime sends a task's reports: the task actor, seen through the only messages a
/// runtime may send it.
pub type TaskReplyTo = DerivedActorRef<TaskReport>;

/// Sends a task its events (nothing if there are none); `false` if the task actor is gone.
pub fn report(to: &TaskReplyTo, generation: u64, events: Vec<AdapterEvent>) -> bool {
    events.is_empty() || to.send_message(TaskReport::Adapter { generation, events }).is_ok()
}

/// A task handed to a runtime session.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub task_id: String,
    /// The task actor's generation; echoed on every event.
    pub generation: u64,
    pub intent: String,
    pub payload: Value,
    pub runtime_options: JsonObject,
    /// Who sent the task, where it goes, how to deliver it and its trace id: the control
    /// envelope HTTP agents receive.
    pub sender: String,
    pub target_id: String,
    pub delivery: DeliveryPolicy,
    pub trace_id: String,
    /// Sticky-key inputs.
    pub thread_id: Option<String>,
    pub conversation_id: String,
    /// Order among work waiting on a busy session (high first; creation order within one).
    pub priority: crate::model::Priority,
    /// The task's attempt (1-based): a relay names it, so a retry is a new destination task.
    pub attempt: u32,
    /// Where events go.
    pub reply_to: TaskReplyTo,
}

impl Dispatch {
    /// Sends the task its events, stamped with its generation (nothing if there are none).
    pub fn report(&self, events: Vec<AdapterEvent>) {
        report(&self.reply_to, self.generation, events);
    }
}

/// A task waiting for a runtime.
#[derive(Clone, Debug)]
pub struct Waiter {
    /// The task actor and its generation, to report launch phases (`None`: an API start).
    pub task: Option<(TaskReplyTo, u64)>,
    pub launch_if_down: bool,
    /// An API start with `force`: a crash-loop pause is cleared first.
    pub force: bool,
}

impl Waiter {
    /// Tells the waiting task (if any) where the launch stands.
    pub fn phase(&self, phase: LaunchPhase) {
        if let Some((task, generation)) = &self.task {
            let _ = task.send_message(TaskReport::Phase { generation: *generation, phase });
        }
    }
}

/// Messages every runtime session understands.
#[derive(Debug)]
pub enum SessionMsg {
    /// Run a task.
    Submit(Box<Dispatch>),
    /// Answer the task's pending input request with `payload`.
    Resume { task_id: String, generation: u64, payload: JsonObject },
    /// Stop the task; the session confirms with [`AdapterEvent::Cancelled`].
    Cancel { task_id: String, generation: u64 },
    /// Internal: a scripted execution ended (loopback).
    Finished { task_id: String, generation: u64 },
    /// Follow a remote run a task started before a node restart (`acp_http`); `awaiting`: the
    /// task is waiting for input.
    Attach { dispatch: Box<Dispatch>, remote: RemoteRef, awaiting: bool },
}

/// Where a task's session messages go: the runtime that holds it, seen through the only
/// messages a task may send it (any runtime actor whose messages convert from [`SessionMsg`]).
#[derive(Clone, Debug)]
pub struct SessionPort(DerivedActorRef<SessionMsg>);

impl SessionPort {
    /// The port of a runtime actor.
    pub fn new(runtime: DerivedActorRef<SessionMsg>) -> Self {
        SessionPort(runtime)
    }

    /// Sends a message; `false` if the runtime is gone.
    pub fn send(&self, msg: SessionMsg) -> bool {
        self.0.send_message(msg).is_ok()
    }
}

/// A runtime ready to take a task.
#[derive(Clone, Debug)]
pub struct RuntimeHandle {
    /// Lease under which the runtime runs, if it has one.
    pub lease_id: Option<String>,
    /// Where the task's session messages go.
    pub session: SessionPort,
    /// The runtime's process, if it has one.
    pub process_id: Option<u32>,
    /// For a launch: spawn → `initialize` answered, as the runtime saw it (the agent's own
    /// start-up time; the rest of a cold launch is the node's).
    pub initialize_ms: Option<f64>,
}

/// Why no runtime could be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// No implementation for the target's adapter kind.
    #[error("adapter missing: {0}")]
    AdapterMissing(String),
    /// The runtime is down and may not be launched (or is restarting).
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// The runtime could not be started or did not become ready.
    #[error("launch failed: {0}")]
    LaunchFailed(String),
    /// Dispatching to the target is paused (`POST /v1/targets/{id}/pause`): the task asks again
    /// and keeps waiting until the target is resumed. Never a task's failure.
    #[error("dispatching to target {0} is paused")]
    Paused(String),
}

impl RuntimeError {
    /// `last_error.detail` for a task failed by this error: the adapter kind for a missing
    /// adapter (contract §6.3 step 1), else the whole message.
    pub fn detail(&self) -> String {
        match self {
            RuntimeError::AdapterMissing(kind) => kind.clone(),
            other => other.to_string(),
        }
    }

    /// `last_error.reason` for a task failed by this error.
    pub fn reason(&self) -> FailureReason {
        match self {
            RuntimeError::AdapterMissing(_) => FailureReason::AdapterMissing,
            RuntimeError::Unavailable(_) | RuntimeError::Paused(_) => FailureReason::RuntimeUnavailable,
            RuntimeError::LaunchFailed(_) => FailureReason::LaunchFailed,
        }
    }
}

/// Where the tasks of targets served outside the runtime supervisor go (the Aether gateway's
/// presence actor takes `aether` tasks): set by the root when that actor starts, cleared when
/// it stops. The runtime supervisor hands out its port without knowing who is behind it.
#[derive(Debug, Default)]
pub struct SessionSlot(std::sync::RwLock<Option<DerivedActorRef<SessionMsg>>>);

impl SessionSlot {
    /// Installs (or clears) the session actor.
    pub fn set(&self, session: Option<DerivedActorRef<SessionMsg>>) {
        let mut guard = match self.0.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *guard = session;
    }

    /// The current session actor's port, if one is running.
    pub fn port(&self) -> Option<SessionPort> {
        let guard = match self.0.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        guard.clone().map(SessionPort::new)
    }
}
