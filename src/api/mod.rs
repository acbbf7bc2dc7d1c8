//! The HTTP API (AethroLink v1, task part): routing of requests to the core, strict JSON input,
//! `{"error": …}` output. Handlers translate; they hold no state of their own.

mod agents;
mod artifacts;
mod error;
mod events;
mod json;
mod tasks;
mod threads;

use std::sync::Arc;

use aethrolink_actors::root::Directory;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// The core.
    pub dir: Arc<Directory>,
    /// This node's stable id.
    pub node_id: String,
    /// Cancelled when the node shuts down: SSE streams end on it.
    pub shutdown: CancellationToken,
}

/// Builds the router.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/ping", get(ping))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/node/health", get(node_health))
        .route("/v1/node/stats", get(node_stats))
        .route("/v1/tasks", post(tasks::create).get(tasks::list))
        .route("/v1/tasks/{task_id}", get(tasks::get))
        .route("/v1/tasks/{task_id}/events", get(events::stream))
        .route("/v1/tasks/{task_id}/resume", post(tasks::resume))
        .route("/v1/tasks/{task_id}/cancel", post(tasks::cancel))
        .route("/v1/targets", get(agents::targets))
        .route("/v1/targets/{target_id}/health", get(agents::target_health))
        .route("/v1/targets/{target_id}/start", post(agents::target_start))
        .route("/v1/targets/{target_id}/stop", post(agents::target_stop))
        .route("/v1/targets/{target_id}/launches", get(agents::target_launches))
        .route("/v1/agents/register", post(agents::register))
        .route("/v1/agents", get(agents::list))
        .route("/v1/agents/{agent_id}", get(agents::get))
        .route("/v1/agents/{agent_id}/heartbeat", post(agents::heartbeat))
        .route("/v1/agents/{agent_id}/unregister", post(agents::unregister))
        .route("/v1/threads", post(threads::create).get(threads::list))
        .route("/v1/threads/{thread_id}", get(threads::get))
        .route("/v1/threads/{thread_id}/turns", get(threads::turns))
        .route("/v1/threads/{thread_id}/inspect", get(threads::inspect))
        .route("/v1/threads/{thread_id}/continue", post(threads::continue_thread))
        .route("/artifacts/{artifact_id}", get(artifacts::get))
        .route("/v1/artifacts/{artifact_id}", get(artifacts::get))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

async fn ping() -> Json<Value> {
    Json(json!({ "ok": true, "service": "aethrolink" }))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true }))
}

/// Ready when storage answers and every core service is running.
async fn readyz(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    st.dir.reader.ping().await.map_err(|e| ApiError::unavailable(format!("storage: {e}")))?;
    let services = [
        st.dir.storage.get().map(|_| ()),
        st.dir.registry.get().map(|_| ()),
        st.dir.runtimes.get().map(|_| ()),
        st.dir.tasks.get().map(|_| ()),
        st.dir.sse.get().map(|_| ()),
    ];
    for s in services {
        s.map_err(|e| ApiError::unavailable(e.to_string()))?;
    }
    Ok(Json(json!({ "ready": true, "node_id": st.node_id })))
}

/// Live actor counts and storage counters: what an operator checks for leaks and batching.
async fn node_stats(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    use aethrolink_actors::sse::SseHubMsg;
    use aethrolink_actors::storage::StorageMsg;
    use aethrolink_actors::task_supervisor::TaskSupMsg;
    let ask = aethrolink_actors::supervision::ASK_TIMEOUT;
    let tasks = st.dir.tasks.ask(ask, TaskSupMsg::Count).await?;
    let subscribers = st.dir.sse.ask(ask, SseHubMsg::Count).await?;
    let storage = st.dir.storage.ask(ask, StorageMsg::Stats).await?;
    Ok(Json(json!({
        "node_id": st.node_id,
        "live_task_actors": tasks,
        "sse_subscribers": subscribers,
        "storage": {"commits": storage.commits, "writes": storage.writes, "max_batch": storage.max_batch},
    })))
}

async fn node_health(State(st): State<AppState>) -> Json<Value> {
    Json(json!({
        "node_id": st.node_id,
        "ok": true,
        "protocol": "aethrolink.node.v1",
        "checked_at": aethrolink_actors::clock::now_rfc3339(),
    }))
}
