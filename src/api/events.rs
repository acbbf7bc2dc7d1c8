//! `GET /v1/tasks/{id}/events`: SSE (`event: task.event`, `id: <seq>`, `data: <TaskEvent>`),
//! history then live with no gap and no duplicate, closing after the terminal event, 15 s
//! keep-alive comments, resumable with `Last-Event-ID` or `?after=<seq>`. With
//! `Accept: application/json` the stored history is returned as `{"events": [...]}` instead.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aethrolink_actors::model::TaskEvent;
use aethrolink_actors::sse::{SINK_CAPACITY, Subscriber, SubscriberArgs, SubscriberMsg};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use ractor::{Actor, ActorRef};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{ApiError, AppState};

/// Stops the subscriber actor when the HTTP response is dropped (client gone, or shutdown).
struct SubscriberGuard(ActorRef<SubscriberMsg>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.stop(Some("stream closed".into()));
    }
}

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
pub async fn stream(
    State(st): State<AppState>,
    Path(task_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let after = parse_after(&headers, &params)?;
    if st.dir.reader.task(&task_id).await?.is_none() {
        return Err(ApiError::not_found(format!("task not found: {task_id}")));
    }
    let wants_json = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/event-stream"));
    if wants_json {
        let mut events = Vec::new();
        let mut from = after;
        loop {
            let page = st.dir.reader.events(&task_id, from, aethrolink_actors::storage::reader::MAX_PAGE).await?;
            let done = page.len() < aethrolink_actors::storage::reader::MAX_PAGE as usize;
            from = page.last().map_or(from, |e| e.seq);
            events.extend(page);
            if done {
                break;
            }
        }
        return Ok(Json(json!({ "events": events })).into_response());
    }
    let hub = st.dir.sse.get()?;
    let (sink, rx) = mpsc::channel::<Arc<TaskEvent>>(SINK_CAPACITY);
    let args =
        SubscriberArgs { task_id: task_id.clone(), after, sink, reader: st.dir.reader.clone(), hub: hub.clone() };
    let (subscriber, _) = Actor::spawn_linked(None, Subscriber, args, hub.get_cell())
        .await
        .map_err(|e| ApiError::unavailable(format!("could not open the event stream: {e}")))?;
    let guard = SubscriberGuard(subscriber);
    let shutdown = st.shutdown.clone();
    let events = ReceiverStream::new(rx)
        .map(move |event| {
            let _keep = &guard;
            Ok::<_, Infallible>(frame(&event))
        })
        .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive"))
        .into_response())
}
