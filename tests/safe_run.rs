//! Safe to run, against the real binary and real child processes: one node per database (a
//! second node on it is refused and touches nothing; a port in use fails before any side
//! effect), and no orphans (after `kill -9` of the node nothing it started is left — stdio agent,
//! managed HTTP agent server, a helper an agent started itself — also when the node is started
//! again at once).
//!
//! The managed HTTP agent needs a Python with acp-sdk: `ALINK_ACP_HTTP_PYTHON` (`.ci/run` sets
//! it), else the venv tests/acp_http.rs provisions under `target/acp-http-venv`. Without one it is
//! left out locally; under CI (`CI=true`) that fails.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Node, NodeOpts, Result, node_bin};
use serde_json::json;

fn script(name: &str) -> String {
    format!("{}/tests/agents/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The Python that runs the acp-sdk server, if there is one.
fn http_python() -> Option<String> {
    let works = |py: &str| {
        Command::new(py)
            .args(["-c", "import acp_sdk.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let found = std::env::var("ALINK_ACP_HTTP_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .or_else(|| Some(format!("{}/target/acp-http-venv/bin/python", env!("CARGO_MANIFEST_DIR"))))
        .filter(|p| works(p));
    if found.is_none() {
        assert!(std::env::var("CI").is_err(), "CI must provide acp-sdk (ALINK_ACP_HTTP_PYTHON, see .ci/run)");
        eprintln!("managed HTTP agent left out: no python with acp-sdk (set ALINK_ACP_HTTP_PYTHON)");
    }
    found
}

/// Targets: `fake` (a stdio agent), `forking` (a stdio agent that first starts a helper of its
/// own: a grandchild of the node in the agent's process group), and with `http` = (python,
/// port) a managed acp-sdk server `web`.
fn registry(http: Option<(&str, u16)>) -> String {
    let (agent, sleeper) = (script("fake_acp_agent.py"), script("sleeper.py"));
    let mut text = format!(
        "targets:\n\
         \x20 fake:\n    adapter: acp\n    launch:\n      command: [python3, {agent}]\n    capabilities: [chat]\n\
         \x20 forking:\n    adapter: acp\n    launch:\n      command: [sh, -c, \"python3 {sleeper} & exec python3 {agent}\"]\n    capabilities: [fork]\n"
    );
    if let Some((python, port)) = http {
        let server = script("acp_http_server.py");
        text.push_str(&format!(
            "  web:\n    adapter: acp_http\n    endpoint: http://127.0.0.1:{port}\n    capabilities: [web]\n    launch:\n      command: [{python}, {server}, --port, '{port}']\n      timeout_ms: 30000\n"
        ));
    }
    text
}

fn opts(registry: String) -> NodeOpts {
    NodeOpts { registry: Some(registry), extra_args: vec![], ..NodeOpts::default() }
}

/// A process as `/proc` shows it; `(pid, start)` names it across pid reuse.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Proc {
    pid: u32,
    ppid: u32,
    pgrp: u32,
    /// Start time, in clock ticks since boot.
    start: u64,
    cmdline: String,
}

/// The process `pid` and its state letter (`Z`: a zombie).
fn proc_of(pid: u32) -> Option<(char, Proc)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm)": state ppid pgrp … with the start time 20th.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim().to_owned())
        .unwrap_or_default();
    let proc = Proc {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
        cmdline,
    };
    Some((state, proc))
}

/// Whether that very process still runs (not gone, not a zombie, not another under its pid).
fn runs(p: &Proc) -> bool {
    matches!(proc_of(p.pid), Some((state, now)) if state != 'Z' && state != 'X' && now.start == p.start)
}

/// The live members of process group `pgid`.
fn group(pgid: u32) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(proc_of)
        .filter(|(state, p)| p.pgrp == pgid && *state != 'Z' && *state != 'X')
        .map(|(_, p)| p)
        .collect()
}

/// Waits until none of `procs` runs; returns those still running after `bound`.
async fn survivors(procs: &[Proc], bound: Duration) -> Vec<Proc> {
    let deadline = Instant::now() + bound;
    loop {
        let left: Vec<Proc> = procs.iter().filter(|p| runs(p)).cloned().collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Starts `target` and returns its agent process (the group leader).
async fn start_target(node: &Node, target: &str) -> Result<Proc> {
    let (status, started) = node.post(&format!("/v1/targets/{target}/start"), json!({})).await?;
    if status != 202 {
        return Err(format!("start {target}: {status} {started}\n{}", node.log()).into());
    }
    let pid = u32::try_from(started["process_id"].as_u64().ok_or("no process_id")?)?;
    Ok(proc_of(pid).ok_or("agent process not found")?.1)
}

/// Starts every target and returns every process of their groups, once the forking agent's helper
/// runs (checked to be the agent's child: a grandchild of the node).
async fn start_agents(node: &Node, http: bool) -> Result<Vec<Proc>> {
    let mut targets = vec!["fake", "forking"];
    if http {
        targets.push("web");
    }
    let mut procs = Vec::new();
    for target in targets {
        let leader = start_target(node, target).await?;
        let mut members = group(leader.pid);
        if target == "forking" {
            for _ in 0..200 {
                if members.iter().any(|p| p.cmdline.contains("sleeper.py")) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
                members = group(leader.pid);
            }
            let helper = members.iter().find(|p| p.cmdline.contains("sleeper.py")).ok_or("the helper never ran")?;
            assert_eq!(helper.ppid, leader.pid, "the helper is the agent's child: {members:#?}");
            assert!(leader.cmdline.contains("fake_acp_agent.py"), "{leader:?}");
        }
        assert!(members.contains(&leader), "{target}: {members:#?}");
        procs.extend(members);
    }
    Ok(procs)
}

/// Output of a process run to its exit (killed after 20 s).
struct Exited {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run_to_exit(cmd: &mut Command) -> Result<Exited> {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => {
            let out = out?;
            Ok(Exited {
                success: out.status.success(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            Err("the second node did not exit within 20 s (it started?)".into())
        }
    }
}

/// Another node on `database` with the first node's registry.
fn second_node(first: &Node, database: &Path, port: u16, artifacts: &Path) -> Command {
    let mut cmd = Command::new(node_bin());
    cmd.arg("--port")
        .arg(port.to_string())
        .args(["--aether-port", "0"])
        .arg("--database")
        .arg(format!("sqlite://{}", database.display()))
        .arg("--registry")
        .arg(first.dir.join("registry.yaml"))
        .arg("--artifact-dir")
        .arg(artifacts)
        .env("RUST_LOG", "info")
        .current_dir(&first.dir);
    cmd
}

/// A task on `fake` that runs until cancelled; returns its id once it runs.
async fn hung_task(node: &Node) -> Result<String> {
    let id =
        node.create_with(json!({"target_agent_id": "fake", "intent": "chat", "payload": {"text": "!hang"}})).await?;
    node.wait_status(&id, "running").await?;
    Ok(id)
}

async fn agent_of(node: &Node, target: &str) -> Result<Proc> {
    let (_, health) = node.get(&format!("/v1/targets/{target}/health")).await?;
    let pid = u32::try_from(health["process_id"].as_u64().ok_or("no process_id")?)?;
    Ok(proc_of(pid).ok_or("agent process not found")?.1)
}

#[tokio::test]
async fn a_second_node_on_the_same_database_is_refused_and_touches_nothing() -> Result {
    let first = Node::start_with(opts(registry(None)))?;
    let hung = hung_task(&first).await?;
    let agent = agent_of(&first, "fake").await?;
    let before = first.task(&hung).await?;
    let database = first.dir.join("node.db");
    let artifacts = first.dir.join("artifacts-second");

    let second = run_to_exit(&mut second_node(&first, &database, 0, &artifacts))?;
    assert!(!second.success, "refused: {}", second.stderr);
    let (db, holder) = (database.display().to_string(), format!("pid {}", first.pid()));
    assert!(
        second.stderr.contains(&db) && second.stderr.contains(&holder),
        "names {db} and {holder}: {}",
        second.stderr
    );
    assert!(!second.stdout.contains("listening"), "{}", second.stdout);
    assert!(!artifacts.exists(), "the refused node created nothing");

    assert!(runs(&agent), "the first node's agent is untouched");
    assert_eq!(first.task(&hung).await?, before, "the first node's task is untouched");
    assert!(!first.log().contains("left by a previous run"), "{}", first.log());
    // The first node goes on as if nothing happened.
    let id = first
        .create_with(json!({"target_agent_id": "fake", "intent": "chat", "payload": {"text": "say exactly STILL"}}))
        .await?;
    let events = first.events_until_done(&id).await?;
    assert_eq!(events.last().map(|e| e["kind"].clone()), Some(json!("task.completed")), "{events:?}");
    Ok(())
}

#[tokio::test]
async fn a_second_node_whose_port_is_taken_fails_before_touching_anything() -> Result {
    let first = Node::start_with(opts(registry(None)))?;
    let hung = hung_task(&first).await?;
    let agent = agent_of(&first, "fake").await?;
    let before = first.task(&hung).await?;
    let port: u16 = first.base.rsplit(':').next().ok_or("port")?.parse()?;

    // A copy of the first node's database: its open lease names the first node's live agent, so a
    // start that recovered or swept before binding would fail the copied task and kill that agent.
    let copy_dir = tempfile::tempdir()?;
    let copy = copy_dir.path().join("node.db");
    let source = format!("sqlite://{}?mode=ro", first.dir.join("node.db").display());
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&source).await?;
    sqlx::query("VACUUM INTO ?").bind(copy.display().to_string()).execute(&mut db).await?;
    sqlx::Connection::close(db).await?;
    let copied = || async {
        let mut db =
            <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}?mode=ro", copy.display()))
                .await?;
        let status: String =
            sqlx::query_scalar("SELECT status FROM tasks WHERE task_id = ?").bind(&hung).fetch_one(&mut db).await?;
        let leases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runtime_leases WHERE released_at IS NULL")
            .fetch_one(&mut db)
            .await?;
        sqlx::Connection::close(db).await?;
        Ok::<_, sqlx::Error>((status, leases))
    };
    let copied_before = copied().await?;
    assert_eq!(copied_before, ("running".to_owned(), 1), "precondition: the copy holds the live task and lease");

    let artifacts = copy_dir.path().join("artifacts");
    let second = run_to_exit(&mut second_node(&first, &copy, port, &artifacts))?;
    assert!(!second.success, "{}", second.stderr);
    assert!(
        second.stderr.contains(&format!("listen on 127.0.0.1:{port}")) && second.stderr.contains("in use"),
        "{}",
        second.stderr
    );
    assert!(!second.stdout.contains("listening"), "{}", second.stdout);

    assert!(runs(&agent), "the first node's agent is untouched");
    assert_eq!(first.task(&hung).await?, before, "the first node's task is untouched");
    assert_eq!(copied().await?, copied_before, "no recovery, no sweep on the copy");
    assert!(!copy_dir.path().join("node.db.node-key").exists(), "no key made");
    assert!(!artifacts.exists(), "no artifact directory made");
    Ok(())
}

#[tokio::test]
async fn after_kill_9_nothing_the_node_started_is_left() -> Result {
    let python = http_python();
    let port = common::free_port()?;
    let mut node = Node::start_with(opts(registry(python.as_deref().map(|py| (py, port)))))?;
    let procs = start_agents(&node, python.is_some()).await?;

    node.kill()?;
    let left = survivors(&procs, Duration::from_secs(5)).await;
    assert!(left.is_empty(), "still running 5 s after the node's kill -9: {left:#?}");
    Ok(())
}

#[tokio::test]
async fn after_kill_9_and_an_immediate_restart_nothing_is_left_and_the_new_node_runs() -> Result {
    let python = http_python();
    let port = common::free_port()?;
    let registry = registry(python.as_deref().map(|py| (py, port)));
    let mut node = Node::start_with(opts(registry.clone()))?;
    let dir = node.dir.clone();
    let procs = start_agents(&node, python.is_some()).await?;

    node.kill()?;
    let killed = Instant::now();
    let mut node = Node::start_in(&dir, opts(registry))?;
    let restarted = killed.elapsed();
    let left = survivors(&procs, Duration::from_secs(5)).await;
    assert!(left.is_empty(), "still running after kill -9 and a restart ({restarted:?} later): {left:#?}");

    // The new node's own agents start (the HTTP server on the same port) and stay up.
    let fresh = start_agents(&node, python.is_some()).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let down: Vec<&Proc> = fresh.iter().filter(|p| !runs(p)).collect();
    assert!(down.is_empty(), "the new node's processes: {down:#?}\n{}", node.log());
    // And a graceful stop leaves nothing either.
    let (code, _) = node.stop()?;
    assert_eq!(code, Some(0));
    let left = survivors(&fresh, Duration::from_secs(5)).await;
    assert!(left.is_empty(), "still running after a graceful stop: {left:#?}");
    Ok(())
}
