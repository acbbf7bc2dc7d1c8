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
mod gateway;
pub mod guard;
mod json;
mod node;
mod openapi;
mod peers;
pub mod prometheus;
mod tasks;
mod threads;
mod ui;

use aethrolink_actors::service::Services;
use aethrolink_actors::service::node::{NodeHealth, NodeIdentityDocument, NodeStats, Readiness};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, Uri};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// Every route, each with its OpenAPI operation (from the handler's `#[utoipa::path]`): the one
/// list the router and the document ([`openapi`]) are both made from.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(ping))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(node_health))
        .routes(routes!(node_stats))
        .routes(routes!(node_identity))
        .routes(routes!(openapi::serve))
        .routes(routes!(node::submit))
        .routes(routes!(node::events))
        .routes(routes!(node::resume))
        .routes(routes!(node::cancel))
        .routes(routes!(tasks::create, tasks::list))
        .routes(routes!(tasks::bulk))
        .routes(routes!(tasks::get))
        .routes(routes!(events::stream))
        .routes(routes!(events::watch))
        .routes(routes!(tasks::resume))
        .routes(routes!(tasks::cancel))
        .routes(routes!(agents::targets))
        .routes(routes!(agents::target_health))
        .routes(routes!(agents::target_start))
        .routes(routes!(agents::target_stop))
        .routes(routes!(agents::target_pause))
        .routes(routes!(agents::target_resume))
        .routes(routes!(agents::target_launches))
        .routes(routes!(agents::register))
        .routes(routes!(agents::list))
        .routes(routes!(agents::get))
        .routes(routes!(agents::heartbeat))
        .routes(routes!(agents::unregister))
        .routes(routes!(threads::create, threads::list))
        .routes(routes!(threads::get))
        .routes(routes!(threads::turns))
        .routes(routes!(threads::inspect))
        .routes(routes!(threads::continue_thread))
        .routes(routes!(peers::add, peers::list))
        .routes(routes!(peers::sync))
        .routes(routes!(gateway::connections))
        .routes(routes!(auth::create, auth::list))
        .routes(routes!(auth::revoke))
        .routes(routes!(artifacts::get_legacy))
        .routes(routes!(artifacts::get))
        .routes(routes!(prometheus::scrape))
}

/// The OpenAPI document of every route, before the layers' refusals are added
/// ([`openapi::declare_refusals`]; the served one has them: [`openapi::document_json`]).
fn document() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The OpenAPI 3.1 document served at `GET /v1/openapi.json`, as JSON.
pub fn openapi_json() -> &'static str {
    openapi::document_json()
}

/// Builds the router. `browser` is checked on every request before routing
/// ([`guard`](mod@guard)); every error leaves in the `{"error": …}` shape ([`error::json_errors`]).
pub fn router(state: AppState, max_body_bytes: usize, browser: guard::BrowserPolicy) -> Router {
    let (routes, _) = routes().split_for_parts();
    routes
        // The web console: not API operations (kept out of the OpenAPI document), behind the
        // same guard layers.
        .merge(ui::routes())
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

#[utoipa::path(get, path = "/ping", operation_id = "ping", tag = "node", responses((status = 200, description = "`{\"ok\": true, \"service\": \"aethrolink\"}`", body = openapi::Object)))]
async fn ping() -> Json<Value> {
    Json(json!({ "ok": true, "service": "aethrolink" }))
}

#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "node", responses((status = 200, description = "`{\"ok\": true}`: the process answers", body = openapi::Object)))]
async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true }))
}

/// Ready when storage answers and every core service is running.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "node", responses((status = 200, description = "`{\"ready\": true, \"node_id\"}`", body = openapi::Object), (status = 503, description = "Not ready: the message names what is down", body = openapi::ErrorBody)))]
async fn readyz(State(st): State<AppState>, HttpCaller(caller): HttpCaller) -> Result<Json<Readiness>, ApiError> {
    Ok(Json(st.services.readiness(&caller).await?))
}

/// Live actor counts and storage counters: what an operator checks for leaks and batching.
#[utoipa::path(get, path = "/v1/node/stats", operation_id = "node_stats", tag = "node", responses((status = 200, description = "Live actor counts and storage counters", body = openapi::Object)))]
async fn node_stats(State(st): State<AppState>, HttpCaller(caller): HttpCaller) -> Result<Json<NodeStats>, ApiError> {
    Ok(Json(st.services.node_stats(&caller).await?))
}

#[utoipa::path(get, path = "/v1/node/health", operation_id = "node_health", tag = "node", responses((status = 200, description = "The node's health (contract §9.4) and its public key", body = openapi::Object)))]
async fn node_health(State(st): State<AppState>, HttpCaller(caller): HttpCaller) -> Result<Json<NodeHealth>, ApiError> {
    Ok(Json(st.services.node_health(&caller)?))
}

/// This node's id and the public key bound to it.
#[utoipa::path(get, path = "/v1/node/identity", operation_id = "node_identity", tag = "node", responses((status = 200, description = "The node's id and the public key bound to it", body = openapi::Object)))]
async fn node_identity(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
) -> Result<Json<NodeIdentityDocument>, ApiError> {
    Ok(Json(st.services.node_identity(&caller)?))
}
