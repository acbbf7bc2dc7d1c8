//! The Agent Client Protocol adapter: a runtime actor per (target, subcontext) that owns the agent
//! process, and a session actor per sticky scope that runs prompts on it.
//!
//! Runtime actor: launches the child (own process group, registry `env`, absolute `cwd`), is
//! ready when `initialize` is answered (never a fixed sleep), serves concurrent acquisitions with
//! one launch, routes the agent's notifications and requests to sessions by `sessionId`, answers
//! requests we do not offer (`fs/*`, `terminal/*`, …) with a JSON-RPC error at once, and on an
//! unexpected exit fails the tasks in flight (`runtime_exited`), re-queues the waiting ones and
//! relaunches under the shared restart policy. Stopping (API, idle, shutdown) signals the whole
//! process group: SIGTERM, then SIGKILL after a grace period.
//!
//! Session actor: one prompt at a time (FIFO), `session/new` or `session/load` of a persisted
//! binding, `session/update` → task events (message chunks coalesced to at most one event per
//! 100 ms), permission requests → `awaiting_input` (or answered by the target's policy), cancel →
//! `session/cancel` then a bounded wait, after which the process group is killed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_client_protocol_schema::v1::{
    ContentBlock, InitializeResponse, NewSessionResponse, PromptResponse, RequestPermissionRequest,
    SessionNotification, SessionUpdate, StopReason,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::acp_http::{HttpSession, HttpSessionArgs, HttpSessionMsg};
use super::coalesce::{Next, TextCoalescer, text_event};
use super::dialect::{Dialect, StickyInput, choose_option, prompt_text};
use super::http::HttpTarget;
use super::jsonrpc::{Incoming, RpcConn, RpcError};
use super::process::{self, LaunchCommand, StderrTail};
use super::queue::{SessionQueue, Turn as QueueTurn};
use super::{
    AdapterEvent, Dispatch, LaunchPhase, RuntimeDeps, RuntimeError, RuntimeHandle, SessionMsg, SessionPort,
    TaskReplyTo, Waiter,
};
use crate::clock;
use crate::ids;
use crate::model::{JsonObject, LaunchMode, PermissionPolicy, TargetSpec};
use crate::port::report;
use crate::restart::{RestartDecision, RestartPolicy, RestartTracker, jitter};
use crate::storage::{LaunchRecord, SessionBindingRecord, WriteOp};

/// Default bound on a launch (spawn → `initialize` answered); slow agents (OpenClaw) need ~40 s.
pub const DEFAULT_LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on `session/new` / `session/load`.
const SESSION_SETUP_TIMEOUT: Duration = Duration::from_secs(90);
/// A prompt turn may run for a long time; `delivery.timeout_ms` bounds tasks that need it.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// A persisted session binding older than this is not reloaded.
const BINDING_FRESH: Duration = Duration::from_secs(3600);

/// Health of a runtime (contract route 27).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuntimeHealth {
    pub target_id: String,
    pub subcontext_key: String,
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_id: Option<u32>,
    pub state: &'static str,
    pub tasks_in_flight: usize,
}

/// Messages of the ACP runtime actor.
pub enum AcpMsg {
    /// Get this runtime ready for a task (or for `POST /v1/targets/{id}/start`).
    Acquire(Waiter, RpcReplyPort<Result<RuntimeHandle, RuntimeError>>),
    /// Task traffic (submit, resume, cancel).
    Session(SessionMsg),
    /// A message from the agent process of incarnation `generation`.
    Incoming { generation: u64, msg: Incoming },
    /// HTTP runtimes: the health check of incarnation `generation` answered 2xx (after this
    /// long) or gave up.
    Healthy { generation: u64, result: Result<Duration, String> },
    /// `initialize` answered (or failed) for incarnation `generation`.
    Initialized { generation: u64, result: Result<Value, RpcError> },
    /// The process of incarnation `generation` exited.
    ChildExited { generation: u64, status: String, exit_code: Option<i32> },
    /// A launch did not become ready in time.
    LaunchDeadline { generation: u64 },
    /// Relaunch after a crash backoff.
    Relaunch { generation: u64 },
    /// A session bound its remote id (route its notifications to it).
    SessionBound { sticky: String, session_id: String },
    /// A task's turn ended on its session.
    TurnEnded { task_id: String },
    /// Dispatches a dying session had not started.
    Requeue(Vec<Dispatch>),
    /// Stop the process (API stop, idle timeout); replies when it is gone.
    Stop { reason: String, reply: Option<RpcReplyPort<()>> },
    /// Idle check.
    IdleTick { generation: u64 },
    /// Report health.
    Health(RpcReplyPort<RuntimeHealth>),
    /// Whether a task for `sticky` would reuse a remote session right now: (runtime up, a live
    /// session for it, the agent can `session/load`). Answered from memory; never an RPC.
    SessionProbe { sticky: String, reply: RpcReplyPort<(bool, bool, bool)> },
    /// A result for a session that must not overtake the agent's notifications: the reader
    /// enqueues each notification here before it completes the response, so routing the
    /// response through this mailbox keeps the agent's order.
    ToSession { sticky: String, msg: Box<AcpSessionMsg> },
}

/// Arguments of the runtime actor.
pub struct AcpRuntimeArgs {
    pub target: TargetSpec,
    pub dialect: Dialect,
    /// Set for `acp_http` targets: the runtime is an HTTP server, ready when its health check
    /// answers, and its sessions are [`HttpSession`]s. An empty `command` argv means the server
    /// is not ours to start (`launch.mode: external`, or no command): only health-checked.
    pub http: Option<Arc<HttpTarget>>,
    pub subcontext: String,
    pub command: LaunchCommand,
    pub deps: Arc<RuntimeDeps>,
}

/// The live agent process.
struct Child {
    /// When the process was spawned (for `initialize_ms`).
    spawned_at: Instant,
    pid: u32,
    pgid: i32,
    /// The JSON-RPC connection (stdio agents only).
    conn: Option<RpcConn>,
    /// Held open for HTTP servers, which do not read it: some exit when stdin closes.
    _stdin: Option<tokio::process::ChildStdin>,
    stderr: StderrTail,
    launch_id: String,
}

/// A session actor of either kind.
#[derive(Clone)]
enum SessionRef {
    Stdio(ActorRef<AcpSessionMsg>),
    Http(ActorRef<HttpSessionMsg>),
}

impl SessionRef {
    fn id(&self) -> ractor::ActorId {
        match self {
            SessionRef::Stdio(a) => a.get_id(),
            SessionRef::Http(a) => a.get_id(),
        }
    }

    fn submit(&self, d: Dispatch) {
        let _ = match self {
            SessionRef::Stdio(a) => a.cast(AcpSessionMsg::Submit(Box::new(d))).is_ok(),
            SessionRef::Http(a) => a.cast(HttpSessionMsg::Submit(Box::new(d))).is_ok(),
        };
    }

    fn resume(&self, task_id: String, generation: u64, payload: JsonObject) {
        let _ = match self {
            SessionRef::Stdio(a) => a.cast(AcpSessionMsg::Resume { task_id, generation, payload }).is_ok(),
            SessionRef::Http(a) => a.cast(HttpSessionMsg::Resume { task_id, generation, payload }).is_ok(),
        };
    }

    fn cancel(&self, task_id: String, generation: u64) {
        let _ = match self {
            SessionRef::Stdio(a) => a.cast(AcpSessionMsg::Cancel { task_id, generation }).is_ok(),
            SessionRef::Http(a) => a.cast(HttpSessionMsg::Cancel { task_id, generation }).is_ok(),
        };
    }

    fn runtime_exited(&self, reason: String) {
        let _ = match self {
            SessionRef::Stdio(a) => a.cast(AcpSessionMsg::RuntimeExited { reason }).is_ok(),
            SessionRef::Http(a) => a.cast(HttpSessionMsg::RuntimeExited { reason }).is_ok(),
        };
    }
}

/// Where the runtime is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Down,
    Launching,
    Ready,
}

/// State of the runtime actor.
pub struct AcpRuntimeState {
    target: TargetSpec,
    dialect: Dialect,
    /// HTTP runtime configuration (`acp_http` targets); `None` for stdio agents.
    http: Option<Arc<HttpTarget>>,
    subcontext: String,
    command: LaunchCommand,
    deps: Arc<RuntimeDeps>,
    phase: Phase,
    /// The agent process, while it runs.
    child: Option<Child>,
    /// Incarnation of the process; messages about older ones are dropped.
    generation: u64,
    /// The agent advertised `loadSession`.
    load_session: bool,
    /// Acquisitions waiting for the launch in progress (one launch serves them all).
    waiters: Vec<(Waiter, RpcReplyPort<Result<RuntimeHandle, RuntimeError>>)>,
    /// Session actors by sticky key.
    sessions: HashMap<String, SessionRef>,
    /// HTTP runtimes: the server's session id of each sticky scope, kept when its idle session
    /// actor retires so the conversation's next task continues it.
    remote_sessions: HashMap<String, String>,
    /// Sticky key of each bound remote session id (notification routing).
    by_session_id: HashMap<String, String>,
    /// Sticky key of each task submitted here, with its task actor (for failure fan-out).
    by_task: HashMap<String, (String, TaskReplyTo, u64)>,
    /// Dispatches waiting for the runtime to come back (re-queued after a crash).
    requeued: Vec<Dispatch>,
    /// Crash history of the process.
    restarts: RestartTracker,
    /// No launch before this instant (crash backoff).
    launch_not_before: Option<Instant>,
    /// Too many crashes: acquisitions fail until this instant.
    blocked_until: Option<Instant>,
    /// Last time work started or ended (idle stop).
    last_activity: Instant,
}

/// The ACP runtime actor.
pub struct AcpRuntime;

fn handle_for(myself: &ActorRef<AcpMsg>, state: &AcpRuntimeState, initialize_ms: Option<f64>) -> RuntimeHandle {
    RuntimeHandle {
        lease_id: state.child.as_ref().map(|c| c.launch_id.clone()),
        session: SessionPort::new(myself.get_derived()),
        process_id: state.child.as_ref().map(|c| c.pid),
        initialize_ms,
    }
}

fn launch_timeout(target: &TargetSpec) -> Duration {
    target.launch.timeout_ms.map_or(DEFAULT_LAUNCH_TIMEOUT, Duration::from_millis)
}

impl AcpRuntime {
    /// Spawns the process and starts `initialize` (stdio) or the health check (HTTP). Waiters
    /// stay queued until it answers.
    fn launch(myself: &ActorRef<AcpMsg>, state: &mut AcpRuntimeState) {
        if let Some(http) = state.http.clone() {
            return Self::launch_http(myself, state, &http);
        }
        state.generation += 1;
        let generation = state.generation;
        let target_id = state.target.target_id.clone();
        let spawned_at = Instant::now();
        let spawned = match process::spawn(&state.command, &target_id) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(actor_kind = "runtime", target_id = %target_id, subcontext = %state.subcontext, error = %e, "runtime launch failed");
                Self::fail_waiters(state, RuntimeError::LaunchFailed(e.to_string()));
                return;
            }
        };
        let launch_id = Self::record_spawn(state, &spawned, generation);
        let process::Spawned { child, pid, pgid, stdin, stdout, stderr_tail, stderr_done } = spawned;
        let me_in = myself.clone();
        let tail_for_close = stderr_tail.clone();
        let conn = RpcConn::start(
            stdin,
            stdout,
            format!("{target_id}/{}", state.subcontext),
            move |msg| {
                let _ = me_in.cast(AcpMsg::Incoming { generation, msg });
            },
            move || {
                let tail = tail_for_close.text();
                if tail.is_empty() { "stdout closed".to_owned() } else { format!("stdout closed; stderr: {tail}") }
            },
        );
        Self::watch_exit(myself, generation, child, stderr_done);
        let init_conn = conn.clone();
        let me_init = myself.clone();
        let timeout = launch_timeout(&state.target);
        tokio::spawn(async move {
            let params = json!({
                "protocolVersion": 1,
                "clientCapabilities": {"fs": {"readTextFile": false, "writeTextFile": false}, "terminal": false},
                "clientInfo": {"name": "aethrolink", "title": "AethroLink", "version": env!("CARGO_PKG_VERSION")},
            });
            let result = init_conn.request("initialize", params, timeout + Duration::from_secs(1)).await;
            let _ = me_init.cast(AcpMsg::Initialized { generation, result });
        });
        myself.send_after(timeout, move || AcpMsg::LaunchDeadline { generation });
        state.child =
            Some(Child { spawned_at, pid, pgid, conn: Some(conn), _stdin: None, stderr: stderr_tail, launch_id });
        state.phase = Phase::Launching;
    }

    /// Records a spawned process (launch history, lease) and tells the waiting tasks its pid.
    fn record_spawn(state: &AcpRuntimeState, spawned: &process::Spawned, generation: u64) -> String {
        let launch_id = ids::new_id();
        let target_id = &state.target.target_id;
        state.deps.write_in_background(WriteOp::LaunchStarted(Box::new(LaunchRecord {
            launch_id: launch_id.clone(),
            target_id: target_id.clone(),
            subcontext_key: state.subcontext.clone(),
            command: state.command.argv.clone(),
            pid: spawned.pid,
            process_group: spawned.pgid,
            started_at: clock::now_rfc3339(),
        })));
        tracing::info!(
            actor_kind = "runtime", target_id = %target_id, subcontext = %state.subcontext, pid = spawned.pid,
            generation, command = ?state.command.argv, "runtime launching"
        );
        for (w, _) in &state.waiters {
            w.phase(LaunchPhase::Launching { pid: spawned.pid });
        }
        launch_id
    }

    /// Casts `ChildExited` when the process of `generation` ends.
    fn watch_exit(
        myself: &ActorRef<AcpMsg>,
        generation: u64,
        mut child: tokio::process::Child,
        stderr_done: tokio::task::JoinHandle<()>,
    ) {
        let me_exit = myself.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            // Let the stderr reader finish so the tail is complete.
            let _ = tokio::time::timeout(Duration::from_millis(500), stderr_done).await;
            let (status, exit_code) = match status {
                Ok(s) => (process::describe_exit(&s), s.code()),
                Err(e) => (format!("wait failed: {e}"), None),
            };
            let _ = me_exit.cast(AcpMsg::ChildExited { generation, status, exit_code });
        });
    }

    /// HTTP runtime: spawns the server (unless it is not ours to start), then polls its health
    /// check until it answers 2xx or the launch timeout passes.
    fn launch_http(myself: &ActorRef<AcpMsg>, state: &mut AcpRuntimeState, http: &Arc<HttpTarget>) {
        state.generation += 1;
        let generation = state.generation;
        let spawned_at = Instant::now();
        let ours = state.target.launch.mode != LaunchMode::External && !state.command.argv.is_empty();
        if ours {
            let spawned = match process::spawn(&state.command, &state.target.target_id) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(actor_kind = "runtime", target_id = %state.target.target_id, error = %e, "runtime launch failed");
                    Self::fail_waiters(state, RuntimeError::LaunchFailed(e.to_string()));
                    return;
                }
            };
            let launch_id = Self::record_spawn(state, &spawned, generation);
            let process::Spawned { child, pid, pgid, stdin, stdout, stderr_tail, stderr_done } = spawned;
            process::log_stdout(stdout, stderr_tail.clone(), &state.target.target_id, pid);
            Self::watch_exit(myself, generation, child, stderr_done);
            state.child =
                Some(Child { spawned_at, pid, pgid, conn: None, _stdin: Some(stdin), stderr: stderr_tail, launch_id });
        } else {
            tracing::info!(actor_kind = "runtime", target_id = %state.target.target_id, url = %http.healthcheck, "checking an external runtime's health");
        }
        let (client, url, me) = (http.client.clone(), http.healthcheck.clone(), myself.clone());
        let deadline = spawned_at + launch_timeout(&state.target);
        tokio::spawn(async move {
            let result = super::http::wait_healthy(&client, &url, deadline).await;
            let _ = me.cast(AcpMsg::Healthy { generation, result });
        });
        state.phase = Phase::Launching;
    }

    /// The launch in progress became usable: answer the waiters, route the queued dispatches.
    fn became_ready(
        myself: &ActorRef<AcpMsg>,
        state: &mut AcpRuntimeState,
        ready_ms: Option<f64>,
        agent: &str,
    ) -> Result<(), ActorProcessingErr> {
        state.phase = Phase::Ready;
        state.last_activity = Instant::now();
        if let Some(child) = &state.child {
            state.deps.write_in_background(WriteOp::LaunchEnded {
                launch_id: child.launch_id.clone(),
                status: "ready".into(),
                exit_code: None,
                error: None,
                release_lease: false,
            });
        }
        tracing::info!(
            actor_kind = "runtime", target_id = %state.target.target_id, subcontext = %state.subcontext,
            pid = state.child.as_ref().map(|c| c.pid), load_session = state.load_session, ready_ms, %agent, "runtime ready"
        );
        for (_, reply) in std::mem::take(&mut state.waiters) {
            let _ = reply.send(Ok(handle_for(myself, state, ready_ms)));
        }
        for d in std::mem::take(&mut state.requeued) {
            Self::route_dispatch(myself, state, d)?;
        }
        Self::schedule_idle_check(myself, state);
        Ok(())
    }

    fn fail_waiters(state: &mut AcpRuntimeState, err: RuntimeError) {
        for (_, reply) in state.waiters.drain(..) {
            let _ = reply.send(Err(err.clone()));
        }
        for d in state.requeued.drain(..) {
            d.report(vec![AdapterEvent::Failed {
                reason: err.reason().to_owned(),
                detail: Some(err.to_string()),
                message: "Runtime could not be started".into(),
            }]);
        }
    }

    /// Ends the current process: kills its group (if still alive), records it, and fails or
    /// re-queues the work on it.
    fn take_down(state: &mut AcpRuntimeState, status: &str, reason: &str, exit_code: Option<i32>) {
        if let Some(child) = state.child.take() {
            let pgid = child.pgid;
            tokio::spawn(async move { process::kill_group(pgid, process::KILL_GRACE).await });
            let tail = child.stderr.text();
            state.deps.write_in_background(WriteOp::LaunchEnded {
                launch_id: child.launch_id,
                status: status.to_owned(),
                exit_code,
                error: Some(reason.to_owned())
                    .filter(|r| !r.is_empty())
                    .map(|r| if tail.is_empty() { r } else { format!("{r}; stderr: {tail}") }),
                release_lease: true,
            });
        }
        for (_, session) in state.sessions.drain() {
            session.runtime_exited(reason.to_owned());
        }
        if state.child.is_none() && state.http.is_some() && state.command.argv.is_empty() {
            // An external server keeps its sessions; a restarted managed one does not.
        } else {
            state.remote_sessions.clear();
        }
        state.by_session_id.clear();
        state.by_task.clear();
        state.phase = Phase::Down;
    }

    fn route_dispatch(
        myself: &ActorRef<AcpMsg>,
        state: &mut AcpRuntimeState,
        d: Dispatch,
    ) -> Result<(), ActorProcessingErr> {
        if state.phase != Phase::Ready {
            state.requeued.push(d);
            Self::ensure_launch(myself, state);
            return Ok(());
        }
        let sticky = Self::sticky_of(state, &d);
        state.by_task.insert(d.task_id.clone(), (sticky.clone(), d.reply_to.clone(), d.generation));
        state.last_activity = Instant::now();
        let session = Self::session_for(myself, state, &sticky)?;
        session.submit(d);
        Ok(())
    }

    /// The sticky scope of a task: for HTTP runtimes an explicit `runtime_options.session_id`
    /// comes first, then as for stdio agents (thread, session key, conversation, task).
    fn sticky_of(state: &AcpRuntimeState, d: &Dispatch) -> String {
        if state.http.is_some()
            && let Some(sid) = super::http::explicit_session(&d.runtime_options)
        {
            return format!("session_id:{sid}");
        }
        state.dialect.sticky_key(
            &d.runtime_options,
            &StickyInput {
                thread_id: d.thread_id.as_deref(),
                conversation_id: Some(&d.conversation_id),
                task_id: &d.task_id,
            },
        )
    }

    /// The session actor of `sticky`, created if needed.
    fn session_for(
        myself: &ActorRef<AcpMsg>,
        state: &mut AcpRuntimeState,
        sticky: &str,
    ) -> Result<SessionRef, ActorProcessingErr> {
        if let Some(s) = state.sessions.get(sticky) {
            return Ok(s.clone());
        }
        let session = if let Some(http) = &state.http {
            let args = HttpSessionArgs {
                runtime: myself.clone(),
                target: http.clone(),
                sticky: sticky.to_owned(),
                session_id: state.remote_sessions.get(sticky).cloned(),
                deps: state.deps.clone(),
            };
            let spawned =
                ractor::ActorRuntime::<HttpSession>::spawn_linked_instant(None, HttpSession, args, myself.get_cell());
            SessionRef::Http(spawned.map_err(|e| format!("session actor: {e}"))?.0)
        } else {
            let child = state.child.as_ref().ok_or("no agent process for a new session")?;
            let conn = child.conn.clone().ok_or("stdio runtime without a connection")?;
            let args = AcpSessionArgs {
                runtime: myself.clone(),
                conn,
                pgid: child.pgid,
                dialect: state.dialect,
                target_id: state.target.target_id.clone(),
                subcontext: state.subcontext.clone(),
                sticky: sticky.to_owned(),
                load_session: state.load_session,
                cwd: state.command.cwd.clone(),
                policy: state.target.permissions.unwrap_or_default(),
                deps: state.deps.clone(),
            };
            let spawned =
                ractor::ActorRuntime::<AcpSession>::spawn_linked_instant(None, AcpSession, args, myself.get_cell());
            SessionRef::Stdio(spawned.map_err(|e| format!("session actor: {e}"))?.0)
        };
        state.sessions.insert(sticky.to_owned(), session.clone());
        Ok(session)
    }

    /// Launches now, after the crash backoff, or not at all (crash loop).
    fn ensure_launch(myself: &ActorRef<AcpMsg>, state: &mut AcpRuntimeState) {
        if state.phase != Phase::Down {
            return;
        }
        let now = Instant::now();
        if let Some(until) = state.launch_not_before.filter(|t| *t > now) {
            let generation = state.generation;
            myself.send_after(until - now, move || AcpMsg::Relaunch { generation });
            return;
        }
        Self::launch(myself, state);
    }

    fn schedule_idle_check(myself: &ActorRef<AcpMsg>, state: &AcpRuntimeState) {
        if let Some(ms) = state.target.launch.idle_timeout_ms {
            let generation = state.generation;
            myself.send_after(Duration::from_millis(ms.max(50)), move || AcpMsg::IdleTick { generation });
        }
    }
}

impl Actor for AcpRuntime {
    type Msg = AcpMsg;
    type State = AcpRuntimeState;
    type Arguments = AcpRuntimeArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<AcpMsg>,
        args: AcpRuntimeArgs,
    ) -> Result<AcpRuntimeState, ActorProcessingErr> {
        Ok(AcpRuntimeState {
            target: args.target,
            dialect: args.dialect,
            http: args.http,
            subcontext: args.subcontext,
            command: args.command,
            deps: args.deps,
            phase: Phase::Down,
            child: None,
            generation: 0,
            load_session: false,
            waiters: Vec::new(),
            sessions: HashMap::new(),
            remote_sessions: HashMap::new(),
            by_session_id: HashMap::new(),
            by_task: HashMap::new(),
            requeued: Vec::new(),
            restarts: RestartTracker::new(RestartPolicy::WORKER),
            launch_not_before: None,
            blocked_until: None,
            last_activity: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AcpMsg>,
        msg: AcpMsg,
        state: &mut AcpRuntimeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AcpMsg::Acquire(waiter, reply) => match state.phase {
                Phase::Ready => {
                    let _ = reply.send(Ok(handle_for(&myself, state, None)));
                }
                _ if state.target.launch.mode == LaunchMode::External
                    && state.phase == Phase::Down
                    && state.http.is_none() =>
                {
                    let _ = reply.send(Err(RuntimeError::Unavailable(format!(
                        "target {} is launch.mode external and its runtime is not connected (an ACP agent is reached through a process the node launches)",
                        state.target.target_id
                    ))));
                }
                Phase::Down if !waiter.launch_if_down => {
                    let _ = reply.send(Err(RuntimeError::Unavailable(
                        "launch_if_down=false and the runtime is not running".into(),
                    )));
                }
                Phase::Down if state.blocked_until.is_some_and(|t| t > Instant::now()) => {
                    let _ = reply.send(Err(RuntimeError::Unavailable(format!(
                        "runtime of {} is crash-looping (exited repeatedly); launches paused",
                        state.target.target_id
                    ))));
                }
                Phase::Down | Phase::Launching => {
                    // Checking an external server's health is not a launch: no launch events.
                    let spawns = state.http.is_none()
                        || (state.target.launch.mode != LaunchMode::External && !state.command.argv.is_empty());
                    if spawns {
                        waiter.phase(LaunchPhase::PendingLaunch);
                        if let (Phase::Launching, Some(child)) = (state.phase, &state.child) {
                            waiter.phase(LaunchPhase::Launching { pid: child.pid });
                        }
                    }
                    state.waiters.push((waiter, reply));
                    Self::ensure_launch(&myself, state);
                }
            },
            AcpMsg::Session(SessionMsg::Submit(d)) => Self::route_dispatch(&myself, state, *d)?,
            AcpMsg::Session(SessionMsg::Resume { task_id, generation, payload }) => {
                match state.by_task.get(&task_id).and_then(|(sticky, _, _)| state.sessions.get(sticky)) {
                    Some(session) => session.resume(task_id, generation, payload),
                    None => tracing::debug!(task_id = %task_id, "resume for a task with no session"),
                }
            }
            AcpMsg::Session(SessionMsg::Cancel { task_id, generation }) => {
                if let Some(pos) = state.requeued.iter().position(|d| d.task_id == task_id) {
                    let d = state.requeued.remove(pos);
                    report(
                        &d.reply_to,
                        generation,
                        vec![AdapterEvent::Cancelled { message: "Cancelled before the agent started it".into() }],
                    );
                } else if let Some(session) =
                    state.by_task.get(&task_id).and_then(|(sticky, _, _)| state.sessions.get(sticky))
                {
                    session.cancel(task_id, generation);
                }
            }
            AcpMsg::Session(SessionMsg::Attach { dispatch, remote, awaiting }) => {
                if state.phase != Phase::Ready || state.http.is_none() {
                    dispatch.report(vec![AdapterEvent::Failed {
                        reason: "interrupted".into(),
                        detail: Some("the runtime went down before the task could re-attach".into()),
                        message: "Task interrupted by node restart".into(),
                    }]);
                    return Ok(());
                }
                // Each re-attached run gets a session actor of its own: several interrupted runs
                // of one conversation are followed at once (they already run on the server).
                let sticky = format!("reattach:{}", dispatch.task_id);
                state
                    .by_task
                    .insert(dispatch.task_id.clone(), (sticky.clone(), dispatch.reply_to.clone(), dispatch.generation));
                if let SessionRef::Http(session) = Self::session_for(&myself, state, &sticky)? {
                    let _ = session.cast(HttpSessionMsg::Attach { dispatch, remote, awaiting });
                }
            }
            AcpMsg::Session(SessionMsg::Finished { .. }) => {}
            AcpMsg::Healthy { generation, result }
                if generation == state.generation && state.phase == Phase::Launching =>
            {
                match result {
                    Ok(took) => {
                        let ready_ms = Some(took.as_secs_f64() * 1e3);
                        let url = state.http.as_ref().map(|h| h.healthcheck.clone()).unwrap_or_default();
                        Self::became_ready(&myself, state, ready_ms, &url)?;
                    }
                    Err(e) => {
                        let tail = state.child.as_ref().map(|c| c.stderr.text()).unwrap_or_default();
                        let detail = format!(
                            "runtime not healthy within {} ms: {e}{}",
                            launch_timeout(&state.target).as_millis(),
                            if tail.is_empty() { String::new() } else { format!("; output: {tail}") }
                        );
                        tracing::error!(actor_kind = "runtime", target_id = %state.target.target_id, error = %detail, "runtime launch failed");
                        Self::take_down(state, "failed", &detail, None);
                        Self::fail_waiters(state, RuntimeError::LaunchFailed(detail));
                    }
                }
            }
            AcpMsg::Healthy { .. } => {}
            AcpMsg::Incoming { generation, msg } if generation == state.generation => on_incoming(state, msg),
            AcpMsg::Incoming { .. } => {}
            AcpMsg::Initialized { generation, result }
                if generation == state.generation && state.phase == Phase::Launching =>
            {
                match result {
                    Ok(value) => {
                        let caps = serde_json::from_value::<InitializeResponse>(value.clone()).ok();
                        state.load_session = caps.as_ref().is_some_and(|c| c.agent_capabilities.load_session);
                        let initialize_ms = state.child.as_ref().map(|c| c.spawned_at.elapsed().as_secs_f64() * 1e3);
                        let agent = value.get("agentInfo").map(|v| v.to_string()).unwrap_or_default();
                        Self::became_ready(&myself, state, initialize_ms, &agent)?;
                    }
                    Err(RpcError::Closed(_)) => {
                        // The process died before answering: ChildExited reports it with its status.
                    }
                    Err(e) => {
                        let tail = state.child.as_ref().map(|c| c.stderr.text()).unwrap_or_default();
                        let detail = format!(
                            "initialize failed: {e}{}",
                            if tail.is_empty() { String::new() } else { format!("; stderr: {tail}") }
                        );
                        tracing::error!(actor_kind = "runtime", target_id = %state.target.target_id, error = %detail, "runtime launch failed");
                        Self::take_down(state, "failed", &detail, None);
                        Self::fail_waiters(state, RuntimeError::LaunchFailed(detail));
                    }
                }
            }
            AcpMsg::Initialized { .. } => {}
            AcpMsg::LaunchDeadline { generation }
                if generation == state.generation && state.phase == Phase::Launching =>
            {
                let tail = state.child.as_ref().map(|c| c.stderr.text()).unwrap_or_default();
                let detail = format!(
                    "runtime did not answer initialize within {} ms{}",
                    launch_timeout(&state.target).as_millis(),
                    if tail.is_empty() { String::new() } else { format!("; stderr: {tail}") }
                );
                tracing::error!(actor_kind = "runtime", target_id = %state.target.target_id, error = %detail, "runtime launch timed out");
                Self::take_down(state, "failed", &detail, None);
                Self::fail_waiters(state, RuntimeError::LaunchFailed(detail));
            }
            AcpMsg::LaunchDeadline { .. } => {}
            AcpMsg::ChildExited { generation, status, exit_code }
                if generation == state.generation && state.child.is_some() =>
            {
                let tail = state.child.as_ref().map(|c| c.stderr.text()).unwrap_or_default();
                let pid = state.child.as_ref().map_or(0, |c| c.pid);
                if state.phase == Phase::Launching {
                    let detail = format!(
                        "runtime exited before answering initialize ({status}){}",
                        if tail.is_empty() { String::new() } else { format!("; stderr: {tail}") }
                    );
                    tracing::error!(actor_kind = "runtime", target_id = %state.target.target_id, pid, error = %detail, "runtime launch failed");
                    Self::take_down(state, "failed", &detail, exit_code);
                    Self::fail_waiters(state, RuntimeError::LaunchFailed(detail));
                    return Ok(());
                }
                let reason = format!("runtime exited unexpectedly ({status})");
                let has_work = !state.by_task.is_empty() || !state.waiters.is_empty();
                Self::take_down(state, "exited", &reason, exit_code);
                match state.restarts.on_failure(Instant::now(), jitter()) {
                    RestartDecision::Restart { attempt, backoff } => {
                        tracing::warn!(
                            actor_kind = "runtime", target_id = %state.target.target_id, subcontext = %state.subcontext, pid,
                            exit = %status, stderr_tail = %tail, attempt, backoff_ms = backoff.as_millis() as u64,
                            "runtime exited unexpectedly; restarting on demand"
                        );
                        state.launch_not_before = Some(Instant::now() + backoff);
                        let eager =
                            state.target.launch.mode == LaunchMode::Managed && (has_work || !state.requeued.is_empty());
                        if eager || !state.requeued.is_empty() {
                            Self::ensure_launch(&myself, state);
                        }
                    }
                    RestartDecision::Escalate { failures } => {
                        tracing::error!(
                            actor_kind = "runtime", target_id = %state.target.target_id, pid, exit = %status, failures,
                            "runtime crash loop: launches paused"
                        );
                        state.blocked_until = Some(Instant::now() + RestartPolicy::WORKER.window);
                        Self::fail_waiters(
                            state,
                            RuntimeError::Unavailable(format!(
                                "runtime exited {failures} times within {:?}",
                                RestartPolicy::WORKER.window
                            )),
                        );
                    }
                }
            }
            AcpMsg::ChildExited { .. } => {}
            AcpMsg::Relaunch { generation } if generation == state.generation => {
                if state.phase == Phase::Down && (!state.waiters.is_empty() || !state.requeued.is_empty()) {
                    state.launch_not_before = None;
                    Self::launch(&myself, state);
                }
            }
            AcpMsg::Relaunch { .. } => {}
            AcpMsg::SessionProbe { sticky, reply } => {
                let up = state.phase == Phase::Ready;
                let _ = reply.send((up, up && state.sessions.contains_key(&sticky), state.load_session));
            }
            AcpMsg::ToSession { sticky, msg } => {
                if let Some(SessionRef::Stdio(session)) = state.sessions.get(&sticky) {
                    let _ = session.cast(*msg);
                }
            }
            AcpMsg::SessionBound { sticky, session_id } => {
                if state.http.is_some() {
                    state.remote_sessions.insert(sticky.clone(), session_id.clone());
                }
                state.by_session_id.insert(session_id, sticky);
            }
            AcpMsg::TurnEnded { task_id } => {
                let sticky = state.by_task.remove(&task_id).map(|(s, _, _)| s);
                state.last_activity = Instant::now();
                // An HTTP session holds nothing but the server's session id, which this actor
                // keeps: retire it once its scope has no task left (none is routed to it then).
                if let Some(sticky) = sticky
                    && state.http.is_some()
                    && !state.by_task.values().any(|(s, _, _)| *s == sticky)
                    && let Some(SessionRef::Http(session)) = state.sessions.remove(&sticky)
                {
                    let _ = session.cast(HttpSessionMsg::Retire);
                }
            }
            AcpMsg::Requeue(dispatches) => {
                if dispatches.is_empty() {
                    return Ok(());
                }
                state.requeued.extend(dispatches);
                if state.phase == Phase::Ready {
                    for d in std::mem::take(&mut state.requeued) {
                        Self::route_dispatch(&myself, state, d)?;
                    }
                } else {
                    Self::ensure_launch(&myself, state);
                }
            }
            AcpMsg::Stop { reason, reply } => {
                if state.child.is_none() && state.http.is_some() && state.phase != Phase::Down {
                    // Not our process: forget it; the next task health-checks it again.
                    Self::take_down(state, "stopped", &format!("runtime stopped: {reason}"), None);
                    Self::fail_waiters(state, RuntimeError::Unavailable(format!("runtime stopped: {reason}")));
                }
                if state.child.is_some() {
                    tracing::info!(actor_kind = "runtime", target_id = %state.target.target_id, subcontext = %state.subcontext, %reason, "runtime stopping");
                    let pgid = state.child.as_ref().map_or(0, |c| c.pgid);
                    Self::take_down(state, "stopped", &format!("runtime stopped: {reason}"), None);
                    Self::fail_waiters(state, RuntimeError::Unavailable(format!("runtime stopped: {reason}")));
                    process::kill_group(pgid, process::KILL_GRACE).await;
                }
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            AcpMsg::IdleTick { generation } if generation == state.generation && state.phase == Phase::Ready => {
                let idle = state.target.launch.idle_timeout_ms.map(Duration::from_millis);
                if let Some(limit) = idle {
                    if state.by_task.is_empty() && state.last_activity.elapsed() >= limit {
                        let _ = myself
                            .cast(AcpMsg::Stop { reason: format!("idle for {} ms", limit.as_millis()), reply: None });
                    } else {
                        Self::schedule_idle_check(&myself, state);
                    }
                }
            }
            AcpMsg::IdleTick { .. } => {}
            AcpMsg::Health(reply) => {
                let _ = reply.send(RuntimeHealth {
                    target_id: state.target.target_id.clone(),
                    subcontext_key: state.subcontext.clone(),
                    healthy: state.phase == Phase::Ready,
                    lease_id: state.child.as_ref().map(|c| c.launch_id.clone()),
                    process_id: state.child.as_ref().map(|c| c.pid),
                    state: match state.phase {
                        Phase::Down => "down",
                        Phase::Launching => "launching",
                        Phase::Ready => "up",
                    },
                    tasks_in_flight: state.by_task.len(),
                });
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<AcpMsg>,
        evt: SupervisionEvent,
        state: &mut AcpRuntimeState,
    ) -> Result<(), ActorProcessingErr> {
        // Session actors are temporary: a failed one fails its tasks; it is created again on the
        // next task for its scope.
        if let SupervisionEvent::ActorFailed(cell, err) = evt {
            let sticky = state.sessions.iter().find(|(_, s)| s.id() == cell.get_id()).map(|(k, _)| k.clone());
            if let Some(sticky) = sticky {
                tracing::error!(actor_kind = "acp_session", target_id = %state.target.target_id, %sticky, error = %err, "session actor failed");
                state.sessions.remove(&sticky);
                state.by_session_id.retain(|_, s| *s != sticky);
                let failed: Vec<String> =
                    state.by_task.iter().filter(|(_, (s, _, _))| *s == sticky).map(|(t, _)| t.clone()).collect();
                for task_id in failed {
                    if let Some((_, task, generation)) = state.by_task.remove(&task_id) {
                        report(
                            &task,
                            generation,
                            vec![AdapterEvent::Failed {
                                reason: "session_failed".into(),
                                detail: Some(err.to_string()),
                                message: "Session failed".into(),
                            }],
                        );
                    }
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AcpMsg>,
        state: &mut AcpRuntimeState,
    ) -> Result<(), ActorProcessingErr> {
        let pgid = state.child.as_ref().map(|c| c.pgid);
        Self::take_down(state, "stopped", "node shutting down", None);
        Self::fail_waiters(state, RuntimeError::Unavailable("node shutting down".into()));
        if let Some(pgid) = pgid {
            process::kill_group(pgid, process::KILL_GRACE).await;
        }
        Ok(())
    }
}

fn on_incoming(state: &mut AcpRuntimeState, msg: Incoming) {
    let Some(child) = &state.child else { return };
    let Some(conn) = &child.conn else { return };
    let session_of = |params: &Value| -> Option<ActorRef<AcpSessionMsg>> {
        let sid = params.get("sessionId").and_then(Value::as_str)?;
        match state.by_session_id.get(sid).and_then(|sticky| state.sessions.get(sticky)) {
            Some(SessionRef::Stdio(s)) => Some(s.clone()),
            _ => None,
        }
    };
    match msg {
        Incoming::Notification { method, params } if method == "session/update" => match session_of(&params) {
            Some(session) => {
                let _ = session.cast(AcpSessionMsg::Update(params));
            }
            None => tracing::debug!(target_id = %state.target.target_id, "session/update for an unknown session"),
        },
        Incoming::Notification { method, .. } => {
            tracing::debug!(target_id = %state.target.target_id, %method, "ignored agent notification");
        }
        Incoming::Request { id, method, params } if method == "session/request_permission" => match session_of(&params)
        {
            Some(session) => {
                let _ = session.cast(AcpSessionMsg::Permission { id, params });
            }
            None => conn.respond(&id, json!({"outcome": {"outcome": "cancelled"}})),
        },
        Incoming::Request { id, method, .. } => {
            tracing::info!(actor_kind = "runtime", target_id = %state.target.target_id, %method, "refused an agent request this client does not offer");
            conn.respond_error(&id, -32601, &format!("method not supported by this client: {method}"));
        }
        Incoming::Response { .. } => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Session actor
// ---------------------------------------------------------------------------------------------

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
    pub runtime: ActorRef<AcpMsg>,
    pub conn: RpcConn,
    pub pgid: i32,
    pub dialect: Dialect,
    pub target_id: String,
    pub subcontext: String,
    pub sticky: String,
    pub load_session: bool,
    pub cwd: PathBuf,
    pub policy: PermissionPolicy,
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
    args: AcpSessionArgs,
    /// The agent's session id once created or loaded.
    session_id: Option<String>,
    /// Prompts waiting their turn (creation order) and the turn being run.
    work: SessionQueue<Turn>,
}

/// One ACP session (sticky scope).
pub struct AcpSession;

/// What a `session/update` means for the task. Pure.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateEffect {
    /// Agent message text.
    Text(String),
    /// A running event.
    Event { message: String, data: JsonObject },
    /// Nothing to report (thoughts, usage, modes, commands, unknown variants).
    Ignore,
}

/// Maps `session/update` params to their effect. Unknown `sessionUpdate` variants and unknown
/// fields are tolerated (ignored), never an error.
pub fn map_update(params: &Value) -> UpdateEffect {
    let update = params.get("update").cloned().unwrap_or(Value::Null);
    let raw = match &update {
        Value::Object(o) => o.clone(),
        _ => return UpdateEffect::Ignore,
    };
    let Ok(n) = serde_json::from_value::<SessionNotification>(params.clone()) else {
        return UpdateEffect::Ignore;
    };
    let title = |raw: &JsonObject| raw.get("title").and_then(Value::as_str).map(str::to_owned);
    match n.update {
        SessionUpdate::AgentMessageChunk(chunk) => match chunk.content {
            ContentBlock::Text(t) => UpdateEffect::Text(t.text),
            _ => UpdateEffect::Ignore,
        },
        SessionUpdate::ToolCall(_) => UpdateEffect::Event {
            message: format!("Tool call: {}", title(&raw).unwrap_or_else(|| "(untitled)".into())),
            data: [("tool_call".to_owned(), Value::Object(raw))].into_iter().collect(),
        },
        SessionUpdate::ToolCallUpdate(_) => {
            let status = raw.get("status").and_then(Value::as_str).unwrap_or("updated").to_owned();
            UpdateEffect::Event {
                message: format!("Tool call {status}"),
                data: [("tool_call_update".to_owned(), Value::Object(raw))].into_iter().collect(),
            }
        }
        SessionUpdate::Plan(_) => UpdateEffect::Event {
            message: "Plan".into(),
            data: [("plan".to_owned(), Value::Object(raw))].into_iter().collect(),
        },
        _ => UpdateEffect::Ignore,
    }
}

/// Sends a task its runtime events (nothing if there are none).
pub(super) fn emit(d: &Dispatch, events: Vec<AdapterEvent>) {
    d.report(events);
}

/// Cancels a task still waiting in a session's queue (its turn ends there); `false` if it is not
/// there.
pub(super) fn cancel_queued<T: QueueTurn<Work = Dispatch>>(
    work: &mut SessionQueue<T>,
    task_id: &str,
    runtime: &ActorRef<AcpMsg>,
) -> bool {
    let Some((d, event)) = work.cancel_waiting(task_id) else { return false };
    emit(&d, vec![event]);
    let _ = runtime.cast(AcpMsg::TurnEnded { task_id: d.task_id });
    true
}

impl QueueTurn for Turn {
    type Work = Dispatch;
    fn work(&self) -> &Dispatch {
        &self.dispatch
    }
}

impl AcpSession {
    fn start_next(myself: &ActorRef<AcpSessionMsg>, state: &mut AcpSessionState) {
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
            if load && let Ok(Some((sid, last))) = deps.reader.session_binding(&target, &sub, &sticky).await {
                let fresh = time::OffsetDateTime::parse(&last, &time::format_description::well_known::Rfc3339)
                    .map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds() < BINDING_FRESH.as_secs() as i64)
                    .unwrap_or(false);
                if fresh
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
        Self::start_next(myself, state);
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
        Ok(AcpSessionState { args, session_id: None, work: SessionQueue::default() })
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
                            reason: "submit_failed".into(),
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
                                ("options".to_owned(), Value::Array(options)),
                            ]
                            .into_iter()
                            .collect(),
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
                let (cancel_requested, text, display) = match state.work.current() {
                    Some(t) => (t.cancel_requested, t.text.trim().to_owned(), state.args.dialect.display()),
                    None => return Ok(()),
                };
                let events = match result {
                    Ok(v) => {
                        let stop = serde_json::from_value::<PromptResponse>(v.clone()).map(|r| r.stop_reason);
                        let stop_name = v.get("stopReason").and_then(Value::as_str).unwrap_or("unknown").to_owned();
                        match stop {
                            _ if cancel_requested => vec![AdapterEvent::Cancelled {
                                message: format!("{display} cancelled the task ({stop_name})"),
                            }],
                            Ok(StopReason::EndTurn) => vec![AdapterEvent::Completed {
                                message: format!("{display} completed the task"),
                                result: json!({"text": text, "stop_reason": "end_turn"}),
                            }],
                            Ok(StopReason::Cancelled) => {
                                vec![AdapterEvent::Cancelled { message: format!("{display} cancelled the task") }]
                            }
                            Ok(_) => vec![AdapterEvent::Failed {
                                reason: stop_name.clone(),
                                detail: Some(format!("the agent ended the turn with stopReason {stop_name}")),
                                message: format!("{display} stopped: {stop_name}"),
                            }],
                            Err(e) => vec![AdapterEvent::Failed {
                                reason: "prompt_failed".into(),
                                detail: Some(format!("unreadable prompt answer ({e}): {v}")),
                                message: "Unreadable prompt answer".into(),
                            }],
                        }
                    }
                    Err(_) if cancel_requested => {
                        vec![AdapterEvent::Cancelled { message: format!("{display} cancelled the task") }]
                    }
                    Err(RpcError::Closed(detail)) => vec![AdapterEvent::Failed {
                        reason: "runtime_exited".into(),
                        detail: Some(detail),
                        message: "Runtime exited during the turn".into(),
                    }],
                    Err(e) => vec![AdapterEvent::Failed {
                        reason: "prompt_failed".into(),
                        detail: Some(e.to_string()),
                        message: format!("{display} failed the prompt"),
                    }],
                };
                Self::end_turn(&myself, state, events);
            }
            AcpSessionMsg::PromptDone { .. } => {}
            AcpSessionMsg::RuntimeExited { reason } => {
                Self::flush(state);
                if let Some(t) = state.work.finish() {
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
        }
        Ok(())
    }
}

impl From<SessionMsg> for AcpMsg {
    fn from(msg: SessionMsg) -> Self {
        AcpMsg::Session(msg)
    }
}

impl TryFrom<AcpMsg> for SessionMsg {
    type Error = AcpMsg;

    fn try_from(msg: AcpMsg) -> Result<Self, AcpMsg> {
        match msg {
            AcpMsg::Session(m) => Ok(m),
            other => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_map_to_text_events_or_nothing() {
        let chunk = json!({"sessionId": "s", "update": {"content": {"type": "text", "text": "hi"}, "sessionUpdate": "agent_message_chunk"}});
        assert_eq!(map_update(&chunk), UpdateEffect::Text("hi".into()));
        let tool = json!({"sessionId": "s", "update": {"sessionUpdate": "tool_call", "toolCallId": "t1", "title": "Read", "kind": "read", "status": "pending", "extra": 1}});
        assert!(
            matches!(map_update(&tool), UpdateEffect::Event { message, data } if message == "Tool call: Read" && data["tool_call"]["extra"] == 1)
        );
        let plan = json!({"sessionId": "s", "update": {"sessionUpdate": "plan", "entries": [{"content": "a", "priority": "high", "status": "pending"}]}});
        assert!(matches!(map_update(&plan), UpdateEffect::Event { message, .. } if message == "Plan"));
        let unknown = json!({"sessionId": "s", "update": {"sessionUpdate": "compaction_update", "whatever": true}});
        assert_eq!(map_update(&unknown), UpdateEffect::Ignore);
        let thought = json!({"sessionId": "s", "update": {"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": "hmm"}}});
        assert_eq!(map_update(&thought), UpdateEffect::Ignore);
        assert_eq!(map_update(&json!({"sessionId": "s"})), UpdateEffect::Ignore);
    }
}
