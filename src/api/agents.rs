//! Agents and targets: registration (so targets can be added at runtime as well as from YAML),
//! listing, and the targets view.

use aethrolink_actors::clock;
use aethrolink_actors::model::AgentRecord;
use aethrolink_actors::registry::{Registration, RegistryError, RegistryMsg};
use aethrolink_actors::supervision::ASK_TIMEOUT;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::json::StrictJson;
use super::{ApiError, AppState};

/// `POST /v1/agents/register` → 202 `{"agent": AgentRecord}`.
pub async fn register(
    State(st): State<AppState>,
    StrictJson(reg): StrictJson<Registration>,
) -> Result<impl IntoResponse, ApiError> {
    let result = st.dir.registry.ask(ASK_TIMEOUT, |reply| RegistryMsg::Register(Box::new(reg), reply)).await?;
    match result {
        Ok(agent) => Ok((StatusCode::ACCEPTED, Json(json!({ "agent": agent })))),
        Err(RegistryError::Invalid(m)) => Err(ApiError::bad_request(m)),
        Err(e @ RegistryError::Conflict(_)) => Err(ApiError::conflict(e.to_string())),
        Err(RegistryError::Storage(e)) => Err(e.into()),
        Err(RegistryError::Ask(e)) => Err(e.into()),
    }
}

/// `GET /v1/agents` → `{"agents": [...]}` (always an array).
pub async fn list(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = clock::now_rfc3339();
    let agents: Vec<AgentRecord> =
        st.dir.reader.agents().await?.into_iter().map(|a| a.with_effective_status(&now)).collect();
    Ok(Json(json!({ "agents": agents })))
}

/// `GET /v1/agents/{id}` → the bare record.
pub async fn get(State(st): State<AppState>, Path(agent_id): Path<String>) -> Result<Json<AgentRecord>, ApiError> {
    let agent = st
        .dir
        .reader
        .agent(&agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("agent not found: {agent_id}")))?;
    Ok(Json(agent.with_effective_status(&clock::now_rfc3339())))
}

/// `GET /v1/targets` → `{"targets": [RuntimeSpec]}`, file and registered targets, by id.
pub async fn targets(State(st): State<AppState>) -> Json<Value> {
    let table = st.dir.targets.borrow().clone();
    let targets: Vec<_> = table.iter().cloned().collect();
    Json(json!({ "targets": targets }))
}
