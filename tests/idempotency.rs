//! Idempotent task creation, black-box against the real binary: `Idempotency-Key` (or the body's
//! `idempotency_key`) makes a retried `POST /v1/tasks` answer with the task it created (200,
//! `Idempotent-Replayed: true`), also under 50 concurrent identical POSTs and across a restart;
//! the same key with another request is a 422 naming the key; a node-protocol submit sent again
//! for the same proxy task answers with the same destination task.

mod common;

use common::{Node, NodeOpts, Result};
use serde_json::{Value, json};

/// `(status, Idempotent-Replayed header, body)` of a create with `key`.
async fn create(node: &Node, key: Option<&str>, body: &Value) -> Result<(u16, Option<String>, Value)> {
    let mut req = node.http.post(node.url("/v1/tasks")).json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let replayed = resp.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok((status, replayed, resp.json().await?))
}

fn echo(text: &str) -> Value {
    json!({ "target_agent_id": "echo", "intent": "demo.echo", "payload": { "text": text } })
}

async fn task_count(node: &Node) -> Result<usize> {
    let (_, v) = node.get("/v1/tasks?limit=500").await?;
    Ok(v["tasks"].as_array().map_or(0, Vec::len))
}

#[tokio::test]
async fn a_retried_create_with_the_same_key_answers_with_the_first_task() -> Result {
    let node = Node::start()?;
    let (status, replayed, first) = create(&node, Some("order-1"), &echo("hi")).await?;
    assert_eq!((status, replayed), (202, None), "{first}");
    let id = first["task"]["task_id"].as_str().ok_or("no id")?.to_owned();
    node.wait_status(&id, "completed").await?;

    let (status, replayed, again) = create(&node, Some("order-1"), &echo("hi")).await?;
    assert_eq!((status, replayed.as_deref()), (200, Some("true")), "{again}");
    assert_eq!(again["task"]["task_id"], id.as_str());
    // The replay shows the task as it is now.
    assert_eq!(again["task"]["status"], "completed");
    // The body's key is the same key.
    let mut body = echo("hi");
    body["idempotency_key"] = json!("order-1");
    let (status, _, v) = create(&node, None, &body).await?;
    assert_eq!((status, v["task"]["task_id"].as_str()), (200, Some(id.as_str())));
    // Another key (or none) creates another task.
    assert_eq!(create(&node, Some("order-2"), &echo("hi")).await?.0, 202);
    assert_eq!(create(&node, None, &echo("hi")).await?.0, 202);
    assert_eq!(task_count(&node).await?, 3);
    Ok(())
}

#[tokio::test]
async fn the_same_key_with_another_request_is_refused_and_creates_nothing() -> Result {
    let node = Node::start()?;
    assert_eq!(create(&node, Some("k-1"), &echo("one")).await?.0, 202);
    let (status, _, v) = create(&node, Some("k-1"), &echo("two")).await?;
    assert_eq!(status, 422, "{v}");
    let error = v["error"].as_str().unwrap_or("");
    assert!(error.contains("'k-1'") && error.contains("different request"), "{error}");

    // Malformed keys, and a header that disagrees with the body, are 400s naming the problem.
    let long = "x".repeat(256);
    for bad in ["has space", long.as_str()] {
        let (status, _, v) = create(&node, Some(bad), &echo("one")).await?;
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"].as_str().unwrap_or("").contains("idempotency key"), "{v}");
    }
    let mut body = echo("one");
    body["idempotency_key"] = json!("k-2");
    let (status, _, v) = create(&node, Some("k-3"), &body).await?;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("differ"), "{v}");
    assert_eq!(task_count(&node).await?, 1);
    Ok(())
}

#[tokio::test]
async fn fifty_concurrent_identical_creates_make_one_task() -> Result {
    let node = Node::start()?;
    let body = echo("burst");
    let mut answers = Vec::new();
    for _ in 0..50 {
        let (node_http, url, body) = (node.http.clone(), node.url("/v1/tasks"), body.clone());
        answers.push(tokio::spawn(async move {
            let resp = node_http.post(url).header("Idempotency-Key", "burst-1").json(&body).send().await?;
            let status = resp.status().as_u16();
            let v: Value = resp.json().await?;
            Ok::<_, reqwest::Error>((status, v["task"]["task_id"].as_str().unwrap_or("").to_owned()))
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for a in answers {
        let (status, id) = a.await??;
        assert!(status == 200 || status == 202, "{status}");
        created += usize::from(status == 202);
        ids.insert(id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(created, 1, "exactly one creation answered 202");
    assert_eq!(task_count(&node).await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_key_holds_across_a_restart() -> Result {
    let mut node = Node::start()?;
    let (status, _, first) = create(&node, Some("durable"), &echo("x")).await?;
    assert_eq!(status, 202);
    let id = first["task"]["task_id"].as_str().ok_or("no id")?.to_owned();
    node.wait_status(&id, "completed").await?;
    let dir = node.dir.clone();
    node.stop()?;
    let node = Node::start_in(&dir, NodeOpts::default())?;
    let (status, replayed, again) = create(&node, Some("durable"), &echo("x")).await?;
    assert_eq!(
        (status, replayed.as_deref(), again["task"]["task_id"].as_str()),
        (200, Some("true"), Some(id.as_str()))
    );

    // Past the retention window the key is free again: the same request creates a new task.
    let mut node = node;
    node.stop()?;
    let url = format!("sqlite://{}", dir.join("node.db").display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await?;
    sqlx::query("UPDATE idempotency_keys SET created_at = '2000-01-01T00:00:00.000000000Z'").execute(&pool).await?;
    pool.close().await;
    let node = Node::start_in(&dir, NodeOpts::default())?;
    let (status, replayed, fresh) = create(&node, Some("durable"), &echo("x")).await?;
    assert_eq!((status, replayed), (202, None), "{fresh}");
    assert_ne!(fresh["task"]["task_id"].as_str(), Some(id.as_str()));
    let (status, replayed, again) = create(&node, Some("durable"), &echo("x")).await?;
    assert_eq!(
        (status, replayed.as_deref(), &again["task"]["task_id"]),
        (200, Some("true"), &fresh["task"]["task_id"])
    );
    Ok(())
}

#[tokio::test]
async fn a_node_submit_sent_again_for_the_same_proxy_task_answers_with_the_same_destination_task() -> Result {
    let node = Node::start_with(NodeOpts { extra_args: vec!["--allow-unsigned-peers".into()], ..NodeOpts::default() })?;
    let submit = json!({ "origin_node_id": "a", "origin_proxy_task_id": "proxy-1", "target_agent_id": "echo", "intent": "demo.echo", "payload": {"text": "x"}, "trace": {"trace_id": "t"} });
    let (status, first) = node.post("/v1/node/tasks", submit.clone()).await?;
    assert_eq!(status, 202, "{first}");
    let (status, again) = node.post("/v1/node/tasks", submit.clone()).await?;
    assert_eq!(status, 202, "{again}");
    assert_eq!(first["destination_task_id"], again["destination_task_id"]);
    // Another origin's proxy task of the same id is another task.
    let mut other = submit;
    other["origin_node_id"] = json!("b");
    let (_, third) = node.post("/v1/node/tasks", other).await?;
    assert_ne!(first["destination_task_id"], third["destination_task_id"]);
    assert_eq!(task_count(&node).await?, 2);
    Ok(())
}
