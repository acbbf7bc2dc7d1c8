//! `GET /v1/tasks/{id}/events`: SSE (`event: task.event`, `id: <seq>`, `data: <TaskEvent>`),
//! history then live with no gap and no duplicate, closing after the terminal event, 15 s
//! keep-alive comments, resumable with `Last-Event-ID` or `?after=<seq>`. With
//! `Accept: application/json` the stored history is returned as `{"events": [...]}` instead.
//!
//! `GET /v1/events`: every task's events from now on (no history, no end): what a live task
//! list follows. A reader that falls behind gets `event: lagged` and should list again.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use aethrolink_actors::model::TaskEvent;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream};

use super::{ApiError, AppState, HttpCaller};

fn parse_after(headers: &HeaderMap, params: &HashMap<String, String>) -> Result<u64, ApiError> {
    if let Some(key) = params.keys().find(|k| k.as_str() != "after") {
        return Err(ApiError::bad_request(format!("unknown query parameter '{key}'; expected after")));
    }
    let parse = |what: &str, v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("{what} '{v}' must be a non-negative integer event seq")))
    };
    if let Some(v) = params.get("after") {
        return parse("after", v);
    }
    match headers.get("last-event-id") {
        Some(v) => parse("Last-Event-ID", v.to_str().unwrap_or("?")),
        None => Ok(0),
    }
}

fn frame(event: &TaskEvent) -> Event {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event("task.event").id(event.seq.to_string()).data(data)
}

/// The handler.
#[utoipa::path(
    get,
    path = "/v1/tasks/{task_id}/events",
    operation_id = "task_events",
    tag = "tasks",
    params(("task_id" = String, Path, description = "The task's id"), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event seq")),
    responses((status = 200, description = "Server-sent events: the task's events from the start (or after `Last-Event-ID`)", content_type = "text/event-stream", body = String))
)]
pub async fn stream(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(task_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let after = parse_after(&headers, &params)?;
    let wants_json = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/event-stream"));
    if wants_json {
        let events = st.services.task_history(&caller, &task_id, after).await?;
        return Ok(Json(json!({ "events": events })).into_response());
    }
    let subscription = st.services.subscribe_task_events(&caller, &task_id, after).await?;
    let guard = subscription.guard;
    let shutdown = st.shutdown.clone();
    let events = ReceiverStream::new(subscription.events)
        .map(move |event| {
            let _keep = &guard;
            Ok::<_, Infallible>(frame(&event))
        })
        .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive"))
        .into_response())
}

/// `GET /v1/events`: every task's events as they become durable, until the client goes or the
/// node stops.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "watch_events",
    tag = "tasks",
    responses((status = 200, description = "Server-sent events: every task's events from now on (`event: task.event`, no id), and `event: lagged` (`{\"missed\": n}`) when the reader fell behind; it never ends by itself", content_type = "text/event-stream", body = String))
)]
pub async fn watch(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(key) = params.keys().next() {
        return Err(ApiError::bad_request(format!("unknown query parameter '{key}'; this stream takes none")));
    }
    let receiver = st.services.watch_task_events(&caller).await?;
    let shutdown = st.shutdown.clone();
    let events = BroadcastStream::new(receiver)
        .map(|item| {
            Ok::<_, Infallible>(match item {
                Ok(event) => Event::default()
                    .event("task.event")
                    .data(serde_json::to_string(&*event).unwrap_or_else(|_| "{}".to_owned())),
                Err(BroadcastStreamRecvError::Lagged(missed)) => {
                    Event::default().event("lagged").data(json!({ "missed": missed }).to_string())
                }
            })
        })
        .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive"))
        .into_response())
}
