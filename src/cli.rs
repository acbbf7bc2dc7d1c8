//! `alink-cli`: a thin HTTP client of the node. Command names and flags follow the Go CLI where
//! they overlap (contract §4); output is readable by default, raw JSON with `--json`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Map, Value, json};

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
    /// The task ended without completing (`call --wait`).
    #[error("task {task_id} ended {status}{detail}")]
    TaskDidNotComplete { task_id: String, status: String, detail: String },
}

/// Top-level arguments.
#[derive(Debug, Parser)]
#[command(name = "alink-cli", version, about = "Command-line client of an AethroLink node")]
pub struct Cli {
    /// Node base URL.
    #[arg(long, global = true, env = "ALINK_SERVER", default_value = "http://127.0.0.1:7777")]
    pub server: String,
    /// Print raw JSON responses instead of readable text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a task to a target (or route it by intent).
    Call(CallArgs),
    /// Show a task.
    TaskGet(TaskIdArg),
    /// Print a task's events (`--follow` streams until the task ends).
    TaskEvents(TaskEventsArgs),
    /// List tasks.
    TaskList(TaskListArgs),
    /// Answer a task that is awaiting input.
    TaskResume(TaskResumeArgs),
    /// Cancel a task.
    TaskCancel(TaskCancelArgs),
    /// List targets.
    Targets,
    /// Register an agent (a target other agents can call).
    Register(RegisterArgs),
    /// Register unless the stored agent id is still known; keeps the stored id.
    EnsureRegistered(RegisterArgs),
    /// Renew this agent's presence lease (`--every 30s` keeps renewing until interrupted).
    Heartbeat(HeartbeatArgs),
    /// Mark this agent offline.
    Unregister(StateArgs),
    /// List registered agents.
    Agents,
    /// A target's runtime health.
    TargetHealth(TargetArg),
    /// Start a target's runtime.
    TargetStart(TargetArg),
    /// Stop a target's runtime.
    TargetStop(TargetArg),
    /// Create a thread between two agents.
    ThreadCreate(ThreadCreateArgs),
    /// Inspect a thread (state, turns, continuity, who continues next).
    ThreadGet(ThreadIdArg),
    /// Send the next turn of a thread.
    ThreadContinue(ThreadContinueArgs),
    /// A thread's turns.
    ThreadTurns(ThreadIdArg),
    /// List threads.
    Threads(ThreadsArgs),
}

#[derive(Debug, Args)]
pub struct HeartbeatArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[arg(long, default_value_t = 300)]
    pub lease_ttl_seconds: i64,
    /// Keep renewing at this interval (Go duration, e.g. 30s) until interrupted.
    #[arg(long, value_parser = crate::duration::parse_duration)]
    pub every: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct TargetArg {
    #[arg(long = "target-agent-id", alias = "target-id")]
    pub target_agent_id: String,
    /// Runtime options as a JSON object (selects the subcontext).
    #[arg(long)]
    pub runtime_options_json: Option<String>,
}

#[derive(Debug, Args)]
pub struct ThreadCreateArgs {
    #[arg(long)]
    pub agent_a_id: String,
    #[arg(long)]
    pub agent_b_id: String,
    #[arg(long)]
    pub continuity_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct ThreadIdArg {
    #[arg(long)]
    pub thread_id: String,
}

#[derive(Debug, Args)]
pub struct ThreadContinueArgs {
    #[arg(long)]
    pub thread_id: String,
    #[arg(long)]
    pub sender: Option<String>,
    #[arg(long)]
    pub target_agent_id: Option<String>,
    #[arg(long)]
    pub intent: Option<String>,
    #[arg(long, conflicts_with = "payload_json")]
    pub text: Option<String>,
    #[arg(long)]
    pub payload_json: Option<String>,
    #[arg(long)]
    pub conversation_id: Option<String>,
    /// Keep handing the thread back and forth, up to --max-turns turns in all.
    #[arg(long)]
    pub auto_continue: bool,
    #[arg(long)]
    pub max_turns: Option<u32>,
    #[arg(long)]
    pub stop_on_awaiting_input: bool,
    #[arg(long)]
    pub stop_on_terminal_error: bool,
    #[arg(long)]
    pub stop_on_same_actor_repeat: bool,
    /// Follow the turn's events and exit non-zero unless it completes.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct ThreadsArgs {
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long)]
    pub status: Option<String>,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// File holding this agent's id (`{"agent_id": …}`).
    #[arg(long, default_value_os_t = default_state_file())]
    pub state_file: PathBuf,
    /// This agent's id (overrides the state file).
    #[arg(long)]
    pub agent_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Target agent id; omit to route by intent.
    #[arg(long)]
    pub target_agent_id: Option<String>,
    /// What is asked (must be one of the target's capabilities).
    #[arg(long)]
    pub intent: String,
    /// Payload `{"text": …}`.
    #[arg(long, conflicts_with = "payload_json")]
    pub text: Option<String>,
    /// Payload as a JSON object.
    #[arg(long)]
    pub payload_json: Option<String>,
    /// Runtime options as a JSON object.
    #[arg(long)]
    pub runtime_options_json: Option<String>,
    #[arg(long)]
    pub conversation_id: Option<String>,
    /// Fail the task if it has no result after this many milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Stream the task's events and exit non-zero unless it completes.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct TaskIdArg {
    #[arg(long)]
    pub task_id: String,
}

#[derive(Debug, Args)]
pub struct TaskEventsArgs {
    #[arg(long)]
    pub task_id: String,
    /// Keep streaming live events until the task ends.
    #[arg(long)]
    pub follow: bool,
    /// Only events after this seq.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
}

#[derive(Debug, Args)]
pub struct TaskListArgs {
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long)]
    pub conversation_id: Option<String>,
    #[arg(long)]
    pub sender: Option<String>,
    #[arg(long)]
    pub cursor: Option<String>,
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct TaskResumeArgs {
    #[arg(long)]
    pub task_id: String,
    /// Resume payload `{"text": …}`.
    #[arg(long, conflicts_with = "payload_json")]
    pub text: Option<String>,
    /// Resume payload as a JSON object.
    #[arg(long)]
    pub payload_json: Option<String>,
}

#[derive(Debug, Args)]
pub struct TaskCancelArgs {
    #[arg(long)]
    pub task_id: String,
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[arg(long)]
    pub display_name: String,
    #[arg(long, default_value = "local_managed")]
    pub transport_kind: String,
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub adapter: Option<String>,
    #[arg(long)]
    pub dialect: Option<String>,
    #[arg(long)]
    pub healthcheck: Option<String>,
    #[arg(long, default_value = "managed")]
    pub launch_mode: String,
    /// Launch command, split on whitespace.
    #[arg(long)]
    pub launch_command: Option<String>,
    /// `k=v,k2=v2`; values parse as JSON when they can, else stay strings.
    #[arg(long)]
    pub defaults: Option<String>,
    /// Comma-separated capabilities.
    #[arg(long)]
    pub capabilities: Option<String>,
    #[arg(long)]
    pub sticky_mode: Option<String>,
    #[arg(long, default_value_t = 300)]
    pub lease_ttl_seconds: i64,
    /// Take over a target of the same id defined in the node's registry file.
    #[arg(long)]
    pub replace: bool,
}

fn default_state_file() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".aethrolink").join("agent.json"),
        None => PathBuf::from(".aethrolink-agent.json"),
    }
}

/// A small HTTP client bound to one server.
struct Client {
    http: reqwest::Client,
    server: String,
}

impl Client {
    fn new(server: &str) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::Usage(format!("http client: {e}")))?;
        Ok(Client { http, server: server.trim_end_matches('/').to_owned() })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let resp = req
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|source| CliError::Connect { server: self.server.clone(), source })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|source| CliError::Connect { server: self.server.clone(), source })?;
        if !status.is_success() {
            return Err(CliError::Http { status: status.as_u16(), body: text.trim().to_owned() });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// Streams a task's events, calling `on_event` for each; returns the last event.
    async fn follow(
        &self,
        task_id: &str,
        after: u64,
        mut on_event: impl FnMut(&Value),
    ) -> Result<Option<Value>, CliError> {
        let resp = self
            .http
            .get(self.url(&format!("/v1/tasks/{task_id}/events?after={after}")))
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|source| CliError::Connect { server: self.server.clone(), source })?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return Err(CliError::Http { status, body: body.trim().to_owned() });
        }
        let mut stream = resp.bytes_stream().eventsource();
        let mut last = None;
        while let Some(item) = stream.next().await {
            let event = item.map_err(|e| CliError::Stream(e.to_string()))?;
            if event.event != "task.event" {
                continue;
            }
            let value: Value =
                serde_json::from_str(&event.data).map_err(|e| CliError::Stream(format!("bad event data: {e}")))?;
            on_event(&value);
            last = Some(value);
        }
        Ok(last)
    }
}

fn parse_object(flag: &str, text: &str) -> Result<Map<String, Value>, CliError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CliError::Usage(format!("{flag} must be a JSON object"))),
        Err(e) => Err(CliError::Usage(format!("{flag} is not valid JSON: {e}"))),
    }
}

/// `k=v,k2=v2` → object; values that parse as JSON are kept typed (`n=3` → 3).
pub fn parse_defaults(text: &str) -> Result<Map<String, Value>, CliError> {
    let mut out = Map::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--defaults entry '{pair}' is not key=value")))?;
        let value = serde_json::from_str(v.trim()).unwrap_or_else(|_| Value::String(v.trim().to_owned()));
        out.insert(k.trim().to_owned(), value);
    }
    Ok(out)
}

fn read_agent_id(state: &StateArgs) -> Option<String> {
    if let Some(id) = state.agent_id.clone().filter(|s| !s.is_empty()) {
        return Some(id);
    }
    let text = std::fs::read_to_string(&state.state_file).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("agent_id").and_then(Value::as_str).map(str::to_owned)
}

fn write_agent_id(path: &std::path::Path, id: &str) -> Result<(), CliError> {
    let err = |message: String| CliError::State { path: path.display().to_string(), message };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
    }
    std::fs::write(path, format!("{}\n", json!({ "agent_id": id }))).map_err(|e| err(e.to_string()))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// One readable line per event.
pub fn format_event(e: &Value) -> String {
    let seq = e.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let mut line = format!("#{seq:<3} {:<24} {:<15} {}", s(e, "kind"), s(e, "state"), s(e, "message"));
    if let Some(data) = e.get("data").filter(|d| d.as_object().is_some_and(|m| !m.is_empty())) {
        line.push_str(&format!("  {data}"));
    }
    line.trim_end().to_owned()
}

fn format_task(t: &Value) -> String {
    let mut out = format!(
        "task {}\n  status:       {}\n  intent:       {}\n  target:       {}\n  sender:       {}\n  conversation: {}\n  created_at:   {}\n  updated_at:   {}",
        s(t, "task_id"),
        s(t, "status"),
        s(t, "intent"),
        s(t, "resolved_agent_id"),
        s(t, "sender"),
        s(t, "conversation_id"),
        s(t, "created_at"),
        s(t, "updated_at"),
    );
    if let Some(err) = t.get("last_error") {
        out.push_str(&format!("\n  last_error:   {} {}", s(err, "reason"), s(err, "detail")));
    }
    if let Some(id) = t.get("result_artifact_id").and_then(Value::as_str) {
        out.push_str(&format!("\n  result:       /v1/artifacts/{id}"));
    }
    out
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let client = Client::new(&cli.server)?;
    let raw = cli.json;
    let print = |v: &Value, readable: String| {
        if raw {
            println!("{v}");
        } else {
            println!("{readable}");
        }
    };
    match cli.command {
        Command::Call(a) => {
            let payload = match (&a.text, &a.payload_json) {
                (Some(t), _) => json!({ "text": t }),
                (None, Some(p)) => Value::Object(parse_object("--payload-json", p)?),
                (None, None) => json!({}),
            };
            let mut body = json!({
                "sender": read_agent_id(&a.state).unwrap_or_else(|| "local".into()),
                "intent": a.intent,
                "payload": payload,
            });
            if let Some(t) = &a.target_agent_id {
                body["target_agent_id"] = json!(t);
            }
            if let Some(c) = &a.conversation_id {
                body["conversation_id"] = json!(c);
            }
            if let Some(o) = &a.runtime_options_json {
                body["runtime_options"] = Value::Object(parse_object("--runtime-options-json", o)?);
            }
            if let Some(ms) = a.timeout_ms {
                body["delivery"] = json!({ "timeout_ms": ms });
            }
            let created = client.post("/v1/tasks", &body).await?;
            let task = created.get("task").cloned().unwrap_or(Value::Null);
            let task_id = s(&task, "task_id").to_owned();
            print(
                &created,
                format!(
                    "task {task_id} accepted (target {}, status {})",
                    s(&task, "resolved_agent_id"),
                    s(&task, "status")
                ),
            );
            if !a.wait {
                return Ok(());
            }
            let last = client.follow(&task_id, 0, |e| print(e, format_event(e))).await?;
            let status = last.as_ref().map(|e| s(e, "state").to_owned()).unwrap_or_default();
            if status == "completed" {
                if !raw && let Some(result) = last.as_ref().and_then(|e| e.pointer("/data/result")) {
                    println!("result: {result}");
                }
                Ok(())
            } else {
                let detail =
                    last.as_ref().map(|e| format!(": {}", s(e, "message"))).filter(|d| d != ": ").unwrap_or_default();
                Err(CliError::TaskDidNotComplete {
                    task_id,
                    status: if status.is_empty() { "without a terminal event".into() } else { status },
                    detail,
                })
            }
        }
        Command::TaskGet(a) => {
            let t = client.get(&format!("/v1/tasks/{}", a.task_id)).await?;
            print(&t, format_task(&t));
            Ok(())
        }
        Command::TaskEvents(a) => {
            if a.follow {
                client.follow(&a.task_id, a.after, |e| print(e, format_event(e))).await?;
            } else {
                let req = client
                    .http
                    .get(client.url(&format!("/v1/tasks/{}/events?after={}", a.task_id, a.after)))
                    .header("accept", "application/json");
                let v = client.send(req).await?;
                for e in v.get("events").and_then(Value::as_array).into_iter().flatten() {
                    print(e, format_event(e));
                }
            }
            Ok(())
        }
        Command::TaskList(a) => {
            let mut query = Vec::new();
            for (k, v) in [
                ("status", a.status),
                ("target", a.target),
                ("conversation_id", a.conversation_id),
                ("sender", a.sender),
                ("cursor", a.cursor),
                ("limit", a.limit.map(|l| l.to_string())),
            ] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            let v = client.send(client.http.get(client.url("/v1/tasks")).query(&query)).await?;
            if raw {
                println!("{v}");
            } else {
                for t in v.get("tasks").and_then(Value::as_array).into_iter().flatten() {
                    println!(
                        "{}  {:<15} {:<20} {}",
                        s(t, "task_id"),
                        s(t, "status"),
                        s(t, "resolved_agent_id"),
                        s(t, "intent")
                    );
                }
                if let Some(c) = v.get("next_cursor").and_then(Value::as_str) {
                    println!("(more: --cursor {c})");
                }
            }
            Ok(())
        }
        Command::TaskResume(a) => {
            let payload = match (&a.text, &a.payload_json) {
                (Some(t), _) => json!({ "text": t }),
                (None, Some(p)) => Value::Object(parse_object("--payload-json", p)?),
                (None, None) => json!({}),
            };
            let v = client.post(&format!("/v1/tasks/{}/resume", a.task_id), &json!({ "payload": payload })).await?;
            print(&v, format!("task {} resume accepted (status {})", a.task_id, s(&v, "status")));
            Ok(())
        }
        Command::TaskCancel(a) => {
            let body = a.reason.as_ref().map_or_else(|| json!({}), |r| json!({ "reason": r }));
            let v = client.post(&format!("/v1/tasks/{}/cancel", a.task_id), &body).await?;
            print(&v, format!("task {} cancel requested (status {})", a.task_id, s(&v, "status")));
            Ok(())
        }
        Command::Targets => {
            let v = client.get("/v1/targets").await?;
            if raw {
                println!("{v}");
            } else {
                for t in v.get("targets").and_then(Value::as_array).into_iter().flatten() {
                    let caps: Vec<&str> = t
                        .get("capabilities")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!(
                        "{:<24} {:<10} {:<10} {}",
                        s(t, "target_id"),
                        s(t, "adapter"),
                        s(t, "source"),
                        caps.join(",")
                    );
                }
            }
            Ok(())
        }
        Command::Register(a) => register(&client, &a, None, &print).await,
        Command::EnsureRegistered(a) => {
            // Keep the stored id: re-register under it if the node lost it.
            let stored = read_agent_id(&a.state);
            if let Some(id) = &stored
                && let Ok(v) = client.get(&format!("/v1/agents/{id}")).await
            {
                print(&v, format!("agent {id} is registered ({})", s(&v, "status")));
                return Ok(());
            }
            register(&client, &a, stored, &print).await
        }
        Command::Heartbeat(a) => {
            let id = read_agent_id(&a.state)
                .ok_or_else(|| CliError::Usage("no agent id: pass --agent-id or register first".into()))?;
            loop {
                let v = client
                    .post(&format!("/v1/agents/{id}/heartbeat"), &json!({ "lease_ttl_seconds": a.lease_ttl_seconds }))
                    .await?;
                print(
                    &v,
                    format!(
                        "agent {id} lease until {}",
                        v.pointer("/agent/lease_expires_at").and_then(Value::as_str).unwrap_or("")
                    ),
                );
                match a.every {
                    Some(every) => tokio::time::sleep(every).await,
                    None => return Ok(()),
                }
            }
        }
        Command::Unregister(st) => {
            let id = read_agent_id(&st)
                .ok_or_else(|| CliError::Usage("no agent id: pass --agent-id or register first".into()))?;
            let v = client.post(&format!("/v1/agents/{id}/unregister"), &json!({})).await?;
            print(&v, format!("agent {id} is offline"));
            Ok(())
        }
        Command::TargetHealth(t) => {
            let v = client.get(&format!("/v1/targets/{}/health", t.target_agent_id)).await?;
            print(
                &v,
                format!(
                    "{} {} (healthy: {}, pid: {})",
                    s(&v, "target_id"),
                    s(&v, "state"),
                    v["healthy"],
                    v.get("process_id").map(Value::to_string).unwrap_or_else(|| "-".into())
                ),
            );
            Ok(())
        }
        Command::TargetStart(t) => {
            let body = target_body(&t)?;
            let v = client.post(&format!("/v1/targets/{}/start", t.target_agent_id), &body).await?;
            print(
                &v,
                format!(
                    "{} started (pid {})",
                    t.target_agent_id,
                    v.get("process_id").map(Value::to_string).unwrap_or_else(|| "-".into())
                ),
            );
            Ok(())
        }
        Command::TargetStop(t) => {
            let body = target_body(&t)?;
            let v = client.post(&format!("/v1/targets/{}/stop", t.target_agent_id), &body).await?;
            print(&v, format!("{} stopped", t.target_agent_id));
            Ok(())
        }
        Command::ThreadCreate(a) => {
            let mut body = json!({ "agent_a_id": a.agent_a_id, "agent_b_id": a.agent_b_id });
            if let Some(k) = &a.continuity_key {
                body["continuity_key"] = json!(k);
            }
            let v = client.post("/v1/threads", &body).await?;
            print(
                &v,
                format!(
                    "thread {} created ({} ↔ {})",
                    v.pointer("/thread/thread_id").and_then(Value::as_str).unwrap_or(""),
                    a.agent_a_id,
                    a.agent_b_id
                ),
            );
            Ok(())
        }
        Command::ThreadGet(a) => {
            let v = client.get(&format!("/v1/threads/{}/inspect", a.thread_id)).await?;
            print(&v, format_inspection(&v));
            Ok(())
        }
        Command::ThreadTurns(a) => {
            let v = client.get(&format!("/v1/threads/{}/turns", a.thread_id)).await?;
            if raw {
                println!("{v}");
            } else {
                for t in v.get("turns").and_then(Value::as_array).into_iter().flatten() {
                    println!(
                        "#{:<3} {} → {}  {:<15} task {}",
                        t["turn_index"],
                        s(t, "sender_agent_id"),
                        s(t, "target_agent_id"),
                        s(t, "status"),
                        s(t, "task_id")
                    );
                }
            }
            Ok(())
        }
        Command::Threads(a) => {
            let mut query = Vec::new();
            for (k, v) in [("agent", a.agent), ("status", a.status)] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            let v = client.send(client.http.get(client.url("/v1/threads")).query(&query)).await?;
            if raw {
                println!("{v}");
            } else {
                for t in v.get("threads").and_then(Value::as_array).into_iter().flatten() {
                    println!(
                        "{}  {} ↔ {}  {:<12} last task {}",
                        s(t, "thread_id"),
                        s(t, "agent_a_id"),
                        s(t, "agent_b_id"),
                        s(t, "status"),
                        s(t, "last_task_id")
                    );
                }
            }
            Ok(())
        }
        Command::ThreadContinue(a) => {
            let mut body = json!({});
            for (k, v) in [
                ("sender", &a.sender),
                ("target_agent_id", &a.target_agent_id),
                ("intent", &a.intent),
                ("conversation_id", &a.conversation_id),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            match (&a.text, &a.payload_json) {
                (Some(t), _) => body["payload"] = json!({ "text": t }),
                (None, Some(p)) => body["payload"] = Value::Object(parse_object("--payload-json", p)?),
                (None, None) => {}
            }
            if a.auto_continue {
                body["auto_continue"] = json!(true);
            }
            if let Some(m) = a.max_turns {
                body["max_turns"] = json!(m);
            }
            for (k, on) in [
                ("stop_on_awaiting_input", a.stop_on_awaiting_input),
                ("stop_on_terminal_error", a.stop_on_terminal_error),
                ("stop_on_same_actor_repeat", a.stop_on_same_actor_repeat),
            ] {
                if on {
                    body[k] = json!(true);
                }
            }
            let v = client.post(&format!("/v1/threads/{}/continue", a.thread_id), &body).await?;
            let task = v.get("task").cloned().unwrap_or(Value::Null);
            let task_id = s(&task, "task_id").to_owned();
            print(
                &v,
                format!(
                    "turn task {task_id}: {} → {} (status {})",
                    s(&task, "sender"),
                    s(&task, "resolved_agent_id"),
                    s(&task, "status")
                ),
            );
            if !a.wait {
                return Ok(());
            }
            let last = client.follow(&task_id, 0, |e| print(e, format_event(e))).await?;
            match last.as_ref().map(|e| s(e, "state").to_owned()) {
                Some(st) if st == "completed" => {
                    if !raw && let Some(result) = last.as_ref().and_then(|e| e.pointer("/data/result")) {
                        println!("result: {result}");
                    }
                    Ok(())
                }
                other => Err(CliError::TaskDidNotComplete {
                    task_id,
                    status: other.unwrap_or_else(|| "without a terminal event".into()),
                    detail: String::new(),
                }),
            }
        }
        Command::Agents => {
            let v = client.get("/v1/agents").await?;
            if raw {
                println!("{v}");
            } else {
                for a in v.get("agents").and_then(Value::as_array).into_iter().flatten() {
                    println!(
                        "{:<28} {:<20} {:<8} {:<10} lease until {}",
                        s(a, "agent_id"),
                        s(a, "display_name"),
                        s(a, "status"),
                        s(a, "adapter"),
                        s(a, "lease_expires_at")
                    );
                }
            }
            Ok(())
        }
    }
}

fn target_body(t: &TargetArg) -> Result<Value, CliError> {
    Ok(match &t.runtime_options_json {
        Some(o) => json!({ "runtime_options": Value::Object(parse_object("--runtime-options-json", o)?) }),
        None => json!({}),
    })
}

/// The inspection view, readable.
pub fn format_inspection(v: &Value) -> String {
    let t = &v["thread"];
    let mut out = format!(
        "thread {}  {} ↔ {}  status {}\n  next: {} → {} (reuses remote session: {})",
        s(t, "thread_id"),
        s(t, "agent_a_id"),
        s(t, "agent_b_id"),
        s(t, "status"),
        v.pointer("/next_continue/sender_agent_id").and_then(Value::as_str).unwrap_or(""),
        v.pointer("/next_continue/target_agent_id").and_then(Value::as_str).unwrap_or(""),
        v.pointer("/next_continue/will_reuse_remote_session").and_then(Value::as_bool).unwrap_or(false),
    );
    if let Some(r) = v.get("interruption_reason").and_then(Value::as_str) {
        out.push_str(&format!("\n  interruption: {r}"));
    }
    if let Some(h) = t.get("handoff") {
        out.push_str(&format!(
            "\n  auto-handoff: {} of {} turns{}",
            h["turns_done"],
            h["max_turns"],
            h.get("stopped_reason").and_then(Value::as_str).map(|r| format!(", stopped: {r}")).unwrap_or_default()
        ));
    }
    for turn in v.get("turns").and_then(Value::as_array).into_iter().flatten() {
        out.push_str(&format!(
            "\n  #{:<3} {} → {}  {}",
            turn["turn_index"],
            s(turn, "sender_agent_id"),
            s(turn, "target_agent_id"),
            s(turn, "status")
        ));
    }
    for c in v.get("continuity").and_then(Value::as_array).into_iter().flatten() {
        out.push_str(&format!(
            "\n  {}: last session {}",
            s(c, "agent_id"),
            c.get("last_remote_session_id").and_then(Value::as_str).unwrap_or("-")
        ));
    }
    out
}

async fn register(
    client: &Client,
    a: &RegisterArgs,
    keep_id: Option<String>,
    print: &impl Fn(&Value, String),
) -> Result<(), CliError> {
    let mut body = json!({
        "display_name": a.display_name,
        "transport_kind": a.transport_kind,
        "launch": { "mode": a.launch_mode },
        "lease_ttl_seconds": a.lease_ttl_seconds,
    });
    if let Some(id) = a.state.agent_id.clone().or(keep_id) {
        body["agent_id"] = json!(id);
    }
    for (k, v) in [
        ("endpoint", &a.endpoint),
        ("adapter", &a.adapter),
        ("dialect", &a.dialect),
        ("healthcheck", &a.healthcheck),
        ("sticky_mode", &a.sticky_mode),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    if let Some(cmd) = &a.launch_command {
        body["launch"]["command"] = json!(cmd.split_whitespace().collect::<Vec<_>>());
    }
    if let Some(d) = &a.defaults {
        body["defaults"] = Value::Object(parse_defaults(d)?);
    }
    if let Some(c) = &a.capabilities {
        body["capabilities"] = json!(c.split(',').map(str::trim).filter(|c| !c.is_empty()).collect::<Vec<_>>());
    }
    if a.replace {
        body["replace"] = json!(true);
    }
    let v = client.post("/v1/agents/register", &body).await?;
    let agent_id = v.pointer("/agent/agent_id").and_then(Value::as_str).unwrap_or("").to_owned();
    write_agent_id(&a.state.state_file, &agent_id)?;
    print(&v, format!("agent {agent_id} registered (state file {})", a.state.state_file.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_values_parse_as_json_when_they_can() {
        let d = parse_defaults("executor=coder, n=3, flag=true,obj={\"a\":1}").unwrap_or_default();
        assert_eq!(Value::Object(d), json!({"executor": "coder", "n": 3, "flag": true, "obj": {"a": 1}}));
        assert!(parse_defaults("novalue").is_err());
    }

    #[test]
    fn events_format_on_one_line() {
        let line =
            format_event(&json!({"seq": 3, "kind": "runtime.ready", "state": "ready", "message": "Runtime ready"}));
        assert!(line.starts_with("#3"));
        assert!(line.contains("runtime.ready") && line.contains("Runtime ready"));
    }
}
