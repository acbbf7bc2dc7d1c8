//! The storage actor: the only writer to SQLite.
//!
//! Group commit: a `Write` is queued; the first write into an empty queue casts `Flush` to self,
//! which lands behind every write already in the mailbox, so one transaction absorbs everything
//! that arrived while the previous commit was in flight — batches grow with load, no timer.
//! Each write is acknowledged only after its transaction committed. A batch that fails on a
//! constraint is retried write by write, so one bad write never fails its neighbours.

use std::collections::HashMap;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::Db;
use crate::artifacts::{ArtifactBody, NewArtifact};
use crate::error::StorageError;
use crate::model::{AgentRecord, TaskEvent, TaskRecord};

/// Rows per multi-row statement, well below SQLite's 32,766 bound-parameter limit.
const ROWS_PER_STATEMENT: usize = 500;

/// One durable write.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Upserts a task row and appends its events (and the artifacts they reference), atomically.
    /// A thread-bound task's turn mirrors the task's status in the same transaction; `new_turn`
    /// inserts the turn (index allocated inside the transaction) when the task is created.
    Task {
        task: Box<TaskRecord>,
        /// Seq of the last event (after this write).
        last_seq: u64,
        events: Vec<TaskEvent>,
        artifacts: Vec<NewArtifact>,
        new_turn: Option<NewTurn>,
    },
    /// Inserts a thread.
    ThreadCreate(Box<crate::model::ThreadRecord>),
    /// Sets a thread's status and interruption reason.
    ThreadState { thread_id: String, status: String, interruption_reason: Option<String> },
    /// Records a thread's auto-handoff plan and progress.
    ThreadHandoff { thread_id: String, handoff: serde_json::Value },
    /// Inserts or replaces a registered agent (all but `registered_at` on update).
    Agent(Box<AgentRecord>),
    /// Sets a node-level key (node id, …).
    NodeMeta { key: String, value: String },
    /// A runtime process was spawned: its launch history row and its lease (pid, process group).
    LaunchStarted(Box<LaunchRecord>),
    /// A launch ended (`ready`, `failed`, `exited`, `stopped`); the lease is released on anything
    /// but `ready`.
    LaunchEnded {
        launch_id: String,
        status: String,
        exit_code: Option<i32>,
        error: Option<String>,
        release_lease: bool,
    },
    /// Leases of process groups killed at start-up (left by a previous run).
    ReleaseLeases(Vec<String>),
    /// Upserts a session binding (keeps `created_at`).
    SessionBinding(Box<SessionBindingRecord>),
}

impl WriteOp {
    /// What kind of write this is (for logs).
    pub fn name(&self) -> &'static str {
        match self {
            WriteOp::Task { .. } => "task",
            WriteOp::ThreadCreate(_) => "thread",
            WriteOp::ThreadState { .. } => "thread state",
            WriteOp::ThreadHandoff { .. } => "thread handoff",
            WriteOp::Agent(_) => "agent",
            WriteOp::NodeMeta { .. } => "node meta",
            WriteOp::LaunchStarted(_) => "launch started",
            WriteOp::LaunchEnded { .. } => "launch ended",
            WriteOp::ReleaseLeases(_) => "lease release",
            WriteOp::SessionBinding(_) => "session binding",
        }
    }
}

/// The turn a new thread-bound task opens.
#[derive(Debug, Clone)]
pub struct NewTurn {
    pub sender_agent_id: String,
    pub target_agent_id: String,
}

/// A runtime launch: its history row and lease.
#[derive(Debug, Clone)]
pub struct LaunchRecord {
    /// Also the lease id.
    pub launch_id: String,
    pub target_id: String,
    pub subcontext_key: String,
    pub command: Vec<String>,
    pub pid: u32,
    pub process_group: i32,
    pub started_at: String,
}

/// A persisted ACP session binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBindingRecord {
    pub target_id: String,
    pub subcontext_key: String,
    pub sticky_key: String,
    pub adapter: String,
    pub remote_session_id: String,
    pub metadata_json: String,
    pub at: String,
}

/// Counters for benchmarks and diagnostics.
#[derive(Clone, Copy, Debug, Default)]
pub struct StorageStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes acknowledged.
    pub writes: u64,
    /// Largest batch committed in one transaction.
    pub max_batch: usize,
}

/// Messages of the storage actor.
pub enum StorageMsg {
    /// Make `op` durable; the reply comes after COMMIT.
    Write(WriteOp, RpcReplyPort<Result<(), StorageError>>),
    /// Commit everything queued (sent to self).
    Flush,
    /// Report counters.
    Stats(RpcReplyPort<StorageStats>),
}

/// Arguments: the open database.
pub struct StorageArgs {
    pub db: Db,
}

/// State of the storage actor.
pub struct StorageState {
    /// The database; the actor uses only its writer pool (one connection).
    db: Db,
    /// Writes waiting for the next commit, in arrival order.
    pending: Vec<(WriteOp, RpcReplyPort<Result<(), StorageError>>)>,
    /// A `Flush` is already in the mailbox; don't queue another.
    flush_scheduled: bool,
    /// Counters.
    stats: StorageStats,
}

/// The storage actor.
pub struct StorageActor;

impl Actor for StorageActor {
    type Msg = StorageMsg;
    type State = StorageState;
    type Arguments = StorageArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<StorageMsg>,
        args: StorageArgs,
    ) -> Result<StorageState, ActorProcessingErr> {
        Ok(StorageState { db: args.db, pending: Vec::new(), flush_scheduled: false, stats: StorageStats::default() })
    }

    async fn handle(
        &self,
        myself: ActorRef<StorageMsg>,
        msg: StorageMsg,
        state: &mut StorageState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StorageMsg::Write(op, reply) => {
                state.pending.push((op, reply));
                if !state.flush_scheduled {
                    state.flush_scheduled = true;
                    myself.cast(StorageMsg::Flush)?;
                }
            }
            StorageMsg::Flush => {
                state.flush_scheduled = false;
                let batch = std::mem::take(&mut state.pending);
                if batch.is_empty() {
                    return Ok(());
                }
                flush(state, batch).await?;
            }
            StorageMsg::Stats(reply) => {
                let _ = reply.send(state.stats);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<StorageMsg>,
        state: &mut StorageState,
    ) -> Result<(), ActorProcessingErr> {
        // A graceful stop (drain) processed every queued message already; anything still pending
        // is committed here so no acknowledged-later write is lost.
        let batch = std::mem::take(&mut state.pending);
        if !batch.is_empty() {
            flush(state, batch).await?;
        }
        Ok(())
    }
}

/// Commits a batch; on failure retries each write alone. Returns `Err` (failing the actor, so its
/// supervisor restarts it) only when the database itself is unavailable.
async fn flush(
    state: &mut StorageState,
    batch: Vec<(WriteOp, RpcReplyPort<Result<(), StorageError>>)>,
) -> Result<(), ActorProcessingErr> {
    let (ops, replies): (Vec<WriteOp>, Vec<_>) = batch.into_iter().unzip();
    match commit(&state.db, &ops).await {
        Ok(()) => {
            state.stats.commits += 1;
            state.stats.writes += ops.len() as u64;
            state.stats.max_batch = state.stats.max_batch.max(ops.len());
            for reply in replies {
                let _ = reply.send(Ok(()));
            }
            Ok(())
        }
        Err(err) if ops.len() == 1 => {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
            escalate_if_unavailable(err)
        }
        Err(batch_err) => {
            tracing::warn!(actor_kind = "storage", error = %batch_err, writes = ops.len(), "batch commit failed; retrying writes one by one");
            let mut unavailable = None;
            for (op, reply) in ops.into_iter().zip(replies) {
                let result = commit(&state.db, std::slice::from_ref(&op)).await;
                if result.is_ok() {
                    state.stats.commits += 1;
                    state.stats.writes += 1;
                }
                if let Err(StorageError::Unavailable(_)) = &result {
                    unavailable = result.clone().err();
                }
                let _ = reply.send(result);
            }
            unavailable.map_or(Ok(()), escalate_if_unavailable)
        }
    }
}

fn escalate_if_unavailable(err: StorageError) -> Result<(), ActorProcessingErr> {
    match err {
        StorageError::Unavailable(_) => Err(Box::new(err)),
        _ => Ok(()),
    }
}

/// Writes `ops` in one `BEGIN IMMEDIATE … COMMIT`.
async fn commit(db: &Db, ops: &[WriteOp]) -> Result<(), StorageError> {
    let mut conn = db.writer.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    match write_all(&mut conn, ops).await {
        Ok(()) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(())
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

async fn write_all(conn: &mut SqliteConnection, ops: &[WriteOp]) -> Result<(), StorageError> {
    // Last row wins per task: every task write carries the whole row.
    let mut tasks: Vec<(&TaskRecord, u64)> = Vec::new();
    let mut task_index: HashMap<&str, usize> = HashMap::new();
    let mut events: Vec<&TaskEvent> = Vec::new();
    let mut artifacts: Vec<&NewArtifact> = Vec::new();
    let mut agents: Vec<&AgentRecord> = Vec::new();
    let mut meta: Vec<(&str, &str)> = Vec::new();
    let mut runtime_ops: Vec<&WriteOp> = Vec::new();
    for op in ops {
        match op {
            WriteOp::Task { task, last_seq, events: evs, artifacts: arts, .. } => {
                match task_index.get(task.task_id.as_str()) {
                    Some(&i) => tasks[i] = (task, *last_seq),
                    None => {
                        task_index.insert(task.task_id.as_str(), tasks.len());
                        tasks.push((task, *last_seq));
                    }
                }
                events.extend(evs.iter());
                artifacts.extend(arts.iter());
            }
            WriteOp::Agent(agent) => agents.push(agent),
            WriteOp::NodeMeta { key, value } => meta.push((key, value)),
            other => runtime_ops.push(other),
        }
    }
    for op in runtime_ops {
        write_runtime_op(conn, op).await?;
    }
    for chunk in artifacts.chunks(ROWS_PER_STATEMENT) {
        insert_artifacts(conn, chunk).await?;
    }
    for chunk in tasks.chunks(ROWS_PER_STATEMENT) {
        upsert_tasks(conn, chunk).await?;
    }
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        insert_events(conn, chunk).await?;
    }
    for op in ops {
        if let WriteOp::Task { task, new_turn, .. } = op
            && let Some(thread_id) = &task.thread_id
        {
            write_turn(conn, task, thread_id, new_turn.as_ref()).await?;
        }
    }
    for agent in agents {
        upsert_agent(conn, agent).await?;
    }
    for (key, value) in meta {
        sqlx::query(
            "INSERT INTO node_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(key.to_owned())
        .bind(value.to_owned())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn write_runtime_op(conn: &mut SqliteConnection, op: &WriteOp) -> Result<(), StorageError> {
    let now = crate::clock::now_rfc3339();
    match op {
        WriteOp::LaunchStarted(l) => {
            sqlx::query(
                "INSERT INTO launch_history (launch_id, target_id, subcontext_key, command_json, pid, process_group, status, started_at) \
                 VALUES (?, ?, ?, ?, ?, ?, 'launching', ?)",
            )
            .bind(l.launch_id.clone())
            .bind(l.target_id.clone())
            .bind(l.subcontext_key.clone())
            .bind(json_text(&l.command))
            .bind(i64::from(l.pid))
            .bind(l.process_group)
            .bind(l.started_at.clone())
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO runtime_leases (lease_id, target_id, subcontext_key, process_id, process_group, metadata_json, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(l.launch_id.clone())
            .bind(l.target_id.clone())
            .bind(l.subcontext_key.clone())
            .bind(l.pid.to_string())
            .bind(l.process_group)
            .bind(json_text(&serde_json::json!({ "command": l.command })))
            .bind(l.started_at.clone())
            .execute(&mut *conn)
            .await?;
        }
        WriteOp::LaunchEnded { launch_id, status, exit_code, error, release_lease } => {
            let ended = if status == "ready" { None } else { Some(now.clone()) };
            sqlx::query("UPDATE launch_history SET status = ?, exit_code = COALESCE(?, exit_code), error_text = COALESCE(?, error_text), ended_at = COALESCE(?, ended_at) WHERE launch_id = ?")
                .bind(status.clone())
                .bind(*exit_code)
                .bind(error.clone())
                .bind(ended)
                .bind(launch_id.clone())
                .execute(&mut *conn)
                .await?;
            if *release_lease {
                sqlx::query("UPDATE runtime_leases SET released_at = ? WHERE lease_id = ? AND released_at IS NULL")
                    .bind(now.clone())
                    .bind(launch_id.clone())
                    .execute(&mut *conn)
                    .await?;
            }
        }
        WriteOp::ReleaseLeases(ids) => {
            for id in ids {
                sqlx::query("UPDATE runtime_leases SET released_at = ? WHERE lease_id = ? AND released_at IS NULL")
                    .bind(now.clone())
                    .bind(id.clone())
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("UPDATE launch_history SET status = CASE WHEN status IN ('launching', 'ready') THEN 'orphaned' ELSE status END, ended_at = COALESCE(ended_at, ?) WHERE launch_id = ?")
                    .bind(now.clone())
                    .bind(id.clone())
                    .execute(&mut *conn)
                    .await?;
            }
        }
        WriteOp::SessionBinding(b) => {
            sqlx::query(
                "INSERT INTO session_bindings (target_id, subcontext_key, sticky_key, adapter, remote_session_id, metadata_json, \
                 created_at, updated_at, last_used_at, last_activity_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT(target_id, subcontext_key, sticky_key) DO UPDATE SET adapter = excluded.adapter, \
                 remote_session_id = excluded.remote_session_id, metadata_json = excluded.metadata_json, \
                 updated_at = excluded.updated_at, last_used_at = excluded.last_used_at, last_activity_at = excluded.last_activity_at",
            )
            .bind(b.target_id.clone())
            .bind(b.subcontext_key.clone())
            .bind(b.sticky_key.clone())
            .bind(b.adapter.clone())
            .bind(b.remote_session_id.clone())
            .bind(b.metadata_json.clone())
            .bind(b.at.clone())
            .bind(b.at.clone())
            .bind(b.at.clone())
            .bind(b.at.clone())
            .execute(&mut *conn)
            .await?;
        }
        WriteOp::ThreadCreate(t) => {
            sqlx::query(
                "INSERT INTO threads (thread_id, agent_a_id, agent_b_id, status, continuity_key, metadata_json, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(t.thread_id.clone())
            .bind(t.agent_a_id.clone())
            .bind(t.agent_b_id.clone())
            .bind(t.status.clone())
            .bind(t.continuity_key.clone())
            .bind(json_text(&t.metadata))
            .bind(t.created_at.clone())
            .bind(t.updated_at.clone())
            .execute(&mut *conn)
            .await?;
        }
        WriteOp::ThreadState { thread_id, status, interruption_reason } => {
            sqlx::query("UPDATE threads SET status = ?, interruption_reason = ?, updated_at = ? WHERE thread_id = ?")
                .bind(status.clone())
                .bind(interruption_reason.clone())
                .bind(now.clone())
                .bind(thread_id.clone())
                .execute(&mut *conn)
                .await?;
        }
        WriteOp::ThreadHandoff { thread_id, handoff } => {
            sqlx::query("UPDATE threads SET handoff_json = ?, updated_at = ? WHERE thread_id = ?")
                .bind(json_text(handoff))
                .bind(now.clone())
                .bind(thread_id.clone())
                .execute(&mut *conn)
                .await?;
        }
        WriteOp::Task { .. } | WriteOp::Agent(_) | WriteOp::NodeMeta { .. } => {}
    }
    Ok(())
}

/// Opens a thread turn (index = max + 1, inside this transaction, so concurrent turns never
/// collide) or mirrors the task's status and remote ids onto its turn.
async fn write_turn(
    conn: &mut SqliteConnection,
    task: &TaskRecord,
    thread_id: &str,
    new_turn: Option<&NewTurn>,
) -> Result<(), StorageError> {
    let remote = task.remote.clone().unwrap_or_default();
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
        sqlx::query(
            "INSERT INTO thread_turns (thread_id, turn_index, task_id, sender_agent_id, target_agent_id, status, created_at, updated_at) \
             SELECT ?, COALESCE(MAX(turn_index), 0) + 1, ?, ?, ?, ?, ?, ? FROM thread_turns WHERE thread_id = ?",
        )
        .bind(thread_id.to_owned())
        .bind(task.task_id.clone())
        .bind(turn.sender_agent_id.clone())
        .bind(turn.target_agent_id.clone())
        .bind(task.status.as_str())
        .bind(task.created_at.clone())
        .bind(task.updated_at.clone())
        .bind(thread_id.to_owned())
        .execute(&mut *conn)
        .await?;
    } else {
        sqlx::query(
            "UPDATE thread_turns SET status = ?, remote_session_id = COALESCE(?, remote_session_id), \
             remote_execution_id = COALESCE(?, remote_execution_id), updated_at = ? WHERE task_id = ?",
        )
        .bind(task.status.as_str())
        .bind(remote.remote_session_id.clone())
        .bind(remote.remote_execution_id.clone())
        .bind(task.updated_at.clone())
        .bind(task.task_id.clone())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

async fn insert_artifacts(conn: &mut SqliteConnection, rows: &[&NewArtifact]) -> Result<(), StorageError> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO artifacts (artifact_id, media_type, relative_path, content, size_bytes, sha256, created_at) ",
    );
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
    qb.build().execute(&mut *conn).await?;
    Ok(())
}

async fn upsert_tasks(conn: &mut SqliteConnection, rows: &[(&TaskRecord, u64)]) -> Result<(), StorageError> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO tasks (task_id, thread_id, conversation_id, sender, intent, requested_agent_id, \
         resolved_agent_id, runtime_options_json, payload_artifact_id, status, remote_binding, \
         remote_execution_id, remote_session_id, last_error_json, result_artifact_id, delivery_json, \
         metadata_json, last_seq, created_at, updated_at) ",
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
            .push_bind(i64::try_from(*last_seq).unwrap_or(i64::MAX))
            .push_bind(t.created_at.clone())
            .push_bind(t.updated_at.clone());
    });
    qb.push(
        " ON CONFLICT(task_id) DO UPDATE SET status = excluded.status, remote_binding = excluded.remote_binding, \
         remote_execution_id = excluded.remote_execution_id, remote_session_id = excluded.remote_session_id, \
         last_error_json = excluded.last_error_json, result_artifact_id = excluded.result_artifact_id, \
         last_seq = excluded.last_seq, updated_at = excluded.updated_at",
    );
    qb.build().execute(&mut *conn).await?;
    Ok(())
}

async fn insert_events(conn: &mut SqliteConnection, rows: &[&TaskEvent]) -> Result<(), StorageError> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO task_events (event_id, task_id, seq, kind, state, source, message, data_json, created_at) ",
    );
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
    qb.build().execute(&mut *conn).await?;
    Ok(())
}

async fn upsert_agent(conn: &mut SqliteConnection, a: &AgentRecord) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO agents (agent_id, display_name, transport_kind, endpoint, adapter_kind, dialect, healthcheck, \
         launch_json, defaults_json, capabilities_json, sticky_mode, metadata_json, status, registered_at, \
         updated_at, last_seen_at, lease_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT(agent_id) DO UPDATE SET display_name = excluded.display_name, \
         transport_kind = excluded.transport_kind, endpoint = excluded.endpoint, adapter_kind = excluded.adapter_kind, \
         dialect = excluded.dialect, healthcheck = excluded.healthcheck, launch_json = excluded.launch_json, \
         defaults_json = excluded.defaults_json, capabilities_json = excluded.capabilities_json, \
         sticky_mode = excluded.sticky_mode, metadata_json = excluded.metadata_json, status = excluded.status, \
         updated_at = excluded.updated_at, last_seen_at = excluded.last_seen_at, lease_expires_at = excluded.lease_expires_at",
    )
    .bind(a.agent_id.clone())
    .bind(a.display_name.clone())
    .bind(a.transport_kind.clone())
    .bind(a.endpoint.clone())
    .bind(a.adapter.clone())
    .bind(a.dialect.clone())
    .bind(a.healthcheck.clone())
    .bind(json_text(&a.launch))
    .bind(json_text(&a.defaults))
    .bind(json_text(&a.capabilities))
    .bind(a.sticky_mode.clone())
    .bind(json_text(&a.metadata))
    .bind(a.status.clone())
    .bind(a.registered_at.clone())
    .bind(a.updated_at.clone())
    .bind(a.last_seen_at.clone())
    .bind(a.lease_expires_at.clone())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ractor::Actor;

    use super::*;
    use crate::model::{DeliveryPolicy, EventKind, EventSource, JsonObject, TaskStatus};
    use crate::storage::DatabaseLocation;
    use crate::supervision::ask;

    fn task(id: &str) -> TaskRecord {
        TaskRecord {
            task_id: id.into(),
            thread_id: None,
            conversation_id: "c".into(),
            sender: "s".into(),
            intent: "i".into(),
            requested_agent_id: None,
            resolved_agent_id: Some("t".into()),
            runtime_options: JsonObject::new(),
            payload_artifact_id: None,
            status: TaskStatus::Created,
            remote: None,
            last_error: None,
            result_artifact_id: None,
            delivery: DeliveryPolicy::default(),
            metadata: JsonObject::new(),
            created_at: "2026-01-01T00:00:00.000000000Z".into(),
            updated_at: "2026-01-01T00:00:00.000000000Z".into(),
        }
    }

    fn event(task_id: &str, seq: u64) -> TaskEvent {
        TaskEvent {
            event_id: crate::ids::new_id(),
            task_id: task_id.into(),
            seq,
            kind: EventKind::TaskCreated,
            state: TaskStatus::Created,
            source: EventSource::Core,
            message: None,
            data: JsonObject::new(),
            created_at: "2026-01-01T00:00:00.000000000Z".into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_group_committed_and_a_bad_one_fails_alone() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let db = Db::open(&DatabaseLocation::File(dir.path().join("t.db").display().to_string())).await?;
        let (storage, _) = Actor::spawn(None, StorageActor, StorageArgs { db: db.clone() }).await?;
        let mut writes = Vec::new();
        for i in 0..200 {
            let storage = storage.clone();
            writes.push(tokio::spawn(async move {
                let id = format!("task-{i}");
                let op = WriteOp::Task {
                    task: Box::new(task(&id)),
                    last_seq: 1,
                    events: vec![event(&id, 1)],
                    artifacts: vec![],
                    new_turn: None,
                };
                ask(&storage, "storage", Duration::from_secs(10), |r| StorageMsg::Write(op, r)).await
            }));
        }
        for w in writes {
            w.await??.map_err(|e| e.to_string())?;
        }
        // A duplicate (task_id, seq) is a constraint violation: it fails alone, its neighbour in
        // the same batch still commits.
        let dup = WriteOp::Task {
            task: Box::new(task("task-0")),
            last_seq: 1,
            events: vec![event("task-0", 1)],
            artifacts: vec![],
            new_turn: None,
        };
        let ok_neighbour = WriteOp::NodeMeta { key: "k".into(), value: "v".into() };
        let (r1, r2) = tokio::join!(
            ask(&storage, "storage", Duration::from_secs(10), |r| StorageMsg::Write(dup, r)),
            ask(&storage, "storage", Duration::from_secs(10), |r| StorageMsg::Write(ok_neighbour, r)),
        );
        assert!(matches!(r1?, Err(StorageError::Rejected(_))));
        r2?.map_err(|e| e.to_string())?;
        let stats = ask(&storage, "storage", Duration::from_secs(10), StorageMsg::Stats).await?;
        assert!(stats.max_batch > 1, "concurrent writes share commits: {stats:?}");
        assert!(stats.commits < 202, "fewer commits than writes: {stats:?}");
        let reader = db.reader();
        assert_eq!(reader.events("task-199", 0, 10).await?.len(), 1);
        assert_eq!(reader.node_meta("k").await?.as_deref(), Some("v"));
        assert_eq!(reader.task("task-7").await?.map(|t| t.last_seq), Some(1));
        storage.drain_and_wait(Some(Duration::from_secs(5))).await?;
        Ok(())
    }
}
