//! Tasks, their events, and artifacts.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{MAX_PAGE, StoreReader, json_col, opt_json_col, parse_col};
use crate::artifacts::ArtifactBody;
use crate::error::StorageError;
use crate::model::{ArtifactMeta, RemoteRef, TaskEvent, TaskRecord, TaskStatus};

/// Filters of `GET /v1/tasks` (all of them must hold).
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    /// Any of these statuses (empty: any status).
    pub statuses: Vec<TaskStatus>,
    /// Resolved target id.
    pub target: Option<String>,
    pub intent: Option<String>,
    pub conversation_id: Option<String>,
    pub sender: Option<String>,
    pub thread_id: Option<String>,
    /// `metadata.correlation_id` (the Aether gateway's).
    pub correlation_id: Option<String>,
    /// Only tasks with a scheduled retry (`next_retry_at` set, once retries exist).
    pub retrying: bool,
    /// Only non-terminal tasks, not awaiting input, whose last change is older than this
    /// (RFC 3339): no progress for longer than the bound.
    pub stuck_since: Option<String>,
    /// `created_at` / `updated_at` bounds (RFC 3339, normalised): after is exclusive, before
    /// exclusive.
    pub created_after: Option<String>,
    pub created_before: Option<String>,
    pub updated_after: Option<String>,
    pub updated_before: Option<String>,
    /// Case-insensitive substring of the last event's message or data.
    pub text: Option<String>,
    /// Return tasks after this position in the order (updated_at desc, task_id desc).
    pub cursor: Option<TaskCursor>,
    /// Page size (1..=MAX_PAGE).
    pub limit: u32,
}

impl TaskFilter {
    /// Whether any condition narrows the listing (a page size or a cursor does not).
    pub fn narrows(&self) -> bool {
        let options = [
            &self.target,
            &self.intent,
            &self.conversation_id,
            &self.sender,
            &self.thread_id,
            &self.correlation_id,
            &self.stuck_since,
            &self.created_after,
            &self.created_before,
            &self.updated_after,
            &self.updated_before,
            &self.text,
        ];
        !self.statuses.is_empty() || self.retrying || options.iter().any(|o| o.is_some())
    }
}

/// A position in a task listing: the last task of the previous page. Opaque to clients: the
/// base64url (no padding) of `<updated_at> <task_id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskCursor {
    pub updated_at: String,
    pub task_id: String,
}

impl TaskCursor {
    /// The cursor after `task`.
    pub fn after(task: &TaskRecord) -> Self {
        TaskCursor { updated_at: task.updated_at.clone(), task_id: task.task_id.clone() }
    }

    /// The text a client passes back.
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{} {}", self.updated_at, self.task_id))
    }

    /// Reads a cursor this node made; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (updated_at, task_id) = text.split_once(' ')?;
        let stamp = crate::clock::Timestamp::parse(updated_at).ok()?;
        if stamp.as_str() != updated_at || ulid::Ulid::from_string(task_id).is_err() {
            return None;
        }
        Some(TaskCursor { updated_at: updated_at.to_owned(), task_id: task_id.to_owned() })
    }
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
    remote_session_id, last_error_json, result_artifact_id, delivery_json, metadata_json, priority, \
    attempt, max_attempts, next_retry_at, retry_policy_json, deadlines_json, attempt_scheduled_at, attempt_started_at, \
    last_seq, created_at, updated_at";

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

    /// A page of tasks matching `filter`, newest-updated first.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<TaskPage, StorageError> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1"));
        push_filter(&mut qb, filter);
        qb.push(" ORDER BY updated_at DESC, task_id DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut tasks = rows.iter().map(|r| task_from_row(r).map(|s| s.task)).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if tasks.len() > limit as usize {
            tasks.truncate(limit as usize);
            tasks.last().map(|t| TaskCursor::after(t).encode())
        } else {
            None
        };
        Ok(TaskPage { tasks, next_cursor })
    }

    /// Whether the `tasks` table has `column` (a filter on a column a later migration adds).
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

/// Statuses a task is still live in, as an SQL list (an `IN` over them uses the status index;
/// `NOT IN` the terminal ones would scan).
const LIVE: &str = "('created', 'pending_launch', 'launching', 'ready', 'dispatching', 'running', 'awaiting_input')";

/// [`LIVE`] less `awaiting_input` (a task waiting for a person is not stuck).
const LIVE_UNATTENDED: &str = "('created', 'pending_launch', 'launching', 'ready', 'dispatching', 'running')";

/// An FTS5 query matching `text` as one phrase (its `"` doubled), so nothing in it is query
/// syntax. Pure.
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// `LIKE` pattern matching `text` anywhere (its `%`, `_` and `\\` taken literally).
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The `AND …` conditions of `filter`.
fn push_filter(qb: &mut QueryBuilder<Sqlite>, filter: &TaskFilter) {
    if !filter.statuses.is_empty() {
        qb.push(" AND status IN (");
        let mut list = qb.separated(", ");
        for s in &filter.statuses {
            list.push_bind(s.as_str());
        }
        qb.push(")");
    }
    let equal = [
        ("resolved_agent_id", &filter.target),
        ("intent", &filter.intent),
        ("conversation_id", &filter.conversation_id),
        ("sender", &filter.sender),
        ("thread_id", &filter.thread_id),
        ("json_extract(metadata_json, '$.correlation_id')", &filter.correlation_id),
    ];
    for (column, value) in equal {
        if let Some(v) = value {
            qb.push(format_args!(" AND {column} = ")).push_bind(v.clone());
        }
    }
    if filter.retrying {
        qb.push(" AND next_retry_at IS NOT NULL");
        qb.push(format_args!(" AND status IN {LIVE}"));
    }
    if let Some(since) = &filter.stuck_since {
        // A task waiting for its scheduled retry is not stuck: it waits on purpose.
        qb.push(format_args!(" AND status IN {LIVE_UNATTENDED} AND next_retry_at IS NULL AND updated_at < "))
            .push_bind(since.clone());
    }
    let bounds = [
        ("created_at >", &filter.created_after),
        ("created_at <", &filter.created_before),
        ("updated_at >", &filter.updated_after),
        ("updated_at <", &filter.updated_before),
    ];
    for (cmp, value) in bounds {
        if let Some(v) = value {
            qb.push(format_args!(" AND {cmp} ")).push_bind(v.clone());
        }
    }
    // FTS5 refuses a NUL in a query; such text (and anything under three characters) is scanned.
    if let Some(text) = filter.text.as_deref().filter(|t| t.chars().count() >= 3 && !t.contains('\0')) {
        // The trigram index finds any substring of three characters or more (case-insensitive).
        qb.push(" AND tasks.rowid IN (SELECT rowid FROM task_text WHERE task_text MATCH ")
            .push_bind(fts_phrase(text))
            .push(")");
    } else if let Some(text) = &filter.text {
        let pattern = contains_pattern(text);
        qb.push(
            " AND EXISTS (SELECT 1 FROM task_events e WHERE e.task_id = tasks.task_id AND e.seq = tasks.last_seq \
             AND (e.message LIKE ",
        )
        .push_bind(pattern.clone())
        .push(" ESCAPE '\\' OR e.data_json LIKE ")
        .push_bind(pattern)
        .push(" ESCAPE '\\'))");
    }
    if let Some(c) = &filter.cursor {
        qb.push(" AND (updated_at, task_id) < (")
            .push_bind(c.updated_at.clone())
            .push(", ")
            .push_bind(c.task_id.clone())
            .push(")");
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
        priority: parse_col(r, "priority")?,
        attempts: crate::model::Attempts {
            attempt: u32::try_from(r.try_get::<i64, _>("attempt")?).unwrap_or(1),
            max_attempts: u32::try_from(r.try_get::<i64, _>("max_attempts")?).unwrap_or(1),
            next_retry_at: r.try_get("next_retry_at")?,
            retry_policy: opt_json_col(r, "retry_policy_json")?,
            deadlines: opt_json_col(r, "deadlines_json")?.unwrap_or_default(),
            attempt_scheduled_at: r.try_get("attempt_scheduled_at")?,
            attempt_started_at: r.try_get("attempt_started_at")?,
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_lists_name_every_live_status() {
        for s in TaskStatus::ALL {
            let quoted = format!("'{s}'");
            assert_eq!(LIVE.contains(&quoted), !s.is_terminal(), "{s}");
            let unattended = !s.is_terminal() && *s != TaskStatus::AwaitingInput;
            assert_eq!(LIVE_UNATTENDED.contains(&quoted), unattended, "{s}");
        }
    }

    #[test]
    fn text_patterns_take_wildcards_literally() {
        assert_eq!(contains_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
    }
}
