//! Agents and targets: registration (targets added at runtime as well as from YAML), presence,
//! listing, the targets view and runtime control.

use aethrolink_actors::model::{AgentRecord, JsonObject};
use aethrolink_actors::registry::Registration;
use aethrolink_actors::runtime::TargetHealth;
use aethrolink_actors::service::targets::{TargetDispatch, TargetStarted, TargetStopped};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::json::{OptionalJson, StrictJson};
use super::{ApiError, AppState, HttpCaller};

/// `POST /v1/agents/register` → 202 `{"agent": AgentRecord, "warnings": [...] /*omit*/}`.
#[utoipa::path(
    post,
    path = "/v1/agents/register",
    operation_id = "register_agent",
    tag = "agents",
    request_body(content = super::openapi::Object, content_type = "application/json", description = "See docs/api.md"),
    responses((status = 202, description = "`{agent, warnings}`", body = super::openapi::Object), (status = 409, description = "The registration conflicts (e.g. shadows a file target)", body = super::openapi::ErrorBody), (status = 422, description = "Well-formed but impossible", body = super::openapi::ErrorBody))
)]
pub async fn register(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    StrictJson(reg): StrictJson<Registration>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::ACCEPTED, Json(st.services.register_agent(&caller, reg).await?)))
}

/// Body of a heartbeat (optional).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    #[serde(default)]
    lease_ttl_seconds: Option<i64>,
}

/// `POST /v1/agents/{id}/heartbeat` → 202 `{"agent": AgentRecord}`.
#[utoipa::path(
    post,
    path = "/v1/agents/{agent_id}/heartbeat",
    operation_id = "agent_heartbeat",
    tag = "agents",
    params(("agent_id" = String, Path, description = "The agent's id")),
    request_body(content = Option<HeartbeatRequest>, content_type = "application/json", description = "Optional (an empty body is accepted)"),
    responses((status = 202, description = "`{agent}`", body = super::openapi::Object))
)]
pub async fn heartbeat(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(agent_id): Path<String>,
    OptionalJson(body): OptionalJson<HeartbeatRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let agent = st.services.heartbeat(&caller, agent_id, body.and_then(|b| b.lease_ttl_seconds)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "agent": agent }))))
}

/// `POST /v1/agents/{id}/unregister` → 200 `{"agent_id", "status": "offline"}`.
#[utoipa::path(
    post,
    path = "/v1/agents/{agent_id}/unregister",
    operation_id = "unregister_agent",
    tag = "agents",
    params(("agent_id" = String, Path, description = "The agent's id")),
    responses((status = 200, description = "`{agent_id, status: offline}`", body = super::openapi::Object))
)]
pub async fn unregister(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(agent_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let agent = st.services.unregister(&caller, agent_id).await?;
    Ok(Json(json!({ "agent_id": agent.agent_id, "status": "offline" })))
}

/// `GET /v1/agents` → `{"agents": [...]}` (always an array).
#[utoipa::path(
    get,
    path = "/v1/agents",
    operation_id = "list_agents",
    tag = "agents",
    responses((status = 200, description = "`{agents: [AgentRecord]}`", body = super::openapi::Object))
)]
pub async fn list(State(st): State<AppState>, HttpCaller(caller): HttpCaller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "agents": st.services.list_agents(&caller).await? })))
}

/// `GET /v1/agents/{id}` → the bare record.
#[utoipa::path(
    get,
    path = "/v1/agents/{agent_id}",
    operation_id = "get_agent",
    tag = "agents",
    params(("agent_id" = String, Path, description = "The agent's id")),
    responses((status = 200, description = "The AgentRecord", body = super::openapi::Object))
)]
pub async fn get(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(agent_id): Path<String>,
) -> Result<Json<AgentRecord>, ApiError> {
    Ok(Json(st.services.get_agent(&caller, &agent_id).await?))
}

/// Query of `GET /v1/targets`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct TargetsQuery {
    /// Sync every peer first.
    #[serde(default)]
    refresh: bool,
}

/// `GET /v1/targets[?refresh=true]` → `{"targets": [RuntimeSpec + state + runtimes]}`: local
/// targets, then cached peer targets (`owner` = the peer id).
#[utoipa::path(
    get,
    path = "/v1/targets",
    operation_id = "list_targets",
    tag = "targets",
    params(("refresh" = Option<bool>, Query, description = "Sync every peer first")),
    responses((status = 200, description = "`{targets: [...]}`: local targets, then cached peer targets", body = super::openapi::Object))
)]
pub async fn targets(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Query(query): Query<TargetsQuery>,
) -> Result<Json<Value>, ApiError> {
    let targets = if query.refresh {
        st.services.refresh_targets(&caller).await?
    } else {
        st.services.list_targets(&caller).await?
    };
    Ok(Json(json!({ "targets": targets })))
}

/// Body of target start/stop (optional).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetControl {
    #[serde(default)]
    #[schema(value_type = Object)]
    runtime_options: JsonObject,
    /// Start only: clear a crash-loop pause and launch.
    #[serde(default)]
    force: bool,
}

/// `GET /v1/targets/{id}/health` → the runtime's view for the subcontext of the target's defaults.
#[utoipa::path(
    get,
    path = "/v1/targets/{target_id}/health",
    operation_id = "target_health",
    tag = "targets",
    params(("target_id" = String, Path, description = "The target's id")),
    responses((status = 200, description = "The runtime's view of the target", body = super::openapi::Object))
)]
pub async fn target_health(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(target_id): Path<String>,
) -> Result<Json<TargetHealth>, ApiError> {
    Ok(Json(st.services.target_health(&caller, &target_id).await?))
}

/// `POST /v1/targets/{id}/start` → 202 once the runtime is ready.
#[utoipa::path(
    post,
    path = "/v1/targets/{target_id}/start",
    operation_id = "start_target",
    tag = "targets",
    params(("target_id" = String, Path, description = "The target's id")),
    request_body(content = Option<TargetControl>, content_type = "application/json", description = "Optional (an empty body is accepted)"),
    responses((status = 202, description = "The runtime is ready", body = super::openapi::Object), (status = 409, description = "The target cannot be started now", body = super::openapi::ErrorBody), (status = 422, description = "The target cannot be started (e.g. a peer's target)", body = super::openapi::ErrorBody))
)]
pub async fn target_start(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(target_id): Path<String>,
    OptionalJson(body): OptionalJson<TargetControl>,
) -> Result<(StatusCode, Json<TargetStarted>), ApiError> {
    let body = body.unwrap_or_default();
    Ok((
        StatusCode::ACCEPTED,
        Json(st.services.start_target(&caller, &target_id, body.runtime_options, body.force).await?),
    ))
}

/// `POST /v1/targets/{id}/stop` → 202 once the runtime's process group is gone (no-op if down).
#[utoipa::path(
    post,
    path = "/v1/targets/{target_id}/stop",
    operation_id = "stop_target",
    tag = "targets",
    params(("target_id" = String, Path, description = "The target's id")),
    request_body(content = Option<TargetControl>, content_type = "application/json", description = "Optional (an empty body is accepted)"),
    responses((status = 202, description = "The runtime's process group is gone (a no-op if it was down)", body = super::openapi::Object), (status = 409, description = "The target cannot be stopped now", body = super::openapi::ErrorBody), (status = 422, description = "The target cannot be stopped (e.g. a peer's target)", body = super::openapi::ErrorBody))
)]
pub async fn target_stop(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(target_id): Path<String>,
    OptionalJson(body): OptionalJson<TargetControl>,
) -> Result<(StatusCode, Json<TargetStopped>), ApiError> {
    let options = body.unwrap_or_default().runtime_options;
    Ok((StatusCode::ACCEPTED, Json(st.services.stop_target(&caller, &target_id, options).await?)))
}

/// `POST /v1/targets/{id}/pause` → 200: dispatching to the target is paused (queued tasks
/// wait, running ones finish; new tasks are accepted and wait). Durable.
#[utoipa::path(
    post,
    path = "/v1/targets/{target_id}/pause",
    operation_id = "pause_target",
    tag = "targets",
    params(("target_id" = String, Path, description = "The target's id")),
    responses((status = 200, description = "`{target_agent_id, dispatch_paused: true, dispatch_paused_at, dispatch_paused_by}`", body = super::openapi::Object), (status = 404, description = "No such target", body = super::openapi::ErrorBody))
)]
pub async fn target_pause(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(target_id): Path<String>,
) -> Result<Json<TargetDispatch>, ApiError> {
    Ok(Json(st.services.pause_target(&caller, &target_id, true).await?))
}

/// `POST /v1/targets/{id}/resume` → 200: the target's waiting tasks are dispatched again.
#[utoipa::path(
    post,
    path = "/v1/targets/{target_id}/resume",
    operation_id = "resume_target",
    tag = "targets",
    params(("target_id" = String, Path, description = "The target's id")),
    responses((status = 200, description = "`{target_agent_id, dispatch_paused: false}`", body = super::openapi::Object), (status = 404, description = "No such target", body = super::openapi::ErrorBody))
)]
pub async fn target_resume(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(target_id): Path<String>,
) -> Result<Json<TargetDispatch>, ApiError> {
    Ok(Json(st.services.pause_target(&caller, &target_id, false).await?))
}

/// `GET /v1/targets/{id}/launches` → `{"launches": [...]}`, newest first.
#[utoipa::path(
    get,
    path = "/v1/targets/{target_id}/launches",
    operation_id = "target_launches",
    tag = "targets",
    params(("target_id" = String, Path, description = "The target's id")),
    responses((status = 200, description = "`{launches: [...]}`, newest first", body = super::openapi::Object))
)]
pub async fn target_launches(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(target_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "launches": st.services.target_launches(&caller, &target_id).await? })))
}
