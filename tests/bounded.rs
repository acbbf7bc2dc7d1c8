//! The HTTP listener's bounds, against the real binary: header-read and idle timeouts (an SSE
//! stream is never cut), the connection limit's 503, a declared oversized body refused unread,
//! a SIGTERM exit bounded whatever clients hold, TLS, and the refusal to serve plaintext off
//! loopback.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Node, NodeOpts, Result, kinds};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

fn start(args: &[&str]) -> Result<Node> {
    Node::start_with(NodeOpts { extra_args: args.iter().map(|s| (*s).to_owned()).collect(), ..NodeOpts::default() })
}

/// `host:port` of the node.
fn addr(node: &Node) -> String {
    node.base.trim_start_matches("https://").trim_start_matches("http://").to_owned()
}

/// Reads until the peer closes (or `within` passes); `(bytes, closed, elapsed)`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (out, closed, started.elapsed())
}

/// Reads one HTTP/1.1 response with a `content-length` body; `(status, head, body)`.
async fn read_response(stream: &mut TcpStream) -> Result<(u16, String, String)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                let body = String::from_utf8_lossy(&data[end + 4..end + 4 + length]).into_owned();
                return Ok((status, head, body));
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await??;
        if n == 0 {
            return Err(format!("closed before a full response: {:?}", String::from_utf8_lossy(&data)).into());
        }
        data.extend_from_slice(&buf[..n]);
    }
}

async fn ping_on(stream: &mut TcpStream) -> Result<u16> {
    stream.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n").await?;
    Ok(read_response(stream).await?.0)
}

#[tokio::test]
async fn a_stalled_request_head_is_cut_after_the_header_read_timeout() -> Result {
    let node = start(&["--header-read-timeout", "1s"])?;
    let mut half = TcpStream::connect(addr(&node)).await?;
    half.write_all(b"GET /pi").await?;
    let mut silent = TcpStream::connect(addr(&node)).await?;
    let (bytes, closed, took) = read_until_closed(&mut half, Duration::from_secs(5)).await;
    assert!(closed, "the half-sent request's connection stays open");
    assert!(bytes.is_empty(), "nothing is answered: {:?}", String::from_utf8_lossy(&bytes));
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(3), "closed after {took:?}");
    let (_, closed, took) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(closed && took < Duration::from_secs(3), "a connection that sends nothing is closed too ({took:?})");
    assert_eq!(node.get("/ping").await?.0, 200, "others are served");
    Ok(())
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_an_sse_stream_is_not() -> Result {
    let node = start(&["--idle-timeout", "1s"])?;
    let id = node.create(json!({ "mode": "await_input" })).await?;
    node.wait_status(&id, "awaiting_input").await?;
    let resp = node.http.get(node.url(&format!("/v1/tasks/{id}/events"))).send().await?;
    assert_eq!(resp.status(), 200);
    let opened = Instant::now();

    let mut kept = TcpStream::connect(addr(&node)).await?;
    assert_eq!(ping_on(&mut kept).await?, 200);
    let (_, closed, took) = read_until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(closed, "the idle keep-alive connection stays open");
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(3), "closed after {took:?}");

    // The stream, open for well past the idle timeout, still carries the task to its end.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(opened.elapsed())).await;
    let (status, v) = node.post(&format!("/v1/tasks/{id}/resume"), json!({ "payload": { "ok": true } })).await?;
    assert_eq!(status, 202, "{v}");
    let mut events = Vec::new();
    let mut stream = resp.bytes_stream().eventsource();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => events.push(serde_json::from_str::<Value>(&ev.data).unwrap_or_default()),
                Err(e) => panic!("the SSE stream broke after {:?}: {e}", opened.elapsed()),
            }
        }
    })
    .await?;
    assert!(opened.elapsed() > Duration::from_secs(2));
    assert_eq!(kinds(&events).last().map(String::as_str), Some("task.completed"), "{events:?}");
    Ok(())
}

#[tokio::test]
async fn beyond_max_connections_a_new_client_gets_503_and_the_open_ones_are_served() -> Result {
    let node = start(&["--max-connections", "4", "--header-read-timeout", "2s", "--idle-timeout", "30s"])?;
    let mut kept = TcpStream::connect(addr(&node)).await?;
    assert_eq!(ping_on(&mut kept).await?, 200);
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(addr(&node)).await?);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut extra = TcpStream::connect(addr(&node)).await?;
    extra.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n").await?;
    let (bytes, closed, took) = read_until_closed(&mut extra, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&bytes).to_string();
    assert!(closed && took < Duration::from_secs(1), "answered and closed at once, not after {took:?}: {text}");
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no complete head")?;
    let head = head.to_lowercase();
    assert!(head.starts_with("http/1.1 503 service unavailable"), "{head}");
    for want in ["content-type: application/json", "retry-after: 1", "connection: close"] {
        assert!(head.contains(want), "{want} missing: {head}");
    }
    let v: Value = serde_json::from_str(body)?;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("--max-connections")), "{v}");

    assert_eq!(ping_on(&mut kept).await?, 200, "an open connection keeps being served");
    // The silent connections are reaped at the header-read timeout; then new clients get in.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(node.get("/ping").await?.0, 200);
    let (_, metrics) = node.get("/metrics").await?;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(metrics.contains(r#"alink_http_connections_closed_total{reason="limit"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"alink_http_connections_closed_total{reason="header_read_timeout"} 3"#), "{metrics}");
    drop(idle);
    Ok(())
}

#[tokio::test]
async fn an_idle_connection_flood_does_not_lock_clients_out() -> Result {
    // 600 silent connections against the default limit of 512.
    let node = start(&["--header-read-timeout", "1s"])?;
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..600 {
        flood.push(TcpStream::connect(addr(&node)).await?);
    }
    let flooded_in = started.elapsed();
    let quick = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let (status, took) = {
        let asked = Instant::now();
        let resp = quick.get(node.url("/ping")).send().await?;
        (resp.status().as_u16(), asked.elapsed())
    };
    if flooded_in < Duration::from_millis(500) {
        assert_eq!(status, 503, "with the limit reached a new client is refused");
    }
    assert!(took < Duration::from_secs(1), "answered at once, not after {took:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(node.get("/ping").await?.0, 200, "once the idle ones are reaped a client is served");
    drop(flood);
    Ok(())
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_unread() -> Result {
    let node = start(&[])?;
    let mut stream = TcpStream::connect(addr(&node)).await?;
    let asked = Instant::now();
    stream
        .write_all(
            b"POST /v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n",
        )
        .await?;
    let (status, _, body) = read_response(&mut stream).await?;
    assert_eq!(status, 413, "{body}");
    assert!(asked.elapsed() < Duration::from_secs(2), "refused after {:?}", asked.elapsed());
    let v: Value = serde_json::from_str(&body)?;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("--max-body-bytes")), "{v}");
    Ok(())
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_exits_within_the_grace_whatever_clients_hold() -> Result {
    let mut node = start(&["--shutdown-grace", "2s", "--header-read-timeout", "1m", "--idle-timeout", "1m"])?;
    let at = addr(&node);
    let id = node.create(json!({ "mode": "await_input" })).await?;
    node.wait_status(&id, "awaiting_input").await?;
    let sse = node.http.get(node.url(&format!("/v1/tasks/{id}/events"))).send().await?;
    assert_eq!(sse.status(), 200);
    // A half-sent request head, a request whose body never comes, and one whose body ends
    // after the signal.
    let mut half_head = TcpStream::connect(&at).await?;
    half_head.write_all(b"GET /ping HT").await?;
    let mut stalled_body = TcpStream::connect(&at).await?;
    stalled_body
        .write_all(b"POST /v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"target")
        .await?;
    let body = json!({ "target_agent_id": "echo", "intent": "demo.echo", "payload": {} }).to_string();
    let (first, rest) = body.split_at(10);
    let mut finishing = TcpStream::connect(&at).await?;
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        body.len()
    );
    finishing.write_all(head.as_bytes()).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stopping = tokio::task::spawn_blocking(move || {
        let stopped = node.stop().map_err(|e| e.to_string());
        stopped.map(|r| (r, node))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    finishing.write_all(rest.as_bytes()).await?;
    let (status, _, answer) = read_response(&mut finishing).await?;
    assert_eq!(status, 202, "an in-flight request finishes during the grace: {answer}");
    let sse_ended = tokio::time::timeout(Duration::from_secs(5), sse.bytes()).await;
    assert!(sse_ended.is_ok(), "the SSE stream ends on shutdown");

    let ((code, took), node) = stopping.await??;
    assert_eq!(code, Some(0), "{}", node.log());
    assert!(took < Duration::from_secs(8), "exit took {took:?}");
    assert!(took >= Duration::from_millis(1500), "the stalled request was given the grace ({took:?})");
    assert!(node.log().contains("shutdown grace over"), "{}", node.log());
    drop((half_head, stalled_body));
    Ok(())
}

/// A self-signed certificate for 127.0.0.1 and localhost; `(cert.pem, key.pem, der)` in `dir`.
fn make_cert(dir: &std::path::Path) -> Result<(String, String, CertificateDer<'static>)> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, signing_key.serialize_pem())?;
    Ok((cert_path.display().to_string(), key_path.display().to_string(), cert.der().clone()))
}

fn connector(root: CertificateDer<'static>, alpn: &[&[u8]]) -> Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    roots.add(root)?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn body_text(resp: hyper::Response<hyper::body::Incoming>) -> Result<String> {
    let bytes = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), 1 << 20).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn tls_serves_http1_and_h2_and_plain_http_on_its_port_fails() -> Result {
    let certs = tempfile::tempdir()?;
    let (cert, key, der) = make_cert(certs.path())?;
    let node = start(&["--tls-cert", &cert, "--tls-key", &key])?;
    assert!(node.base.starts_with("https://127.0.0.1:"), "{}", node.base);
    let at = addr(&node);
    let name = ServerName::try_from("localhost")?;

    // HTTP/1.1 over TLS; the browser guard's own origin is https.
    let tls = connector(der.clone(), &[b"http/1.1"])?.connect(name.clone(), TcpStream::connect(&at).await?).await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut h1, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let port = at.rsplit(':').next().unwrap_or_default();
    let get = |origin: Option<String>| {
        let mut req = hyper::Request::get("/ping").header("host", format!("localhost:{port}"));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.body(axum::body::Body::empty())
    };
    let resp = h1.send_request(get(None)?).await?;
    assert_eq!(resp.status(), 200);
    assert!(body_text(resp).await?.contains("aethrolink"));
    let resp = h1.send_request(get(Some(format!("https://localhost:{port}")))?).await?;
    assert_eq!(resp.status(), 200, "the node's own https origin");
    let resp = h1.send_request(get(Some(format!("http://localhost:{port}")))?).await?;
    assert_eq!(resp.status(), 403, "plain http is another origin under TLS");

    // h2, chosen by ALPN.
    let tls = connector(der.clone(), &[b"h2", b"http/1.1"])?.connect(name, TcpStream::connect(&at).await?).await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("https://localhost:{port}/ping")).body(axum::body::Body::empty())?;
    let resp = h2.send_request(req).await?;
    assert_eq!((resp.status().as_u16(), resp.version()), (200, hyper::Version::HTTP_2));

    // Plain HTTP to the TLS port is answered with a hint, not served.
    let resp = reqwest::get(format!("http://{at}/ping")).await?;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await?;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("https://")), "{v}");

    // A failed handshake does not stop the accept loop.
    let mut garbage = TcpStream::connect(&at).await?;
    garbage.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3]).await?;
    garbage.shutdown().await?;
    let (_, closed, _) = read_until_closed(&mut garbage, Duration::from_secs(5)).await;
    assert!(closed);
    let tls = connector(der, &[b"http/1.1"])?
        .connect(ServerName::try_from("127.0.0.1")?, TcpStream::connect(&at).await?)
        .await?;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    assert_eq!(h1.send_request(get(None)?).await?.status(), 200, "served after a failed handshake");
    Ok(())
}

/// Runs the node expecting it to refuse to start; returns its stderr.
fn refused_start(args: &[&str]) -> Result<(String, std::path::PathBuf)> {
    let dir = tempfile::tempdir()?.keep();
    let out = std::process::Command::new(common::node_bin())
        .args(["--port", "0", "--aether-port", "0", "--database"])
        .arg(format!("sqlite://{}", dir.join("node.db").display()))
        .arg("--artifact-dir")
        .arg(dir.join("artifacts"))
        .args(args)
        .current_dir(&dir)
        .output()?;
    assert!(!out.status.success(), "started: {}", String::from_utf8_lossy(&out.stdout));
    assert!(out.stdout.is_empty(), "nothing listened: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!dir.join("node.db").exists(), "refused before any side effect");
    assert!(!dir.join("node.db.lock").exists(), "refused before the database's lock");
    Ok((String::from_utf8_lossy(&out.stderr).into_owned(), dir))
}

#[tokio::test]
async fn bad_tls_files_refuse_the_start_naming_the_flag_and_file() -> Result {
    let certs = tempfile::tempdir()?;
    let (cert, key, _) = make_cert(certs.path())?;
    let missing = certs.path().join("nope.pem").display().to_string();
    let (err, _) = refused_start(&["--tls-cert", &missing, "--tls-key", &key])?;
    assert!(err.contains("--tls-cert") && err.contains("nope.pem"), "{err}");
    let garbage = certs.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key\n")?;
    let garbage = garbage.display().to_string();
    let (err, _) = refused_start(&["--tls-cert", &cert, "--tls-key", &garbage])?;
    assert!(err.contains("--tls-key") && err.contains("garbage.pem"), "{err}");
    // The key of another certificate.
    let other = tempfile::tempdir()?;
    let (_, other_key, _) = make_cert(other.path())?;
    let (err, _) = refused_start(&["--tls-cert", &cert, "--tls-key", &other_key])?;
    assert!(err.contains("--tls-key") && err.contains("--tls-cert"), "{err}");
    let (err, _) = refused_start(&["--tls-cert", &cert])?;
    assert!(err.contains("--tls-key"), "one without the other: {err}");
    Ok(())
}

#[tokio::test]
async fn plaintext_off_loopback_is_refused_unless_insecure_plaintext() -> Result {
    let (err, _) = refused_start(&["--host", "0.0.0.0"])?;
    assert!(
        err.contains("non-loopback") && err.contains("--insecure-plaintext") && err.contains("--tls-cert"),
        "{err}"
    );
    let node = start(&["--host", "0.0.0.0", "--insecure-plaintext"])?;
    let port = addr(&node).rsplit(':').next().unwrap_or_default().to_owned();
    let (status, _) = node.request(reqwest::Method::GET, "/ping", None).await?;
    assert_eq!(status, 200);
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/ping")).await?;
    assert_eq!(resp.status(), 200);
    assert!(node.log().contains("plaintext HTTP on a non-loopback address"), "{}", node.log());

    let certs = tempfile::tempdir()?;
    let (cert, key, der) = make_cert(certs.path())?;
    let tls = start(&["--host", "0.0.0.0", "--tls-cert", &cert, "--tls-key", &key])?;
    assert!(tls.base.starts_with("https://"), "with TLS no flag is needed: {}", tls.base);
    assert!(tls.aether.is_empty(), "a plaintext gateway off loopback is not served: {}", tls.log());
    assert!(tls.log().contains("--aether-tls-cert"), "the warning names the way out: {}", tls.log());
    drop(tls);

    // With its own TLS the gateway is served off loopback too, speaking h2 over TLS.
    let gw = start(&[
        "--host",
        "0.0.0.0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--aether-tls-cert",
        &cert,
        "--aether-tls-key",
        &key,
    ])?;
    let port = gw.aether.rsplit(':').next().unwrap_or_default().to_owned();
    assert!(!port.is_empty(), "gateway served with TLS off loopback: {}", gw.log());
    let tcp = TcpStream::connect(format!("127.0.0.1:{port}")).await?;
    let stream = connector(der, &[b"h2"])?.connect("localhost".try_into()?, tcp).await?;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    Ok(())
}

#[test]
fn gateway_tls_flags_go_together_and_bad_files_refuse_the_start() -> Result {
    let certs = tempfile::tempdir()?;
    let (cert, key, _) = make_cert(certs.path())?;
    let (err, _) = refused_start(&["--aether-tls-cert", &cert])?;
    assert!(err.contains("--aether-tls-key"), "one without the other: {err}");
    let (err, _) = refused_start(&["--aether-tls-client-ca", &cert])?;
    assert!(err.contains("--aether-tls-cert"), "client CA alone: {err}");
    let (err, _) = refused_start(&["--aether-tls-cert", &cert, "--aether-tls-key", &cert])?;
    assert!(err.contains("--aether-tls-key"), "a certificate is not a key: {err}");
    let (err, _) =
        refused_start(&["--aether-tls-cert", &cert, "--aether-tls-key", &key, "--aether-tls-client-ca", &key])?;
    assert!(err.contains("--aether-tls-client-ca"), "a key is not a CA: {err}");
    Ok(())
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_the_documented_json_error() -> Result {
    let node = start(&[])?;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "a".repeat(70_000));
    let big_header = format!("GET /ping HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "b".repeat(600_000));
    let cases: [(&[u8], u16); 4] = [
        (b"GET /ping HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n", 400),
        (b"G\x01T /ping HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
        (long_uri.as_bytes(), 414),
        (big_header.as_bytes(), 431),
    ];
    for (request, expected) in cases {
        let mut stream = TcpStream::connect(addr(&node)).await?;
        // The node may answer (and close) before a huge request is written: that is fine.
        let _ = stream.write_all(request).await;
        let (status, head, body) = read_response(&mut stream).await?;
        // An over-long URI may fill hyper's head buffer first: 431 is its answer then.
        let fits = status == expected || (expected == 414 && status == 431);
        assert!(fits, "expected {expected}: {head}\n{body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let v: Value = serde_json::from_str(&body)?;
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    }
    // The connection after an ordinary 4xx of the router is untouched.
    let mut stream = TcpStream::connect(addr(&node)).await?;
    stream.write_all(b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n").await?;
    let (status, _, body) = read_response(&mut stream).await?;
    assert_eq!(status, 404, "{body}");
    assert_eq!(ping_on(&mut stream).await?, 200);
    Ok(())
}
