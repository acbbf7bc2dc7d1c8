//! A browser-safe API (issue 13 items 4 and 6), black-box against the real binary: a web page
//! cannot post to the node (415 for a non-JSON body, 403 for a foreign Origin), a rebound DNS
//! name is not served (421), and every error is `{"error": …}` with no server path in it.

mod common;

use common::{Node, NodeOpts, Result};
use reqwest::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE, HOST, ORIGIN};
use serde_json::{Value, json};

const TASK: &str = r#"{"target_agent_id":"echo","intent":"demo.echo","payload":{"text":"hi"}}"#;

/// `(status, headers, body)`; the body is JSON if it parses, else a string.
async fn send(req: reqwest::RequestBuilder) -> Result<(u16, reqwest::header::HeaderMap, Value)> {
    let resp = req.timeout(std::time::Duration::from_secs(30)).send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await?;
    Ok((status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

fn error_text(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}

async fn task_count(node: &Node) -> Result<usize> {
    let (status, v) = node.get("/v1/tasks").await?;
    assert_eq!(status, 200, "{v}");
    Ok(v["tasks"].as_array().map_or(0, Vec::len))
}

fn port_of(node: &Node) -> Result<String> {
    Ok(node.base.rsplit(':').next().ok_or("port")?.to_owned())
}

#[tokio::test]
async fn bodies_must_be_json_and_nothing_is_created_otherwise() -> Result {
    let node = Node::start()?;
    let url = node.url("/v1/tasks");
    // What a page's `fetch(…, {mode: "no-cors"})` can send: text/plain, form, or no type at all.
    for ctype in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data"), None] {
        let mut req = node.http.post(&url).body(TASK);
        if let Some(t) = ctype {
            req = req.header(CONTENT_TYPE, t);
        }
        let (status, _, v) = send(req).await?;
        assert_eq!(status, 415, "{ctype:?}: {v}");
        assert!(error_text(&v).contains("application/json"), "{ctype:?}: {v}");
    }
    // A body on a route that reads none is refused too.
    let (status, _, v) =
        send(node.http.post(node.url("/v1/targets/echo/stop")).header(CONTENT_TYPE, "text/plain").body("x")).await?;
    assert_eq!(status, 415, "{v}");
    assert_eq!(task_count(&node).await?, 0, "nothing was created");

    // JSON with parameters is fine; so is a POST with neither body nor type where the body is optional.
    let (status, _, v) =
        send(node.http.post(&url).header(CONTENT_TYPE, "application/json; charset=utf-8").body(TASK)).await?;
    assert_eq!(status, 202, "{v}");
    let id = v["task"]["task_id"].as_str().ok_or("task id")?.to_owned();
    let (status, _, v) = send(node.http.post(node.url(&format!("/v1/tasks/{id}/cancel")))).await?;
    assert!(status == 200 || status == 202, "{status} {v}");
    Ok(())
}

#[tokio::test]
async fn a_foreign_host_is_misdirected_unless_allowed() -> Result {
    let node = Node::start()?;
    let port = port_of(&node)?;
    for host in ["evil.example", &format!("evil.example:{port}"), "localhost.evil.example", "127.0.0.1.nip.io"] {
        let (status, _, v) = send(node.http.get(node.url("/v1/tasks")).header(HOST, host)).await?;
        assert_eq!(status, 421, "{host}: {v}");
        assert!(error_text(&v).contains("--allowed-host"), "{host}: {v}");
        let (status, _, v) = send(
            node.http
                .post(node.url("/v1/tasks"))
                .header(HOST, host)
                .header(CONTENT_TYPE, "application/json")
                .body(TASK),
        )
        .await?;
        assert_eq!(status, 421, "{host}: {v}");
    }
    assert_eq!(task_count(&node).await?, 0);
    for host in ["localhost", &format!("localhost:{port}"), &format!("127.0.0.1:{port}"), &format!("[::1]:{port}")] {
        let (status, _, v) = send(node.http.get(node.url("/healthz")).header(HOST, host)).await?;
        assert_eq!(status, 200, "{host}: {v}");
    }

    let allowed = Node::start_with(NodeOpts {
        extra_args: vec![
            "--allowed-host".into(),
            "node.example".into(),
            "--allowed-host".into(),
            "proxy.example:8443".into(),
        ],
        ..NodeOpts::default()
    })?;
    let port = port_of(&allowed)?;
    for (host, want) in [
        (format!("node.example:{port}"), 200),
        ("NODE.example".to_owned(), 200),
        ("proxy.example:8443".to_owned(), 200),
        ("proxy.example:9000".to_owned(), 421),
        ("evil.example".to_owned(), 421),
    ] {
        let (status, _, v) = send(allowed.http.get(allowed.url("/healthz")).header(HOST, &host)).await?;
        assert_eq!(status, want, "{host}: {v}");
    }
    Ok(())
}

#[test]
fn a_bad_allow_list_entry_refuses_the_start() -> Result {
    for (flag, value) in
        [("--allowed-origin", "*"), ("--allowed-origin", "http://x.example/app"), ("--allowed-host", "http://x")]
    {
        let started = Node::start_with(NodeOpts { extra_args: vec![flag.into(), value.into()], ..NodeOpts::default() });
        let Err(e) = started else { return Err(format!("{flag} {value} was accepted").into()) };
        assert!(e.to_string().contains(flag), "{e}");
    }
    Ok(())
}

#[tokio::test]
async fn foreign_origins_are_refused_and_configured_ones_granted() -> Result {
    let node = Node::start_with(NodeOpts {
        extra_args: vec!["--allowed-origin".into(), "https://console.example".into()],
        ..NodeOpts::default()
    })?;
    let post = |origin: &str| {
        node.http.post(node.url("/v1/tasks")).header(ORIGIN, origin).header(CONTENT_TYPE, "application/json").body(TASK)
    };
    for origin in ["http://evil.example", "null", "http://localhost:1", "https://console.example.evil"] {
        let (status, headers, v) = send(post(origin)).await?;
        assert_eq!(status, 403, "{origin}: {v}");
        assert!(error_text(&v).contains("--allowed-origin"), "{origin}: {v}");
        assert!(headers.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "no CORS grant to {origin}");
        let (status, _, v) = send(node.http.get(node.url("/v1/tasks")).header(ORIGIN, origin)).await?;
        assert_eq!(status, 403, "a read too: {origin}: {v}");
    }
    assert_eq!(task_count(&node).await?, 0, "nothing was created");

    // The node's own origin (a page it would serve): allowed, without CORS headers.
    let (status, headers, v) = send(post(&node.base)).await?;
    assert_eq!(status, 202, "{v}");
    assert!(headers.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());

    // A configured origin: allowed, granted, its preflight answered.
    let (status, headers, v) = send(post("https://console.example")).await?;
    assert_eq!(status, 202, "{v}");
    assert_eq!(headers.get(ACCESS_CONTROL_ALLOW_ORIGIN).and_then(|v| v.to_str().ok()), Some("https://console.example"));
    let preflight = node
        .http
        .request(reqwest::Method::OPTIONS, node.url("/v1/tasks"))
        .header(ORIGIN, "https://console.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type");
    let (status, headers, _) = send(preflight).await?;
    assert_eq!(status, 204);
    assert_eq!(headers.get(ACCESS_CONTROL_ALLOW_ORIGIN).and_then(|v| v.to_str().ok()), Some("https://console.example"));
    let allowed = headers.get("access-control-allow-headers").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(allowed.contains("content-type"), "{allowed}");
    let foreign = node
        .http
        .request(reqwest::Method::OPTIONS, node.url("/v1/tasks"))
        .header(ORIGIN, "http://evil.example")
        .header("access-control-request-method", "POST");
    let (status, headers, _) = send(foreign).await?;
    assert_eq!(status, 403);
    assert!(headers.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());

    // Without a configured origin no response carries a grant.
    let plain = Node::start()?;
    let (_, headers, _) = send(plain.http.get(plain.url("/v1/tasks"))).await?;
    assert!(headers.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    Ok(())
}

#[tokio::test]
async fn bad_query_parameters_are_400_naming_them() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"text": "x"})).await?;
    let cases = [
        ("/v1/tasks?cursor=garbage", "cursor"),
        ("/v1/tasks?limit=0", "limit"),
        ("/v1/tasks?limit=abc", "limit"),
        ("/v1/tasks?status=bogus", "status"),
        ("/v1/tasks?colour=red", "colour"),
        (&format!("/v1/tasks/{id}/events?after=soon"), "after"),
        ("/v1/threads?limit=0", "limit"),
        ("/v1/threads?status=bogus", "status"),
        ("/v1/targets?refresh=maybe", "refresh"),
    ];
    for (path, param) in cases {
        let (status, v) = node.get(path).await?;
        assert_eq!(status, 400, "{path}: {v}");
        assert!(error_text(&v).contains(param), "{path}: {v}");
    }
    // A bare task id is not a cursor (cursors are opaque); the one a page hands out pages.
    let (status, v) = node.get(&format!("/v1/tasks?cursor={id}")).await?;
    assert_eq!(status, 400, "{v}");
    node.create(json!({"text": "y"})).await?;
    let (status, page) = node.get("/v1/tasks?limit=1").await?;
    assert_eq!(status, 200, "{page}");
    let cursor = page["next_cursor"].as_str().ok_or("no next_cursor on a full page")?;
    let (status, v) = node.get(&format!("/v1/tasks?limit=1&cursor={cursor}")).await?;
    assert_eq!(status, 200, "{v}");
    Ok(())
}

#[tokio::test]
async fn every_error_is_json_and_free_of_server_paths() -> Result {
    let node = Node::start_with(NodeOpts {
        extra_args: vec!["--max-body-bytes".into(), "2048".into(), "--artifact-inline-max".into(), "16".into()],
        ..NodeOpts::default()
    })?;
    // The router's own refusals, and the raw-body node-protocol route over the limit.
    let (status, v) = node.get("/no/such/route").await?;
    assert_eq!((status, v["error"].is_string()), (404, true), "{v}");
    let (status, v) = node.request(reqwest::Method::DELETE, "/v1/tasks", None).await?;
    assert_eq!((status, v["error"].is_string()), (405, true), "{v}");
    let big = format!("{{\"payload\":\"{}\"}}", "x".repeat(4096));
    let (status, v) = node.post_raw("/v1/node/tasks", "application/json", big).await?;
    assert_eq!(status, 413, "{v}");
    assert!(v["error"].is_string(), "{v}");

    // Storage of large payloads fails (the artifact directory is now a file): the answer names
    // no path and no OS error, and quotes an error id the log has the detail under.
    let artifacts = node.dir.join("artifacts");
    std::fs::remove_dir_all(&artifacts)?;
    std::fs::write(&artifacts, b"not a directory")?;
    let (status, v) = node
        .post(
            "/v1/tasks",
            json!({"target_agent_id": "echo", "intent": "demo.echo", "payload": {"text": "x".repeat(64)}}),
        )
        .await?;
    let body = v.to_string();
    let dir = node.dir.display().to_string();
    assert!(status >= 500, "{status} {v}");
    assert!(!body.contains(&dir) && !body.contains("os error") && !body.contains("/artifacts"), "{body}");
    let error_id = v["error_id"].as_str().ok_or_else(|| format!("no error_id: {v}"))?;
    let log = node.log();
    assert!(log.contains(error_id), "the log has the detail under {error_id}:\n{log}");
    Ok(())
}
