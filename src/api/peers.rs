//! Static peers (contract §9.3): register, list, sync. Their targets are listed by
//! `GET /v1/targets` (`?refresh=true` syncs every peer first).

use aethrolink_actors::peers::{PeerUpsert, sync_response};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::json::StrictJson;
use super::{ApiError, AppState, HttpCaller};

/// `POST /v1/peers` → 201 PeerRecord (bare).
#[utoipa::path(
    post,
    path = "/v1/peers",
    operation_id = "add_peer",
    tag = "peers",
    request_body(content = super::openapi::Object, content_type = "application/json", description = "See docs/api.md"),
    responses((status = 201, description = "The PeerRecord", body = super::openapi::Object), (status = 409, description = "The peer conflicts with another", body = super::openapi::ErrorBody))
)]
pub async fn add(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    StrictJson(req): StrictJson<PeerUpsert>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, Json(st.services.add_peer(&caller, req).await?)))
}

/// `GET /v1/peers` → `{"peers": [...]}` by display name then id (no probing).
#[utoipa::path(
    get,
    path = "/v1/peers",
    operation_id = "list_peers",
    tag = "peers",
    responses((status = 200, description = "`{peers: [PeerRecord]}`", body = super::openapi::Object))
)]
pub async fn list(State(st): State<AppState>, HttpCaller(caller): HttpCaller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "peers": st.services.list_peers(&caller).await? })))
}

/// `POST /v1/peers/{id}/sync` (body ignored) → 200 `{"peer", "targets"}`; 404 unknown; 400 when
/// the peer could not be synced (its record says why).
#[utoipa::path(
    post,
    path = "/v1/peers/{peer_id}/sync",
    operation_id = "sync_peer",
    tag = "peers",
    params(("peer_id" = String, Path, description = "The peer's id")),
    request_body(content = super::openapi::Object, content_type = "application/json", description = "Ignored"),
    responses((status = 200, description = "`{peer, targets}`", body = super::openapi::Object))
)]
pub async fn sync(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(peer_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(sync_response(&st.services.sync_peer(&caller, &peer_id).await?)))
}
