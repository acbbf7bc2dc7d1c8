//! Black-box tests of the Aether gateway: the real node on free ports, driven by the real
//! Python SDK `scitrera-aether-client==0.2.3` (scripts under tests/aether/). Skips, saying
//! so, when the SDK venv is absent; `.ci/run` creates it and sets `ALINK_AETHER_SDK_PYTHON`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Node, NodeOpts, Result};

const ADMIN_KEY: &str = "aether-gateway-test-admin-key";

/// The SDK venv's python: `ALINK_AETHER_SDK_PYTHON`, else `target/aether-sdk-venv/bin/python`.
fn sdk_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ALINK_AETHER_SDK_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/aether-sdk-venv/bin/python");
    local.exists().then_some(local)
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aether").join(name)
}

/// Skips locally; under CI (`CI=true`) a missing SDK fails, so CI never silently skips.
fn skip() {
    assert!(std::env::var("CI").is_err(), "CI must provide the Aether SDK venv (see .ci/run)");
    eprintln!("SKIPPED: no Aether SDK venv (set ALINK_AETHER_SDK_PYTHON, or run scripts/regen-aether-fds.sh)");
}

fn node(extra: &[&str]) -> Result<Node> {
    let mut opts = NodeOpts::default();
    opts.extra_args.extend(extra.iter().map(|s| (*s).to_owned()));
    let node = Node::start_with(opts)?;
    assert!(!node.aether.is_empty(), "the node prints the gateway's address; log:\n{}", node.log());
    Ok(node)
}

/// The admin token a node writes for its own user (scope `admin`).
fn local_admin_token(node: &Node) -> Result<String> {
    let port = node.base.rsplit(':').next().ok_or("no port")?.trim_end_matches('/');
    let token = std::fs::read_to_string(node.dir.join("state/tokens").join(format!("loopback-{port}.token")))?;
    Ok(token.trim().to_owned())
}

/// Runs a script to its end (bounded), returning its stdout; fails with its output if it failed.
fn run(python: &Path, args: &[&str]) -> Result<String> {
    let mut child = Command::new(python).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let started = std::time::Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{args:?} did not finish within 120 s").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("{args:?} failed ({}):\n{stdout}\n{stderr}", out.status).into());
    }
    Ok(stdout.into_owned())
}

#[test]
fn the_sdk_connects_is_refused_and_gets_answers() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&["--admin-key", ADMIN_KEY])?;
    let script = script("sdk_connect.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether, ADMIN_KEY])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok sync connect: ack with a session id, then config",
        "ok duplicate identity refused",
        "ok unserved request answered with a correlated error",
        "ok uncorrelated unserved request reaches on_error",
        "ok identity freed after close",
        "ok unknown key refused",
        "ok admin key accepted",
        "ok invalid identifier refused",
        "ok async connect and correlated error",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    Ok(())
}

#[test]
fn kv_and_checkpoints_work_through_the_sdk() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&[])?;
    let script = script("sdk_kv.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok global KV is shared between agents; a missing key is an empty success",
        "ok user scope is private to the calling agent",
        "ok workspace KV put, list by prefix, delete",
        "ok checkpoints save, load, list, delete per identity",
        "ok checkpoints survive reconnects",
        "ok sync KV replies without a request id; sync checkpoints",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    Ok(())
}

#[test]
fn connected_agents_exchange_messages() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&[])?;
    let script = script("sdk_messages.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok agent to agent, source stamped by the node",
        "ok an agent receives its own message",
        "ok workspace broadcast reaches every agent",
        "ok an invalid topic is refused",
        "ok a sync client receives",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    Ok(())
}

/// Starts the raw-stream script against `node`; returns the child and its stdout lines.
fn raw_stream(python: &Path, node: &Node) -> Result<(std::process::Child, std::sync::mpsc::Receiver<String>)> {
    let mut child = Command::new(python)
        .arg(script("shutdown_status.py"))
        .arg(&node.aether)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
            let _ = tx.send(line);
        }
    });
    Ok((child, rx))
}

#[test]
fn streams_end_unavailable_when_the_node_stops() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let mut node = node(&[])?;
    let (mut child, lines) = raw_stream(&python, &node)?;
    let acked = lines.recv_timeout(Duration::from_secs(30));
    let result = (|| -> Result {
        let acked = acked.map_err(|_| format!("no ack; node log:\n{}", node.log()))?;
        assert!(acked.starts_with("acked as_"), "{acked}");
        let (code, _) = node.stop()?;
        assert_eq!(code, Some(0), "the node exits cleanly");
        let ended = lines.recv_timeout(Duration::from_secs(30)).map_err(|_| "the stream did not end")?;
        assert_eq!(ended, "ended UNAVAILABLE", "a recoverable status, never OK");
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[test]
fn a_node_that_requires_tokens_refuses_tokenless_clients() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&["--require-auth"])?;
    let (mut child, lines) = raw_stream(&python, &node)?;
    let ended = lines.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ended.as_deref(), Ok("ended UNAUTHENTICATED"));
    Ok(())
}

/// A CA, a certificate it signs for `names` (server or client), and their PEM files in `dir`.
struct TestPki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path, prefix: &str, names: &[&str]) -> Result<TestPki> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("{prefix} test CA"));
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_params = rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
    let out = TestPki {
        ca: dir.join(format!("{prefix}-ca.pem")),
        cert: dir.join(format!("{prefix}-cert.pem")),
        key: dir.join(format!("{prefix}-key.pem")),
    };
    std::fs::write(&out.ca, ca_cert.pem())?;
    std::fs::write(&out.cert, leaf.pem())?;
    std::fs::write(&out.key, leaf_key.serialize_pem())?;
    Ok(out)
}

fn path_str(p: &Path) -> Result<&str> {
    Ok(p.to_str().ok_or("path")?)
}

#[test]
fn the_sdk_connects_over_tls_and_mtls_refuses_clients_without_a_certificate() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let server = pki(dir.path(), "server", &["localhost", "127.0.0.1"])?;
    let foreign = pki(dir.path(), "foreign", &["localhost"])?;
    let client = pki(dir.path(), "client", &["gw-client"])?;
    let script = script("sdk_tls.py");
    let tls_args = ["--aether-tls-cert", path_str(&server.cert)?, "--aether-tls-key", path_str(&server.key)?];

    let node_tls = node(&tls_args)?;
    let out =
        run(&python, &[path_str(&script)?, &node_tls.aether, path_str(&server.ca)?, path_str(&foreign.ca)?, "tls"])
            .map_err(|e| format!("{e}\nnode log:\n{}", node_tls.log()))?;
    for check in [
        "ok connected over TLS with the custom CA",
        "ok connected over TLS with the custom CA given as bytes",
        "ok foreign CA refused",
    ] {
        assert!(out.contains(check), "missing {check:?}:\n{out}");
    }
    assert!(node_tls.log().contains("gateway TLS handshake refused"), "the node refused it: {}", node_tls.log());
    drop(node_tls);

    let mut mtls_args = tls_args.to_vec();
    mtls_args.extend(["--aether-tls-client-ca", path_str(&client.ca)?]);
    let node_mtls = node(&mtls_args)?;
    let out = run(
        &python,
        &[
            path_str(&script)?,
            &node_mtls.aether,
            path_str(&server.ca)?,
            path_str(&foreign.ca)?,
            "mtls",
            path_str(&client.cert)?,
            path_str(&client.key)?,
        ],
    )
    .map_err(|e| format!("{e}\nnode log:\n{}", node_mtls.log()))?;
    for check in [
        "ok mTLS client certificate accepted",
        "ok mTLS client certificate given as bytes accepted",
        "ok mTLS without a client certificate refused",
    ] {
        assert!(out.contains(check), "missing {check:?}:\n{out}");
    }
    let log = node_mtls.log();
    assert!(log.contains("gateway TLS handshake refused"), "no client certificate: refused at the handshake: {log}");
    Ok(())
}

#[test]
fn group_lanes_follow_users_workspaces() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&[])?;
    let script = script("sdk_lanes.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok a user's messages carry the workspace it switched to",
        "ok gu:: reaches the users working in the workspace only",
        "ok uw:: reaches that user's windows in that workspace",
        "ok uu:: reaches every window of the user",
        "ok a user's lanes follow its workspace switches",
        "ok pg:: reaches the users of the workspace",
        "ok an agent may not switch workspaces and stays usable",
        "ok tb:: and the empty-id form reach a pooled task",
        "ok task topics are answered not served",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    Ok(())
}

#[test]
fn every_principal_kind_and_message_type_works() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&[])?;
    let script = script("sdk_principals.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok every async principal kind connects",
        "ok each message type fires its typed handler, then the catch-all",
        "ok events reach the workflow engine",
        "ok metrics reach the metrics bridge",
        "ok the metrics bridge may not send",
        "ok a user may not send events",
        "ok malformed metrics are refused with upstream's codes",
        "ok payloads over 1 MiB are refused, 1 MiB is delivered",
        "ok an orchestrator's messages are stamped orc::impl::spec and limited to agents and tasks",
        "ok services reach unique and pooled tasks",
        "ok the async context manager releases the identity",
        "ok every sync principal kind connects; sync typed handlers fire",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    Ok(())
}

#[test]
fn the_config_snapshot_carries_private_kv() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&[])?;
    let script = script("sdk_config.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok a new agent's snapshot is empty",
        "ok the snapshot carries the agent's private scopes",
        "ok another agent's snapshot has none of it; the workspace scope is per workspace",
        "ok a pooled task gets an empty snapshot",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    Ok(())
}

#[test]
fn messages_to_an_offline_agent_are_kept_and_replayed_in_order() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&[])?;
    let script = script("sdk_offline.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether, "all", "200"])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok an async agent gets what was sent while it was offline, in order, exactly once",
        "ok a reconnect replays only what is new",
        "ok a sync agent gets them too",
        "ok a message sent during the replay keeps its order",
        "ok a service wildcard with no live service is refused",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    Ok(())
}

#[test]
fn messages_to_an_offline_agent_survive_a_node_restart() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let script = script("sdk_offline.py");
    let script = script.to_str().ok_or("path")?;
    let mut first = Node::start_in(dir.path(), NodeOpts::default())?;
    let out = run(&python, &[script, &first.aether, "send", "b-restart", "200"])
        .map_err(|e| format!("{e}\nnode log:\n{}", first.log()))?;
    assert!(out.contains("ok sent 200"), "{out}");
    let (code, _) = first.stop()?;
    assert_eq!(code, Some(0), "the node exits cleanly; log:\n{}", first.log());
    let second = Node::start_in(dir.path(), NodeOpts::default())?;
    let out = run(&python, &[script, &second.aether, "receive", "b-restart", "200"])
        .map_err(|e| format!("{e}\nfirst node log:\n{}\nsecond node log:\n{}", first.log(), second.log()))?;
    assert!(out.contains("ok received 200 in order, exactly once"), "{out}");
    Ok(())
}

#[test]
fn counters_count_and_connections_are_listed() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&[])?;
    let script = script("sdk_counters.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether, &node.base])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok live connections are listed over HTTP",
        "ok increment and decrement count, shared in the global scope, stored as decimal text",
        "ok guarded updates refuse past their ceiling or floor and change nothing",
        "ok concurrent increments from two agents lose none",
        "ok a counter over a value that is not one is refused and leaves it",
        "ok counters follow the scopes",
        "ok a sync increment is answered without a request id",
        "ok closed sessions leave the listing",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    let log = node.log();
    for line in ["gateway client connected", "gateway session closed"] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    assert!(log.contains("authority=claimed"), "the connect line names the authority:\n{log}");
    Ok(())
}

#[test]
fn malformed_and_oversize_frames_are_refused_while_the_node_keeps_serving() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&[])?;
    let script = script("raw_frames.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok a first frame that is not protobuf ends the stream with an error",
        "ok a malformed frame after the ack ends that stream with an error",
        "ok an oversize frame ends that stream with an error",
        "ok the identity of a broken stream is released",
        "ok the node keeps serving other clients",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    Ok(())
}

#[test]
fn a_client_that_vanishes_mid_stream_leaves_nothing_behind() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&[])?;
    let script = script("sdk_vanish.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether, &node.base])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok a client streaming messages and KV requests is killed mid-stream",
        "ok its session leaves the connection listing",
        "messages it sent arrived in order, exactly once",
        "ok its identity is free again and a message sent meanwhile is delivered",
        "ok nothing is left connected",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    Ok(())
}

/// Waits for the next stdout line of the reconnect script (bounded).
fn next_line(lines: &std::sync::mpsc::Receiver<String>, within: Duration) -> Option<String> {
    lines.recv_timeout(within).ok()
}

#[test]
fn sdk_clients_reconnect_after_the_node_restarts_and_after_it_crashes() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (http, gateway) = (common::free_port()?.to_string(), common::free_port()?.to_string());
    let opts = || NodeOpts {
        extra_args: vec!["--port".into(), http.clone(), "--aether-port".into(), gateway.clone()],
        ..NodeOpts::default()
    };
    let mut first = Node::start_in(dir.path(), opts())?;
    let mut child = Command::new(&python)
        .arg(script("sdk_reconnect.py"))
        .arg(&first.aether)
        .arg("2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("stdout")?;
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut logs = Vec::new();
    let result = (|| -> Result {
        let ready = next_line(&lines, Duration::from_secs(60));
        assert_eq!(ready.as_deref(), Some("ready"), "log:\n{}", first.log());
        // A restart: SIGTERM, then a new node on the same ports and database.
        let (code, _) = first.stop()?;
        assert_eq!(code, Some(0), "the node exits cleanly; log:\n{}", first.log());
        logs.push(first.log());
        let mut second = Node::start_in(dir.path(), opts())?;
        let round = next_line(&lines, Duration::from_secs(120));
        assert_eq!(round.as_deref(), Some("ok round 1"), "after SIGTERM; log:\n{}", second.log());
        // A crash: SIGKILL, then a new node again.
        second.kill()?;
        logs.push(second.log());
        let third = Node::start_in(dir.path(), opts())?;
        let round = next_line(&lines, Duration::from_secs(120));
        assert_eq!(round.as_deref(), Some("ok round 2"), "after SIGKILL; log:\n{}", third.log());
        assert_eq!(next_line(&lines, Duration::from_secs(30)).as_deref(), Some("all checks passed"));
        logs.push(third.log());
        Ok(())
    })();
    let _ = child.kill();
    let out = child.wait_with_output()?;
    result.map_err(|e| {
        format!(
            "{e}\nscript stderr:\n{}\nearlier node logs:\n{}",
            String::from_utf8_lossy(&out.stderr),
            logs.join("\n---\n")
        )
        .into()
    })
}

#[test]
fn api_tokens_admit_gateway_clients_until_revoked() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&[])?;
    // The local admin token the node wrote for its user mints and revokes over HTTP.
    let admin = local_admin_token(&node)?;
    let script = script("sdk_tokens.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether, &node.base, &admin])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok a token minted over HTTP admits a gateway client, listed with its token id",
        "ok a revoked token is refused UNAUTHENTICATED",
        "ok a token with a wrong secret is refused UNAUTHENTICATED",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    let log = node.log();
    assert!(log.contains("authority=token"), "the connect line names the token authority:\n{log}");
    assert!(log.contains("code=Unauthenticated"), "the refusals are logged:\n{log}");
    Ok(())
}

/// Admin operations through the SDK's AdminClient (sync and async): sessions listed, fetched and
/// kicked (FORCE_DISCONNECT: the client stays away), workspaces created, listed, updated and
/// deleted, agent implementations registered and removed, tokens minted, listed and revoked in the node's one store (the HTTP API sees and
/// honours them); refused without admin rights.
#[test]
fn admins_manage_sessions_and_tokens_through_the_sdk() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&[])?;
    let admin = local_admin_token(&node)?;
    let script = script("sdk_admin.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether, &node.base, &admin])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok an admin lists sessions, filtered by workspace and kind, paged, and gets one by id",
        "ok a client without admin rights is refused ERR_PERMISSION_DENIED and nothing changes",
        "ok a token minted through the SDK is the node's: listed over HTTP, admits HTTP and gateway clients",
        "ok a revoked token is refused over HTTP and the gateway, and listed as revoked when asked",
        "ok a kicked client gets FORCE_DISCONNECT with the reason and stays away",
        "ok an admin creates, lists, gets, updates and deletes workspaces; a duplicate is refused",
        "ok agent implementations are registered (idempotently), listed by profile, read, updated and removed",
        "ok access rules admit whom they allow into a workspace, deny the rest by default, and explain why",
        "ok the sync AdminClient creates, lists and revokes tokens, and creates and lists workspaces",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    let log = node.log();
    assert!(log.contains("gateway session disconnected by an admin"), "the kick is logged:\n{log}");
    assert!(log.contains("token created through the gateway"), "the mint is logged:\n{log}");
    Ok(())
}

/// Aether tasks through the real SDK on the node's task model: POOL spread over two workers and
/// delivered once each, TARGETED with progress, a subscription and a failure, a task waiting for
/// an offline agent, SELF_ASSIGN, a cancelled pending pool task never delivered, refusals that
/// create nothing, queries, an SDK task to a node target, a node task (HTTP) to an SDK agent, a
/// leaving worker's pool task moved to another, and a sync worker.
#[test]
fn sdk_tasks_run_on_the_nodes_task_model() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&[])?;
    let script = script("sdk_tasks.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether, &node.base])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok pool tasks are spread over both workers (6 and 6), each delivered once, and complete",
        "ok connected agents and their pools are listed as targets of adapter aether",
        "ok a targeted task reaches its agent with type, metadata and payload; progress and the failure stream to a subscriber; others cannot touch it",
        "ok a task for an offline agent waits and is delivered when it connects",
        "ok a self-assigned task is held by its creator and completed by it",
        "ok a cancelled pending pool task is never delivered; the other one is",
        "ok an oversize payload, a pool task without implementation and an unknown target are refused; nothing is created",
        "ok query_tasks filters by type, status and workspace, and pages",
        "ok an SDK task to a node target (loopback) runs there and the creator reads its result",
        "ok a task posted over HTTP to an SDK agent is assigned to it; its progress and completion are node task events",
        "ok a pool task held by a worker that leaves goes to another worker",
        "ok a sync agent receives and completes a pool task",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    Ok(())
}

/// One task model both ways: `alink-cli call --wait` to an SDK agent (its progress streams, its
/// completion ends the call), and an SDK task to the node's ACP target pausing for permission,
/// answered from the SDK.
#[test]
fn the_cli_calls_sdk_agents_and_sdk_tasks_reach_acp_targets() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/fake_acp_agent.py");
    let registry = format!(
        "targets:\n  echo:\n    adapter: loopback\n    capabilities: [demo.echo]\n  assistant:\n    adapter: acp\n    launch:\n      command: [python3, {}]\n    capabilities: [chat]\n",
        agent.display()
    );
    let opts = NodeOpts { registry: Some(registry), ..NodeOpts::default() };
    let node = Node::start_with(opts)?;
    let home = node.dir.join("home");
    std::fs::create_dir_all(&home)?;
    let script = script("sdk_task_bridge.py");
    let out = run(
        &python,
        &[script.to_str().ok_or("path")?, &node.aether, &node.base, common::cli_bin(), home.to_str().ok_or("home")?],
    )
    .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok alink-cli call --wait to an SDK agent streams its progress and exits 0 when it completes",
        "ok an SDK task to an ACP target pauses for permission; the creator allows or rejects it and reads the result",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    Ok(())
}

/// Pool tasks no worker has taken stay pending across a restart (SIGTERM) and go, in order, to
/// the first worker that connects to the restarted node; a cancelled one never does.
#[test]
fn pending_pool_tasks_survive_a_restart() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let mut first = node(&[])?;
    let dir = first.dir.clone();
    let script = script("sdk_pool_restart.py");
    let created = run(&python, &[script.to_str().ok_or("path")?, "create", &first.aether])
        .map_err(|e| format!("{e}\nnode log:\n{}", first.log()))?;
    first.stop()?;
    let second = Node::start_in(&dir, NodeOpts::default())?;
    let ids = created.trim().lines().last().ok_or("no ids")?.to_owned();
    let out = run(&python, &[script.to_str().ok_or("path")?, "work", &second.aether, &ids])
        .map_err(|e| format!("{e}\nnode log:\n{}", second.log()))?;
    assert!(
        out.contains("ok pending pool tasks wait across a restart and are delivered in order, the cancelled one never"),
        "{out}"
    );
    Ok(())
}

/// Lazy launch: a TARGETED task to an offline agent whose implementation is registered with a
/// profile makes the connected OrchestratorClient of that profile launch it (a real child
/// process, with the one-shot task token); the agent connects and completes the queued task.
#[test]
fn an_orchestrator_launches_an_offline_agent_for_its_task() -> Result {
    let Some(python) = sdk_python() else {
        skip();
        return Ok(());
    };
    let node = node(&["--admin-key", ADMIN_KEY])?;
    let script = script("sdk_orchestrator.py");
    let out = run(&python, &[script.to_str().ok_or("path")?, &node.aether, ADMIN_KEY])
        .map_err(|e| format!("{e}\nnode log:\n{}", node.log()))?;
    for check in [
        "ok a task for an offline registered agent makes an orchestrator launch it; it connects with its token and completes the task",
        "ok a launch token admits its agent once",
        "ok with no orchestrator of its profile, the node launches a registered agent's command itself",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
    let log = node.log();
    assert!(log.contains("asked an orchestrator to launch an Aether agent"), "{log}");
    assert!(log.contains("a launched agent connected with its task token"), "{log}");
    assert!(log.contains("launched an Aether agent itself (no orchestrator)"), "{log}");
    // The agent exits after its task; the node reaps it (and says so) shortly after.
    let started = std::time::Instant::now();
    while !node.log().contains("a launched Aether agent ended") && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(node.log().contains("a launched Aether agent ended"), "the node reaped its agent:\n{}", node.log());
    Ok(())
}
