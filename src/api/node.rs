//! The node protocol's destination endpoints (contract §9.5): a peer submits, follows, resumes
//! and cancels relayed tasks. Callers are [`Binding::Peer`]; errors are typed frames
//! `{"message_type", "code", "message", "retryable"}` with the status of their kind.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use aethrolink_actors::model::TaskStatus;
use aethrolink_actors::node_proto::{
    MessageType, NodeErrorCode, TaskCancelRequest, TaskResumeRequest, TaskSubmitRequest,
};
use aethrolink_actors::service::node_tasks::{NodeFailure, control_answer};
use aethrolink_actors::service::{Binding, Caller};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio_stream::wrappers::ReceiverStream;

use super::AppState;
use super::error::status_of;

/// A peer node calling. Until node signatures are verified (they plug in here), a caller is
/// accepted only in the Go-compatibility mode (`--allow-unsigned-peers`), as an anonymous peer;
/// otherwise it is refused `unauthenticated` before anything runs.
pub struct PeerCaller(pub Caller);

impl FromRequestParts<AppState> for PeerCaller {
    type Rejection = NodeError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NodeError> {
        if state.allow_unsigned_peers {
            tracing::debug!(path = %parts.uri.path(), "unsigned node-protocol request accepted (Go-compatibility mode)");
            return Ok(PeerCaller(Caller::anonymous(Binding::Peer)));
        }
        let message_type = message_type_of(parts.uri.path());
        Err(NodeError(NodeFailure::unauthenticated(
            message_type,
            "unsigned node-protocol request refused: this node accepts relayed work only from signed peers; \
             start it with --allow-unsigned-peers (ALINK_ALLOW_UNSIGNED_PEERS=1) to accept unsigned peers as the Go node does",
        )))
    }
}

/// The message type a node-protocol path carries (for error frames).
fn message_type_of(path: &str) -> MessageType {
    if path.ends_with("/events") {
        MessageType::TaskEvent
    } else if path.ends_with("/resume") {
        MessageType::TaskResume
    } else if path.ends_with("/cancel") {
        MessageType::TaskCancel
    } else {
        MessageType::TaskSubmit
    }
}

/// A typed error frame as a response.
pub struct NodeError(NodeFailure);

impl IntoResponse for NodeError {
    fn into_response(self) -> Response {
        (status_of(self.0.kind), Json(self.0.frame)).into_response()
    }
}

impl From<NodeFailure> for NodeError {
    fn from(f: NodeFailure) -> Self {
        NodeError(f)
    }
}

/// Strict decoding (unknown fields refused; an empty body is an error) into `invalid_json`.
fn decode<T: DeserializeOwned>(t: MessageType, body: &Bytes) -> Result<T, NodeError> {
    serde_json::from_slice(body).map_err(|e| {
        let message = if body.is_empty() { "request body is empty".to_owned() } else { e.to_string() };
        NodeError(NodeFailure::invalid(t, NodeErrorCode::InvalidJson, message))
    })
}

/// `POST /v1/node/tasks` → 202 TaskAccepted.
pub async fn submit(
    State(st): State<AppState>,
    PeerCaller(caller): PeerCaller,
    body: Bytes,
) -> Result<impl IntoResponse, NodeError> {
    let req: TaskSubmitRequest = decode(MessageType::TaskSubmit, &body)?;
    Ok((StatusCode::ACCEPTED, Json(st.services.submit_node_task(&caller, req).await?)))
}

/// `GET /v1/node/tasks/{id}/events?origin_proxy_task_id=` → SSE of TaskEventFrames.
pub async fn events(
    State(st): State<AppState>,
    PeerCaller(caller): PeerCaller,
    Path(task_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, NodeError> {
    let origin = params.get("origin_proxy_task_id").cloned();
    let stream = st.services.node_task_events(&caller, &task_id, origin).await?;
    let (guard, context) = (stream.subscription.guard, stream.context);
    let shutdown = st.shutdown.clone();
    let frames = ReceiverStream::new(stream.subscription.events)
        .map(move |event| {
            let _keep = &guard;
            let frame = context.frame(&event);
            let data = serde_json::to_string(&frame).unwrap_or_else(|_| "{}".to_owned());
            Ok::<_, Infallible>(Event::default().event("task.event").id(event.seq.to_string()).data(data))
        })
        .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(frames)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive"))
        .into_response())
}

/// `POST /v1/node/tasks/{id}/resume` → 202 `{"task_id", "status"}`.
pub async fn resume(
    State(st): State<AppState>,
    PeerCaller(caller): PeerCaller,
    Path(task_id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, NodeError> {
    let req: TaskResumeRequest = decode(MessageType::TaskResume, &body)?;
    let status = st.services.resume_node_task(&caller, &task_id, req).await?;
    Ok((StatusCode::ACCEPTED, Json(control_answer(&task_id, status))))
}

/// `POST /v1/node/tasks/{id}/cancel` → 202 `{"task_id", "status"}` (200 if already terminal).
pub async fn cancel(
    State(st): State<AppState>,
    PeerCaller(caller): PeerCaller,
    Path(task_id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, NodeError> {
    let req: TaskCancelRequest = decode(MessageType::TaskCancel, &body)?;
    let status: TaskStatus = st.services.cancel_node_task(&caller, &task_id, req).await?;
    let code = if status.is_terminal() { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((code, Json(control_answer(&task_id, status))))
}
