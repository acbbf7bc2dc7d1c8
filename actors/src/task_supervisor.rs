//! The task supervisor: parent of every task actor.
//!
//! * spawns a task actor per new task and hands its reference to the API;
//! * on start, recovers every non-terminal task from storage (restart reconciliation is
//!   supervisor recovery) before the node opens its listener;
//! * restarts a failed task actor under the shared restart policy with `generation + 1` (the new
//!   incarnation reloads the task from storage, so nothing that was not durable is assumed);
//! * gives up on a task that keeps failing: a last incarnation records it `failed`.

use std::collections::HashMap;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::time::Instant;

use crate::restart::{RestartDecision, RestartPolicy, RestartTracker, jitter};
use crate::supervision::ask;
use crate::task::{NewTask, TaskActor, TaskArgs, TaskDeps, TaskError, TaskInit, TaskMsg};

/// How long restart recovery waits for the recovered tasks' first step.
const RECOVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Messages of the task supervisor.
pub enum TaskSupMsg {
    /// Spawn the actor of a new task (the caller then sends it `Create`).
    Spawn(Box<NewTask>, RpcReplyPort<Result<ActorRef<TaskMsg>, TaskError>>),
    /// The live actor of a task, if it has one (terminal tasks have none).
    Lookup(String, RpcReplyPort<Option<ActorRef<TaskMsg>>>),
    /// The actor of a task, started from storage if it has none (a settled task an operator
    /// retries; it stops again if the request is refused).
    Revive(String, RpcReplyPort<Result<ActorRef<TaskMsg>, TaskError>>),
    /// Internal: restart a failed task actor after its backoff.
    Restart { task_id: String, generation: u64 },
    /// Number of live task actors.
    Count(RpcReplyPort<usize>),
}

/// A live task actor.
struct Child {
    actor: ActorRef<TaskMsg>,
    generation: u64,
}

/// State of the task supervisor.
pub struct TaskSupState {
    /// Live task actors by task id.
    children: HashMap<String, Child>,
    /// Task id of each live actor, to map supervision events back.
    by_actor: HashMap<ActorId, String>,
    /// Failure history of tasks whose actor failed; dropped when the task ends normally.
    restarts: HashMap<String, RestartTracker>,
    /// Latest generation per task that is waiting for a restart.
    pending_restart: HashMap<String, u64>,
    /// Handed to every task actor.
    deps: TaskDeps,
}

/// The task supervisor.
pub struct TaskSupervisor;

async fn spawn_task(
    myself: &ActorRef<TaskSupMsg>,
    state: &mut TaskSupState,
    task_id: String,
    init: TaskInit,
    generation: u64,
) -> Result<ActorRef<TaskMsg>, ActorProcessingErr> {
    let args = TaskArgs { init, generation, deps: state.deps.clone() };
    let (actor, _) = Actor::spawn_linked(None, TaskActor, args, myself.get_cell()).await?;
    state.by_actor.insert(actor.get_id(), task_id.clone());
    state.children.insert(task_id, Child { actor: actor.clone(), generation });
    Ok(actor)
}

impl Actor for TaskSupervisor {
    type Msg = TaskSupMsg;
    type State = TaskSupState;
    type Arguments = TaskDeps;

    async fn pre_start(
        &self,
        _myself: ActorRef<TaskSupMsg>,
        deps: TaskDeps,
    ) -> Result<TaskSupState, ActorProcessingErr> {
        Ok(TaskSupState {
            children: HashMap::new(),
            by_actor: HashMap::new(),
            restarts: HashMap::new(),
            pending_restart: HashMap::new(),
            deps,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<TaskSupMsg>,
        state: &mut TaskSupState,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        let live = state.deps.reader.live_tasks().await?;
        let count = live.len();
        let mut recovering = Vec::with_capacity(count);
        for stored in live {
            let task_id = stored.task.task_id.clone();
            let actor = spawn_task(&myself, state, task_id.clone(), TaskInit::Stored(Box::new(stored)), 1).await?;
            recovering.push(actor);
        }
        // Wait until what recovery decided for every task is durable, so the node never serves a
        // stale status. The task actors never call this supervisor, so this cannot deadlock; they
        // run concurrently and their writes share group commits.
        let answers = futures::future::join_all(
            recovering.iter().map(|a| ask(a, "task", RECOVERY_TIMEOUT, |r| TaskMsg::Recover(Some(r)))),
        )
        .await;
        let unanswered = answers.iter().filter(|a| a.is_err()).count();
        if unanswered > 0 {
            tracing::warn!(
                actor_kind = "task_supervisor",
                unanswered,
                "some recovered tasks did not finish recovery in time"
            );
        }
        tracing::info!(
            actor_kind = "task_supervisor",
            recovered = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restart recovery done"
        );
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<TaskSupMsg>,
        msg: TaskSupMsg,
        state: &mut TaskSupState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TaskSupMsg::Spawn(new, reply) => {
                let task_id = new.record.task_id.clone();
                let spawned = spawn_task(&myself, state, task_id, TaskInit::New(new), 1).await;
                let _ = reply.send(spawned.map_err(|e| TaskError::Spawn(e.to_string())));
            }
            TaskSupMsg::Lookup(task_id, reply) => {
                let _ = reply.send(state.children.get(&task_id).map(|c| c.actor.clone()));
            }
            TaskSupMsg::Revive(task_id, reply) => {
                let actor = match state.children.get(&task_id) {
                    Some(child) => Ok(child.actor.clone()),
                    None => spawn_task(&myself, state, task_id.clone(), TaskInit::Reload(task_id), 1)
                        .await
                        .map_err(|e| TaskError::Spawn(e.to_string())),
                };
                let _ = reply.send(actor);
            }
            TaskSupMsg::Restart { task_id, generation } => {
                if state.pending_restart.get(&task_id) != Some(&generation) {
                    return Ok(());
                }
                state.pending_restart.remove(&task_id);
                match spawn_task(&myself, state, task_id.clone(), TaskInit::Reload(task_id.clone()), generation).await {
                    Ok(actor) => {
                        tracing::info!(actor_kind = "task", task_id = %task_id, generation, "task actor restarted");
                        let _ = actor.cast(TaskMsg::Recover(None));
                    }
                    Err(e) => {
                        tracing::error!(actor_kind = "task", task_id = %task_id, generation, error = %e, "task actor could not be restarted")
                    }
                }
            }
            TaskSupMsg::Count(reply) => {
                let _ = reply.send(state.children.len());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<TaskSupMsg>,
        evt: SupervisionEvent,
        state: &mut TaskSupState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorStarted(cell) => {
                let task_id = state.by_actor.get(&cell.get_id()).cloned().unwrap_or_default();
                tracing::debug!(actor_kind = "task", task_id = %task_id, "task actor started");
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(task_id) = state.by_actor.remove(&cell.get_id()) {
                    state.children.remove(&task_id);
                    state.restarts.remove(&task_id);
                    tracing::debug!(actor_kind = "task", task_id = %task_id, reason = reason.as_deref().unwrap_or(""), "task actor stopped");
                }
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(task_id) = state.by_actor.remove(&cell.get_id()) else { return Ok(()) };
                let generation = state.children.remove(&task_id).map_or(1, |c| c.generation) + 1;
                let tracker =
                    state.restarts.entry(task_id.clone()).or_insert_with(|| RestartTracker::new(RestartPolicy::WORKER));
                match tracker.on_failure(Instant::now(), jitter()) {
                    RestartDecision::Restart { attempt, backoff } => {
                        tracing::warn!(
                            actor_kind = "task", task_id = %task_id, error = %err, attempt, generation,
                            backoff_ms = backoff.as_millis() as u64, "task actor failed; restarting"
                        );
                        state.pending_restart.insert(task_id.clone(), generation);
                        myself.send_after(backoff, move || TaskSupMsg::Restart { task_id, generation });
                    }
                    RestartDecision::Escalate { failures } => {
                        // One task failing repeatedly must not take the node down: its escalation
                        // ends here, with the task recorded as failed by its reloaded actor.
                        tracing::error!(actor_kind = "task", task_id = %task_id, failures, error = %err, "task actor failed too often; giving up on the task");
                        state.restarts.remove(&task_id);
                        let detail = format!("task actor failed {failures} times; last error: {err}");
                        if let Ok(actor) =
                            spawn_task(&myself, state, task_id.clone(), TaskInit::Reload(task_id), generation).await
                        {
                            let _ = actor.cast(TaskMsg::Abandon(detail));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<TaskSupMsg>,
        state: &mut TaskSupState,
    ) -> Result<(), ActorProcessingErr> {
        // Task actors keep nothing that is not durable; stopping them leaves their tasks to
        // restart recovery.
        let count = state.children.len();
        for child in state.children.values() {
            child.actor.stop(Some("node shutting down".into()));
        }
        tracing::info!(actor_kind = "task_supervisor", live_tasks = count, "task actors stopped");
        Ok(())
    }
}
