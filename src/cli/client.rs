//! The HTTP side of `alink-cli`: its errors, a small client bound to `--server`, and the
//! `--json` switch between raw and readable output.

use std::time::Duration;

use serde_json::Value;

/// Errors of the CLI (printed on stderr, exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {server}: {source}")]
    Connect { server: String, source: reqwest::Error },
    #[error("http {status}: {body}")]
    Http { status: u16, body: String },
    #[error("event stream: {0}")]
    Stream(String),
    #[error("state file {path}: {message}")]
    State { path: String, message: String },
    /// The task ended without completing (`call --wait`, `thread-continue --wait`).
    #[error("task {task_id} ended {status}{detail}")]
    TaskDidNotComplete { task_id: String, status: String, detail: String },
}

/// A small HTTP client bound to one server.
pub(super) struct Client {
    http: reqwest::Client,
    /// The `--server` base URL without a trailing slash, so paths can be appended as they are.
    server: String,
}

impl Client {
    pub(super) fn new(server: &str) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::Usage(format!("http client: {e}")))?;
        Ok(Client { http, server: server.trim_end_matches('/').to_owned() })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    fn connect_error(&self, source: reqwest::Error) -> CliError {
        CliError::Connect { server: self.server.clone(), source }
    }

    /// Sends a request and reads its answer: JSON when it parses, else the text as a string.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let resp = req.timeout(Duration::from_secs(30)).send().await.map_err(|e| self.connect_error(e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.connect_error(e))?;
        if !status.is_success() {
            return Err(CliError::Http { status: status.as_u16(), body: text.trim().to_owned() });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub(super) async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.http.get(self.url(path))).await
    }

    /// `GET path?k=v&…` (the pairs are URL-encoded).
    pub(super) async fn get_query(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    /// `GET path` asking for JSON (for paths that also serve an event stream).
    pub(super) async fn get_json(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.http.get(self.url(path)).header("accept", "application/json")).await
    }

    pub(super) async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// Opens a task's server-sent event stream (no overall timeout: it lasts until the task ends).
    pub(super) async fn open_event_stream(&self, task_id: &str, after: u64) -> Result<reqwest::Response, CliError> {
        let resp = self
            .http
            .get(self.url(&format!("/v1/tasks/{task_id}/events?after={after}")))
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| self.connect_error(e))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return Err(CliError::Http { status, body: body.trim().to_owned() });
        }
        Ok(resp)
    }
}

/// Where answers go: raw JSON lines with `--json`, readable text otherwise.
#[derive(Debug, Clone, Copy)]
pub(super) struct Output {
    /// `--json`: print each answer (or event) as the server sent it.
    pub(super) json: bool,
}

impl Output {
    /// Prints `v` as JSON or its `readable` rendering.
    pub(super) fn print(self, v: &Value, readable: String) {
        if self.json {
            println!("{v}");
        } else {
            println!("{readable}");
        }
    }
}
