//! Tasks, their events, and artifacts.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{MAX_PAGE, StoreReader, json_col, opt_json_col, parse_col};
use crate::artifacts::ArtifactBody;
use crate::error::StorageError;
use crate::model::{ArtifactMeta, RemoteRef, TaskEvent, TaskRecord, TaskStatus};

/// Filters of `GET /v1/tasks`.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    /// Resolved target id.
    pub target: Option<String>,
    pub conversation_id: Option<String>,
    pub sender: Option<String>,
    pub thread_id: Option<String>,
    /// Return tasks older than this task id (ids sort by creation time).
    pub cursor: Option<String>,
    /// Page size (1..=MAX_PAGE).
    pub limit: u32,
}

/// One page of tasks, newest first.
#[derive(Clone, Debug)]
pub struct TaskPage {
    pub tasks: Vec<TaskRecord>,
    /// Pass as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A task with the seq of its last event, as recovery needs it.
#[derive(Clone, Debug)]
pub struct StoredTask {
    pub task: TaskRecord,
    pub last_seq: u64,
}

const TASK_COLUMNS: &str = "task_id, thread_id, conversation_id, sender, intent, requested_agent_id, \
    resolved_agent_id, runtime_options_json, payload_artifact_id, status, remote_binding, remote_execution_id, \
    remote_session_id, last_error_json, result_artifact_id, delivery_json, metadata_json, last_seq, created_at, updated_at";

/// Who holds an idempotency key: the task it created, the hash of the request that created it,
/// and when (a claim past the retention window no longer counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyHolder {
    pub task_id: String,
    pub request_hash: String,
    pub created_at: String,
}

impl StoreReader {
    /// The holder of idempotency key `key` of `scope`, if any.
    pub async fn idempotency_holder(&self, scope: &str, key: &str) -> Result<Option<IdempotencyHolder>, StorageError> {
        let row = sqlx::query(
            "SELECT task_id, request_hash, created_at FROM idempotency_keys WHERE scope = ? AND idem_key = ?",
        )
        .bind(scope.to_owned())
        .bind(key.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(IdempotencyHolder {
                task_id: r.try_get("task_id")?,
                request_hash: r.try_get("request_hash")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// One task with its last seq.
    pub async fn task(&self, task_id: &str) -> Result<Option<StoredTask>, StorageError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(task_id.to_owned()).fetch_optional(&self.pool).await?;
        row.map(|r| task_from_row(&r)).transpose()
    }

    /// A page of tasks matching `filter`, newest first.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<TaskPage, StorageError> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1"));
        if let Some(s) = filter.status {
            qb.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(t) = &filter.target {
            qb.push(" AND resolved_agent_id = ").push_bind(t.clone());
        }
        if let Some(c) = &filter.conversation_id {
            qb.push(" AND conversation_id = ").push_bind(c.clone());
        }
        if let Some(s) = &filter.sender {
            qb.push(" AND sender = ").push_bind(s.clone());
        }
        if let Some(t) = &filter.thread_id {
            qb.push(" AND thread_id = ").push_bind(t.clone());
        }
        if let Some(c) = &filter.cursor {
            qb.push(" AND task_id < ").push_bind(c.clone());
        }
        qb.push(" ORDER BY task_id DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut tasks = rows.iter().map(|r| task_from_row(r).map(|s| s.task)).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if tasks.len() > limit as usize {
            tasks.truncate(limit as usize);
            tasks.last().map(|t| t.task_id.clone())
        } else {
            None
        };
        Ok(TaskPage { tasks, next_cursor })
    }

    /// Every task that has not reached a terminal state (restart recovery).
    pub async fn live_tasks(&self) -> Result<Vec<StoredTask>, StorageError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE status NOT IN ('completed', 'failed', 'cancelled') ORDER BY task_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Events of a task with `seq > after`, in order, at most `limit`.
    pub async fn events(&self, task_id: &str, after: u64, limit: u32) -> Result<Vec<TaskEvent>, StorageError> {
        let rows = sqlx::query(
            "SELECT event_id, task_id, seq, kind, state, source, message, data_json, created_at \
             FROM task_events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(task_id.to_owned())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit.clamp(1, MAX_PAGE)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// An artifact's metadata and where its bytes are.
    pub async fn artifact(&self, artifact_id: &str) -> Result<Option<(ArtifactMeta, ArtifactBody)>, StorageError> {
        let row = sqlx::query(
            "SELECT artifact_id, media_type, relative_path, content, size_bytes, sha256, created_at \
             FROM artifacts WHERE artifact_id = ?",
        )
        .bind(artifact_id.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let meta = ArtifactMeta {
            artifact_id: r.try_get("artifact_id")?,
            media_type: r.try_get("media_type")?,
            size_bytes: u64::try_from(r.try_get::<i64, _>("size_bytes")?).unwrap_or(0),
            sha256: r.try_get("sha256")?,
            created_at: r.try_get("created_at")?,
        };
        let body = match (r.try_get::<Option<String>, _>("relative_path")?, r.try_get::<Option<Vec<u8>>, _>("content")?)
        {
            (Some(path), _) => ArtifactBody::File(path),
            (None, Some(bytes)) => ArtifactBody::Inline(bytes),
            (None, None) => return Err(StorageError::Corrupt(format!("artifact {artifact_id} has no content"))),
        };
        Ok(Some((meta, body)))
    }
}

fn task_from_row(r: &SqliteRow) -> Result<StoredTask, StorageError> {
    let binding: Option<String> = r.try_get("remote_binding")?;
    let remote = binding.map(|binding| -> Result<RemoteRef, StorageError> {
        Ok(RemoteRef {
            binding,
            remote_execution_id: r.try_get("remote_execution_id")?,
            remote_session_id: r.try_get("remote_session_id")?,
        })
    });
    let task = TaskRecord {
        task_id: r.try_get("task_id")?,
        thread_id: r.try_get("thread_id")?,
        conversation_id: r.try_get("conversation_id")?,
        sender: r.try_get("sender")?,
        intent: r.try_get("intent")?,
        requested_agent_id: r.try_get("requested_agent_id")?,
        resolved_agent_id: r.try_get("resolved_agent_id")?,
        runtime_options: json_col(r, "runtime_options_json")?,
        payload_artifact_id: r.try_get("payload_artifact_id")?,
        status: parse_col(r, "status")?,
        remote: remote.transpose()?,
        last_error: opt_json_col(r, "last_error_json")?,
        result_artifact_id: r.try_get("result_artifact_id")?,
        delivery: json_col(r, "delivery_json")?,
        metadata: json_col(r, "metadata_json")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    };
    let last_seq = u64::try_from(r.try_get::<i64, _>("last_seq")?).unwrap_or(0);
    Ok(StoredTask { task, last_seq })
}

fn event_from_row(r: &SqliteRow) -> Result<TaskEvent, StorageError> {
    Ok(TaskEvent {
        event_id: r.try_get("event_id")?,
        task_id: r.try_get("task_id")?,
        seq: u64::try_from(r.try_get::<i64, _>("seq")?).unwrap_or(0),
        kind: parse_col(r, "kind")?,
        state: parse_col(r, "state")?,
        source: parse_col(r, "source")?,
        message: r.try_get("message")?,
        data: json_col(r, "data_json")?,
        created_at: r.try_get("created_at")?,
    })
}
