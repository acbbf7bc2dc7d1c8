//! Rows of the AethroLink v1 contract, black-box against the real binary: registrations of an
//! adapter this node does not run (accepted with a warning; tasks fail `adapter missing`),
//! agents registered without an adapter (listed, never dispatched), and oversize bodies sent by
//! clients that write everything before reading (they still read the 413).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Node, NodeOpts, Result};
use serde_json::{Value, json};

#[tokio::test]
async fn an_adapter_this_node_does_not_run_is_a_warning_and_its_tasks_fail_adapter_missing() -> Result {
    let node = Node::start()?;
    let (status, v) = node
        .post(
            "/v1/agents/register",
            json!({"agent_id": "future", "display_name": "Future", "transport_kind": "remote",
                   "adapter": "a2a_future", "capabilities": ["future.only"]}),
        )
        .await?;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["agent"]["agent_id"], "future");
    assert_eq!(v["agent"]["adapter"], "a2a_future");
    let warnings = v["warnings"].as_array().ok_or("no warnings array")?;
    assert_eq!(warnings.len(), 1, "{v}");
    let warning = warnings[0].as_str().unwrap_or_default();
    assert!(warning.contains("a2a_future") && warning.contains("adapter missing"), "{warning}");
    let log = node.log();
    assert!(log.lines().any(|l| l.contains("WARN") && l.contains("a2a_future")), "no WARN line:\n{log}");

    // A registration the node runs carries no warnings at all.
    let (status, v) = node
        .post(
            "/v1/agents/register",
            json!({"agent_id": "fine", "display_name": "Fine", "transport_kind": "x", "adapter": "loopback"}),
        )
        .await?;
    assert_eq!(status, 202, "{v}");
    assert!(v.get("warnings").is_none(), "{v}");

    // It is a target; a task to it is created (202), then fails at run time.
    let (_, targets) = node.get("/v1/targets").await?;
    let listed = targets["targets"].as_array().ok_or("targets")?.iter().find(|t| t["target_id"] == "future").cloned();
    assert_eq!(listed.as_ref().map(|t| t["adapter"].clone()), Some(json!("a2a_future")), "{targets}");
    for body in [json!({"target_agent_id": "future", "intent": "future.only"}), json!({"intent": "future.only"})] {
        let id = node.create_with(body).await?;
        let task = node.wait_status(&id, "failed").await?;
        assert_eq!(task["last_error"], json!({"reason": "adapter missing", "detail": "a2a_future"}), "{task}");
        assert_eq!(task["resolved_agent_id"], "future");
    }
    Ok(())
}

#[test]
fn the_registry_file_still_refuses_an_adapter_this_node_does_not_run() -> Result {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("future.yaml");
    std::fs::write(&path, "targets:\n  future:\n    adapter: a2a_future\n    capabilities: [x]\n")?;
    let out = std::process::Command::new(common::node_bin())
        .args(["--port", "0", "--aether-port", "0", "--database", "sqlite::memory:", "--registry"])
        .arg(&path)
        .arg("--artifact-dir")
        .arg(dir.path().join("a"))
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("future.yaml") && err.contains("adapter 'a2a_future' is not known"), "{err}");
    Ok(())
}

#[tokio::test]
async fn an_agent_without_an_adapter_is_listed_but_never_dispatched() -> Result {
    let node = Node::start()?;
    // Same capability as the file's loopback target `echo`.
    let (status, v) = node
        .post(
            "/v1/agents/register",
            json!({"agent_id": "bare", "display_name": "Bare", "transport_kind": "human",
                   "capabilities": ["demo.echo"]}),
        )
        .await?;
    assert_eq!(status, 202, "{v}");
    assert!(v.get("warnings").is_none(), "{v}");

    let (status, targets) = node.get("/v1/targets").await?;
    assert_eq!(status, 200);
    let all = targets["targets"].as_array().ok_or("targets")?;
    let ids: Vec<&str> = all.iter().filter_map(|t| t["target_id"].as_str()).collect();
    assert_eq!(ids, ["bare", "echo", "other"]);
    let bare = &all[0];
    assert_eq!(bare["owner"], "local");
    assert_eq!(bare["source"], "registered");
    assert_eq!(bare["adapter"], "");
    assert_eq!(bare["state"], "not_dispatchable");
    assert_eq!(bare["runtimes"], json!([]));
    assert_eq!(bare["capabilities"], json!(["demo.echo"]));

    // Explicit target: 404, like an unknown one.
    let (status, v) = node.post("/v1/tasks", json!({"target_agent_id": "bare", "intent": "demo.echo"})).await?;
    assert_eq!(status, 404, "{v}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(msg.starts_with("target agent not found") && msg.contains("bare"), "{msg}");
    // Intent routing ignores it: the loopback target gets the task, no 409.
    let (status, v) = node.post("/v1/tasks", json!({"intent": "demo.echo", "payload": {"text": "hi"}})).await?;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["task"]["resolved_agent_id"], "echo");
    let id = v["task"]["task_id"].as_str().ok_or("id")?.to_owned();
    node.wait_status(&id, "completed").await?;
    // Runtime control does not know it either.
    assert_eq!(node.get("/v1/targets/bare/health").await?.0, 404);
    // But it is a participant like any registered agent.
    let (status, v) = node.post("/v1/threads", json!({"agent_a_id": "echo", "agent_b_id": "bare"})).await?;
    assert_eq!(status, 201, "{v}");
    Ok(())
}

const MIB: usize = 1024 * 1024;

fn limited_node() -> Result<Node> {
    Node::start_with(NodeOpts { extra_args: vec!["--max-body-bytes".into(), MIB.to_string()], ..NodeOpts::default() })
}

/// A JSON task body of about `size` bytes. On loopback 2 MiB can fit the socket buffers, so a
/// node that closed without draining would often get away with it; 6 MiB (within the drain
/// allowance of 8× the limit) does not.
fn big_body(size: usize) -> Vec<u8> {
    let mut body = b"{\"intent\":\"demo.echo\",\"payload\":{\"text\":\"".to_vec();
    body.resize(size, b'x');
    body.extend_from_slice(b"\"}}");
    body
}

fn host_port(node: &Node) -> Result<String> {
    Ok(node.base.strip_prefix("http://").ok_or("base")?.to_owned())
}

/// Writes `head` then `body` in full, then reads the whole answer: `(status, JSON body)`.
fn write_all_then_read(node: &Node, head: &str, body: &[u8]) -> Result<(u16, Value)> {
    let mut tcp = TcpStream::connect(host_port(node)?)?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(20)))?;
    tcp.write_all(head.as_bytes())?;
    tcp.write_all(body)?;
    tcp.flush()?;
    read_answer(&mut tcp)
}

fn read_answer(tcp: &mut TcpStream) -> Result<(u16, Value)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    // Read until the declared body is complete (the connection may stay open).
    loop {
        let n = tcp.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|len| raw.len() >= end + 4 + len) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    Ok((status, serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()))))
}

fn assert_413(status: u16, v: &Value) {
    assert_eq!(status, 413, "{v}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(msg.contains("limit") && msg.contains("1048576"), "{msg}");
}

#[test]
fn a_client_that_writes_its_whole_body_first_still_reads_the_413() -> Result {
    let node = limited_node()?;
    for size in [2 * MIB, 6 * MIB] {
        let body = big_body(size);
        let head = format!(
            "POST /v1/tasks HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            host_port(&node)?,
            body.len()
        );
        let (status, v) = write_all_then_read(&node, &head, &body)?;
        assert_413(status, &v);
    }
    let body = big_body(6 * MIB);

    // Without a declared length (chunked), found too large while reading: the same.
    let mut chunked = Vec::new();
    for piece in body.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /v1/agents/register HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        host_port(&node)?
    );
    let (status, v) = write_all_then_read(&node, &head, &chunked)?;
    assert_413(status, &v);

    // A client waiting for `100 Continue` is answered at once and sends nothing.
    let mut tcp = TcpStream::connect(host_port(&node)?)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        host_port(&node)?,
        body.len()
    );
    tcp.write_all(head.as_bytes())?;
    let (status, v) = read_answer(&mut tcp)?;
    assert_413(status, &v);

    // Nothing was created and the node still serves.
    let (ok, _) = write_all_then_read(
        &node,
        &format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", host_port(&node)?),
        b"",
    )?;
    assert_eq!(ok, 200);
    Ok(())
}

#[test]
fn python_http_client_reads_the_413() -> Result {
    if std::process::Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 not found; skipping");
        return Ok(());
    }
    let node = limited_node()?;
    let (host, port) = host_port(&node)?.rsplit_once(':').map(|(h, p)| (h.to_owned(), p.to_owned())).ok_or("addr")?;
    let script = r#"
import http.client, json, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = b'{"intent":"demo.echo","payload":{"text":"' + b'x' * size + b'"}}'
c = http.client.HTTPConnection(host, port, timeout=30)
c.request("POST", "/v1/tasks", body=body, headers={"Content-Type": "application/json"})
r = c.getresponse()
print(json.dumps({"status": r.status, "body": json.loads(r.read())}))
"#;
    for size in [2 * MIB, 6 * MIB] {
        let out =
            std::process::Command::new("python3").args(["-c", script, &host, &port, &size.to_string()]).output()?;
        assert!(out.status.success(), "python failed ({size} bytes): {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout)?;
        assert_413(v["status"].as_u64().unwrap_or(0) as u16, &v["body"]);
    }
    Ok(())
}
