//! Node benchmark: drives the real `alink-node` (release build, file database, WAL +
//! synchronous=FULL, every event durable before it is published) over HTTP with the loopback
//! runtime, and reports:
//!
//! * create→complete latency (POST /v1/tasks until the terminal SSE frame), sequential, p50/p99;
//! * sustained completed tasks/s with `BENCH_CONCURRENCY` clients (default 64) for
//!   `BENCH_SECONDS` (default 10), each creating a task and following its SSE stream to the end;
//! * the node's peak RSS (VmHWM).
//!
//! * ACP: warm create→complete latency against the test-double agent
//!   (`tests/agents/fake_acp_agent.py`), new session per task and reused session, p50/p99;
//! * ACP cold launch: the node's own share of a launch: `runtime.pending_launch` → `runtime.ready`
//!   minus the agent's own spawn→`initialize` time of that launch (reported on `runtime.ready` as
//!   `initialize_ms`); for reference the same agent is also spawned directly
//!   (`BENCH_COLD_LAUNCHES`, default 20).
//!
//! * HTTP agent (`acp_http`): warm create→complete latency against the echo agent of our acp-sdk
//!   server (`tests/agents/acp_http_server.py`, launched by the node as a managed target), and the
//!   same run posted directly to the server in stream mode; the difference is the node's own
//!   share (`BENCH_HTTP_TASKS`, default 200; needs `ALINK_ACP_HTTP_PYTHON` or
//!   `target/acp-http-venv`, skipped otherwise).
//!
//! * Listing: `GET /v1/tasks` with filters over `BENCH_LISTING_TASKS` (default 100,000) tasks
//!   seeded straight into a fresh node's database, p50/p99 per query (`BENCH_ONLY=listing` runs
//!   only this part).
//!
//! * Idempotency: task creation throughput (POST /v1/tasks answered, `BENCH_CONCURRENCY`
//!   clients) with a fresh `Idempotency-Key` per request against none, in alternating rounds of
//!   `BENCH_SECONDS` (`BENCH_ONLY=idempotency` runs only this part).
//!
//! Run: `cargo bench --bench node` (the load generator shares the machine's cores).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// POST a task and read its SSE stream until it closes (after the terminal event).
async fn one_task(http: &reqwest::Client, base: &str) -> Result<usize> {
    let created: Value = http
        .post(format!("{base}/v1/tasks"))
        .json(&json!({"target_agent_id": "echo", "intent": "bench", "payload": {"text": "ping"}}))
        .send()
        .await?
        .json()
        .await?;
    let id = created["task"]["task_id"].as_str().ok_or("no task id")?;
    let resp = http.get(format!("{base}/v1/tasks/{id}/events")).send().await?;
    let mut body = resp.bytes_stream();
    let mut text = Vec::new();
    while let Some(chunk) = body.next().await {
        text.extend_from_slice(&chunk?);
    }
    let s = String::from_utf8_lossy(&text);
    let frames = s.lines().filter(|l| l.starts_with("id: ")).count();
    if !s.contains("\"state\":\"completed\"") {
        return Err(format!("task {id} did not complete: {s}").into());
    }
    Ok(frames)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result {
    if std::env::var("BENCH_ONLY").as_deref() == Ok("listing") {
        return listing().await;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("idempotency") {
        return idempotency().await;
    }
    let agent = format!("{}/tests/agents/fake_acp_agent.py", env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir()?;
    let http_python = std::env::var("ALINK_ACP_HTTP_PYTHON").ok().filter(|p| !p.is_empty()).or_else(|| {
        let venv = format!("{}/target/acp-http-venv/bin/python", env!("CARGO_MANIFEST_DIR"));
        std::path::Path::new(&venv).exists().then_some(venv)
    });
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let http_target = http_python.as_deref().map_or_else(String::new, |py| {
        format!(
            "  http:\n    adapter: acp_http\n    endpoint: http://127.0.0.1:{http_port}\n    defaults: {{agent_name: echo}}\n    capabilities: [chat]\n    launch:\n      command: [{py}, {}/tests/agents/acp_http_server.py, --port, '{http_port}']\n",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    std::fs::write(
        dir.path().join("registry.yaml"),
        format!(
            "targets:\n  echo:\n    adapter: loopback\n    capabilities: [bench]\n  fake:\n    adapter: acp\n    launch:\n      command: [python3, {agent}]\n    capabilities: [chat]\n{http_target}"
        ),
    )?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_alink-node"))
        .args(["--port", "0", "--aether-port", "0", "--log-format", "json"])
        .arg("--database")
        .arg(format!("sqlite://{}", dir.path().join("bench.db").display()))
        .arg("--artifact-dir")
        .arg(dir.path().join("artifacts"))
        .arg("--registry")
        .arg(dir.path().join("registry.yaml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
    let base = line.trim().strip_prefix("alink-node listening on ").ok_or("no address")?.to_owned();
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;

    // Latency: sequential tasks after a warm-up.
    let samples = env_num("BENCH_LATENCY_TASKS", 500) as usize;
    for _ in 0..50 {
        one_task(&http, &base).await?;
    }
    let mut lat = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        one_task(&http, &base).await?;
        lat.push(t.elapsed());
    }
    lat.sort();

    // Throughput: C concurrent clients for S seconds.
    let concurrency = env_num("BENCH_CONCURRENCY", 64);
    let seconds = env_num("BENCH_SECONDS", 10);
    let done = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, base, done, events, errors) =
            (http.clone(), base.clone(), done.clone(), events.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match one_task(&http, &base).await {
                    Ok(n) => {
                        done.fetch_add(1, Ordering::Relaxed);
                        events.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let completed = done.load(Ordering::Relaxed);

    // ACP, warm: reused session (one conversation) and a new session per task.
    acp_task(&http, &base, json!({"text": "warm up"}), Some("bench")).await?;
    let acp_n = env_num("BENCH_ACP_TASKS", 200) as usize;
    let mut reused = Vec::with_capacity(acp_n);
    for _ in 0..acp_n {
        let t = Instant::now();
        acp_task(&http, &base, json!({"text": "ping"}), Some("bench")).await?;
        reused.push(t.elapsed());
    }
    reused.sort();
    let mut fresh = Vec::with_capacity(acp_n);
    for _ in 0..acp_n {
        let t = Instant::now();
        acp_task(&http, &base, json!({"text": "ping"}), None).await?;
        fresh.push(t.elapsed());
    }
    fresh.sort();

    // ACP, cold: stop the runtime, run a task, read launching → ready from its events.
    let cold_n = env_num("BENCH_COLD_LAUNCHES", 20) as usize;
    let mut spans = Vec::with_capacity(cold_n);
    let mut shares: Vec<f64> = Vec::with_capacity(cold_n);
    for _ in 0..cold_n {
        http.post(format!("{base}/v1/targets/fake/stop")).json(&json!({})).send().await?;
        let events = acp_task(&http, &base, json!({"text": "cold"}), None).await?;
        let at = |kind: &str| {
            events.iter().find(|e| e["kind"] == kind).and_then(|e| e["created_at"].as_str()).and_then(parse_ts)
        };
        let init =
            events.iter().find(|e| e["kind"] == "runtime.ready").and_then(|e| e["data"]["initialize_ms"].as_f64());
        // From the decision to launch (the spawn follows in the same handler) to ready.
        if let (Some(a), Some(b), Some(init)) = (at("runtime.pending_launch"), at("runtime.ready"), init) {
            spans.push(Duration::from_secs_f64((b - a).max(0.0)));
            shares.push((b - a) * 1e3 - init);
        }
    }
    spans.sort();
    let mut direct = Vec::with_capacity(cold_n);
    for _ in 0..cold_n {
        direct.push(direct_initialize(&agent)?);
    }
    direct.sort();
    // HTTP agent, warm: through the node, then the same run straight to the server.
    let http_n = env_num("BENCH_HTTP_TASKS", 200) as usize;
    let mut via_node = Vec::with_capacity(http_n);
    let mut direct_http = Vec::with_capacity(http_n);
    if http_python.is_some() {
        run_task(&http, &base, "http", json!({"text": "warm up"}), None).await?;
        for _ in 0..http_n {
            let t = Instant::now();
            run_task(&http, &base, "http", json!({"text": "ping"}), None).await?;
            via_node.push(t.elapsed());
        }
        let server = format!("http://127.0.0.1:{http_port}/runs");
        for _ in 0..http_n {
            let t = Instant::now();
            let body = json!({"agent_name": "echo", "mode": "stream", "input": [{"role": "user", "parts": [{"content": "ping"}]}]});
            // Stop at the terminal frame, as the node does (the server closes the stream later).
            let mut stream = http.post(&server).json(&body).send().await?.bytes_stream();
            let mut seen = Vec::new();
            while let Some(chunk) = stream.next().await {
                seen.extend_from_slice(&chunk?);
                if seen.windows(13).any(|w| w == b"run.completed") {
                    break;
                }
            }
            if !seen.windows(13).any(|w| w == b"run.completed") {
                return Err(format!("direct run did not complete: {}", String::from_utf8_lossy(&seen)).into());
            }
            direct_http.push(t.elapsed());
        }
        via_node.sort();
        direct_http.sort();
    }
    let rss = peak_rss_kib(pid);
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let _ = child.wait();

    println!("## loopback benchmark");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| create→complete latency, sequential, n={samples} | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms |",
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        percentile(&lat, 1.0).as_secs_f64() * 1e3
    );
    println!(
        "| sustained throughput, {concurrency} clients, {seconds} s | {:.0} completed tasks/s ({:.0} durable events/s streamed) |",
        completed as f64 / elapsed,
        events.load(Ordering::Relaxed) as f64 / elapsed
    );
    println!("| errors | {} |", errors.load(Ordering::Relaxed));
    println!("| node peak RSS (VmHWM) | {:.1} MiB |", rss as f64 / 1024.0);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| ACP warm create→complete, reused session, n={acp_n} | p50 {:.2} ms, p99 {:.2} ms |",
        ms(percentile(&reused, 0.5)),
        ms(percentile(&reused, 0.99))
    );
    println!(
        "| ACP warm create→complete, new session per task, n={acp_n} | p50 {:.2} ms, p99 {:.2} ms |",
        ms(percentile(&fresh, 0.5)),
        ms(percentile(&fresh, 0.99))
    );
    let (span, own) = (percentile(&spans, 0.5), percentile(&direct, 0.5));
    shares.sort_by(f64::total_cmp);
    let share_p = |p: f64| shares.get(((shares.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    println!(
        "| ACP cold launch, n={cold_n}: pending_launch→ready median {:.2} ms (agent alone, spawned directly: {:.2} ms) | node share (span − agent spawn→initialize of that launch): median {:.2} ms, max {:.2} ms |",
        ms(span),
        ms(own),
        share_p(0.5),
        share_p(1.0)
    );
    if !via_node.is_empty() {
        println!(
            "| HTTP agent (acp_http, acp-sdk echo) warm create→complete, n={http_n} | p50 {:.2} ms, p99 {:.2} ms |",
            ms(percentile(&via_node, 0.5)),
            ms(percentile(&via_node, 0.99))
        );
        println!(
            "| same run posted straight to the server (stream mode) | p50 {:.2} ms, p99 {:.2} ms |",
            ms(percentile(&direct_http, 0.5)),
            ms(percentile(&direct_http, 0.99))
        );
        println!(
            "| node's own share of a warm HTTP task (p50 difference) | {:.2} ms |",
            ms(percentile(&via_node, 0.5)) - ms(percentile(&direct_http, 0.5))
        );
    } else {
        println!("| HTTP agent | skipped: no Python with acp-sdk (set ALINK_ACP_HTTP_PYTHON) |");
    }
    listing().await
}

/// Starts a node on `dir`'s database; returns it and its base URL.
/// A node the bench started; killed if the bench leaves early (an error), so none outlives it.
struct NodeProc(Option<std::process::Child>);

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_node(dir: &std::path::Path) -> Result<(NodeProc, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_alink-node"))
        .args(["--port", "0", "--aether-port", "0"])
        .arg("--database")
        .arg(format!("sqlite://{}", dir.join("listing.db").display()))
        .arg("--artifact-dir")
        .arg(dir.join("artifacts"))
        .arg("--registry")
        .arg(dir.join("registry.yaml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take();
    let node = NodeProc(Some(child));
    let mut line = String::new();
    BufReader::new(stdout.ok_or("stdout")?).read_line(&mut line)?;
    let base = line.trim().strip_prefix("alink-node listening on ").ok_or("no address")?.to_owned();
    Ok((node, base))
}

fn stop_node(node: &mut NodeProc) -> Result {
    if let Some(mut child) = node.0.take() {
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        child.wait()?;
    }
    Ok(())
}

/// Creations answered in `seconds` by `clients` concurrent clients, each request with a fresh
/// `Idempotency-Key` when `keyed`.
async fn creation_round(http: &reqwest::Client, base: &str, clients: usize, seconds: u64, keyed: bool) -> Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    // Fresh keys across rounds: a key used before would be a replay (200).
    static NEXT_KEY: AtomicU64 = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (http, base, done) = (http.clone(), base.to_owned(), done.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let mut req = http
                    .post(format!("{base}/v1/tasks"))
                    .json(&json!({"target_agent_id": "echo", "intent": "bench", "payload": {"text": "ping"}}));
                if keyed {
                    let key = format!("bench-{}-{}", std::process::id(), NEXT_KEY.fetch_add(1, Ordering::Relaxed));
                    req = req.header("idempotency-key", key);
                }
                let resp = req.send().await?;
                if resp.status().as_u16() != 202 {
                    return Err::<(), Box<dyn std::error::Error + Send + Sync>>(
                        format!("create answered {}", resp.status()).into(),
                    );
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(done.load(Ordering::Relaxed))
}

/// Creation throughput with idempotency keys against without, alternating rounds.
async fn idempotency() -> Result {
    let clients = env_num("BENCH_CONCURRENCY", 32) as usize;
    let seconds = env_num("BENCH_SECONDS", 5);
    let rounds = env_num("BENCH_ROUNDS", 3);
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("registry.yaml"),
        "targets:\n  echo:\n    adapter: loopback\n    capabilities: [bench]\n",
    )?;
    let (mut child, base) = start_node(dir.path())?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    creation_round(&http, &base, clients, 2, false).await?; // warm-up
    let (mut plain, mut keyed) = (0u64, 0u64);
    for _ in 0..rounds {
        plain += creation_round(&http, &base, clients, seconds, false).await?;
        keyed += creation_round(&http, &base, clients, seconds, true).await?;
    }
    let total = (rounds * seconds) as f64;
    let (plain_rate, keyed_rate) = (plain as f64 / total, keyed as f64 / total);
    println!("idempotency: {clients} clients, {rounds} alternating rounds of {seconds} s each");
    println!("  creations/s without a key: {plain_rate:.0}");
    println!("  creations/s with a fresh Idempotency-Key: {keyed_rate:.0}");
    println!("  keyed / plain: {:.1} %", 100.0 * keyed_rate / plain_rate.max(1.0));
    stop_node(&mut child)?;
    Ok(())
}

/// `GET /v1/tasks` with filters over a large seeded table.
async fn listing() -> Result {
    let n = env_num("BENCH_LISTING_TASKS", 100_000);
    let samples = env_num("BENCH_LISTING_SAMPLES", 200) as usize;
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("registry.yaml"),
        "targets:\n  echo:\n    adapter: loopback\n    capabilities: [bench]\n",
    )?;
    let (mut child, base) = start_node(dir.path())?;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/v1/tasks"))
        .json(&json!({"target_agent_id": "echo", "intent": "bench", "payload": {}}))
        .send()
        .await?
        .json()
        .await?;
    let template = created["task"]["task_id"].as_str().ok_or("no task id")?.to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_node(&mut child)?;
    let url = format!("sqlite://{}", dir.path().join("listing.db").display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await?;
    // i: 1..=n; statuses cycle over the three terminal ones (so recovery has nothing to do),
    // 5 intents, 2 targets, 1000 conversations, 10,000 correlation ids, one event per task
    // (every 1000th mentions a needle); updated_at grows with i.
    let seed = format!(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) \
         INSERT INTO tasks (task_id, conversation_id, sender, intent, requested_agent_id, resolved_agent_id, \
         runtime_options_json, status, delivery_json, metadata_json, priority, last_seq, created_at, updated_at) \
         SELECT printf('01JAAAAAAAAA%014d', i), 'conv-' || (i % 1000), 'bench', 'intent-' || (i % 5), \
         CASE i % 2 WHEN 0 THEN 'echo' ELSE 'other' END, CASE i % 2 WHEN 0 THEN 'echo' ELSE 'other' END, '{{}}', \
         CASE i % 3 WHEN 0 THEN 'completed' WHEN 1 THEN 'failed' ELSE 'cancelled' END, \
         (SELECT delivery_json FROM tasks WHERE task_id = '{template}'), json_object('correlation_id', 'corr-' || (i % 10000)), \
         'normal', 1, printf('2026-01-01T%02d:%02d:%02d.%09dZ', (i / 3600) % 24, (i / 60) % 60, i % 60, i), \
         printf('2026-01-02T%02d:%02d:%02d.%09dZ', (i / 3600) % 24, (i / 60) % 60, i % 60, i) FROM s"
    );
    sqlx::query(sqlx::AssertSqlSafe(seed)).execute(&pool).await?;
    let events = format!(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) \
         INSERT INTO task_events (event_id, task_id, seq, kind, state, source, message, data_json, created_at) \
         SELECT 'ev-' || i, printf('01JAAAAAAAAA%014d', i), 1, 'task.created', 'created', 'core', \
         'Seeded ' || i || CASE WHEN i % 1000 = 0 THEN ' needle' ELSE '' END, '{{}}', '2026-01-01T00:00:00.000000000Z' FROM s"
    );
    sqlx::query(sqlx::AssertSqlSafe(events)).execute(&pool).await?;
    // The text index the writer keeps (as migration 0013 backfills it).
    sqlx::query(
        "INSERT INTO task_text (rowid, text) SELECT t.rowid, coalesce(e.message, '') || ' ' || e.data_json \
         FROM tasks t JOIN task_events e ON e.task_id = t.task_id AND e.seq = t.last_seq",
    )
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    pool.close().await;
    let (mut child, base) = start_node(dir.path())?;
    // A cursor deep into the default order (page 20 of 50).
    let mut cursor = String::new();
    for _ in 0..20 {
        let page: Value = http.get(format!("{base}/v1/tasks?limit=50&cursor={cursor}")).send().await?.json().await?;
        cursor = page["next_cursor"].as_str().unwrap_or_default().to_owned();
    }
    let queries = [
        "limit=50".to_owned(),
        "status=failed&limit=50".to_owned(),
        "status=failed,cancelled&target=echo&intent=intent-3&limit=50".to_owned(),
        "conversation_id=conv-7&limit=50".to_owned(),
        "correlation_id=corr-42".to_owned(),
        "updated_after=2026-01-02T10:00:00Z&updated_before=2026-01-02T12:00:00Z&limit=50".to_owned(),
        "stuck=true".to_owned(),
        "q=needle&limit=50".to_owned(),
        format!("status=completed&limit=50&cursor={cursor}"),
    ];
    println!();
    println!("| GET /v1/tasks over {n} tasks, n={samples} each | p50 | p99 |");
    println!("|---|---|---|");
    for q in &queries {
        let mut lat = Vec::with_capacity(samples);
        for _ in 0..samples {
            let t = Instant::now();
            let r = http.get(format!("{base}/v1/tasks?{q}")).send().await?;
            if !r.status().is_success() {
                return Err(format!("{q}: {}", r.status()).into());
            }
            let _ = r.bytes().await?;
            lat.push(t.elapsed());
        }
        lat.sort();
        let shown = if q.contains("cursor=") { "status=completed&limit=50&cursor=<page 21>" } else { q.as_str() };
        println!(
            "| `{shown}` | {:.2} ms | {:.2} ms |",
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3
        );
    }
    stop_node(&mut child)?;
    Ok(())
}

/// Runs an ACP task to the end and returns its events.
async fn acp_task(
    http: &reqwest::Client,
    base: &str,
    payload: Value,
    conversation: Option<&str>,
) -> Result<Vec<Value>> {
    run_task(http, base, "fake", payload, conversation).await
}

/// Runs a task on `target` to the end and returns its events.
async fn run_task(
    http: &reqwest::Client,
    base: &str,
    target: &str,
    payload: Value,
    conversation: Option<&str>,
) -> Result<Vec<Value>> {
    let mut body = json!({"target_agent_id": target, "intent": "chat", "payload": payload});
    if let Some(c) = conversation {
        body["conversation_id"] = json!(c);
    }
    let created: Value = http.post(format!("{base}/v1/tasks")).json(&body).send().await?.json().await?;
    let id = created["task"]["task_id"].as_str().ok_or("no task id")?;
    let text = http.get(format!("{base}/v1/tasks/{id}/events")).send().await?.text().await?;
    let events: Vec<Value> =
        text.lines().filter_map(|l| l.strip_prefix("data: ")).filter_map(|d| serde_json::from_str(d).ok()).collect();
    if events.last().map(|e| e["state"] != "completed").unwrap_or(true) {
        return Err(format!("task {id} on {target} did not complete: {text}").into());
    }
    Ok(events)
}

/// Seconds since the epoch of an RFC 3339 timestamp with nine fractional digits.
fn parse_ts(s: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}

/// The agent's own start-up: spawn it directly, send `initialize`, time the answer.
fn direct_initialize(agent: &str) -> Result<Duration> {
    use std::io::Write;
    let t = Instant::now();
    let mut child = Command::new("python3")
        .arg(agent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":1}}\n")?;
    stdin.flush()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
    let took = t.elapsed();
    drop(stdin);
    let _ = child.wait();
    Ok(took)
}
