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

fn skip() {
    eprintln!("SKIPPED: no Aether SDK venv (set ALINK_AETHER_SDK_PYTHON, or run scripts/regen-aether-fds.sh)");
}

fn node(extra: &[&str]) -> Result<Node> {
    let mut opts = NodeOpts::default();
    opts.extra_args.extend(extra.iter().map(|s| (*s).to_owned()));
    let node = Node::start_with(opts)?;
    assert!(!node.aether.is_empty(), "the node prints the gateway's address; log:\n{}", node.log());
    Ok(node)
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
