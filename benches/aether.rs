//! Aether gateway benchmark: the release `alink-node` (file database, WAL + synchronous=FULL)
//! driven over real gRPC by a Rust client built from the same schema as the node
//! (`proto/aether_v1.fds`, the pinned SDK's), so the node is measured, not a Python client:
//!
//! * **messages, connected** — agents in pairs, each sender streaming `SendMessage` frames to its
//!   receiver's topic; messages/s from the first send until every receiver has all of its
//!   messages (1 pair, then 16 pairs at once);
//! * **messages, offline** — one sender streaming to an identity that is not connected; durable
//!   messages/s from the first send until all of them are rows in the queue table (read from the
//!   database file beside the node), then the replay rate when that identity connects (ack →
//!   last message);
//! * **KV get** — sequential round trips (`KVOperation` GET with a request id → `KVResponse`),
//!   p50/p99;
//! * **connect-to-ack** — a new HTTP/2 connection and `Connect` stream per identity until its
//!   `ConnectionAck`, p50/p99;
//! * **RSS per idle connection** — 1,000 agents connected (one HTTP/2 connection each), the node's
//!   `VmRSS` before and after, divided by 1,000;
//! * **tasks** — POOL tasks (`CreateTaskRequest` with a request id) from 4 creators to the
//!   implementation two connected workers serve; each worker completes what it is assigned
//!   (`TaskOperation` COMPLETE with a request id, as the SDK's `complete_task`).
//!   Durable tasks/s from the first create until every `TaskAssignment` arrived, how evenly the
//!   two were served, then create → `TaskAssignment` latency p50/p99 one task at a time;
//! * for reference, the KV get round trip through the Python SDK (`AsyncAgentClient.kv_get`) when
//!   its venv is present (`ALINK_AETHER_SDK_PYTHON` or `target/aether-sdk-venv`).
//!
//! Run: `cargo bench --bench aether`. Sizes: `BENCH_AETHER_MESSAGES` (per pair, default 50,000),
//! `BENCH_AETHER_OFFLINE` (default 10,000, the per-identity queue cap), `BENCH_AETHER_KV` (default 5,000),
//! `BENCH_AETHER_CONNECTS` (default 500), `BENCH_AETHER_IDLE` (default 1,000), `BENCH_AETHER_TASKS`
//! (default 10,000; latency: a tenth of it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aethrolink::gateway::proto::downstream_message::Payload as Down;
use aethrolink::gateway::proto::init_connection::ClientType;
use aethrolink::gateway::proto::kv_operation::{OpType, Scope};
use aethrolink::gateway::proto::upstream_message::Payload as Up;
use aethrolink::gateway::proto::{
    AgentIdentity, DownstreamMessage, InitConnection, KvOperation, MessageType, SendMessage, UpstreamMessage,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const CONNECT: &str = "/aether.v1.AetherGateway/Connect";
const WORKSPACE: &str = "bench";
const IMPLEMENTATION: &str = "bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The release node for the benchmark; SIGTERM on drop.
struct BenchNode {
    child: Child,
    /// `host:port` of the gateway.
    gateway: String,
    /// The node's database file (the offline section counts its queue rows).
    database: PathBuf,
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl BenchNode {
    fn start(dir: &Path) -> Result<BenchNode> {
        let database = dir.join("bench.db");
        let mut child = Command::new(env!("CARGO_BIN_EXE_alink-node"))
            .args(["--port", "0", "--aether-port", "0"])
            .arg("--database")
            .arg(format!("sqlite://{}", database.display()))
            .arg("--artifact-dir")
            .arg(dir.join("artifacts"))
            .env("RUST_LOG", std::env::var("BENCH_AETHER_LOG").unwrap_or_else(|_| "warn".into()))
            .env("ALINK_STATE_DIR", dir.join("state"))
            .env_remove("ALINK_AETHER_PORT")
            .stdout(Stdio::piped())
            // The node's log goes to this file only when asked for (`BENCH_AETHER_LOG=info`).
            .stderr(match std::env::var_os("BENCH_AETHER_LOG") {
                Some(_) => Stdio::from(std::fs::File::create(dir.join("node.log"))?),
                None => Stdio::null(),
            })
            .spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("stdout")?);
        let mut gateway = None;
        for _ in 0..2 {
            let mut line = String::new();
            stdout.read_line(&mut line)?;
            if let Some(addr) = line.trim().strip_prefix("alink-node aether gateway listening on ") {
                gateway = Some(addr.to_owned());
            }
        }
        let gateway = gateway.ok_or("the node printed no gateway address")?;
        Ok(BenchNode { child, gateway, database })
    }

    /// The node's resident set (`VmRSS`) in KiB.
    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).ok_or("VmRSS")?.parse()?)
    }
}

/// One `Connect` stream of an agent.
struct Session {
    /// Frames to the node (the request stream's feed).
    tx: mpsc::Sender<UpstreamMessage>,
    /// Frames from the node.
    rx: tonic::Streaming<DownstreamMessage>,
    /// The HTTP/2 connection: dropping the last handle closes it, and the stream with it.
    _channel: Channel,
}

fn init_as(implementation: &str, specifier: &str) -> UpstreamMessage {
    UpstreamMessage {
        payload: Some(Up::Init(InitConnection {
            client_type: Some(ClientType::Agent(AgentIdentity {
                workspace: WORKSPACE.into(),
                implementation: implementation.into(),
                specifier: specifier.into(),
            })),
            client_sdk: "rust-bench".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

async fn channel(gateway: &str) -> Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{gateway}"))?.connect().await?)
}

/// Opens a `Connect` stream for agent `specifier` on `channel` and reads up to its ack.
async fn open(channel: Channel, specifier: &str) -> Result<Session> {
    open_as(channel, IMPLEMENTATION, specifier).await
}

/// [`open`] for an agent of `implementation`.
async fn open_as(channel: Channel, implementation: &str, specifier: &str) -> Result<Session> {
    let (tx, rx) = mpsc::channel(4096);
    tx.send(init_as(implementation, specifier)).await?;
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await?;
    let response = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            tonic::codegen::http::uri::PathAndQuery::from_static(CONNECT),
            tonic_prost::ProstCodec::<UpstreamMessage, DownstreamMessage>::default(),
        )
        .await?;
    let mut rx = response.into_inner();
    loop {
        match rx.message().await? {
            Some(DownstreamMessage { payload: Some(Down::ConnectionAck(_)), .. }) => {
                return Ok(Session { tx, rx, _channel: channel });
            }
            Some(DownstreamMessage { payload: Some(Down::Error(e)), .. }) => {
                return Err(format!("refused: {} {}", e.code, e.message).into());
            }
            Some(_) => {}
            None => return Err("the stream ended before its ack".into()),
        }
    }
}

fn topic(specifier: &str) -> String {
    format!("ag::{WORKSPACE}::{IMPLEMENTATION}::{specifier}")
}

fn send(to: &str, n: usize) -> UpstreamMessage {
    UpstreamMessage {
        payload: Some(Up::Send(SendMessage {
            target_topic: topic(to),
            payload: format!("message {n}").into_bytes(),
            message_type: MessageType::Chat as i32,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Messages a sender may have in flight to a live receiver. The node ends a session whose client
/// leaves 256 frames unread (docs/gateway.md, "Stream endings"), so a sender paces itself to what
/// its receiver has read, as a well-behaved producer does; the window keeps the pipe full.
const WINDOW: usize = 128;

/// Reads until `count` messages arrived (giving a send permit back for each, when `window` is
/// given); returns when the last did.
async fn receive(
    rx: &mut tonic::Streaming<DownstreamMessage>,
    count: usize,
    window: Option<&tokio::sync::Semaphore>,
) -> Result<Instant> {
    let mut got = 0;
    while got < count {
        match rx.message().await? {
            Some(DownstreamMessage { payload: Some(Down::Msg(_)), .. }) => {
                got += 1;
                if let Some(w) = window {
                    w.add_permits(1);
                }
            }
            Some(DownstreamMessage { payload: Some(Down::Error(e)), .. }) => {
                return Err(format!("error frame: {} {}", e.code, e.message).into());
            }
            Some(_) => {}
            None => return Err(format!("the stream ended after {got} of {count} messages").into()),
        }
    }
    Ok(Instant::now())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// `pairs` sender→receiver pairs at once, `per_pair` messages each; messages/s overall.
async fn connected_messages(gateway: &str, tag: &str, pairs: usize, per_pair: usize) -> Result<f64> {
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..pairs {
        let receiver = format!("{tag}-rx-{i}");
        receivers.push(open(channel(gateway).await?, &receiver).await?);
        senders.push((open(channel(gateway).await?, &format!("{tag}-tx-{i}")).await?, receiver));
    }
    let windows: Vec<_> = (0..pairs).map(|_| std::sync::Arc::new(tokio::sync::Semaphore::new(WINDOW))).collect();
    let started = Instant::now();
    let mut readers = Vec::new();
    for (session, window) in receivers.into_iter().zip(windows.iter().cloned()) {
        readers.push(tokio::spawn(async move {
            // The whole session moves in (its `tx` too: dropping it would end the stream).
            let mut session = session;
            receive(&mut session.rx, per_pair, Some(&window)).await
        }));
    }
    let mut writers = Vec::new();
    for ((session, receiver), window) in senders.into_iter().zip(windows) {
        writers.push(tokio::spawn(async move {
            for n in 0..per_pair {
                window.acquire().await?.forget();
                session.tx.send(send(&receiver, n)).await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(session)
        }));
    }
    let mut last = started;
    for reader in readers {
        last = last.max(reader.await??);
    }
    for writer in writers {
        drop(writer.await??);
    }
    Ok((pairs * per_pair) as f64 / (last - started).as_secs_f64())
}

/// Rows queued for `identity` in the node's database (read-only, beside the running node).
async fn queued(pool: &sqlx::SqlitePool, identity: &str) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM aether_messages WHERE identity = ?")
        .bind(identity)
        .fetch_one(pool)
        .await?)
}

/// Durable messages/s to an offline identity, then its replay rate on reconnect.
async fn offline_messages(node: &BenchNode, count: usize) -> Result<(f64, f64, Duration)> {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&node.database).read_only(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
    let target = "offline-rx";
    let sender = open(channel(&node.gateway).await?, "offline-tx").await?;
    let started = Instant::now();
    let tx = sender.tx.clone();
    let writer = tokio::spawn(async move {
        for n in 0..count {
            tx.send(send(target, n)).await?;
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    });
    loop {
        if queued(&pool, &topic(target)).await? >= count as i64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(
                "the offline messages were not all queued within 60 s (over the queue cap of 10,000 per identity?)"
                    .into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let durable = count as f64 / started.elapsed().as_secs_f64();
    writer.await??;
    let connect = Instant::now();
    let mut receiver = open(channel(&node.gateway).await?, target).await?;
    let acked = Instant::now();
    let last = receive(&mut receiver.rx, count, None).await?;
    drop(sender);
    Ok((durable, count as f64 / (last - acked).as_secs_f64(), acked - connect))
}

/// Sequential KV get round trips; sorted latencies.
async fn kv_gets(gateway: &str, count: usize) -> Result<Vec<Duration>> {
    let mut session = open(channel(gateway).await?, "kv").await?;
    let op = |op: OpType, request_id: String| UpstreamMessage {
        payload: Some(Up::KvOp(KvOperation {
            op: op as i32,
            scope: Scope::Global as i32,
            key: "bench-key".into(),
            value: b"bench-value".to_vec(),
            request_id,
            ..Default::default()
        })),
        ..Default::default()
    };
    session.tx.send(op(OpType::Put, "put".into())).await?;
    let mut times = Vec::with_capacity(count);
    for n in 0..count + 200 {
        let id = format!("g{n}");
        let t = Instant::now();
        session.tx.send(op(OpType::Get, id.clone())).await?;
        loop {
            match session.rx.message().await? {
                Some(DownstreamMessage { payload: Some(Down::Kv(r)), .. }) if r.request_id == id => {
                    if r.value != b"bench-value" {
                        return Err(format!("get answered {:?}", r.value).into());
                    }
                    break;
                }
                Some(_) => {}
                None => return Err("the stream ended".into()),
            }
        }
        if n >= 200 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    Ok(times)
}

/// New connection + stream per identity until its ack; sorted latencies.
async fn connects(gateway: &str, count: usize) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(count);
    for n in 0..count + 20 {
        let t = Instant::now();
        let session = open(channel(gateway).await?, &format!("connect-{n}")).await?;
        let took = t.elapsed();
        drop(session);
        if n >= 20 {
            times.push(took);
        }
    }
    times.sort();
    Ok(times)
}

/// KiB of node RSS per idle connected agent, with `count` of them.
async fn idle_rss(node: &BenchNode, count: usize) -> Result<(u64, u64, f64)> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = node.rss_kib()?;
    let mut sessions = Vec::with_capacity(count);
    for n in 0..count {
        sessions.push(open(channel(&node.gateway).await?, &format!("idle-{n}")).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = node.rss_kib()?;
    drop(sessions);
    Ok((before, after, (after.saturating_sub(before)) as f64 / count as f64))
}

/// The implementation the task section's workers serve.
const POOL: &str = "bench-pool";

fn create_task(n: usize) -> UpstreamMessage {
    UpstreamMessage {
        payload: Some(Up::CreateTask(aethrolink::gateway::proto::CreateTaskRequest {
            task_type: "bench.work".into(),
            workspace: WORKSPACE.into(),
            assignment_mode: aethrolink::gateway::proto::TaskAssignmentMode::Pool as i32,
            target_implementation: POOL.into(),
            metadata: [("n".to_owned(), n.to_string())].into_iter().collect(),
            payload: format!("{{\"n\": {n}}}").into_bytes(),
            request_id: format!("c{n}"),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn complete(task_id: String) -> UpstreamMessage {
    UpstreamMessage {
        payload: Some(Up::TaskOp(aethrolink::gateway::proto::TaskOperation {
            op: aethrolink::gateway::proto::task_operation::OpType::Complete as i32,
            request_id: format!("done-{task_id}"),
            task_id,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A pool worker: completes every assignment; sends `(n, arrival)` of each to `seen`.
fn worker(mut session: Session, seen: mpsc::UnboundedSender<(usize, Instant)>) -> tokio::task::JoinHandle<Result> {
    tokio::spawn(async move {
        while let Some(frame) = session.rx.message().await? {
            if let Some(Down::TaskAssignment(a)) = frame.payload {
                let at = Instant::now();
                let n = a.metadata.get("n").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
                session.tx.send(complete(a.task_id)).await?;
                if seen.send((n, at)).is_err() {
                    break;
                }
            }
        }
        Ok(())
    })
}

/// Reads a creator's stream until `count` `CreateTaskResponse`s arrived (all must succeed).
async fn created(rx: &mut tonic::Streaming<DownstreamMessage>, count: usize) -> Result {
    let mut got = 0;
    while got < count {
        match rx.message().await? {
            Some(DownstreamMessage { payload: Some(Down::CreateTask(r)), .. }) if r.success => got += 1,
            Some(DownstreamMessage { payload: Some(Down::CreateTask(r)), .. }) => {
                return Err(format!("create refused: {} {}", r.error_code, r.error_message).into());
            }
            Some(_) => {}
            None => return Err("a creator's stream ended".into()),
        }
    }
    Ok(())
}

/// Tasks/s through two pool workers (4 creators, `count` tasks), the split between the workers,
/// then create → assignment latency one task at a time (`latency_count`).
async fn tasks(gateway: &str, count: usize, latency_count: usize) -> Result<(f64, (usize, usize), Vec<Duration>)> {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    let mut per_worker = Vec::new();
    for spec in ["w1", "w2"] {
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
        workers.push(worker(open_as(channel(gateway).await?, POOL, spec).await?, tx));
        let all = seen_tx.clone();
        per_worker.push(tokio::spawn(async move {
            let mut n = 0usize;
            while let Some(item) = rx.recv().await {
                n += 1;
                if all.send(item).is_err() {
                    break;
                }
            }
            n
        }));
    }
    drop(seen_tx);
    const CREATORS: usize = 4;
    let mut creators = Vec::new();
    for c in 0..CREATORS {
        creators.push(open_as(channel(gateway).await?, "bench-creator", &format!("c{c}")).await?);
    }
    let per_creator = count / CREATORS;
    let started = Instant::now();
    let mut feeding = Vec::new();
    for (c, creator) in creators.iter_mut().enumerate() {
        let tx = creator.tx.clone();
        feeding.push(tokio::spawn(async move {
            for i in 0..per_creator {
                tx.send(create_task(c * per_creator + i)).await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    let total = per_creator * CREATORS;
    let mut arrived = 0;
    let mut last = started;
    while arrived < total {
        let (_, at) = tokio::time::timeout(Duration::from_secs(60), seen.recv()).await?.ok_or("workers ended")?;
        arrived += 1;
        last = at;
    }
    let rate = total as f64 / last.duration_since(started).as_secs_f64();
    for f in feeding {
        f.await??;
    }
    for creator in creators.iter_mut() {
        created(&mut creator.rx, per_creator).await?;
    }
    // One at a time: create → the worker's TaskAssignment.
    let creator = &mut creators[0];
    let mut latencies = Vec::with_capacity(latency_count);
    for i in 0..latency_count {
        let n = 10_000_000 + i;
        let sent = Instant::now();
        creator.tx.send(create_task(n)).await?;
        loop {
            let (got, at) = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await?.ok_or("workers ended")?;
            if got == n {
                latencies.push(at.duration_since(sent));
                break;
            }
        }
        created(&mut creator.rx, 1).await?;
    }
    latencies.sort();
    drop(creators);
    for w in &workers {
        w.abort();
    }
    let mut split = Vec::new();
    for p in per_worker {
        split.push(p.await.unwrap_or(0));
    }
    Ok((rate, (split[0], split[1]), latencies))
}

fn sdk_python() -> Option<PathBuf> {
    // A named interpreter that is not there is skipped like a missing venv (the figures above
    // are the bench's; this one is a reference).
    if let Some(p) = std::env::var_os("ALINK_AETHER_SDK_PYTHON") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/aether-sdk-venv/bin/python");
    local.exists().then_some(local)
}

const PYTHON_KV: &str = r#"
import asyncio, statistics, sys, time
from scitrera_aether_client import AsyncAgentClient
async def main():
    c = AsyncAgentClient("bench", "bench", "python-kv")
    await c.connect(sys.argv[1])
    while not c.is_connected:
        await asyncio.sleep(0.01)
    await c.kv_put("py-key", b"v")
    times = []
    for n in range(int(sys.argv[2]) + 100):
        t = time.perf_counter()
        r = await c.kv_get("py-key")
        assert r.value == b"v"
        if n >= 100:
            times.append(time.perf_counter() - t)
    times.sort()
    print(f"{times[len(times)//2]*1000:.3f} {times[int(len(times)*0.99)]*1000:.3f}")
    await c.close()
asyncio.run(main())
"#;

fn python_kv(gateway: &str, count: usize) -> Result<Option<String>> {
    let Some(python) = sdk_python() else { return Ok(None) };
    let out = Command::new(python).arg("-c").arg(PYTHON_KV).arg(gateway).arg(count.to_string()).output()?;
    if !out.status.success() {
        return Err(format!("python KV reference failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let (p50, p99) = (fields.next().ok_or("p50")?, fields.next().ok_or("p99")?);
    Ok(Some(format!("p50 {p50} ms, p99 {p99} ms")))
}

fn main() -> Result {
    let messages = env_usize("BENCH_AETHER_MESSAGES", 50_000);
    let offline = env_usize("BENCH_AETHER_OFFLINE", 10_000);
    let kv = env_usize("BENCH_AETHER_KV", 5_000);
    let connect_count = env_usize("BENCH_AETHER_CONNECTS", 500);
    let idle = env_usize("BENCH_AETHER_IDLE", 1_000);
    let task_count = env_usize("BENCH_AETHER_TASKS", 10_000);
    let dir = tempfile::tempdir()?;
    // With the node's log asked for, keep the directory for reading it afterwards.
    let dir = if std::env::var_os("BENCH_AETHER_LOG").is_some() {
        tempfile::TempDir::with_prefix("aether-bench-")?.keep()
    } else {
        dir.path().to_path_buf()
    };
    let node = BenchNode::start(&dir)?;
    if std::env::var_os("BENCH_AETHER_LOG").is_some() {
        println!("node log: {}", dir.join("node.log").display());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let one = connected_messages(&node.gateway, "p1", 1, messages).await?;
        println!("messages, connected, 1 pair: {one:.0} msgs/s ({messages} messages)");
        let sixteen = connected_messages(&node.gateway, "p16", 16, messages / 4).await?;
        println!("messages, connected, 16 pairs: {sixteen:.0} msgs/s ({} messages)", 16 * (messages / 4));
        let (durable, replay, ack) = offline_messages(&node, offline).await?;
        println!(
            "messages, offline: {durable:.0} durable msgs/s; replay on reconnect {replay:.0} msgs/s \
             (connect-to-ack {}; {offline} messages)",
            ms(ack)
        );
        let gets = kv_gets(&node.gateway, kv).await?;
        println!(
            "KV get round trip: p50 {}, p99 {}, max {} ({kv} gets)",
            ms(percentile(&gets, 0.5)),
            ms(percentile(&gets, 0.99)),
            ms(percentile(&gets, 1.0))
        );
        let acks = connects(&node.gateway, connect_count).await?;
        println!(
            "connect-to-ack (new HTTP/2 connection + stream): p50 {}, p99 {} ({connect_count} connects)",
            ms(percentile(&acks, 0.5)),
            ms(percentile(&acks, 0.99))
        );
        let (rate, (a, b), latencies) = tasks(&node.gateway, task_count, task_count / 10).await?;
        println!(
            "tasks (POOL, 4 creators, 2 workers completing each): {rate:.0} durable tasks/s created and delivered \
             ({task_count} tasks; split {a} / {b} incl. the latency run); create -> TaskAssignment p50 {}, p99 {} \
             ({} one at a time)",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            latencies.len()
        );
        let (before, after, per) = idle_rss(&node, idle).await?;
        println!(
            "RSS: {before} KiB before, {after} KiB with {idle} idle agents connected: {per:.1} KiB per connection"
        );
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    match python_kv(&node.gateway, 1000)? {
        Some(figures) => println!("reference, KV get through the Python SDK (AsyncAgentClient): {figures}"),
        None => println!("reference, Python SDK: skipped (no venv)"),
    }
    Ok(())
}
