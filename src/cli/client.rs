//! The HTTP side of `alink-cli`: its errors (and the exit code of each), a small client bound to
//! `--server`, and where output goes (`--json` raw or readable on stdout, notes on stderr).

use std::fmt::Display;
use std::io::Write;
use std::time::Duration;

use serde_json::Value;

/// Errors of the CLI: printed on stderr; [`CliError::exit_code`] is the process's exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {server}: {}", connect_cause(.server, .source))]
    Connect { server: String, source: reqwest::Error },
    #[error("http {status}: {body}")]
    Http { status: u16, body: String },
    #[error("event stream: {0}")]
    Stream(String),
    #[error("state file {path}: {message}")]
    State { path: String, message: String },
    /// The task ended without completing (`call --wait`, `thread-continue --wait`, `task-wait`).
    #[error("task {task_id} ended {status}{detail}")]
    TaskDidNotComplete { task_id: String, status: String, detail: String },
    /// A waited-for task awaits input; `commands` are the `task-resume` lines that answer it.
    #[error("{}", awaiting_message(.task_id, .prompt, .commands))]
    AwaitingInput { task_id: String, prompt: Option<String>, commands: Vec<String> },
    /// `task-wait --until`: the task ended in another status first.
    #[error("task {task_id} ended {status} (not {wanted}){detail}")]
    StatusNotReached { task_id: String, wanted: String, status: String, detail: String },
    /// A follower could not get the task's stream back within `--reconnect-for`.
    #[error(
        "lost the node at {server} for {}s while following task {task_id} (last event #{last_seq}, status {status}); \
         its outcome is unknown: check later with `alink-cli task-get --task-id {task_id}`",
        .waited.as_secs()
    )]
    NodeLost { server: String, task_id: String, waited: Duration, last_seq: u64, status: String },
    /// Stdout was closed by its reader (`alink-cli targets | head -1`): stop quietly.
    #[error("stdout closed")]
    StdoutClosed,
    #[error("writing to stdout: {0}")]
    Stdout(std::io::Error),
}

impl CliError {
    /// The process exit code for this error (listed in `alink-cli --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::StdoutClosed => 0,
            CliError::AwaitingInput { .. } => 3,
            CliError::StatusNotReached { .. } => 4,
            CliError::NodeLost { .. } => 5,
            _ => 1,
        }
    }

    /// Whether a follower should try again: the node did not answer, or answered that it
    /// cannot serve right now (a 5xx while it starts or stops).
    pub(super) fn is_transient(&self) -> bool {
        match self {
            CliError::Connect { .. } | CliError::Stream(_) => true,
            CliError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// "task … is awaiting input (prompt); resume it with:" and the commands, one a line.
fn awaiting_message(task_id: &str, prompt: &Option<String>, commands: &[String]) -> String {
    let prompt = prompt.as_ref().map(|p| format!(" ({p})")).unwrap_or_default();
    let which = if commands.len() > 1 { " one of" } else { "" };
    format!("task {task_id} is awaiting input{prompt}; resume it with{which}:\n  {}", commands.join("\n  "))
}

/// Why a request did not reach the node, for people: a refused connection asks whether the node
/// runs there; anything else is the innermost cause (not reqwest's "error sending request").
fn connect_cause(server: &str, e: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = e;
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return format!("connection refused — is alink-node running at {server}?");
        }
        innermost = c;
        cause = c.source();
    }
    if e.is_timeout() { format!("timed out ({innermost})") } else { innermost.to_string() }
}

/// Where a task's event stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamFrom {
    /// `?after=<seq>` (the first connection).
    After(u64),
    /// `Last-Event-ID: <seq>` (a reconnection, as SSE clients resume).
    LastEventId(u64),
}

/// A small HTTP client bound to one server.
pub(super) struct Client {
    http: reqwest::Client,
    /// The `--server` base URL without a trailing slash, so paths can be appended as they are.
    server: String,
}

impl Client {
    /// A client of `server`, sending `token` (if any) as `Authorization: Bearer` on every request.
    pub(super) fn new(server: &str, token: Option<&str>) -> Result<Self, CliError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| CliError::Usage("--token: not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::Usage(format!("http client: {e}")))?;
        Ok(Client { http, server: server.trim_end_matches('/').to_owned() })
    }

    /// The `--server` base URL (no trailing slash).
    pub(super) fn server(&self) -> &str {
        &self.server
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
    pub(super) async fn open_event_stream(
        &self,
        task_id: &str,
        from: StreamFrom,
    ) -> Result<reqwest::Response, CliError> {
        let req = match from {
            StreamFrom::After(after) => self.http.get(self.url(&format!("/v1/tasks/{task_id}/events?after={after}"))),
            StreamFrom::LastEventId(seq) => {
                self.http.get(self.url(&format!("/v1/tasks/{task_id}/events"))).header("last-event-id", seq.to_string())
            }
        };
        let resp = req.header("accept", "text/event-stream").send().await.map_err(|e| self.connect_error(e))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return Err(CliError::Http { status, body: body.trim().to_owned() });
        }
        Ok(resp)
    }
}

/// Where answers go: raw JSON lines with `--json`, readable text otherwise; both on stdout.
#[derive(Debug, Clone, Copy)]
pub(super) struct Output {
    /// `--json`: print each answer (or event) as the server sent it.
    pub(super) json: bool,
}

impl Output {
    /// Prints `v` as JSON or its `readable` rendering.
    pub(super) fn print(self, v: &Value, readable: String) -> Result<(), CliError> {
        if self.json { line(v) } else { line(readable) }
    }
}

/// Writes one line on stdout. A reader that went away (`| head -1`) is [`CliError::StdoutClosed`],
/// so the command stops quietly instead of panicking as `println!` does.
pub(super) fn line(text: impl Display) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").and_then(|()| stdout.flush()).map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => CliError::StdoutClosed,
        _ => CliError::Stdout(e),
    })
}

/// A note for the person at the terminal, on stderr (`alink-cli: …`); never fails the command.
pub(super) fn note(text: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "alink-cli: {text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_by_cause() {
        let cases = [
            (CliError::Usage("x".into()), 1),
            (CliError::Http { status: 404, body: String::new() }, 1),
            (CliError::TaskDidNotComplete { task_id: "t".into(), status: "failed".into(), detail: String::new() }, 1),
            (CliError::AwaitingInput { task_id: "t".into(), prompt: None, commands: vec![] }, 3),
            (
                CliError::StatusNotReached {
                    task_id: "t".into(),
                    wanted: "running".into(),
                    status: "failed".into(),
                    detail: String::new(),
                },
                4,
            ),
            (
                CliError::NodeLost {
                    server: "s".into(),
                    task_id: "t".into(),
                    waited: Duration::from_secs(1),
                    last_seq: 3,
                    status: "running".into(),
                },
                5,
            ),
            (CliError::StdoutClosed, 0),
        ];
        for (e, code) in cases {
            assert_eq!(e.exit_code(), code, "{e}");
        }
    }

    #[test]
    fn transient_errors_are_retried_by_followers() {
        let cases = [
            (CliError::Http { status: 503, body: String::new() }, true),
            (CliError::Http { status: 404, body: String::new() }, false),
            (CliError::Stream("reset".into()), true),
            (CliError::Usage("x".into()), false),
        ];
        for (e, want) in cases {
            assert_eq!(e.is_transient(), want, "{e}");
        }
    }

    #[test]
    fn awaiting_input_reads_as_the_commands_to_run() {
        let one = CliError::AwaitingInput {
            task_id: "t1".into(),
            prompt: Some("approve?".into()),
            commands: vec!["alink-cli task-resume --task-id t1 --text '<answer>'".into()],
        };
        assert_eq!(
            one.to_string(),
            "task t1 is awaiting input (approve?); resume it with:\n  alink-cli task-resume --task-id t1 --text '<answer>'"
        );
        let two =
            CliError::AwaitingInput { task_id: "t1".into(), prompt: None, commands: vec!["a".into(), "b".into()] };
        assert_eq!(two.to_string(), "task t1 is awaiting input; resume it with one of:\n  a\n  b");
    }
}
