//! A batch of task writes as one statement script: `BEGIN IMMEDIATE; …; COMMIT` handed to
//! SQLite's worker thread in one round trip.
//!
//! Why: sqlx runs each statement on the connection's own thread, so every statement of a
//! transaction was a hand-off there and back (two thread wake-ups). Measured on the node's write
//! path (2-core VM, relay benchmark, mean per commit): `BEGIN` alone, a round trip with no work,
//! took 32–46 µs, the task's statements 143–158 µs, `COMMIT` ~300 µs. A task write is the
//! write every task transition waits for, so it goes as one script; anything else (thread
//! turns, runtime and Aether writes, which read inside their transaction) goes statement by
//! statement.
//!
//! A claim of an idempotency key is a statement of the script too: a key held by another task
//! fails it on the key's uniqueness, and a failed script is rolled back. sqlx runs the
//! statements of one query in order, binding each statement's `?` placeholders from the shared
//! arguments in turn (`a_script_binds_each_statement_its_own_arguments`).

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::{ROWS_PER_STATEMENT, WritePlan, tasks};
use crate::error::StorageError;

/// Scripts with more rows than this are prepared for one use: each shape of script is a cached
/// prepared statement of its own, and a large batch's shape rarely comes again.
const CACHED_SCRIPT_ROWS: usize = 16;

/// Whether `plan` can be written as one script: task rows, events, artifacts and claims only.
/// Pure.
pub(super) fn fits(plan: &WritePlan<'_>) -> bool {
    plan.in_order.is_empty() && plan.turns.is_empty() && plan.agents.is_empty() && plan.node_meta.is_empty()
}

/// The script of `plan` (see [`fits`]): `BEGIN IMMEDIATE`, its statements in the order
/// `write_all` runs them, `COMMIT`. Pure.
pub(super) fn build(plan: &WritePlan<'_>) -> QueryBuilder<Sqlite> {
    let mut qb = QueryBuilder::new("BEGIN IMMEDIATE; ");
    push_chunked(&mut qb, &plan.artifacts, tasks::push_insert_artifacts);
    push_chunked(&mut qb, &plan.tasks, tasks::push_upsert_tasks);
    push_chunked(&mut qb, &plan.events, tasks::push_insert_events);
    push_chunked(&mut qb, &plan.claims, tasks::push_claim_idempotency_keys);
    qb.push("COMMIT");
    qb
}

/// Appends `rows` as statements of at most [`ROWS_PER_STATEMENT`] rows each, `;`-terminated.
fn push_chunked<T>(qb: &mut QueryBuilder<Sqlite>, rows: &[T], push: impl Fn(&mut QueryBuilder<Sqlite>, &[T])) {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        push(qb, chunk);
        qb.push("; ");
    }
}

/// Writes `plan` (see [`fits`]) in one transaction, one round trip; rolled back on any failure.
pub(super) async fn run(conn: &mut SqliteConnection, plan: &WritePlan<'_>) -> Result<(), StorageError> {
    let rows = plan.artifacts.len() + plan.tasks.len() + plan.events.len() + plan.claims.len();
    let mut script = build(plan);
    let written = script.build().persistent(rows <= CACHED_SCRIPT_ROWS).execute(&mut *conn).await;
    let Err(e) = written else { return Ok(()) };
    // Whichever statement failed, nothing of the batch stays (no transaction open is fine).
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    Err(tasks::claim_refused(&plan.claims, e.into()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ractor::{Actor, ActorRef};

    use super::super::tests::{artifact, event, task};
    use super::super::{IdempotencyClaim, StorageActor, StorageArgs, StorageMsg, WriteOp};
    use super::*;
    use crate::error::StorageError;
    use crate::model::TaskStatus;
    use crate::storage::{DatabaseLocation, Db};
    use crate::supervision::ask;

    async fn file_db() -> Result<(tempfile::TempDir, Db, ActorRef<StorageMsg>), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = Db::open(&DatabaseLocation::File(dir.path().join("t.db").display().to_string())).await?;
        let (storage, _) = Actor::spawn(None, StorageActor, StorageArgs { db: db.clone() }).await?;
        Ok((dir, db, storage))
    }

    async fn write(storage: &ActorRef<StorageMsg>, op: WriteOp) -> Result<(), StorageError> {
        ask(storage, "storage", Duration::from_secs(10), |r| StorageMsg::Write(op, r))
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?
    }

    fn claim(key: &str) -> IdempotencyClaim {
        IdempotencyClaim {
            scope: "principal:p".into(),
            key: key.into(),
            request_hash: "h".into(),
            reclaim_before: "2000-01-01T00:00:00Z".into(),
        }
    }

    fn creation(id: &str, events: u64, claim_key: Option<&str>) -> WriteOp {
        let mut row = task(id);
        row.status = TaskStatus::Running;
        row.payload_artifact_id = Some(format!("{id}-payload"));
        WriteOp::Task {
            task: Box::new(row),
            last_seq: events,
            events: (1..=events).map(|seq| event(id, seq)).collect(),
            artifacts: vec![artifact(&format!("{id}-payload"))],
            new_turn: None,
            claim: claim_key.map(|k| Box::new(claim(k))),
        }
    }

    #[test]
    fn task_writes_fit_a_script_and_others_do_not() {
        let ops = [creation("a", 2, None)];
        let plan = WritePlan::new(&ops);
        assert!(fits(&plan));
        let sql = build(&plan).into_string();
        assert!(sql.starts_with("BEGIN IMMEDIATE; INSERT INTO artifacts"), "{sql}");
        assert!(sql.ends_with("COMMIT"), "{sql}");
        // A claim is its last statements: expired claims of the key removed, the key inserted.
        let ops = [creation("a", 1, Some("k"))];
        let sql = build(&WritePlan::new(&ops)).into_string();
        assert!(sql.contains("; DELETE FROM idempotency_keys WHERE created_at < ?"), "{sql}");
        assert!(sql.ends_with("; COMMIT"), "{sql}");
        let ops = [creation("a", 1, None), WriteOp::NodeMeta { key: "k".into(), value: "v".into() }];
        assert!(!fits(&WritePlan::new(&ops)));
    }

    #[tokio::test]
    async fn a_script_binds_each_statement_its_own_arguments() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db, storage) = file_db().await?;
        write(&storage, creation("t1", 3, None)).await?;
        let reader = db.reader();
        let stored = reader.task("t1").await?.ok_or("no row")?;
        assert_eq!((stored.task.status, stored.last_seq), (TaskStatus::Running, 3));
        assert_eq!(stored.task.payload_artifact_id.as_deref(), Some("t1-payload"));
        let seqs: Vec<u64> = reader.events("t1", 0, 10).await?.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert!(reader.artifact("t1-payload").await?.is_some());
        storage.drain_and_wait(Some(Duration::from_secs(5))).await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_script_leaves_nothing_and_the_next_of_its_shape_commits() -> Result<(), Box<dyn std::error::Error>>
    {
        let (_dir, db, storage) = file_db().await?;
        write(&storage, creation("t1", 1, None)).await?;
        // The same artifact id again: the script's first insert fails, nothing of it stays.
        let mut again = creation("t2", 1, None);
        if let WriteOp::Task { artifacts, .. } = &mut again {
            artifacts[0] = artifact("t1-payload");
        }
        assert!(matches!(write(&storage, again).await, Err(StorageError::Rejected(_))));
        let reader = db.reader();
        assert!(reader.task("t2").await?.is_none());
        // The cached script of that shape runs again cleanly, and the transaction was closed.
        write(&storage, creation("t3", 1, None)).await?;
        assert!(reader.task("t3").await?.is_some());
        storage.drain_and_wait(Some(Duration::from_secs(5))).await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_held_key_refuses_the_whole_script() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db, storage) = file_db().await?;
        write(&storage, creation("t1", 2, Some("key"))).await?;
        let refused = write(&storage, creation("t2", 2, Some("key"))).await;
        assert!(matches!(refused, Err(StorageError::Rejected(ref m)) if m.contains("'key'")), "{refused:?}");
        let reader = db.reader();
        assert!(reader.task("t2").await?.is_none());
        assert!(reader.artifact("t2-payload").await?.is_none());
        assert_eq!(reader.idempotency_holder("principal:p", "key").await?.map(|h| h.task_id), Some("t1".into()));
        write(&storage, creation("t3", 2, Some("other"))).await?;
        assert_eq!(reader.task("t3").await?.map(|t| t.last_seq), Some(2));
        // A claim older than the retention window is taken over.
        let mut late = creation("t4", 1, Some("key"));
        if let WriteOp::Task { claim: Some(c), .. } = &mut late {
            c.reclaim_before = "2999-01-01T00:00:00Z".into();
        }
        write(&storage, late).await?;
        assert_eq!(reader.idempotency_holder("principal:p", "key").await?.map(|h| h.task_id), Some("t4".into()));
        storage.drain_and_wait(Some(Duration::from_secs(5))).await?;
        Ok(())
    }
}
