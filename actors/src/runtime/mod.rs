//! Runtimes: the runtime supervisor and the runtime actors it owns.
//!
//! A task actor asks the supervisor to [`RuntimeSupMsg::Acquire`] a runtime for its target; the
//! answer is a [`RuntimeHandle`] whose `session` actor speaks [`SessionMsg`]. The session reports
//! back with [`AdapterEvent`]s cast to the task actor, each stamped with the task actor's
//! generation so a restarted task ignores what was meant for its previous incarnation.
//!
//! Runtimes: in-process `loopback` ([`loopback`]); agents over stdio JSON-RPC, `acp` ([`acp`]);
//! HTTP agent servers, `acp_http` ([`http`], [`acp_http`]), run by the same runtime actor as
//! stdio agents (one process manager); peer targets, `peer` ([`peer`]): tasks relayed to another
//! node over the node protocol, one runtime actor per peer.

pub mod acp;
pub mod acp_http;
pub mod coalesce;
pub mod deps;
pub mod dialect;
pub mod http;
pub mod jsonrpc;
pub mod leftovers;
pub mod lifecycle;
pub mod loopback;
pub mod peer;
pub mod process;
pub mod queue;
pub mod sessions;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::Value;
use tokio::time::Instant;

pub use crate::port::{
    AdapterEvent, Dispatch, LaunchPhase, RuntimeError, RuntimeHandle, SessionMsg, SessionPort, TaskReplyTo, TaskReport,
    Waiter,
};
pub use deps::{DispatchPauses, RuntimeDeps};

use crate::adapters::{AdapterCatalog, AdapterEntry, AdapterKind};
use crate::model::{JsonObject, RuntimeState, TargetSpec};
use crate::restart::{RestartDecision, RestartPolicy, RestartTracker, jitter};
use crate::supervision::actor_label;

/// Checks of each kind this build runs; the message names the field at fault.
static ADAPTERS: [AdapterEntry; 3] = [
    AdapterEntry { kind: AdapterKind::Loopback, validate: validate_loopback },
    AdapterEntry { kind: AdapterKind::Acp, validate: validate_acp },
    AdapterEntry { kind: AdapterKind::AcpHttp, validate: validate_acp_http },
];

/// The adapter kinds this build runs, each with what a target of that kind needs. Discovery
/// validates targets with [`AdapterCatalog::validate`].
pub fn adapter_catalog() -> AdapterCatalog {
    AdapterCatalog::new(&ADAPTERS)
}

/// Loopback scripts come with each task: nothing to check on the target.
fn validate_loopback(_: &TargetSpec) -> Result<(), String> {
    Ok(())
}

/// A stdio agent is a process the node starts: it needs something to start, and a dialect this
/// build speaks.
fn validate_acp(spec: &TargetSpec) -> Result<(), String> {
    dialect::Dialect::of(spec)?;
    let spawns = spec.launch.mode != crate::model::LaunchMode::External;
    let has_command = spec.launch.command.iter().any(|a| !a.trim().is_empty()) || !spec.launch.commands.is_empty();
    if spawns && !has_command {
        return Err(format!("launch.command is required for adapter '{}' (it starts the agent process)", spec.adapter));
    }
    Ok(())
}

/// An HTTP agent needs a reachable endpoint (its server may be started by the node or not).
fn validate_acp_http(spec: &TargetSpec) -> Result<(), String> {
    http::HttpTarget::of(spec).map(|_| ())
}

/// Messages of the runtime supervisor.
pub enum RuntimeSupMsg {
    /// Get a runtime for `target` with `options`; answered when it is ready.
    Acquire {
        target: Box<TargetSpec>,
        options: JsonObject,
        waiter: Waiter,
        reply: RpcReplyPort<Result<RuntimeHandle, RuntimeError>>,
    },
    /// `GET /v1/targets/{id}/health`.
    Health { target: Box<TargetSpec>, options: JsonObject, reply: RpcReplyPort<Result<TargetHealth, RuntimeError>> },
    /// `POST /v1/targets/{id}/stop`.
    Stop { target: Box<TargetSpec>, options: JsonObject, reply: RpcReplyPort<Result<TargetHealth, RuntimeError>> },
    /// Session reuse prediction for thread inspection: `(runtime up, live session, a persisted
    /// binding would be continued)`. Stdio: a live session actor for `sticky`, and the agent's
    /// `loadSession`. `acp_http`: a live session actor or a server session id the runtime
    /// remembers for `sticky`; a persisted binding (< 1 h) is always continued.
    SessionProbe {
        target: Box<TargetSpec>,
        options: JsonObject,
        sticky: String,
        reply: RpcReplyPort<(bool, bool, bool)>,
    },
    /// Live state of every runtime (for `GET /v1/targets`).
    States(RpcReplyPort<Vec<TargetHealth>>),
    /// Pause (`Some`) or resume (`None`) dispatching to a target, already durable. While paused,
    /// a task's acquisition waits here (an API start is not held); on resume the waiting ones
    /// are acquired in the order they came.
    SetPaused { target_id: String, pause: Option<crate::storage::reader::TargetPause>, reply: RpcReplyPort<()> },
    /// Internal: answer acquisitions parked for longer than [`PARK_REFRESH`] with
    /// [`RuntimeError::Paused`], so the task's bounded ask never times out (it asks again).
    RefreshParked,
    /// Internal: restart the loopback runtime after its backoff.
    RestartLoopback { generation: u64 },
    /// The runtime actors alive now (the node's supervision view).
    Children(RpcReplyPort<Vec<RuntimeChild>>),
}

/// One runtime actor under the runtime supervisor, as the node's supervision view shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuntimeChild {
    /// `loopback`, `acp` (an ACP stdio agent or an `acp_http` server) or `peer`.
    pub kind: &'static str,
    /// The target (loopback: `loopback`; peer: the peer's id).
    pub id: String,
    /// The subcontext of an ACP runtime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subcontext_key: Option<String>,
    /// Restarts after a failure of the actor itself. ACP and peer runtimes are not restarted
    /// (the next task creates a new one; an agent process's own relaunches are its launch
    /// history), so only the loopback runtime counts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u64>,
    /// Running now (the loopback runtime is absent while it waits for its restart).
    pub running: bool,
}

/// The runtime children: the loopback runtime (its incarnation and whether it is up), then ACP
/// runtimes by (target, subcontext), then peers by id. Pure.
fn runtime_children<'a>(
    loopback_generation: u64,
    loopback_running: bool,
    acp: impl Iterator<Item = &'a (String, String)>,
    peers: impl Iterator<Item = &'a peer::PeerLink>,
) -> Vec<RuntimeChild> {
    let mut out = vec![RuntimeChild {
        kind: "loopback",
        id: "loopback".to_owned(),
        subcontext_key: None,
        restarts: Some(loopback_generation.saturating_sub(1)),
        running: loopback_running,
    }];
    let mut acp: Vec<RuntimeChild> = acp
        .map(|(target, sub)| RuntimeChild {
            kind: "acp",
            id: target.clone(),
            subcontext_key: Some(sub.clone()),
            restarts: None,
            running: true,
        })
        .collect();
    acp.sort_by(|a, b| (&a.id, &a.subcontext_key).cmp(&(&b.id, &b.subcontext_key)));
    let mut peers: Vec<RuntimeChild> = peers
        .map(|link| RuntimeChild {
            kind: "peer",
            id: link.peer_id.clone(),
            subcontext_key: None,
            restarts: None,
            running: true,
        })
        .collect();
    peers.sort_by(|a, b| a.id.cmp(&b.id));
    out.extend(acp);
    out.extend(peers);
    out
}

/// Health of a target's runtime for one subcontext (contract routes 27–29), as its runtime
/// actor reports it and as `GET /v1/targets` lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TargetHealth {
    pub target_id: String,
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_id: Option<u32>,
    /// In-process runtimes are always up.
    pub state: RuntimeState,
    pub subcontext_key: String,
    pub tasks_in_flight: usize,
    /// After a crash loop: launches are paused until then (RFC 3339); a forced start clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<String>,
    /// How the runtime's latest process ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<LastExit>,
    /// An operator paused dispatching to the target (`POST /v1/targets/{id}/pause`): its tasks
    /// wait. Filled in by the service from storage.
    pub dispatch_paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch_paused_at: Option<String>,
}

/// How a runtime process ended: its exit code or the signal that killed it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LastExit {
    /// `exit status 1`, `killed by signal 9`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// When the node saw it end (RFC 3339).
    pub at: String,
}

/// How long an acquisition for a paused target is held before it is answered
/// [`RuntimeError::Paused`] (the task then asks again; well below its acquire timeout).
pub const PARK_REFRESH: std::time::Duration = std::time::Duration::from_secs(120);

/// A task's acquisition waiting for its target to be resumed.
struct Parked {
    target: Box<TargetSpec>,
    options: JsonObject,
    waiter: Waiter,
    reply: RpcReplyPort<Result<RuntimeHandle, RuntimeError>>,
    since: Instant,
}

/// What the runtime supervisor starts with.
pub struct RuntimeSupArgs {
    pub deps: Arc<RuntimeDeps>,
    /// Publishes the paused targets to the sessions (`deps.pauses` is its view).
    pub pauses_tx: tokio::sync::watch::Sender<Arc<std::collections::BTreeSet<String>>>,
}

/// State of the runtime supervisor.
pub struct RuntimeSupState {
    /// Targets whose dispatching is paused (loaded from storage at start).
    paused: HashMap<String, crate::storage::reader::TargetPause>,
    /// Publishes `paused`'s keys to every session, which hold their queued turns meanwhile.
    pauses_tx: tokio::sync::watch::Sender<Arc<std::collections::BTreeSet<String>>>,
    /// Acquisitions of tasks for paused targets, in arrival order.
    parked: Vec<Parked>,
    /// A [`RuntimeSupMsg::RefreshParked`] is on its way.
    refresh_armed: bool,
    /// The loopback runtime, `None` while it is being restarted.
    loopback: Option<ActorRef<SessionMsg>>,
    /// Incarnation of the loopback runtime; a restart timer for an older one is ignored.
    loopback_generation: u64,
    /// Failure history of the loopback runtime.
    loopback_restarts: RestartTracker,
    /// Acquisitions that arrived while the loopback runtime was down; answered on restart.
    waiting: VecDeque<RpcReplyPort<Result<RuntimeHandle, RuntimeError>>>,
    /// ACP runtime actors by (target, subcontext). Created on first use; a failed one is
    /// created again by the next task (its process crashes are handled inside it).
    acp: HashMap<(String, String), ActorRef<acp::AcpMsg>>,
    /// Peer runtimes by peer (id, base URL). Created on first use; a failed one is created
    /// again by the next task relayed to that peer.
    peers: HashMap<peer::PeerLink, ActorRef<SessionMsg>>,
    /// Storage, reads and settings, handed to every runtime actor.
    deps: Arc<RuntimeDeps>,
}

/// The runtime supervisor.
pub struct RuntimeSupervisor;

async fn spawn_loopback(
    myself: &ActorRef<RuntimeSupMsg>,
    _generation: u64,
) -> Result<ActorRef<SessionMsg>, ActorProcessingErr> {
    let (actor, _) = Actor::spawn_linked(
        // Unnamed: actor names are process-global and several cores may share a process.
        None,
        loopback::LoopbackRuntime,
        (),
        myself.get_cell(),
    )
    .await?;
    Ok(actor)
}

impl RuntimeSupervisor {
    /// The peer runtime of a peer target, spawning it if needed. Only targets from peer sync
    /// relay (a registration naming adapter `peer` is not one: its adapter is missing here).
    async fn peer_runtime(
        myself: &ActorRef<RuntimeSupMsg>,
        state: &mut RuntimeSupState,
        target: &TargetSpec,
    ) -> Result<ActorRef<SessionMsg>, RuntimeError> {
        let base_url = target.endpoint.clone().filter(|_| target.source == crate::model::TargetSource::Peer);
        let Some(base_url) = base_url else { return Err(RuntimeError::AdapterMissing(target.adapter.clone())) };
        let link = peer::PeerLink { peer_id: target.owner.clone(), base_url, resubmit_safe: target.resubmit_safe };
        if let Some(runtime) = state.peers.get(&link) {
            return Ok(runtime.clone());
        }
        let args = peer::PeerRuntimeArgs {
            link: link.clone(),
            reader: state.deps.reader.clone(),
            signer: state.deps.signer.clone(),
        };
        let (runtime, _) = Actor::spawn_linked(None, peer::PeerRuntime, args, myself.get_cell())
            .await
            .map_err(|e| RuntimeError::Unavailable(format!("peer runtime for {}: {e}", link.peer_id)))?;
        state.peers.insert(link, runtime.clone());
        Ok(runtime)
    }

    /// The ACP runtime actor of (target, subcontext of options), spawning it if needed.
    async fn acp_runtime(
        myself: &ActorRef<RuntimeSupMsg>,
        state: &mut RuntimeSupState,
        target: &TargetSpec,
        options: &JsonObject,
        create: bool,
    ) -> Result<Option<ActorRef<acp::AcpMsg>>, RuntimeError> {
        let http = match target.adapter.parse::<AdapterKind>() {
            Ok(AdapterKind::AcpHttp) => {
                Some(Arc::new(http::HttpTarget::of(target).map_err(RuntimeError::LaunchFailed)?))
            }
            _ => None,
        };
        // HTTP targets have one server (subcontext `default`); stdio dialects may have several.
        let d = if http.is_some() {
            dialect::Dialect::Acp
        } else {
            dialect::Dialect::of(target).map_err(RuntimeError::LaunchFailed)?
        };
        let subcontext = d.subcontext(options);
        let key = (target.target_id.clone(), subcontext.clone());
        if let Some(a) = state.acp.get(&key) {
            return Ok(Some(a.clone()));
        }
        if !create {
            return Ok(None);
        }
        let argv = if http.is_some() {
            // No command (or `external`): the server is not ours to start, only health-checked.
            if target.launch.mode == crate::model::LaunchMode::External {
                Vec::new()
            } else {
                target.launch.command.clone()
            }
        } else {
            d.command(target, options).map_err(RuntimeError::LaunchFailed)?
        };
        let cwd = options.get("cwd").and_then(Value::as_str).map(str::to_owned).or_else(|| target.launch.cwd.clone());
        let command =
            process::LaunchCommand { argv, env: target.launch.env.clone(), cwd: process::absolute_dir(cwd.as_deref()) };
        let args = acp::AcpRuntimeArgs {
            target: target.clone(),
            dialect: d,
            http,
            subcontext: subcontext.clone(),
            command,
            deps: state.deps.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, acp::AcpRuntime, args, myself.get_cell())
            .await
            .map_err(|e| RuntimeError::Unavailable(format!("runtime actor: {e}")))?;
        tracing::debug!(actor_kind = "runtime", target_id = %target.target_id, %subcontext, "runtime actor started");
        state.acp.insert(key, actor.clone());
        Ok(Some(actor))
    }

    fn loopback_health(target: &TargetSpec) -> TargetHealth {
        TargetHealth {
            target_id: target.target_id.clone(),
            healthy: true,
            lease_id: None,
            process_id: None,
            state: RuntimeState::Up,
            subcontext_key: "default".into(),
            tasks_in_flight: 0,
            paused_until: None,
            last_exit: None,
            dispatch_paused: false,
            dispatch_paused_at: None,
        }
    }
}

/// The health of a target whose runtime is not running.
fn down_health(target: &TargetSpec, options: &JsonObject) -> TargetHealth {
    TargetHealth {
        target_id: target.target_id.clone(),
        healthy: false,
        lease_id: None,
        process_id: None,
        state: RuntimeState::Down,
        subcontext_key: match target.adapter.parse::<AdapterKind>() {
            Ok(AdapterKind::Acp) => dialect::Dialect::of(target).map(|d| d.subcontext(options)).unwrap_or_default(),
            _ => "default".into(),
        },
        tasks_in_flight: 0,
        paused_until: None,
        last_exit: None,
        dispatch_paused: false,
        dispatch_paused_at: None,
    }
}

/// The handle of an in-process session actor (loopback, peer): no lease, no process.
fn loopback_handle(session: &ActorRef<SessionMsg>) -> RuntimeHandle {
    RuntimeHandle {
        lease_id: None,
        session: SessionPort::new(session.get_derived()),
        process_id: None,
        initialize_ms: None,
    }
}

/// Kills process groups a previous run recorded and never released (a node killed with SIGKILL
/// whose groups' keepers could not act). Only recorded groups are looked at, and one is killed
/// only when it is provably still that run's ([`leftovers::judge`]), so a recycled pid is never hit.
async fn reap_leftovers(deps: &RuntimeDeps) -> Result<(), ActorProcessingErr> {
    let leases = deps.reader.open_leases().await?;
    if leases.is_empty() {
        return Ok(());
    }
    let mut released = Vec::new();
    for lease in leases {
        let pgid = lease.process_group;
        if pgid > 0 {
            match leftovers::judge(&lease.command, &leftovers::GroupView::of(pgid)) {
                leftovers::Verdict::Kill(evidence) => {
                    tracing::warn!(actor_kind = "runtime", target_id = %lease.target_id, pgid, ?evidence, "killing a runtime process group left by a previous run");
                    process::kill_group(pgid, process::KILL_GRACE).await;
                }
                leftovers::Verdict::Leave(leftovers::LeaveReason::NothingRuns) => {}
                leftovers::Verdict::Leave(reason) => {
                    tracing::info!(actor_kind = "runtime", target_id = %lease.target_id, pgid, ?reason, "a recorded process group is not this database's any more; left alone");
                }
            }
        }
        released.push(lease.lease_id);
    }
    deps.storage
        .ask(crate::supervision::ASK_TIMEOUT, |r| {
            crate::storage::StorageMsg::Write(crate::storage::WriteOp::ReleaseLeases(released), r)
        })
        .await??;
    Ok(())
}

impl Actor for RuntimeSupervisor {
    type Msg = RuntimeSupMsg;
    type State = RuntimeSupState;
    type Arguments = RuntimeSupArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RuntimeSupMsg>,
        args: RuntimeSupArgs,
    ) -> Result<RuntimeSupState, ActorProcessingErr> {
        let RuntimeSupArgs { deps, pauses_tx } = args;
        let loopback = spawn_loopback(&myself, 1).await?;
        let paused: HashMap<String, crate::storage::reader::TargetPause> =
            deps.reader.target_pauses().await?.into_iter().map(|p| (p.target_id.clone(), p)).collect();
        pauses_tx.send_replace(Arc::new(paused.keys().cloned().collect()));
        Ok(RuntimeSupState {
            paused,
            pauses_tx,
            parked: Vec::new(),
            refresh_armed: false,
            loopback: Some(loopback),
            loopback_generation: 1,
            loopback_restarts: RestartTracker::new(RestartPolicy::WORKER),
            waiting: VecDeque::new(),
            acp: HashMap::new(),
            peers: HashMap::new(),
            deps,
        })
    }

    async fn post_start(
        &self,
        _myself: ActorRef<RuntimeSupMsg>,
        state: &mut RuntimeSupState,
    ) -> Result<(), ActorProcessingErr> {
        reap_leftovers(&state.deps).await
    }

    async fn handle(
        &self,
        myself: ActorRef<RuntimeSupMsg>,
        msg: RuntimeSupMsg,
        state: &mut RuntimeSupState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RuntimeSupMsg::Acquire { target, options, waiter, reply }
                if waiter.task.is_some() && state.paused.contains_key(&target.target_id) =>
            {
                state.parked.push(Parked { target, options, waiter, reply, since: Instant::now() });
                if !state.refresh_armed {
                    state.refresh_armed = true;
                    myself.send_after(PARK_REFRESH, || RuntimeSupMsg::RefreshParked);
                }
            }
            RuntimeSupMsg::SetPaused { target_id, pause, reply } => {
                match pause {
                    Some(p) => {
                        tracing::info!(actor_kind = "runtime", target_id = %target_id, paused_by = %p.paused_by, "target paused: its tasks wait");
                        state.paused.insert(target_id, p);
                    }
                    None => {
                        if state.paused.remove(&target_id).is_some() {
                            tracing::info!(actor_kind = "runtime", target_id = %target_id, "target resumed");
                        }
                        let (resumed, kept): (Vec<Parked>, Vec<Parked>) =
                            state.parked.drain(..).partition(|p| p.target.target_id == target_id);
                        state.parked = kept;
                        for p in resumed {
                            let msg = RuntimeSupMsg::Acquire {
                                target: p.target,
                                options: p.options,
                                waiter: p.waiter,
                                reply: p.reply,
                            };
                            let _ = myself.cast(msg);
                        }
                    }
                }
                state.pauses_tx.send_replace(Arc::new(state.paused.keys().cloned().collect()));
                let _ = reply.send(());
            }
            RuntimeSupMsg::RefreshParked => {
                state.refresh_armed = false;
                let now = Instant::now();
                let (due, kept): (Vec<Parked>, Vec<Parked>) =
                    state.parked.drain(..).partition(|p| now.duration_since(p.since) >= PARK_REFRESH);
                state.parked = kept;
                for p in due {
                    let _ = p.reply.send(Err(RuntimeError::Paused(p.target.target_id.clone())));
                }
                if !state.parked.is_empty() {
                    state.refresh_armed = true;
                    myself.send_after(PARK_REFRESH, || RuntimeSupMsg::RefreshParked);
                }
            }
            RuntimeSupMsg::Acquire { target, options, waiter, reply } => match target.adapter.parse::<AdapterKind>() {
                // The loopback runtime lives in-process and is always up; while it restarts,
                // callers wait for it rather than fail.
                Ok(AdapterKind::Loopback) => match &state.loopback {
                    Some(session) => {
                        let _ = reply.send(Ok(loopback_handle(session)));
                    }
                    None => state.waiting.push_back(reply),
                },
                Ok(AdapterKind::Peer) => {
                    let runtime = Self::peer_runtime(&myself, state, &target).await;
                    let _ = reply.send(runtime.map(|r| loopback_handle(&r)));
                }
                // Served by the Aether gateway's presence actor, which holds the workers.
                Ok(AdapterKind::Aether) => {
                    let handle = state.deps.aether.port().map(|session| RuntimeHandle {
                        lease_id: None,
                        session,
                        process_id: None,
                        initialize_ms: None,
                    });
                    let _ = reply.send(
                        handle.ok_or_else(|| RuntimeError::Unavailable("the Aether gateway is not running".into())),
                    );
                }
                Ok(AdapterKind::Acp | AdapterKind::AcpHttp) => {
                    match Self::acp_runtime(&myself, state, &target, &options, true).await {
                        Ok(Some(runtime)) => {
                            let initialize_timeout = acp::initialize_timeout_of(&options);
                            if let Err(ractor::MessagingErr::SendErr(acp::AcpMsg::Acquire { reply, .. })) =
                                runtime.cast(acp::AcpMsg::Acquire { waiter, initialize_timeout, reply })
                            {
                                let _ = reply.send(Err(RuntimeError::Unavailable("runtime actor stopped".into())));
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                Err(unknown) => {
                    let _ = reply.send(Err(RuntimeError::AdapterMissing(unknown.0)));
                }
            },
            RuntimeSupMsg::Health { target, options: _, reply } | RuntimeSupMsg::Stop { target, options: _, reply }
                if matches!(target.adapter.parse::<AdapterKind>(), Ok(AdapterKind::Loopback | AdapterKind::Aether)) =>
            {
                let _ = reply.send(Ok(Self::loopback_health(&target)));
            }
            RuntimeSupMsg::Health { target, options, reply } => {
                match Self::acp_runtime(&myself, state, &target, &options, false).await {
                    Ok(Some(runtime)) => {
                        // Answered by the runtime actor directly; this supervisor never waits on it.
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        let _ = runtime.cast(acp::AcpMsg::Health(tx.into()));
                        tokio::spawn(async move {
                            let h = match tokio::time::timeout(std::time::Duration::from_secs(5), rx).await {
                                Ok(Ok(h)) => h,
                                _ => down_health(&target, &options),
                            };
                            let _ = reply.send(Ok(h));
                        });
                    }
                    Ok(None) => {
                        let _ = reply.send(Ok(down_health(&target, &options)));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            RuntimeSupMsg::Stop { target, options, reply } => {
                match Self::acp_runtime(&myself, state, &target, &options, false).await {
                    Ok(Some(runtime)) => {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        let _ = runtime.cast(acp::AcpMsg::Stop {
                            reason: "stop requested over the API".into(),
                            reply: Some(tx.into()),
                        });
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), rx).await;
                            let _ = reply.send(Ok(down_health(&target, &options)));
                        });
                    }
                    Ok(None) => {
                        let _ = reply.send(Ok(down_health(&target, &options)));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            RuntimeSupMsg::SessionProbe { target, options, sticky, reply } => {
                match Self::acp_runtime(&myself, state, &target, &options, false).await {
                    Ok(Some(runtime)) => {
                        // The reply port is handed to the runtime; this supervisor never waits.
                        let _ = runtime.cast(acp::AcpMsg::SessionProbe { sticky, reply });
                    }
                    _ => {
                        let _ = reply.send((false, false, false));
                    }
                }
            }
            RuntimeSupMsg::States(reply) => {
                let runtimes: Vec<ActorRef<acp::AcpMsg>> = state.acp.values().cloned().collect();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for r in runtimes {
                        if let Ok(ractor::rpc::CallResult::Success(h)) =
                            r.call(acp::AcpMsg::Health, Some(std::time::Duration::from_secs(2))).await
                        {
                            out.push(h);
                        }
                    }
                    let _ = reply.send(out);
                });
            }
            RuntimeSupMsg::Children(reply) => {
                let _ = reply.send(runtime_children(
                    state.loopback_generation,
                    state.loopback.is_some(),
                    state.acp.keys(),
                    state.peers.keys(),
                ));
            }
            RuntimeSupMsg::RestartLoopback { generation } => {
                if generation != state.loopback_generation || state.loopback.is_some() {
                    return Ok(());
                }
                let session = spawn_loopback(&myself, generation).await?;
                tracing::info!(actor_kind = "runtime", target_id = "loopback", generation, "runtime restarted");
                for reply in state.waiting.drain(..) {
                    let _ = reply.send(Ok(loopback_handle(&session)));
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
                state.acp.retain(|_, a| a.get_id() != cell.get_id());
                state.peers.retain(|_, a| a.get_id() != cell.get_id());
                tracing::info!(actor_kind = "runtime", actor = %actor_label(&cell), reason = reason.as_deref().unwrap_or(""), "runtime stopped");
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                let peers = state.peers.len();
                state.peers.retain(|_, a| a.get_id() != cell.get_id());
                if state.peers.len() != peers {
                    // Its relays in flight ended with it (their tasks time out or are cancelled).
                    tracing::error!(actor_kind = "runtime", actor = %actor_label(&cell), error = %err, "peer runtime failed; it is recreated on demand");
                    return Ok(());
                }
                let before = state.acp.len();
                state.acp.retain(|_, a| a.get_id() != cell.get_id());
                if state.acp.len() != before {
                    // An ACP runtime actor failed: the next task for it starts a new one.
                    tracing::error!(actor_kind = "runtime", actor = %actor_label(&cell), error = %err, "runtime actor failed; it is recreated on demand");
                    return Ok(());
                }
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

    async fn post_stop(
        &self,
        myself: ActorRef<RuntimeSupMsg>,
        state: &mut RuntimeSupState,
    ) -> Result<(), ActorProcessingErr> {
        // Runtime actors kill their process groups in post_stop, which only runs on a graceful
        // stop: stop them and wait before this supervisor's exit kills them.
        let count = state.acp.len();
        myself
            .stop_children_and_wait(Some("node shutting down".into()), Some(std::time::Duration::from_secs(10)))
            .await;
        tracing::info!(actor_kind = "runtime_supervisor", runtimes = count, "runtimes stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(adapter: &str) -> TargetSpec {
        TargetSpec::new("t", adapter)
    }

    #[test]
    fn runtime_children_list_loopback_then_acp_then_peers_in_order() {
        let acp = [("zed".to_owned(), "default".to_owned()), ("alpha".to_owned(), "b".to_owned())];
        let peers = [peer::PeerLink { peer_id: "p2".into(), base_url: "http://h:2".into(), resubmit_safe: true }];
        let kids = runtime_children(3, false, acp.iter(), peers.iter());
        let seen: Vec<(&str, &str, Option<&str>)> =
            kids.iter().map(|k| (k.kind, k.id.as_str(), k.subcontext_key.as_deref())).collect();
        assert_eq!(
            seen,
            [
                ("loopback", "loopback", None),
                ("acp", "alpha", Some("b")),
                ("acp", "zed", Some("default")),
                ("peer", "p2", None)
            ]
        );
        assert_eq!(kids[0].restarts, Some(2), "generation 3 is the second restart");
        assert!(!kids[0].running);
        assert!(kids[1..].iter().all(|k| k.restarts.is_none() && k.running));
        assert_eq!(runtime_children(1, true, [].iter(), [].iter())[0].restarts, Some(0));
    }

    #[test]
    fn catalog_checks_what_each_kind_needs() {
        let catalog = adapter_catalog();
        let kinds: Vec<&str> = catalog.entries().iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["loopback", "acp", "acp_http"]);
        let acp_external = {
            let mut s = spec("acp");
            s.launch.mode = crate::model::LaunchMode::External;
            s
        };
        let acp_command = {
            let mut s = spec("acp");
            s.launch.command = vec!["agent".into()];
            s
        };
        let http = {
            let mut s = spec("acp_http");
            s.endpoint = Some("http://127.0.0.1:9".into());
            s
        };
        let cases: [(TargetSpec, Result<(), &str>); 7] = [
            (spec("loopback"), Ok(())),
            (spec("acp"), Err("launch.command is required for adapter 'acp' (it starts the agent process)")),
            (acp_external, Ok(())),
            (acp_command, Ok(())),
            (spec("acp_http"), Err("endpoint is required for adapter 'acp_http' (target t)")),
            (http, Ok(())),
            (spec("a2a"), Err("adapter 'a2a' is not known; known adapters: loopback, acp, acp_http")),
        ];
        for (s, want) in cases {
            assert_eq!(catalog.validate(&s), want.map_err(str::to_owned), "{}", s.adapter);
        }
    }
}
