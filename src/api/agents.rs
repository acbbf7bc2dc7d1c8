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

/// Body of target start/stop (optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetControl {
    #[serde(default)]
    runtime_options: aethrolink_actors::model::JsonObject,
}

/// The target and the options a start/stop applies to: `(target, requested, merged over defaults)`.
fn control_options(
    st: &AppState,
    target_id: &str,
    body: Option<TargetControl>,
) -> Result<
    (aethrolink_actors::model::TargetSpec, aethrolink_actors::model::JsonObject, aethrolink_actors::model::JsonObject),
    ApiError,
> {
    let target = target_of(st, target_id)?;
    let requested = body.unwrap_or_default().runtime_options;
    let merged = aethrolink_actors::model::deep_merge(&target.defaults, &requested);
    Ok((target, requested, merged))
}

fn target_of(st: &AppState, target_id: &str) -> Result<aethrolink_actors::model::TargetSpec, ApiError> {
    st.dir
        .targets
        .borrow()
        .get(target_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("target agent not found: {target_id}")))
}

fn runtime_error(e: aethrolink_actors::runtime::RuntimeError) -> ApiError {
    use aethrolink_actors::runtime::RuntimeError;
    match e {
        RuntimeError::AdapterMissing(_) => ApiError::bad_request(e.to_string()),
        RuntimeError::LaunchFailed(_) | RuntimeError::Unavailable(_) => ApiError::unavailable(e.to_string()),
    }
}

/// `GET /v1/targets/{id}/health` → the runtime's view for the subcontext of the target's defaults.
pub async fn target_health(State(st): State<AppState>, Path(target_id): Path<String>) -> Result<Json<Value>, ApiError> {
    use aethrolink_actors::runtime::RuntimeSupMsg;
    let target = target_of(&st, &target_id)?;
    let options = target.defaults.clone();
    let health = st
        .dir
        .runtimes
        .ask(ASK_TIMEOUT, |reply| RuntimeSupMsg::Health { target: Box::new(target), options, reply })
        .await?
        .map_err(runtime_error)?;
    Ok(Json(serde_json::to_value(health).unwrap_or_default()))
}

/// `POST /v1/targets/{id}/start` → 202 once the runtime is ready.
pub async fn target_start(
    State(st): State<AppState>,
    Path(target_id): Path<String>,
    super::json::OptionalJson(body): super::json::OptionalJson<TargetControl>,
) -> Result<impl IntoResponse, ApiError> {
    use aethrolink_actors::runtime::{RuntimeSupMsg, Waiter};
    let (target, requested, options) = control_options(&st, &target_id, body)?;
    let waiter = Waiter { task: None, launch_if_down: true };
    let handle = st
        .dir
        .runtimes
        .ask(std::time::Duration::from_secs(600), |reply| RuntimeSupMsg::Acquire {
            target: Box::new(target),
            options,
            waiter,
            reply,
        })
        .await?
        .map_err(runtime_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "target_agent_id": target_id,
            "healthy": true,
            "lease_id": handle.lease_id,
            "process_id": handle.process_id,
            "runtime_options": requested,
        })),
    ))
}

/// `POST /v1/targets/{id}/stop` → 202 once the runtime's process group is gone (no-op if down).
pub async fn target_stop(
    State(st): State<AppState>,
    Path(target_id): Path<String>,
    super::json::OptionalJson(body): super::json::OptionalJson<TargetControl>,
) -> Result<impl IntoResponse, ApiError> {
    use aethrolink_actors::runtime::RuntimeSupMsg;
    let (target, requested, options) = control_options(&st, &target_id, body)?;
    st.dir
        .runtimes
        .ask(std::time::Duration::from_secs(30), |reply| RuntimeSupMsg::Stop {
            target: Box::new(target),
            options,
            reply,
        })
        .await?
        .map_err(runtime_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "target_agent_id": target_id, "healthy": false, "runtime_options": requested })),
    ))
}

/// `GET /v1/targets/{id}/launches` → `{"launches": [...]}`: the target's launch history, newest
/// first (pid, process group, status, exit code, error).
pub async fn target_launches(
    State(st): State<AppState>,
    Path(target_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    target_of(&st, &target_id)?;
    let launches = st.dir.reader.launches(&target_id).await?;
    Ok(Json(json!({ "launches": launches })))
}
