//! The destination side of the node protocol (contract §9.5): a peer submits a task, follows its
//! events, resumes or cancels it. A relayed task is a normal local task here (sender = the
//! origin node); these operations are the task operations with the protocol's validation and
//! typed error frames. Called with a [`Caller`] whose binding is [`super::Binding::Peer`].

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::caller::{Binding, Principal, Rights};
use super::tasks::{EventSubscription, ResumeInput};
use super::{Caller, ErrorKind, ServiceError, Services};
use crate::clock;
use crate::identity::node_auth::{self, AcceptPolicy, NodeRequestHeaders};
use crate::identity::signature::{NonceCache, RequestParts};
use crate::intake::{IdempotencyKey, TaskRequest};
use crate::model::{DeliveryRequest, TaskEvent, TaskRecord, TaskStatus};
use crate::node_proto::{
    MessageType, NodeErrorCode, NodeErrorFrame, TaskAccepted, TaskCancelRequest, TaskEventFrame, TaskResumeRequest,
    TaskSubmitRequest, validate_control,
};

/// A refused node-protocol request: the frame to send and the kind of failure (its status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFailure {
    pub kind: ErrorKind,
    pub frame: NodeErrorFrame,
}

impl NodeFailure {
    /// A request that could not be read or is incomplete (400, not retryable).
    pub fn invalid(message_type: MessageType, code: NodeErrorCode, message: impl Into<String>) -> Self {
        NodeFailure { kind: ErrorKind::Invalid, frame: NodeErrorFrame::new(message_type, code, message) }
    }

    /// The caller is not a node this one accepts (401, not retryable).
    pub fn unauthenticated(message_type: MessageType, message: impl Into<String>) -> Self {
        NodeFailure {
            kind: ErrorKind::Unauthenticated,
            frame: NodeErrorFrame::new(message_type, NodeErrorCode::Unauthenticated, message),
        }
    }

    /// The operation failed: the service error's kind, its message, retryable.
    fn failed(message_type: MessageType, code: NodeErrorCode, e: ServiceError) -> Self {
        // A hidden cause stays in the log; the peer gets the stable message and the id to quote.
        let message = match e.log_detail() {
            Some(error_id) => format!("{} (error_id {error_id})", e.message),
            None => e.message,
        };
        NodeFailure { kind: e.kind, frame: NodeErrorFrame::new(message_type, code, message) }
    }
}

/// A destination task's event stream: frames built from the task's events.
pub struct NodeEventStream {
    /// The task's events (history then live; closes after the terminal one).
    pub subscription: EventSubscription,
    /// What every frame carries besides the event.
    pub context: FrameContext,
}

/// The per-stream part of each frame (the remote ids are as loaded when the stream opened).
#[derive(Clone, Debug)]
pub struct FrameContext {
    pub origin_proxy_task_id: String,
    pub destination_node_id: Arc<str>,
    pub destination_task_id: String,
    pub destination_thread_id: Option<String>,
    pub remote_execution_id: Option<String>,
    pub remote_session_id: Option<String>,
}

impl FrameContext {
    /// The frame of one event.
    pub fn frame(&self, event: &TaskEvent) -> TaskEventFrame {
        TaskEventFrame {
            origin_proxy_task_id: self.origin_proxy_task_id.clone(),
            destination_node_id: self.destination_node_id.to_string(),
            destination_task_id: self.destination_task_id.clone(),
            destination_thread_id: self.destination_thread_id.clone(),
            seq: event.seq,
            kind: event.kind.as_str().to_owned(),
            state: event.state.as_str().to_owned(),
            source: event.source.as_str().to_owned(),
            message: event.message.clone(),
            data: Some(Value::Object(event.data.clone())).filter(|_| !event.data.is_empty()),
            remote_execution_id: self.remote_execution_id.clone(),
            remote_session_id: self.remote_session_id.clone(),
            occurred_at: event.created_at.clone(),
        }
    }
}

/// Task metadata key of the node that created a destination task, as authenticated (absent:
/// an unsigned Go-compatibility caller created it).
pub const AUTHENTICATED_ORIGIN: &str = "authenticated_origin_node_id";

/// Whether `caller` may cancel or resume `task` (a relayed task is controlled only by the node
/// that created it). Unsigned callers (Go-compatibility mode) control only tasks unsigned callers
/// created, as the Go node does; a signed caller only those it created. Pure.
pub fn may_control(caller: &Caller, task: &TaskRecord) -> Result<(), String> {
    let creator = task.metadata.get(AUTHENTICATED_ORIGIN).and_then(Value::as_str);
    match (&caller.principal, creator) {
        (Principal::Node(me), Some(creator)) if me == creator => Ok(()),
        (Principal::Anonymous, None) => Ok(()),
        (who, Some(creator)) => Err(format!(
            "task {} was relayed by node {creator}; {} may not control it",
            task.task_id,
            match who {
                Principal::Node(id) => format!("node {id}"),
                _ => "an unsigned caller".to_owned(),
            }
        )),
        (_, None) => Err(format!("task {} was not relayed by this caller", task.task_id)),
    }
}

impl Services {
    /// Authenticates a node-protocol request: a valid signature by a registered peer's pinned key
    /// (or, with [`AcceptPolicy::AnyNode`], by any key) → a [`Binding::Peer`] caller acting as
    /// that node; unsigned → the anonymous peer if `allow_unsigned`; else `unauthenticated`
    /// naming what was wrong. `nonces` is the binding's (one per process).
    pub async fn authenticate_node(
        &self,
        message_type: MessageType,
        headers: &NodeRequestHeaders<'_>,
        request: &RequestParts<'_>,
        policy: AcceptPolicy,
        allow_unsigned: bool,
        nonces: &Mutex<NonceCache>,
    ) -> Result<Caller, NodeFailure> {
        if !headers.is_signed() {
            if allow_unsigned {
                return Ok(Caller::anonymous(Binding::Peer));
            }
            metrics::counter!(crate::telemetry::AUTH_FAILURES, "reason" => "unsigned").increment(1);
            return Err(NodeFailure::unauthenticated(
                message_type,
                "unsigned node-protocol request refused: this node accepts relayed work only from signed peers; \
                 start it with --allow-unsigned-peers (ALINK_ALLOW_UNSIGNED_PEERS=1) to accept unsigned peers as the Go node does",
            ));
        }
        // The published snapshot, cloned out of the watch (never held across an await).
        let peers = self.dir.peer_targets.borrow().clone();
        let pinned = peers.pinned();
        // Go-compatibility mode accepts anyone unsigned, so a correctly signed unknown node is
        // accepted too (as itself); a bad, stale or replayed signature is still refused.
        let policy = if allow_unsigned { AcceptPolicy::AnyNode } else { policy };
        let now = node_auth::unix_now();
        let outcome = match nonces.lock() {
            Ok(mut cache) => node_auth::authenticate(headers, request, pinned, policy, now, &mut cache),
            Err(poisoned) => node_auth::authenticate(headers, request, pinned, policy, now, &mut poisoned.into_inner()),
        };
        let who = outcome.map_err(|e| {
            metrics::counter!(crate::telemetry::AUTH_FAILURES, "reason" => e.reason()).increment(1);
            NodeFailure::unauthenticated(message_type, e.to_string())
        })?;
        Ok(Caller { principal: Principal::Node(who.node_id), binding: Binding::Peer, rights: Rights::ALL })
    }

    /// The destination task `task_id`, if `caller` may control it (else 403).
    async fn controllable(
        &self,
        t: MessageType,
        code: NodeErrorCode,
        caller: &Caller,
        task_id: &str,
    ) -> Result<(), NodeFailure> {
        let task = self.get_task(caller, task_id).await.map_err(|e| NodeFailure::failed(t, code, e))?;
        may_control(caller, &task).map_err(|m| NodeFailure::failed(t, code, ServiceError::new(ErrorKind::Forbidden, m)))
    }

    /// `task.submit`: creates a normal local task (sender = the origin node) → `task.accepted`.
    pub async fn submit_node_task(&self, caller: &Caller, req: TaskSubmitRequest) -> Result<TaskAccepted, NodeFailure> {
        const T: MessageType = MessageType::TaskSubmit;
        req.validate().map_err(|m| NodeFailure::invalid(T, NodeErrorCode::InvalidTaskSubmit, m))?;
        let mut metadata = serde_json::Map::new();
        metadata.insert("origin_node_id".into(), json!(req.origin_node_id));
        metadata.insert("origin_proxy_task_id".into(), json!(req.origin_proxy_task_id));
        if let Some(thread) = &req.origin_thread_id {
            metadata.insert("origin_thread_id".into(), json!(thread));
        }
        if let Principal::Node(origin) = &caller.principal {
            metadata.insert(AUTHENTICATED_ORIGIN.into(), json!(origin));
        }
        if !req.trace.trace_id.is_empty() {
            metadata.insert("trace_id".into(), json!(req.trace.trace_id));
        }
        let idempotency_key = req.idempotency_key();
        let request = TaskRequest {
            thread_id: None,
            sender: Some(req.origin_node_id.clone()),
            target_agent_id: Some(req.target_agent_id),
            intent: Some(req.intent),
            payload: req.payload,
            runtime_options: req.runtime_options.unwrap_or_default(),
            conversation_id: None,
            delivery: DeliveryRequest::resolve(req.delivery),
            metadata,
            // A submit sent again (the origin retrying, or re-dispatching after a restart) answers
            // with the task it created: one destination task per proxy task.
            idempotency: Some(IdempotencyKey { scope: format!("relay:{}", req.origin_node_id), key: idempotency_key }),
            priority: Default::default(),
            ..Default::default()
        };
        let task: TaskRecord = self
            .create_task(caller, request)
            .await
            .map_err(|e| NodeFailure::failed(T, NodeErrorCode::TaskSubmitFailed, e))?;
        Ok(TaskAccepted {
            origin_proxy_task_id: req.origin_proxy_task_id,
            destination_node_id: self.node_id().to_owned(),
            destination_task_id: task.task_id,
            destination_thread_id: None,
            accepted_at: clock::now_rfc3339(),
        })
    }

    /// `task.event` stream of a destination task: its history after event `after` (0: all of
    /// it; an origin re-opening a stream sends the last seq it mirrored), then live events,
    /// closing after the terminal one.
    pub async fn node_task_events(
        &self,
        caller: &Caller,
        task_id: &str,
        origin_proxy_task_id: Option<String>,
        after: u64,
    ) -> Result<NodeEventStream, NodeFailure> {
        const T: MessageType = MessageType::TaskEvent;
        let origin_proxy_task_id = origin_proxy_task_id.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            NodeFailure::invalid(T, NodeErrorCode::InvalidTaskEvents, "origin_proxy_task_id is required")
        })?;
        let failed = |e| NodeFailure::failed(T, NodeErrorCode::TaskEventsFailed, e);
        // Subscribe first: the subscription replays history after registering, so nothing falls
        // between the record read below and the stream.
        let subscription = self.subscribe_task_events(caller, task_id, after).await.map_err(failed)?;
        let task = self.get_task(caller, task_id).await.map_err(failed)?;
        let remote = task.remote.as_ref();
        let context = FrameContext {
            origin_proxy_task_id,
            destination_node_id: Arc::from(self.node_id()),
            destination_task_id: task.task_id.clone(),
            destination_thread_id: task.thread_id.clone(),
            remote_execution_id: remote.and_then(|r| r.remote_execution_id.clone()),
            remote_session_id: remote.and_then(|r| r.remote_session_id.clone()),
        };
        Ok(NodeEventStream { subscription, context })
    }

    /// `task.resume` of a destination task → its status.
    pub async fn resume_node_task(
        &self,
        caller: &Caller,
        task_id: &str,
        req: TaskResumeRequest,
    ) -> Result<TaskStatus, NodeFailure> {
        const T: MessageType = MessageType::TaskResume;
        validate_control(&req.origin_node_id, &req.origin_proxy_task_id, &req.destination_task_id)
            .map_err(|m| NodeFailure::invalid(T, NodeErrorCode::InvalidTaskResume, m))?;
        check_same_task(T, task_id, &req.destination_task_id)?;
        self.controllable(T, NodeErrorCode::TaskResumeFailed, caller, task_id).await?;
        let input = ResumeInput { payload: req.payload, ..Default::default() };
        self.resume_task(caller, task_id, input)
            .await
            .map_err(|e| NodeFailure::failed(T, NodeErrorCode::TaskResumeFailed, e))
    }

    /// `task.cancel` of a destination task → its status (already terminal: unchanged).
    pub async fn cancel_node_task(
        &self,
        caller: &Caller,
        task_id: &str,
        req: TaskCancelRequest,
    ) -> Result<TaskStatus, NodeFailure> {
        const T: MessageType = MessageType::TaskCancel;
        validate_control(&req.origin_node_id, &req.origin_proxy_task_id, &req.destination_task_id)
            .map_err(|m| NodeFailure::invalid(T, NodeErrorCode::InvalidTaskCancel, m))?;
        check_same_task(T, task_id, &req.destination_task_id)?;
        self.controllable(T, NodeErrorCode::TaskCancelFailed, caller, task_id).await?;
        self.cancel_task(caller, task_id, req.reason)
            .await
            .map_err(|e| NodeFailure::failed(T, NodeErrorCode::TaskCancelFailed, e))
    }
}

fn check_same_task(t: MessageType, path_id: &str, body_id: &str) -> Result<(), NodeFailure> {
    if path_id == body_id {
        Ok(())
    } else {
        Err(NodeFailure::invalid(
            t,
            NodeErrorCode::TaskIdMismatch,
            format!("destination_task_id '{body_id}' does not match the task id in the path '{path_id}'"),
        ))
    }
}

/// The JSON of a control answer.
pub fn control_answer(task_id: &str, status: TaskStatus) -> Value {
    json!({ "task_id": task_id, "status": status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_creating_origin_controls_a_task() {
        let task = |creator: Option<&str>| {
            let mut metadata = serde_json::Map::new();
            if let Some(c) = creator {
                metadata.insert(AUTHENTICATED_ORIGIN.into(), json!(c));
            }
            serde_json::from_value::<TaskRecord>(json!({
                "task_id": "t", "conversation_id": "c", "sender": "s", "intent": "i", "status": "running",
                "delivery": {"mode": "stream", "launch_if_down": false}, "metadata": metadata,
                "created_at": "x", "updated_at": "x"
            }))
        };
        let node =
            |id: &str| Caller { principal: Principal::Node(id.into()), binding: Binding::Peer, rights: Rights::ALL };
        let anonymous = Caller::anonymous(Binding::Peer);
        let cases = [
            (node("a"), Some("a"), true),
            (node("b"), Some("a"), false),
            (anonymous.clone(), Some("a"), false),
            (anonymous, None, true),
            (node("a"), None, false),
        ];
        for (caller, creator, allowed) in cases {
            let record = task(creator).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(may_control(&caller, &record).is_ok(), allowed, "{:?} on {creator:?}", caller.principal);
        }
    }
}
