//! The thread coordinator: bounded auto-handoff between a thread's two agents, and restart
//! handling of threads.
//!
//! Auto-handoff is driven by task events, not polling: a thread-bound task actor tells this actor
//! when its task reaches `awaiting_input` or a terminal state, and the coordinator decides — per
//! the plan's flags, every one honoured — whether to stop or to create the next turn (the
//! previous target speaks next). The plan and its progress are persisted in the thread, so after a
//! restart the coordinator picks them up and continues or stops according to the flags.
//!
//! On start (before task recovery), threads whose last turn was still in flight become
//! `interrupted` with the reason; continuing a thread re-activates it.

use std::collections::{BTreeMap, HashMap};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{AgentId, TaskId};
use crate::intake::{Intake, TaskRequest, create_task};
use crate::model::{DeliveryPolicy, FailureReason, JsonObject, TaskRecord, TaskStatus, ThreadStatus};
use crate::storage::{StorageMsg, StoreReader, WriteOp, write_in_background};
use crate::supervision::{ASK_TIMEOUT, Slot};
use crate::task::TurnSettled;

/// A bounded auto-handoff: its plan and progress (persisted as the thread's `handoff`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandoffPlan {
    /// Total turns, the first included.
    pub max_turns: u32,
    /// Turns created so far.
    pub turns_done: u32,
    pub stop_on_awaiting_input: bool,
    pub stop_on_terminal_error: bool,
    pub stop_on_same_actor_repeat: bool,
    #[serde(default)]
    pub intent: Option<String>,
    #[serde(default)]
    pub intent_by_agent: BTreeMap<String, String>,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub payload_by_agent: BTreeMap<String, Value>,
    #[serde(default)]
    pub runtime_options: JsonObject,
    pub delivery: DeliveryPolicy,
    #[serde(default)]
    pub metadata: JsonObject,
    /// The turn being waited on (empty while the next one is being created).
    pub last_task_id: TaskId,
    pub last_sender: AgentId,
    pub last_target: AgentId,
    /// Still running.
    pub active: bool,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    /// Each next turn gets the previous turn's result text as its input (`payload.text`); off:
    /// every turn gets the configured payload as is (plans stored before this field: on).
    #[serde(default = "pass_result_default")]
    pub pass_result: bool,
}

fn pass_result_default() -> bool {
    true
}

/// The text of a turn's result: its `text` field, the string itself, or the JSON. Pure.
pub fn result_text(result: &Value) -> String {
    match result {
        Value::String(s) => s.clone(),
        Value::Object(m) => match m.get("text") {
            Some(Value::String(s)) => s.clone(),
            _ => result.to_string(),
        },
        other => other.to_string(),
    }
}

/// The next turn's payload: the configured one with `text` set to the previous turn's result
/// text (a payload that is not an object becomes `{"text": …}`). Pure.
pub fn with_previous_result(payload: Value, previous: String) -> Value {
    let mut obj = match payload {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    };
    obj.insert("text".into(), Value::String(previous));
    Value::Object(obj)
}

/// What to do after a turn settled. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandoffStep {
    /// Keep waiting (e.g. awaiting input when not asked to stop on it).
    Wait,
    /// Stop with this reason.
    Stop(String),
    /// Create the next turn from `sender` to `target`.
    Next { sender: AgentId, target: AgentId },
}

impl HandoffPlan {
    /// Decides the next step after the watched turn reached `status`. Pure.
    pub fn step(&self, status: TaskStatus, reason: Option<&str>) -> HandoffStep {
        if status == TaskStatus::AwaitingInput {
            return if self.stop_on_awaiting_input {
                HandoffStep::Stop("stop_on_awaiting_input: the turn awaits input".into())
            } else {
                HandoffStep::Wait
            };
        }
        if !status.is_terminal() {
            return HandoffStep::Wait;
        }
        if self.stop_on_terminal_error && status != TaskStatus::Completed {
            return HandoffStep::Stop(format!(
                "stop_on_terminal_error: turn {} {status}{}",
                self.turns_done,
                reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ));
        }
        if self.turns_done >= self.max_turns {
            return HandoffStep::Stop(format!("max_turns reached ({})", self.max_turns));
        }
        let (sender, target) = (self.last_target.clone(), self.last_sender.clone());
        if self.stop_on_same_actor_repeat && sender == self.last_sender {
            return HandoffStep::Stop(format!("stop_on_same_actor_repeat: {sender} would speak twice"));
        }
        HandoffStep::Next { sender, target }
    }
}

/// Messages of the thread coordinator.
pub enum ThreadMsg {
    /// A handoff began with its first turn.
    StartHandoff { thread_id: String, plan: Box<HandoffPlan> },
    /// A thread-bound task reached `awaiting_input` or a terminal state.
    TurnSettled(TurnSettled),
    /// The next turn's task was created (or not).
    NextCreated { thread_id: String, result: Result<Box<TaskRecord>, String> },
}

/// What the thread coordinator talks to.
#[derive(Clone)]
pub struct ThreadDeps {
    /// Thread state and plan progress.
    pub storage: std::sync::Arc<Slot<StorageMsg>>,
    /// Threads and their last tasks, at start and on re-checks.
    pub reader: StoreReader,
    /// Creates the next turn's task.
    pub intake: Intake,
    /// Reads a turn's result (the next turn's input).
    pub artifacts: crate::artifacts::ArtifactStore,
}

/// State of the thread coordinator.
pub struct ThreadState {
    /// Storage, reads and task creation.
    deps: ThreadDeps,
    /// Running handoffs by thread id.
    runs: HashMap<String, HandoffPlan>,
}

/// The thread coordinator.
pub struct ThreadCoordinator;

fn record_plan(deps: &ThreadDeps, thread_id: &str, plan: &HandoffPlan) {
    write_in_background(
        &deps.storage,
        WriteOp::ThreadHandoff {
            thread_id: thread_id.to_owned(),
            handoff: serde_json::to_value(plan).unwrap_or(Value::Null),
        },
    );
}

/// Why a restart interrupted a thread, given its last task's status (contract §10.7).
pub fn interruption_reason(status: TaskStatus) -> &'static str {
    if status == TaskStatus::AwaitingInput {
        "restart interrupted the thread while the last task was awaiting input"
    } else {
        "restart interrupted the thread while the last task was still in progress"
    }
}

impl ThreadCoordinator {
    /// Re-delivers a settle the coordinator may have missed (the plan now watches `task_id`).
    /// A duplicate is harmless: the plan stops watching a task once it acted on it.
    async fn recheck(
        myself: &ActorRef<ThreadMsg>,
        state: &ThreadState,
        thread_id: String,
        task_id: TaskId,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(stored) = state.deps.reader.task(task_id.as_str()).await?
            && (stored.task.status.is_terminal() || stored.task.status == TaskStatus::AwaitingInput)
        {
            let _ = myself.cast(ThreadMsg::TurnSettled(TurnSettled {
                thread_id,
                task_id,
                status: stored.task.status,
                reason: stored.task.last_error.map(|e| e.reason),
            }));
        }
        Ok(())
    }

    fn stop(state: &mut ThreadState, thread_id: &str, reason: String) {
        if let Some(mut plan) = state.runs.remove(thread_id) {
            tracing::info!(actor_kind = "threads", thread_id, %reason, turns = plan.turns_done, "auto-handoff stopped");
            plan.active = false;
            plan.stopped_reason = Some(reason);
            record_plan(&state.deps, thread_id, &plan);
        }
    }
}

impl Actor for ThreadCoordinator {
    type Msg = ThreadMsg;
    type State = ThreadState;
    type Arguments = ThreadDeps;

    async fn pre_start(
        &self,
        _myself: ActorRef<ThreadMsg>,
        deps: ThreadDeps,
    ) -> Result<ThreadState, ActorProcessingErr> {
        // In pre_start, which the root awaits before it starts the task supervisor: recovery
        // must see each thread's last task as it was before the node stopped (task recovery
        // then fails it as interrupted, and its settle notification finds the plan here).
        let mut state = ThreadState { deps, runs: HashMap::new() };
        let mut interrupted = 0;
        for status in [ThreadStatus::Active, ThreadStatus::Interrupted] {
            for thread in state.deps.reader.threads_with_status(status).await? {
                if let Some(plan) = thread
                    .handoff
                    .clone()
                    .and_then(|h| serde_json::from_value::<HandoffPlan>(h).ok())
                    .filter(|p| p.active)
                {
                    state.runs.insert(thread.thread_id.clone(), plan);
                }
                let Some(last) = thread.last_task_id.as_deref() else { continue };
                let Some(task) = state.deps.reader.task(last).await? else { continue };
                if status == ThreadStatus::Active && !task.task.status.is_terminal() {
                    let reason = interruption_reason(task.task.status).to_owned();
                    let op = WriteOp::ThreadState {
                        thread_id: thread.thread_id.clone(),
                        status: ThreadStatus::Interrupted,
                        interruption_reason: Some(reason),
                    };
                    state.deps.storage.ask(ASK_TIMEOUT, |r| StorageMsg::Write(op, r)).await??;
                    interrupted += 1;
                }
            }
        }
        tracing::info!(actor_kind = "threads", interrupted, handoffs = state.runs.len(), "thread recovery done");
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<ThreadMsg>,
        msg: ThreadMsg,
        state: &mut ThreadState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ThreadMsg::StartHandoff { thread_id, plan } => {
                record_plan(&state.deps, &thread_id, &plan);
                let first = plan.last_task_id.clone();
                state.runs.insert(thread_id.clone(), *plan);
                // The first turn may have settled before the plan arrived; its settle message
                // was then ignored. Its stored status is durable, so look it up once.
                Self::recheck(&myself, state, thread_id, first).await?;
            }
            ThreadMsg::TurnSettled(TurnSettled { thread_id, task_id, status, reason }) => {
                let Some(plan) = state.runs.get(&thread_id).filter(|p| p.last_task_id == task_id) else {
                    return Ok(());
                };
                match plan.step(status, reason.as_ref().map(FailureReason::as_str)) {
                    HandoffStep::Wait => {}
                    HandoffStep::Stop(reason) => Self::stop(state, &thread_id, reason),
                    HandoffStep::Next { sender, target } => {
                        let (previous, pass_result) = (plan.last_task_id.clone(), plan.pass_result);
                        let mut req = TaskRequest {
                            thread_id: Some(thread_id.clone()),
                            sender: Some(sender.to_string()),
                            target_agent_id: Some(target.to_string()),
                            intent: plan.intent_by_agent.get(sender.as_str()).cloned().or_else(|| plan.intent.clone()),
                            payload: plan
                                .payload_by_agent
                                .get(sender.as_str())
                                .cloned()
                                .unwrap_or_else(|| plan.payload.clone()),
                            runtime_options: plan.runtime_options.clone(),
                            conversation_id: None,
                            delivery: plan.delivery.clone(),
                            metadata: plan.metadata.clone(),
                            idempotency: None,
                            priority: Default::default(),
                            ..Default::default()
                        };
                        if let Some(p) = state.runs.get_mut(&thread_id) {
                            // Nothing else is watched until the next task exists.
                            p.last_task_id = TaskId::default();
                            p.last_sender = sender;
                            p.last_target = target;
                        }
                        let (intake, me, tid) = (state.deps.intake.clone(), myself.clone(), thread_id.clone());
                        let (reader, artifacts) = (state.deps.reader.clone(), state.deps.artifacts.clone());
                        tokio::spawn(async move {
                            if pass_result {
                                match previous_result(&reader, &artifacts, previous.as_str()).await {
                                    Ok(Some(text)) => req.payload = with_previous_result(req.payload, text),
                                    Ok(None) => {}
                                    Err(e) => {
                                        let error = format!("the previous turn's result could not be read: {e}");
                                        let _ = me.cast(ThreadMsg::NextCreated { thread_id: tid, result: Err(error) });
                                        return;
                                    }
                                }
                            }
                            let result = create_task(&intake, req).await.map(Box::new).map_err(|e| e.to_string());
                            let _ = me.cast(ThreadMsg::NextCreated { thread_id: tid, result });
                        });
                    }
                }
            }
            ThreadMsg::NextCreated { thread_id, result } => match result {
                Ok(task) => {
                    if let Some(plan) = state.runs.get_mut(&thread_id) {
                        plan.turns_done += 1;
                        plan.last_task_id = TaskId::from(task.task_id.as_str());
                        tracing::info!(actor_kind = "threads", thread_id = %thread_id, task_id = %task.task_id, turn = plan.turns_done, "auto-handoff turn created");
                        let plan = plan.clone();
                        record_plan(&state.deps, &thread_id, &plan);
                        // The task may already have settled before the plan pointed at it.
                        Self::recheck(&myself, state, thread_id, plan.last_task_id).await?;
                    }
                }
                Err(e) => Self::stop(state, &thread_id, format!("next turn could not be created: {e}")),
            },
        }
        Ok(())
    }
}

/// The result text of task `task_id` (`None`: it has no result, e.g. it failed).
async fn previous_result(
    reader: &StoreReader,
    artifacts: &crate::artifacts::ArtifactStore,
    task_id: &str,
) -> Result<Option<String>, String> {
    let Some(stored) = reader.task(task_id).await.map_err(|e| e.to_string())? else { return Ok(None) };
    let Some(artifact_id) = stored.task.result_artifact_id else { return Ok(None) };
    let Some((_, body)) = reader.artifact(&artifact_id).await.map_err(|e| e.to_string())? else { return Ok(None) };
    let bytes = artifacts.read(body).await.map_err(|e| e.to_string())?;
    let result: Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(Some(result_text(&result)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> HandoffPlan {
        HandoffPlan {
            max_turns: 3,
            turns_done: 1,
            stop_on_awaiting_input: false,
            stop_on_terminal_error: false,
            stop_on_same_actor_repeat: false,
            intent: Some("chat".into()),
            intent_by_agent: BTreeMap::new(),
            payload: Value::Null,
            payload_by_agent: BTreeMap::new(),
            runtime_options: JsonObject::new(),
            delivery: DeliveryPolicy::default(),
            metadata: JsonObject::new(),
            last_task_id: "t1".into(),
            last_sender: "a".into(),
            last_target: "b".into(),
            active: true,
            stopped_reason: None,
            pass_result: true,
        }
    }

    #[test]
    fn the_next_turn_takes_the_previous_result_text() {
        use serde_json::json;
        let cases =
            [(json!({"text": "pong"}), "pong"), (json!("plain"), "plain"), (json!({"answer": 42}), "{\"answer\":42}")];
        for (result, want) in cases {
            assert_eq!(result_text(&result), want, "{result}");
        }
        assert_eq!(with_previous_result(json!({"text": "old", "k": 1}), "new".into()), json!({"text": "new", "k": 1}));
        assert_eq!(with_previous_result(Value::Null, "new".into()), json!({"text": "new"}));
    }

    #[test]
    fn every_flag_is_honoured() {
        let p = plan();
        assert_eq!(p.step(TaskStatus::Completed, None), HandoffStep::Next { sender: "b".into(), target: "a".into() });
        assert_eq!(p.step(TaskStatus::Running, None), HandoffStep::Wait);
        assert_eq!(p.step(TaskStatus::AwaitingInput, None), HandoffStep::Wait, "awaiting input stops only when asked");
        assert!(matches!(
            HandoffPlan { stop_on_awaiting_input: true, ..plan() }.step(TaskStatus::AwaitingInput, None),
            HandoffStep::Stop(_)
        ));
        assert!(
            matches!(p.step(TaskStatus::Failed, Some("x")), HandoffStep::Next { .. }),
            "failures continue unless asked"
        );
        assert!(
            matches!(HandoffPlan { stop_on_terminal_error: true, ..plan() }.step(TaskStatus::Failed, Some("x")), HandoffStep::Stop(r) if r.contains("(x)"))
        );
        assert!(
            matches!(HandoffPlan { turns_done: 3, ..plan() }.step(TaskStatus::Completed, None), HandoffStep::Stop(r) if r.contains("max_turns"))
        );
        let same = HandoffPlan { stop_on_same_actor_repeat: true, last_target: "a".into(), ..plan() };
        assert!(matches!(same.step(TaskStatus::Completed, None), HandoffStep::Stop(_)));
    }
}
