//! `GET /v1/tasks` through the real node: filters, the opaque cursor over 10,000 tasks (seeded
//! into the database before the node starts, since creating them over the API would take
//! minutes on a small machine), and a 400 naming each bad parameter.

mod common;

use std::collections::HashSet;

use common::{Node, NodeOpts, Result};
use serde_json::{Value, json};

const SEEDED: i64 = 10_000;

/// Starts a node once (so the schema exists), stops it, seeds `SEEDED` settled tasks with one
/// event each straight into its database, and starts it again on that database.
async fn seeded_node() -> Result<Node> {
    let mut first = Node::start_with(NodeOpts::default())?;
    // A real task gives the seeded rows a delivery policy as the node writes it.
    let template = first.create(json!({"text": "template"})).await?;
    first.events_until_done(&template).await?;
    let dir = first.dir.clone();
    first.stop()?;
    let url = format!("sqlite://{}", dir.join("node.db").display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await?;
    // i: 1..=SEEDED; updated_at grows with i (newest first is i descending); every 3rd completed,
    // then failed, then cancelled; 5 intents; 100 conversations; 1000 correlation ids; every
    // 500th last message mentions a NeedLe.
    let seed = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {SEEDED}) \
         INSERT INTO tasks (task_id, thread_id, conversation_id, sender, intent, requested_agent_id, resolved_agent_id, \
         runtime_options_json, payload_artifact_id, status, last_error_json, result_artifact_id, delivery_json, \
         metadata_json, priority, last_seq, created_at, updated_at) \
         SELECT printf('01JAAAAAAAAA%014d', i), NULL, 'conv-' || (i % 100), 'seeder', 'intent-' || (i % 5), 'echo', 'echo', \
         '{{}}', NULL, CASE i % 3 WHEN 0 THEN 'completed' WHEN 1 THEN 'failed' ELSE 'cancelled' END, NULL, NULL, \
         (SELECT delivery_json FROM tasks WHERE task_id = '{template}'), json_object('correlation_id', 'corr-' || (i % 1000)), 'normal', 1, \
         printf('2026-01-01T%02d:%02d:%02d.000000000Z', i / 3600, (i / 60) % 60, i % 60), \
         printf('2026-01-02T%02d:%02d:%02d.000000000Z', i / 3600, (i / 60) % 60, i % 60) FROM n"
    );
    sqlx::query(sqlx::AssertSqlSafe(seed)).execute(&pool).await?;
    let events = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {SEEDED}) \
         INSERT INTO task_events (event_id, task_id, seq, kind, state, source, message, data_json, created_at) \
         SELECT 'ev-' || i, printf('01JAAAAAAAAA%014d', i), 1, 'task.created', 'created', 'core', \
         'Seeded ' || i || CASE WHEN i % 500 = 0 THEN ' has a NeedLe 100%' ELSE '' END, '{{}}', \
         printf('2026-01-01T%02d:%02d:%02d.000000000Z', i / 3600, (i / 60) % 60, i % 60) FROM n"
    );
    sqlx::query(sqlx::AssertSqlSafe(events)).execute(&pool).await?;
    // The text index the writer keeps (as migration 0013 backfills it).
    sqlx::query(
        "INSERT INTO task_text (rowid, text) SELECT t.rowid, coalesce(e.message, '') || ' ' || e.data_json \
         FROM tasks t JOIN task_events e ON e.task_id = t.task_id AND e.seq = t.last_seq",
    )
    .execute(&pool)
    .await?;
    for table in ["task_events", "tasks"] {
        let drop = format!("DELETE FROM {table} WHERE task_id = '{template}'");
        sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await?;
    }
    pool.close().await;
    Node::start_in(&dir, NodeOpts::default())
}

/// Every task a listing yields, following `next_cursor` to the end.
async fn all_pages(node: &Node, query: &str) -> Result<Vec<Value>> {
    let mut tasks = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tasks?{query}&cursor={c}"),
            None => format!("/v1/tasks?{query}"),
        };
        let (status, page) = node.get(&path).await?;
        assert_eq!(status, 200, "{path}: {page}");
        tasks.extend(page["tasks"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(tasks),
        }
    }
}

fn ids(tasks: &[Value]) -> Vec<String> {
    tasks.iter().filter_map(|t| t["task_id"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn filters_and_cursor_paging_over_ten_thousand_tasks() -> Result {
    let node = seeded_node().await?;

    // Every task, newest-updated first, exactly once, across pages of 500.
    let every = all_pages(&node, "limit=500").await?;
    assert_eq!(every.len(), SEEDED as usize);
    let unique: HashSet<String> = ids(&every).into_iter().collect();
    assert_eq!(unique.len(), SEEDED as usize, "no task twice");
    let updated: Vec<&str> = every.iter().filter_map(|t| t["updated_at"].as_str()).collect();
    assert!(updated.windows(2).all(|w| w[0] >= w[1]), "newest-updated first");
    assert_eq!(every[0]["task_id"], format!("01JAAAAAAAAA{SEEDED:014}"));

    // Several statuses, comma-separated or repeated: the same set.
    let settled = all_pages(&node, "status=completed,failed&limit=300").await?;
    let repeated = all_pages(&node, "status=completed&status=failed&limit=500").await?;
    assert_eq!(ids(&settled), ids(&repeated));
    let want = (1..=SEEDED).filter(|i| i % 3 != 2).count();
    assert_eq!(settled.len(), want);
    assert!(settled.iter().all(|t| t["status"] == "completed" || t["status"] == "failed"));

    // Each filter alone and together.
    let intent = all_pages(&node, "intent=intent-3&limit=500").await?;
    assert_eq!(intent.len(), (1..=SEEDED).filter(|i| i % 5 == 3).count());
    let conversation = all_pages(&node, "conversation_id=conv-7&limit=50").await?;
    assert_eq!(conversation.len(), 100);
    let correlation = all_pages(&node, "correlation_id=corr-42").await?;
    assert_eq!(ids(&correlation).len(), 10);
    assert!(correlation.iter().all(|t| t["metadata"]["correlation_id"] == "corr-42"));
    let target = all_pages(&node, "target=echo&status=cancelled&intent=intent-0&limit=500").await?;
    assert_eq!(target.len(), (1..=SEEDED).filter(|i| i % 3 == 2 && i % 5 == 0).count());
    assert!(all_pages(&node, "target=other").await?.is_empty());

    // Text in the last event: case-insensitive, `%` taken literally.
    let needles = all_pages(&node, "q=needle").await?;
    assert_eq!(needles.len(), (SEEDED / 500) as usize);
    assert_eq!(all_pages(&node, "q=LE%20100%25").await?.len(), (SEEDED / 500) as usize);
    assert!(all_pages(&node, "q=%25%25%25").await?.is_empty());

    // Time windows (exclusive bounds), with offsets normalised to UTC.
    let window =
        all_pages(&node, "created_after=2026-01-01T00:59:59Z&created_before=2026-01-01T03:00:00%2B02:00&limit=500")
            .await?;
    // 01:00:00 and later, before 01:00:00 UTC: nothing; widen to before 02:00 UTC.
    assert!(window.is_empty());
    let hour =
        all_pages(&node, "created_after=2026-01-01T00:59:59Z&created_before=2026-01-01T02:00:00Z&limit=500").await?;
    assert_eq!(hour.len(), 3600);
    let updated = all_pages(&node, "updated_before=2026-01-02T00:00:10Z").await?;
    assert_eq!(updated.len(), 9);
    let after = all_pages(&node, "updated_after=2026-01-02T02:46:00Z&limit=500").await?;
    assert_eq!(after.len(), (SEEDED - (2 * 3600 + 46 * 60)) as usize);

    // Nothing seeded is stuck or retrying (all settled).
    assert!(all_pages(&node, "stuck=true&stuck_after_ms=1").await?.is_empty());
    assert!(all_pages(&node, "retrying=true").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn stuck_lists_live_tasks_without_progress() -> Result {
    let node = Node::start()?;
    let hung = node.create(json!({"mode": "hang"})).await?;
    node.wait_status(&hung, "running").await?;
    let done = node.create(json!({"text": "quick"})).await?;
    node.events_until_done(&done).await?;
    // Cheap: a bound of 1 ms has passed once the listing runs.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (status, page) = node.get("/v1/tasks?stuck=true&stuck_after_ms=1").await?;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(page["tasks"].as_array().map(Vec::as_slice).unwrap_or_default()), vec![hung.clone()]);
    // With the default bound (10 min) nothing is stuck yet.
    let (_, page) = node.get("/v1/tasks?stuck=true").await?;
    assert_eq!(page["tasks"], json!([]));
    let (_, page) = node.get("/v1/tasks?status=running,completed&intent=demo.echo").await?;
    let mut listed = ids(page["tasks"].as_array().map(Vec::as_slice).unwrap_or_default());
    listed.sort();
    let mut want = vec![hung.clone(), done.clone()];
    want.sort();
    assert_eq!(listed, want);
    node.post(&format!("/v1/tasks/{hung}/cancel"), json!({})).await?;
    Ok(())
}

#[tokio::test]
async fn bad_parameters_are_refused_naming_them() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"text": "x"})).await?;
    let cases = [
        ("status=running,bogus", "status"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        // A bare task id (the cursor before it became opaque).
        (&*format!("cursor={id}"), "cursor"),
        ("retrying=yes", "retrying"),
        ("stuck=1", "stuck"),
        ("stuck=true&stuck_after_ms=-5", "stuck_after_ms"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-02-30T00:00:00Z", "created_before"),
        ("updated_after=12", "updated_after"),
        ("updated_before=2026-01-01", "updated_before"),
        ("colour=blue", "colour"),
        ("limit=5&limit=6", "limit"),
    ];
    for (query, name) in cases {
        let (status, body) = node.get(&format!("/v1/tasks?{query}")).await?;
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(name), "{query}: {body}");
        if name != "colour" && !query.starts_with("limit=5") {
            assert_eq!(body["parameter"], name, "{query}: {body}");
        }
    }
    let long = "x".repeat(300);
    let (status, body) = node.get(&format!("/v1/tasks?q={long}")).await?;
    assert_eq!((status, body["parameter"].as_str()), (400, Some("q")), "{body}");
    Ok(())
}

#[tokio::test]
async fn text_search_follows_each_tasks_latest_event() -> Result {
    let node = Node::start()?;
    let id = node.create(json!({"mode": "await_input", "prompt": "Approve the Zebra-42 plan?"})).await?;
    node.wait_status(&id, "awaiting_input").await?;
    let found = |v: &Value| v["tasks"].as_array().map(|ts| ts.iter().filter(|t| t["task_id"] == id.as_str()).count());
    let (_, page) = node.get("/v1/tasks?q=zebra-42").await?;
    assert_eq!(found(&page), Some(1), "{page}");
    // Two characters: no trigram, the scan finds it all the same.
    let (_, page) = node.get("/v1/tasks?q=a-4").await?;
    assert_eq!(found(&page), Some(1), "{page}");
    let (_, page) = node.get("/v1/tasks?q=2%20p").await?;
    assert_eq!(found(&page), Some(1), "{page}");
    // A NUL byte is text too: scanned, not an error.
    let (status, page) = node.get("/v1/tasks?q=ab%00cd").await?;
    assert_eq!((status, found(&page)), (200, Some(0)), "{page}");
    // A quote is text, not query syntax.
    let (status, page) = node.get("/v1/tasks?q=%22zebra").await?;
    assert_eq!((status, found(&page)), (200, Some(0)), "{page}");
    // Once a newer event replaces it, the old text no longer matches.
    let (status, _) = node.post(&format!("/v1/tasks/{id}/resume"), json!({"payload": {"answer": "fine"}})).await?;
    assert!(status < 300);
    node.events_until_done(&id).await?;
    let (_, page) = node.get("/v1/tasks?q=zebra-42").await?;
    assert_eq!(found(&page), Some(0), "{page}");
    let (_, page) = node.get("/v1/tasks?q=fine").await?;
    assert_eq!(found(&page), Some(1), "{page}");
    Ok(())
}
