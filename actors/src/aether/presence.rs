//! The presence actor: owns the identity locks of the Aether gateway (one live session per
//! identity string) and is the parent of every connection actor.
//!
//! A second live connection for an identity is refused (`AlreadyConnected`) unless it carries
//! the holder's session id as `resume_session_id`: then it takes the session over (the SDK
//! reconnecting over a stream the node has not noticed is dead yet) and the old connection
//! actor is stopped. A lock is released when its connection actor stops (the stream closed or
//! broke; dead peers are found by the server's HTTP/2 keepalive pings). The decisions are the
//! pure [`PresenceBook`].
//!
//! It also routes every send: an identity route is one lookup in the live sessions by identity;
//! for a durable identity ([`topics::durable`]) the message goes through the per-identity queue
//! ([`super::queue`]): kept while the identity is not connected, replayed in order when it
//! connects.

use std::collections::HashMap;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::mpsc;

use super::board::{Placed, TaskBoard, Want};
use super::connection::Incoming;
use super::connection::{
    ConnectionActor, ConnectionArgs, ConnectionMsg, ErrorCode, Outbound, Session, SessionAuthority, SessionStore,
};
use super::identity::{Identity, PrincipalKind};
use super::queue::{self, Ctx, LiveSession, QueueMsg, QueueState, SessionGen};
use super::tasks::{ASSIGNMENT_BINDING, AetherTarget, Assignment, ReportRefused, WorkerReport};
use super::topics::{self, Route};
use crate::model::FailureReason;
use crate::port::{AdapterEvent, Dispatch, SessionMsg};

/// Who holds an identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder<H> {
    pub session_id: String,
    pub handle: H,
}

/// A claim's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim<H> {
    /// Nobody holds the identity.
    Free,
    /// The holder's session is resumed: it is replaced (and `previous` is to be stopped).
    Takeover { previous: H },
    /// Someone else holds it.
    Held,
}

/// The identity locks. Pure.
#[derive(Debug)]
pub struct PresenceBook<H> {
    /// Holder by identity string.
    held: HashMap<String, Holder<H>>,
}

impl<H> Default for PresenceBook<H> {
    fn default() -> Self {
        PresenceBook { held: HashMap::new() }
    }
}

impl<H: Clone + PartialEq> PresenceBook<H> {
    /// Whether `identity` may be taken by a connection presenting `resume_session_id`.
    pub fn claim(&self, identity: &str, resume_session_id: Option<&str>) -> Claim<H> {
        match self.held.get(identity) {
            None => Claim::Free,
            Some(holder) if resume_session_id.is_some_and(|r| r == holder.session_id) => {
                Claim::Takeover { previous: holder.handle.clone() }
            }
            Some(_) => Claim::Held,
        }
    }

    /// Records `holder` for `identity` (after a `Free` or `Takeover` claim).
    pub fn hold(&mut self, identity: String, holder: Holder<H>) {
        self.held.insert(identity, holder);
    }

    /// Releases `identity` if `handle` still holds it (a taken-over holder releases nothing).
    pub fn release(&mut self, identity: &str, handle: &H) -> bool {
        if self.held.get(identity).is_some_and(|h| &h.handle == handle) {
            self.held.remove(identity);
            return true;
        }
        false
    }

    /// Identities held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// A request to open a session.
pub struct OpenRequest {
    pub identity: Identity,
    pub authority: SessionAuthority,
    /// The SDK's `resume_session_id` (absent on a first connect).
    pub resume_session_id: Option<String>,
    /// The stream's outbound frames.
    pub outbound: mpsc::Sender<Outbound>,
    /// The client's address as the binding saw it (listings).
    pub remote_addr: String,
    /// The session has admin rights: access rules do not bind it.
    pub acl_exempt: bool,
    /// An orchestrator's supported profiles (whom it can launch).
    pub profiles: Vec<String>,
}

/// A session opened: its id and the connection actor that serves it.
pub struct Opened {
    pub session: Session,
    pub connection: ActorRef<ConnectionMsg>,
    /// The session's generation (its [`queue::Outbox`] names it when it returns messages).
    pub generation: SessionGen,
}

/// Why a session was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenRefused {
    #[error("identity {0} is already connected")]
    AlreadyConnected(String),
    #[error("could not start the session: {0}")]
    Spawn(String),
}

/// Messages of the presence actor.
pub enum PresenceMsg {
    /// Take the identity's lock and start its connection actor.
    Open(Box<OpenRequest>, RpcReplyPort<Result<Opened, OpenRefused>>),
    /// Deliver a message to the sessions `route` names: a durable identity's is kept while it
    /// is not connected; other routes reach live sessions only. A refusal goes back to `from`.
    Route { route: Route, message: Incoming, from: ActorRef<ConnectionMsg> },
    /// The durable queue's own traffic (batched appends, replay readers, the retention sweep).
    Queue(QueueMsg),
    /// A user's session switched workspace: its group lanes follow (`gu::`, `uw::`, `pg::`).
    Moved { connection: ActorId, workspace: String },
    /// Number of live sessions.
    Count(RpcReplyPort<usize>),
    /// The live sessions, by identity (the HTTP API's and the console's view).
    List(RpcReplyPort<Vec<ConnectionInfo>>),
    /// An admin ends the session `session_id` (`FORCE_DISCONNECT`); answered with the session as
    /// it was, `None` if no live session has that id.
    Kick { session_id: String, reason: String, reply: RpcReplyPort<Option<ConnectionInfo>> },
    /// The `aether` adapter's session: node tasks for Aether agents and pools (from task actors).
    Tasks(SessionMsg),
    /// A worker reports on a task it holds (`identity`: the reporting session's).
    Work { identity: String, task_id: String, report: WorkerReport, reply: RpcReplyPort<Result<(), ReportRefused>> },
    /// Whether an identity has a live session now (for a pool id: any agent of it).
    Online { identity: String, reply: RpcReplyPort<bool> },
    /// Who holds a task on the board (`None`: waiting, or not an `aether` task).
    Holder { task_id: String, reply: RpcReplyPort<Option<String>> },
    /// Ask an orchestrator of `profile` to launch an agent: the startup assignment is pushed to
    /// the first connected orchestrator (by identity) that supports it; its identity answers.
    Launch { profile: String, assignment: Box<Assignment>, reply: RpcReplyPort<Option<String>> },
}

impl From<SessionMsg> for PresenceMsg {
    fn from(msg: SessionMsg) -> Self {
        PresenceMsg::Tasks(msg)
    }
}

// Required by `get_derived`; the node never converts presence messages back.
impl TryFrom<PresenceMsg> for SessionMsg {
    type Error = PresenceMsg;
    fn try_from(msg: PresenceMsg) -> Result<Self, PresenceMsg> {
        match msg {
            PresenceMsg::Tasks(msg) => Ok(msg),
            other => Err(other),
        }
    }
}

/// Runtime options key of a SELF_ASSIGN task: its creator holds it (nothing is pushed).
pub const SELF_ASSIGNED: &str = "aether_self_assigned";

/// What the board keeps of an `aether` task.
#[derive(Clone, Debug)]
pub struct BoardItem {
    /// Where its reports go, and what a worker is handed.
    dispatch: Dispatch,
    /// The worker's last progress report (the result of a `complete`, which carries none).
    last_progress: Option<serde_json::Value>,
}

/// What a dispatch waits for: its creator (SELF_ASSIGN), one agent or a pool. Pure.
pub fn want_of(dispatch: &Dispatch) -> Option<Want> {
    if dispatch.runtime_options.get(SELF_ASSIGNED).and_then(serde_json::Value::as_bool) == Some(true) {
        return Some(Want::Creator(dispatch.sender.clone()));
    }
    match AetherTarget::parse(&dispatch.target_id)? {
        AetherTarget::Agent { .. } => Some(Want::Instance(dispatch.target_id.clone())),
        AetherTarget::Pool { workspace, implementation } => Some(Want::Pool { workspace, implementation }),
    }
}

/// The `TaskAssignment` a worker receives for a dispatch. Pure.
pub fn assignment_of(dispatch: &Dispatch, worker: &str) -> Assignment {
    let aether = dispatch.runtime_options.get("aether_metadata").and_then(serde_json::Value::as_object);
    let metadata = aether
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect())
        .unwrap_or_default();
    let target = AetherTarget::parse(worker);
    Assignment {
        task_id: dispatch.task_id.clone(),
        task_type: dispatch.intent.clone(),
        assigned_to: worker.to_owned(),
        metadata,
        assigned_at_ms: crate::clock::unix_millis(),
        payload: super::tasks::payload_bytes(&dispatch.payload),
        workspace: target.as_ref().map(|t| t.workspace().to_owned()).unwrap_or_default(),
        target_implementation: target.as_ref().map(|t| t.implementation().to_owned()).unwrap_or_default(),
        specifier: match target {
            Some(AetherTarget::Agent { specifier, .. }) => specifier,
            _ => String::new(),
        },
        profile: String::new(),
        launch_params: std::collections::BTreeMap::new(),
    }
}

/// A live gateway session as operators see it (never its credential).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionInfo {
    /// The principal kind (typed; `principal` is its wire name).
    #[serde(skip)]
    pub kind: PrincipalKind,
    /// `agent`, `task`, `pooled task`, `user`, … (the principal kind's wire name).
    pub principal: &'static str,
    pub identity: String,
    /// The agent's or task's workspace; a user's current one; absent for the others.
    pub workspace: Option<String>,
    pub session_id: String,
    /// `admin` (the operator's key), `token` or `claimed` (no credential, loopback).
    pub authority: &'static str,
    /// The API token's id when `authority` is `token`.
    pub token_id: Option<String>,
    /// When the session opened (RFC 3339).
    pub connected_at: String,
    /// The same, in unix seconds (the gateway's `ConnectionInfo.connected_at`).
    #[serde(skip)]
    pub connected_at_unix: i64,
    /// The client's address as the gateway saw it.
    pub remote_addr: String,
    /// Implementation and specifier of agents, tasks, orchestrators, bridges and services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implementation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub specifier: Option<String>,
    /// The session took over a live one with `resume_session_id`.
    pub resumed: bool,
}

/// What presence keeps of a session beyond its identity, for [`ConnectionInfo`].
struct SessionFacts {
    session_id: String,
    authority: SessionAuthority,
    connected_at: String,
    connected_at_unix: i64,
    remote_addr: String,
    /// For the session's duration in the disconnect log line.
    opened: std::time::Instant,
    resumed: bool,
}

/// State of the presence actor.
pub struct PresenceState {
    /// The identity locks, held by connection actor id.
    book: PresenceBook<ActorId>,
    /// Each live connection actor: its identity (to release the lock when it stops) and its
    /// handle (to stop it on takeover and at shutdown).
    connections: HashMap<ActorId, (Identity, ActorRef<ConnectionMsg>)>,
    /// Each live connection's session id, authority and start, for listings (same keys).
    facts: HashMap<ActorId, SessionFacts>,
    /// The same sessions by identity string, with their generation and outbound channel: an
    /// identity route is one lookup, and a replay reader writes to the session it was started for.
    live: HashMap<String, LiveSession>,
    /// The next session generation (fences replay readers of ended sessions).
    next_session: SessionGen,
    /// The durable per-identity message queue: batched appends and replay bookkeeping.
    queue: QueueState,
    /// Handed to every connection (its KV and checkpoints); the queue's storage too.
    store: SessionStore,
    /// Node tasks for Aether workers: who waits for whom, who holds what (the `aether` adapter).
    board: TaskBoard<ActorRef<ConnectionMsg>, BoardItem>,
    /// Connected orchestrators by identity: the profiles each launches, and its connection.
    orchestrators: std::collections::BTreeMap<String, (Vec<String>, ActorRef<ConnectionMsg>)>,
}

/// Whether a principal takes tasks: agents (and services) with an implementation and workspace.
fn worker_of(identity: &Identity) -> Option<(&str, &str)> {
    if !matches!(identity.kind, PrincipalKind::Agent) {
        return None;
    }
    Some((identity.workspace.as_deref()?, identity.implementation.as_deref()?))
}

/// Carries out the board's hand-overs: the worker gets its `TaskAssignment`; the task hears
/// who holds it (the first time: the hand-over and `running`; after a move: `running` again).
fn hand_over(board: &TaskBoard<ActorRef<ConnectionMsg>, BoardItem>, placed: Vec<Placed<ActorRef<ConnectionMsg>>>) {
    for p in placed {
        let Some(item) = board.item(&p.task_id) else { continue };
        let d = &item.dispatch;
        if p.push
            && let Some(connection) = &p.handle
        {
            let out = Outbound::TaskAssignment(assignment_of(d, &p.worker));
            let _ = connection.cast(ConnectionMsg::Reply(Box::new(out)));
        }
        let mut events = Vec::new();
        if p.first {
            events.push(AdapterEvent::Submitted {
                binding: ASSIGNMENT_BINDING.into(),
                remote_execution_id: None,
                remote_session_id: Some(p.worker.clone()),
            });
        }
        let verb = if p.push { "Assigned to" } else { "Held by its creator" };
        let mut data = crate::model::JsonObject::new();
        data.insert("assigned_to".into(), serde_json::json!(p.worker));
        events.push(AdapterEvent::Running { message: format!("{verb} {}", p.worker), data });
        d.report(events);
    }
}

impl PresenceState {
    /// A task actor's message for the `aether` adapter.
    fn on_task_session(&mut self, msg: SessionMsg) {
        match msg {
            SessionMsg::Submit(dispatch) => {
                let Some(want) = want_of(&dispatch) else {
                    dispatch.report(vec![AdapterEvent::Failed {
                        reason: FailureReason::SubmitFailed,
                        detail: Some(format!("'{}' is not an Aether agent or pool id", dispatch.target_id)),
                        message: "submit_failed".into(),
                    }]);
                    return;
                };
                let task_id = dispatch.task_id.clone();
                let item = BoardItem { dispatch: *dispatch, last_progress: None };
                if let Some(placed) = self.board.submit(&task_id, want, item) {
                    hand_over(&self.board, vec![placed]);
                } else {
                    tracing::debug!(actor_kind = "aether_presence", %task_id, "task waits for an Aether worker");
                }
            }
            SessionMsg::Attach { dispatch, remote, .. } => {
                let (Some(want), Some(holder)) = (want_of(&dispatch), remote.remote_session_id.clone()) else {
                    dispatch.report(vec![AdapterEvent::Failed {
                        reason: FailureReason::Interrupted,
                        detail: Some("the task's Aether worker is not known".into()),
                        message: "Task interrupted by node restart".into(),
                    }]);
                    return;
                };
                let task_id = dispatch.task_id.clone();
                tracing::info!(actor_kind = "aether_presence", %task_id, worker = %holder, "task held by an Aether worker again after a restart");
                self.board.attach(&task_id, want, BoardItem { dispatch: *dispatch, last_progress: None }, &holder);
            }
            SessionMsg::Cancel { task_id, generation } => {
                if let Some(item) = self.board.settle(&task_id) {
                    let d = item.dispatch;
                    if d.generation == generation {
                        d.report(vec![AdapterEvent::Cancelled { message: "Task cancelled".into() }]);
                    }
                }
            }
            SessionMsg::Resume { task_id, .. } => {
                if let Some(item) = self.board.item(&task_id) {
                    item.dispatch.report(vec![AdapterEvent::ResumeRefused {
                        reason: "an Aether worker takes no input through resume".into(),
                    }]);
                }
            }
            SessionMsg::Finished { .. } => {}
        }
    }

    /// A worker's report on a task it holds.
    fn on_work(&mut self, identity: &str, task_id: &str, report: WorkerReport) -> Result<(), ReportRefused> {
        if self.board.holder(task_id) != Some(identity) {
            return Err(ReportRefused::NotHeld(task_id.to_owned()));
        }
        let settle = matches!(report, WorkerReport::Complete | WorkerReport::Fail { .. } | WorkerReport::Reject { .. });
        let Some(item) = (if settle { self.board.settle(task_id) } else { self.board.item(task_id).cloned() }) else {
            return Err(ReportRefused::NotHeld(task_id.to_owned()));
        };
        let event = match report {
            WorkerReport::Claim => AdapterEvent::Running {
                message: format!("Claimed by {identity}"),
                data: crate::model::JsonObject::new(),
            },
            WorkerReport::Progress(progress) => {
                let data = progress.data();
                if let Some(kept) = self.board.item_mut(task_id) {
                    kept.last_progress = Some(serde_json::Value::Object(data.clone()));
                }
                let message =
                    if progress.summary.is_empty() { progress.state.clone() } else { progress.summary.clone() };
                AdapterEvent::Running { message, data }
            }
            WorkerReport::Complete => AdapterEvent::Completed {
                message: format!("Completed by {identity}"),
                result: serde_json::json!({ "completed_by": identity, "progress": item.last_progress }),
            },
            WorkerReport::Fail { reason } => AdapterEvent::Failed {
                reason: FailureReason::RemoteFailed,
                detail: Some(if reason.is_empty() { format!("failed by {identity}") } else { reason }),
                message: format!("Failed by {identity}"),
            },
            WorkerReport::Reject { reason } => AdapterEvent::Failed {
                reason: FailureReason::RemoteFailed,
                detail: Some(format!("rejected by {identity}: {reason}")),
                message: format!("Rejected by {identity}"),
            },
        };
        item.dispatch.report(vec![event]);
        Ok(())
    }
}

/// The presence actor.
pub struct PresenceActor;

fn new_session_id() -> String {
    format!("as_{}", crate::ids::new_id().to_ascii_lowercase())
}

impl PresenceState {
    /// The live session of connection `id` as operators see it.
    fn info(&self, id: &ActorId) -> Option<ConnectionInfo> {
        let (identity, _) = self.connections.get(id)?;
        let facts = self.facts.get(id)?;
        let token_id = match &facts.authority {
            SessionAuthority::Token(id) => Some(id.clone()),
            SessionAuthority::Admin | SessionAuthority::Claimed => None,
        };
        Some(ConnectionInfo {
            kind: identity.kind,
            principal: identity.kind.as_str(),
            identity: identity.key.clone(),
            workspace: identity.workspace.clone(),
            session_id: facts.session_id.clone(),
            authority: facts.authority.as_str(),
            token_id,
            connected_at: facts.connected_at.clone(),
            connected_at_unix: facts.connected_at_unix,
            remote_addr: facts.remote_addr.clone(),
            implementation: identity.implementation.clone(),
            specifier: identity.specifier.clone(),
            resumed: facts.resumed,
        })
    }
}

impl Actor for PresenceActor {
    type Msg = PresenceMsg;
    type State = PresenceState;
    type Arguments = SessionStore;

    async fn pre_start(
        &self,
        _myself: ActorRef<PresenceMsg>,
        store: SessionStore,
    ) -> Result<PresenceState, ActorProcessingErr> {
        // What the queue holds (the previous run's backlog): for the quota. One aggregate read.
        let backlog = match store.reader.aether_message_totals(queue::retained_since(queue::now_ms()), i64::MAX).await {
            Ok(backlog) => backlog,
            Err(e) => {
                tracing::warn!(actor_kind = "aether_presence", error = %e, "could not read the message queue's backlog; quota counts start at zero");
                Vec::new()
            }
        };
        Ok(PresenceState {
            book: PresenceBook::default(),
            connections: HashMap::new(),
            facts: HashMap::new(),
            live: HashMap::new(),
            next_session: 1,
            queue: QueueState::new(backlog),
            store,
            board: TaskBoard::default(),
            orchestrators: std::collections::BTreeMap::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<PresenceMsg>,
        _state: &mut PresenceState,
    ) -> Result<(), ActorProcessingErr> {
        myself.send_after(queue::SWEEP_INTERVAL, || PresenceMsg::Queue(QueueMsg::Sweep));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<PresenceMsg>,
        msg: PresenceMsg,
        state: &mut PresenceState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PresenceMsg::Open(request, reply) => {
                let OpenRequest {
                    mut identity,
                    authority,
                    resume_session_id,
                    outbound,
                    remote_addr,
                    acl_exempt,
                    profiles,
                } = *request;
                let key = identity.key.clone();
                let resumed = match state.book.claim(&key, resume_session_id.as_deref()) {
                    Claim::Held => {
                        tracing::info!(actor_kind = "aether_presence", identity = %key, "duplicate identity refused");
                        let _ = reply.send(Err(OpenRefused::AlreadyConnected(key)));
                        return Ok(());
                    }
                    Claim::Takeover { previous } => {
                        state.facts.remove(&previous);
                        if let Some((old_identity, old)) = state.connections.remove(&previous) {
                            // A resumed user session keeps the workspace it switched to (the SDK
                            // does not send switch_workspace again on reconnect).
                            if identity.workspace.is_none() {
                                identity.workspace = old_identity.workspace;
                            }
                            old.stop(Some("session resumed by a new connection".into()));
                        }
                        true
                    }
                    Claim::Free => false,
                };
                let session = Session { session_id: new_session_id(), identity, authority, resumed, acl_exempt };
                let weak_outbound = outbound.downgrade();
                let args = ConnectionArgs {
                    session: session.clone(),
                    outbound,
                    store: state.store.clone(),
                    presence: myself.clone(),
                };
                match Actor::spawn_linked(None, ConnectionActor, args, myself.get_cell()).await {
                    Ok((connection, _)) => {
                        state.book.hold(
                            key.clone(),
                            Holder { session_id: session.session_id.clone(), handle: connection.get_id() },
                        );
                        state.connections.insert(connection.get_id(), (session.identity.clone(), connection.clone()));
                        state.facts.insert(
                            connection.get_id(),
                            SessionFacts {
                                session_id: session.session_id.clone(),
                                authority: session.authority.clone(),
                                connected_at: crate::clock::now_rfc3339(),
                                connected_at_unix: crate::clock::unix_seconds(),
                                remote_addr,
                                opened: std::time::Instant::now(),
                                resumed: session.resumed,
                            },
                        );
                        let generation = state.next_session;
                        state.next_session += 1;
                        let live = LiveSession {
                            connection: connection.clone(),
                            session: generation,
                            outbound: weak_outbound,
                        };
                        state.live.insert(key.clone(), live);
                        if topics::durable(&key) {
                            // Queued messages first (the ack and config are in the channel already).
                            let ctx = Ctx { live: &state.live, store: &state.store, myself: &myself };
                            state.queue.opened(&key, generation, &ctx);
                        }
                        metrics::gauge!(crate::telemetry::AETHER_SESSIONS).set(state.connections.len() as f64);
                        tracing::info!(
                            actor_kind = "aether_presence", identity = %key, session_id = %session.session_id,
                            resumed, "gateway session opened"
                        );
                        if session.identity.kind == PrincipalKind::Orchestrator {
                            state.orchestrators.insert(key.clone(), (profiles, connection.clone()));
                        }
                        if let Some((workspace, implementation)) = worker_of(&session.identity) {
                            // After the ack and config (already in the channel): its tasks.
                            let placed = state.board.online(&key, workspace, implementation, connection.clone());
                            hand_over(&state.board, placed);
                        }
                        let _ = reply.send(Ok(Opened { session, connection, generation }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(OpenRefused::Spawn(e.to_string())));
                    }
                }
            }
            PresenceMsg::Route { route: Route::Identity(key), message, from } => {
                if topics::durable(&key) {
                    let ctx = Ctx { live: &state.live, store: &state.store, myself: &myself };
                    state.queue.route(&key, message, &from, &ctx);
                } else if let Some(live) = state.live.get(&key) {
                    let _ = live.connection.cast(ConnectionMsg::Deliver(message));
                } else {
                    tracing::debug!(actor_kind = "aether_presence", identity = %key, source = %message.source_topic, "no live session; message dropped");
                }
            }
            PresenceMsg::Route { route, message, from } => {
                // Identity order: a single-destination route picks the same session every time.
                let mut targets: Vec<&(Identity, ActorRef<ConnectionMsg>)> =
                    state.connections.values().filter(|(identity, _)| topics::matches(&route, identity)).collect();
                targets.sort_by(|a, b| a.0.key.cmp(&b.0.key));
                if !topics::fans_out(&route) {
                    targets.truncate(1);
                }
                if targets.is_empty() {
                    if let Route::AnyService { implementation } = &route {
                        // Contract §3.3 step 3: retryable, the sender is told.
                        let message =
                            format!("ERR_SV_UNAVAILABLE: no service sv::{implementation} is connected; retry later");
                        let _ = from.cast(ConnectionMsg::SendRefused { code: ErrorCode::ServiceUnavailable, message });
                    }
                    tracing::debug!(actor_kind = "aether_presence", ?route, source = %message.source_topic, "no live session; message dropped");
                }
                for (_, connection) in targets {
                    let _ = connection.cast(ConnectionMsg::Deliver(message.clone()));
                }
            }
            PresenceMsg::Moved { connection, workspace } => {
                if let Some((identity, _)) = state.connections.get_mut(&connection) {
                    identity.workspace = Some(workspace);
                }
            }
            PresenceMsg::Queue(msg) => {
                let ctx = Ctx { live: &state.live, store: &state.store, myself: &myself };
                state.queue.handle(msg, &ctx);
            }
            PresenceMsg::Kick { session_id, reason, reply } => {
                let found = state.facts.iter().find(|(_, f)| f.session_id == session_id).map(|(id, _)| *id);
                let info = found.and_then(|id| {
                    let info = state.info(&id)?;
                    let (_, connection) = state.connections.get(&id)?;
                    let _ = connection.cast(ConnectionMsg::Kick { reason: reason.clone() });
                    Some(info)
                });
                if let Some(info) = &info {
                    tracing::info!(
                        actor_kind = "aether_presence", identity = %info.identity, session_id = %info.session_id,
                        %reason, "gateway session disconnected by an admin"
                    );
                }
                let _ = reply.send(info);
            }
            PresenceMsg::List(reply) => {
                let mut list: Vec<ConnectionInfo> = state.connections.keys().filter_map(|id| state.info(id)).collect();
                list.sort_by(|a, b| a.identity.cmp(&b.identity));
                let _ = reply.send(list);
            }
            PresenceMsg::Count(reply) => {
                let _ = reply.send(state.connections.len());
            }
            PresenceMsg::Tasks(msg) => state.on_task_session(msg),
            PresenceMsg::Work { identity, task_id, report, reply } => {
                let _ = reply.send(state.on_work(&identity, &task_id, report));
            }
            PresenceMsg::Online { identity, reply } => {
                // A pool id (`ag::{ws}::{impl}`) is online when any agent of it is.
                let online = match AetherTarget::parse(&identity) {
                    Some(AetherTarget::Pool { .. }) => {
                        let prefix = format!("{identity}::");
                        state.live.keys().any(|k| k.starts_with(&prefix))
                    }
                    _ => state.live.contains_key(&identity),
                };
                let _ = reply.send(online);
            }
            PresenceMsg::Holder { task_id, reply } => {
                let _ = reply.send(state.board.holder(&task_id).map(str::to_owned));
            }
            PresenceMsg::Launch { profile, mut assignment, reply } => {
                let found = state.orchestrators.iter().find(|(_, (profiles, _))| profiles.contains(&profile));
                let chosen = found.map(|(identity, (_, connection))| {
                    assignment.assigned_to = identity.clone();
                    let _ = connection.cast(ConnectionMsg::Reply(Box::new(Outbound::TaskAssignment(*assignment))));
                    identity.clone()
                });
                let _ = reply.send(chosen);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<PresenceMsg>,
        evt: SupervisionEvent,
        state: &mut PresenceState,
    ) -> Result<(), ActorProcessingErr> {
        // Connections are temporary children: never restarted (the client reconnects), only
        // forgotten, and their lock released.
        let (id, failure) = match evt {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell.get_id(), None),
            SupervisionEvent::ActorFailed(cell, err) => (cell.get_id(), Some(err.to_string())),
            _ => return Ok(()),
        };
        // A taken-over connection was removed already, but may still hold nothing: release
        // checks the holder.
        let key = state.connections.remove(&id).map(|(identity, _)| identity.key);
        let facts = state.facts.remove(&id);
        let session_id = facts.as_ref().map(|f| f.session_id.clone()).unwrap_or_default();
        let duration_ms = facts.as_ref().map_or(0, |f| f.opened.elapsed().as_millis() as u64);
        metrics::gauge!(crate::telemetry::AETHER_SESSIONS).set(state.connections.len() as f64);
        if let Some(key) = key {
            let released = state.book.release(&key, &id);
            if released && let Some(live) = state.live.remove(&key) {
                // What a replay had not handed yet stays queued.
                state.queue.closed(&key, live.session, &myself);
            }
            if released {
                state.orchestrators.remove(&key);
                // Its pool tasks go to another worker (or wait); its own tasks stay its own.
                let moved = state.board.offline(&key);
                hand_over(&state.board, moved);
            }
            match failure {
                Some(error) => {
                    tracing::warn!(
                        actor_kind = "aether_connection", identity = %key, %session_id, duration_ms, %error,
                        "gateway session failed; stream closed"
                    )
                }
                None => {
                    tracing::info!(
                        actor_kind = "aether_connection", identity = %key, %session_id, duration_ms, released,
                        "gateway session closed"
                    )
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<PresenceMsg>,
        state: &mut PresenceState,
    ) -> Result<(), ActorProcessingErr> {
        state.facts.clear();
        for (_, (_, connection)) in state.connections.drain() {
            connection.stop(Some("node shutting down".into()));
        }
        // Batched appends and replay buffers are written before the node stops (storage stops
        // after presence), so a message the node took is kept across a restart.
        state.queue.shutdown(&state.store).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_live_session_per_identity_unless_resumed() {
        let mut book: PresenceBook<u32> = PresenceBook::default();
        assert_eq!(book.claim("ag::w::i::s", None), Claim::Free);
        book.hold("ag::w::i::s".into(), Holder { session_id: "s1".into(), handle: 1 });
        assert_eq!(book.claim("ag::w::i::s", None), Claim::Held);
        assert_eq!(book.claim("ag::w::i::s", Some("other")), Claim::Held);
        assert_eq!(book.claim("ag::w::i::t", None), Claim::Free);
        assert_eq!(book.claim("ag::w::i::s", Some("s1")), Claim::Takeover { previous: 1 });
        book.hold("ag::w::i::s".into(), Holder { session_id: "s2".into(), handle: 2 });
        // The taken-over holder stopping later releases nothing.
        assert!(!book.release("ag::w::i::s", &1));
        assert_eq!(book.claim("ag::w::i::s", None), Claim::Held);
        assert!(book.release("ag::w::i::s", &2));
        assert_eq!(book.claim("ag::w::i::s", None), Claim::Free);
        assert!(book.is_empty());
    }
}
