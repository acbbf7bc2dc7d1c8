//! The HTTP session actor of adapter `acp_http`: one per sticky scope (conversation, thread or
//! explicit `session_id`) of an HTTP runtime, so tasks of one conversation run in order and reuse
//! the server's session. The runtime actor in [`crate::runtime::acp`] owns the process (or, for
//! `launch.mode: external`, only the health check) and creates these.
//!
//! All IO runs in a spawned *follower* task per remote request ([`super::follow`]) that casts
//! what it reads back stamped with the turn it belongs to; a message for another turn is
//! dropped. What the session keeps of its work is the shared [`SessionQueue`]. A stream that ends without the run ending is not a
//! failure: the follower re-syncs from `GET /runs/{id}` and `GET /runs/{id}/events` and keeps
//! following, failing the task only if the run is gone or stays unreachable past the bound.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::follow::{Follow, Remote};
use super::replay::{Replayed, replay};
use crate::clock;
use crate::model::{FailureReason, JsonObject, RemoteRef};
use crate::port::{AdapterEvent, Dispatch};
use crate::runtime::RuntimeDeps;
use crate::runtime::acp::AcpMsg;
use crate::runtime::coalesce::{Next, TextCoalescer, text_event};
use crate::runtime::http::{self, BINDING, HttpDialect, HttpTarget, PollTracker, RunOutcome, RunTracker};
use crate::runtime::queue::{SessionQueue, Turn as QueueTurn};
use crate::runtime::sessions::{binding_is_fresh, cancel_queued, emit, runtime_gone};
use crate::storage::{SessionBindingRecord, WriteOp};

/// Messages of an HTTP session actor.
pub enum HttpSessionMsg {
    Submit(Box<Dispatch>),
    /// The target was resumed after a pause: start the queued tasks.
    Resumed,
    /// Follow a run submitted before a node restart (`awaiting`: the task waits for input).
    Attach {
        dispatch: Box<Dispatch>,
        remote: RemoteRef,
        awaiting: bool,
    },
    Resume {
        task_id: String,
        generation: u64,
        payload: JsonObject,
    },
    Cancel {
        task_id: String,
        generation: u64,
    },
    /// What a follower of `turn` read.
    Remote {
        turn: u64,
        item: Remote,
    },
    /// Emit coalesced text for `turn`.
    Flush {
        turn: u64,
    },
    /// The cancel bound for `turn` elapsed.
    CancelDeadline {
        turn: u64,
    },
    /// The server process is gone.
    RuntimeExited {
        reason: String,
    },
    /// No task of this scope is left: stop (the runtime remembers the session id).
    Retire,
}

/// Arguments of an HTTP session actor.
pub struct HttpSessionArgs {
    /// The runtime actor: turn ends, bound session ids and re-queued work go back to it.
    pub runtime: ActorRef<AcpMsg>,
    /// Where the server is and how to reach it (client, dialect).
    pub target: Arc<HttpTarget>,
    /// The scope this session serves (the persisted binding's key).
    pub sticky: String,
    /// The server's session for this scope, if one is known.
    pub session_id: Option<String>,
    /// Storage (bindings), reads (bindings), the cancel grace.
    pub deps: Arc<RuntimeDeps>,
}

/// The task being run.
struct HttpTurn {
    id: u64,
    dispatch: Dispatch,
    /// Headers of this task's requests (`runtime_options.headers`).
    headers: HeaderMap,
    /// `acp` dialect: the run as its events describe it.
    run: RunTracker,
    /// `polling` dialect: last status seen.
    poll: PollTracker,
    /// `Submitted` was reported.
    submitted: bool,
    /// Text not yet streamed as an event.
    stream: TextCoalescer,
    cancel_requested: bool,
    /// The follower doing this turn's IO; aborted when the turn ends.
    follower: Option<JoinHandle<()>>,
}

impl HttpTurn {
    fn run_id(&self) -> Option<String> {
        self.run.run_id.clone()
    }
}

impl QueueTurn for HttpTurn {
    type Work = Dispatch;
    fn work(&self) -> &Dispatch {
        &self.dispatch
    }
}

/// State of an HTTP session actor.
pub struct HttpSessionState {
    /// What the session was created with (fixed for its life).
    args: HttpSessionArgs,
    /// The server's session id for this scope (reused by every task of it).
    session_id: Option<String>,
    /// Tasks waiting for the current one (creation order) and the task being run; follower
    /// messages of other turns are dropped.
    work: SessionQueue<HttpTurn>,
    /// Its target is paused and a watcher will cast `Resumed` once it is not: queued tasks wait.
    held: bool,
}

/// One HTTP session (sticky scope).
pub struct HttpSession;

impl HttpSession {
    fn follow(state: &HttpSessionState, myself: &ActorRef<HttpSessionMsg>) -> Option<Follow> {
        let t = state.work.current()?;
        Some(Follow {
            target: state.args.target.clone(),
            headers: t.headers.clone(),
            me: myself.clone(),
            turn: t.id,
            bound: http::resync_bound(&t.dispatch.runtime_options),
        })
    }

    /// Headers of a task's requests (`runtime_options.headers`, target defaults merged in).
    fn headers_of(d: &Dispatch) -> Result<HeaderMap, String> {
        http::header_map(d.runtime_options.get("headers")).map_err(|e| format!("runtime_options.{e}"))
    }

    fn new_turn(state: &mut HttpSessionState, dispatch: Dispatch, headers: HeaderMap) -> u64 {
        state.work.begin(|id| HttpTurn {
            id,
            dispatch,
            headers,
            run: RunTracker::default(),
            poll: PollTracker::default(),
            submitted: false,
            stream: TextCoalescer::default(),
            cancel_requested: false,
            follower: None,
        })
    }

    fn start_next(myself: &ActorRef<HttpSessionMsg>, state: &mut HttpSessionState) {
        if state.held {
            return;
        }
        // An operator paused the target: queued tasks wait, the running one has finished.
        let target_id = &state.args.target.target_id;
        if state.work.would_start() && state.args.deps.pauses.is_paused(target_id) {
            state.held = true;
            let (pauses, target, me) = (state.args.deps.pauses.clone(), target_id.clone(), myself.clone());
            tokio::spawn(async move {
                pauses.resumed(target).await;
                let _ = me.cast(HttpSessionMsg::Resumed);
            });
            return;
        }
        while let Some(dispatch) = state.work.next_to_start() {
            let explicit = http::explicit_session(&dispatch.runtime_options);
            if explicit.is_some() {
                state.session_id = explicit;
            }
            let body = match state.args.target.dialect {
                HttpDialect::Acp => http::agent_name(&dispatch)
                    .map(|name| http::acp_run_body(&dispatch, &name, state.session_id.as_deref())),
                HttpDialect::Polling => Ok(http::polling_run_body(&dispatch)),
            };
            let body = match body {
                Ok(b) => b,
                Err(detail) => {
                    Self::refuse(state, dispatch, FailureReason::SubmitFailed, detail);
                    continue;
                }
            };
            match Self::headers_of(&dispatch) {
                Ok(headers) => Self::new_turn(state, dispatch, headers),
                Err(detail) => {
                    Self::refuse(state, dispatch, FailureReason::SubmitFailed, detail);
                    continue;
                }
            };
            let Some(f) = Self::follow(state, myself) else { return };
            let task = match state.args.target.dialect {
                HttpDialect::Acp => tokio::spawn(f.acp_submit(body)),
                HttpDialect::Polling => tokio::spawn(f.polling_submit(body)),
            };
            if let Some(t) = state.work.current_mut() {
                t.follower = Some(task);
            }
        }
    }

    /// Fails a task that could not be submitted.
    fn refuse(state: &HttpSessionState, d: Dispatch, reason: FailureReason, detail: String) {
        emit(
            &d,
            vec![AdapterEvent::Failed {
                reason,
                detail: Some(detail.clone()),
                message: format!("Submit failed: {detail}"),
            }],
        );
        let _ = state.args.runtime.cast(AcpMsg::TurnEnded { task_id: d.task_id });
    }

    fn flush(state: &mut HttpSessionState) {
        if let Some(t) = state.work.current_mut()
            && let Some(text) = t.stream.take(Instant::now())
        {
            emit(&t.dispatch, vec![text_event(text)]);
        }
    }

    fn end_turn(myself: &ActorRef<HttpSessionMsg>, state: &mut HttpSessionState, events: Vec<AdapterEvent>) {
        Self::flush(state);
        if let Some(t) = state.work.finish() {
            if let Some(f) = t.follower {
                f.abort();
            }
            emit(&t.dispatch, events);
            let _ = state.args.runtime.cast(AcpMsg::TurnEnded { task_id: t.dispatch.task_id.clone() });
        }
        Self::start_next(myself, state);
    }

    /// Records the server's session for this scope (runtime memory + durable binding).
    fn bind_session(state: &mut HttpSessionState, session_id: &str) {
        if state.session_id.as_deref() == Some(session_id) {
            return;
        }
        state.session_id = Some(session_id.to_owned());
        let _ = state
            .args
            .runtime
            .cast(AcpMsg::SessionBound { sticky: state.args.sticky.clone(), session_id: session_id.to_owned() });
        state.args.deps.write_in_background(WriteOp::SessionBinding(Box::new(SessionBindingRecord {
            target_id: state.args.target.target_id.clone(),
            subcontext_key: "default".into(),
            sticky_key: state.args.sticky.clone(),
            adapter: BINDING.into(),
            remote_session_id: session_id.to_owned(),
            metadata_json: json!({ "endpoint": state.args.target.endpoint }).to_string(),
            at: clock::now_rfc3339(),
        })));
    }

    /// Turns what the server reported into task events.
    fn apply(myself: &ActorRef<HttpSessionMsg>, state: &mut HttpSessionState, outcomes: Vec<RunOutcome>) {
        for outcome in outcomes {
            match outcome {
                RunOutcome::Bound { run_id, session_id } => {
                    if let Some(sid) = &session_id {
                        Self::bind_session(state, sid);
                    }
                    let Some(t) = state.work.current_mut() else { return };
                    if !t.submitted {
                        t.submitted = true;
                        emit(
                            &t.dispatch,
                            vec![
                                AdapterEvent::Submitted {
                                    binding: BINDING.into(),
                                    remote_execution_id: Some(run_id.clone()),
                                    remote_session_id: session_id.clone(),
                                },
                                AdapterEvent::Running {
                                    message: "HTTP agent accepted the task".into(),
                                    data: [
                                        ("run_id".to_owned(), json!(run_id)),
                                        ("session_id".to_owned(), json!(session_id)),
                                        ("sticky_key".to_owned(), json!(state.args.sticky)),
                                    ]
                                    .into_iter()
                                    .collect(),
                                },
                            ],
                        );
                    }
                }
                RunOutcome::Text(text) => {
                    let Some(t) = state.work.current_mut() else { return };
                    match t.stream.push(&text, Instant::now()) {
                        Next::FlushNow => Self::flush(state),
                        Next::FlushIn(wait) => {
                            let turn = t.id;
                            myself.send_after(wait, move || HttpSessionMsg::Flush { turn });
                        }
                        Next::Wait => {}
                    }
                }
                RunOutcome::Progress { message, data } => {
                    Self::flush(state);
                    if let Some(t) = state.work.current() {
                        emit(&t.dispatch, vec![AdapterEvent::Running { message, data }]);
                    }
                }
                RunOutcome::Awaiting { message, data, pending } => {
                    Self::flush(state);
                    if let Some(t) = state.work.current() {
                        emit(&t.dispatch, vec![AdapterEvent::AwaitingInput { message, data, pending }]);
                    }
                }
                RunOutcome::Completed { result } => {
                    return Self::end_turn(
                        myself,
                        state,
                        vec![AdapterEvent::Completed { message: "HTTP agent completed the task".into(), result }],
                    );
                }
                RunOutcome::Failed { code, message } => {
                    return Self::end_turn(
                        myself,
                        state,
                        vec![AdapterEvent::Failed {
                            reason: code.into(),
                            detail: Some(message.clone()),
                            message: format!("HTTP agent failed the task: {message}"),
                        }],
                    );
                }
                RunOutcome::Cancelled => {
                    return Self::end_turn(
                        myself,
                        state,
                        vec![AdapterEvent::Cancelled { message: "HTTP agent cancelled the run".into() }],
                    );
                }
            }
        }
    }

    /// Re-attach: the run's history rebuilds the tracker; only where it stands now is reported.
    fn replay(myself: &ActorRef<HttpSessionMsg>, state: &mut HttpSessionState, events: Vec<Value>) {
        let Some(t) = state.work.current_mut() else { return };
        let dispatch = t.dispatch.clone();
        match replay(&mut t.run, &events) {
            Replayed::StillAwaiting => {}
            Replayed::Now(outcome) => Self::apply(myself, state, vec![outcome]),
            Replayed::ResumedMeanwhile => emit(
                &dispatch,
                vec![AdapterEvent::Resumed { message: "The remote run was resumed before the node restarted".into() }],
            ),
            Replayed::Running { data } => emit(
                &dispatch,
                vec![AdapterEvent::Running {
                    message: "Re-attached to the remote run after a node restart".into(),
                    data,
                }],
            ),
        }
    }

    fn send_cancel(myself: &ActorRef<HttpSessionMsg>, state: &mut HttpSessionState) {
        let Some(f) = Self::follow(state, myself) else { return };
        let Some(t) = state.work.current_mut() else { return };
        let Some(run_id) = t.run_id() else { return };
        tokio::spawn(f.clone().cancel(run_id.clone()));
        // A paused run has no follower; watch it for its cancellation.
        if state.args.target.dialect == HttpDialect::Acp && t.follower.as_ref().is_none_or(JoinHandle::is_finished) {
            let offset = t.run.events_seen;
            t.follower = Some(tokio::spawn(async move { f.resync(&run_id, offset).await }));
        }
    }
}

impl Actor for HttpSession {
    type Msg = HttpSessionMsg;
    type State = HttpSessionState;
    type Arguments = HttpSessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<HttpSessionMsg>,
        args: HttpSessionArgs,
    ) -> Result<HttpSessionState, ActorProcessingErr> {
        let session_id = args.session_id.clone();
        Ok(HttpSessionState { args, session_id, work: SessionQueue::default(), held: false })
    }

    async fn post_start(
        &self,
        myself: ActorRef<HttpSessionMsg>,
        state: &mut HttpSessionState,
    ) -> Result<(), ActorProcessingErr> {
        // A conversation continued after a node restart reuses the session the server gave it
        // (external servers keep theirs); read once, before the first task runs.
        if state.session_id.is_none() {
            let a = &state.args;
            if let Ok(Some((sid, last))) =
                a.deps.reader.session_binding(&a.target.target_id, "default", &a.sticky).await
                && binding_is_fresh(&last, time::OffsetDateTime::now_utc())
            {
                state.session_id = Some(sid);
            }
        }
        Self::start_next(&myself, state);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<HttpSessionMsg>,
        state: &mut HttpSessionState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(f) = state.work.current_mut().and_then(|t| t.follower.take()) {
            f.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<HttpSessionMsg>,
        msg: HttpSessionMsg,
        state: &mut HttpSessionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HttpSessionMsg::Resumed => {
                state.held = false;
                Self::start_next(&myself, state);
            }
            HttpSessionMsg::Submit(d) => {
                state.work.push(*d);
                Self::start_next(&myself, state);
            }
            HttpSessionMsg::Attach { dispatch, remote, awaiting } => {
                if let Some(sid) = &remote.remote_session_id {
                    state.session_id = Some(sid.clone());
                }
                let Some(run_id) = remote.remote_execution_id.clone() else { return Ok(()) };
                let dispatch = *dispatch;
                match Self::headers_of(&dispatch) {
                    Ok(headers) => Self::new_turn(state, dispatch, headers),
                    Err(detail) => {
                        Self::refuse(state, dispatch, FailureReason::Interrupted, detail);
                        return Ok(());
                    }
                };
                let Some(f) = Self::follow(state, &myself) else { return Ok(()) };
                let Some(t) = state.work.current_mut() else { return Ok(()) };
                t.submitted = true;
                t.run.run_id = Some(run_id.clone());
                t.run.session_id = remote.remote_session_id.clone();
                t.poll.status = Some(if awaiting { "awaiting_input" } else { "running" }.to_owned());
                t.follower = Some(match state.args.target.dialect {
                    HttpDialect::Acp => tokio::spawn(f.acp_reattach(run_id)),
                    HttpDialect::Polling => {
                        if !awaiting {
                            emit(
                                &t.dispatch,
                                vec![AdapterEvent::Running {
                                    message: "Re-attached to the remote run after a node restart".into(),
                                    data: [("run_id".to_owned(), json!(run_id))].into_iter().collect(),
                                }],
                            );
                        }
                        tokio::spawn(async move { f.poll(&run_id).await })
                    }
                });
                if awaiting {
                    // Remembered for the replay: a paused task is not re-announced.
                    if let Some(t) = state.work.current_mut() {
                        t.run.status = Some("awaiting".into());
                    }
                }
            }
            HttpSessionMsg::Remote { turn, item } if state.work.current().is_some_and(|t| t.id == turn) => match item {
                Remote::Accepted { run_id, session_id } => {
                    let dialect = state.args.target.dialect;
                    let Some(t) = state.work.current_mut() else { return Ok(()) };
                    if t.run.run_id.is_none() {
                        t.run.run_id = run_id.clone();
                    }
                    if dialect == HttpDialect::Polling
                        && let Some(run_id) = run_id
                    {
                        Self::apply(&myself, state, vec![RunOutcome::Bound { run_id, session_id }]);
                    }
                    if state.work.current().is_some_and(|t| t.cancel_requested) {
                        Self::send_cancel(&myself, state);
                    }
                }
                Remote::Rejected { code, message } => {
                    Self::end_turn(
                        &myself,
                        state,
                        vec![AdapterEvent::Failed {
                            reason: code.into(),
                            detail: Some(message.clone()),
                            message: format!("Submit failed: {message}"),
                        }],
                    );
                }
                Remote::Event(event) => {
                    let Some(t) = state.work.current_mut() else { return Ok(()) };
                    let was_bound = t.run.run_id.is_some();
                    let outcomes = t.run.apply(&event);
                    let cancel_now = !was_bound && t.run.run_id.is_some() && t.cancel_requested;
                    Self::apply(&myself, state, outcomes);
                    if cancel_now {
                        Self::send_cancel(&myself, state);
                    }
                }
                Remote::Replay(events) => Self::replay(&myself, state, events),
                Remote::Snapshot(run) => {
                    let Some(t) = state.work.current_mut() else { return Ok(()) };
                    let outcomes = t.poll.apply(&run);
                    Self::apply(&myself, state, outcomes);
                }
                Remote::Resumed => {
                    if let Some(t) = state.work.current() {
                        emit(&t.dispatch, vec![AdapterEvent::Resumed { message: "Run resumed".into() }]);
                    }
                }
                Remote::ResumeRefused(reason) => {
                    if let Some(t) = state.work.current() {
                        emit(&t.dispatch, vec![AdapterEvent::ResumeRefused { reason }]);
                    }
                }
                Remote::StreamDropped(detail) => {
                    tracing::warn!(target_id = %state.args.target.target_id, sticky = %state.args.sticky, %detail, "run stream dropped; re-syncing from the run's events");
                    Self::flush(state);
                    if let Some(t) = state.work.current() {
                        emit(
                            &t.dispatch,
                            vec![AdapterEvent::Running {
                                message: "Event stream dropped; re-syncing from the run's history".into(),
                                data: [("detail".to_owned(), json!(detail)), ("run_id".to_owned(), json!(t.run_id()))]
                                    .into_iter()
                                    .collect(),
                            }],
                        );
                    }
                }
                Remote::Lost { reason, detail } => {
                    let cancelled = state.work.current().is_some_and(|t| t.cancel_requested);
                    let event = if cancelled {
                        AdapterEvent::Cancelled {
                            message: format!("Cancelled; the remote run is unavailable ({detail})"),
                        }
                    } else {
                        AdapterEvent::Failed {
                            reason,
                            detail: Some(detail.clone()),
                            message: format!("Lost the remote run: {detail}"),
                        }
                    };
                    Self::end_turn(&myself, state, vec![event]);
                }
            },
            HttpSessionMsg::Remote { .. } => {}
            HttpSessionMsg::Resume { task_id, generation, payload } => {
                let dialect = state.args.target.dialect;
                let follow = Self::follow(state, &myself);
                let Some(t) = state
                    .work
                    .current_mut()
                    .filter(|t| t.dispatch.task_id == task_id && t.dispatch.generation == generation)
                else {
                    tracing::debug!(%task_id, "resume for a task this session does not run");
                    return Ok(());
                };
                let (Some(run_id), Some(f)) = (t.run_id(), follow) else {
                    emit(&t.dispatch, vec![AdapterEvent::ResumeRefused { reason: "the run has no id yet".into() }]);
                    return Ok(());
                };
                match dialect {
                    HttpDialect::Acp => match http::resume_message(&payload) {
                        Ok(message) => {
                            if let Some(old) = t.follower.take() {
                                old.abort();
                            }
                            let offset = t.run.events_seen;
                            t.follower = Some(tokio::spawn(f.acp_resume(run_id, message, offset)));
                        }
                        Err(reason) => emit(&t.dispatch, vec![AdapterEvent::ResumeRefused { reason }]),
                    },
                    HttpDialect::Polling => {
                        tokio::spawn(f.polling_resume(run_id, payload));
                    }
                }
            }
            HttpSessionMsg::Cancel { task_id, generation: _ } => {
                if cancel_queued(&mut state.work, &task_id, &state.args.runtime) {
                    return Ok(());
                }
                let Some(t) = state.work.current_mut().filter(|t| t.dispatch.task_id == task_id) else { return Ok(()) };
                if t.cancel_requested {
                    return Ok(());
                }
                t.cancel_requested = true;
                let turn = t.id;
                // Without a run id yet, the cancel is sent as soon as the run is bound.
                Self::send_cancel(&myself, state);
                let grace = state.args.deps.cancel_grace;
                myself.send_after(grace, move || HttpSessionMsg::CancelDeadline { turn });
            }
            HttpSessionMsg::CancelDeadline { turn } => {
                if state.work.current().is_some_and(|t| t.id == turn) {
                    tracing::warn!(target_id = %state.args.target.target_id, sticky = %state.args.sticky, "the server did not confirm a cancel in time");
                    let grace = state.args.deps.cancel_grace;
                    Self::end_turn(
                        &myself,
                        state,
                        vec![AdapterEvent::Cancelled {
                            message: format!(
                                "Cancelled; the server did not confirm the run's cancellation within {} ms",
                                grace.as_millis()
                            ),
                        }],
                    );
                }
            }
            HttpSessionMsg::Flush { turn } => {
                if let Some(t) = state.work.current_mut().filter(|t| t.id == turn) {
                    t.stream.timer_fired();
                }
                Self::flush(state);
            }
            HttpSessionMsg::RuntimeExited { reason } => {
                Self::flush(state);
                if let Some(mut t) = state.work.finish() {
                    if let Some(f) = t.follower.take() {
                        f.abort();
                    }
                    emit(&t.dispatch, vec![runtime_gone(t.cancel_requested, &reason)]);
                }
                let waiting = state.work.drain_waiting();
                let _ = state.args.runtime.cast(AcpMsg::Requeue(waiting));
                myself.stop(Some(reason));
            }
            HttpSessionMsg::Retire => {
                if state.work.is_idle() {
                    myself.stop(Some("idle".into()));
                }
            }
        }
        Ok(())
    }
}
