//! The HTTP binding (AethroLink v1): decodes requests, calls the core's service layer
//! ([`aethrolink_actors::service::Services`]) with the request's [`Caller`], and encodes the
//! answer; errors are `{"error": …}` with the status from one table ([`error::status_of`]).
//! Handlers translate; they hold no domain rules and no state of their own.

mod access;
mod agents;
mod artifacts;
mod auth;
mod error;
mod events;
pub mod guard;
mod json;
mod node;
mod peers;
pub mod prometheus;
mod tasks;
mod threads;

use aethrolink_actors::service::Services;
use aethrolink_actors::service::node::{NodeHealth, NodeIdentityDocument, NodeStats, Readiness};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use auth::{AuthPolicy, HttpCaller};
pub use error::ApiError;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// The core, through its service layer.
    pub services: Services,
    /// Cancelled when the node shuts down: SSE streams end on it.
    pub shutdown: CancellationToken,
    /// Go-compatibility mode: node-protocol callers are accepted unsigned.
    pub allow_unsigned_peers: bool,
    /// Which signed node-protocol callers are accepted.
    pub accept: aethrolink_actors::identity::node_auth::AcceptPolicy,
    /// Nonces of accepted node signatures (one per node process): a replay is refused.
    pub nonces: std::sync::Arc<std::sync::Mutex<aethrolink_actors::identity::signature::NonceCache>>,
    /// Renders `GET /metrics` (`None`: this process records no metrics).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// When a token is needed, and what anonymous callers may do.
    pub auth: AuthPolicy,
}

/// Builds the router. `browser` is checked on every request before routing
/// ([`guard`](mod@guard)); every error leaves in the `{"error": …}` shape ([`error::json_errors`]).
pub fn router(state: AppState, max_body_bytes: usize, browser: guard::BrowserPolicy) -> Router {
    Router::new()
        .route("/ping", get(ping))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/node/health", get(node_health))
        .route("/v1/node/stats", get(node_stats))
        .route("/v1/node/identity", get(node_identity))
        .route("/v1/node/tasks", post(node::submit))
        .route("/v1/node/tasks/{task_id}/events", get(node::events))
        .route("/v1/node/tasks/{task_id}/resume", post(node::resume))
        .route("/v1/node/tasks/{task_id}/cancel", post(node::cancel))
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
        .route("/v1/peers", post(peers::add).get(peers::list))
        .route("/v1/peers/{peer_id}/sync", post(peers::sync))
        .route("/v1/tokens", post(auth::create).get(auth::list))
        .route("/v1/tokens/{token_id}/revoke", post(auth::revoke))
        .route("/artifacts/{artifact_id}", get(artifacts::get))
        .route("/v1/artifacts/{artifact_id}", get(artifacts::get))
        .route("/metrics", get(prometheus::scrape))
        // After routing, so each request is counted under the route it matched.
        .route_layer(axum::middleware::from_fn(prometheus::track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The JSON extractors enforce the limit (draining what they refuse); the default limit
        // stays for any other extractor.
        .layer(axum::Extension(json::BodyLimit(max_body_bytes)))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(std::sync::Arc::new(browser), guard::guard))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn(access::access_log))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    unmatched(&method, 404);
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    unmatched(&method, 405);
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// Counts a request no route matched (the route layer does not see those).
fn unmatched(method: &Method, status: u16) {
    metrics::counter!(aethrolink_actors::telemetry::HTTP_REQUESTS, "method" => method.as_str().to_owned(), "route" => "unmatched", "status" => status.to_string())
        .increment(1);
}

async fn ping() -> Json<Value> {
    Json(json!({ "ok": true, "service": "aethrolink" }))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true }))
}

/// Ready when storage answers and every core service is running.
async fn readyz(State(st): State<AppState>, HttpCaller(caller): HttpCaller) -> Result<Json<Readiness>, ApiError> {
    Ok(Json(st.services.readiness(&caller).await?))
}

/// Live actor counts and storage counters: what an operator checks for leaks and batching.
async fn node_stats(State(st): State<AppState>, HttpCaller(caller): HttpCaller) -> Result<Json<NodeStats>, ApiError> {
    Ok(Json(st.services.node_stats(&caller).await?))
}

async fn node_health(State(st): State<AppState>, HttpCaller(caller): HttpCaller) -> Result<Json<NodeHealth>, ApiError> {
    Ok(Json(st.services.node_health(&caller)?))
}

/// This node's id and the public key bound to it.
async fn node_identity(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
) -> Result<Json<NodeIdentityDocument>, ApiError> {
    Ok(Json(st.services.node_identity(&caller)?))
}
