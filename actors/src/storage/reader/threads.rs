//! Threads and their turns.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{MAX_PAGE, StoreReader, json_col, opt_json_col, opt_parse_col, parse_col};
use crate::error::StorageError;
use crate::ids::AgentId;
use crate::model::{ThreadRecord, ThreadStatus, ThreadTurn};

impl StoreReader {
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
        status: Option<ThreadStatus>,
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
            qb.push(" AND status = ").push_bind(s.as_str());
        }
        qb.push(" ORDER BY thread_id DESC LIMIT ").push_bind(i64::from(limit.clamp(1, MAX_PAGE)));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(thread_from_row).collect()
    }

    /// Every thread with `status` (restart handling; no page limit).
    pub async fn threads_with_status(&self, status: ThreadStatus) -> Result<Vec<ThreadRecord>, StorageError> {
        let sql = format!("SELECT {THREAD_COLUMNS} FROM threads WHERE status = ? ORDER BY thread_id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(status.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(thread_from_row).collect()
    }

    /// The turns of a thread, by index.
    pub async fn turns(&self, thread_id: &str) -> Result<Vec<ThreadTurn>, StorageError> {
        let rows = sqlx::query(
            "SELECT thread_id, turn_index, task_id, sender_agent_id, target_agent_id, target_owner, remote_peer_id, \
             destination_node_id, destination_task_id, destination_thread_id, remote_session_id, remote_execution_id, \
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
                    target_owner: opt_parse_col(r, "target_owner")?,
                    remote_peer_id: r.try_get("remote_peer_id")?,
                    destination_node_id: r.try_get("destination_node_id")?,
                    destination_task_id: r.try_get("destination_task_id")?,
                    destination_thread_id: r.try_get("destination_thread_id")?,
                    remote_session_id: r.try_get("remote_session_id")?,
                    remote_execution_id: r.try_get("remote_execution_id")?,
                    status: r.try_get("status")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }
}

const THREAD_COLUMNS: &str = "thread_id, agent_a_id, agent_b_id, status, continuity_key, last_task_id, last_actor_agent_id, \
    last_target_agent_id, metadata_json, interruption_reason, handoff_json, created_at, updated_at";

fn thread_from_row(r: &SqliteRow) -> Result<ThreadRecord, StorageError> {
    Ok(ThreadRecord {
        thread_id: r.try_get("thread_id")?,
        agent_a_id: r.try_get::<String, _>("agent_a_id")?.into(),
        agent_b_id: r.try_get::<String, _>("agent_b_id")?.into(),
        status: parse_col(r, "status")?,
        continuity_key: r.try_get("continuity_key")?,
        last_task_id: r.try_get("last_task_id")?,
        last_actor_agent_id: r.try_get::<Option<String>, _>("last_actor_agent_id")?.map(AgentId::from),
        last_target_agent_id: r.try_get::<Option<String>, _>("last_target_agent_id")?.map(AgentId::from),
        metadata: json_col(r, "metadata_json")?,
        interruption_reason: r.try_get("interruption_reason")?,
        handoff: opt_json_col(r, "handoff_json")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}
