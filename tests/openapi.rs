//! `GET /v1/openapi.json`, black-box: a real node serves an OpenAPI 3.1 document whose operations
//! are the router's (the router and the document are built from one list, `api::routes`; here each
//! documented operation is routed on the live node, not answered by the fallback), each declaring
//! the refusals every route can give, and every route is in `docs/api.md`, the human reference.

mod common;

use std::collections::BTreeSet;

use common::{Node, Result};
use serde_json::Value;

/// `(METHOD, path)` of every operation in a document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// A text with every `{param}` (lower-case letters and `_`) written `{}` (docs/api.md names them
/// `{id}`).
fn shape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            out.push_str("{}");
            rest = &after[name_len + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_lists_every_route() -> Result {
    let node = Node::start()?;
    let resp = node.http.get(node.url("/v1/openapi.json")).send().await?;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(content_type, "application/json");
    let doc: Value = resp.json().await?;

    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", doc["openapi"]);
    assert!(doc["info"]["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    // The served document is the one the router is built from.
    let built: Value = serde_json::from_str(aethrolink::api::openapi_json())?;
    assert_eq!(doc, built);

    let ops = operations(&doc);
    assert!(ops.len() >= 41, "{} operations: {ops:?}", ops.len());
    for must in
        [("GET", "/v1/openapi.json"), ("POST", "/v1/tasks"), ("GET", "/metrics"), ("GET", "/artifacts/{artifact_id}")]
    {
        assert!(ops.contains(&(must.0.to_owned(), must.1.to_owned())), "{must:?} missing");
    }

    let mut ids = BTreeSet::new();
    for (method, path) in &ops {
        let op = &doc["paths"][path][method.to_ascii_lowercase()];
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        assert!(!id.is_empty() && ids.insert(id.clone()), "{method} {path}: operationId {id:?} missing or repeated");
        let responses = op["responses"].as_object().ok_or("no responses")?;
        // The guard answers every route.
        for status in ["421", "403"] {
            assert!(responses.contains_key(status), "{method} {path} does not declare {status}");
        }
        if method == "POST" {
            for status in ["400", "413", "415"] {
                assert!(responses.contains_key(status), "{method} {path} does not declare {status}");
            }
        }
        if path.contains('{') {
            assert!(responses.contains_key("404"), "{method} {path} does not declare 404");
        }
        if !["/ping", "/healthz"].contains(&path.as_str()) {
            assert!(responses.contains_key("401"), "{method} {path} does not declare 401");
        }
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} declares no success: {:?}",
            responses.keys()
        );

        // Routed on the live node: answered by its handler, not by the fallback.
        let concrete = path.replace("{task_id}", "01JNOSUCHTASK00000000000000").replace('{', "x").replace('}', "");
        let request = node.http.request(method.parse()?, node.url(&concrete));
        let request = if method == "POST" { request.json(&serde_json::json!({})) } else { request };
        // SSE of an unknown task: 404 at once; a stream would be a real route too.
        let resp = request.timeout(std::time::Duration::from_secs(10)).send().await?;
        let status = resp.status().as_u16();
        // The feed of every task's events never ends: its answer is the head.
        let endless = path == "/v1/events" && status == 200;
        let body = if endless { String::new() } else { resp.text().await.unwrap_or_default() };
        assert_ne!(status, 405, "{method} {path} is documented but not routed: {body}");
        assert!(!body.contains("no route for"), "{method} {path} is documented but not routed: {body}");
        assert!(
            responses.contains_key(&status.to_string()),
            "{method} {concrete} answered {status}, which its operation does not declare: {body}"
        );
    }

    // docs/api.md, the human reference, describes every route.
    let reference = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))?;
    let documented: String = shape(&reference);
    for (method, path) in &ops {
        let needle = format!("`{method} {}", shape(path));
        assert!(documented.contains(&needle), "docs/api.md does not describe {method} {path}");
    }
    Ok(())
}
