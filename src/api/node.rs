//! The node protocol's destination endpoints (contract §9.5): a peer submits, follows, resumes
//! and cancels relayed tasks. Callers are [`Binding::Peer`](aethrolink_actors::service::Binding::Peer); errors are typed frames
//! `{"message_type", "code", "message", "retryable"}` with the status of their kind.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use aethrolink_actors::identity::node_auth::{NODE_KEY_HEADER, NodeRequestHeaders};
use aethrolink_actors::identity::signature::{ReceivedHeaders, RequestParts, SignedHeader};
use aethrolink_actors::model::TaskStatus;
use aethrolink_actors::node_proto::{
    MessageType, NodeErrorCode, TaskCancelRequest, TaskResumeRequest, TaskSubmitRequest,
};
use aethrolink_actors::service::Caller;
use aethrolink_actors::service::node_tasks::{NodeFailure, control_answer};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio_stream::wrappers::ReceiverStream;

use super::AppState;

/// How often an idle event stream sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
use super::error::status_of;

/// A peer node calling, and the body it sent (the signature covers it). The headers and body are
/// handed to the core's verifier ([`Services::authenticate_node`]): a valid signature by a pinned
/// peer key (or any key with `--accept-from-any-node`) → a caller acting as that node; unsigned →
/// an anonymous peer only in the Go-compatibility mode (`--allow-unsigned-peers`); anything else
/// → 401 `unauthenticated` before anything runs.
///
/// [`Services::authenticate_node`]: aethrolink_actors::service::Services::authenticate_node
pub struct PeerRequest {
    pub caller: Caller,
    pub body: Bytes,
}

impl FromRequest<AppState> for PeerRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = node_request_headers(&parts.headers);
        let target = parts.uri.path_and_query().map_or_else(|| parts.uri.path(), |pq| pq.as_str());
        let request = RequestParts { method: parts.method.as_str(), target, body: &body };
        let message_type = message_type_of(parts.uri.path());
        let caller = state
            .services
            .authenticate_node(
                message_type,
                &headers,
                &request,
                state.accept,
                state.allow_unsigned_peers,
                &state.nonces,
            )
            .await
            .map_err(|f| {
                tracing::info!(path = %parts.uri.path(), error = %f.frame.message, "node-protocol request refused");
                NodeError(f).into_response()
            })?;
        if !headers.is_signed() {
            tracing::debug!(path = %parts.uri.path(), "unsigned node-protocol request accepted (Go-compatibility mode)");
        }
        Ok(PeerRequest { caller, body })
    }
}

/// The signature headers of a node-protocol request (what the core's verifier reads).
pub(super) fn node_request_headers(headers: &HeaderMap) -> NodeRequestHeaders<'_> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    NodeRequestHeaders {
        signature: ReceivedHeaders {
            content_digest: header(SignedHeader::ContentDigest.name()),
            signature_input: header(SignedHeader::SignatureInput.name()),
            signature: header(SignedHeader::Signature.name()),
        },
        node_key: header(NODE_KEY_HEADER),
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
#[utoipa::path(
    post,
    path = "/v1/node/tasks",
    operation_id = "node_submit",
    tag = "node-protocol",
    request_body(content = super::openapi::Object, content_type = "application/json", description = "See docs/api.md"),
    responses((status = 202, description = "TaskAccepted", body = super::openapi::Object), (status = 404, description = "No such target", body = super::openapi::NodeErrorBody), (status = 409, description = "The submission conflicts", body = super::openapi::NodeErrorBody), (status = 422, description = "Well-formed but impossible", body = super::openapi::NodeErrorBody))
)]
pub async fn submit(
    State(st): State<AppState>,
    PeerRequest { caller, body }: PeerRequest,
) -> Result<impl IntoResponse, NodeError> {
    let req: TaskSubmitRequest = decode(MessageType::TaskSubmit, &body)?;
    Ok((StatusCode::ACCEPTED, Json(st.services.submit_node_task(&caller, req).await?)))
}

/// `GET /v1/node/tasks/{id}/events?origin_proxy_task_id=` → SSE of TaskEventFrames, from the
/// start or after the seq in `Last-Event-ID` (an origin re-opening a closed stream).
#[utoipa::path(
    get,
    path = "/v1/node/tasks/{task_id}/events",
    operation_id = "node_events",
    tag = "node-protocol",
    params(("task_id" = String, Path, description = "The task's id"), ("origin_proxy_task_id" = Option<String>, Query, description = "The origin's proxy task"), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event seq")),
    responses((status = 200, description = "Server-sent TaskEventFrames", content_type = "text/event-stream", body = String))
)]
pub async fn events(
    State(st): State<AppState>,
    Path(task_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    PeerRequest { caller, .. }: PeerRequest,
) -> Result<Response, NodeError> {
    let origin = params.get("origin_proxy_task_id").cloned();
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(|| {
            let message = "Last-Event-ID must be a non-negative integer event seq";
            NodeError(NodeFailure::invalid(MessageType::TaskEvent, NodeErrorCode::InvalidTaskEvents, message))
        })?,
    };
    let stream = st.services.node_task_events(&caller, &task_id, origin, after).await?;
    let (guard, context) = (stream.subscription.guard, stream.context);
    let shutdown = st.shutdown.clone();
    // Every event already published goes out in one body chunk: the origin mirrors what arrives
    // together in one durable write (a frame per chunk would cost it a commit per frame).
    let batches = ReceiverStream::new(stream.subscription.events).ready_chunks(256).map(move |events| {
        let _keep = &guard;
        let mut text = String::new();
        for event in &events {
            let data = serde_json::to_string(&context.frame(event)).unwrap_or_else(|_| "{}".to_owned());
            text.push_str(&format!("event: task.event\nid: {}\ndata: {data}\n\n", event.seq));
        }
        Some(Bytes::from(text))
    });
    // Ends the body once the events end (after the terminal one); keep-alive comments meanwhile.
    let events = batches.chain(futures::stream::once(async { None }));
    let keep_alive = futures::stream::unfold((), |()| async {
        tokio::time::sleep(KEEP_ALIVE).await;
        Some((Some(Bytes::from_static(b": keep-alive\n\n")), ()))
    });
    let body = futures::stream::select(events, keep_alive)
        .take_while(|chunk| std::future::ready(chunk.is_some()))
        .filter_map(std::future::ready)
        .map(Ok::<_, Infallible>)
        .take_until(async move { shutdown.cancelled().await });
    let headers = [(CONTENT_TYPE, "text/event-stream"), (CACHE_CONTROL, "no-cache")];
    Ok((headers, Body::from_stream(body)).into_response())
}

/// `POST /v1/node/tasks/{id}/resume` → 202 `{"task_id", "status"}`.
#[utoipa::path(
    post,
    path = "/v1/node/tasks/{task_id}/resume",
    operation_id = "node_resume",
    tag = "node-protocol",
    params(("task_id" = String, Path, description = "The task's id")),
    request_body(content = super::openapi::Object, content_type = "application/json", description = "See docs/api.md"),
    responses((status = 202, description = "`{task_id, status}`", body = super::openapi::Object), (status = 409, description = "The task is not awaiting input", body = super::openapi::NodeErrorBody), (status = 422, description = "The answer does not fit the question", body = super::openapi::NodeErrorBody))
)]
pub async fn resume(
    State(st): State<AppState>,
    Path(task_id): Path<String>,
    PeerRequest { caller, body }: PeerRequest,
) -> Result<impl IntoResponse, NodeError> {
    let req: TaskResumeRequest = decode(MessageType::TaskResume, &body)?;
    let status = st.services.resume_node_task(&caller, &task_id, req).await?;
    Ok((StatusCode::ACCEPTED, Json(control_answer(&task_id, status))))
}

/// `POST /v1/node/tasks/{id}/cancel` → 202 `{"task_id", "status"}` (200 if already terminal).
#[utoipa::path(
    post,
    path = "/v1/node/tasks/{task_id}/cancel",
    operation_id = "node_cancel",
    tag = "node-protocol",
    params(("task_id" = String, Path, description = "The task's id")),
    request_body(content = super::openapi::Object, content_type = "application/json", description = "See docs/api.md"),
    responses((status = 202, description = "`{task_id, status}`", body = super::openapi::Object), (status = 200, description = "`{task_id, status}`: the task is terminal", body = super::openapi::Object))
)]
pub async fn cancel(
    State(st): State<AppState>,
    Path(task_id): Path<String>,
    PeerRequest { caller, body }: PeerRequest,
) -> Result<impl IntoResponse, NodeError> {
    let req: TaskCancelRequest = decode(MessageType::TaskCancel, &body)?;
    let status: TaskStatus = st.services.cancel_node_task(&caller, &task_id, req).await?;
    let code = if status.is_terminal() { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((code, Json(control_answer(&task_id, status))))
}
