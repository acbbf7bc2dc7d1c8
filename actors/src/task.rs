//! The task actor: one per live task. It alone allocates event seqs, enforces the state machine
//! ([`TaskLifecycle`]), writes each transition (task row + events, one transaction) through the
//! storage actor, and publishes events to the SSE hub only after they are durable. It stops once
//! the task is terminal; a later request for that task is answered from storage.
//!
//! Long waits never block it: runtime acquisition runs in a spawned task that casts the result
//! back, and timers carry the actor's generation so a stale timer is ignored.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::adapters::AdapterKind;
use crate::artifacts::ArtifactStore;
use crate::artifacts::NewArtifact;
use crate::clock;
use crate::error::{AskError, StorageError};
use crate::ids;
use crate::model::{
    Attempts, DeadlineKind, EventKind, EventSource, FailureReason, JsonObject, LastError, RemoteRef, RetryPolicy,
    TargetSpec, TaskEvent, TaskRecord, TaskStatus, remaining_ms,
};
use crate::port::{
    AdapterEvent, Dispatch, LaunchPhase, PendingInput, RuntimeError, RuntimeHandle, SessionMsg, SessionPort,
    TaskReport, Waiter,
};
use crate::registry::TargetTable;
use crate::runtime::RuntimeSupMsg;
use crate::sse::SseHubMsg;
use crate::state_machine::{CancelPlan, ResumeRejection, TaskLifecycle};
use crate::storage::reader::StoredTask;
use crate::storage::{StorageMsg, StoreReader, WriteOp};
use crate::supervision::{ASK_TIMEOUT, Notify, Slot};
use crate::telemetry;

/// Upper bound on waiting for a runtime; each runtime applies its own (shorter) launch timeout.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(600);
/// Extra time the task actor gives a runtime beyond the cancel grace before it ends a cancelled
/// task itself (the runtime kills its process at the grace).
const CANCEL_BACKSTOP: Duration = Duration::from_secs(5);
/// Added to the actor's generation when a retry starts a new attempt: reports, acquisitions and
/// timers of the failed attempt then carry an older generation and are dropped. Far above the
/// supervisor's restart increments (+1 per incarnation), so the two never meet.
const ATTEMPT_STRIDE: u64 = 1 << 32;
/// Longest a deferred write waits for the next one to share its transaction (a relay's first
/// answer usually comes within a few milliseconds).
const DEFER_BOUND: Duration = Duration::from_millis(20);

/// Errors a task actor returns to the API.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    NotAwaitable(#[from] ResumeRejection),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("artifact: {0}")]
    Artifact(String),
    /// The task's actor could not be started.
    #[error("could not start the task actor: {0}")]
    Spawn(String),
    /// The resume payload does not answer the pending request.
    #[error("{0}")]
    BadResume(String),
    /// Only a `failed` or `cancelled` task can be retried by request.
    #[error("task is {0}: only a failed or cancelled task can be retried")]
    NotRetryable(TaskStatus),
    /// The task's target is no longer registered: it has nowhere to run again.
    #[error("the task's target '{0}' is no longer registered")]
    TargetGone(String),
    #[error(transparent)]
    Ask(#[from] AskError),
}

/// A task accepted by the API, not yet persisted.
#[derive(Clone, Debug)]
pub struct NewTask {
    /// The row to insert (status `created`, `payload_artifact_id` filled in by the actor).
    pub record: TaskRecord,
    /// The request payload (a JSON object).
    pub payload: Value,
    /// The resolved target.
    pub target: TargetSpec,
    /// The thread turn this task opens, if thread-bound.
    pub new_turn: Option<crate::storage::NewTurn>,
    /// The idempotency key its creation claims, if the caller sent one.
    pub claim: Option<crate::storage::IdempotencyClaim>,
}

/// How a task actor starts.
pub enum TaskInit {
    /// A new task from `POST /v1/tasks`; `Create` persists it.
    New(Box<NewTask>),
    /// A task loaded from storage (restart recovery).
    Stored(Box<StoredTask>),
    /// Reload the task from storage (restart after a failure).
    Reload(String),
}

/// What a task actor talks to, and nothing else. Built by the root, cloned into every task actor
/// by the task supervisor.
#[derive(Clone)]
pub struct TaskDeps {
    /// The only writer: every transition goes through it.
    pub storage: Arc<Slot<StorageMsg>>,
    /// Reloads after a restart, payload artifacts of recovered tasks.
    pub reader: StoreReader,
    /// Prepares payload and result artifacts before the write that records them.
    pub artifacts: ArtifactStore,
    /// Durable events are published here for SSE subscribers.
    pub sse: Arc<Slot<SseHubMsg>>,
    /// Runtime acquisition.
    pub runtimes: Arc<Slot<RuntimeSupMsg>>,
    /// Routing snapshot: a recovered task looks its target up here.
    pub targets: tokio::sync::watch::Receiver<Arc<TargetTable>>,
    /// Cached peer targets: a recovered relay looks its peer's target up here.
    pub peer_targets: tokio::sync::watch::Receiver<Arc<crate::peers::PeerTable>>,
    /// Told when a thread-bound task settles (the thread coordinator listens).
    pub turn_settled: Notify<TurnSettled>,
    /// How long a runtime has to confirm a cancel.
    pub cancel_grace: Duration,
}

/// A thread-bound task reached `awaiting_input` or a terminal state.
#[derive(Clone, Debug)]
pub struct TurnSettled {
    pub thread_id: String,
    pub task_id: ids::TaskId,
    pub status: TaskStatus,
    /// `last_error.reason` of a failed turn.
    pub reason: Option<FailureReason>,
}

/// Arguments of a task actor.
pub struct TaskArgs {
    pub init: TaskInit,
    /// Incarnation number, given by the task supervisor.
    pub generation: u64,
    pub deps: TaskDeps,
}

/// Which timer fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// `delivery.timeout_ms` elapsed.
    Timeout,
    /// The runtime did not confirm a cancel in time.
    CancelGrace,
    /// A scheduled retry is due: dispatch the next attempt.
    Retry,
    /// One of the task's `deadlines` elapsed.
    Bound(DeadlineKind),
    /// Deferred events ([`TaskState::deferred`]) have waited [`DEFER_BOUND`]: write them.
    Flush,
}

/// The task actor's armed timers, at most one per [`Deadline`]; each is aborted when replaced,
/// when its condition ends, and when the task ends.
#[derive(Default)]
struct Timers(Vec<(Deadline, TimerHandle)>);

/// A `send_after` timer.
type TimerHandle = JoinHandle<Result<(), ractor::MessagingErr<TaskMsg>>>;

impl Timers {
    /// Fires `TaskMsg::Deadline { generation, which }` after `after`, replacing an armed one.
    fn arm(&mut self, myself: &ActorRef<TaskMsg>, generation: u64, which: Deadline, after: Duration) {
        self.disarm(which);
        let handle = myself.send_after(after, move || TaskMsg::Deadline { generation, which });
        self.0.push((which, handle));
    }

    fn disarm(&mut self, which: Deadline) {
        self.0.retain(|(d, h)| {
            if *d == which {
                h.abort();
            }
            *d != which
        });
    }

    fn disarm_all(&mut self) {
        for (_, h) in self.0.drain(..) {
            h.abort();
        }
    }
}

/// Messages of a task actor.
pub enum TaskMsg {
    /// Persist the new task (`task.created`, `task.routed`); reply once durable.
    Create(RpcReplyPort<Result<TaskRecord, TaskError>>),
    /// Continue a recovered task according to the restart policy; the reply (if any) comes once
    /// what recovery decided is durable.
    Recover(Option<RpcReplyPort<()>>),
    /// Result of runtime acquisition.
    Acquired { generation: u64, result: Result<RuntimeHandle, RuntimeError> },
    /// What the runtime reported (launch phases, adapter events), each stamped with the
    /// generation it is meant for.
    Report(TaskReport),
    /// `POST /v1/tasks/{id}/cancel`. Replies with the status after the request was recorded.
    Cancel { reason: Option<String>, reply: RpcReplyPort<Result<TaskStatus, TaskError>> },
    /// `POST /v1/tasks/{id}/resume`.
    Resume { payload: JsonObject, reply: RpcReplyPort<Result<TaskStatus, TaskError>> },
    /// A timer fired.
    Deadline { generation: u64, which: Deadline },
    /// Its actor kept failing: record the task failed with this detail.
    Abandon(String),
    /// An operator retries a `failed` or `cancelled` task: a new attempt is scheduled now.
    /// Replies with the status after it was recorded (`created`).
    Retry { reason: Option<String>, reply: RpcReplyPort<Result<TaskStatus, TaskError>> },
}

impl From<TaskReport> for TaskMsg {
    fn from(report: TaskReport) -> Self {
        TaskMsg::Report(report)
    }
}

impl TryFrom<TaskMsg> for TaskReport {
    type Error = TaskMsg;

    fn try_from(msg: TaskMsg) -> Result<Self, TaskMsg> {
        match msg {
            TaskMsg::Report(report) => Ok(report),
            other => Err(other),
        }
    }
}

/// Admitted events waiting for the next write ([`TaskState::deferred`]).
struct Deferred {
    /// The state machine and row as durable before them: what a failed write rolls back to.
    durable: (TaskLifecycle, TaskRecord),
    /// The events, with their seqs, in order.
    events: Vec<TaskEvent>,
    /// Their status changes, counted once written.
    transitions: Vec<(TaskStatus, TaskStatus)>,
}

/// One event to append, before it has a seq.
#[derive(Debug)]
struct Draft {
    kind: EventKind,
    source: EventSource,
    message: String,
    data: JsonObject,
    /// Sets `last_error` (terminal failures).
    error: Option<LastError>,
    /// Sets `remote`.
    remote: Option<RemoteRef>,
    /// Result artifact written with this event.
    result: Option<NewArtifact>,
    /// The attempt bookkeeping this event starts (a scheduled retry); it also clears `remote`.
    attempts: Option<Attempts>,
}

fn draft(kind: EventKind, source: EventSource, message: impl Into<String>) -> Draft {
    Draft {
        kind,
        source,
        message: message.into(),
        data: JsonObject::new(),
        error: None,
        remote: None,
        result: None,
        attempts: None,
    }
}

impl Draft {
    fn data(mut self, data: Value) -> Self {
        if let Value::Object(map) = data {
            self.data = map;
        }
        self
    }
}

/// State of a task actor.
pub struct TaskState {
    /// The task row as last written; every write carries the whole row.
    record: TaskRecord,
    /// The state machine: current status, seq allocation, pending requests.
    lifecycle: TaskLifecycle,
    /// This incarnation; events and timers for other generations are dropped.
    generation: u64,
    /// The resolved target (needed to acquire its runtime); `None` if it vanished.
    target: Option<TargetSpec>,
    /// The payload to dispatch; loaded from its artifact for recovered tasks.
    payload: Option<Value>,
    /// The runtime session holding the task once dispatched.
    session: Option<SessionPort>,
    /// Data of the pending input request (its `options`, for permission requests).
    awaiting: Option<PendingInput>,
    /// Set by restart recovery for a task whose remote run can be followed again (`acp_http`):
    /// the runtime acquired next re-attaches it instead of dispatching it anew.
    reattach: Option<RemoteRef>,
    /// Set by restart recovery for a task that waited in its runtime's session queue and never
    /// reached the agent (`dispatching`, nothing submitted): the runtime acquired next gets it
    /// again although it is already `dispatching`.
    redispatch: bool,
    /// The thread turn to open with the creation write (taken by it).
    new_turn: Option<crate::storage::NewTurn>,
    /// The idempotency key to claim with the creation write (taken by it).
    claim: Option<crate::storage::IdempotencyClaim>,
    /// Whether the agent has started the current attempt (its first report arrived): ends the
    /// `schedule_to_start_ms` bound and starts `start_to_close_ms` and the heartbeat.
    started: bool,
    /// `delivery.timeout_ms`, the cancel grace, a scheduled retry and the `deadlines`.
    timers: Timers,
    /// Events the state machine admitted that are not written yet: a relay's dispatch to a peer
    /// that answers a repeated submit with the same task ([`TargetSpec::resubmit_safe`]) goes
    /// into the next write (the relay's first answer, at most [`DEFER_BOUND`] later) instead of
    /// an fsync of its own on the relay's path. Written at a graceful stop; lost in a crash,
    /// they are re-done by recovery.
    deferred: Option<Deferred>,
    /// Everything else the actor talks to.
    deps: TaskDeps,
}

/// The task actor.
pub struct TaskActor;

impl Actor for TaskActor {
    type Msg = TaskMsg;
    type State = TaskState;
    type Arguments = TaskArgs;

    async fn pre_start(&self, _myself: ActorRef<TaskMsg>, args: TaskArgs) -> Result<TaskState, ActorProcessingErr> {
        let TaskArgs { init, generation, deps } = args;
        let (record, lifecycle, target, payload, (new_turn, claim)) = match init {
            TaskInit::New(new) => {
                let NewTask { record, payload, target, new_turn, claim } = *new;
                (record, TaskLifecycle::new(), Some(target), Some(payload), (new_turn, claim))
            }
            TaskInit::Stored(stored) => {
                let target = lookup_target(&deps, &stored.task);
                let lc = TaskLifecycle::restore(stored.task.status, stored.last_seq);
                (stored.task, lc, target, None, (None, None))
            }
            TaskInit::Reload(task_id) => {
                let stored =
                    deps.reader.task(&task_id).await?.ok_or_else(|| format!("task {task_id} not found in storage"))?;
                let target = lookup_target(&deps, &stored.task);
                let lc = TaskLifecycle::restore(stored.task.status, stored.last_seq);
                (stored.task, lc, target, None, (None, None))
            }
        };
        Ok(TaskState {
            record,
            lifecycle,
            generation,
            target,
            payload,
            session: None,
            awaiting: None,
            reattach: None,
            redispatch: false,
            new_turn,
            claim,
            started: false,
            timers: Timers::default(),
            deferred: None,
            deps,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<TaskMsg>,
        msg: TaskMsg,
        state: &mut TaskState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TaskMsg::Create(reply) => {
                // A peer's runtime is the node's link to it: asking for it has no effect
                // outside the node, so it is asked for while the creation commits (its answer
                // waits in the mailbox) and the relay is submitted once the task is durable. Any
                // other runtime may launch a process: asked for only once the task exists.
                let early = state.target.as_ref().is_some_and(|t| t.source == crate::model::TargetSource::Peer);
                if early {
                    acquire_runtime(&myself, state);
                }
                match create(state).await {
                    Ok(()) => {
                        let _ = reply.send(Ok(state.record.clone()));
                        arm_schedule_to_start(&myself, state);
                        if !early {
                            acquire_runtime(&myself, state);
                        }
                    }
                    Err(e) => {
                        // Nothing durable exists for this task: stop quietly, the API reports it.
                        let _ = reply.send(Err(e));
                        myself.stop(Some("creation failed".into()));
                    }
                }
            }
            TaskMsg::Recover(reply) => {
                let recovered = recover(&myself, state).await;
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
                recovered?;
            }
            TaskMsg::Acquired { generation, result } if generation == state.generation => {
                on_acquired(&myself, state, result).await?;
            }
            TaskMsg::Report(TaskReport::Adapter { generation, events }) if generation == state.generation => {
                on_adapter_events(&myself, state, events).await?;
            }
            TaskMsg::Cancel { reason, reply } => {
                let result = cancel(&myself, state, reason).await;
                // A write that failed or got no answer: what is in memory may not be durable.
                let failed_write = matches!(result, Err(TaskError::Storage(_) | TaskError::Ask(_)));
                let _ = reply.send(result);
                if failed_write {
                    return Err("storage write failed during cancel".into());
                }
            }
            TaskMsg::Resume { payload, reply } => {
                if let Err(rejected) = state.lifecycle.check_resume() {
                    let _ = reply.send(Err(rejected.into()));
                    return Ok(());
                }
                // Checked against what is pending before anything is appended.
                let payload = match checked_resume(state.awaiting.as_ref(), payload) {
                    Ok(p) => p,
                    Err(reason) => {
                        let _ = reply.send(Err(TaskError::BadResume(reason)));
                        return Ok(());
                    }
                };
                let event = draft(EventKind::TaskResumeRequested, EventSource::Api, "Resume requested")
                    .data(Value::Object(payload.clone()));
                append(&myself, state, vec![event]).await?;
                let _ = reply.send(Ok(state.lifecycle.status()));
                // Appended first, then the runtime is told (never the other way round).
                let message =
                    SessionMsg::Resume { task_id: state.record.task_id.clone(), generation: state.generation, payload };
                if !state.session.as_ref().is_some_and(|s| s.send(message)) {
                    let fail = failed(
                        FailureReason::ResumeFailed,
                        "no runtime session holds this task",
                        "Runtime session lost",
                    );
                    append(&myself, state, vec![fail]).await?;
                }
            }
            TaskMsg::Report(TaskReport::Phase { generation, phase }) if generation == state.generation => {
                let d = match phase {
                    LaunchPhase::PendingLaunch => {
                        draft(EventKind::RuntimePendingLaunch, EventSource::Core, "Runtime launch required")
                    }
                    LaunchPhase::Launching { pid } => {
                        draft(EventKind::RuntimeLaunching, EventSource::Runtime, "Launching runtime")
                            .data(json!({ "pid": pid }))
                    }
                };
                append(&myself, state, vec![d]).await?;
            }
            TaskMsg::Deadline { generation, which } if generation == state.generation => {
                on_deadline(&myself, state, which).await?;
            }
            TaskMsg::Abandon(detail) => {
                if !state.lifecycle.status().is_terminal() {
                    append(
                        &myself,
                        state,
                        vec![failed(FailureReason::Crashed, detail, "Task abandoned after repeated internal failures")],
                    )
                    .await?;
                }
                myself.stop(Some("abandoned".into()));
            }
            TaskMsg::Retry { reason, reply } => {
                let result = retry_by_request(&myself, state, reason).await;
                // A write that failed or got no answer: what is in memory may not be durable.
                let failed_write = matches!(result, Err(TaskError::Storage(_) | TaskError::Ask(_)));
                let _ = reply.send(result);
                if failed_write {
                    return Err("storage write failed during a retry".into());
                }
                // A refused retry of a settled task: its actor was started only for it.
                if state.lifecycle.status().is_terminal() {
                    myself.stop(Some("retry refused".into()));
                }
            }
            TaskMsg::Acquired { .. } | TaskMsg::Report(_) | TaskMsg::Deadline { .. } => {
                tracing::debug!(task_id = %state.record.task_id, generation = state.generation, "dropped a message for an older incarnation");
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<TaskMsg>, state: &mut TaskState) -> Result<(), ActorProcessingErr> {
        abort_timers(state);
        // A shutdown writes what was deferred (the storage actor outlives the tasks); if it
        // cannot, recovery re-does it.
        if state.deferred.is_some()
            && let Err(e) = persist(state, Vec::new(), Vec::new()).await
        {
            tracing::warn!(task_id = %state.record.task_id, error = %e, "deferred task events not written at stop");
        }
        Ok(())
    }
}

/// A recovered task's target: the local one of its id, else the one peer exporting it (a relay).
fn lookup_target(deps: &TaskDeps, task: &TaskRecord) -> Option<TargetSpec> {
    let id = task.resolved_agent_id.as_deref()?;
    if let Some(local) = deps.targets.borrow().get(id) {
        return Some(local.clone());
    }
    // An Aether agent or pool: its workers come back on their own (the gateway's sessions).
    if let Some(target) = crate::aether::tasks::AetherTarget::parse(id) {
        return Some(crate::aether::tasks::target_spec(&target));
    }
    match deps.peer_targets.borrow().lookup(id) {
        crate::peers::PeerLookup::One(peer) => Some(peer.spec()),
        crate::peers::PeerLookup::None | crate::peers::PeerLookup::Several(_) => None,
    }
}

fn abort_timers(state: &mut TaskState) {
    state.timers.disarm_all();
}

fn failed(reason: FailureReason, detail: impl Into<String>, message: impl Into<String>) -> Draft {
    let detail = detail.into();
    let mut d =
        draft(EventKind::TaskFailed, EventSource::Core, message).data(json!({ "reason": reason, "detail": detail }));
    d.error = Some(LastError { reason, detail: Some(detail) });
    d
}

/// The payload a resume sends once checked against what the task waits for: a permission request
/// takes one of the options the agent offered (its id is added), an HTTP await request takes a
/// message, a structured request cannot be answered at all. The error names what was wrong. Pure.
pub fn checked_resume(pending: Option<&PendingInput>, mut payload: JsonObject) -> Result<JsonObject, String> {
    match pending {
        Some(PendingInput::Permission { options }) => {
            let option_id = crate::runtime::dialect::choose_option(options, &payload)?;
            payload.insert("option_id".into(), Value::String(option_id));
        }
        Some(PendingInput::AwaitRequest) => {
            crate::runtime::http::resume_message(&payload)?;
        }
        Some(PendingInput::Structured) => {
            return Err("this agent asked for input with a structured event, which its protocol cannot answer; \
                        cancel the task instead"
                .into());
        }
        // The destination checks the answer against what its agent asked for.
        Some(PendingInput::Relayed) => {}
        Some(PendingInput::Free) | None => {}
    }
    Ok(payload)
}

/// Counts a durable write's status changes (and, for the first dispatch and the end, how long
/// since creation).
fn record_transitions(record: &TaskRecord, transitions: &[(TaskStatus, TaskStatus)]) {
    for &(from, to) in transitions {
        telemetry::task_transition(from, to);
        if to == TaskStatus::Dispatching
            && !from.is_dispatched()
            && let Some(age) = telemetry::age_of(&record.created_at)
        {
            metrics::histogram!(telemetry::TASK_DISPATCH_LATENCY).record(age.as_secs_f64());
        }
        if to.is_terminal() {
            let reason = record.last_error.as_ref().map(|e| e.reason.as_str());
            telemetry::task_finished(to, reason, telemetry::age_of(&record.created_at));
        }
    }
}

/// Appends events and stops the actor once the task is terminal. A storage failure fails the
/// actor, so its supervisor restarts it from what is durable.
///
/// A failed attempt the task's retry policy retries is not appended as `task.failed`: it
/// becomes `task.retry_scheduled` and the next attempt is dispatched after the policy's delay.
async fn append(myself: &ActorRef<TaskMsg>, state: &mut TaskState, mut drafts: Vec<Draft>) -> Result<(), TaskError> {
    let retry = plan_retry(state, &mut drafts);
    persist(state, drafts, Vec::new()).await?;
    if state.lifecycle.status().is_terminal() {
        abort_timers(state);
        myself.stop(Some(format!("task {}", state.lifecycle.status())));
    } else if let Some(delay) = retry
        && state.lifecycle.status() == TaskStatus::Created
    {
        start_next_attempt(myself, state, delay);
    }
    Ok(())
}

/// If `drafts` fail the attempt and the policy retries it, replaces that failure (and anything
/// after it) with `task.retry_scheduled`; returns the delay before the next attempt.
fn plan_retry(state: &TaskState, drafts: &mut Vec<Draft>) -> Option<Duration> {
    let at = drafts.iter().position(|d| d.kind == EventKind::TaskFailed)?;
    let error = drafts[at].error.clone().unwrap_or(LastError { reason: FailureReason::RemoteFailed, detail: None });
    let attempts = &state.record.attempts;
    let decided = RetryPolicy::decide(
        attempts.retry_policy.as_ref(),
        attempts.attempt,
        &error.reason,
        state.lifecycle.cancel_requested(),
        rand::random::<u64>(),
    );
    let delay_ms = match decided {
        Ok(ms) => ms,
        Err(why) => {
            if attempts.max_attempts > 1 {
                tracing::debug!(task_id = %state.record.task_id, attempt = attempts.attempt, ?why, "attempt failed; not retried");
            }
            return None;
        }
    };
    let due =
        time::OffsetDateTime::now_utc() + time::Duration::milliseconds(i64::try_from(delay_ms).unwrap_or(i64::MAX));
    let due = clock::format_rfc3339(due);
    let next = Attempts {
        attempt: attempts.attempt + 1,
        next_retry_at: Some(due.clone()),
        attempt_scheduled_at: Some(due.clone()),
        attempt_started_at: None,
        ..attempts.clone()
    };
    let message = format!(
        "Attempt {} of {} failed ({}); next attempt in {delay_ms} ms",
        attempts.attempt,
        attempts.max_attempts,
        error.reason.as_str()
    );
    let mut d = draft(EventKind::TaskRetryScheduled, EventSource::Core, message).data(json!({
        "reason": error.reason,
        "detail": error.detail,
        "attempt": attempts.attempt,
        "next_attempt": next.attempt,
        "max_attempts": attempts.max_attempts,
        "delay_ms": delay_ms,
        "next_retry_at": due,
    }));
    d.error = Some(error);
    d.attempts = Some(next);
    drafts.truncate(at);
    drafts.push(d);
    Some(Duration::from_millis(delay_ms))
}

/// After a durable `task.retry_scheduled`: fences off the failed attempt (a new generation, no
/// session, no timers) and arms the retry.
fn start_next_attempt(myself: &ActorRef<TaskMsg>, state: &mut TaskState, delay: Duration) {
    abort_timers(state);
    state.generation += ATTEMPT_STRIDE;
    state.session = None;
    state.awaiting = None;
    state.reattach = None;
    state.redispatch = false;
    state.started = false;
    tracing::info!(
        actor_kind = "task", task_id = %state.record.task_id, attempt = state.record.attempts.attempt,
        max_attempts = state.record.attempts.max_attempts, delay_ms = delay.as_millis() as u64,
        reason = state.record.last_error.as_ref().map_or("", |e| e.reason.as_str()), "retry scheduled"
    );
    state.timers.arm(myself, state.generation, Deadline::Retry, delay);
}

/// An operator's retry of a settled task: `task.retry_scheduled` (source `api`) starts attempt
/// `attempt + 1` at once (`max_attempts` grows to allow it), and the task is dispatched again.
async fn retry_by_request(
    myself: &ActorRef<TaskMsg>,
    state: &mut TaskState,
    reason: Option<String>,
) -> Result<TaskStatus, TaskError> {
    let status = state.lifecycle.status();
    if !matches!(status, TaskStatus::Failed | TaskStatus::Cancelled) {
        return Err(TaskError::NotRetryable(status));
    }
    if state.target.is_none() {
        let target = state.record.resolved_agent_id.clone().unwrap_or_default();
        return Err(TaskError::TargetGone(target));
    }
    if state.payload.is_none() {
        state.payload = Some(load_payload(state).await.map_err(TaskError::Artifact)?);
    }
    let now = clock::now_rfc3339();
    let attempts = &state.record.attempts;
    let next = Attempts {
        attempt: attempts.attempt + 1,
        max_attempts: attempts.max_attempts.max(attempts.attempt + 1),
        next_retry_at: None,
        attempt_scheduled_at: Some(now),
        attempt_started_at: None,
        ..attempts.clone()
    };
    let mut data = json!({ "attempt": attempts.attempt, "next_attempt": next.attempt, "max_attempts": next.max_attempts, "delay_ms": 0 });
    if let Some(r) = reason {
        data["reason"] = json!(r);
    }
    let mut d =
        draft(EventKind::TaskRetryScheduled, EventSource::Api, format!("Retry requested (attempt {})", next.attempt))
            .data(data);
    d.attempts = Some(next);
    persist(state, vec![d], Vec::new()).await?;
    if state.lifecycle.status() != TaskStatus::Created {
        return Ok(state.lifecycle.status());
    }
    start_next_attempt(myself, state, Duration::ZERO);
    Ok(state.lifecycle.status())
}

/// The retry is due: the next attempt is scheduled now and waits for its runtime.
fn on_retry_due(myself: &ActorRef<TaskMsg>, state: &mut TaskState) {
    if state.lifecycle.status() != TaskStatus::Created {
        return;
    }
    // Written with the attempt's next event (`runtime.*`, `task.dispatching`).
    state.record.attempts.next_retry_at = None;
    arm_schedule_to_start(myself, state);
    acquire_runtime(myself, state);
}

/// Arms `deadlines.schedule_to_start_ms` with what is left of it since the attempt was scheduled.
fn arm_schedule_to_start(myself: &ActorRef<TaskMsg>, state: &mut TaskState) {
    let attempts = &state.record.attempts;
    let Some(ms) = attempts.deadlines.schedule_to_start_ms else { return };
    let left = remaining_ms(attempts.attempt_scheduled_at.as_deref(), ms, time::OffsetDateTime::now_utc());
    let which = Deadline::Bound(DeadlineKind::ScheduleToStart);
    state.timers.arm(myself, state.generation, which, Duration::from_millis(left));
}

/// The agent reported on the attempt: the first report starts it (`schedule_to_start_ms` ends,
/// `start_to_close_ms` begins); every report is a heartbeat, except while the task awaits input.
fn on_progress(myself: &ActorRef<TaskMsg>, state: &mut TaskState) {
    let deadlines = state.record.attempts.deadlines;
    if !state.started {
        state.started = true;
        state.timers.disarm(Deadline::Bound(DeadlineKind::ScheduleToStart));
        if state.record.attempts.attempt_started_at.is_none() {
            state.record.attempts.attempt_started_at = Some(clock::now_rfc3339());
        }
        if let Some(ms) = deadlines.start_to_close_ms {
            let left =
                remaining_ms(state.record.attempts.attempt_started_at.as_deref(), ms, time::OffsetDateTime::now_utc());
            let which = Deadline::Bound(DeadlineKind::StartToClose);
            state.timers.arm(myself, state.generation, which, Duration::from_millis(left));
        }
    }
    let heartbeat = Deadline::Bound(DeadlineKind::Heartbeat);
    match deadlines.heartbeat_timeout_ms {
        Some(_) if state.lifecycle.status() == TaskStatus::AwaitingInput => state.timers.disarm(heartbeat),
        Some(ms) => state.timers.arm(myself, state.generation, heartbeat, Duration::from_millis(ms)),
        None => {}
    }
}

/// Checks each draft against the state machine (refused ones are logged and skipped), writes the
/// task row, the events and `artifacts` in one transaction (after any deferred events), then
/// publishes the events. On a failed write the in-memory state is rolled back to what is durable.
async fn persist(state: &mut TaskState, drafts: Vec<Draft>, mut artifacts: Vec<NewArtifact>) -> Result<(), TaskError> {
    // Deferred events go first, and a failed write rolls back to before them too.
    let (before, mut events, mut transitions) = match state.deferred.take() {
        Some(Deferred { durable, events, transitions }) => {
            state.timers.disarm(Deadline::Flush);
            (durable, events, transitions)
        }
        None => ((state.lifecycle.clone(), state.record.clone()), Vec::new(), Vec::new()),
    };
    admit_drafts(state, drafts, &mut artifacts, &mut events, &mut transitions);
    if events.is_empty() {
        return Ok(());
    }
    let op = WriteOp::Task {
        task: Box::new(state.record.clone()),
        last_seq: state.lifecycle.last_seq(),
        events: events.clone(),
        artifacts,
        new_turn: state.new_turn.take(),
        claim: state.claim.take().map(Box::new),
    };
    let written = state.deps.storage.ask(ASK_TIMEOUT, |reply| StorageMsg::Write(op, reply)).await;
    if let Err(e) = written.map_err(TaskError::from).and_then(|r| r.map_err(TaskError::from)) {
        (state.lifecycle, state.record) = before;
        return Err(e);
    }
    published(state, &transitions, events);
    Ok(())
}

/// Admits `drafts` (state machine and row, as [`persist`] does) without writing them: they go
/// first into the next write, which is at most [`DEFER_BOUND`] away (see
/// [`TaskState::deferred`]). Only for drafts that carry no artifact.
fn defer(myself: &ActorRef<TaskMsg>, state: &mut TaskState, drafts: Vec<Draft>) {
    let mut deferred = state.deferred.take().unwrap_or_else(|| Deferred {
        durable: (state.lifecycle.clone(), state.record.clone()),
        events: Vec::new(),
        transitions: Vec::new(),
    });
    let mut artifacts = Vec::new();
    admit_drafts(state, drafts, &mut artifacts, &mut deferred.events, &mut deferred.transitions);
    debug_assert!(artifacts.is_empty(), "deferred drafts carry no artifact");
    if !deferred.events.is_empty() {
        state.deferred = Some(deferred);
        state.timers.arm(myself, state.generation, Deadline::Flush, DEFER_BOUND);
    }
}

/// Checks each draft against the state machine (refused ones are logged and skipped) and
/// applies the admitted ones to the row, appending their events, artifacts and status changes.
fn admit_drafts(
    state: &mut TaskState,
    drafts: Vec<Draft>,
    artifacts: &mut Vec<NewArtifact>,
    events: &mut Vec<TaskEvent>,
    transitions: &mut Vec<(TaskStatus, TaskStatus)>,
) {
    let now = clock::now_rfc3339();
    for d in drafts {
        let (kind, source) = (d.kind, d.source);
        let (seq, to) = match state.lifecycle.admit(kind) {
            Ok(admitted) => admitted,
            Err(rejection) => {
                tracing::debug!(task_id = %state.record.task_id, kind = %kind, %rejection, "event refused by the state machine");
                continue;
            }
        };
        if to != state.record.status {
            transitions.push((state.record.status, to));
        }
        let r = &mut state.record;
        r.status = to;
        r.updated_at = now.clone();
        if let Some(e) = d.error {
            r.last_error = Some(e);
        }
        if let Some(remote) = d.remote {
            r.remote = Some(remote);
        }
        if let Some(artifact) = d.result {
            r.result_artifact_id = Some(artifact.meta.artifact_id.clone());
            artifacts.push(artifact);
        }
        if let Some(attempts) = d.attempts {
            r.attempts = attempts;
            r.remote = None;
        }
        if to.is_terminal() {
            r.attempts.next_retry_at = None;
        }
        if kind == EventKind::TaskCompleted {
            // An earlier attempt's failure no longer describes the task.
            r.last_error = None;
        }
        events.push(TaskEvent {
            event_id: ids::new_id(),
            task_id: r.task_id.clone(),
            seq,
            kind,
            state: to,
            source,
            message: Some(d.message).filter(|m| !m.is_empty()),
            data: d.data,
            created_at: now.clone(),
        });
    }
}

/// What follows a durable write: status changes counted, events logged and published, a
/// settled thread turn announced.
fn published(state: &TaskState, transitions: &[(TaskStatus, TaskStatus)], events: Vec<TaskEvent>) {
    record_transitions(&state.record, transitions);
    let target_id = state.record.resolved_agent_id.as_deref().unwrap_or("");
    for e in &events {
        tracing::debug!(
            actor_kind = "task", task_id = %e.task_id, target_id, seq = e.seq, kind = %e.kind, state = %e.state,
            source = %e.source, detail = e.message.as_deref().unwrap_or(""), "task event"
        );
        if e.state.is_terminal() {
            log_task_end(&state.record, e, target_id);
        }
    }
    let settled = events.iter().any(|e| e.state.is_terminal() || e.kind == EventKind::TaskAwaitingInput);
    let _ = state.deps.sse.cast(SseHubMsg::Publish {
        task_id: state.record.task_id.clone(),
        events: events.into_iter().map(Arc::new).collect(),
    });
    if settled && let Some(thread_id) = &state.record.thread_id {
        state.deps.turn_settled.send(TurnSettled {
            thread_id: thread_id.clone(),
            task_id: ids::TaskId::from(state.record.task_id.as_str()),
            status: state.record.status,
            reason: state.record.last_error.as_ref().map(|e| e.reason.clone()),
        });
    }
}

/// The one INFO line of a task: at its end, with its outcome, duration and event count.
fn log_task_end(record: &TaskRecord, last: &TaskEvent, target_id: &str) {
    let duration_ms = time::OffsetDateTime::parse(&record.created_at, &time::format_description::well_known::Rfc3339)
        .map(|created| (time::OffsetDateTime::now_utc() - created).whole_milliseconds().max(0))
        .unwrap_or(0) as u64;
    let reason = record.last_error.as_ref().map(|e| e.reason.to_string()).unwrap_or_default();
    let detail = record.last_error.as_ref().and_then(|e| e.detail.as_deref()).unwrap_or("");
    tracing::info!(
        actor_kind = "task", task_id = %record.task_id, target_id, status = %record.status, %reason,
        outcome = last.message.as_deref().unwrap_or(""), detail,
        duration_ms, events = last.seq, "task finished"
    );
}

/// A JSON artifact (payload or result), prepared before the write that records it.
async fn json_artifact(deps: &TaskDeps, value: &Value) -> Result<NewArtifact, TaskError> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    deps.artifacts.prepare(bytes, "application/json").await.map_err(|e| TaskError::Artifact(e.to_string()))
}

/// Persists a new task: the row, `task.created`, `task.routed` and the payload artifact, in one
/// transaction.
async fn create(state: &mut TaskState) -> Result<(), TaskError> {
    let payload = state.payload.clone().unwrap_or_else(|| json!({}));
    let artifact = json_artifact(&state.deps, &payload).await?;
    state.record.payload_artifact_id = Some(artifact.meta.artifact_id.clone());
    let mut routed_data = json!({
        "resolved_agent_id": state.record.resolved_agent_id,
        "runtime_options": state.record.runtime_options,
    });
    // A peer's target: the task is relayed (contract §9.6 step 2).
    let peer = state.target.as_ref().filter(|t| t.source == crate::model::TargetSource::Peer);
    let routed_message = match peer {
        Some(t) => {
            routed_data["remote_peer_id"] = json!(t.owner);
            "Remote route resolved"
        }
        None => "Route resolved",
    };
    let drafts = vec![
        draft(EventKind::TaskCreated, EventSource::Core, "Task created"),
        draft(EventKind::TaskRouted, EventSource::Core, routed_message).data(routed_data),
    ];
    persist(state, drafts, vec![artifact]).await
}

/// Asks the runtime supervisor for the target's runtime in a spawned task (a launch can take
/// long); the answer comes back as `Acquired` with this generation.
fn acquire_runtime(myself: &ActorRef<TaskMsg>, state: &TaskState) {
    let Some(target) = state.target.clone() else { return };
    let (me, generation, runtimes) = (myself.clone(), state.generation, state.deps.runtimes.clone());
    let waiter = Waiter {
        task: Some((myself.get_derived(), generation)),
        launch_if_down: state.record.delivery.launch_if_down,
        force: false,
    };
    let options = state.record.runtime_options.clone();
    tokio::spawn(async move {
        loop {
            let (target, options, waiter) = (Box::new(target.clone()), options.clone(), waiter.clone());
            let asked =
                runtimes.ask(ACQUIRE_TIMEOUT, |reply| RuntimeSupMsg::Acquire { target, options, waiter, reply }).await;
            let result = asked.unwrap_or_else(|e| Err(RuntimeError::Unavailable(e.to_string())));
            // A paused target answers now and then so no ask times out: the task keeps waiting.
            if matches!(result, Err(RuntimeError::Paused(_))) && me.get_status() == ractor::ActorStatus::Running {
                continue;
            }
            let _ = me.cast(TaskMsg::Acquired { generation, result });
            break;
        }
    });
}

async fn on_acquired(
    myself: &ActorRef<TaskMsg>,
    state: &mut TaskState,
    result: Result<RuntimeHandle, RuntimeError>,
) -> Result<(), TaskError> {
    if let Some(remote) = state.reattach.take() {
        return reattach(myself, state, result, remote).await;
    }
    let redispatch = std::mem::take(&mut state.redispatch);
    if state.lifecycle.status().is_terminal() || (state.lifecycle.status().is_dispatched() && !redispatch) {
        return Ok(());
    }
    let handle = match result {
        Ok(h) => h,
        Err(e) => {
            // A kind this node does not run is the node's finding, not a runtime's (contract §6.3).
            let source =
                if matches!(e, RuntimeError::AdapterMissing(_)) { EventSource::Core } else { EventSource::Runtime };
            let mut d = draft(EventKind::TaskFailed, source, e.reason().as_str()).data(json!({ "detail": e.detail() }));
            d.error = Some(LastError { reason: e.reason(), detail: Some(e.detail()) });
            return append(myself, state, vec![d]).await;
        }
    };
    let target_id = state.record.resolved_agent_id.clone().unwrap_or_default();
    let mut drafts = Vec::new();
    if state.lifecycle.status() != TaskStatus::Ready {
        let mut data = JsonObject::new();
        if let Some(id) = &handle.lease_id {
            data.insert("lease_id".into(), json!(id));
        }
        if let Some(pid) = handle.process_id {
            data.insert("pid".into(), json!(pid));
        }
        if let Some(ms) = handle.initialize_ms {
            data.insert("initialize_ms".into(), json!((ms * 1000.0).round() / 1000.0));
        }
        let data = Value::Object(data);
        drafts.push(draft(EventKind::RuntimeReady, EventSource::Runtime, "Runtime ready").data(data));
    }
    drafts.push(
        draft(EventKind::TaskDispatching, EventSource::Core, "Dispatching task")
            .data(json!({ "target_agent_id": target_id })),
    );
    // A relay to a peer that answers a submit sent again with the task it created (an
    // AethroLink node: `resubmit_safe`) is submitted at once and its dispatch is not written
    // before the relay's first answer: a crash before that write dispatches again on recovery,
    // and the destination answers with the task it has, so the task never runs twice. A Go peer
    // may not dedupe: its relay goes the ordinary way (written `dispatching` first; a crash
    // before its acceptance was recorded fails it `remote relay interrupted`).
    // An Aether worker is handed its task while `task.dispatching` is written: the hand-over is
    // the latency SDK creators see. A crash in between re-dispatches it on recovery (the worker
    // may get it twice: at least once, never lost).
    let (at_once, deferrable) = match state.target.as_ref() {
        Some(t) if t.source == crate::model::TargetSource::Peer && t.resubmit_safe => (true, true),
        Some(t) if t.source == crate::model::TargetSource::Aether => (true, false),
        _ => (false, false),
    };
    let handed = at_once && handle.session.send(SessionMsg::Submit(Box::new(dispatch_of(myself, state))));
    if at_once && !handed {
        let d = failed(
            FailureReason::SubmitFailed,
            "the runtime stopped before the task was handed to it",
            "submit_failed",
        );
        drafts.push(d);
    }
    if handed && deferrable {
        defer(myself, state, drafts);
    } else {
        append(myself, state, drafts).await?;
    }
    if state.lifecycle.status() != TaskStatus::Dispatching {
        return Ok(());
    }
    if let Some(ms) = state.record.delivery.timeout_ms {
        state.timers.arm(myself, state.generation, Deadline::Timeout, Duration::from_millis(ms));
    }
    if at_once {
        state.session = Some(handle.session);
        return Ok(());
    }
    let dispatch = dispatch_of(myself, state);
    if !handle.session.send(SessionMsg::Submit(Box::new(dispatch))) {
        return append(
            myself,
            state,
            vec![failed(
                FailureReason::SubmitFailed,
                "the runtime session stopped before the task was submitted",
                "submit_failed",
            )],
        )
        .await;
    }
    state.session = Some(handle.session);
    Ok(())
}

/// What the runtime needs to run this task.
fn dispatch_of(myself: &ActorRef<TaskMsg>, state: &TaskState) -> Dispatch {
    let r = &state.record;
    Dispatch {
        task_id: r.task_id.clone(),
        generation: state.generation,
        intent: r.intent.clone(),
        payload: state.payload.clone().unwrap_or_else(|| json!({})),
        runtime_options: r.runtime_options.clone(),
        thread_id: r.thread_id.clone(),
        conversation_id: r.conversation_id.clone(),
        priority: r.priority,
        attempt: r.attempts.attempt,
        sender: r.sender.clone(),
        target_id: r.resolved_agent_id.clone().unwrap_or_default(),
        delivery: r.delivery.clone(),
        // Stable per task (a relay submitted again after a restart must be the same request to
        // the destination's idempotency check): the caller's trace id, else the task's own id.
        trace_id: r.metadata.get("trace_id").and_then(Value::as_str).unwrap_or(&r.task_id).to_owned(),
        reply_to: myself.get_derived(),
    }
}

/// Restart recovery of a task whose remote run lives on: hand it to the runtime to follow.
async fn reattach(
    myself: &ActorRef<TaskMsg>,
    state: &mut TaskState,
    result: Result<RuntimeHandle, RuntimeError>,
    remote: RemoteRef,
) -> Result<(), TaskError> {
    if state.lifecycle.status().is_terminal() {
        return Ok(());
    }
    let handle = match result {
        Ok(h) => h,
        Err(e) => {
            let d = failed(
                FailureReason::Interrupted,
                format!("cannot re-attach after a node restart: {e}"),
                "Task interrupted by node restart",
            );
            return append(myself, state, vec![d]).await;
        }
    };
    let awaiting = state.lifecycle.status() == TaskStatus::AwaitingInput;
    if awaiting {
        // Resume validation needs to know what the pause is: a relayed one (the destination
        // checks the answer) or an HTTP agent's await request.
        let relayed = state.target.as_ref().is_some_and(|t| t.source == crate::model::TargetSource::Peer);
        state.awaiting = Some(if relayed { PendingInput::Relayed } else { PendingInput::AwaitRequest });
    }
    tracing::info!(actor_kind = "task", task_id = %state.record.task_id, run_id = remote.remote_execution_id.as_deref().unwrap_or(""), "re-attaching to the remote run after a node restart");
    let dispatch = dispatch_of(myself, state);
    if !handle.session.send(SessionMsg::Attach { dispatch: Box::new(dispatch), remote, awaiting }) {
        let d = failed(
            FailureReason::Interrupted,
            "the runtime stopped before the task could re-attach",
            "Task interrupted by node restart",
        );
        return append(myself, state, vec![d]).await;
    }
    state.session = Some(handle.session);
    Ok(())
}

async fn on_adapter_events(
    myself: &ActorRef<TaskMsg>,
    state: &mut TaskState,
    events: Vec<AdapterEvent>,
) -> Result<(), TaskError> {
    let mut drafts = Vec::with_capacity(events.len());
    for event in events {
        if let Some(d) = adapter_draft(state, event).await? {
            drafts.push(d);
        }
    }
    let generation = state.generation;
    append(myself, state, drafts).await?;
    // Not for an attempt that just ended (a retry moved the generation on).
    if generation == state.generation && !state.lifecycle.status().is_terminal() {
        on_progress(myself, state);
    }
    Ok(())
}

/// The event an adapter report becomes (`None` for reports that change no state).
async fn adapter_draft(state: &mut TaskState, event: AdapterEvent) -> Result<Option<Draft>, TaskError> {
    let d = match event {
        AdapterEvent::Submitted { binding, remote_execution_id, remote_session_id } => {
            let mut d = draft(EventKind::TaskDispatching, EventSource::Adapter, "Task submitted to runtime")
                .data(json!({ "binding": binding }));
            d.remote = Some(RemoteRef { binding, remote_execution_id, remote_session_id });
            d
        }
        AdapterEvent::Running { message, data } => {
            draft(EventKind::TaskRunning, EventSource::Adapter, message).data(Value::Object(data))
        }
        AdapterEvent::AwaitingInput { message, data, pending } => {
            state.awaiting = Some(pending);
            draft(EventKind::TaskAwaitingInput, EventSource::Adapter, message).data(Value::Object(data))
        }
        AdapterEvent::Resumed { message } => {
            state.awaiting = None;
            draft(EventKind::TaskResumed, EventSource::Adapter, message)
        }
        AdapterEvent::ResumeRefused { reason } => {
            tracing::warn!(task_id = %state.record.task_id, %reason, "runtime refused a resume");
            state.lifecycle.resume_refused();
            return Ok(None);
        }
        AdapterEvent::Completed { message, result } => {
            let artifact = json_artifact(&state.deps, &result).await?;
            let mut d =
                draft(EventKind::TaskCompleted, EventSource::Adapter, message).data(json!({ "result": result }));
            d.result = Some(artifact);
            d
        }
        AdapterEvent::Failed { reason, detail, message } => {
            let mut d = draft(EventKind::TaskFailed, EventSource::Adapter, message)
                .data(json!({ "reason": reason, "detail": detail }));
            d.error = Some(LastError { reason, detail });
            d
        }
        AdapterEvent::Cancelled { message } => draft(EventKind::TaskCancelled, EventSource::Adapter, message),
        AdapterEvent::Relayed { kind, message, data, remote } => {
            let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
            let mut d = draft(kind, EventSource::Transport, message);
            match kind {
                EventKind::TaskCompleted => {
                    let result = data.get("result").cloned().unwrap_or_else(|| json!({}));
                    d.result = Some(json_artifact(&state.deps, &result).await?);
                }
                EventKind::TaskFailed => {
                    let reason = text("reason").map_or(FailureReason::RemoteFailed, FailureReason::from);
                    d.error = Some(LastError { reason, detail: text("detail") });
                }
                // A resume is relayed to the destination, which checks it.
                EventKind::TaskAwaitingInput => state.awaiting = Some(PendingInput::Relayed),
                EventKind::TaskResumed => state.awaiting = None,
                _ => {}
            }
            d.remote = remote;
            d.data(Value::Object(data))
        }
    };
    Ok(Some(d))
}

async fn cancel(
    myself: &ActorRef<TaskMsg>,
    state: &mut TaskState,
    reason: Option<String>,
) -> Result<TaskStatus, TaskError> {
    let requested = || {
        let data = reason.as_ref().map_or_else(|| json!({}), |r| json!({ "reason": r }));
        draft(EventKind::TaskCancelRequested, EventSource::Api, "Cancel requested").data(data)
    };
    match state.lifecycle.plan_cancel() {
        CancelPlan::AlreadyTerminal(s) | CancelPlan::AlreadyRequested(s) => Ok(s),
        CancelPlan::Immediate => {
            let cancelled = draft(EventKind::TaskCancelled, EventSource::Core, "Task cancelled before dispatch");
            append(myself, state, vec![requested(), cancelled]).await?;
            Ok(state.lifecycle.status())
        }
        CancelPlan::ViaRuntime => {
            append(myself, state, vec![requested()]).await?;
            if let Some(session) = &state.session {
                session
                    .send(SessionMsg::Cancel { task_id: state.record.task_id.clone(), generation: state.generation });
            }
            let grace = state.deps.cancel_grace + CANCEL_BACKSTOP;
            state.timers.arm(myself, state.generation, Deadline::CancelGrace, grace);
            Ok(state.lifecycle.status())
        }
    }
}

async fn on_deadline(myself: &ActorRef<TaskMsg>, state: &mut TaskState, which: Deadline) -> Result<(), TaskError> {
    if state.lifecycle.status().is_terminal() {
        return Ok(());
    }
    // The attempt's session and generation, taken before the failure is appended: a retry
    // moves both on, and the runtime must be told to stop the attempt that timed out.
    let (session, generation, task_id) = (state.session.clone(), state.generation, state.record.task_id.clone());
    let stop_runtime = move || {
        if let Some(session) = session {
            session.send(SessionMsg::Cancel { task_id, generation });
        }
    };
    match which {
        Deadline::Flush => persist(state, Vec::new(), Vec::new()).await?,
        Deadline::Retry => on_retry_due(myself, state),
        Deadline::Timeout => {
            let ms = state.record.delivery.timeout_ms.unwrap_or_default();
            // Fail first: the runtime's cancel confirmation then finds the task terminal.
            append(
                myself,
                state,
                vec![failed(
                    FailureReason::Timeout,
                    format!("no result within delivery.timeout_ms = {ms}"),
                    format!("Task timed out after {ms} ms"),
                )],
            )
            .await?;
            stop_runtime();
        }
        Deadline::Bound(kind) => {
            let deadlines = state.record.attempts.deadlines;
            let ms = match kind {
                DeadlineKind::ScheduleToStart => deadlines.schedule_to_start_ms,
                DeadlineKind::StartToClose => deadlines.start_to_close_ms,
                DeadlineKind::Heartbeat => deadlines.heartbeat_timeout_ms,
            }
            .unwrap_or_default();
            let (detail, message) = match kind {
                DeadlineKind::ScheduleToStart => (
                    format!("the agent did not start the attempt within deadlines.schedule_to_start_ms = {ms}"),
                    format!("Attempt not started within {ms} ms"),
                ),
                DeadlineKind::StartToClose => (
                    format!("the attempt did not end within deadlines.start_to_close_ms = {ms} of its start"),
                    format!("Attempt did not finish within {ms} ms of its start"),
                ),
                DeadlineKind::Heartbeat => (
                    format!("no progress from the agent for deadlines.heartbeat_timeout_ms = {ms}"),
                    format!("No heartbeat for {ms} ms"),
                ),
            };
            append(myself, state, vec![failed(kind.reason(), detail, message)]).await?;
            stop_runtime();
        }
        Deadline::CancelGrace => {
            let grace = state.deps.cancel_grace + CANCEL_BACKSTOP;
            let d = draft(
                EventKind::TaskCancelled,
                EventSource::Core,
                format!("Runtime did not confirm the cancel within {} ms; cancelled by the node", grace.as_millis()),
            );
            append(myself, state, vec![d]).await?;
            stop_runtime();
        }
    }
    Ok(())
}

/// Continues a task loaded from storage. Tasks never handed to a runtime are dispatched again;
/// tasks an HTTP agent holds (`acp_http` with a known remote run) are re-attached to that run;
/// other tasks a runtime held cannot be resumed (loopback keeps nothing, a stdio prompt turn
/// dies with its connection), so they fail with `interrupted`.
/// What restart recovery does with a stored task. Decided by [`Recovery::of`], pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Already terminal: the actor just stops.
    Settled,
    /// Its target is no longer registered: fail `interrupted`.
    TargetGone,
    /// An HTTP agent holds its run (`acp_http` with a recorded run id), or a peer accepted its
    /// relay (the destination task id): follow that run again.
    Reattach(RemoteRef),
    /// Relayed to a peer that may not answer a repeated submit with the same task (a Go node),
    /// but the origin stopped before the destination said it accepted: fail `remote relay
    /// interrupted` (sending it again could run it twice).
    RelayUnconfirmed,
    /// A runtime held it and cannot resume it (loopback keeps nothing, a stdio prompt turn dies
    /// with its connection): fail `interrupted`.
    Interrupted,
    /// Never handed to a runtime: dispatch it again, first recording the route when creation
    /// did not get that far.
    Redispatch { record_route: bool },
}

impl Recovery {
    /// The decision for a task in `status` whose last event is `last_seq`, on `target` (`None`:
    /// it is gone), with the remote run it recorded. Pure.
    pub fn of(status: TaskStatus, last_seq: u64, target: Option<&TargetSpec>, remote: Option<&RemoteRef>) -> Recovery {
        if status.is_terminal() {
            return Recovery::Settled;
        }
        let Some(target) = target else { return Recovery::TargetGone };
        let adapter = target.adapter.as_str();
        let kind = adapter.parse::<AdapterKind>().ok();
        // Waiting in an agent session's queue (ACP stdio FIFO, HTTP scope): `dispatching` with
        // nothing submitted (a session records the agent's binding as it starts the turn). The
        // agent never saw it: dispatch it again.
        // An `aether` task waiting for a worker is the same: no worker has it yet.
        let queued = status == TaskStatus::Dispatching
            && remote.is_none()
            && matches!(kind, Some(AdapterKind::Acp | AdapterKind::AcpHttp | AdapterKind::Aether));
        if queued {
            return Recovery::Redispatch { record_route: false };
        }
        if status.is_dispatched() {
            if kind == Some(AdapterKind::Aether) {
                // A worker holds it and reports on it when it reconnects; its hand-over named it.
                return match remote.filter(|r| r.remote_session_id.is_some()) {
                    Some(held) => Recovery::Reattach(held.clone()),
                    None => Recovery::Redispatch { record_route: false },
                };
            }
            if kind == Some(AdapterKind::Peer) {
                // A relay: the destination holds the task once it accepted (its task id is
                // the remote binding); before that, whether it got the task is unknown, and
                // only a peer that answers a repeated submit with the same task may be asked
                // again (it then answers with the task it has, if it has one).
                return match remote.filter(|r| !r.binding.is_empty()) {
                    Some(relay) => Recovery::Reattach(relay.clone()),
                    None if target.resubmit_safe => Recovery::Redispatch { record_route: false },
                    None => Recovery::RelayUnconfirmed,
                };
            }
            let http_run = remote
                .filter(|r| r.binding == crate::runtime::http::BINDING && r.remote_execution_id.is_some())
                .filter(|_| kind == Some(AdapterKind::AcpHttp));
            return match http_run {
                Some(run) => Recovery::Reattach(run.clone()),
                None => Recovery::Interrupted,
            };
        }
        // `task.created` and `task.routed` are written together; a task with fewer events
        // never finished creation.
        Recovery::Redispatch { record_route: last_seq < 2 }
    }
}

/// Continues a task loaded from storage as [`Recovery::of`] decides.
async fn recover(myself: &ActorRef<TaskMsg>, state: &mut TaskState) -> Result<(), TaskError> {
    let status = state.lifecycle.status();
    let adapter = state.target.as_ref().map(|t| t.adapter.clone());
    match Recovery::of(status, state.lifecycle.last_seq(), state.target.as_ref(), state.record.remote.as_ref()) {
        Recovery::Settled => {
            myself.stop(Some("already terminal".into()));
            Ok(())
        }
        Recovery::TargetGone => {
            let target = state.record.resolved_agent_id.clone().unwrap_or_default();
            let d = failed(
                FailureReason::Interrupted,
                format!("target '{target}' is no longer registered"),
                "Task interrupted by node restart: its target is gone",
            );
            append(myself, state, vec![d]).await
        }
        Recovery::Interrupted => {
            let d = failed(
                FailureReason::Interrupted,
                format!(
                    "the {} runtime cannot resume a task after a node restart (was {status})",
                    adapter.unwrap_or_default()
                ),
                "Task interrupted by node restart",
            );
            append(myself, state, vec![d]).await
        }
        Recovery::RelayUnconfirmed => {
            let d = failed(
                FailureReason::RemoteRelayInterrupted,
                "origin node restarted before the destination confirmed it accepted the task",
                "Remote relay interrupted by origin restart",
            );
            append(myself, state, vec![d]).await
        }
        Recovery::Reattach(run) => {
            if !load_payload_or_fail(myself, state).await? {
                return Ok(());
            }
            state.reattach = Some(run);
            tracing::info!(actor_kind = "task", task_id = %state.record.task_id, status = %status, "recovered task re-attaches to its remote run");
            // The agent had started it: its start-to-close bound goes on with what is left,
            // the heartbeat starts afresh.
            on_progress(myself, state);
            acquire_runtime(myself, state);
            Ok(())
        }
        Recovery::Redispatch { record_route } => {
            if record_route {
                let data = json!({ "resolved_agent_id": state.record.resolved_agent_id, "runtime_options": state.record.runtime_options });
                let routed = draft(EventKind::TaskRouted, EventSource::Core, "Route resolved").data(data);
                append(myself, state, vec![routed]).await?;
            }
            if !load_payload_or_fail(myself, state).await? {
                return Ok(());
            }
            state.redispatch = status.is_dispatched();
            // A retry that was waiting for its delay: re-armed with what is left of it.
            if let Some(due) = state.record.attempts.next_retry_at.clone() {
                let left = retry_delay_left(&due, time::OffsetDateTime::now_utc());
                tracing::info!(actor_kind = "task", task_id = %state.record.task_id, attempt = state.record.attempts.attempt, delay_ms = left.as_millis() as u64, "recovered task's retry re-armed");
                state.timers.arm(myself, state.generation, Deadline::Retry, left);
                return Ok(());
            }
            tracing::info!(actor_kind = "task", task_id = %state.record.task_id, status = %status, "recovered task resumes dispatch");
            arm_schedule_to_start(myself, state);
            acquire_runtime(myself, state);
            Ok(())
        }
    }
}

/// What is left of a retry delay due at `due` (RFC 3339) at `now`: nothing once due, or if `due`
/// is unreadable. Pure.
pub fn retry_delay_left(due: &str, now: time::OffsetDateTime) -> Duration {
    let Ok(due) = time::OffsetDateTime::parse(due, &time::format_description::well_known::Rfc3339) else {
        return Duration::ZERO;
    };
    Duration::from_millis((due - now).whole_milliseconds().max(0) as u64)
}

/// Loads the payload for a recovered task; an unreadable one fails the task `interrupted`
/// (`false`: the task is failed, nothing more to do).
async fn load_payload_or_fail(myself: &ActorRef<TaskMsg>, state: &mut TaskState) -> Result<bool, TaskError> {
    match load_payload(state).await {
        Ok(p) => {
            state.payload = Some(p);
            Ok(true)
        }
        Err(detail) => {
            let d = failed(FailureReason::Interrupted, detail, "Task interrupted by node restart: payload unreadable");
            append(myself, state, vec![d]).await?;
            Ok(false)
        }
    }
}

async fn load_payload(state: &TaskState) -> Result<Value, String> {
    let Some(id) = state.record.payload_artifact_id.as_deref() else { return Ok(json!({})) };
    let (_, body) = state
        .deps
        .reader
        .artifact(id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("payload artifact {id} missing"))?;
    let bytes = state.deps.artifacts.read(body).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("payload artifact {id}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> JsonObject {
        match v {
            Value::Object(o) => o,
            _ => JsonObject::new(),
        }
    }

    #[test]
    fn recovery_decisions() {
        use TaskStatus::*;
        let run = RemoteRef {
            binding: crate::runtime::http::BINDING.into(),
            remote_execution_id: Some("run-1".into()),
            remote_session_id: None,
        };
        let no_run_id = RemoteRef { remote_execution_id: None, ..run.clone() };
        let stdio = RemoteRef { binding: "acp".into(), ..run.clone() };
        let relay = RemoteRef { binding: "destination-task".into(), ..RemoteRef::default() };
        let held = RemoteRef {
            binding: "aether".into(),
            remote_execution_id: None,
            remote_session_id: Some("ag::ws::worker::a".into()),
        };
        type Case<'a> = (TaskStatus, u64, Option<&'a str>, Option<&'a RemoteRef>, Recovery);
        let cases: Vec<Case<'_>> = vec![
            (Completed, 9, Some("loopback"), None, Recovery::Settled),
            (Cancelled, 3, None, None, Recovery::Settled),
            (Running, 5, None, None, Recovery::TargetGone),
            (Created, 1, Some("loopback"), None, Recovery::Redispatch { record_route: true }),
            (Created, 2, Some("acp"), None, Recovery::Redispatch { record_route: false }),
            (PendingLaunch, 3, Some("acp"), None, Recovery::Redispatch { record_route: false }),
            (Ready, 5, Some("acp_http"), None, Recovery::Redispatch { record_route: false }),
            (Dispatching, 6, Some("loopback"), None, Recovery::Interrupted),
            // Queued in a session, never submitted to the agent: dispatched again.
            (Dispatching, 4, Some("acp"), None, Recovery::Redispatch { record_route: false }),
            (Dispatching, 4, Some("acp_http"), None, Recovery::Redispatch { record_route: false }),
            (Dispatching, 7, Some("acp"), Some(&stdio), Recovery::Interrupted),
            (Running, 7, Some("acp"), None, Recovery::Interrupted),
            (Running, 7, Some("acp"), Some(&stdio), Recovery::Interrupted),
            (Running, 7, Some("acp_http"), Some(&run), Recovery::Reattach(run.clone())),
            (AwaitingInput, 8, Some("acp_http"), Some(&run), Recovery::Reattach(run.clone())),
            (Running, 7, Some("acp_http"), Some(&no_run_id), Recovery::Interrupted),
            (Running, 7, Some("acp"), Some(&run), Recovery::Interrupted),
            (Running, 9, Some("peer"), Some(&relay), Recovery::Reattach(relay.clone())),
            (AwaitingInput, 9, Some("peer"), Some(&relay), Recovery::Reattach(relay.clone())),
            (Dispatching, 6, Some("peer"), None, Recovery::RelayUnconfirmed),
            // `peer+`: a peer that answers a repeated submit with the task it created.
            (Dispatching, 6, Some("peer+"), None, Recovery::Redispatch { record_route: false }),
            (Running, 9, Some("peer+"), Some(&relay), Recovery::Reattach(relay.clone())),
            (Ready, 5, Some("peer"), None, Recovery::Redispatch { record_route: false }),
            (Completed, 9, Some("peer"), Some(&relay), Recovery::Settled),
            // An Aether pool task no worker took yet waits again; one a worker holds is its.
            (Dispatching, 4, Some("aether"), None, Recovery::Redispatch { record_route: false }),
            (Running, 6, Some("aether"), Some(&held), Recovery::Reattach(held.clone())),
        ];
        for (status, last_seq, adapter, remote, want) in cases {
            let target = adapter.map(|a| TargetSpec {
                resubmit_safe: a.ends_with('+'),
                ..TargetSpec::new("t", a.trim_end_matches('+'))
            });
            let decided = Recovery::of(status, last_seq, target.as_ref(), remote);
            assert_eq!(decided, want, "{status} {adapter:?} {remote:?}");
        }
    }

    #[test]
    fn a_resume_is_checked_against_what_is_pending() {
        let options =
            vec![json!({"optionId": "yes", "kind": "allow_once"}), json!({"optionId": "no", "kind": "reject_once"})];
        let permission = PendingInput::Permission { options };
        type Case<'a> = (Option<&'a PendingInput>, Value, Result<Value, &'a str>);
        let cases: Vec<Case<'_>> = vec![
            (Some(&permission), json!({"decision": "allow"}), Ok(json!({"decision": "allow", "option_id": "yes"}))),
            (Some(&permission), json!({"option_id": "no"}), Ok(json!({"option_id": "no"}))),
            (Some(&permission), json!({"option_id": "maybe"}), Err("option_id 'maybe' is not offered")),
            (Some(&permission), json!({"text": "sure"}), Err("resume needs \"option_id\"")),
            (Some(&PendingInput::AwaitRequest), json!({"text": "yes"}), Ok(json!({"text": "yes"}))),
            (Some(&PendingInput::AwaitRequest), json!({"other": 1}), Err("")),
            (Some(&PendingInput::Structured), json!({"text": "yes"}), Err("structured event")),
            (Some(&PendingInput::Free), json!({"anything": [1]}), Ok(json!({"anything": [1]}))),
            (None, json!({}), Ok(json!({}))),
        ];
        for (pending, payload, want) in cases {
            let got = checked_resume(pending, obj(payload.clone())).map(Value::Object);
            match want {
                Ok(v) => assert_eq!(got, Ok(v), "{pending:?} {payload}"),
                Err(part) => {
                    assert!(matches!(&got, Err(m) if m.contains(part)), "{pending:?} {payload}: {got:?}")
                }
            }
        }
    }
}
