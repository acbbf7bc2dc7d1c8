//! HTTP agent runtimes (Agent Communication Protocol, adapter `acp_http`): target configuration,
//! request bodies, the SSE frame parser, and the pure trackers that turn the server's run events
//! (dialect `acp`, the `acp-sdk` REST API) or run snapshots (dialect `polling`, the Go node's
//! simpler API, contract §8.6) into task events. No actor state here; the session actor in
//! [`super::acp_http`] drives the IO.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::Dispatch;
use crate::model::{JsonObject, TargetSpec};
use crate::port::PendingInput;

/// `remote.binding` of tasks run by this adapter (and `session_bindings.adapter`).
pub const BINDING: &str = "acp_comm_http";
/// Content type of the AethroLink control part, the first part of every submitted message.
pub const CONTROL_CONTENT_TYPE: &str = "application/vnd.aethrolink.control+json";
/// Bound on one health-check request.
const HEALTH_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one control request (submit headers, resume, cancel, re-sync reads).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on how long a run may stay unreachable (dropped stream, server down) before its
/// task fails; `runtime_options.resync_timeout_ms` overrides it.
pub const DEFAULT_RESYNC_BOUND: Duration = Duration::from_secs(15);
/// Interval of re-sync and `polling` reads.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Which HTTP API the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpDialect {
    /// The Agent Communication Protocol (`acp-sdk`): `POST /runs` streaming SSE run events.
    Acp,
    /// The Go node's run API: `POST /runs` with `messages`, polled with `GET /runs/{id}`.
    Polling,
}

impl HttpDialect {
    /// The dialect of a target (`dialect`, default `acp`).
    pub fn of(spec: &TargetSpec) -> Result<HttpDialect, String> {
        match spec.dialect.as_deref().unwrap_or("acp") {
            "acp" | "" => Ok(HttpDialect::Acp),
            "polling" => Ok(HttpDialect::Polling),
            other => Err(format!(
                "unsupported acp_http dialect for target {}: {other} (expected acp or polling)",
                spec.target_id
            )),
        }
    }
}

/// An HTTP target as the runtime needs it: where it lives and how to reach it.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub target_id: String,
    /// Base URL without a trailing `/`.
    pub endpoint: String,
    /// Polled until it answers 2xx to call the runtime ready.
    pub healthcheck: String,
    pub dialect: HttpDialect,
    /// Shared connection pool; carries the target's static headers (`defaults.headers`).
    pub client: reqwest::Client,
}

fn http_url(field: &str, value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value).map_err(|e| format!("{field} '{value}' is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{field} '{value}' must be an http:// or https:// URL with a host"));
    }
    Ok(url)
}

/// Headers from a `headers` object (string values only); the error names the bad entry.
pub fn header_map(headers: Option<&Value>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    let Some(headers) = headers else { return Ok(map) };
    let obj = headers.as_object().ok_or("headers must be an object of strings")?;
    for (name, value) in obj {
        let text = value.as_str().ok_or_else(|| format!("headers.{name} must be a string"))?;
        let name_h = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("headers: invalid name '{name}'"))?;
        let value_h = HeaderValue::from_str(text).map_err(|_| format!("headers.{name}: invalid value"))?;
        map.insert(name_h, value_h);
    }
    Ok(map)
}

impl HttpTarget {
    /// Checks and resolves a target's HTTP fields; the error names the field at fault.
    pub fn of(spec: &TargetSpec) -> Result<HttpTarget, String> {
        let endpoint = spec
            .endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| format!("endpoint is required for adapter 'acp_http' (target {})", spec.target_id))?;
        http_url("endpoint", endpoint)?;
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let healthcheck = match spec.healthcheck.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
            Some(h) => {
                http_url("healthcheck", h)?;
                h.to_owned()
            }
            None => format!("{endpoint}/ping"),
        };
        let dialect = HttpDialect::of(spec)?;
        let headers = header_map(spec.defaults.get("headers")).map_err(|e| format!("defaults.{e}"))?;
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(HttpTarget { target_id: spec.target_id.clone(), endpoint, healthcheck, dialect, client })
    }

    /// `<endpoint><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }
}

/// Polls `url` until it answers 2xx (backoff 20 ms doubling to 500 ms) or `deadline` passes.
/// Returns how long it took, or the last failure.
pub async fn wait_healthy(client: &reqwest::Client, url: &str, deadline: Instant) -> Result<Duration, String> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(20);
    let mut last = "no answer yet".to_owned();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(format!("health check {url} did not answer 2xx (last: {last})"));
        }
        match client.get(url).timeout(HEALTH_REQUEST_TIMEOUT.min(remaining)).send().await {
            Ok(r) if r.status().is_success() => return Ok(started.elapsed()),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = describe_reqwest(&e),
        }
        tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// A reqwest error in one line with its cause (`connection refused`, `timed out`).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// An error answer of the server: `{code, message}` (acp-sdk), `{error}` (polling servers), or
/// the body's text.
pub fn error_body(status: u16, body: &[u8]) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k)).and_then(Value::as_str).map(str::to_owned);
    let code = field("code").or_else(|| field("error")).unwrap_or_else(|| format!("http_{status}"));
    let message = field("message")
        .or_else(|| field("reason"))
        .or_else(|| field("error"))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    let message = if message.is_empty() { format!("HTTP {status}") } else { message };
    (code, message)
}

/// [`error_body`] of a non-2xx response.
pub async fn error_of(response: reqwest::Response) -> (String, String) {
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    error_body(status, &body)
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

fn opt_str<'a>(options: &'a JsonObject, key: &str) -> Option<&'a str> {
    options.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The agent a task is for: `runtime_options.agent_name` (target defaults merged in).
pub fn agent_name(d: &Dispatch) -> Result<String, String> {
    opt_str(&d.runtime_options, "agent_name")
        .map(str::to_owned)
        .ok_or_else(|| "no agent_name: set it in the target's defaults or in the task's runtime_options".to_owned())
}

/// An explicit remote session asked for by the task (`runtime_options.session_id`).
pub fn explicit_session(options: &JsonObject) -> Option<String> {
    opt_str(options, "session_id").map(str::to_owned)
}

/// How long a run may stay unreachable before its task fails.
pub fn resync_bound(options: &JsonObject) -> Duration {
    options.get("resync_timeout_ms").and_then(Value::as_u64).map_or(DEFAULT_RESYNC_BOUND, Duration::from_millis)
}

/// The AethroLink control envelope (contract §7/§8: who sends what, and how to deliver it).
pub fn control(d: &Dispatch) -> Value {
    json!({
        "task_id": d.task_id,
        "thread_id": d.thread_id,
        "conversation_id": d.conversation_id,
        "sender": d.sender,
        "target_agent_id": d.target_id,
        "intent": d.intent,
        "delivery": d.delivery,
        "trace": {"trace_id": d.trace_id},
    })
}

/// The payload as a message part: `text/plain` for a payload `text`, else the JSON itself.
fn payload_part(payload: &Value) -> Value {
    match payload.get("text").and_then(Value::as_str) {
        Some(text) => json!({"content_type": "text/plain", "content": text}),
        None => json!({"content_type": "application/json", "content": payload.to_string()}),
    }
}

/// `POST /runs` body of the `acp` dialect.
pub fn acp_run_body(d: &Dispatch, agent_name: &str, session_id: Option<&str>) -> Value {
    let mut body = json!({
        "agent_name": agent_name,
        "mode": "stream",
        "input": [{
            "role": "user",
            "parts": [
                {"content_type": CONTROL_CONTENT_TYPE, "content": control(d).to_string()},
                payload_part(&d.payload),
            ],
        }],
    });
    if let Some(sid) = session_id {
        body["session_id"] = json!(sid);
    }
    body
}

/// `POST /runs` body of the `polling` dialect (the Go node's shape: a system message, then the
/// payload as JSON text); the control envelope rides along as an extra field.
pub fn polling_run_body(d: &Dispatch) -> Value {
    json!({
        "messages": [
            {"role": "system", "content": "aethrolink_control", "control": control(d)},
            {"role": "user", "content": d.payload.to_string()},
        ],
    })
}

/// The message a resume payload answers an `acp` await request with: `message` (an ACP
/// `Message`, or a string) or `text`. The error says what a resume must carry.
pub fn resume_message(payload: &JsonObject) -> Result<Value, String> {
    let text_message = |text: &str| json!({"role": "user", "parts": [{"content_type": "text/plain", "content": text}]});
    match (payload.get("message"), payload.get("text")) {
        (Some(Value::Object(m)), _) => {
            if !m.get("parts").is_some_and(Value::is_array) {
                return Err("resume message must have a \"parts\" array".into());
            }
            let mut m = m.clone();
            m.entry("role").or_insert_with(|| json!("user"));
            Ok(Value::Object(m))
        }
        (Some(Value::String(s)), _) => Ok(text_message(s)),
        (Some(_), _) => Err("resume \"message\" must be an object with parts or a string".into()),
        (None, Some(Value::String(s))) => Ok(text_message(s)),
        (None, Some(_)) => Err("resume \"text\" must be a string".into()),
        (None, None) => Err("resume needs \"text\" (a string) or \"message\" (an ACP message)".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// SSE frames
// ---------------------------------------------------------------------------------------------

/// Splits a `text/event-stream` byte stream into the `data` of each frame. Only `data:` lines
/// matter (the server sends no `event:`/`id:`); comments and other fields are skipped; a frame's
/// `data:` lines are joined with `\n`; `\r\n` and `\n` line ends are both accepted.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of an unfinished line.
    line: Vec<u8>,
    /// `data` lines of the frame being read.
    data: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the frames they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut frames = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    frames.push(data);
                }
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            if let Some(rest) = text.strip_prefix("data:") {
                let rest = rest.strip_prefix(' ').unwrap_or(rest);
                match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(rest);
                    }
                    None => self.data = Some(rest.to_owned()),
                }
            }
        }
        frames
    }
}

// ---------------------------------------------------------------------------------------------
// What the server reports, as task events
// ---------------------------------------------------------------------------------------------

/// What a remote run event means for the task.
#[derive(Clone, Debug, PartialEq)]
pub enum RunOutcome {
    /// The run (and its session) got their ids.
    Bound { run_id: String, session_id: Option<String> },
    /// Agent text (accumulated into the result, streamed coalesced).
    Text(String),
    /// A running event.
    Progress { message: String, data: JsonObject },
    /// The run waits for input.
    Awaiting { message: String, data: JsonObject, pending: PendingInput },
    /// Finished; the task result.
    Completed { result: Value },
    /// Failed with the server's code and message.
    Failed { code: String, message: String },
    /// Cancelled.
    Cancelled,
}

fn obj(pairs: Vec<(&str, Value)>) -> JsonObject {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Text of an ACP message's text parts, concatenated.
pub fn message_text(message: &Value) -> String {
    let mut text = String::new();
    for part in message.get("parts").and_then(Value::as_array).into_iter().flatten() {
        if is_text_part(part)
            && let Some(s) = part.get("content").and_then(Value::as_str)
        {
            text.push_str(s);
        }
    }
    text
}

fn is_text_part(part: &Value) -> bool {
    let ct = part.get("content_type").and_then(Value::as_str).unwrap_or("text/plain");
    let trajectory = part.pointer("/metadata/kind").and_then(Value::as_str) == Some("trajectory");
    ct.starts_with("text/") && !trajectory && part.get("content").is_some_and(Value::is_string)
}

/// The state of one remote run (`acp` dialect), fed every event in order. Pure.
#[derive(Clone, Debug, Default)]
pub struct RunTracker {
    pub run_id: Option<String>,
    pub session_id: Option<String>,
    /// Last run status reported (`created`, `in-progress`, `awaiting`, …).
    pub status: Option<String>,
    /// The agent's text so far (the result's `text` if the final run has no output).
    pub text: String,
    /// Events applied: the index of the next event in the server's `/events` list.
    pub events_seen: usize,
}

/// Whether an event type ends a stream (`run.awaiting` pauses it, the rest end the run).
pub fn ends_stream(event: &Value) -> bool {
    matches!(
        event.get("type").and_then(Value::as_str),
        Some("run.awaiting" | "run.completed" | "run.failed" | "run.cancelled")
    )
}

impl RunTracker {
    /// The run ended (completed, failed or cancelled).
    pub fn settled(&self) -> bool {
        matches!(self.status.as_deref(), Some("completed" | "failed" | "cancelled"))
    }

    /// The run waits for a resume.
    pub fn awaiting(&self) -> bool {
        self.status.as_deref() == Some("awaiting")
    }

    fn bind(&mut self, run: &Value, out: &mut Vec<RunOutcome>) {
        let run_id = run.get("run_id").and_then(Value::as_str);
        let session_id = run.get("session_id").and_then(Value::as_str).map(str::to_owned);
        if let Some(id) = run_id
            && (self.run_id.as_deref() != Some(id) || self.session_id.is_none() && session_id.is_some())
        {
            self.run_id = Some(id.to_owned());
            self.session_id = session_id.clone().or(self.session_id.take());
            out.push(RunOutcome::Bound { run_id: id.to_owned(), session_id: self.session_id.clone() });
        }
    }

    /// Applies one event; returns what it means for the task. Events after the run ended are
    /// ignored (terminal absorbs).
    pub fn apply(&mut self, event: &Value) -> Vec<RunOutcome> {
        self.events_seen += 1;
        let mut out = Vec::new();
        if self.settled() {
            return out;
        }
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let run = event.get("run").cloned().unwrap_or(Value::Null);
        if !run.is_null() {
            self.bind(&run, &mut out);
            if let Some(s) = run.get("status").and_then(Value::as_str) {
                self.status = Some(s.to_owned());
            }
        }
        let run_id = json!(self.run_id);
        match kind {
            "run.in-progress" => out.push(RunOutcome::Progress {
                message: "Run in progress".into(),
                data: obj(vec![("run_id", run_id), ("status", json!("in-progress"))]),
            }),
            "message.part" => {
                let part = event.get("part").cloned().unwrap_or(Value::Null);
                if is_text_part(&part) {
                    let s = part.get("content").and_then(Value::as_str).unwrap_or_default();
                    self.text.push_str(s);
                    out.push(RunOutcome::Text(s.to_owned()));
                } else if part.pointer("/metadata/kind").and_then(Value::as_str) == Some("trajectory") {
                    let tool = part.pointer("/metadata/tool_name").and_then(Value::as_str);
                    out.push(RunOutcome::Progress {
                        message: tool.map_or_else(|| "Agent trajectory".to_owned(), |t| format!("Tool: {t}")),
                        data: obj(vec![("part", part)]),
                    });
                } else if !part.is_null() {
                    out.push(RunOutcome::Progress {
                        message: "Agent output part".into(),
                        data: obj(vec![("part", part)]),
                    });
                }
            }
            "run.awaiting" => {
                let request = run.get("await_request").cloned().unwrap_or(Value::Null);
                let message = request.get("message").cloned().unwrap_or(Value::Null);
                let prompt = message_text(&message);
                out.push(RunOutcome::Awaiting {
                    message: if prompt.is_empty() {
                        "Runtime requires additional input".into()
                    } else {
                        format!("Runtime requires additional input: {prompt}")
                    },
                    data: obj(vec![
                        ("await_request", request),
                        ("prompt", json!(prompt)),
                        ("run_id", run_id),
                        ("resume", json!("POST /v1/tasks/{id}/resume with {\"text\": ...} or {\"message\": {...}}")),
                    ]),
                    pending: PendingInput::AwaitRequest,
                });
            }
            "run.completed" => out.push(RunOutcome::Completed { result: self.result(&run) }),
            "run.failed" => {
                let code = run.pointer("/error/code").and_then(Value::as_str).unwrap_or("remote_failed").to_owned();
                let message =
                    run.pointer("/error/message").and_then(Value::as_str).unwrap_or("the run failed").to_owned();
                out.push(RunOutcome::Failed { code, message });
            }
            "run.cancelled" => out.push(RunOutcome::Cancelled),
            "error" => out.push(RunOutcome::Progress {
                message: "Runtime reported an error".into(),
                data: obj(vec![("error", event.get("error").cloned().unwrap_or(Value::Null))]),
            }),
            "generic" => out.push(RunOutcome::Progress {
                message: "Agent event".into(),
                data: obj(vec![("generic", event.get("generic").cloned().unwrap_or(Value::Null))]),
            }),
            // run.created binds above; message.created/completed carry nothing new.
            _ => {}
        }
        out
    }

    /// `{text, output, run_id, session_id}` of a finished run: the text of its output messages
    /// (or what was streamed, if it kept none) and the output messages themselves.
    fn result(&self, run: &Value) -> Value {
        let output = run.get("output").cloned().unwrap_or_else(|| json!([]));
        let from_output: String = output.as_array().into_iter().flatten().map(message_text).collect();
        let text = if from_output.is_empty() { self.text.clone() } else { from_output };
        json!({"text": text, "output": output, "run_id": self.run_id, "session_id": self.session_id})
    }
}

/// The state of a `polling` run, fed each snapshot of `GET /runs/{id}`. Reports a status only
/// when it changes (contract §8.6). Pure.
#[derive(Clone, Debug, Default)]
pub struct PollTracker {
    /// Last status reported.
    pub status: Option<String>,
}

impl PollTracker {
    /// The run ended.
    pub fn settled(&self) -> bool {
        matches!(self.status.as_deref(), Some("completed" | "failed" | "cancelled"))
    }

    /// Applies one snapshot.
    pub fn apply(&mut self, run: &Value) -> Vec<RunOutcome> {
        let status = run.get("status").and_then(Value::as_str).unwrap_or("running").to_owned();
        if self.settled() || self.status.as_deref() == Some(status.as_str()) {
            return Vec::new();
        }
        self.status = Some(status.clone());
        let mut data = JsonObject::new();
        for key in ["run_id", "session_id", "status", "prompt", "message"] {
            if let Some(v) = run.get(key) {
                data.insert(key.to_owned(), v.clone());
            }
        }
        let outcome = match status.as_str() {
            "awaiting_input" | "awaiting" => {
                RunOutcome::Awaiting {
                    message: "Runtime requires additional input".into(),
                    data,
                    // The polling API forwards any resume payload as it is.
                    pending: PendingInput::Free,
                }
            }
            "completed" => RunOutcome::Completed { result: run.get("result").cloned().unwrap_or_else(|| json!({})) },
            "failed" => {
                let reason = run.get("reason").and_then(Value::as_str).unwrap_or("remote_failed").to_owned();
                RunOutcome::Failed { code: reason.clone(), message: reason }
            }
            "cancelled" => RunOutcome::Cancelled,
            _ => RunOutcome::Progress { message: "Task running".into(), data },
        };
        vec![outcome]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_split_on_blank_lines_whatever_the_chunking() {
        let text = "data: {\"a\":1}\n\n: comment\ndata: x\r\ndata: y\r\n\r\nevent: ignored\ndata:z\n\n";
        for split in [1, 3, 7, text.len()] {
            let mut p = SseParser::default();
            let frames: Vec<String> = text.as_bytes().chunks(split).flat_map(|c| p.push(c)).collect();
            assert_eq!(frames, vec!["{\"a\":1}".to_owned(), "x\ny".to_owned(), "z".to_owned()], "split {split}");
        }
        let mut p = SseParser::default();
        assert!(p.push(b"data: unfinished").is_empty());
    }

    fn ev(kind: &str, run: Value) -> Value {
        json!({"type": kind, "run": run})
    }

    #[test]
    fn sdk_stream_maps_to_bound_text_and_completed() {
        let run = |status: &str| json!({"run_id": "r1", "session_id": "s1", "status": status, "output": []});
        let mut t = RunTracker::default();
        assert_eq!(
            t.apply(&ev("run.created", run("created"))),
            vec![RunOutcome::Bound { run_id: "r1".into(), session_id: Some("s1".into()) }]
        );
        assert!(matches!(&t.apply(&ev("run.in-progress", run("in-progress")))[..], [RunOutcome::Progress { .. }]));
        assert!(t.apply(&json!({"type": "message.created", "message": {"parts": []}})).is_empty());
        assert_eq!(
            t.apply(&json!({"type": "message.part", "part": {"content": "Hello", "content_type": "text/plain"}})),
            vec![RunOutcome::Text("Hello".into())]
        );
        assert_eq!(
            t.apply(&json!({"type": "message.part", "part": {"content": " world"}})),
            vec![RunOutcome::Text(" world".into())]
        );
        let done = json!({"run_id": "r1", "session_id": "s1", "status": "completed",
            "output": [{"role": "agent/echo", "parts": [{"content": "Hello"}, {"content": " world"}]}]});
        let out = t.apply(&ev("run.completed", done));
        let [RunOutcome::Completed { result }] = &out[..] else { panic!("{out:?}") };
        assert_eq!(result["text"], "Hello world");
        assert_eq!(result["output"][0]["role"], "agent/echo");
        assert!(t.settled());
        assert_eq!(t.events_seen, 6);
        // Terminal absorbs.
        assert!(t.apply(&ev("run.failed", run("failed"))).is_empty());
    }

    #[test]
    fn sdk_awaiting_failed_and_cancelled() {
        let mut t = RunTracker::default();
        let awaiting = json!({"run_id": "r", "session_id": "s", "status": "awaiting",
            "await_request": {"type": "message", "message": {"role": "agent", "parts": [{"content": "Approve? (yes/no)"}]}}});
        let out = t.apply(&ev("run.awaiting", awaiting));
        assert!(matches!(&out[0], RunOutcome::Bound { .. }));
        let RunOutcome::Awaiting { message, data, pending } = &out[1] else { panic!("{out:?}") };
        assert_eq!(*pending, PendingInput::AwaitRequest);
        assert!(message.contains("Approve? (yes/no)"));
        assert_eq!(data["await_request"]["type"], "message");
        assert!(t.awaiting());

        let mut f = RunTracker::default();
        let failed = json!({"run_id": "r", "status": "failed", "error": {"code": "server_error", "message": "boom"}});
        assert_eq!(
            f.apply(&ev("run.failed", failed)).last(),
            Some(&RunOutcome::Failed { code: "server_error".into(), message: "boom".into() })
        );
        let mut c = RunTracker::default();
        assert_eq!(
            c.apply(&ev("run.cancelled", json!({"run_id": "r", "status": "cancelled"}))).last(),
            Some(&RunOutcome::Cancelled)
        );
    }

    #[test]
    fn non_text_parts_are_progress_not_text() {
        let mut t = RunTracker::default();
        let json_part = json!({"type": "message.part", "part": {"content_type": "application/json", "content": "{}"}});
        assert!(matches!(&t.apply(&json_part)[..], [RunOutcome::Progress { .. }]));
        let traj = json!({"type": "message.part", "part": {"content": "thinking", "metadata": {"kind": "trajectory", "tool_name": "search"}}});
        assert!(matches!(&t.apply(&traj)[..], [RunOutcome::Progress { message, .. }] if message == "Tool: search"));
        assert!(t.text.is_empty());
    }

    #[test]
    fn polling_reports_status_changes_only() {
        let mut p = PollTracker::default();
        assert!(matches!(&p.apply(&json!({"status": "running"}))[..], [RunOutcome::Progress { .. }]));
        assert!(p.apply(&json!({"status": "running"})).is_empty());
        assert!(matches!(&p.apply(&json!({"status": "awaiting_input"}))[..], [RunOutcome::Awaiting { .. }]));
        assert_eq!(
            p.apply(&json!({"status": "completed", "result": {"text": "ok"}})),
            vec![RunOutcome::Completed { result: json!({"text": "ok"}) }]
        );
        assert!(p.apply(&json!({"status": "failed"})).is_empty());
        let mut f = PollTracker::default();
        assert_eq!(
            f.apply(&json!({"status": "failed", "reason": "launch_failed"})),
            vec![RunOutcome::Failed { code: "launch_failed".into(), message: "launch_failed".into() }]
        );
    }

    fn ok<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }

    fn err<T: std::fmt::Debug>(r: Result<T, String>) -> String {
        match r {
            Ok(v) => panic!("unexpected success: {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn resume_payloads_become_messages_or_clear_errors() {
        let p = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(ok(resume_message(&p(json!({"text": "yes"}))))["parts"][0]["content"], "yes");
        let m = ok(resume_message(&p(json!({"message": {"parts": [{"content": "no"}]}}))));
        assert_eq!((m["role"].as_str(), m["parts"][0]["content"].as_str()), (Some("user"), Some("no")));
        assert!(err(resume_message(&p(json!({})))).contains("\"text\""));
        assert!(err(resume_message(&p(json!({"message": {"role": "user"}})))).contains("parts"));
        assert!(resume_message(&p(json!({"text": 3}))).is_err());
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        assert_eq!(
            error_body(404, br#"{"code":"not_found","message":"Agent nope not found"}"#),
            ("not_found".to_owned(), "Agent nope not found".to_owned())
        );
        assert_eq!(error_body(422, br#"{"error":"submit_failed"}"#), ("submit_failed".into(), "submit_failed".into()));
        assert_eq!(error_body(502, b"bad gateway"), ("http_502".into(), "bad gateway".into()));
        assert_eq!(error_body(500, b""), ("http_500".into(), "HTTP 500".into()));
    }

    #[test]
    fn target_fields_are_checked() {
        let mut spec = TargetSpec::new("h", "acp_http");
        spec.endpoint = Some("http://127.0.0.1:9/".into());
        let t = ok(HttpTarget::of(&spec));
        assert_eq!((t.endpoint.as_str(), t.healthcheck.as_str()), ("http://127.0.0.1:9", "http://127.0.0.1:9/ping"));
        spec.endpoint = Some("ftp://x".into());
        assert!(err(HttpTarget::of(&spec)).contains("endpoint"));
        spec.endpoint = None;
        assert!(err(HttpTarget::of(&spec)).contains("endpoint is required"));
        spec.endpoint = Some("http://h".into());
        spec.dialect = Some("soap".into());
        assert!(err(HttpTarget::of(&spec)).contains("soap"));
        spec.dialect = Some("polling".into());
        spec.defaults.insert("headers".into(), json!({"x-a": 1}));
        assert!(err(HttpTarget::of(&spec)).contains("headers.x-a"));
    }
}
