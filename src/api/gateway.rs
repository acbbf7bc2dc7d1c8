//! The Aether gateway as operators see it over HTTP: its live connections.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{ApiError, AppState, HttpCaller};

/// `GET /v1/aether/connections` → `{"connections": [...]}` by identity: each live gateway
/// session's principal, identity, workspace, session id, authority (never the credential) and
/// start.
#[utoipa::path(
    get,
    path = "/v1/aether/connections",
    operation_id = "list_aether_connections",
    tag = "aether",
    responses((status = 200, description = "`{connections: [{principal, identity, workspace, session_id, authority, token_id, connected_at, resumed}]}`", body = super::openapi::Object))
)]
pub async fn connections(State(st): State<AppState>, HttpCaller(caller): HttpCaller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "connections": st.services.gateway_connections(&caller).await? })))
}
