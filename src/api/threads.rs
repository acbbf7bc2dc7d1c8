//! Thread routes: create, get, list, turns, inspect, continue (contract §10).

use std::collections::BTreeMap;

use aethrolink_actors::model::ThreadRecord;
use aethrolink_actors::service::threads::{ContinueThread, CreateThread, ThreadInspection};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::json::StrictJson;
use super::tasks::links;
use super::{ApiError, AppState, HttpCaller};

fn thread_links(id: &str) -> Value {
    json!({ "self": format!("/v1/threads/{id}"), "turns": format!("/v1/threads/{id}/turns") })
}

/// `POST /v1/threads` → 201 `{thread, links}`.
#[utoipa::path(
    post,
    path = "/v1/threads",
    operation_id = "create_thread",
    tag = "threads",
    request_body(content = super::openapi::Object, content_type = "application/json", description = "See docs/api.md"),
    responses((status = 201, description = "`{thread, links}`", body = super::openapi::Object), (status = 404, description = "An agent of the thread is unknown", body = super::openapi::ErrorBody), (status = 422, description = "The pair of agents is not valid", body = super::openapi::ErrorBody))
)]
pub async fn create(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    StrictJson(req): StrictJson<CreateThread>,
) -> Result<impl IntoResponse, ApiError> {
    let thread = st.services.create_thread(&caller, req).await?;
    let links = thread_links(&thread.thread_id);
    Ok((StatusCode::CREATED, Json(json!({ "thread": thread, "links": links }))))
}

/// `GET /v1/threads/{id}`.
#[utoipa::path(
    get,
    path = "/v1/threads/{thread_id}",
    operation_id = "get_thread",
    tag = "threads",
    params(("thread_id" = String, Path, description = "The thread's id")),
    responses((status = 200, description = "The ThreadRecord", body = super::openapi::Object))
)]
pub async fn get(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(id): Path<String>,
) -> Result<Json<ThreadRecord>, ApiError> {
    Ok(Json(st.services.get_thread(&caller, &id).await?))
}

/// `GET /v1/threads?agent=&status=&limit=`.
#[utoipa::path(
    get,
    path = "/v1/threads",
    operation_id = "list_threads",
    tag = "threads",
    params(("agent" = Option<String>, Query, description = "Only threads with this agent"), ("status" = Option<String>, Query, description = "Only threads in this status"), ("limit" = Option<String>, Query, description = "Most threads to list")),
    responses((status = 200, description = "`{threads: [ThreadRecord]}`", body = super::openapi::Object))
)]
pub async fn list(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(k) = params.keys().find(|k| !["agent", "status", "limit"].contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("unknown query parameter '{k}'; expected agent, status, limit")));
    }
    let get = |k: &str| params.get(k).map(String::as_str);
    let threads = st.services.list_threads(&caller, get("agent"), get("status"), get("limit")).await?;
    Ok(Json(json!({ "threads": threads })))
}

/// `GET /v1/threads/{id}/turns` → `{"turns": [...]}` by turn index.
#[utoipa::path(
    get,
    path = "/v1/threads/{thread_id}/turns",
    operation_id = "thread_turns",
    tag = "threads",
    params(("thread_id" = String, Path, description = "The thread's id")),
    responses((status = 200, description = "`{turns: [...]}` by turn index", body = super::openapi::Object))
)]
pub async fn turns(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "turns": st.services.thread_turns(&caller, &id).await? })))
}

/// `POST /v1/threads/{id}/continue` → 202 `{task, links}` (the first task of the run).
#[utoipa::path(
    post,
    path = "/v1/threads/{thread_id}/continue",
    operation_id = "continue_thread",
    tag = "threads",
    params(("thread_id" = String, Path, description = "The thread's id")),
    request_body(content = super::openapi::Object, content_type = "application/json", description = "See docs/api.md"),
    responses((status = 202, description = "`{task, links}`: the first task of the run", body = super::openapi::Object), (status = 409, description = "The thread cannot continue now", body = super::openapi::ErrorBody), (status = 422, description = "The thread cannot continue (e.g. it is closed)", body = super::openapi::ErrorBody))
)]
pub async fn continue_thread(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(id): Path<String>,
    StrictJson(req): StrictJson<ContinueThread>,
) -> Result<impl IntoResponse, ApiError> {
    let task = st.services.continue_thread(&caller, &id, req).await?;
    let links = links(&task.task_id);
    Ok((StatusCode::ACCEPTED, Json(json!({ "task": task, "links": links }))))
}

/// `GET /v1/threads/{id}/inspect`: the thread explained (turns, participants, continuity, who
/// continues next and whether that turn would reuse a remote session).
#[utoipa::path(
    get,
    path = "/v1/threads/{thread_id}/inspect",
    operation_id = "inspect_thread",
    tag = "threads",
    params(("thread_id" = String, Path, description = "The thread's id")),
    responses((status = 200, description = "The thread explained", body = super::openapi::Object))
)]
pub async fn inspect(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(id): Path<String>,
) -> Result<Json<ThreadInspection>, ApiError> {
    Ok(Json(st.services.inspect_thread(&caller, &id).await?))
}
