//! Loopback benchmark: drives the real `alink-node` (release build, file database, WAL +
//! synchronous=FULL, every event durable before it is published) over HTTP with the loopback
//! runtime, and reports:
//!
//! * create→complete latency (POST /v1/tasks until the terminal SSE frame), sequential, p50/p99;
//! * sustained completed tasks/s with `BENCH_CONCURRENCY` clients (default 64) for
//!   `BENCH_SECONDS` (default 10), each creating a task and following its SSE stream to the end;
//! * the node's peak RSS (VmHWM).
//!
//! Run: `cargo bench --bench loopback` (the load generator shares the machine's cores).

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
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("registry.yaml"),
        "targets:\n  echo:\n    adapter: loopback\n    capabilities: [bench]\n",
    )?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_alink-node"))
        .args(["--port", "0", "--log-format", "json"])
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
    Ok(())
}
