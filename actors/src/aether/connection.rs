//! One actor per connected gateway stream: it owns the session (identity, session id, who
//! authenticated it) and answers the stream's requests, in arrival order, into the stream's
//! outbound channel, which the binding encodes into frames.
//!
//! It never waits on the client: replies go into a bounded channel with `try_send`; a client
//! that does not read (the channel is full) loses its session (the stream then ends with a
//! recoverable status and the SDK reconnects). Supervised by the presence actor, never
//! restarted (the client reconnects, with `resume_session_id`), like SSE subscribers.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;

use super::identity::{Identity, PrincipalKind, check_identifier};
use super::kv::{self, CheckpointOp, CheckpointReply, CheckpointRequest, KvError, KvOp, KvReply, KvRequest};
use super::presence::PresenceMsg;
use super::queue::now_ms;
use super::topics::{self, SendError};
use crate::model::kv_update::OutcomeSlot;
use crate::storage::{StorageMsg, StoreReader, WriteOp};
use crate::supervision::{ASK_TIMEOUT, Slot};

/// Capacity of a stream's outbound channel (frames not yet written to the client).
pub const OUTBOUND_CAPACITY: usize = 256;

/// How a session was authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionAuthority {
    /// The operator's admin key.
    Admin,
    /// An API token, by id.
    Token(String),
    /// No credential: admitted as the claimed principal (loopback node only).
    Claimed,
}

impl SessionAuthority {
    /// `admin`, `token` or `claimed` (logs and listings; never the credential).
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionAuthority::Admin => "admin",
            SessionAuthority::Token(_) => "token",
            SessionAuthority::Claimed => "claimed",
        }
    }
}

/// A session as the presence actor grants it.
#[derive(Clone, Debug)]
pub struct Session {
    /// Opaque, non-empty; the SDK sends it back as `resume_session_id` on reconnect.
    pub session_id: String,
    pub identity: Identity,
    pub authority: SessionAuthority,
    /// This connection took over a live session of the same identity (`resume_session_id`).
    pub resumed: bool,
    /// The session acts with admin rights (the admin key, an `admin` token): access rules do
    /// not bind it.
    pub acl_exempt: bool,
}

/// How a request is correlated by the SDK, so that a refusal reaches the waiting call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Correlation {
    /// By `request_id` (or `client_request_id`): an error carrying the id resolves the call.
    RequestId(String),
    /// First in, first out by response type: only a typed reply resolves the call (an error
    /// would leave it waiting 10 s).
    Fifo(FifoKind),
    /// A proxied HTTP request: only a proxy response resolves it.
    Proxy(String),
    /// A tunnel: answered by closing it.
    Tunnel(String),
    /// Nothing waits: the error goes to the client's error callback.
    None,
}

/// The FIFO-correlated response types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FifoKind {
    Workspace,
    Agent,
    Acl,
}

/// What a stream asks of its session (decoded by the binding).
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// An operation this node does not serve (yet): `operation` names it for the answer.
    Unserved { operation: &'static str, correlation: Correlation },
    /// A message to a topic.
    Send(SendRequest),
    /// A KV operation.
    Kv(KvRequest),
    /// A checkpoint operation.
    Checkpoint(CheckpointRequest),
    /// `SwitchWorkspace{new_workspace_id}` (users only).
    SwitchWorkspace(String),
    /// A frame that breaks the protocol (a second `InitConnection`): the stream ends.
    Violation(String),
}

/// A message a client sends.
#[derive(Clone, Debug, PartialEq)]
pub struct SendRequest {
    pub target_topic: String,
    pub payload: Vec<u8>,
    /// The wire `MessageType` number, passed through.
    pub message_type: i32,
    /// A METRIC message's payload as decoded by the binding (`Err`: not a `Metric`); `None`
    /// for other types.
    pub metric: Option<Result<topics::MetricShape, String>>,
}

/// A message as delivered (`IncomingMessage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The sender's identity string, stamped by the node (not spoofable).
    pub source_topic: String,
    pub payload: Arc<Vec<u8>>,
    pub message_type: i32,
    /// The sender's workspace (empty for workspace-less senders).
    pub workspace: String,
}

/// Error codes of `ErrorResponse` (upstream's vocabulary, spelled as upstream does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    NotImplemented,
    InvalidArgument,
    KvError,
    InvalidTopic,
    PermissionDenied,
    PayloadTooLarge,
    InvalidPrincipal,
    Metric(topics::MetricProblem),
    /// The target identity's queue is full.
    Quota,
    /// `sv::impl` with no live service of that implementation (retryable).
    ServiceUnavailable,
    /// A workspace switch could not be decided (the rules were unreadable; retry).
    WorkspaceSwitchFailed,
    /// A `create_task` was refused (its typed reply names why).
    TaskCreateFailed,
    /// A task payload over the 512 KiB limit.
    TaskPayloadTooLarge,
    /// A task the caller does not hold or may not see.
    TaskNotFound,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotImplemented => "ERR_NOT_IMPLEMENTED",
            ErrorCode::InvalidArgument => "ERR_INVALID_ARGUMENT",
            ErrorCode::KvError => "KV_ERROR",
            ErrorCode::InvalidTopic => "ERR_INVALID_TOPIC",
            ErrorCode::PermissionDenied => "ERR_PERMISSION_DENIED",
            ErrorCode::PayloadTooLarge => "ERR_PAYLOAD_TOO_LARGE",
            ErrorCode::InvalidPrincipal => "ERR_INVALID_PRINCIPAL",
            ErrorCode::Metric(problem) => problem.as_str(),
            ErrorCode::Quota => "ERR_QUOTA_001",
            ErrorCode::ServiceUnavailable => "ERR_SV_UNAVAILABLE",
            ErrorCode::WorkspaceSwitchFailed => "ERR_WORKSPACE_SWITCH_FAILED",
            ErrorCode::TaskCreateFailed => "ERR_TASK_CREATE_FAILED",
            ErrorCode::TaskPayloadTooLarge => "TASK_PAYLOAD_TOO_LARGE",
            ErrorCode::TaskNotFound => "ERR_TASK_NOT_FOUND",
        }
    }
}

/// What the session sends down its stream (the binding encodes it).
#[derive(Clone, Debug, PartialEq)]
pub enum Outbound {
    /// The first frame: `ConnectionAck`.
    Ack { session_id: String, resumed: bool },
    /// The baseline `ConfigSnapshot` (agents and tasks), after the ack.
    Config(ConfigData),
    /// A message delivered at most once (a route to a non-durable identity, a fan-out).
    Message(Incoming),
    /// A durable identity's message ([`super::topics::durable`]): if the stream ends before
    /// writing it, it goes back to the front of the identity's queue ([`super::queue::Outbox`]).
    Kept(Incoming),
    /// A `KVResponse`.
    Kv(KvReply),
    /// A `CheckpointResponse`.
    Checkpoint(CheckpointReply),
    /// An operation is not served: `code` with `message`, correlated as the request was.
    Refused { code: ErrorCode, message: String, correlation: Correlation },
    /// A `SessionOperationResponse`.
    Sessions(super::admin::SessionReply),
    /// A `TokenResponse`.
    Tokens(super::admin::TokenReply),
    /// A `WorkspaceResponse`.
    Workspaces(super::admin::WorkspaceReply),
    /// An `AgentResponse`.
    Agents(super::admin::AgentReply),
    /// An `ACLResponse`.
    Acl(super::acl::AclReply),
    /// A task handed to this worker (`TaskAssignment`).
    TaskAssignment(super::tasks::Assignment),
    /// A `CreateTaskResponse`.
    CreatedTask(super::tasks::CreateReply),
    /// A `TaskOperationResponse`.
    TaskOp(super::tasks::TaskOpReply),
    /// A `TaskQueryResponse`.
    TaskQuery(super::tasks::TaskQueryReply),
    /// A `TaskSubscriptionOperationResponse`.
    TaskSubscription(super::tasks::SubscriptionReply),
    /// A `TaskEvent` of a subscription.
    TaskEvent(super::tasks::TaskEventPush),
    /// `Signal{FORCE_DISCONNECT, reason}`: the SDK stops for good (an admin kick).
    ForceDisconnect { reason: String },
    /// End the stream with an error of this kind (never a plain OK).
    End { end: EndKind, message: String },
}

/// Most keys of one private scope pushed in the `ConfigSnapshot` (the rest: `kv_list`).
pub const CONFIG_KEYS_MAX: u32 = 1000;
/// Most value bytes in one `ConfigSnapshot` (the frame stays under the SDK's 4 MiB limit).
pub const CONFIG_BYTES_MAX: usize = 2 * 1024 * 1024;

/// What the `ConfigSnapshot` carries: the caller's private KV scopes, as upstream pushes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigData {
    /// `workspace-exclusive` keys and values of the caller in its workspace.
    pub workspace_exclusive: Vec<(String, Vec<u8>)>,
    /// `global-exclusive` keys and values of the caller.
    pub global_exclusive: Vec<(String, Vec<u8>)>,
}

impl ConfigData {
    /// Keeps at most [`CONFIG_BYTES_MAX`] of keys and values, workspace scope first, in key
    /// order; `true` when something was left out. Pure.
    pub fn bounded(mut self) -> (ConfigData, bool) {
        let mut budget = CONFIG_BYTES_MAX;
        let mut cut = false;
        for rows in [&mut self.workspace_exclusive, &mut self.global_exclusive] {
            let mut keep = 0;
            for (k, v) in rows.iter() {
                let size = k.len() + v.len();
                if size > budget {
                    break;
                }
                budget -= size;
                keep += 1;
            }
            cut |= keep < rows.len();
            rows.truncate(keep);
            if cut {
                budget = 0;
            }
        }
        (self, cut)
    }
}

/// How a stream is ended by the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndKind {
    /// The client broke the protocol (fatal for the SDK).
    InvalidArgument,
    /// Reconnect (recoverable for the SDK).
    Unavailable,
    /// After `FORCE_DISCONNECT` (an admin kick), as upstream.
    Cancelled,
}

/// Messages of a connection actor.
pub enum ConnectionMsg {
    /// A request from the stream, in arrival order.
    Request(Request),
    /// A message routed to this session by the presence actor.
    Deliver(Incoming),
    /// The presence actor refused a send of this session (a full queue, no live service): an
    /// uncorrelated `ErrorResponse`.
    SendRefused { code: ErrorCode, message: String },
    /// The client closed the stream (or it broke): the session ends.
    Closed,
    /// A service's answer to a request the binding carried out (admin operations), written
    /// in stream order with the session's other replies.
    Reply(Box<Outbound>),
    /// An admin ended this session: `FORCE_DISCONNECT`, then the stream ends `CANCELLED`.
    Kick { reason: String },
}

/// The storage a session's KV and checkpoints live in.
#[derive(Clone)]
pub struct SessionStore {
    pub storage: Arc<Slot<StorageMsg>>,
    pub reader: StoreReader,
}

/// Arguments of a connection actor.
pub struct ConnectionArgs {
    pub session: Session,
    pub outbound: mpsc::Sender<Outbound>,
    pub store: SessionStore,
    /// Where sends are routed (the parent).
    pub presence: ActorRef<PresenceMsg>,
}

/// State of a connection actor.
pub struct ConnectionState {
    /// The session this stream holds: identity, id, authority (every reply is on its behalf).
    session: Session,
    /// The stream's outbound frames (bounded; `try_send` only, so no handler waits on a client).
    outbound: mpsc::Sender<Outbound>,
    /// Where KV rows and checkpoints are read and written (writes only via the storage actor).
    store: SessionStore,
    /// The presence actor, which knows every live session: sends are routed through it.
    presence: ActorRef<PresenceMsg>,
}

/// One gateway stream.
pub struct ConnectionActor;

/// What a request that needs no storage is answered with. Pure.
pub fn answer(request: Request) -> (Outbound, bool) {
    match request {
        Request::Send(_) | Request::SwitchWorkspace(_) => (
            Outbound::Refused {
                code: ErrorCode::NotImplemented,
                message: "ERR_NOT_IMPLEMENTED: this request needs a session".into(),
                correlation: Correlation::None,
            },
            false,
        ),
        Request::Kv(req) => (Outbound::Kv(KvReply { request_id: req.request_id, ..KvReply::default() }), false),
        Request::Checkpoint(req) => {
            (Outbound::Checkpoint(CheckpointReply { request_id: req.request_id, ..CheckpointReply::default() }), false)
        }
        Request::Unserved { operation, correlation } => (
            Outbound::Refused {
                code: ErrorCode::NotImplemented,
                message: format!("ERR_NOT_IMPLEMENTED: {operation} is not served by this node"),
                correlation,
            },
            false,
        ),
        Request::Violation(message) => (Outbound::End { end: EndKind::InvalidArgument, message }, true),
    }
}

impl ConnectionState {
    /// Queues a frame; `false` when the client is not reading (or gone): the session ends.
    fn send(&self, out: Outbound) -> bool {
        match self.outbound.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    actor_kind = "aether_connection", identity = %self.session.identity, session_id = %self.session.session_id,
                    "client is not reading its stream; session closed"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// What `switch_workspace` does for `identity` (upstream: users only; no reply on success).
/// `Ok(None)`: nothing changes (the same workspace). Pure.
pub fn switch_workspace(identity: &Identity, new_workspace: &str) -> Result<Option<String>, (ErrorCode, String)> {
    if identity.kind != PrincipalKind::User {
        return Err((
            ErrorCode::InvalidPrincipal,
            format!(
                "ERR_INVALID_PRINCIPAL: only users can switch workspaces ({} stays in its workspace)",
                identity.key
            ),
        ));
    }
    if let Err(problem) = check_identifier(new_workspace) {
        return Err((ErrorCode::InvalidArgument, format!("ERR_INVALID_ARGUMENT: new_workspace_id {problem}")));
    }
    if identity.workspace.as_deref() == Some(new_workspace) {
        return Ok(None);
    }
    Ok(Some(new_workspace.to_owned()))
}

/// A refused send as its uncorrelated error (`SendMessage` has no request id).
fn refused_send(e: &SendError) -> Outbound {
    let code = match e {
        SendError::Unserved(_) => ErrorCode::NotImplemented,
        SendError::InvalidTopic(_) => ErrorCode::InvalidTopic,
        SendError::Denied(..) => ErrorCode::PermissionDenied,
        SendError::TooLarge(_) => ErrorCode::PayloadTooLarge,
        SendError::Metric(problem, _) => ErrorCode::Metric(*problem),
    };
    Outbound::Refused { code, message: e.to_string(), correlation: Correlation::None }
}

impl ConnectionState {
    async fn write(&self, op: WriteOp) -> Result<(), ()> {
        match self.store.storage.ask(ASK_TIMEOUT, |r| StorageMsg::Write(op, r)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(actor_kind = "aether_connection", error = %e, "gateway write failed");
                Err(())
            }
            Err(e) => {
                tracing::warn!(actor_kind = "aether_connection", error = %e, "storage unavailable");
                Err(())
            }
        }
    }

    /// Carries out a KV request for this session's principal.
    async fn kv(&self, req: KvRequest) -> Result<KvReply, KvError> {
        if let KvOp::Unserved(name) = req.op {
            return Err(KvError::Unserved(name));
        }
        let identity = &self.session.identity;
        let ns = kv::namespace(req.scope, identity, &req.user_id, &req.workspace)?;
        let now = now_ms();
        let mut reply = KvReply { request_id: req.request_id.clone(), success: true, ..KvReply::default() };
        let storage = |e: crate::error::StorageError| {
            tracing::warn!(actor_kind = "aether_connection", error = %e, "gateway read failed");
            KvError::Storage
        };
        match req.op {
            KvOp::Get => {
                // A missing key is a success with an empty value (as upstream).
                reply.value =
                    self.store.reader.aether_kv_get(&ns, &req.key, now).await.map_err(storage)?.unwrap_or_default();
            }
            KvOp::Put => {
                kv::check_put(&req)?;
                let expires_at = kv::kv_expiry(now, req.ttl_seconds);
                let op = WriteOp::AetherKv { namespace: ns, key: req.key, value: Some(req.value), expires_at, now };
                self.write(op).await.map_err(|()| KvError::Storage)?;
            }
            KvOp::Delete => {
                let op = WriteOp::AetherKv { namespace: ns, key: req.key, value: None, expires_at: None, now };
                self.write(op).await.map_err(|()| KvError::Storage)?;
            }
            KvOp::List => {
                let limit = kv::list_limit(req.limit);
                let mut rows =
                    self.store.reader.aether_kv_list(&ns, &req.key, now, limit + 1).await.map_err(storage)?;
                reply.has_more = rows.len() > limit as usize;
                rows.truncate(limit as usize);
                reply.keys = rows.iter().map(|(k, _)| k.clone()).collect();
                reply.entries = rows;
            }
            KvOp::Update(update) => {
                if req.key.is_empty() {
                    return Err(KvError::Invalid("key must not be empty".into()));
                }
                if req.value.len() > kv::KV_VALUE_MAX {
                    let n = req.value.len();
                    return Err(KvError::Invalid(format!("value is {n} bytes; at most {}", kv::KV_VALUE_MAX)));
                }
                let outcome = OutcomeSlot::default();
                let op = WriteOp::AetherKvUpdate {
                    namespace: ns,
                    key: req.key,
                    update,
                    ttl_ms: (req.ttl_seconds > 0).then(|| req.ttl_seconds.saturating_mul(1000)),
                    now,
                    outcome: outcome.clone(),
                };
                self.write(op).await.map_err(|()| KvError::Storage)?;
                let outcome = outcome.take().ok_or(KvError::Storage)?;
                if let Some(error) = outcome.error {
                    return Err(KvError::Invalid(error));
                }
                reply.counter_value = outcome.counter;
                reply.applied = outcome.applied;
                reply.value = outcome.value;
            }
            KvOp::Unserved(name) => return Err(KvError::Unserved(name)),
        }
        Ok(reply)
    }

    /// The caller's private scopes for its `ConfigSnapshot` (empty for a caller without them,
    /// e.g. a pooled task; a read failure sends an empty snapshot rather than none).
    async fn config_snapshot(&self) -> ConfigData {
        let identity = &self.session.identity;
        let now = now_ms();
        let mut config = ConfigData::default();
        for (scope, rows) in [
            (kv::KvScope::WorkspaceExclusive, &mut config.workspace_exclusive),
            (kv::KvScope::GlobalExclusive, &mut config.global_exclusive),
        ] {
            let Ok(ns) = kv::namespace(scope, identity, "", "") else { continue };
            match self.store.reader.aether_kv_list(&ns, "", now, CONFIG_KEYS_MAX).await {
                Ok(found) => *rows = found,
                Err(e) => tracing::warn!(actor_kind = "aether_connection", error = %e, "config snapshot read failed"),
            }
        }
        let (config, cut) = config.bounded();
        if cut {
            tracing::debug!(
                actor_kind = "aether_connection", identity = %identity,
                "config snapshot cut at {CONFIG_BYTES_MAX} bytes; the rest is read with kv_list"
            );
        }
        config
    }

    /// Carries out a checkpoint request (checkpoints belong to the session's identity string).
    async fn checkpoint(&self, req: CheckpointRequest) -> CheckpointReply {
        let mut reply = CheckpointReply { request_id: req.request_id.clone(), ..CheckpointReply::default() };
        let identity = self.session.identity.key.clone();
        let key = kv::checkpoint_key(&req.key).to_owned();
        let now = now_ms();
        let outcome: Result<(), String> = match req.op {
            CheckpointOp::Save if req.data.len() > kv::CHECKPOINT_MAX => {
                Err(format!("checkpoint is {} bytes; at most {}", req.data.len(), kv::CHECKPOINT_MAX))
            }
            CheckpointOp::Save => {
                let saved_at = now / 1000;
                let op = WriteOp::AetherCheckpoint {
                    identity,
                    key,
                    save: Some((req.data, saved_at)),
                    expires_at: kv::checkpoint_expiry(now, req.ttl),
                };
                reply.saved_at = saved_at;
                self.write(op).await.map_err(|()| "storage failed; retry".to_owned())
            }
            CheckpointOp::Load => match self.store.reader.aether_checkpoint(&identity, &key, now).await {
                // A missing checkpoint is a success with empty data (as upstream).
                Ok(found) => {
                    if let Some(found) = found {
                        reply.data = found.data;
                        reply.saved_at = found.saved_at;
                    }
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            CheckpointOp::Delete => {
                let op = WriteOp::AetherCheckpoint { identity, key, save: None, expires_at: None };
                self.write(op).await.map_err(|()| "storage failed; retry".to_owned())
            }
            CheckpointOp::List => match self.store.reader.aether_checkpoint_keys(&identity, now).await {
                Ok(keys) => {
                    reply.keys = keys;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
        };
        match outcome {
            Ok(()) => reply.success = true,
            Err(error) => {
                reply.error = error;
                reply.saved_at = 0;
            }
        }
        reply
    }
}

impl Actor for ConnectionActor {
    type Msg = ConnectionMsg;
    type State = ConnectionState;
    type Arguments = ConnectionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ConnectionMsg>,
        args: ConnectionArgs,
    ) -> Result<ConnectionState, ActorProcessingErr> {
        let state = ConnectionState {
            session: args.session,
            outbound: args.outbound,
            store: args.store,
            presence: args.presence,
        };
        // The ack is the first frame, before anything else is read or answered; then the
        // baseline config for agents and tasks.
        let ack = Outbound::Ack { session_id: state.session.session_id.clone(), resumed: state.session.resumed };
        if state.send(ack) && state.session.identity.kind.receives_config() {
            // Read before the first request is handled, so the snapshot comes before any reply.
            let config = state.config_snapshot().await;
            state.send(Outbound::Config(config));
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<ConnectionMsg>,
        msg: ConnectionMsg,
        state: &mut ConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // KV and checkpoints are answered here, in arrival order: a read or a write through the
            // storage actor is short and bounded (ASK_TIMEOUT), and the order is what the SDK sees.
            ConnectionMsg::Request(Request::Kv(req)) => {
                let request_id = req.request_id.clone();
                let sent = match state.kv(req).await {
                    Ok(reply) => state.send(Outbound::Kv(reply)),
                    // Typed failure first (the waiting call returns it), then the error for on_error.
                    Err(e) => {
                        let failed = Outbound::Kv(KvReply { request_id: request_id.clone(), ..KvReply::default() });
                        let code = match e {
                            KvError::Unserved(_) => ErrorCode::NotImplemented,
                            KvError::Invalid(_) => ErrorCode::InvalidArgument,
                            KvError::Principal(_) | KvError::Storage => ErrorCode::KvError,
                        };
                        let correlation =
                            if request_id.is_empty() { Correlation::None } else { Correlation::RequestId(request_id) };
                        state.send(failed)
                            && state.send(Outbound::Refused { code, message: e.to_string(), correlation })
                    }
                };
                if !sent {
                    myself.stop(Some("session ended".into()));
                }
            }
            ConnectionMsg::Request(Request::Send(req)) => {
                let routed = topics::route(&state.session.identity, &req.target_topic, req.payload.len());
                let checked = match &req.metric {
                    Some(shape) => {
                        routed.and_then(|r| topics::check_metric(shape.as_ref().map_err(String::as_str)).map(|()| r))
                    }
                    None => routed,
                };
                let refusal = match checked {
                    Ok(route) => {
                        let identity = &state.session.identity;
                        let message = Incoming {
                            source_topic: identity.key.clone(),
                            payload: Arc::new(req.payload),
                            message_type: req.message_type,
                            workspace: identity.workspace.clone().unwrap_or_default(),
                        };
                        // A cast to the parent: it never calls back into this actor (a refusal
                        // comes back as a cast too).
                        let _ = state.presence.cast(PresenceMsg::Route { route, message, from: myself.clone() });
                        None
                    }
                    Err(e) => Some(e),
                };
                if let Some(e) = refusal
                    && !state.send(refused_send(&e))
                {
                    myself.stop(Some("session ended".into()));
                }
            }
            ConnectionMsg::Request(Request::SwitchWorkspace(new_workspace)) => {
                let mut decision = switch_workspace(&state.session.identity, &new_workspace);
                if let Ok(Some(workspace)) = &decision
                    && !state.session.acl_exempt
                {
                    // The access rules decide as at connect (upstream's ACL connect check).
                    decision = match state.store.reader.aether_acl_rules().await {
                        Ok(rules) if rules.is_empty() => decision,
                        Ok(rules) => {
                            let principal = super::acl::principal_of(&state.session.identity);
                            let resource = super::acl::workspace(workspace);
                            let now = crate::clock::unix_seconds();
                            let d = super::acl::decide(
                                &rules,
                                &principal,
                                &resource,
                                super::acl::WORKSPACE_CONNECT_LEVEL,
                                now,
                            );
                            if d.allowed {
                                decision
                            } else {
                                Err((ErrorCode::PermissionDenied, format!("ERR_PERMISSION_DENIED: {}", d.reason)))
                            }
                        }
                        Err(e) => {
                            tracing::warn!(actor_kind = "aether_connection", error = %e, "access rules unreadable");
                            Err((
                                ErrorCode::WorkspaceSwitchFailed,
                                "ERR_WORKSPACE_SWITCH_FAILED: the access rules could not be read; retry".into(),
                            ))
                        }
                    };
                }
                match decision {
                    Ok(Some(workspace)) => {
                        tracing::info!(
                            actor_kind = "aether_connection", identity = %state.session.identity,
                            from = state.session.identity.workspace.as_deref().unwrap_or(""), to = %workspace,
                            "user switched workspace"
                        );
                        state.session.identity.workspace = Some(workspace.clone());
                        // The presence actor routes group lanes (gu::, uw::, pg::) by it.
                        let _ = state.presence.cast(PresenceMsg::Moved { connection: myself.get_id(), workspace });
                    }
                    Ok(None) => {}
                    Err((code, message)) => {
                        if !state.send(Outbound::Refused { code, message, correlation: Correlation::None }) {
                            myself.stop(Some("session ended".into()));
                        }
                    }
                }
            }
            ConnectionMsg::Deliver(message) => {
                if !state.send(Outbound::Message(message)) {
                    myself.stop(Some("session ended".into()));
                }
            }
            ConnectionMsg::SendRefused { code, message } => {
                if !state.send(Outbound::Refused { code, message, correlation: Correlation::None }) {
                    myself.stop(Some("session ended".into()));
                }
            }
            ConnectionMsg::Request(Request::Checkpoint(req)) => {
                let reply = state.checkpoint(req).await;
                if !state.send(Outbound::Checkpoint(reply)) {
                    myself.stop(Some("session ended".into()));
                }
            }
            ConnectionMsg::Request(request) => {
                let (out, ends) = answer(request);
                if !state.send(out) || ends {
                    myself.stop(Some("session ended".into()));
                }
            }
            ConnectionMsg::Reply(out) => {
                if !state.send(*out) {
                    myself.stop(Some("session ended".into()));
                }
            }
            ConnectionMsg::Kick { reason } => {
                let message = format!("disconnected by an admin: {reason}");
                // Best effort: a client that is not reading loses its stream either way.
                let _ = state.send(Outbound::ForceDisconnect { reason: reason.clone() });
                let _ = state.send(Outbound::End { end: EndKind::Cancelled, message });
                myself.stop(Some("disconnected by an admin".into()));
            }
            ConnectionMsg::Closed => myself.stop(Some("stream closed".into())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unserved_requests_are_refused_with_their_correlation() {
        let (out, ends) =
            answer(Request::Unserved { operation: "kv_op", correlation: Correlation::RequestId("r-1".into()) });
        assert!(!ends);
        let Outbound::Refused { code, message, correlation } = out else { panic!("not a refusal: {out:?}") };
        assert_eq!(code.as_str(), "ERR_NOT_IMPLEMENTED");
        assert!(message.contains("kv_op"), "{message}");
        assert_eq!(correlation, Correlation::RequestId("r-1".into()));
    }

    #[test]
    fn only_users_switch_workspaces() {
        use super::super::identity::ClaimedPrincipal;
        let resolve = |c: ClaimedPrincipal| c.resolve(|| "p".into()).unwrap_or_else(|e| panic!("{e}"));
        let mut user = resolve(ClaimedPrincipal::User { user_id: "ann".into(), window_id: "w".into() });
        assert_eq!(switch_workspace(&user, "team"), Ok(Some("team".into())));
        user.workspace = Some("team".into());
        assert_eq!(switch_workspace(&user, "team"), Ok(None));
        assert!(matches!(switch_workspace(&user, "a::b"), Err((ErrorCode::InvalidArgument, _))));
        assert!(matches!(switch_workspace(&user, ""), Err((ErrorCode::InvalidArgument, _))));
        let agent = resolve(ClaimedPrincipal::Agent {
            workspace: "default".into(),
            implementation: "i".into(),
            specifier: "s".into(),
        });
        let Err((code, message)) = switch_workspace(&agent, "team") else { panic!("an agent switched") };
        assert_eq!(code.as_str(), "ERR_INVALID_PRINCIPAL");
        assert!(message.contains("only users"), "{message}");
    }

    #[test]
    fn the_config_snapshot_stays_under_its_byte_bound() {
        let big = |n: usize, k: &str| (k.to_owned(), vec![0u8; n]);
        let config =
            ConfigData { workspace_exclusive: vec![big(10, "a"), big(20, "b")], global_exclusive: vec![big(30, "c")] };
        assert_eq!(config.clone().bounded(), (config, false));
        let half = CONFIG_BYTES_MAX / 2;
        let config = ConfigData {
            workspace_exclusive: vec![big(half, "a"), big(half, "b")],
            global_exclusive: vec![big(1, "c")],
        };
        let (kept, cut) = config.bounded();
        assert!(cut);
        assert_eq!(kept.workspace_exclusive.len(), 1);
        // Nothing of the global scope once the workspace scope was cut (no gaps in the middle).
        assert!(kept.global_exclusive.is_empty());
    }

    #[test]
    fn a_protocol_violation_ends_the_stream() {
        let (out, ends) = answer(Request::Violation("second InitConnection".into()));
        assert!(ends);
        assert_eq!(out, Outbound::End { end: EndKind::InvalidArgument, message: "second InitConnection".into() });
    }
}
