//! The follower tasks of an HTTP session: all of a turn's IO with the server (submit + SSE
//! stream, resume + stream, re-sync from the run's history, polling, cancel), each a spawned
//! task that casts what it reads back to the session stamped with its turn.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::session::HttpSessionMsg;
use crate::model::{FailureReason, JsonObject};
use crate::runtime::http::{self, HttpTarget, REQUEST_TIMEOUT, SseParser};

/// What a follower read from the server for a turn.
#[derive(Debug)]
pub enum Remote {
    /// `POST /runs` answered 2xx: the run's id (header or body) and, for `polling`, its session.
    Accepted { run_id: Option<String>, session_id: Option<String> },
    /// `POST /runs` failed: the task fails with this code and message.
    Rejected { code: String, message: String },
    /// One run event (`acp` dialect), live or re-synced, in server order.
    Event(Value),
    /// Re-attach after a node restart: the run's whole event history.
    Replay(Vec<Value>),
    /// One `GET /runs/{id}` snapshot (`polling` dialect).
    Snapshot(Value),
    /// A resume was accepted by the server.
    Resumed,
    /// A resume was refused; the task stays awaiting.
    ResumeRefused(String),
    /// The stream ended before the run did; re-syncing.
    StreamDropped(String),
    /// The run is gone or unreachable past the bound: the task fails with this reason.
    Lost { reason: FailureReason, detail: String },
}

/// What a follower needs: where to send, what to send with, whom to tell.
#[derive(Clone)]
pub(super) struct Follow {
    pub(super) target: Arc<HttpTarget>,
    pub(super) headers: HeaderMap,
    pub(super) me: ActorRef<HttpSessionMsg>,
    pub(super) turn: u64,
    /// How long the run may stay unreachable.
    pub(super) bound: Duration,
}

impl Follow {
    fn tell(&self, item: Remote) {
        let _ = self.me.cast(HttpSessionMsg::Remote { turn: self.turn, item });
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.target.client.post(self.target.url(path)).headers(self.headers.clone()).json(body)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.target.client.get(self.target.url(path)).headers(self.headers.clone()).timeout(REQUEST_TIMEOUT)
    }

    /// GET `path` as JSON, retrying transient failures until the bound: `Err(Lost)` if the run
    /// is gone (404) or unreachable too long.
    async fn get_json(&self, path: &str, run_id: &str, since: &mut Option<Instant>) -> Result<Value, Remote> {
        let mut backoff = http::POLL_INTERVAL;
        loop {
            let last = match self.get(path).send().await {
                Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                    Ok(v) => {
                        *since = None;
                        return Ok(v);
                    }
                    Err(e) => format!("unreadable answer: {}", http::describe_reqwest(&e)),
                },
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                    let (_, message) = http::error_of(r).await;
                    return Err(Remote::Lost {
                        reason: FailureReason::RemoteRunGone,
                        detail: format!("run {run_id} no longer exists on {} ({message})", self.target.endpoint),
                    });
                }
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => http::describe_reqwest(&e),
            };
            let first = *since.get_or_insert_with(Instant::now);
            if first.elapsed() >= self.bound {
                return Err(Remote::Lost {
                    reason: FailureReason::RemoteUnreachable,
                    detail: format!(
                        "run {run_id}: {} unreachable for {} ms (last: {last})",
                        self.target.endpoint,
                        first.elapsed().as_millis()
                    ),
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Reads an SSE run stream to its end; re-syncs if it ends before the run pauses or ends.
    async fn stream(&self, mut response: reqwest::Response, mut run_id: Option<String>, mut offset: usize) {
        let mut parser = SseParser::default();
        let dropped = loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    for frame in parser.push(&bytes) {
                        let Ok(event) = serde_json::from_str::<Value>(&frame) else {
                            tracing::warn!(target_id = %self.target.target_id, frame = %frame.chars().take(200).collect::<String>(), "unreadable SSE frame skipped");
                            continue;
                        };
                        if run_id.is_none() {
                            run_id = event.pointer("/run/run_id").and_then(Value::as_str).map(str::to_owned);
                        }
                        let ends = http::ends_stream(&event);
                        offset += 1;
                        self.tell(Remote::Event(event));
                        if ends {
                            return;
                        }
                    }
                }
                Ok(None) => break "the server closed the stream before the run ended".to_owned(),
                Err(e) => break format!("stream broken: {}", http::describe_reqwest(&e)),
            }
        };
        let Some(run_id) = run_id else {
            self.tell(Remote::Lost {
                reason: FailureReason::StreamFailed,
                detail: format!("{dropped}; no run id was received"),
            });
            return;
        };
        self.tell(Remote::StreamDropped(dropped));
        self.resync(&run_id, offset).await;
    }

    /// Follows a run by reading its state and event history until it pauses or ends.
    pub(super) async fn resync(&self, run_id: &str, mut offset: usize) {
        let mut since = None;
        if let Err(lost) = self.get_json(&format!("/runs/{run_id}"), run_id, &mut since).await {
            self.tell(lost);
            return;
        }
        loop {
            let body = match self.get_json(&format!("/runs/{run_id}/events"), run_id, &mut since).await {
                Ok(b) => b,
                Err(lost) => {
                    self.tell(lost);
                    return;
                }
            };
            let events = body.get("events").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut ended = false;
            for event in events.into_iter().skip(offset) {
                offset += 1;
                ended |= http::ends_stream(&event);
                self.tell(Remote::Event(event));
            }
            if ended {
                return;
            }
            tokio::time::sleep(http::POLL_INTERVAL).await;
        }
    }

    /// `acp`: `POST /runs` in stream mode, then follow.
    pub(super) async fn acp_submit(self, body: Value) {
        let response = match self.post("/runs", &body).send().await {
            Ok(r) => r,
            Err(e) => {
                let message = format!("POST {}/runs failed: {}", self.target.endpoint, http::describe_reqwest(&e));
                self.tell(Remote::Rejected { code: "submit_failed".into(), message });
                return;
            }
        };
        if !response.status().is_success() {
            let (code, message) = http::error_of(response).await;
            self.tell(Remote::Rejected { code, message });
            return;
        }
        let run_id = response.headers().get("run-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.tell(Remote::Accepted { run_id: run_id.clone(), session_id: None });
        self.stream(response, run_id, 0).await;
    }

    /// `acp`: resume a run (only if the server still has it awaiting), then follow.
    pub(super) async fn acp_resume(self, run_id: String, message: Value, offset: usize) {
        let mut since = None;
        let run = match self.get_json(&format!("/runs/{run_id}"), &run_id, &mut since).await {
            Ok(r) => r,
            Err(lost) => return self.tell(lost),
        };
        let status = run.get("status").and_then(Value::as_str).unwrap_or("unknown").to_owned();
        if status != "awaiting" {
            // The reference server corrupts a run resumed in any other state.
            self.tell(Remote::ResumeRefused(format!("the remote run is {status}, not awaiting")));
            return self.resync(&run_id, offset).await;
        }
        let body = json!({"await_resume": {"type": "message", "message": message}, "mode": "stream"});
        match self.post(&format!("/runs/{run_id}"), &body).send().await {
            Ok(r) if r.status().is_success() => {
                self.tell(Remote::Resumed);
                self.stream(r, Some(run_id), offset).await;
            }
            Ok(r) => {
                let (code, message) = http::error_of(r).await;
                self.tell(Remote::ResumeRefused(format!("{code}: {message}")));
            }
            Err(e) => {
                self.tell(Remote::ResumeRefused(format!("resume request failed: {}", http::describe_reqwest(&e))))
            }
        }
    }

    /// `acp`: re-attach after a node restart: replay the history, then follow.
    pub(super) async fn acp_reattach(self, run_id: String) {
        let mut since = None;
        let body = match self.get_json(&format!("/runs/{run_id}/events"), &run_id, &mut since).await {
            Ok(b) => b,
            Err(lost) => return self.tell(lost),
        };
        let events = body.get("events").and_then(Value::as_array).cloned().unwrap_or_default();
        let count = events.len();
        let paused_or_ended = events.last().is_some_and(http::ends_stream);
        self.tell(Remote::Replay(events));
        if !paused_or_ended {
            self.resync(&run_id, count).await;
        }
    }

    /// `polling`: `POST /runs`, then poll.
    pub(super) async fn polling_submit(self, body: Value) {
        let response = match self.post("/runs", &body).timeout(REQUEST_TIMEOUT).send().await {
            Ok(r) => r,
            Err(e) => {
                let message = format!("POST {}/runs failed: {}", self.target.endpoint, http::describe_reqwest(&e));
                return self.tell(Remote::Rejected { code: "submit_failed".into(), message });
            }
        };
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            let (code, message) = http::error_body(status, &bytes);
            return self.tell(Remote::Rejected { code, message });
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let Some(run_id) = body.get("run_id").and_then(Value::as_str).map(str::to_owned) else {
            let message = format!("POST /runs answer has no run_id: {}", String::from_utf8_lossy(&bytes));
            return self.tell(Remote::Rejected { code: "submit_failed".into(), message });
        };
        let session_id = body.get("session_id").and_then(Value::as_str).map(str::to_owned);
        self.tell(Remote::Accepted { run_id: Some(run_id.clone()), session_id });
        self.poll(&run_id).await;
    }

    /// `polling`: read `GET /runs/{id}` until the run ends.
    pub(super) async fn poll(&self, run_id: &str) {
        let mut since = None;
        loop {
            match self.get_json(&format!("/runs/{run_id}"), run_id, &mut since).await {
                Ok(run) => {
                    let ended =
                        matches!(run.get("status").and_then(Value::as_str), Some("completed" | "failed" | "cancelled"));
                    self.tell(Remote::Snapshot(run));
                    if ended {
                        return;
                    }
                }
                Err(lost) => return self.tell(lost),
            }
            tokio::time::sleep(http::POLL_INTERVAL).await;
        }
    }

    /// `polling`: `POST /runs/{id}/resume` with the payload.
    pub(super) async fn polling_resume(self, run_id: String, payload: JsonObject) {
        match self
            .post(&format!("/runs/{run_id}/resume"), &Value::Object(payload))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => self.tell(Remote::Resumed),
            Ok(r) => {
                let (code, message) = http::error_of(r).await;
                self.tell(Remote::ResumeRefused(format!("{code}: {message}")));
            }
            Err(e) => {
                self.tell(Remote::ResumeRefused(format!("resume request failed: {}", http::describe_reqwest(&e))))
            }
        }
    }

    /// `POST /runs/{id}/cancel`; the run's own events confirm it.
    pub(super) async fn cancel(self, run_id: String) {
        match self.post(&format!("/runs/{run_id}/cancel"), &json!({})).timeout(REQUEST_TIMEOUT).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::info!(target_id = %self.target.target_id, %run_id, status = %r.status(), "cancel refused (run already ended?)")
            }
            Err(e) => {
                tracing::warn!(target_id = %self.target.target_id, %run_id, error = %http::describe_reqwest(&e), "cancel request failed")
            }
        }
    }
}
