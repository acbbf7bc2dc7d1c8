//! Agents and targets: registration (targets added at runtime as well as from YAML), presence,
//! listing, the targets view and runtime control.

use aethrolink_actors::model::{AgentRecord, JsonObject};
use aethrolink_actors::registry::Registration;
use aethrolink_actors::runtime::TargetHealth;
use aethrolink_actors::service::targets::{TargetStarted, TargetStopped};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::json::{OptionalJson, StrictJson};
use super::{ApiError, AppState, HttpCaller};

/// `POST /v1/agents/register` → 202 `{"agent": AgentRecord, "warnings": [...] /*omit*/}`.
pub async fn register(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    StrictJson(reg): StrictJson<Registration>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::ACCEPTED, Json(st.services.register_agent(&caller, reg).await?)))
}

/// Body of a heartbeat (optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    #[serde(default)]
    lease_ttl_seconds: Option<i64>,
}

/// `POST /v1/agents/{id}/heartbeat` → 202 `{"agent": AgentRecord}`.
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
pub async fn unregister(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(agent_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let agent = st.services.unregister(&caller, agent_id).await?;
    Ok(Json(json!({ "agent_id": agent.agent_id, "status": "offline" })))
}

/// `GET /v1/agents` → `{"agents": [...]}` (always an array).
pub async fn list(State(st): State<AppState>, HttpCaller(caller): HttpCaller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "agents": st.services.list_agents(&caller).await? })))
}

/// `GET /v1/agents/{id}` → the bare record.
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
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetControl {
    #[serde(default)]
    runtime_options: JsonObject,
    /// Start only: clear a crash-loop pause and launch.
    #[serde(default)]
    force: bool,
}

/// `GET /v1/targets/{id}/health` → the runtime's view for the subcontext of the target's defaults.
pub async fn target_health(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(target_id): Path<String>,
) -> Result<Json<TargetHealth>, ApiError> {
    Ok(Json(st.services.target_health(&caller, &target_id).await?))
}

/// `POST /v1/targets/{id}/start` → 202 once the runtime is ready.
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
pub async fn target_stop(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(target_id): Path<String>,
    OptionalJson(body): OptionalJson<TargetControl>,
) -> Result<(StatusCode, Json<TargetStopped>), ApiError> {
    let options = body.unwrap_or_default().runtime_options;
    Ok((StatusCode::ACCEPTED, Json(st.services.stop_target(&caller, &target_id, options).await?)))
}

/// `GET /v1/targets/{id}/launches` → `{"launches": [...]}`, newest first.
pub async fn target_launches(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(target_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "launches": st.services.target_launches(&caller, &target_id).await? })))
}
