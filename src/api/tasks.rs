//! Task routes: create, get, list, resume, cancel.

use std::collections::HashMap;
use std::time::Duration;

use aethrolink_actors::error::AskError;
use aethrolink_actors::intake::{IntakeError, TaskRequest, create_task};
use aethrolink_actors::model::{DeliveryMode, DeliveryPolicy, JsonObject, TaskRecord, TaskStatus};
use aethrolink_actors::registry::RouteError;
use aethrolink_actors::storage::TaskFilter;
use aethrolink_actors::task::{TaskError, TaskMsg};
use aethrolink_actors::task_supervisor::TaskSupMsg;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use ractor::ActorRef;
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::{OptionalJson, StrictJson};
use super::{ApiError, AppState};

/// Budget for a request to a task actor or the task supervisor.
const TASK_ASK: Duration = Duration::from_secs(10);
/// Default and largest page of `GET /v1/tasks`.
const DEFAULT_PAGE: u32 = 50;

/// `delivery` as sent: each field defaults on its own (the Go node defaulted only a missing
/// object, so a partial one silently meant `launch_if_down=false`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRequest {
    #[serde(default)]
    mode: Option<DeliveryMode>,
    #[serde(default)]
    launch_if_down: Option<bool>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Body of `POST /v1/tasks` (contract §2.3).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    #[serde(default)]
    thread_id: Option<String>,
    #[serde(default)]
    sender: Option<String>,
    #[serde(default, alias = "target_runtime")]
    target_agent_id: Option<String>,
    #[serde(default)]
    intent: Option<String>,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    runtime_options: Option<JsonObject>,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    delivery: Option<DeliveryRequest>,
    #[serde(default)]
    metadata: Option<JsonObject>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn route_error(e: RouteError) -> ApiError {
    let status = match e {
        RouteError::TargetNotFound(_) | RouteError::NoRoute(_) => StatusCode::NOT_FOUND,
        RouteError::CannotSatisfy { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        RouteError::Conflict { .. } => StatusCode::CONFLICT,
    };
    ApiError::new(status, e.to_string())
}

fn task_error(e: TaskError) -> ApiError {
    match e {
        TaskError::NotAwaitable(r) => ApiError::conflict(r.to_string()),
        TaskError::Storage(s) => s.into(),
        TaskError::Ask(a) => a.into(),
        TaskError::Artifact(m) | TaskError::Spawn(m) => ApiError::unavailable(m),
        TaskError::BadResume(m) => ApiError::bad_request(m),
    }
}

pub(super) fn links(task_id: &str) -> Value {
    json!({ "self": format!("/v1/tasks/{task_id}"), "events": format!("/v1/tasks/{task_id}/events") })
}

/// `POST /v1/tasks` → 202 `{task, links}`.
pub async fn create(
    State(st): State<AppState>,
    StrictJson(req): StrictJson<CreateTaskRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let request = TaskRequest {
        thread_id: req.thread_id,
        sender: req.sender,
        target_agent_id: req.target_agent_id,
        intent: req.intent,
        payload: req.payload,
        runtime_options: req.runtime_options.unwrap_or_default(),
        conversation_id: req.conversation_id,
        delivery: delivery_policy(req.delivery),
        metadata: req.metadata.unwrap_or_default(),
    };
    let created = create_task(&st.dir, request).await.map_err(intake_error)?;
    let links = links(&created.task_id);
    Ok((StatusCode::ACCEPTED, Json(json!({ "task": created, "links": links }))))
}

/// Per-field defaults of `delivery`.
pub(super) fn delivery_policy(d: Option<DeliveryRequest>) -> DeliveryPolicy {
    let d = d.unwrap_or_default();
    let defaults = DeliveryPolicy::default();
    DeliveryPolicy {
        mode: d.mode.unwrap_or(defaults.mode),
        launch_if_down: d.launch_if_down.unwrap_or(defaults.launch_if_down),
        timeout_ms: d.timeout_ms,
    }
}

/// Maps an intake error to its status.
pub(super) fn intake_error(e: IntakeError) -> ApiError {
    match e {
        IntakeError::Invalid(m) => ApiError::bad_request(m),
        IntakeError::Route(r) => route_error(r),
        e @ IntakeError::ThreadNotFound(_) => ApiError::not_found(e.to_string()),
        e @ IntakeError::Participants(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        IntakeError::Task(t) => task_error(t),
        IntakeError::Ask(a) => a.into(),
        IntakeError::Storage(s) => s.into(),
    }
}

/// `GET /v1/tasks/{id}`.
pub async fn get(State(st): State<AppState>, Path(task_id): Path<String>) -> Result<Json<TaskRecord>, ApiError> {
    let stored =
        st.dir.reader.task(&task_id).await?.ok_or_else(|| ApiError::not_found(format!("task not found: {task_id}")))?;
    Ok(Json(stored.task))
}

/// `GET /v1/tasks?status=&target=&conversation_id=&sender=&cursor=&limit=`.
pub async fn list(
    State(st): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let mut filter = TaskFilter { limit: DEFAULT_PAGE, ..TaskFilter::default() };
    for (key, value) in params {
        let value = value.trim().to_owned();
        match key.as_str() {
            "status" => {
                filter.status = Some(value.parse().map_err(|_| {
                    let all: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
                    ApiError::bad_request(format!(
                        "status '{value}' is not a task status; expected one of {}",
                        all.join(", ")
                    ))
                })?)
            }
            "target" | "target_agent_id" => filter.target = Some(value),
            "conversation_id" => filter.conversation_id = Some(value),
            "sender" => filter.sender = Some(value),
            "thread_id" => filter.thread_id = Some(value),
            "cursor" => filter.cursor = Some(value).filter(|v| !v.is_empty()),
            "limit" => {
                filter.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=aethrolink_actors::storage::reader::MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit '{value}' must be an integer from 1 to {}",
                            aethrolink_actors::storage::reader::MAX_PAGE
                        ))
                    })?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter '{other}'; expected status, target, conversation_id, sender, thread_id, cursor, limit"
                )));
            }
        }
    }
    let page = st.dir.reader.tasks(&filter).await?;
    Ok(Json(json!({ "tasks": page.tasks, "next_cursor": page.next_cursor })))
}

/// The live actor of a task, or `None` when it has none (terminal, or being restarted).
async fn live_actor(st: &AppState, task_id: &str) -> Result<Option<ActorRef<TaskMsg>>, ApiError> {
    Ok(st.dir.tasks.ask(TASK_ASK, |reply| TaskSupMsg::Lookup(task_id.to_owned(), reply)).await?)
}

/// The stored status, for requests that found no live actor. 404 when the task doesn't exist;
/// 503 when it is live but its actor is being restarted.
async fn stored_status(st: &AppState, task_id: &str) -> Result<TaskStatus, ApiError> {
    let stored =
        st.dir.reader.task(task_id).await?.ok_or_else(|| ApiError::not_found(format!("task not found: {task_id}")))?;
    if !stored.task.status.is_terminal() {
        return Err(ApiError::unavailable(format!("task {task_id} is being restarted; retry shortly"))
            .with("status", stored.task.status.as_str()));
    }
    Ok(stored.task.status)
}

fn status_reply(task_id: &str, status: TaskStatus) -> (StatusCode, Json<Value>) {
    let code = if status.is_terminal() { StatusCode::OK } else { StatusCode::ACCEPTED };
    (code, Json(json!({ "task_id": task_id, "status": status })))
}

/// Body of `POST /v1/tasks/{id}/cancel` (optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/tasks/{id}/cancel` → 202 (200 once the task is terminal, including "already was").
pub async fn cancel(
    State(st): State<AppState>,
    Path(task_id): Path<String>,
    OptionalJson(body): OptionalJson<CancelRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let reason = body.and_then(|b| non_empty(b.reason));
    let status = match live_actor(&st, &task_id).await? {
        Some(actor) => match aethrolink_actors::supervision::ask(&actor, "task", TASK_ASK, |reply| TaskMsg::Cancel {
            reason,
            reply,
        })
        .await
        {
            Ok(result) => result.map_err(task_error)?,
            // The actor stopped between lookup and request: the task just ended.
            Err(AskError::Unavailable(_) | AskError::Dropped(_)) => stored_status(&st, &task_id).await?,
            Err(e) => return Err(e.into()),
        },
        None => stored_status(&st, &task_id).await?,
    };
    Ok(status_reply(&task_id, status))
}

/// Body of `POST /v1/tasks/{id}/resume`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    #[serde(default)]
    payload: Value,
    /// Accepted for contract compatibility; not used.
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<JsonObject>,
    /// Answer a permission request with this option.
    #[serde(default)]
    option_id: Option<String>,
    /// Answer a permission request by kind: `allow`, `allow_always`, `reject`, `reject_always`.
    #[serde(default)]
    decision: Option<String>,
}

/// `POST /v1/tasks/{id}/resume` → 202; 409 unless the task is `awaiting_input`.
pub async fn resume(
    State(st): State<AppState>,
    Path(task_id): Path<String>,
    StrictJson(req): StrictJson<ResumeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut payload = match req.payload {
        Value::Null => JsonObject::new(),
        Value::Object(o) => o,
        other => {
            return Err(ApiError::bad_request(format!(
                "payload must be a JSON object, got {}",
                aethrolink_actors::model::json_type(&other)
            )));
        }
    };
    if let Some(o) = req.option_id {
        payload.insert("option_id".into(), Value::String(o));
    }
    if let Some(d) = req.decision {
        payload.insert("decision".into(), Value::String(d));
    }
    let not_awaitable = |status: TaskStatus| {
        ApiError::conflict(format!("task not awaitable: status is {status}")).with("status", status.as_str())
    };
    let status = match live_actor(&st, &task_id).await? {
        Some(actor) => match aethrolink_actors::supervision::ask(&actor, "task", TASK_ASK, |reply| TaskMsg::Resume {
            payload,
            reply,
        })
        .await
        {
            Ok(Ok(status)) => status,
            Ok(Err(TaskError::NotAwaitable(r))) => {
                let status = match r {
                    aethrolink_actors::state_machine::ResumeRejection::NotAwaiting(s) => s,
                    aethrolink_actors::state_machine::ResumeRejection::AlreadyResuming => TaskStatus::AwaitingInput,
                };
                return Err(ApiError::conflict(r.to_string()).with("status", status.as_str()));
            }
            Ok(Err(e)) => return Err(task_error(e)),
            Err(AskError::Unavailable(_) | AskError::Dropped(_)) => {
                return Err(not_awaitable(stored_status(&st, &task_id).await?));
            }
            Err(e) => return Err(e.into()),
        },
        None => return Err(not_awaitable(stored_status(&st, &task_id).await?)),
    };
    Ok((StatusCode::ACCEPTED, Json(json!({ "task_id": task_id, "status": status }))))
}
