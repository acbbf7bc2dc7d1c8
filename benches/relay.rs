//! Relay benchmark: what relaying adds. Two release `alink-node` processes on loopback (file
//! databases, WAL + synchronous=FULL), the destination with a loopback `echo` target and
//! `--accept-from-any-node` (every node-protocol request is signed and verified), the origin with
//! the destination as a synced peer and no `echo` of its own. Sequentially, alternating so both
//! see the same machine state: a task sent to the origin (relayed: submit, signed stream, every
//! frame mirrored durably) and the same task sent to the destination directly, each timed from
//! `POST /v1/tasks` until its terminal SSE frame on the node it was posted to. Reports p50/p99 of
//! both and the p50 difference (`BENCH_RELAY_TASKS`, default 500, after 50 warm-up pairs).
//!
//! Run: `cargo bench --bench relay`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A node started for the benchmark; SIGTERM on drop.
struct BenchNode {
    child: Child,
    base: String,
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, registry: &str, extra: &[&str]) -> Result<BenchNode> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("registry.yaml"), registry)?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_alink-node"))
        .args(["--port", "0", "--aether-port", "0"])
        .arg("--database")
        .arg(format!("sqlite://{}", dir.join("bench.db").display()))
        .arg("--artifact-dir")
        .arg(dir.join("artifacts"))
        .arg("--registry")
        .arg(dir.join("registry.yaml"))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
    let base = line.trim().strip_prefix("alink-node listening on ").ok_or("no address")?.to_owned();
    Ok(BenchNode { child, base })
}

/// POST an echo task to `base` and read its SSE stream to the end; errors unless it completed.
async fn echo(http: &reqwest::Client, base: &str) -> Result {
    let body = json!({"target_agent_id": "echo", "intent": "bench", "payload": {"text": "ping"}});
    let created: Value = http.post(format!("{base}/v1/tasks")).json(&body).send().await?.json().await?;
    let id = created["task"]["task_id"].as_str().ok_or_else(|| format!("no task id: {created}"))?;
    let text = http.get(format!("{base}/v1/tasks/{id}/events")).send().await?.text().await?;
    let last = text.lines().filter_map(|l| l.strip_prefix("data: ")).next_back().unwrap_or("");
    if !last.contains("\"state\":\"completed\"") {
        return Err(format!("task {id} on {base} did not complete: {text}").into());
    }
    Ok(())
}

/// `BENCH_RELAY_TRACE=1`: one relayed task's events on both nodes, as offsets (ms) from the
/// moment the client posted it, so the critical path can be read off.
async fn trace(http: &reqwest::Client, origin: &str, destination: &str) -> Result {
    let posted = time::OffsetDateTime::now_utc();
    let body = json!({"target_agent_id": "echo", "intent": "bench", "payload": {"text": "ping"}});
    let created: Value = http.post(format!("{origin}/v1/tasks")).json(&body).send().await?.json().await?;
    let answered = time::OffsetDateTime::now_utc();
    let id = created["task"]["task_id"].as_str().ok_or("no task id")?.to_owned();
    let _ = http.get(format!("{origin}/v1/tasks/{id}/events")).send().await?.text().await?;
    let seen = time::OffsetDateTime::now_utc();
    let ms = |at: time::OffsetDateTime| (at - posted).as_seconds_f64() * 1e3;
    let offset = |v: &Value| {
        v["created_at"]
            .as_str()
            .and_then(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
            .map_or(f64::NAN, ms)
    };
    println!("trace: 202 at {:.2} ms, terminal frame read at {:.2} ms", ms(answered), ms(seen));
    let task: Value = http.get(format!("{origin}/v1/tasks/{id}")).send().await?.json().await?;
    let text = http.get(format!("{origin}/v1/tasks/{id}/events")).send().await?.text().await?;
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let e: Value = serde_json::from_str(line)?;
        println!("  origin {:>7.2} ms  {}", offset(&e), e["kind"].as_str().unwrap_or(""));
    }
    let remote =
        task["task"]["remote"]["binding"].as_str().or_else(|| task["remote"]["binding"].as_str()).unwrap_or("");
    if remote.is_empty() {
        // A direct task: nothing relayed.
        return Ok(());
    }
    let text = http.get(format!("{destination}/v1/tasks/{remote}/events")).send().await?.text().await?;
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let e: Value = serde_json::from_str(line)?;
        println!("  dest   {:>7.2} ms  {}", offset(&e), e["kind"].as_str().unwrap_or(""));
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len().max(1) as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() -> Result {
    let dir = tempfile::tempdir()?;
    let destination = start(
        &dir.path().join("destination"),
        "targets:\n  echo:\n    adapter: loopback\n    capabilities: [bench]\n",
        &["--accept-from-any-node"],
    )?;
    let origin =
        start(&dir.path().join("origin"), "targets:\n  mine:\n    adapter: loopback\n    capabilities: [mine]\n", &[])?;
    let http = reqwest::Client::new();
    let added = http
        .post(format!("{}/v1/peers", origin.base))
        .json(&json!({"peer_id": "destination", "base_url": destination.base}))
        .send()
        .await?;
    if added.status() != 201 {
        return Err(format!("peer-add answered {}", added.status()).into());
    }
    let synced = http.post(format!("{}/v1/peers/destination/sync", origin.base)).json(&json!({})).send().await?;
    if synced.status() != 200 {
        return Err(format!("peer sync answered {}", synced.status()).into());
    }

    let n = std::env::var("BENCH_RELAY_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(500usize);
    for _ in 0..50 {
        echo(&http, &origin.base).await?;
        echo(&http, &destination.base).await?;
    }
    let (mut relayed, mut direct) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        echo(&http, &origin.base).await?;
        relayed.push(t.elapsed());
        let t = Instant::now();
        echo(&http, &destination.base).await?;
        direct.push(t.elapsed());
    }
    relayed.sort();
    direct.sort();

    if std::env::var_os("BENCH_RELAY_TRACE").is_some() {
        for _ in 0..5 {
            trace(&http, &origin.base, &destination.base).await?;
        }
        println!("direct (the destination's own task, for comparison):");
        for _ in 0..3 {
            trace(&http, &destination.base, &destination.base).await?;
        }
    }

    println!("## relay benchmark");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| relayed origin → destination, create→complete at the origin, n={n} | p50 {:.2} ms, p99 {:.2} ms |",
        percentile(&relayed, 0.5),
        percentile(&relayed, 0.99)
    );
    println!(
        "| same task sent to the destination directly, n={n} | p50 {:.2} ms, p99 {:.2} ms |",
        percentile(&direct, 0.5),
        percentile(&direct, 0.99)
    );
    println!(
        "| added by relaying (p50 difference / p99 difference) | {:.2} ms / {:.2} ms |",
        percentile(&relayed, 0.5) - percentile(&direct, 0.5),
        percentile(&relayed, 0.99) - percentile(&direct, 0.99)
    );
    Ok(())
}
