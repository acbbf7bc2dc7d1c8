//! Test harness: starts the real `alink-node` binary on port 0 with a temp database and drives
//! it over HTTP and SSE.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};

pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The registry used by most tests.
pub const REGISTRY: &str = "targets:\n  echo:\n    adapter: loopback\n    defaults: {greeting: hello, nested: {a: 1}}\n    capabilities: [demo.echo, demo.any, shared.cap]\n  other:\n    adapter: loopback\n    capabilities: [other.only, shared.cap]\n";

/// A running node.
pub struct Node {
    child: Option<Child>,
    pub base: String,
    /// The Aether gateway's address (`host:port`, what the SDK's `connect()` takes).
    pub aether: String,
    pub dir: PathBuf,
    pub http: reqwest::Client,
    stderr_path: PathBuf,
}

/// Options for starting a node.
#[derive(Clone)]
pub struct NodeOpts {
    pub registry: Option<String>,
    pub extra_args: Vec<String>,
    /// Go-compatibility mode (`ALINK_ALLOW_ANONYMOUS_REGISTER=1`): tokenless tests register
    /// launching agents as Go clients do. Tests of the safe default turn it off.
    pub anonymous_register: bool,
}

impl Default for NodeOpts {
    fn default() -> Self {
        NodeOpts { registry: Some(REGISTRY.to_owned()), extra_args: Vec::new(), anonymous_register: true }
    }
}

pub fn node_bin() -> &'static str {
    env!("CARGO_BIN_EXE_alink-node")
}

pub fn cli_bin() -> &'static str {
    env!("CARGO_BIN_EXE_alink-cli")
}

impl Node {
    /// Starts a node in a fresh temp dir.
    pub fn start() -> Result<Node> {
        Self::start_with(NodeOpts::default())
    }

    pub fn start_with(opts: NodeOpts) -> Result<Node> {
        let dir = tempfile::tempdir()?.keep();
        Self::start_in(&dir, opts)
    }

    /// Starts a node on the database and artifacts of `dir` (to test restarts).
    pub fn start_in(dir: &Path, opts: NodeOpts) -> Result<Node> {
        let registry = dir.join("registry.yaml");
        if let Some(text) = &opts.registry {
            std::fs::write(&registry, text)?;
        }
        let stderr_path = dir.join(format!(
            "node-{}.log",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos()
        ));
        let mut cmd = Command::new(node_bin());
        // Port 0 unless the test names one (a node restarted where its peers expect it).
        if !opts.extra_args.iter().any(|a| a == "--port" || a.starts_with("--port=")) {
            cmd.arg("--port").arg("0");
        }
        // The gateway on a free port too (its default, 50051, would collide between tests).
        if !opts.extra_args.iter().any(|a| a == "--aether-port" || a.starts_with("--aether-port=")) {
            cmd.arg("--aether-port").arg("0");
        }
        cmd.arg("--database")
            .arg(format!("sqlite://{}", dir.join("node.db").display()))
            .arg("--artifact-dir")
            .arg(dir.join("artifacts"))
            .args(&opts.extra_args)
            .env("RUST_LOG", "info")
            // The local admin token file goes beside the database, not into the user's home.
            .env("ALINK_STATE_DIR", dir.join("state"))
            .env_remove("ALINK_ALLOW_ANONYMOUS_REGISTER")
            .env_remove("ALINK_AETHER_PORT")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path)?)
            .current_dir(dir);
        if opts.registry.is_some() {
            cmd.arg("--registry").arg(&registry);
        }
        if opts.anonymous_register {
            cmd.arg("--allow-anonymous-register");
        }
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The HTTP address, then the gateway's (written in the same write, when served).
            let mut reader = BufReader::new(stdout);
            for _ in 0..2 {
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            format!("node did not print its address; stderr:\n{log}")
        })?;
        let aether = rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
        let base = line
            .trim()
            .strip_prefix("alink-node listening on ")
            .ok_or_else(|| {
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                format!("unexpected first line {line:?}; stderr:\n{log}")
            })?
            .to_owned();
        let aether = aether.trim().strip_prefix("alink-node aether gateway listening on ").unwrap_or("").to_owned();
        Ok(Node { child: Some(child), base, aether, dir: dir.to_path_buf(), http: reqwest::Client::new(), stderr_path })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `(status, body)`; body is JSON if it parses, else a string.
    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, self.url(path)).timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    /// Posts raw bytes with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<(u16, Value)> {
        let resp = self.http.post(self.url(path)).header("content-type", content_type).body(body).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// Creates a task on the `echo` target; returns its id.
    pub async fn create(&self, payload: Value) -> Result<String> {
        self.create_with(json!({ "target_agent_id": "echo", "intent": "demo.echo", "payload": payload })).await
    }

    pub async fn create_with(&self, body: Value) -> Result<String> {
        let (status, v) = self.post("/v1/tasks", body).await?;
        if status != 202 {
            return Err(format!("create returned {status}: {v}").into());
        }
        Ok(v["task"]["task_id"].as_str().ok_or("no task id")?.to_owned())
    }

    /// Reads the SSE stream until it closes (or `timeout`); returns `(id, data)` pairs.
    pub async fn sse(
        &self,
        task_id: &str,
        query: &str,
        last_event_id: Option<u64>,
        timeout: Duration,
    ) -> Result<Vec<(String, Value)>> {
        let mut req = self.http.get(self.url(&format!("/v1/tasks/{task_id}/events{query}")));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await?;
        if resp.status() != 200 {
            return Err(format!("events returned {}", resp.status()).into());
        }
        let mut stream = resp.bytes_stream().eventsource();
        let mut out = Vec::new();
        let collect = async {
            while let Some(ev) = stream.next().await {
                let ev = ev?;
                assert_eq!(ev.event, "task.event");
                out.push((ev.id.clone(), serde_json::from_str(&ev.data)?));
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        };
        tokio::time::timeout(timeout, collect).await.map_err(|_| "SSE stream did not close in time")??;
        Ok(out)
    }

    /// Events until the task ends (SSE closes after the terminal event).
    pub async fn events_until_done(&self, task_id: &str) -> Result<Vec<Value>> {
        Ok(self.sse(task_id, "", None, Duration::from_secs(20)).await?.into_iter().map(|(_, v)| v).collect())
    }

    pub async fn task(&self, task_id: &str) -> Result<Value> {
        let (status, v) = self.get(&format!("/v1/tasks/{task_id}")).await?;
        if status != 200 {
            return Err(format!("get task returned {status}: {v}").into());
        }
        Ok(v)
    }

    /// Polls until the task has `status`.
    pub async fn wait_status(&self, task_id: &str, status: &str) -> Result<Value> {
        for _ in 0..400 {
            let t = self.task(task_id).await?;
            if t["status"] == status {
                return Ok(t);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!("task {task_id} never reached {status}").into())
    }

    /// SIGTERM and wait; returns the exit code and how long the exit took.
    pub fn stop(&mut self) -> Result<(Option<i32>, Duration)> {
        let child = self.child.as_mut().ok_or("already stopped")?;
        let started = std::time::Instant::now();
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok((status.code(), started.elapsed()));
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err("node did not exit within 20 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (a crash).
    pub fn kill(&mut self) -> Result {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Kinds of a list of events.
pub fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["kind"].as_str().unwrap_or("").to_owned()).collect()
}

/// Asserts seqs are exactly 1..=n.
pub fn assert_contiguous(events: &[Value]) {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap_or(0)).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "seqs must be contiguous from 1");
}

/// A port that is free now and lies outside the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), for a server a test names up front (an agent's
/// endpoint, a node restarted on a fixed port). A port taken from a bind to port 0 and released
/// can be handed to the next bind to 0 — and every node the tests start binds its listeners to
/// port 0 — so two servers could meet on it; below the range no bind to 0 ever lands.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    const FIRST: u16 = 10_000;
    let span = u64::from(ephemeral_low.saturating_sub(FIRST).max(1));
    // Parallel test processes start at different places (pid, clock), and calls in one process
    // never repeat a candidate; a bind proves the port is free right now.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let seed =
        u64::from(std::process::id()) * 7_919 + u64::from(nanos) + CALLS.fetch_add(1, Ordering::Relaxed) * 104_729;
    for i in 0..span {
        let port = FIRST + u16::try_from((seed + i * 31) % span)?;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port below the ephemeral range".into())
}
