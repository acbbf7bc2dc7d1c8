//! The read side of storage: queries on the readers' pool. Never writes.

use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use crate::artifacts::ArtifactBody;
use crate::error::StorageError;
use crate::model::{AgentRecord, ArtifactMeta, RemoteRef, TaskEvent, TaskRecord, TaskStatus, ThreadRecord, ThreadTurn};
use serde_json::Value;

/// Largest page of tasks or events one query returns.
pub const MAX_PAGE: u32 = 500;

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

/// A lease whose process group may still be alive.
#[derive(Clone, Debug)]
pub struct OpenLease {
    pub lease_id: String,
    pub target_id: String,
    pub process_group: i32,
    pub command: Vec<String>,
}

/// A row of `launch_history`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LaunchRow {
    pub launch_id: String,
    pub subcontext_key: String,
    pub pid: Option<i64>,
    pub process_group: Option<i64>,
    pub status: String,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
}

/// Read access to the database.
#[derive(Clone, Debug)]
pub struct StoreReader {
    pool: SqlitePool,
}

const TASK_COLUMNS: &str = "task_id, thread_id, conversation_id, sender, intent, requested_agent_id, \
    resolved_agent_id, runtime_options_json, payload_artifact_id, status, remote_binding, remote_execution_id, \
    remote_session_id, last_error_json, result_artifact_id, delivery_json, metadata_json, last_seq, created_at, updated_at";

impl StoreReader {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        StoreReader { pool }
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
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

    /// Every registered agent, by display name then id.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>, StorageError> {
        let rows = sqlx::query(AGENT_SELECT_ALL).fetch_all(&self.pool).await?;
        rows.iter().map(agent_from_row).collect()
    }

    /// One registered agent.
    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StorageError> {
        let row = sqlx::query(AGENT_SELECT_ONE).bind(agent_id.to_owned()).fetch_optional(&self.pool).await?;
        row.map(|r| agent_from_row(&r)).transpose()
    }

    /// Leases never released: process groups a previous run may have left behind.
    pub async fn open_leases(&self) -> Result<Vec<OpenLease>, StorageError> {
        let rows = sqlx::query(
            "SELECT l.lease_id, l.target_id, l.process_group, h.command_json FROM runtime_leases l \
             LEFT JOIN launch_history h ON h.launch_id = l.lease_id WHERE l.released_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OpenLease {
                    lease_id: r.try_get("lease_id")?,
                    target_id: r.try_get("target_id")?,
                    process_group: r
                        .try_get::<Option<i64>, _>("process_group")?
                        .and_then(|g| i32::try_from(g).ok())
                        .unwrap_or(0),
                    command: r
                        .try_get::<Option<String>, _>("command_json")?
                        .and_then(|c| serde_json::from_str(&c).ok())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Every recorded launch of a target, newest first (diagnostics and tests).
    pub async fn launches(&self, target_id: &str) -> Result<Vec<LaunchRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT launch_id, subcontext_key, pid, process_group, status, exit_code, error_text, started_at, ended_at \
             FROM launch_history WHERE target_id = ? ORDER BY started_at DESC, launch_id DESC",
        )
        .bind(target_id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LaunchRow {
                    launch_id: r.try_get("launch_id")?,
                    subcontext_key: r.try_get::<Option<String>, _>("subcontext_key")?.unwrap_or_default(),
                    pid: r.try_get::<Option<i64>, _>("pid")?,
                    process_group: r.try_get::<Option<i64>, _>("process_group")?,
                    status: r.try_get("status")?,
                    exit_code: r.try_get::<Option<i64>, _>("exit_code")?,
                    error: r.try_get("error_text")?,
                    started_at: r.try_get("started_at")?,
                    ended_at: r.try_get("ended_at")?,
                })
            })
            .collect()
    }

    /// The session binding of a sticky scope, with its last activity.
    pub async fn session_binding(
        &self,
        target_id: &str,
        subcontext: &str,
        sticky: &str,
    ) -> Result<Option<(String, String)>, StorageError> {
        let row = sqlx::query(
            "SELECT remote_session_id, last_activity_at FROM session_bindings WHERE target_id = ? AND subcontext_key = ? AND sticky_key = ?",
        )
        .bind(target_id.to_owned())
        .bind(subcontext.to_owned())
        .bind(sticky.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("remote_session_id")?, r.try_get("last_activity_at")?))).transpose()
    }

    /// One thread.
    pub async fn thread(&self, thread_id: &str) -> Result<Option<ThreadRecord>, StorageError> {
        let sql = format!("SELECT {THREAD_COLUMNS} FROM threads WHERE thread_id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(thread_id.to_owned()).fetch_optional(&self.pool).await?;
        row.map(|r| thread_from_row(&r)).transpose()
    }

    /// Threads, newest first, optionally of one agent and/or with one status.
    pub async fn threads(
        &self,
        agent: Option<&str>,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ThreadRecord>, StorageError> {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {THREAD_COLUMNS} FROM threads WHERE 1 = 1"));
        if let Some(a) = agent {
            qb.push(" AND (agent_a_id = ")
                .push_bind(a.to_owned())
                .push(" OR agent_b_id = ")
                .push_bind(a.to_owned())
                .push(")");
        }
        if let Some(s) = status {
            qb.push(" AND status = ").push_bind(s.to_owned());
        }
        qb.push(" ORDER BY thread_id DESC LIMIT ").push_bind(i64::from(limit.clamp(1, MAX_PAGE)));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(thread_from_row).collect()
    }

    /// Every thread with `status` (restart handling; no page limit).
    pub async fn threads_with_status(&self, status: &str) -> Result<Vec<ThreadRecord>, StorageError> {
        let sql = format!("SELECT {THREAD_COLUMNS} FROM threads WHERE status = ? ORDER BY thread_id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(status.to_owned()).fetch_all(&self.pool).await?;
        rows.iter().map(thread_from_row).collect()
    }

    /// The turns of a thread, by index.
    pub async fn turns(&self, thread_id: &str) -> Result<Vec<ThreadTurn>, StorageError> {
        let rows = sqlx::query(
            "SELECT thread_id, turn_index, task_id, sender_agent_id, target_agent_id, remote_session_id, remote_execution_id, \
             status, created_at, updated_at FROM thread_turns WHERE thread_id = ? ORDER BY turn_index",
        )
        .bind(thread_id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ThreadTurn {
                    thread_id: r.try_get("thread_id")?,
                    turn_index: u64::try_from(r.try_get::<i64, _>("turn_index")?).unwrap_or(0),
                    task_id: r.try_get("task_id")?,
                    sender_agent_id: r.try_get("sender_agent_id")?,
                    target_agent_id: r.try_get("target_agent_id")?,
                    remote_session_id: r.try_get("remote_session_id")?,
                    remote_execution_id: r.try_get("remote_execution_id")?,
                    status: r.try_get("status")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Session bindings of one sticky key on one target: `(subcontext, remote session, last activity)`.
    pub async fn session_bindings_for(&self, target_id: &str, sticky: &str) -> Result<Vec<Value>, StorageError> {
        let rows = sqlx::query(
            "SELECT target_id, subcontext_key, sticky_key, adapter, remote_session_id, metadata_json, created_at, updated_at, \
             last_used_at, last_activity_at FROM session_bindings WHERE target_id = ? AND sticky_key = ? ORDER BY subcontext_key",
        )
        .bind(target_id.to_owned())
        .bind(sticky.to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "target_id": r.try_get::<String, _>("target_id")?,
                    "subcontext_key": r.try_get::<String, _>("subcontext_key")?,
                    "sticky_key": r.try_get::<String, _>("sticky_key")?,
                    "adapter": r.try_get::<String, _>("adapter")?,
                    "remote_session_id": r.try_get::<String, _>("remote_session_id")?,
                    "metadata": json_col::<Value>(r, "metadata_json")?,
                    "created_at": r.try_get::<String, _>("created_at")?,
                    "updated_at": r.try_get::<String, _>("updated_at")?,
                    "last_used_at": r.try_get::<String, _>("last_used_at")?,
                    "last_activity_at": r.try_get::<String, _>("last_activity_at")?,
                }))
            })
            .collect()
    }

    /// A node-level value (node id, …).
    pub async fn node_meta(&self, key: &str) -> Result<Option<String>, StorageError> {
        let value = sqlx::query_scalar::<_, String>("SELECT value FROM node_meta WHERE key = ?")
            .bind(key.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }
}

const THREAD_COLUMNS: &str = "thread_id, agent_a_id, agent_b_id, status, continuity_key, last_task_id, last_actor_agent_id, \
    last_target_agent_id, metadata_json, interruption_reason, handoff_json, created_at, updated_at";

fn thread_from_row(r: &SqliteRow) -> Result<ThreadRecord, StorageError> {
    Ok(ThreadRecord {
        thread_id: r.try_get("thread_id")?,
        agent_a_id: r.try_get("agent_a_id")?,
        agent_b_id: r.try_get("agent_b_id")?,
        status: r.try_get("status")?,
        continuity_key: r.try_get("continuity_key")?,
        last_task_id: r.try_get("last_task_id")?,
        last_actor_agent_id: r.try_get("last_actor_agent_id")?,
        last_target_agent_id: r.try_get("last_target_agent_id")?,
        metadata: json_col(r, "metadata_json")?,
        interruption_reason: r.try_get("interruption_reason")?,
        handoff: opt_json_col(r, "handoff_json")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const AGENT_SELECT_ALL: &str = "SELECT agent_id, display_name, transport_kind, endpoint, adapter_kind, dialect, healthcheck, \
    launch_json, defaults_json, capabilities_json, sticky_mode, metadata_json, status, registered_at, updated_at, \
    last_seen_at, lease_expires_at FROM agents ORDER BY display_name, agent_id";
const AGENT_SELECT_ONE: &str = "SELECT agent_id, display_name, transport_kind, endpoint, adapter_kind, dialect, healthcheck, \
    launch_json, defaults_json, capabilities_json, sticky_mode, metadata_json, status, registered_at, updated_at, \
    last_seen_at, lease_expires_at FROM agents WHERE agent_id = ?";

fn json_col<T: DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<T, StorageError> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StorageError::Corrupt(format!("{col}: {e}")))
}

fn opt_json_col<T: DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<Option<T>, StorageError> {
    let text: Option<String> = row.try_get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| StorageError::Corrupt(format!("{col}: {e}")))).transpose()
}

fn parse_col<T: std::str::FromStr>(row: &SqliteRow, col: &str) -> Result<T, StorageError>
where
    T::Err: std::fmt::Display,
{
    let text: String = row.try_get(col)?;
    text.parse().map_err(|e: T::Err| StorageError::Corrupt(format!("{col}: {e}")))
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

fn agent_from_row(r: &SqliteRow) -> Result<AgentRecord, StorageError> {
    Ok(AgentRecord {
        agent_id: r.try_get("agent_id")?,
        display_name: r.try_get("display_name")?,
        transport_kind: r.try_get("transport_kind")?,
        endpoint: r.try_get("endpoint")?,
        adapter: r.try_get("adapter_kind")?,
        dialect: r.try_get("dialect")?,
        healthcheck: r.try_get("healthcheck")?,
        launch: json_col(r, "launch_json")?,
        defaults: json_col(r, "defaults_json")?,
        capabilities: json_col(r, "capabilities_json")?,
        sticky_mode: r.try_get("sticky_mode")?,
        metadata: json_col(r, "metadata_json")?,
        status: r.try_get("status")?,
        registered_at: r.try_get("registered_at")?,
        updated_at: r.try_get("updated_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
        lease_expires_at: r.try_get("lease_expires_at")?,
    })
}
