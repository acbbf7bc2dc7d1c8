//! Runtimes: the runtime supervisor and the runtime actors it owns.
//!
//! A task actor asks the supervisor to [`RuntimeSupMsg::Acquire`] a runtime for its target; the
//! answer is a [`RuntimeHandle`] whose `session` actor speaks [`SessionMsg`]. The session reports
//! back with [`AdapterEvent`]s cast to the task actor, each stamped with the task actor's
//! generation so a restarted task ignores what was meant for its previous incarnation.
//!
//! This release ships the in-process `loopback` runtime (see [`loopback`]).

pub mod loopback;

use std::collections::VecDeque;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::Value;
use tokio::time::Instant;

use crate::model::{JsonObject, TargetSpec};
use crate::restart::{RestartDecision, RestartPolicy, RestartTracker, jitter};
use crate::supervision::actor_label;
use crate::task::TaskMsg;

/// Adapter kinds this build can run.
pub const KNOWN_ADAPTERS: &[&str] = &["loopback"];

/// Something a runtime reports about a task.
#[derive(Clone, Debug, PartialEq)]
pub enum AdapterEvent {
    /// The runtime took the task.
    Submitted { binding: String, remote_execution_id: Option<String>, remote_session_id: Option<String> },
    /// Progress.
    Running { message: String, data: JsonObject },
    /// The runtime needs input; `POST /v1/tasks/{id}/resume` answers.
    AwaitingInput { message: String, data: JsonObject },
    /// The runtime accepted a resume and continues.
    Resumed { message: String },
    /// The runtime refused a resume (nothing pending); the task stays awaiting.
    ResumeRefused { reason: String },
    /// Finished; `result` becomes the result artifact.
    Completed { message: String, result: Value },
    /// Failed with a machine-readable reason.
    Failed { reason: String, detail: Option<String>, message: String },
    /// Cancellation confirmed.
    Cancelled { message: String },
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
    /// Where events go.
    pub reply_to: ActorRef<TaskMsg>,
}

/// Messages every runtime session understands.
pub enum SessionMsg {
    /// Run a task.
    Submit(Box<Dispatch>),
    /// Answer the task's pending input request with `payload`.
    Resume { task_id: String, generation: u64, payload: JsonObject },
    /// Stop the task; the session confirms with [`AdapterEvent::Cancelled`].
    Cancel { task_id: String, generation: u64 },
    /// Internal: a scripted execution ended (loopback).
    Finished { task_id: String, generation: u64 },
}

/// A runtime ready to take a task.
#[derive(Clone, Debug)]
pub struct RuntimeHandle {
    /// Lease under which the runtime runs, if it has one.
    pub lease_id: Option<String>,
    /// The session actor for the task.
    pub session: ActorRef<SessionMsg>,
    /// Whether this acquisition launched the runtime.
    pub launched: bool,
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
}

impl RuntimeError {
    /// `last_error.reason` for a task failed by this error.
    pub fn reason(&self) -> &'static str {
        match self {
            RuntimeError::AdapterMissing(_) => "adapter missing",
            RuntimeError::Unavailable(_) => "runtime unavailable",
        }
    }
}

/// Messages of the runtime supervisor.
pub enum RuntimeSupMsg {
    /// Get a runtime for `target`; answered when it is ready.
    Acquire { target: Box<TargetSpec>, launch_if_down: bool, reply: RpcReplyPort<Result<RuntimeHandle, RuntimeError>> },
    /// Internal: restart the loopback runtime after its backoff.
    RestartLoopback { generation: u64 },
}

/// State of the runtime supervisor.
pub struct RuntimeSupState {
    /// The loopback runtime, `None` while it is being restarted.
    loopback: Option<ActorRef<SessionMsg>>,
    /// Incarnation of the loopback runtime; a restart timer for an older one is ignored.
    loopback_generation: u64,
    /// Failure history of the loopback runtime.
    loopback_restarts: RestartTracker,
    /// Acquisitions that arrived while the loopback runtime was down; answered on restart.
    waiting: VecDeque<RpcReplyPort<Result<RuntimeHandle, RuntimeError>>>,
}

/// The runtime supervisor.
pub struct RuntimeSupervisor;

async fn spawn_loopback(
    myself: &ActorRef<RuntimeSupMsg>,
    generation: u64,
) -> Result<ActorRef<SessionMsg>, ActorProcessingErr> {
    let (actor, _) = Actor::spawn_linked(
        Some(format!("runtime:loopback:{generation}")),
        loopback::LoopbackRuntime,
        (),
        myself.get_cell(),
    )
    .await?;
    Ok(actor)
}

impl Actor for RuntimeSupervisor {
    type Msg = RuntimeSupMsg;
    type State = RuntimeSupState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<RuntimeSupMsg>, _: ()) -> Result<RuntimeSupState, ActorProcessingErr> {
        let loopback = spawn_loopback(&myself, 1).await?;
        Ok(RuntimeSupState {
            loopback: Some(loopback),
            loopback_generation: 1,
            loopback_restarts: RestartTracker::new(RestartPolicy::WORKER),
            waiting: VecDeque::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RuntimeSupMsg>,
        msg: RuntimeSupMsg,
        state: &mut RuntimeSupState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RuntimeSupMsg::Acquire { target, launch_if_down: _, reply } => {
                if target.adapter != "loopback" {
                    let _ = reply.send(Err(RuntimeError::AdapterMissing(target.adapter.clone())));
                    return Ok(());
                }
                // The loopback runtime lives in-process and is always up; while it restarts,
                // callers wait for it rather than fail.
                match &state.loopback {
                    Some(session) => {
                        let _ =
                            reply.send(Ok(RuntimeHandle { lease_id: None, session: session.clone(), launched: false }));
                    }
                    None => state.waiting.push_back(reply),
                }
            }
            RuntimeSupMsg::RestartLoopback { generation } => {
                if generation != state.loopback_generation || state.loopback.is_some() {
                    return Ok(());
                }
                let session = spawn_loopback(&myself, generation).await?;
                tracing::info!(actor_kind = "runtime", target_id = "loopback", generation, "runtime restarted");
                for reply in state.waiting.drain(..) {
                    let _ = reply.send(Ok(RuntimeHandle { lease_id: None, session: session.clone(), launched: false }));
                }
                state.loopback = Some(session);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RuntimeSupMsg>,
        evt: SupervisionEvent,
        state: &mut RuntimeSupState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorStarted(cell) => {
                tracing::debug!(actor_kind = "runtime", actor = %actor_label(&cell), "runtime started");
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                tracing::info!(actor_kind = "runtime", actor = %actor_label(&cell), reason = ?reason, "runtime stopped");
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                state.loopback = None;
                match state.loopback_restarts.on_failure(Instant::now(), jitter()) {
                    RestartDecision::Restart { attempt, backoff } => {
                        state.loopback_generation += 1;
                        let generation = state.loopback_generation;
                        tracing::warn!(
                            actor_kind = "runtime", actor = %actor_label(&cell), target_id = "loopback",
                            error = %err, attempt, backoff_ms = backoff.as_millis() as u64,
                            "runtime failed; restarting"
                        );
                        myself.send_after(backoff, move || RuntimeSupMsg::RestartLoopback { generation });
                    }
                    RestartDecision::Escalate { failures } => {
                        tracing::error!(actor_kind = "runtime", actor = %actor_label(&cell), failures, error = %err, "runtime failed too often; escalating");
                        return Err(format!("loopback runtime failed {failures} times: {err}").into());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
