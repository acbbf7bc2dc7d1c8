//! Task rows, their events, the artifacts they reference, and the thread turn a thread-bound task
//! mirrors — everything a `WriteOp::Task` writes, in its transaction.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::{IdempotencyClaim, json_text};
use crate::artifacts::{ArtifactBody, NewArtifact};
use crate::error::StorageError;
use crate::model::{RelayIds, TargetOwner, TaskEvent, TaskRecord};

/// The turn a new thread-bound task opens.
#[derive(Debug, Clone)]
pub struct NewTurn {
    pub sender_agent_id: String,
    pub target_agent_id: String,
    /// The peer the task is relayed to (its target is that peer's cached target): the turn is
    /// then recorded `target_owner = remote`. `None`: a local turn.
    pub remote_peer_id: Option<String>,
}

/// One multi-row `INSERT` of artifacts.
pub(super) fn insert_artifacts_statement(rows: &[&NewArtifact]) -> QueryBuilder<Sqlite> {
    let mut qb = QueryBuilder::new("");
    push_insert_artifacts(&mut qb, rows);
    qb
}

/// Appends [`insert_artifacts_statement`] to `qb` (a statement script).
pub(super) fn push_insert_artifacts(qb: &mut QueryBuilder<Sqlite>, rows: &[&NewArtifact]) {
    qb.push("INSERT INTO artifacts (artifact_id, media_type, relative_path, content, size_bytes, sha256, created_at) ");
    qb.push_values(rows, |mut b, a| {
        let (path, content) = match &a.body {
            ArtifactBody::Inline(bytes) => (None, Some(bytes.clone())),
            ArtifactBody::File(p) => (Some(p.clone()), None),
        };
        b.push_bind(a.meta.artifact_id.clone())
            .push_bind(a.meta.media_type.clone())
            .push_bind(path)
            .push_bind(content)
            .push_bind(i64::try_from(a.meta.size_bytes).unwrap_or(i64::MAX))
            .push_bind(a.meta.sha256.clone())
            .push_bind(a.meta.created_at.clone());
    });
}

/// One multi-row upsert of task rows with the seq of their last event.
pub(super) fn upsert_tasks_statement(rows: &[(&TaskRecord, u64)]) -> QueryBuilder<Sqlite> {
    let mut qb = QueryBuilder::new("");
    push_upsert_tasks(&mut qb, rows);
    qb
}

/// Appends [`upsert_tasks_statement`] to `qb` (a statement script).
pub(super) fn push_upsert_tasks(qb: &mut QueryBuilder<Sqlite>, rows: &[(&TaskRecord, u64)]) {
    qb.push(
        "INSERT INTO tasks (task_id, thread_id, conversation_id, sender, intent, requested_agent_id, \
         resolved_agent_id, runtime_options_json, payload_artifact_id, status, remote_binding, \
         remote_execution_id, remote_session_id, last_error_json, result_artifact_id, delivery_json, \
         metadata_json, priority, attempt, max_attempts, next_retry_at, retry_policy_json, deadlines_json, \
         attempt_scheduled_at, attempt_started_at, last_seq, created_at, updated_at) ",
    );
    qb.push_values(rows, |mut b, (t, last_seq)| {
        let remote = t.remote.clone().unwrap_or_default();
        b.push_bind(t.task_id.clone())
            .push_bind(t.thread_id.clone())
            .push_bind(t.conversation_id.clone())
            .push_bind(t.sender.clone())
            .push_bind(t.intent.clone())
            .push_bind(t.requested_agent_id.clone())
            .push_bind(t.resolved_agent_id.clone())
            .push_bind(json_text(&t.runtime_options))
            .push_bind(t.payload_artifact_id.clone())
            .push_bind(t.status.as_str())
            .push_bind(t.remote.as_ref().map(|_| remote.binding.clone()))
            .push_bind(remote.remote_execution_id.clone())
            .push_bind(remote.remote_session_id.clone())
            .push_bind(t.last_error.as_ref().map(json_text))
            .push_bind(t.result_artifact_id.clone())
            .push_bind(json_text(&t.delivery))
            .push_bind(json_text(&t.metadata))
            .push_bind(t.priority.as_str())
            .push_bind(i64::from(t.attempts.attempt))
            .push_bind(i64::from(t.attempts.max_attempts))
            .push_bind(t.attempts.next_retry_at.clone())
            .push_bind(t.attempts.retry_policy.as_ref().map(json_text))
            .push_bind((!t.attempts.deadlines.is_empty()).then(|| json_text(&t.attempts.deadlines)))
            .push_bind(t.attempts.attempt_scheduled_at.clone())
            .push_bind(t.attempts.attempt_started_at.clone())
            .push_bind(i64::try_from(*last_seq).unwrap_or(i64::MAX))
            .push_bind(t.created_at.clone())
            .push_bind(t.updated_at.clone());
    });
    qb.push(
        " ON CONFLICT(task_id) DO UPDATE SET status = excluded.status, remote_binding = excluded.remote_binding, \
         remote_execution_id = excluded.remote_execution_id, remote_session_id = excluded.remote_session_id, \
         last_error_json = excluded.last_error_json, result_artifact_id = excluded.result_artifact_id, \
         attempt = excluded.attempt, max_attempts = excluded.max_attempts, next_retry_at = excluded.next_retry_at, \
         attempt_scheduled_at = excluded.attempt_scheduled_at, attempt_started_at = excluded.attempt_started_at, \
         last_seq = excluded.last_seq, updated_at = excluded.updated_at",
    );
}

/// One multi-row `INSERT` of task events.
pub(super) fn insert_events_statement(rows: &[&TaskEvent]) -> QueryBuilder<Sqlite> {
    let mut qb = QueryBuilder::new("");
    push_insert_events(&mut qb, rows);
    qb
}

/// Appends [`insert_events_statement`] to `qb` (a statement script).
pub(super) fn push_insert_events(qb: &mut QueryBuilder<Sqlite>, rows: &[&TaskEvent]) {
    qb.push("INSERT INTO task_events (event_id, task_id, seq, kind, state, source, message, data_json, created_at) ");
    qb.push_values(rows, |mut b, e| {
        b.push_bind(e.event_id.clone())
            .push_bind(e.task_id.clone())
            .push_bind(i64::try_from(e.seq).unwrap_or(i64::MAX))
            .push_bind(e.kind.as_str())
            .push_bind(e.state.as_str())
            .push_bind(e.source.as_str())
            .push_bind(e.message.clone())
            .push_bind(json_text(&e.data))
            .push_bind(e.created_at.clone());
    });
}

/// Most bytes of an event's text the search index keeps (`GET /v1/tasks?q=`).
pub const INDEXED_TEXT_BYTES: usize = 4096;

/// What `q=` searches of an event: its message and its data, cut to [`INDEXED_TEXT_BYTES`] at a
/// character boundary. Pure.
pub fn searchable_text(e: &TaskEvent) -> String {
    let mut text = e.message.clone().unwrap_or_default();
    text.push(' ');
    text.push_str(&json_text(&e.data));
    if text.len() > INDEXED_TEXT_BYTES {
        let mut end = INDEXED_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The last event of each task among `events` (a write's), as (task id, searchable text).
pub(super) fn last_texts(events: &[&TaskEvent]) -> Vec<(String, String)> {
    let mut last: std::collections::HashMap<&str, &TaskEvent> = std::collections::HashMap::new();
    for e in events {
        let slot = last.entry(e.task_id.as_str()).or_insert(e);
        if e.seq > slot.seq {
            *slot = e;
        }
    }
    last.into_iter().map(|(id, e)| (id.to_owned(), searchable_text(e))).collect()
}

/// One statement removing the indexed text of each task in `rows` (a task never indexed is a
/// no-op). Pure.
pub(super) fn unindex_texts_statement(rows: &[(String, String)]) -> QueryBuilder<Sqlite> {
    let mut qb: QueryBuilder<Sqlite> =
        QueryBuilder::new("DELETE FROM task_text WHERE rowid IN (SELECT rowid FROM tasks WHERE task_id IN (");
    let mut ids = qb.separated(", ");
    for (id, _) in rows {
        ids.push_bind(id.clone());
    }
    qb.push("))");
    qb
}

/// One statement indexing the text of each task in `rows` (after its old text was removed).
/// Pure.
pub(super) fn index_texts_statement(rows: &[(String, String)]) -> QueryBuilder<Sqlite> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("WITH v(task_id, text) AS (");
    qb.push_values(rows, |mut b, (id, text)| {
        b.push_bind(id.clone()).push_bind(text.clone());
    });
    // In rowid order: FTS5 also flushes its pending inserts before one whose rowid is not above
    // the last.
    qb.push(
        ") INSERT INTO task_text (rowid, text) SELECT t.rowid, v.text FROM v JOIN tasks t ON t.task_id = v.task_id \
         ORDER BY t.rowid",
    );
    qb
}

/// Replaces the indexed text of each task in `rows`: every removal first, then every insert.
/// The order matters for cost: FTS5 flushes its pending inserts to a new segment before each
/// delete that follows them (a contentless-delete table finds the row in the segments) and
/// before an insert out of rowid order, so `INSERT OR REPLACE` in any order wrote a segment,
/// and merged segments, per row; this writes one per call.
pub(super) async fn index_texts(conn: &mut SqliteConnection, rows: &[(String, String)]) -> Result<(), StorageError> {
    for chunk in rows.chunks(super::ROWS_PER_STATEMENT) {
        unindex_texts_statement(chunk).build().execute(&mut *conn).await?;
    }
    for chunk in rows.chunks(super::ROWS_PER_STATEMENT) {
        index_texts_statement(chunk).build().execute(&mut *conn).await?;
    }
    Ok(())
}

pub(super) async fn insert_artifacts(conn: &mut SqliteConnection, rows: &[&NewArtifact]) -> Result<(), StorageError> {
    insert_artifacts_statement(rows).build().execute(&mut *conn).await?;
    Ok(())
}

pub(super) async fn upsert_tasks(conn: &mut SqliteConnection, rows: &[(&TaskRecord, u64)]) -> Result<(), StorageError> {
    upsert_tasks_statement(rows).build().execute(&mut *conn).await?;
    Ok(())
}

pub(super) async fn insert_events(conn: &mut SqliteConnection, rows: &[&TaskEvent]) -> Result<(), StorageError> {
    insert_events_statement(rows).build().execute(&mut *conn).await?;
    Ok(())
}

/// Claims idempotency keys, each for its task: a new key, or one whose claim is older than the
/// retention window (removed first); a fresh claim by another task (or the same key twice in one
/// batch) fails the insert on the key's uniqueness and refuses the whole write (the writer then
/// retries its writes one by one, and the loser answers with the holder's task).
pub(super) async fn claim_idempotency_keys(
    conn: &mut SqliteConnection,
    claims: &[(&str, &IdempotencyClaim)],
) -> Result<(), StorageError> {
    if claims.is_empty() {
        return Ok(());
    }
    let mut qb = QueryBuilder::new("");
    push_claim_idempotency_keys(&mut qb, claims);
    // Two statements in one query: sqlx runs them in order, each with its own arguments.
    qb.build().execute(&mut *conn).await.map(drop).map_err(|e| claim_refused(claims, e.into()))
}

/// Appends the claim of `claims` to `qb` (a statement script): expired claims of these keys
/// removed, then one row per key inserted. Nothing is appended for no claims.
pub(super) fn push_claim_idempotency_keys(qb: &mut QueryBuilder<Sqlite>, claims: &[(&str, &IdempotencyClaim)]) {
    let Some(reclaim_before) = claims.iter().map(|(_, c)| c.reclaim_before.as_str()).min() else { return };
    let now = crate::clock::now_rfc3339();
    qb.push("DELETE FROM idempotency_keys WHERE created_at < ").push_bind(reclaim_before.to_owned());
    qb.push(" AND (scope, idem_key) IN (VALUES ");
    let mut keys = qb.separated(", ");
    for (_, c) in claims {
        keys.push("(").push_bind_unseparated(c.scope.clone()).push_unseparated(", ");
        keys.push_bind_unseparated(c.key.clone()).push_unseparated(")");
    }
    qb.push("); INSERT INTO idempotency_keys (scope, idem_key, task_id, request_hash, created_at) ");
    qb.push_values(claims, |mut b, (task_id, c)| {
        b.push_bind(c.scope.clone())
            .push_bind(c.key.clone())
            .push_bind(task_id.to_string())
            .push_bind(c.request_hash.clone())
            .push_bind(now.clone());
    });
}

/// `err` of a write that claimed `claims`: a key's uniqueness refusing the claim becomes the
/// refusal naming the keys; anything else is itself. Pure.
pub(super) fn claim_refused(claims: &[(&str, &IdempotencyClaim)], err: StorageError) -> StorageError {
    match err {
        StorageError::Rejected(m) if !claims.is_empty() && m.contains("idempotency_keys") => {
            let held: Vec<&str> = claims.iter().map(|(_, c)| c.key.as_str()).collect();
            StorageError::Rejected(format!("idempotency key '{}' is held by another task", held.join("', '")))
        }
        other => other,
    }
}

/// Opens a thread turn (index = max + 1, inside this transaction, so concurrent turns never
/// collide) or mirrors the task's status and remote ids onto its turn. A relayed task's turn
/// also takes the destination's ids and remote session from the relay events of this write.
pub(super) async fn write_turn(
    conn: &mut SqliteConnection,
    task: &TaskRecord,
    thread_id: &str,
    new_turn: Option<&NewTurn>,
    events: &[TaskEvent],
) -> Result<(), StorageError> {
    let remote = task.remote.clone().unwrap_or_default();
    let relay = RelayIds::of_events(events);
    let session = remote.remote_session_id.or(relay.remote_session_id);
    let execution = remote.remote_execution_id.or(relay.remote_execution_id);
    if let Some(turn) = new_turn {
        sqlx::query(
            "UPDATE threads SET last_task_id = ?, last_actor_agent_id = ?, last_target_agent_id = ?, status = 'active', \
             interruption_reason = NULL, updated_at = ? WHERE thread_id = ?",
        )
        .bind(task.task_id.clone())
        .bind(turn.sender_agent_id.clone())
        .bind(turn.target_agent_id.clone())
        .bind(task.updated_at.clone())
        .bind(thread_id.to_owned())
        .execute(&mut *conn)
        .await?;
        let owner = turn.remote_peer_id.as_ref().map(|_| TargetOwner::Remote.as_str());
        sqlx::query(
            "INSERT INTO thread_turns (thread_id, turn_index, task_id, sender_agent_id, target_agent_id, target_owner, \
             remote_peer_id, destination_node_id, destination_task_id, destination_thread_id, remote_session_id, \
             remote_execution_id, status, created_at, updated_at) \
             SELECT ?, COALESCE(MAX(turn_index), 0) + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM thread_turns WHERE thread_id = ?",
        )
        .bind(thread_id.to_owned())
        .bind(task.task_id.clone())
        .bind(turn.sender_agent_id.clone())
        .bind(turn.target_agent_id.clone())
        .bind(owner)
        .bind(turn.remote_peer_id.clone())
        .bind(relay.destination_node_id)
        .bind(relay.destination_task_id)
        .bind(relay.destination_thread_id)
        .bind(session)
        .bind(execution)
        .bind(task.status.as_str())
        .bind(task.created_at.clone())
        .bind(task.updated_at.clone())
        .bind(thread_id.to_owned())
        .execute(&mut *conn)
        .await?;
    } else {
        sqlx::query(
            "UPDATE thread_turns SET status = ?, remote_session_id = COALESCE(?, remote_session_id), \
             remote_execution_id = COALESCE(?, remote_execution_id), \
             destination_node_id = COALESCE(?, destination_node_id), \
             destination_task_id = COALESCE(?, destination_task_id), \
             destination_thread_id = COALESCE(?, destination_thread_id), updated_at = ? WHERE task_id = ?",
        )
        .bind(task.status.as_str())
        .bind(session)
        .bind(execution)
        .bind(relay.destination_node_id)
        .bind(relay.destination_task_id)
        .bind(relay.destination_thread_id)
        .bind(task.updated_at.clone())
        .bind(task.task_id.clone())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
