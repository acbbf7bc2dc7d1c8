//! The stdio ACP session actor: one per sticky key of a runtime. One prompt at a time (FIFO,
//! creation order), `session/new` or `session/load` of a persisted binding, `session/update` →
//! task events (message chunks coalesced to at most one event per 100 ms), permission requests
//! → `awaiting_input` (or answered by the target's policy), OpenClaw's structured events →
//! task events (a terminal one ends the task before the prompt answers; the next prompt waits
//! for that answer), cancel → `session/cancel` then a bounded wait, after which the process
//! group is killed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_client_protocol_schema::v1::{NewSessionResponse, RequestPermissionRequest};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::runtime::AcpMsg;
use super::updates::{UpdateEffect, map_update, prompt_outcome, structured_event};
use crate::clock;
use crate::model::{FailureReason, JsonObject, PermissionPolicy};
use crate::port::{AdapterEvent, Dispatch, PendingInput};
use crate::runtime::RuntimeDeps;
use crate::runtime::coalesce::{Next, TextCoalescer, text_event};
use crate::runtime::dialect::{Dialect, choose_option, prompt_text};
use crate::runtime::jsonrpc::{RpcConn, RpcError};
use crate::runtime::process;
use crate::runtime::queue::{SessionQueue, Turn as QueueTurn};
use crate::runtime::sessions::{binding_is_fresh, cancel_queued, emit, runtime_gone};
use crate::storage::{SessionBindingRecord, WriteOp};

/// Bound on `session/new` / `session/load`.
const SESSION_SETUP_TIMEOUT: Duration = Duration::from_secs(90);
/// A prompt turn may run for a long time; `delivery.timeout_ms` bounds tasks that need it.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Messages of a session actor.
pub enum AcpSessionMsg {
    Submit(Box<Dispatch>),
    Resume {
        task_id: String,
        generation: u64,
        payload: JsonObject,
    },
    Cancel {
        task_id: String,
        generation: u64,
    },
    /// `session/update` params for this session.
    Update(Value),
    /// The target was resumed after a pause: start the queued turns.
    Resumed,
    /// A structured event (`params.event`) for this session (dialects that have them).
    Structured(Value),
    /// The wait for the prompt answer of `turn`, whose task a structured terminal event ended,
    /// is over.
    DrainDeadline {
        turn: u64,
    },
    /// `session/request_permission` for this session.
    Permission {
        id: Value,
        params: Value,
    },
    /// `session/new` / `session/load` finished for `turn`.
    SetupDone {
        turn: u64,
        result: Result<String, String>,
    },
    /// `session/prompt` answered for `turn`.
    PromptDone {
        turn: u64,
        result: Result<Value, RpcError>,
    },
    /// Emit coalesced text for `turn`.
    Flush {
        turn: u64,
    },
    /// The cancel bound for `turn` elapsed.
    CancelDeadline {
        turn: u64,
    },
    /// The agent process is gone.
    RuntimeExited {
        reason: String,
    },
}

/// Arguments of a session actor.
pub struct AcpSessionArgs {
    /// The runtime actor: turn ends, bound session ids and re-queued work go back to it.
    pub runtime: ActorRef<AcpMsg>,
    /// The agent's JSON-RPC connection (requests and notifications of this session).
    pub conn: RpcConn,
    /// The agent's process group, killed when a cancel is not honoured in time.
    pub pgid: i32,
    /// Accepted-event wording, binding name and `session/new` extras.
    pub dialect: Dialect,
    /// Target, subcontext and sticky key: the persisted binding's key (and log fields).
    pub target_id: String,
    pub subcontext: String,
    pub sticky: String,
    /// The agent advertised `loadSession`: a fresh persisted binding is loaded, not replaced.
    pub load_session: bool,
    /// The agent's working directory (`session/new`, `session/load`).
    pub cwd: PathBuf,
    /// How permission requests are answered (`ask` puts the task in `awaiting_input`).
    pub policy: PermissionPolicy,
    /// Storage (bindings), reads (bindings), the cancel grace.
    pub deps: Arc<RuntimeDeps>,
}

/// The turn being run.
struct Turn {
    id: u64,
    dispatch: Dispatch,
    /// All agent message text of the turn (the result).
    text: String,
    /// Text not yet streamed as an event.
    stream: TextCoalescer,
    /// A permission request waiting for the task's resume: (JSON-RPC id, options).
    pending_permission: Option<(Value, Vec<Value>)>,
    cancel_requested: bool,
    /// The prompt was sent.
    prompted: bool,
}

/// State of a session actor.
pub struct AcpSessionState {
    /// What the session was created with (fixed for its life).
    args: AcpSessionArgs,
    /// The agent's session id once created or loaded.
    session_id: Option<String>,
    /// Prompts waiting their turn (creation order) and the turn being run.
    work: SessionQueue<Turn>,
    /// A turn whose task a structured terminal event ended while its prompt still runs: the
    /// next prompt waits for that answer (bounded by the cancel grace), since an agent runs one
    /// prompt at a time per session and the old prompt's late messages must not reach the next
    /// task; the answer itself is dropped.
    draining: Option<u64>,
    /// Its target is paused and a watcher will cast `Resumed` once it is not: queued turns wait.
    held: bool,
}

/// One ACP session (sticky scope).
pub struct AcpSession;

impl QueueTurn for Turn {
    type Work = Dispatch;
    fn work(&self) -> &Dispatch {
        &self.dispatch
    }
}

impl AcpSession {
    fn start_next(myself: &ActorRef<AcpSessionMsg>, state: &mut AcpSessionState) {
        if state.draining.is_some() || state.held {
            return;
        }
        // An operator paused the target: queued turns wait, the running one has finished.
        if state.work.would_start() && state.args.deps.pauses.is_paused(&state.args.target_id) {
            state.held = true;
            let (pauses, target, me) = (state.args.deps.pauses.clone(), state.args.target_id.clone(), myself.clone());
            tokio::spawn(async move {
                pauses.resumed(target).await;
                let _ = me.cast(AcpSessionMsg::Resumed);
            });
            return;
        }
        let Some(dispatch) = state.work.next_to_start() else { return };
        let turn = state.work.begin(|id| Turn {
            id,
            dispatch,
            text: String::new(),
            stream: TextCoalescer::default(),
            pending_permission: None,
            cancel_requested: false,
            prompted: false,
        });
        if let Some(sid) = state.session_id.clone() {
            let _ = myself.cast(AcpSessionMsg::SetupDone { turn, result: Ok(sid) });
            return;
        }
        let (conn, me, a) = (state.args.conn.clone(), myself.clone(), &state.args);
        let (deps, target, sub, sticky, cwd, load) = (
            a.deps.clone(),
            a.target_id.clone(),
            a.subcontext.clone(),
            a.sticky.clone(),
            a.cwd.clone(),
            a.load_session,
        );
        let meta = state.work.current().and_then(|t| a.dialect.new_session_meta(&t.dispatch.runtime_options, &sticky));
        tokio::spawn(async move {
            let cwd = cwd.display().to_string();
            if load
                && let Ok(Some((sid, last))) = deps.reader.session_binding(&target, &sub, &sticky).await
                && binding_is_fresh(&last, time::OffsetDateTime::now_utc())
                && conn
                    .request(
                        "session/load",
                        json!({"sessionId": sid, "cwd": cwd, "mcpServers": []}),
                        SESSION_SETUP_TIMEOUT,
                    )
                    .await
                    .is_ok()
            {
                let _ = me.cast(AcpSessionMsg::SetupDone { turn, result: Ok(sid) });
                return;
            }
            let mut params = json!({"cwd": cwd, "mcpServers": []});
            if let Some(meta) = meta {
                params["_meta"] = meta;
            }
            let result = match conn.request("session/new", params, SESSION_SETUP_TIMEOUT).await {
                Ok(v) => serde_json::from_value::<NewSessionResponse>(v.clone())
                    .map(|r| r.session_id.0.to_string())
                    .map_err(|e| format!("session/new answer without a sessionId ({e}): {v}")),
                Err(e) => Err(format!("session/new failed: {e}")),
            };
            let _ = me.cast(AcpSessionMsg::SetupDone { turn, result });
        });
    }

    fn flush(state: &mut AcpSessionState) {
        if let Some(t) = state.work.current_mut()
            && let Some(text) = t.stream.take(Instant::now())
        {
            emit(&t.dispatch, vec![text_event(text)]);
        }
    }

    fn end_turn(myself: &ActorRef<AcpSessionMsg>, state: &mut AcpSessionState, events: Vec<AdapterEvent>) {
        Self::finish_turn(state, events);
        Self::start_next(myself, state);
    }

    /// Ends the current turn's task with `events` (the next turn is not started).
    fn finish_turn(state: &mut AcpSessionState, events: Vec<AdapterEvent>) {
        Self::flush(state);
        if let Some(t) = state.work.finish() {
            emit(&t.dispatch, events);
            let _ = state.args.runtime.cast(AcpMsg::TurnEnded { task_id: t.dispatch.task_id.clone() });
            if let Some(sid) = &state.session_id {
                state.args.deps.write_in_background(WriteOp::SessionBinding(Box::new(SessionBindingRecord {
                    target_id: state.args.target_id.clone(),
                    subcontext_key: state.args.subcontext.clone(),
                    sticky_key: state.args.sticky.clone(),
                    adapter: state.args.dialect.binding().to_owned(),
                    remote_session_id: sid.clone(),
                    metadata_json: json!({ "cwd": state.args.cwd.display().to_string() }).to_string(),
                    at: clock::now_rfc3339(),
                })));
            }
        }
    }

    fn answer_permission(state: &AcpSessionState, id: &Value, option_id: Option<&str>) {
        let outcome = match option_id {
            Some(o) => json!({"outcome": {"outcome": "selected", "optionId": o}}),
            None => json!({"outcome": {"outcome": "cancelled"}}),
        };
        state.args.conn.respond(id, outcome);
    }
}

impl Actor for AcpSession {
    type Msg = AcpSessionMsg;
    type State = AcpSessionState;
    type Arguments = AcpSessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<AcpSessionMsg>,
        args: AcpSessionArgs,
    ) -> Result<AcpSessionState, ActorProcessingErr> {
        Ok(AcpSessionState { args, session_id: None, work: SessionQueue::default(), draining: None, held: false })
    }

    async fn handle(
        &self,
        myself: ActorRef<AcpSessionMsg>,
        msg: AcpSessionMsg,
        state: &mut AcpSessionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AcpSessionMsg::Submit(d) => {
                state.work.push(*d);
                Self::start_next(&myself, state);
            }
            AcpSessionMsg::SetupDone { turn, result } if state.work.current().is_some_and(|t| t.id == turn) => {
                match result {
                    Err(detail) => Self::end_turn(
                        &myself,
                        state,
                        vec![AdapterEvent::Failed {
                            reason: FailureReason::SubmitFailed,
                            detail: Some(detail.clone()),
                            message: detail,
                        }],
                    ),
                    Ok(sid) => {
                        if state.session_id.as_deref() != Some(&sid) {
                            state.session_id = Some(sid.clone());
                            let _ = state.args.runtime.cast(AcpMsg::SessionBound {
                                sticky: state.args.sticky.clone(),
                                session_id: sid.clone(),
                            });
                        }
                        let cancelled = state.work.current().is_some_and(|t| t.cancel_requested);
                        if cancelled {
                            Self::end_turn(
                                &myself,
                                state,
                                vec![AdapterEvent::Cancelled {
                                    message: "Cancelled before the prompt was sent".into(),
                                }],
                            );
                            return Ok(());
                        }
                        let (dialect, sticky) = (state.args.dialect, state.args.sticky.clone());
                        let conn = state.args.conn.clone();
                        let Some(t) = state.work.current_mut() else { return Ok(()) };
                        t.prompted = true;
                        let accepted = dialect.accepted_data(&t.dispatch.runtime_options, &sticky, &sid);
                        emit(
                            &t.dispatch,
                            vec![
                                AdapterEvent::Submitted {
                                    binding: dialect.binding().into(),
                                    remote_execution_id: Some(sid.clone()),
                                    remote_session_id: Some(sid.clone()),
                                },
                                AdapterEvent::Running {
                                    message: format!("{} accepted the task", dialect.display()),
                                    data: accepted.as_object().cloned().unwrap_or_default(),
                                },
                            ],
                        );
                        let text = prompt_text(&t.dispatch.payload);
                        let runtime = state.args.runtime.clone();
                        tokio::spawn(async move {
                            let params = json!({"sessionId": sid, "prompt": [{"type": "text", "text": text}]});
                            let result = conn.request("session/prompt", params, PROMPT_TIMEOUT).await;
                            let _ = runtime.cast(AcpMsg::ToSession {
                                sticky,
                                msg: Box::new(AcpSessionMsg::PromptDone { turn, result }),
                            });
                        });
                    }
                }
            }
            AcpSessionMsg::SetupDone { .. } => {}
            AcpSessionMsg::Resumed => {
                state.held = false;
                Self::start_next(&myself, state);
            }
            AcpSessionMsg::Update(params) => {
                let Some(t) = state.work.current_mut().filter(|t| t.prompted) else { return Ok(()) };
                match map_update(&params) {
                    UpdateEffect::Text(text) => {
                        t.text.push_str(&text);
                        match t.stream.push(&text, Instant::now()) {
                            Next::FlushNow => Self::flush(state),
                            Next::FlushIn(wait) => {
                                let turn = t.id;
                                myself.send_after(wait, move || AcpSessionMsg::Flush { turn });
                            }
                            Next::Wait => {}
                        }
                    }
                    UpdateEffect::Event { message, data } => {
                        Self::flush(state);
                        if let Some(t) = state.work.current() {
                            emit(&t.dispatch, vec![AdapterEvent::Running { message, data }]);
                        }
                    }
                    UpdateEffect::Ignore => {}
                }
            }
            AcpSessionMsg::Structured(params) => {
                let Some(t) = state.work.current().filter(|t| t.prompted) else { return Ok(()) };
                let (turn, cancel_requested) = (t.id, t.cancel_requested);
                let Some(event) = structured_event(state.args.dialect.display(), &params, t.text.trim()) else {
                    return Ok(());
                };
                let terminal = matches!(
                    event,
                    AdapterEvent::Completed { .. } | AdapterEvent::Failed { .. } | AdapterEvent::Cancelled { .. }
                );
                if !terminal {
                    Self::flush(state);
                    if let Some(t) = state.work.current() {
                        emit(&t.dispatch, vec![event]);
                    }
                    return Ok(());
                }
                // As for a prompt answer: after a cancel request the turn ends cancelled.
                let event = if cancel_requested {
                    AdapterEvent::Cancelled { message: format!("{} cancelled the task", state.args.dialect.display()) }
                } else {
                    event
                };
                state.draining = Some(turn);
                Self::finish_turn(state, vec![event]);
                let grace = state.args.deps.cancel_grace;
                myself.send_after(grace, move || AcpSessionMsg::DrainDeadline { turn });
            }
            AcpSessionMsg::DrainDeadline { turn } if state.draining == Some(turn) => {
                tracing::warn!(
                    actor_kind = "acp_session", target_id = %state.args.target_id, sticky = %state.args.sticky,
                    "the agent's prompt did not answer after its structured terminal event; starting the next prompt"
                );
                state.draining = None;
                Self::start_next(&myself, state);
            }
            AcpSessionMsg::DrainDeadline { .. } => {}
            AcpSessionMsg::Flush { turn } => {
                if let Some(t) = state.work.current_mut().filter(|t| t.id == turn) {
                    t.stream.timer_fired();
                }
                Self::flush(state);
            }
            AcpSessionMsg::Permission { id, params } => {
                if state.work.current().is_none_or(|t| t.cancel_requested) {
                    Self::answer_permission(state, &id, None);
                    return Ok(());
                }
                let request = serde_json::from_value::<RequestPermissionRequest>(params.clone());
                let options: Vec<Value> = params.get("options").and_then(Value::as_array).cloned().unwrap_or_default();
                let tool_call = params.get("toolCall").cloned().unwrap_or(Value::Null);
                if request.is_err() || options.is_empty() {
                    tracing::warn!(target_id = %state.args.target_id, "malformed permission request; answered cancelled");
                    Self::answer_permission(state, &id, None);
                    return Ok(());
                }
                let title = tool_call.get("title").and_then(Value::as_str).unwrap_or("a tool call").to_owned();
                let auto = match state.args.policy {
                    PermissionPolicy::Ask => None,
                    PermissionPolicy::Allow => Some("allow"),
                    PermissionPolicy::Reject => Some("reject"),
                };
                if let Some(decision) = auto {
                    let choice =
                        choose_option(&options, &[("decision".to_owned(), json!(decision))].into_iter().collect()).ok();
                    Self::answer_permission(state, &id, choice.as_deref());
                    Self::flush(state);
                    if let Some(t) = state.work.current() {
                        emit(
                            &t.dispatch,
                            vec![AdapterEvent::Running {
                                message: format!("Permission for {title} answered by policy: {decision}"),
                                data: [("tool_call".to_owned(), tool_call), ("option_id".to_owned(), json!(choice))]
                                    .into_iter()
                                    .collect(),
                            }],
                        );
                    }
                    return Ok(());
                }
                Self::flush(state);
                if let Some(t) = state.work.current_mut() {
                    t.pending_permission = Some((id, options.clone()));
                    emit(
                        &t.dispatch,
                        vec![AdapterEvent::AwaitingInput {
                            message: format!("Permission requested: {title}"),
                            data: [
                                ("request".to_owned(), json!("permission")),
                                ("tool_call".to_owned(), tool_call),
                                ("options".to_owned(), Value::Array(options.clone())),
                            ]
                            .into_iter()
                            .collect(),
                            pending: PendingInput::Permission { options },
                        }],
                    );
                }
            }
            AcpSessionMsg::Resume { task_id, generation, payload } => {
                let pending = state
                    .work
                    .current_mut()
                    .filter(|t| t.dispatch.task_id == task_id && t.dispatch.generation == generation)
                    .and_then(|t| t.pending_permission.take());
                match pending {
                    Some((id, options)) => match choose_option(&options, &payload) {
                        Ok(option_id) => {
                            Self::answer_permission(state, &id, Some(&option_id));
                            let name = options
                                .iter()
                                .find(|o| o.get("optionId").and_then(Value::as_str) == Some(&option_id))
                                .and_then(|o| o.get("name").and_then(Value::as_str))
                                .unwrap_or(&option_id)
                                .to_owned();
                            if let Some(t) = state.work.current() {
                                emit(
                                    &t.dispatch,
                                    vec![AdapterEvent::Resumed { message: format!("Permission answered: {name}") }],
                                );
                            }
                        }
                        Err(reason) => {
                            if let Some(t) = state.work.current_mut() {
                                t.pending_permission = Some((id, options));
                                emit(&t.dispatch, vec![AdapterEvent::ResumeRefused { reason }]);
                            }
                        }
                    },
                    None => {
                        if let Some(t) = state.work.current().filter(|t| t.dispatch.task_id == task_id) {
                            emit(
                                &t.dispatch,
                                vec![AdapterEvent::ResumeRefused { reason: "the agent has no pending request".into() }],
                            );
                        }
                    }
                }
            }
            AcpSessionMsg::Cancel { task_id, generation: _ } => {
                if cancel_queued(&mut state.work, &task_id, &state.args.runtime) {
                    return Ok(());
                }
                let Some(t) = state.work.current_mut().filter(|t| t.dispatch.task_id == task_id) else { return Ok(()) };
                if t.cancel_requested {
                    return Ok(());
                }
                t.cancel_requested = true;
                let (turn, prompted) = (t.id, t.prompted);
                let pending = t.pending_permission.take();
                if let Some((id, _)) = pending {
                    Self::answer_permission(state, &id, None);
                }
                if prompted && let Some(sid) = &state.session_id {
                    state.args.conn.notify("session/cancel", json!({"sessionId": sid}));
                }
                let grace = state.args.deps.cancel_grace;
                myself.send_after(grace, move || AcpSessionMsg::CancelDeadline { turn });
            }
            AcpSessionMsg::CancelDeadline { turn } => {
                if state.work.current().is_some_and(|t| t.id == turn && t.prompted) {
                    tracing::warn!(
                        actor_kind = "acp_session", target_id = %state.args.target_id, sticky = %state.args.sticky,
                        "agent did not end the turn after session/cancel; killing its process group"
                    );
                    let pgid = state.args.pgid;
                    tokio::spawn(async move { process::kill_group(pgid, process::KILL_GRACE).await });
                    Self::end_turn(
                        &myself,
                        state,
                        vec![AdapterEvent::Cancelled {
                            message: "Cancelled; the agent did not stop in time and its process was killed".into(),
                        }],
                    );
                }
            }
            AcpSessionMsg::PromptDone { turn, result } if state.work.current().is_some_and(|t| t.id == turn) => {
                let events = match state.work.current() {
                    Some(t) => prompt_outcome(state.args.dialect.display(), t.cancel_requested, t.text.trim(), result),
                    None => return Ok(()),
                };
                Self::end_turn(&myself, state, events);
            }
            // The late answer of a turn a structured terminal event ended: the task has its end.
            AcpSessionMsg::PromptDone { turn, .. } if state.draining == Some(turn) => {
                state.draining = None;
                Self::start_next(&myself, state);
            }
            AcpSessionMsg::PromptDone { .. } => {}
            AcpSessionMsg::RuntimeExited { reason } => {
                Self::flush(state);
                if let Some(t) = state.work.finish() {
                    emit(&t.dispatch, vec![runtime_gone(t.cancel_requested, &reason)]);
                }
                let waiting = state.work.drain_waiting();
                let _ = state.args.runtime.cast(AcpMsg::Requeue(waiting));
                myself.stop(Some(reason));
            }
        }
        Ok(())
    }
}
