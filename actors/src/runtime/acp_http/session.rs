//! The HTTP session actor of adapter `acp_http`: one per sticky scope (conversation, thread or
//! explicit `session_id`) of an HTTP runtime, so tasks of one conversation run in order and reuse
//! the server's session. The runtime actor in [`super::acp`] owns the process (or, for
//! `launch.mode: external`, only the health check) and creates these.
//!
//! All IO runs in a spawned *follower* task per remote request (submit + stream, resume +
//! stream, re-sync, polling) that casts what it reads back stamped with the turn it belongs to;
//! a message for another turn is dropped. A stream that ends without the run ending is not a
//! failure: the follower re-syncs from `GET /runs/{id}` and `GET /runs/{id}/events` and keeps
//! following, failing the task only if the run is gone or stays unreachable past the bound.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::acp::{AcpMsg, cancel_queued, emit};
use super::coalesce::{Next, TextCoalescer, text_event};
use super::http::{
    self, BINDING, HttpDialect, HttpTarget, PollTracker, REQUEST_TIMEOUT, RunOutcome, RunTracker, SseParser,
};
use super::queue::{SessionQueue, Turn as QueueTurn};
use super::{AdapterEvent, Dispatch, RuntimeDeps};
use crate::clock;
use crate::model::{JsonObject, RemoteRef};
use crate::storage::{SessionBindingRecord, WriteOp};

/// A persisted session binding older than this is not reused (the reference server forgets
/// sessions after an hour).
const BINDING_FRESH: Duration = Duration::from_secs(3600);

/// What a follower read from the server for a turn.
#[derive(Debug)]
pub enum Remote {
    /// `POST /runs` answered 2xx: the run's id (header or body) and, for `polling`, its session.
    Accepted { run_id: Option<String>, session_id: Option<String> },
    /// `POST /runs` failed: the task fails with this code and message.
    Rejected { code: String, message: String },
    /// One run event (`acp` dialect), live or re-synced, in server order.
    Event(Value),
    /// Re-attach after a node restart: the run's whole event history.
    Replay(Vec<Value>),
    /// One `GET /runs/{id}` snapshot (`polling` dialect).
    Snapshot(Value),
    /// A resume was accepted by the server.
    Resumed,
    /// A resume was refused; the task stays awaiting.
    ResumeRefused(String),
    /// The stream ended before the run did; re-syncing.
    StreamDropped(String),
    /// The run is gone or unreachable past the bound: the task fails with this reason.
    Lost { reason: &'static str, detail: String },
}

/// Messages of an HTTP session actor.
pub enum HttpSessionMsg {
    Submit(Box<Dispatch>),
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
    pub runtime: ActorRef<AcpMsg>,
    pub target: Arc<HttpTarget>,
    pub sticky: String,
    /// The server's session for this scope, if one is known.
    pub session_id: Option<String>,
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
    args: HttpSessionArgs,
    /// The server's session id for this scope (reused by every task of it).
    session_id: Option<String>,
    /// Tasks waiting for the current one (creation order) and the task being run; follower
    /// messages of other turns are dropped.
    work: SessionQueue<HttpTurn>,
}

/// One HTTP session (sticky scope).
pub struct HttpSession;

/// What a follower needs: where to send, what to send with, whom to tell.
#[derive(Clone)]
struct Follow {
    target: Arc<HttpTarget>,
    headers: HeaderMap,
    me: ActorRef<HttpSessionMsg>,
    turn: u64,
    /// How long the run may stay unreachable.
    bound: Duration,
}

impl Follow {
    fn tell(&self, item: Remote) {
        let _ = self.me.cast(HttpSessionMsg::Remote { turn: self.turn, item });
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.target.client.post(self.target.url(path)).headers(self.headers.clone()).json(body)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.target.client.get(self.target.url(path)).headers(self.headers.clone()).timeout(REQUEST_TIMEOUT)
    }

    /// GET `path` as JSON, retrying transient failures until the bound: `Err(Lost)` if the run
    /// is gone (404) or unreachable too long.
    async fn get_json(&self, path: &str, run_id: &str, since: &mut Option<Instant>) -> Result<Value, Remote> {
        let mut backoff = http::POLL_INTERVAL;
        loop {
            let last = match self.get(path).send().await {
                Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                    Ok(v) => {
                        *since = None;
                        return Ok(v);
                    }
                    Err(e) => format!("unreadable answer: {}", http::describe_reqwest(&e)),
                },
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                    let (_, message) = http::error_of(r).await;
                    return Err(Remote::Lost {
                        reason: "remote_run_gone",
                        detail: format!("run {run_id} no longer exists on {} ({message})", self.target.endpoint),
                    });
                }
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => http::describe_reqwest(&e),
            };
            let first = *since.get_or_insert_with(Instant::now);
            if first.elapsed() >= self.bound {
                return Err(Remote::Lost {
                    reason: "remote_unreachable",
                    detail: format!(
                        "run {run_id}: {} unreachable for {} ms (last: {last})",
                        self.target.endpoint,
                        first.elapsed().as_millis()
                    ),
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Reads an SSE run stream to its end; re-syncs if it ends before the run pauses or ends.
    async fn stream(&self, mut response: reqwest::Response, mut run_id: Option<String>, mut offset: usize) {
        let mut parser = SseParser::default();
        let dropped = loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    for frame in parser.push(&bytes) {
                        let Ok(event) = serde_json::from_str::<Value>(&frame) else {
                            tracing::warn!(target_id = %self.target.target_id, frame = %frame.chars().take(200).collect::<String>(), "unreadable SSE frame skipped");
                            continue;
                        };
                        if run_id.is_none() {
                            run_id = event.pointer("/run/run_id").and_then(Value::as_str).map(str::to_owned);
                        }
                        let ends = http::ends_stream(&event);
                        offset += 1;
                        self.tell(Remote::Event(event));
                        if ends {
                            return;
                        }
                    }
                }
                Ok(None) => break "the server closed the stream before the run ended".to_owned(),
                Err(e) => break format!("stream broken: {}", http::describe_reqwest(&e)),
            }
        };
        let Some(run_id) = run_id else {
            self.tell(Remote::Lost { reason: "stream_failed", detail: format!("{dropped}; no run id was received") });
            return;
        };
        self.tell(Remote::StreamDropped(dropped));
        self.resync(&run_id, offset).await;
    }

    /// Follows a run by reading its state and event history until it pauses or ends.
    async fn resync(&self, run_id: &str, mut offset: usize) {
        let mut since = None;
        if let Err(lost) = self.get_json(&format!("/runs/{run_id}"), run_id, &mut since).await {
            self.tell(lost);
            return;
        }
        loop {
            let body = match self.get_json(&format!("/runs/{run_id}/events"), run_id, &mut since).await {
                Ok(b) => b,
                Err(lost) => {
                    self.tell(lost);
                    return;
                }
            };
            let events = body.get("events").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut ended = false;
            for event in events.into_iter().skip(offset) {
                offset += 1;
                ended |= http::ends_stream(&event);
                self.tell(Remote::Event(event));
            }
            if ended {
                return;
            }
            tokio::time::sleep(http::POLL_INTERVAL).await;
        }
    }

    /// `acp`: `POST /runs` in stream mode, then follow.
    async fn acp_submit(self, body: Value) {
        let response = match self.post("/runs", &body).send().await {
            Ok(r) => r,
            Err(e) => {
                let message = format!("POST {}/runs failed: {}", self.target.endpoint, http::describe_reqwest(&e));
                self.tell(Remote::Rejected { code: "submit_failed".into(), message });
                return;
            }
        };
        if !response.status().is_success() {
            let (code, message) = http::error_of(response).await;
            self.tell(Remote::Rejected { code, message });
            return;
        }
        let run_id = response.headers().get("run-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.tell(Remote::Accepted { run_id: run_id.clone(), session_id: None });
        self.stream(response, run_id, 0).await;
    }

    /// `acp`: resume a run (only if the server still has it awaiting), then follow.
    async fn acp_resume(self, run_id: String, message: Value, offset: usize) {
        let mut since = None;
        let run = match self.get_json(&format!("/runs/{run_id}"), &run_id, &mut since).await {
            Ok(r) => r,
            Err(lost) => return self.tell(lost),
        };
        let status = run.get("status").and_then(Value::as_str).unwrap_or("unknown").to_owned();
        if status != "awaiting" {
            // The reference server corrupts a run resumed in any other state.
            self.tell(Remote::ResumeRefused(format!("the remote run is {status}, not awaiting")));
            return self.resync(&run_id, offset).await;
        }
        let body = json!({"await_resume": {"type": "message", "message": message}, "mode": "stream"});
        match self.post(&format!("/runs/{run_id}"), &body).send().await {
            Ok(r) if r.status().is_success() => {
                self.tell(Remote::Resumed);
                self.stream(r, Some(run_id), offset).await;
            }
            Ok(r) => {
                let (code, message) = http::error_of(r).await;
                self.tell(Remote::ResumeRefused(format!("{code}: {message}")));
            }
            Err(e) => {
                self.tell(Remote::ResumeRefused(format!("resume request failed: {}", http::describe_reqwest(&e))))
            }
        }
    }

    /// `acp`: re-attach after a node restart: replay the history, then follow.
    async fn acp_reattach(self, run_id: String) {
        let mut since = None;
        let body = match self.get_json(&format!("/runs/{run_id}/events"), &run_id, &mut since).await {
            Ok(b) => b,
            Err(lost) => return self.tell(lost),
        };
        let events = body.get("events").and_then(Value::as_array).cloned().unwrap_or_default();
        let count = events.len();
        let paused_or_ended = events.last().is_some_and(http::ends_stream);
        self.tell(Remote::Replay(events));
        if !paused_or_ended {
            self.resync(&run_id, count).await;
        }
    }

    /// `polling`: `POST /runs`, then poll.
    async fn polling_submit(self, body: Value) {
        let response = match self.post("/runs", &body).timeout(REQUEST_TIMEOUT).send().await {
            Ok(r) => r,
            Err(e) => {
                let message = format!("POST {}/runs failed: {}", self.target.endpoint, http::describe_reqwest(&e));
                return self.tell(Remote::Rejected { code: "submit_failed".into(), message });
            }
        };
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            let (code, message) = http::error_body(status, &bytes);
            return self.tell(Remote::Rejected { code, message });
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let Some(run_id) = body.get("run_id").and_then(Value::as_str).map(str::to_owned) else {
            let message = format!("POST /runs answer has no run_id: {}", String::from_utf8_lossy(&bytes));
            return self.tell(Remote::Rejected { code: "submit_failed".into(), message });
        };
        let session_id = body.get("session_id").and_then(Value::as_str).map(str::to_owned);
        self.tell(Remote::Accepted { run_id: Some(run_id.clone()), session_id });
        self.poll(&run_id).await;
    }

    /// `polling`: read `GET /runs/{id}` until the run ends.
    async fn poll(&self, run_id: &str) {
        let mut since = None;
        loop {
            match self.get_json(&format!("/runs/{run_id}"), run_id, &mut since).await {
                Ok(run) => {
                    let ended =
                        matches!(run.get("status").and_then(Value::as_str), Some("completed" | "failed" | "cancelled"));
                    self.tell(Remote::Snapshot(run));
                    if ended {
                        return;
                    }
                }
                Err(lost) => return self.tell(lost),
            }
            tokio::time::sleep(http::POLL_INTERVAL).await;
        }
    }

    /// `polling`: `POST /runs/{id}/resume` with the payload.
    async fn polling_resume(self, run_id: String, payload: JsonObject) {
        match self
            .post(&format!("/runs/{run_id}/resume"), &Value::Object(payload))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => self.tell(Remote::Resumed),
            Ok(r) => {
                let (code, message) = http::error_of(r).await;
                self.tell(Remote::ResumeRefused(format!("{code}: {message}")));
            }
            Err(e) => {
                self.tell(Remote::ResumeRefused(format!("resume request failed: {}", http::describe_reqwest(&e))))
            }
        }
    }

    /// `POST /runs/{id}/cancel`; the run's own events confirm it.
    async fn cancel(self, run_id: String) {
        match self.post(&format!("/runs/{run_id}/cancel"), &json!({})).timeout(REQUEST_TIMEOUT).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::info!(target_id = %self.target.target_id, %run_id, status = %r.status(), "cancel refused (run already ended?)")
            }
            Err(e) => {
                tracing::warn!(target_id = %self.target.target_id, %run_id, error = %http::describe_reqwest(&e), "cancel request failed")
            }
        }
    }
}

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
                    Self::refuse(state, dispatch, "submit_failed", detail);
                    continue;
                }
            };
            match Self::headers_of(&dispatch) {
                Ok(headers) => Self::new_turn(state, dispatch, headers),
                Err(detail) => {
                    Self::refuse(state, dispatch, "submit_failed", detail);
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
    fn refuse(state: &HttpSessionState, d: Dispatch, reason: &str, detail: String) {
        emit(
            &d,
            vec![AdapterEvent::Failed {
                reason: reason.into(),
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
                RunOutcome::Awaiting { message, data } => {
                    Self::flush(state);
                    if let Some(t) = state.work.current() {
                        emit(&t.dispatch, vec![AdapterEvent::AwaitingInput { message, data }]);
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
                            reason: code,
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
    fn replay(myself: &ActorRef<HttpSessionMsg>, state: &mut HttpSessionState, events: Vec<Value>, was_awaiting: bool) {
        let Some(t) = state.work.current_mut() else { return };
        let mut last_state = None;
        for event in &events {
            for outcome in t.run.apply(event) {
                match outcome {
                    RunOutcome::Awaiting { .. }
                    | RunOutcome::Completed { .. }
                    | RunOutcome::Failed { .. }
                    | RunOutcome::Cancelled => last_state = Some(outcome),
                    // `run.in-progress` after a pause: the run was resumed.
                    RunOutcome::Progress { .. } if !t.run.awaiting() => last_state = None,
                    _ => {}
                }
            }
        }
        let data: JsonObject = [("run_id".to_owned(), json!(t.run_id())), ("events".to_owned(), json!(events.len()))]
            .into_iter()
            .collect();
        let dispatch = t.dispatch.clone();
        match last_state {
            Some(RunOutcome::Awaiting { .. }) if was_awaiting => {}
            Some(now) => Self::apply(myself, state, vec![now]),
            None if was_awaiting => emit(
                &dispatch,
                vec![AdapterEvent::Resumed { message: "The remote run was resumed before the node restarted".into() }],
            ),
            None => emit(
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
        Ok(HttpSessionState { args, session_id, work: SessionQueue::default() })
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
            {
                let fresh = time::OffsetDateTime::parse(&last, &time::format_description::well_known::Rfc3339)
                    .map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds() < BINDING_FRESH.as_secs() as i64)
                    .unwrap_or(false);
                if fresh {
                    state.session_id = Some(sid);
                }
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
                        Self::refuse(state, dispatch, "interrupted", detail);
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
                            reason: code,
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
                Remote::Replay(events) => {
                    let was_awaiting = state.work.current().is_some_and(|t| t.run.awaiting());
                    if let Some(t) = state.work.current_mut() {
                        t.run.status = None;
                    }
                    Self::replay(&myself, state, events, was_awaiting);
                }
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
                            reason: reason.into(),
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
                    let event = if t.cancel_requested {
                        AdapterEvent::Cancelled { message: "Cancelled; the runtime stopped".into() }
                    } else {
                        AdapterEvent::Failed {
                            reason: "runtime_exited".into(),
                            detail: Some(reason.clone()),
                            message: "Runtime exited during the task".into(),
                        }
                    };
                    emit(&t.dispatch, vec![event]);
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
