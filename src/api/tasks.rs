//! Task routes: create, get, list, resume, cancel.

use aethrolink_actors::model::{JsonObject, TaskRecord, TaskStatus};
use aethrolink_actors::service::tasks::{CreateTask, ResumeInput, TaskListQuery};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::{OptionalJson, StrictJson};
use super::{ApiError, AppState, HttpCaller};

/// Query parameters `GET /v1/tasks` understands.
const LIST_PARAMS: &str = "status, target, intent, conversation_id, sender, thread_id, correlation_id, retrying, \
    stuck, stuck_after_ms, created_after, created_before, updated_after, updated_before, q, cursor, limit";

pub(super) fn links(task_id: &str) -> Value {
    json!({ "self": format!("/v1/tasks/{task_id}"), "events": format!("/v1/tasks/{task_id}/events") })
}

/// `POST /v1/tasks` → 202 `{task, links}`; with an `Idempotency-Key` already used for the same
/// request, 200 with the task it created and `Idempotent-Replayed: true`.
#[utoipa::path(
    post,
    path = "/v1/tasks",
    operation_id = "create_task",
    tag = "tasks",
    params(("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters: a retry with the same key creates nothing new")),
    request_body(content = super::openapi::CreateTaskBody, content_type = "application/json"),
    responses((status = 202, description = "`{task, links}`: the task was created", body = super::openapi::Object), (status = 200, description = "The task an earlier request with this Idempotency-Key created (`Idempotent-Replayed: true`)", body = super::openapi::Object), (status = 404, description = "No target for the intent or target", body = super::openapi::ErrorBody), (status = 409, description = "The route is ambiguous or the target conflicts", body = super::openapi::ErrorBody), (status = 422, description = "Well-formed but impossible (e.g. the key was used with another request)", body = super::openapi::ErrorBody))
)]
pub async fn create(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    headers: HeaderMap,
    StrictJson(req): StrictJson<CreateTask>,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII characters"))?
                .to_owned(),
        ),
    };
    let created = st.services.create_task_once(&caller, req, key).await?;
    let links = links(&created.record.task_id);
    let body = Json(json!({ "task": created.record, "links": links }));
    Ok(if created.replayed {
        (StatusCode::OK, [("idempotent-replayed", "true")], body).into_response()
    } else {
        (StatusCode::ACCEPTED, body).into_response()
    })
}

/// `GET /v1/tasks/{id}`.
#[utoipa::path(
    get,
    path = "/v1/tasks/{task_id}",
    operation_id = "get_task",
    tag = "tasks",
    params(("task_id" = String, Path, description = "The task's id")),
    responses((status = 200, description = "The TaskRecord", body = super::openapi::Object))
)]
pub async fn get(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(task_id): Path<String>,
) -> Result<Json<TaskRecord>, ApiError> {
    Ok(Json(st.services.get_task(&caller, &task_id).await?))
}

/// `GET /v1/tasks?status=&target=&intent=&…&cursor=&limit=`: newest-updated first.
#[utoipa::path(
    get,
    path = "/v1/tasks",
    operation_id = "list_tasks",
    tag = "tasks",
    params(
        ("status" = Option<String>, Query, description = "Only tasks in one of these statuses: comma-separated, and/or the parameter repeated"),
        ("target" = Option<String>, Query, description = "Only tasks for this target"),
        ("intent" = Option<String>, Query, description = "Only tasks with this intent"),
        ("conversation_id" = Option<String>, Query, description = "Only this conversation"),
        ("sender" = Option<String>, Query, description = "Only tasks sent by this agent"),
        ("thread_id" = Option<String>, Query, description = "Only tasks of this thread"),
        ("correlation_id" = Option<String>, Query, description = "Only tasks whose metadata.correlation_id is this"),
        ("retrying" = Option<String>, Query, description = "true: only tasks with a scheduled retry"),
        ("stuck" = Option<String>, Query, description = "true: only non-terminal tasks (not awaiting input) without progress for stuck_after_ms"),
        ("stuck_after_ms" = Option<String>, Query, description = "The bound of stuck=true in ms (default 600000)"),
        ("created_after" = Option<String>, Query, description = "RFC 3339: created after this instant"),
        ("created_before" = Option<String>, Query, description = "RFC 3339: created before this instant"),
        ("updated_after" = Option<String>, Query, description = "RFC 3339: last changed after this instant"),
        ("updated_before" = Option<String>, Query, description = "RFC 3339: last changed before this instant"),
        ("q" = Option<String>, Query, description = "Case-insensitive text in the task's last event (message or data)"),
        ("cursor" = Option<String>, Query, description = "The opaque next_cursor of the previous page"),
        ("limit" = Option<String>, Query, description = "Most tasks to list (1-500, default 50)")
    ),
    responses((status = 200, description = "`{tasks, next_cursor}`", body = super::openapi::Object), (status = 400, description = "A parameter is wrong; `parameter` names it", body = super::openapi::ErrorBody))
)]
pub async fn list(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut query = TaskListQuery::default();
    for (key, value) in params {
        let slot = match key.as_str() {
            "status" => {
                query.status.push(value);
                continue;
            }
            "target" | "target_agent_id" => &mut query.target,
            "intent" => &mut query.intent,
            "conversation_id" => &mut query.conversation_id,
            "sender" => &mut query.sender,
            "thread_id" => &mut query.thread_id,
            "correlation_id" => &mut query.correlation_id,
            "retrying" => &mut query.retrying,
            "stuck" => &mut query.stuck,
            "stuck_after_ms" => &mut query.stuck_after_ms,
            "created_after" => &mut query.created_after,
            "created_before" => &mut query.created_before,
            "updated_after" => &mut query.updated_after,
            "updated_before" => &mut query.updated_before,
            "q" => &mut query.q,
            "cursor" => &mut query.cursor,
            "limit" => &mut query.limit,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter '{other}'; expected {LIST_PARAMS}"
                )));
            }
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(format!("query parameter '{key}' is given more than once")));
        }
        *slot = Some(value);
    }
    let page = st.services.list_tasks(&caller, query).await?;
    Ok(Json(json!({ "tasks": page.tasks, "next_cursor": page.next_cursor })))
}

fn status_reply(task_id: &str, status: TaskStatus) -> (StatusCode, Json<Value>) {
    let code = if status.is_terminal() { StatusCode::OK } else { StatusCode::ACCEPTED };
    (code, Json(json!({ "task_id": task_id, "status": status })))
}

/// `POST /v1/tasks/bulk`: cancel or retry the tasks named by `ids` or `filter`; a dry run only
/// counts and lists them.
#[utoipa::path(
    post,
    path = "/v1/tasks/bulk",
    operation_id = "bulk_tasks",
    tag = "tasks",
    request_body(content = super::openapi::BulkBody, content_type = "application/json"),
    responses((status = 200, description = "`{action, dry_run, matched, applied, failed, task_ids, failures: [{task_id, error, status}], truncated}`", body = super::openapi::Object))
)]
pub async fn bulk(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    StrictJson(req): StrictJson<aethrolink_actors::service::bulk::BulkRequest>,
) -> Result<Json<aethrolink_actors::service::bulk::BulkOutcome>, ApiError> {
    Ok(Json(st.services.bulk_tasks(&caller, req).await?))
}

/// Body of `POST /v1/tasks/{id}/cancel` (optional).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/tasks/{id}/cancel` → 202 (200 once the task is terminal, including "already was").
#[utoipa::path(
    post,
    path = "/v1/tasks/{task_id}/cancel",
    operation_id = "cancel_task",
    tag = "tasks",
    params(("task_id" = String, Path, description = "The task's id")),
    request_body(content = Option<CancelRequest>, content_type = "application/json", description = "Optional (an empty body is accepted)"),
    responses((status = 202, description = "`{task_id, status}`: the cancel is under way", body = super::openapi::Object), (status = 200, description = "`{task_id, status}`: the task is terminal (also when it already was)", body = super::openapi::Object))
)]
pub async fn cancel(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(task_id): Path<String>,
    OptionalJson(body): OptionalJson<CancelRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let status = st.services.cancel_task(&caller, &task_id, body.and_then(|b| b.reason)).await?;
    Ok(status_reply(&task_id, status))
}

/// Body of `POST /v1/tasks/{id}/resume`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    #[serde(default)]
    payload: Value,
    /// Accepted for contract compatibility; not used.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
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
#[utoipa::path(
    post,
    path = "/v1/tasks/{task_id}/resume",
    operation_id = "resume_task",
    tag = "tasks",
    params(("task_id" = String, Path, description = "The task's id")),
    request_body(content = ResumeRequest, content_type = "application/json"),
    responses((status = 202, description = "`{task_id, status}`: the answer is on its way", body = super::openapi::Object), (status = 409, description = "The task is not awaiting input (`status` says what it is)", body = super::openapi::ErrorBody), (status = 422, description = "The answer does not fit the question", body = super::openapi::ErrorBody))
)]
pub async fn resume(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(task_id): Path<String>,
    StrictJson(req): StrictJson<ResumeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let input = ResumeInput { payload: req.payload, option_id: req.option_id, decision: req.decision };
    let status = st.services.resume_task(&caller, &task_id, input).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "task_id": task_id, "status": status }))))
}
