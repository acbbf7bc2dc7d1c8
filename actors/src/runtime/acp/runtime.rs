//! The runtime actor of process-backed adapters (`acp` stdio agents and `acp_http` servers): one
//! per (target, subcontext), owning one process group. Its life (launch, readiness, crash,
//! relaunch, crash loop, idle stop, stop) is decided by the pure [`ProcessLifecycle`]; this actor
//! is the IO around it: spawning, `initialize` or the health check, the exit watcher, launch
//! history and leases, signals (always in spawned tasks), and routing task traffic and the
//! agent's messages to the session actors by sticky scope and `sessionId`. Requests we do not
//! offer (`fs/*`, `terminal/*`, …) are answered with a JSON-RPC error at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agent_client_protocol_schema::v1::InitializeResponse;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::session::{AcpSession, AcpSessionArgs, AcpSessionMsg};
use super::updates::{is_structured, structured_session_id};
use crate::clock;
use crate::ids;
use crate::model::{FailureReason, JsonObject, LaunchMode, TargetSpec};
use crate::port::{
    AdapterEvent, Dispatch, RuntimeError, RuntimeHandle, SessionMsg, SessionPort, TaskReplyTo, Waiter, report,
};
use crate::restart::jitter;
use crate::runtime::RuntimeDeps;
use crate::runtime::acp_http::{HttpSession, HttpSessionArgs, HttpSessionMsg};
use crate::runtime::dialect::{Dialect, StickyInput};
use crate::runtime::http::{self, HttpTarget};
use crate::runtime::jsonrpc::{Incoming, RpcConn, RpcError};
use crate::runtime::lifecycle::{
    Effect, EndStatus, Kill, LaunchFailure, LifecycleConfig, Phase, ProcessExit, ProcessLifecycle, WaiterId,
};
use crate::runtime::process::{self, LaunchCommand, StderrTail};
use crate::runtime::{LastExit, TargetHealth};
use crate::storage::{LaunchRecord, WriteOp};
use crate::telemetry;

/// Default bound on a launch (spawn → `initialize` answered); slow agents (OpenClaw) need ~40 s.
pub const DEFAULT_LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Messages of the ACP runtime actor.
pub enum AcpMsg {
    /// Get this runtime ready for a task (or for `POST /v1/targets/{id}/start`);
    /// `initialize_timeout`: the acquisition's `initialize_timeout_ms` ([`initialize_timeout_of`]).
    Acquire {
        waiter: Waiter,
        initialize_timeout: Option<Duration>,
        reply: RpcReplyPort<Result<RuntimeHandle, RuntimeError>>,
    },
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
    ChildExited { generation: u64, status: String, exit_code: Option<i32>, signal: Option<i32> },
    /// A launch did not become ready in time.
    LaunchDeadline { generation: u64 },
    /// `initialize` of incarnation `generation` was not answered within `initialize_timeout_ms`.
    InitializeDeadline { generation: u64 },
    /// Relaunch after a crash backoff.
    Relaunch { generation: u64 },
    /// A session bound its remote id (route its notifications to it).
    SessionBound { sticky: String, session_id: String },
    /// A task's turn ended on its session.
    TurnEnded { task_id: String },
    /// Dispatches a dying session had not started.
    Requeue(Vec<Dispatch>),
    /// Stop the process (API stop, idle timeout); replies when it is gone. The kill runs in a
    /// spawned task, never in this actor's handler.
    Stop { reason: String, reply: Option<RpcReplyPort<()>> },
    /// The process group of a stopped incarnation `generation` is gone.
    Killed { generation: u64 },
    /// Idle check.
    IdleTick { generation: u64 },
    /// Report health.
    Health(RpcReplyPort<TargetHealth>),
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
    /// The target (launch spec, permissions, idle timeout).
    pub target: TargetSpec,
    /// Stdio family (HTTP targets: `Acp`).
    pub dialect: Dialect,
    /// Set for `acp_http` targets: the runtime is an HTTP server, ready when its health check
    /// answers, and its sessions are [`HttpSession`]s. An empty `command` argv means the server
    /// is not ours to start (`launch.mode: external`, or no command): only health-checked.
    pub http: Option<Arc<HttpTarget>>,
    /// Which of the target's processes this is.
    pub subcontext: String,
    /// What to run, with env and absolute cwd.
    pub command: LaunchCommand,
    /// Storage, reads and the cancel grace.
    pub deps: Arc<RuntimeDeps>,
}

/// The live agent process.
struct Child {
    /// When the process was spawned (for `initialize_ms`).
    spawned_at: Instant,
    /// Reported to tasks and health.
    pid: u32,
    /// Signalled on stop (the whole group, so helpers go too).
    pgid: i32,
    /// The JSON-RPC connection (stdio agents only).
    conn: Option<RpcConn>,
    /// Held open for HTTP servers, which do not read it: some exit when stdin closes.
    _stdin: Option<tokio::process::ChildStdin>,
    /// Last stderr lines, for launch errors and exit reports.
    stderr: StderrTail,
    /// Launch history row and lease id.
    launch_id: String,
    /// The launch was recorded ready (its end is then an exit, not a failed launch).
    ready: bool,
    /// Kills the group if the node dies; dropped only after the group was stopped the graceful
    /// way (dropping it kills the group at once).
    keeper: Option<process::GroupKeeper>,
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

/// State of the runtime actor.
pub struct AcpRuntimeState {
    /// The target as acquired (launch spec, permissions, idle timeout).
    target: TargetSpec,
    /// Stdio family: argv, sticky keys, binding names.
    dialect: Dialect,
    /// HTTP runtime configuration (`acp_http` targets); `None` for stdio agents.
    http: Option<Arc<HttpTarget>>,
    /// Which of the target's processes this is (launch history, bindings).
    subcontext: String,
    /// What to run (argv empty: an external HTTP server, only health-checked).
    command: LaunchCommand,
    /// Storage, reads and the cancel grace (handed to sessions).
    deps: Arc<RuntimeDeps>,
    /// Launch, readiness, crash, relaunch and stop decisions.
    life: ProcessLifecycle<Dispatch>,
    /// The agent process, while it runs.
    child: Option<Child>,
    /// The agent advertised `loadSession` (stdio).
    load_session: bool,
    /// Acquisitions waiting for the runtime, by the id the lifecycle knows them by.
    waiters: HashMap<WaiterId, (Waiter, RpcReplyPort<Result<RuntimeHandle, RuntimeError>>)>,
    /// Next waiter id.
    next_waiter: WaiterId,
    /// Stop requests answered once the process group is gone.
    stop_replies: Vec<RpcReplyPort<()>>,
    /// How the latest process ended (target health).
    last_exit: Option<LastExit>,
    /// Wall-clock end of the latest crash-loop pause (RFC 3339), fixed when it began.
    paused_until: Option<String>,
    /// Session actors by sticky key.
    sessions: HashMap<String, SessionRef>,
    /// HTTP runtimes: the server's session id of each sticky scope, kept when its idle session
    /// actor retires so the conversation's next task continues it.
    remote_sessions: HashMap<String, String>,
    /// Sticky key of each bound remote session id (notification routing).
    by_session_id: HashMap<String, String>,
    /// Sticky key of each task submitted here, with its task actor (for failure fan-out).
    by_task: HashMap<String, (String, TaskReplyTo, u64)>,
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

/// `initialize_timeout_ms` of a task's merged options (target `defaults`, then its
/// `runtime_options`): a positive JSON integer, else none (contract §5.2: numeric options given
/// as strings are ignored). It bounds each `initialize`; a timeout kills the process and
/// relaunches it once.
pub fn initialize_timeout_of(options: &JsonObject) -> Option<Duration> {
    options.get("initialize_timeout_ms").and_then(Value::as_u64).filter(|ms| *ms > 0).map(Duration::from_millis)
}

fn tail_of(state: &AcpRuntimeState) -> String {
    state.child.as_ref().map(|c| c.stderr.text()).unwrap_or_default()
}

impl AcpRuntime {
    /// Carries out what the lifecycle decided (effects may lead to more effects).
    fn run(
        myself: &ActorRef<AcpMsg>,
        state: &mut AcpRuntimeState,
        effects: Vec<Effect<Dispatch>>,
    ) -> Result<(), ActorProcessingErr> {
        let mut todo: std::collections::VecDeque<Effect<Dispatch>> = effects.into();
        while let Some(effect) = todo.pop_front() {
            match effect {
                Effect::Tell { waiter, phase } => {
                    if let Some((w, _)) = state.waiters.get(&waiter) {
                        w.phase(phase);
                    }
                }
                Effect::Grant { waiters, ready_ms } => {
                    for id in waiters {
                        if let Some((_, reply)) = state.waiters.remove(&id) {
                            let _ = reply.send(Ok(handle_for(myself, state, ready_ms)));
                        }
                    }
                }
                Effect::Refuse { waiters, dispatches, error } => {
                    for id in waiters {
                        if let Some((_, reply)) = state.waiters.remove(&id) {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                    for d in dispatches {
                        d.report(vec![AdapterEvent::Failed {
                            reason: error.reason().to_owned(),
                            detail: Some(error.to_string()),
                            message: "Runtime could not be started".into(),
                        }]);
                    }
                }
                Effect::Launch { generation, initialize_timeout } => {
                    todo.extend(Self::launch(myself, state, generation, initialize_timeout));
                }
                Effect::RelaunchIn { generation, after } => {
                    myself.send_after(after, move || AcpMsg::Relaunch { generation });
                }
                Effect::Route(dispatches) => {
                    for d in dispatches {
                        Self::route(myself, state, d)?;
                    }
                }
                Effect::TakeDown { status, reason, exit_code, kill } => {
                    Self::take_down(myself, state, status, &reason, exit_code, kill);
                }
                Effect::Recorded => {
                    if let Some(child) = &mut state.child {
                        child.ready = true;
                        let adapter = state.target.adapter.clone();
                        metrics::counter!(telemetry::RUNTIME_LAUNCHES, "adapter" => adapter, "outcome" => "ready")
                            .increment(1);
                        metrics::histogram!(telemetry::RUNTIME_LAUNCH_DURATION)
                            .record(child.spawned_at.elapsed().as_secs_f64());
                        state.deps.write_in_background(WriteOp::LaunchEnded {
                            launch_id: child.launch_id.clone(),
                            status: "ready".into(),
                            exit_code: None,
                            error: None,
                            release_lease: false,
                        });
                    }
                }
                Effect::IdleCheckIn { generation, after } => {
                    myself.send_after(after, move || AcpMsg::IdleTick { generation });
                }
                // Logged where the exit is known (with its pid, status and stderr).
                Effect::Restarting { .. } | Effect::CrashLoop { .. } => {}
                Effect::Stopped => {
                    for reply in state.stop_replies.drain(..) {
                        let _ = reply.send(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts incarnation `generation`: spawns the process and starts `initialize` (stdio,
    /// bounded by `initialize_timeout` if set, and by the launch timeout) or the health check
    /// (HTTP). Waiters stay queued until it answers.
    fn launch(
        myself: &ActorRef<AcpMsg>,
        state: &mut AcpRuntimeState,
        generation: u64,
        initialize_timeout: Option<Duration>,
    ) -> Vec<Effect<Dispatch>> {
        let spawned_at = Instant::now();
        let ours = state.http.is_none()
            || (state.target.launch.mode != LaunchMode::External && !state.command.argv.is_empty());
        if !ours {
            if let Some(http) = &state.http {
                tracing::info!(actor_kind = "runtime", target_id = %state.target.target_id, url = %http.healthcheck, "checking an external runtime's health");
            }
            Self::check_health(myself, state, generation, spawned_at);
            return Vec::new();
        }
        let target_id = state.target.target_id.clone();
        let spawned = match process::spawn(&state.command, &target_id) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(actor_kind = "runtime", target_id = %target_id, subcontext = %state.subcontext, error = %e, "runtime launch failed");
                return state.life.spawn_failed(e.to_string());
            }
        };
        let launch_id = Self::record_spawn(state, &spawned, generation);
        let process::Spawned { child, pid, pgid, stdin, stdout, stderr_tail, stderr_done, keeper } = spawned;
        Self::watch_exit(myself, generation, child, stderr_done);
        if state.http.is_some() {
            process::log_stdout(stdout, stderr_tail.clone(), &target_id, pid);
            state.child = Some(Child {
                spawned_at,
                pid,
                pgid,
                conn: None,
                _stdin: Some(stdin),
                stderr: stderr_tail,
                launch_id,
                ready: false,
                keeper,
            });
            Self::check_health(myself, state, generation, spawned_at);
            return state.life.spawned(pid);
        }
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
        if let Some(bound) = initialize_timeout {
            myself.send_after(bound, move || AcpMsg::InitializeDeadline { generation });
        }
        state.child = Some(Child {
            spawned_at,
            pid,
            pgid,
            conn: Some(conn),
            _stdin: None,
            stderr: stderr_tail,
            launch_id,
            ready: false,
            keeper,
        });
        state.life.spawned(pid)
    }

    /// HTTP runtimes: polls the health check until it answers 2xx or the launch timeout passes.
    fn check_health(myself: &ActorRef<AcpMsg>, state: &AcpRuntimeState, generation: u64, spawned_at: Instant) {
        let Some(h) = &state.http else { return };
        let (client, url, me) = (h.client.clone(), h.healthcheck.clone(), myself.clone());
        let deadline = spawned_at + launch_timeout(&state.target);
        tokio::spawn(async move {
            let result = http::wait_healthy(&client, &url, deadline).await;
            let _ = me.cast(AcpMsg::Healthy { generation, result });
        });
    }

    /// Records a spawned process (launch history, lease).
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
            generation, command = %state.command.argv.join(" "), "runtime launching"
        );
        metrics::gauge!(telemetry::RUNTIMES_LIVE).increment(1.0);
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
            let (status, exit_code, signal) = match status {
                Ok(s) => (process::describe_exit(&s), s.code(), std::os::unix::process::ExitStatusExt::signal(&s)),
                Err(e) => (format!("wait failed: {e}"), None, None),
            };
            let _ = me_exit.cast(AcpMsg::ChildExited { generation, status, exit_code, signal });
        });
    }

    /// Ends the current process: records it, kills its group in a spawned task (reporting back
    /// for a stop), and fails or re-queues the work on it (through its sessions).
    fn take_down(
        myself: &ActorRef<AcpMsg>,
        state: &mut AcpRuntimeState,
        status: EndStatus,
        reason: &str,
        exit_code: Option<i32>,
        kill: Kill,
    ) {
        match status {
            EndStatus::Failed => {
                tracing::error!(actor_kind = "runtime", target_id = %state.target.target_id, error = %reason, "runtime launch failed");
            }
            EndStatus::Stopped if state.child.is_some() => {
                tracing::info!(actor_kind = "runtime", target_id = %state.target.target_id, subcontext = %state.subcontext, %reason, "runtime stopping");
            }
            _ => {}
        }
        let pgid = state.child.as_ref().map(|c| c.pgid);
        let mut keeper = None;
        if let Some(mut child) = state.child.take() {
            keeper = child.keeper.take();
            metrics::gauge!(telemetry::RUNTIMES_LIVE).decrement(1.0);
            if !child.ready {
                let adapter = state.target.adapter.clone();
                metrics::counter!(telemetry::RUNTIME_LAUNCHES, "adapter" => adapter, "outcome" => status.as_str())
                    .increment(1);
            }
            let tail = child.stderr.text();
            state.deps.write_in_background(WriteOp::LaunchEnded {
                launch_id: child.launch_id,
                status: status.as_str().to_owned(),
                exit_code,
                error: Some(reason.to_owned())
                    .filter(|r| !r.is_empty())
                    .map(|r| if tail.is_empty() { r } else { format!("{r}; stderr: {tail}") }),
                release_lease: true,
            });
        }
        let me = myself.clone();
        tokio::spawn(async move {
            if let Some(pgid) = pgid {
                process::kill_group(pgid, process::KILL_GRACE).await;
            }
            // After the graceful kill: dropping the keeper earlier would SIGKILL the group at once.
            drop(keeper);
            if let Kill::Report { generation } = kill {
                let _ = me.cast(AcpMsg::Killed { generation });
            }
        });
        for (_, session) in state.sessions.drain() {
            session.runtime_exited(reason.to_owned());
        }
        // An external server keeps its sessions; a restarted managed one does not.
        if !(state.http.is_some() && state.command.argv.is_empty()) {
            state.remote_sessions.clear();
        }
        state.by_session_id.clear();
        state.by_task.clear();
    }

    /// Hands a dispatch to its session (the runtime is ready).
    fn route(myself: &ActorRef<AcpMsg>, state: &mut AcpRuntimeState, d: Dispatch) -> Result<(), ActorProcessingErr> {
        let sticky = Self::sticky_of(state, &d);
        state.by_task.insert(d.task_id.clone(), (sticky.clone(), d.reply_to.clone(), d.generation));
        let session = Self::session_for(myself, state, &sticky)?;
        session.submit(d);
        Ok(())
    }

    /// The sticky scope of a task: for HTTP runtimes an explicit `runtime_options.session_id`
    /// comes first, then as for stdio agents (thread, session key, conversation, task).
    fn sticky_of(state: &AcpRuntimeState, d: &Dispatch) -> String {
        if state.http.is_some()
            && let Some(sid) = http::explicit_session(&d.runtime_options)
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

    /// The session reuse prediction of thread inspection: (runtime up, a live session for
    /// `sticky`, a persisted binding would be continued). An HTTP scope continues the server
    /// session its runtime remembers, or a persisted binding (< 1 h); a stdio agent needs
    /// `loadSession` for the latter.
    fn probe(state: &AcpRuntimeState, sticky: &str) -> (bool, bool, bool) {
        let up = state.life.is_ready();
        let live =
            state.sessions.contains_key(sticky) || (state.http.is_some() && state.remote_sessions.contains_key(sticky));
        let loadable = if state.http.is_some() { true } else { state.load_session };
        (up, up && live, loadable)
    }

    /// Logs what a process exit led to.
    fn log_exit(state: &AcpRuntimeState, effects: &[Effect<Dispatch>], pid: u32, exit: &ProcessExit<'_>) {
        for effect in effects {
            match effect {
                Effect::Restarting { attempt, backoff } => tracing::warn!(
                    actor_kind = "runtime", target_id = %state.target.target_id, subcontext = %state.subcontext, pid,
                    exit = %exit.status, exit_code = exit.exit_code, stderr_tail = %exit.tail, attempt,
                    backoff_ms = backoff.as_millis() as u64, "runtime exited unexpectedly; restarting on demand"
                ),
                Effect::CrashLoop { failures } => tracing::error!(
                    actor_kind = "runtime", target_id = %state.target.target_id, pid, exit = %exit.status,
                    exit_code = exit.exit_code, failures,
                    paused_until = state.paused_until.as_deref().unwrap_or(""),
                    "runtime crash loop: launches paused"
                ),
                _ => {}
            }
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
        let launch = &args.target.launch;
        let config = LifecycleConfig {
            target_id: args.target.target_id.clone(),
            // Checking an external server's health is not a launch: no launch events.
            spawns: args.http.is_none() || (launch.mode != LaunchMode::External && !args.command.argv.is_empty()),
            unreachable_external: args.http.is_none() && launch.mode == LaunchMode::External,
            eager_relaunch: launch.mode == LaunchMode::Managed,
            launch_timeout: launch_timeout(&args.target),
            idle_timeout: launch.idle_timeout_ms.map(Duration::from_millis),
        };
        Ok(AcpRuntimeState {
            life: ProcessLifecycle::new(config, Instant::now()),
            target: args.target,
            dialect: args.dialect,
            http: args.http,
            subcontext: args.subcontext,
            command: args.command,
            deps: args.deps,
            child: None,
            load_session: false,
            waiters: HashMap::new(),
            next_waiter: 0,
            stop_replies: Vec::new(),
            last_exit: None,
            paused_until: None,
            sessions: HashMap::new(),
            remote_sessions: HashMap::new(),
            by_session_id: HashMap::new(),
            by_task: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AcpMsg>,
        msg: AcpMsg,
        state: &mut AcpRuntimeState,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        let effects = match msg {
            AcpMsg::Acquire { waiter, initialize_timeout, reply } => {
                state.next_waiter += 1;
                let id = state.next_waiter;
                let launch_if_down = waiter.launch_if_down;
                if waiter.force && state.life.clear_pause() {
                    state.paused_until = None;
                    tracing::info!(
                        actor_kind = "runtime", target_id = %state.target.target_id, subcontext = %state.subcontext,
                        "crash-loop pause cleared (forced start)"
                    );
                }
                state.waiters.insert(id, (waiter, reply));
                // HTTP servers answer no `initialize`.
                let initialize_timeout = initialize_timeout.filter(|_| state.http.is_none());
                state.life.acquire(now, id, launch_if_down, initialize_timeout)
            }
            AcpMsg::Session(SessionMsg::Submit(d)) => state.life.submit(now, *d),
            AcpMsg::Session(SessionMsg::Resume { task_id, generation, payload }) => {
                match state.by_task.get(&task_id).and_then(|(sticky, _, _)| state.sessions.get(sticky)) {
                    Some(session) => session.resume(task_id, generation, payload),
                    None => tracing::debug!(task_id = %task_id, "resume for a task with no session"),
                }
                Vec::new()
            }
            AcpMsg::Session(SessionMsg::Cancel { task_id, generation }) => {
                if let Some(d) = state.life.cancel_requeued(&task_id) {
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
                Vec::new()
            }
            AcpMsg::Session(SessionMsg::Attach { dispatch, remote, awaiting }) => {
                if !state.life.is_ready() || state.http.is_none() {
                    dispatch.report(vec![AdapterEvent::Failed {
                        reason: FailureReason::Interrupted,
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
                Vec::new()
            }
            AcpMsg::Session(SessionMsg::Finished { .. }) => Vec::new(),
            AcpMsg::Healthy { generation, result } => match result {
                Ok(took) => {
                    let ready_ms = Some(took.as_secs_f64() * 1e3);
                    let effects = state.life.ready(now, generation, ready_ms);
                    if !effects.is_empty() {
                        let url = state.http.as_ref().map(|h| h.healthcheck.clone()).unwrap_or_default();
                        Self::log_ready(state, ready_ms, &url);
                    }
                    effects
                }
                Err(e) => {
                    let tail = tail_of(state);
                    state.life.launch_failed(generation, LaunchFailure::Unhealthy(e), &tail)
                }
            },
            AcpMsg::Incoming { generation, msg } => {
                if generation == state.life.generation() {
                    on_incoming(state, msg);
                }
                Vec::new()
            }
            AcpMsg::Initialized { generation, result } => match result {
                Ok(value) => {
                    let initialize_ms = state.child.as_ref().map(|c| c.spawned_at.elapsed().as_secs_f64() * 1e3);
                    let load_session = serde_json::from_value::<InitializeResponse>(value.clone())
                        .ok()
                        .is_some_and(|c| c.agent_capabilities.load_session);
                    if generation == state.life.generation() && matches!(state.life.phase(), Phase::Launching { .. }) {
                        state.load_session = load_session;
                    }
                    let effects = state.life.ready(now, generation, initialize_ms);
                    if !effects.is_empty() {
                        let agent = value.get("agentInfo").map(|v| v.to_string()).unwrap_or_default();
                        Self::log_ready(state, initialize_ms, &agent);
                    }
                    effects
                }
                // The process died before answering: ChildExited reports it with its status.
                Err(RpcError::Closed(_)) => Vec::new(),
                Err(e) => {
                    let tail = tail_of(state);
                    state.life.launch_failed(generation, LaunchFailure::Initialize(e.to_string()), &tail)
                }
            },
            AcpMsg::LaunchDeadline { generation } => {
                let tail = tail_of(state);
                state.life.launch_failed(generation, LaunchFailure::Deadline, &tail)
            }
            AcpMsg::InitializeDeadline { generation } => {
                let tail = tail_of(state);
                let effects = state.life.launch_failed(generation, LaunchFailure::InitializeTimeout, &tail);
                if matches!(effects.last(), Some(Effect::Launch { .. })) {
                    tracing::warn!(
                        actor_kind = "runtime", target_id = %state.target.target_id, subcontext = %state.subcontext,
                        pid = state.child.as_ref().map(|c| c.pid), stderr_tail = %tail,
                        "runtime did not answer initialize in time; killing it and relaunching once"
                    );
                }
                effects
            }
            AcpMsg::ChildExited { generation, status, exit_code, signal } => {
                if generation == state.life.generation() {
                    state.last_exit =
                        Some(LastExit { status: status.clone(), exit_code, signal, at: clock::now_rfc3339() });
                }
                let tail = tail_of(state);
                let pid = state.child.as_ref().map_or(0, |c| c.pid);
                let exit = ProcessExit { status: &status, exit_code, tail: &tail };
                let effects = state.life.exited(now, generation, &exit, state.by_task.len(), jitter());
                if effects.iter().any(|e| matches!(e, Effect::CrashLoop { .. })) {
                    state.paused_until = Some(paused_until(state.life.blocked_until()));
                }
                Self::log_exit(state, &effects, pid, &exit);
                effects
            }
            AcpMsg::Relaunch { generation } => state.life.relaunch(generation),
            AcpMsg::SessionProbe { sticky, reply } => {
                let _ = reply.send(Self::probe(state, &sticky));
                Vec::new()
            }
            AcpMsg::ToSession { sticky, msg } => {
                if let Some(SessionRef::Stdio(session)) = state.sessions.get(&sticky) {
                    let _ = session.cast(*msg);
                }
                Vec::new()
            }
            AcpMsg::SessionBound { sticky, session_id } => {
                if state.http.is_some() {
                    state.remote_sessions.insert(sticky.clone(), session_id.clone());
                }
                state.by_session_id.insert(session_id, sticky);
                Vec::new()
            }
            AcpMsg::TurnEnded { task_id } => {
                let sticky = state.by_task.remove(&task_id).map(|(s, _, _)| s);
                state.life.touch(now);
                // An HTTP session holds nothing but the server's session id, which this actor
                // keeps: retire it once its scope has no task left (none is routed to it then).
                if let Some(sticky) = sticky
                    && state.http.is_some()
                    && !state.by_task.values().any(|(s, _, _)| *s == sticky)
                    && let Some(SessionRef::Http(session)) = state.sessions.remove(&sticky)
                {
                    let _ = session.cast(HttpSessionMsg::Retire);
                }
                Vec::new()
            }
            AcpMsg::Requeue(dispatches) => state.life.requeue(now, dispatches),
            AcpMsg::Stop { reason, reply } => {
                state.stop_replies.extend(reply);
                state.life.stop(&reason)
            }
            AcpMsg::Killed { generation } => state.life.killed(now, generation),
            AcpMsg::IdleTick { generation } => state.life.idle_tick(now, generation, state.by_task.len()),
            AcpMsg::Health(reply) => {
                let _ = reply.send(TargetHealth {
                    target_id: state.target.target_id.clone(),
                    subcontext_key: state.subcontext.clone(),
                    healthy: state.life.is_ready(),
                    lease_id: state.child.as_ref().map(|c| c.launch_id.clone()),
                    process_id: state.child.as_ref().map(|c| c.pid),
                    state: state.life.phase().health_state(),
                    tasks_in_flight: state.by_task.len(),
                    paused_until: state
                        .paused_until
                        .clone()
                        .filter(|_| state.life.blocked_until().is_some_and(|t| t > now)),
                    last_exit: state.last_exit.clone(),
                    dispatch_paused: false,
                    dispatch_paused_at: None,
                });
                Vec::new()
            }
        };
        Self::run(&myself, state, effects)
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
                                reason: FailureReason::SessionFailed,
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

    async fn post_stop(&self, myself: ActorRef<AcpMsg>, state: &mut AcpRuntimeState) -> Result<(), ActorProcessingErr> {
        // Shutdown waits for the group to be gone (this actor is stopping; nothing queues behind).
        let pgid = state.child.as_ref().map(|c| c.pgid);
        let effects = state.life.shutdown();
        Self::run(&myself, state, effects)?;
        if let Some(pgid) = pgid {
            process::kill_group(pgid, process::KILL_GRACE).await;
        }
        for reply in state.stop_replies.drain(..) {
            let _ = reply.send(());
        }
        Ok(())
    }
}

/// A monotonic deadline as wall-clock RFC 3339 (empty if none).
fn paused_until(until: Option<Instant>) -> String {
    until
        .map(|t| {
            let left = t.saturating_duration_since(Instant::now());
            clock::format_rfc3339(time::OffsetDateTime::now_utc() + left)
        })
        .unwrap_or_default()
}

impl AcpRuntime {
    fn log_ready(state: &AcpRuntimeState, ready_ms: Option<f64>, agent: &str) {
        tracing::info!(
            actor_kind = "runtime", target_id = %state.target.target_id, subcontext = %state.subcontext,
            pid = state.child.as_ref().map(|c| c.pid), load_session = state.load_session,
            ready_ms = ready_ms.map(|ms| ms.round() as u64), %agent, "runtime ready"
        );
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
        // Structured events name their session by `session_id` (or `sessionId`), whatever the
        // method; only dialects that have them (OpenClaw) read them.
        Incoming::Notification { params, .. } if state.dialect.structured_events() && is_structured(&params) => {
            let session = structured_session_id(&params)
                .and_then(|sid| state.by_session_id.get(sid))
                .and_then(|sticky| state.sessions.get(sticky));
            match session {
                Some(SessionRef::Stdio(s)) => {
                    let _ = s.cast(AcpSessionMsg::Structured(params));
                }
                _ => tracing::debug!(target_id = %state.target.target_id, "structured event for an unknown session"),
            }
        }
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
