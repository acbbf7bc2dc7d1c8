//! In-process node: the core started with `node::start_core`, served with `node::serve` on
//! port 0, driven through the service layer and over HTTP. Where timing matters the test pauses
//! tokio's clock and advances it past the deadline instead of waiting for it: a one-hour
//! delivery timeout, the default 10 s cancel grace and a ten-minute idle stop each fire in
//! well under a second of real time. The black-box suites stay the contract check.

use std::time::Duration;

use aethrolink::config::NodeArgs;
use aethrolink::node::{Listeners, ServeOptions, serve, start_core};
use aethrolink_actors::intake::TaskRequest;
use aethrolink_actors::model::{DeliveryPolicy, FailureReason, TaskStatus};
use aethrolink_actors::service::{Binding, Caller, Services};
use clap::Parser;
use serde_json::json;
use tokio_util::sync::CancellationToken;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn agent() -> String {
    format!("{}/tests/agents/fake_acp_agent.py", env!("CARGO_MANIFEST_DIR"))
}

/// A node in a temp dir, serving on port 0 until `shutdown` is cancelled.
struct InProcess {
    services: Services,
    base: String,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    async fn start() -> Result<InProcess> {
        let dir = tempfile::tempdir()?;
        let a = agent();
        let registry = format!(
            "targets:\n  echo:\n    adapter: loopback\n    capabilities: [demo.echo]\n  \
             fake:\n    adapter: acp\n    launch:\n      command: [python3, {a}]\n      idle_timeout_ms: 600000\n    \
             capabilities: [chat]\n"
        );
        let registry_path = dir.path().join("registry.yaml");
        std::fs::write(&registry_path, registry)?;
        let db = format!("sqlite://{}", dir.path().join("node.db").display());
        let artifacts = dir.path().join("artifacts");
        let args = NodeArgs::try_parse_from([
            "alink-node",
            "--port",
            "0",
            "--database",
            &db,
            "--registry",
            &registry_path.to_string_lossy(),
            "--artifact-dir",
            &artifacts.to_string_lossy(),
        ])?;
        let core = start_core(&args).await?;
        let services = core.services.clone();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", http.local_addr()?);
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let served = tokio::spawn(async move {
            if let Err(e) = serve(core, Listeners { http, aether: None }, token, ServeOptions::default()).await {
                eprintln!("serve ended with an error: {e}");
            }
        });
        Ok(InProcess { services, base, shutdown, served, _dir: dir })
    }

    async fn stop(self) -> Result {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.served).await??;
        Ok(())
    }

    /// Polls the task (real time) until `done` holds.
    async fn wait_for(&self, task_id: &str, done: impl Fn(TaskStatus) -> bool) -> Result<TaskStatus> {
        let caller = Caller::anonymous(Binding::Internal);
        for _ in 0..400 {
            let status = self.services.get_task(&caller, task_id).await?.status;
            if done(status) {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!("task {task_id} did not reach the expected state").into())
    }
}

/// Moves tokio's clock forward by `by` at once (timers due by then fire), then lets real time
/// run again so the IO they start (SQLite, child processes) completes.
async fn jump(services: &Services, by: Duration) -> Result {
    // An ask pending across the jump would time out, so first let every write already sent
    // commit: the storage actor answers `Stats` in mailbox order, and a second `Stats` comes after
    // the `Flush` the writes before the first one scheduled.
    tokio::task::yield_now().await;
    let caller = Caller::anonymous(Binding::Internal);
    services.node_stats(&caller).await?;
    services.node_stats(&caller).await?;
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
    Ok(())
}

fn request(target: &str, intent: &str, payload: serde_json::Value) -> TaskRequest {
    TaskRequest { target_agent_id: Some(target.into()), intent: Some(intent.into()), payload, ..TaskRequest::default() }
}

#[tokio::test]
async fn the_http_binding_serves_the_same_core() -> Result {
    let node = InProcess::start().await?;
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("{}/v1/tasks", node.base))
        .json(&json!({"target_agent_id": "echo", "intent": "demo.echo", "payload": {"text": "hi"}}))
        .send()
        .await?
        .json()
        .await?;
    let task_id = created["task"]["task_id"].as_str().ok_or("no task id")?.to_owned();
    let status = node.wait_for(&task_id, TaskStatus::is_terminal).await?;
    assert_eq!(status, TaskStatus::Completed);
    let seen = node.services.get_task(&Caller::anonymous(Binding::Internal), &task_id).await?;
    assert!(seen.result_artifact_id.is_some());
    node.stop().await
}

#[tokio::test]
async fn a_one_hour_delivery_timeout_fires_on_the_advanced_clock() -> Result {
    let node = InProcess::start().await?;
    let caller = Caller::anonymous(Binding::Internal);
    let mut req = request("echo", "demo.echo", json!({"mode": "hang"}));
    req.delivery = DeliveryPolicy { timeout_ms: Some(3_600_000), ..DeliveryPolicy::default() };
    let task = node.services.create_task(&caller, req).await?;
    node.wait_for(&task.task_id, |s| s == TaskStatus::Running).await?;
    jump(&node.services, Duration::from_secs(3_601)).await?;
    assert_eq!(node.wait_for(&task.task_id, TaskStatus::is_terminal).await?, TaskStatus::Failed);
    let failed = node.services.get_task(&caller, &task.task_id).await?;
    assert_eq!(failed.last_error.map(|e| e.reason), Some(FailureReason::Timeout));
    let events = node.services.task_history(&caller, &task.task_id, 0).await?;
    assert!(events.iter().any(|e| e.message.as_deref() == Some("Task timed out after 3600000 ms")));
    node.stop().await
}

#[tokio::test]
async fn the_default_cancel_grace_kills_an_agent_that_ignores_cancel() -> Result {
    let node = InProcess::start().await?;
    let caller = Caller::anonymous(Binding::Internal);
    let task = node.services.create_task(&caller, request("fake", "chat", json!({"text": "!stubborn"}))).await?;
    node.wait_for(&task.task_id, |s| s == TaskStatus::Running).await?;
    let status = node.services.cancel_task(&caller, &task.task_id, Some("not needed".into())).await?;
    assert_eq!(status, TaskStatus::Running);
    // The agent ignores session/cancel: nothing ends the turn until the grace (10 s) runs out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.services.get_task(&caller, &task.task_id).await?.status, TaskStatus::Running);
    jump(&node.services, Duration::from_secs(11)).await?;
    assert_eq!(node.wait_for(&task.task_id, TaskStatus::is_terminal).await?, TaskStatus::Cancelled);
    node.stop().await
}

#[tokio::test]
async fn an_idle_runtime_stops_after_its_idle_timeout() -> Result {
    let node = InProcess::start().await?;
    let caller = Caller::anonymous(Binding::Internal);
    let task = node.services.create_task(&caller, request("fake", "chat", json!({"text": "say exactly hi"}))).await?;
    assert_eq!(node.wait_for(&task.task_id, TaskStatus::is_terminal).await?, TaskStatus::Completed);
    assert!(node.services.target_health(&caller, "fake").await?.healthy);
    jump(&node.services, Duration::from_secs(601)).await?;
    let mut healthy = true;
    for _ in 0..200 {
        healthy = node.services.target_health(&caller, "fake").await?.healthy;
        if !healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!healthy, "runtime still up after its idle timeout");
    // The launch is recorded as ended once its process group is gone (written in the background).
    let mut launches = Vec::new();
    for _ in 0..200 {
        launches = node.services.target_launches(&caller, "fake").await?;
        if launches.first().is_some_and(|l| l.ended_at.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(launches.len(), 1);
    assert!(launches[0].ended_at.is_some(), "launch not recorded as ended: {:?}", launches[0]);
    node.stop().await
}

#[tokio::test]
async fn a_presence_lease_lapses_and_a_heartbeat_renews_it() -> Result {
    // Presence is wall-clock (leases are persisted as timestamps), so this one waits for real:
    // a one-second lease.
    let node = InProcess::start().await?;
    let caller = Caller::anonymous(Binding::Internal);
    let reg = aethrolink_actors::registry::Registration {
        agent_id: Some("helper".into()),
        display_name: "helper".into(),
        transport_kind: "local_managed".into(),
        adapter: Some("loopback".into()),
        capabilities: vec!["help.me".into()],
        lease_ttl_seconds: Some(1),
        ..Default::default()
    };
    node.services.register_agent(&caller, reg).await?;
    let status = |a: aethrolink_actors::model::AgentRecord| serde_json::to_value(a.status).unwrap_or_default();
    assert_eq!(status(node.services.get_agent(&caller, "helper").await?), json!("online"));
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(status(node.services.get_agent(&caller, "helper").await?), json!("offline"));
    // Offline agents stay targets: presence never blocks on-demand launch.
    let task = node.services.create_task(&caller, request("helper", "help.me", json!({"text": "hi"}))).await?;
    assert_eq!(node.wait_for(&task.task_id, TaskStatus::is_terminal).await?, TaskStatus::Completed);
    node.services.heartbeat(&caller, "helper".into(), Some(60)).await?;
    assert_eq!(status(node.services.get_agent(&caller, "helper").await?), json!("online"));
    node.stop().await
}
