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
    let agent = st
        .dir
        .registry
        .ask(ASK_TIMEOUT, |reply| RegistryMsg::Register(Box::new(reg), reply))
        .await?
        .map_err(registry_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "agent": agent }))))
}

fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::Invalid(m) => ApiError::bad_request(m),
        e @ RegistryError::Conflict(_) => ApiError::conflict(e.to_string()),
        e @ RegistryError::NotFound(_) => ApiError::not_found(e.to_string()),
        RegistryError::Storage(e) => e.into(),
        RegistryError::Ask(e) => e.into(),
    }
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
    Path(agent_id): Path<String>,
    super::json::OptionalJson(body): super::json::OptionalJson<HeartbeatRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let ttl = body.and_then(|b| b.lease_ttl_seconds);
    let agent = st
        .dir
        .registry
        .ask(ASK_TIMEOUT, |reply| RegistryMsg::Heartbeat { agent_id, ttl, reply })
        .await?
        .map_err(registry_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "agent": agent }))))
}

/// `POST /v1/agents/{id}/unregister` → 200 `{"agent_id", "status": "offline"}`.
pub async fn unregister(State(st): State<AppState>, Path(agent_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let agent = st
        .dir
        .registry
        .ask(ASK_TIMEOUT, |reply| RegistryMsg::Unregister { agent_id, reply })
        .await?
        .map_err(registry_error)?;
    Ok(Json(json!({ "agent_id": agent.agent_id, "status": "offline" })))
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

/// `GET /v1/targets` → `{"targets": [RuntimeSpec + runtime state]}`, file and registered
/// targets by id, each with `state` (`up`, `down`, `launching`; in-process runtimes are `up`) and
/// its live `runtimes` (subcontext, pid, lease id, tasks in flight).
pub async fn targets(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    use aethrolink_actors::runtime::RuntimeSupMsg;
    let table = st.dir.targets.borrow().clone();
    let live = st.dir.runtimes.ask(ASK_TIMEOUT, RuntimeSupMsg::States).await?;
    let targets: Vec<Value> = table
        .iter()
        .map(|t| {
            let mut v = serde_json::to_value(t).unwrap_or_default();
            let runtimes: Vec<&aethrolink_actors::runtime::acp::RuntimeHealth> =
                live.iter().filter(|h| h.target_id == t.target_id).collect();
            let state = if t.adapter == "loopback" || runtimes.iter().any(|h| h.state == "up") {
                "up"
            } else if runtimes.iter().any(|h| h.state == "launching") {
                "launching"
            } else {
                "down"
            };
            v["state"] = json!(state);
            v["runtimes"] = serde_json::to_value(&runtimes).unwrap_or_default();
            v
        })
        .collect();
    Ok(Json(json!({ "targets": targets })))
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
