//! Thread rows (their turns are written with the task that owns them, in `tasks`).

use sqlx::SqliteConnection;

use super::json_text;
use crate::error::StorageError;
use crate::model::{ThreadRecord, ThreadStatus};

/// Inserts a thread.
pub(super) async fn insert(conn: &mut SqliteConnection, t: &ThreadRecord) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO threads (thread_id, agent_a_id, agent_b_id, status, continuity_key, metadata_json, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(t.thread_id.clone())
    .bind(t.agent_a_id.as_str())
    .bind(t.agent_b_id.as_str())
    .bind(t.status.as_str())
    .bind(t.continuity_key.clone())
    .bind(json_text(&t.metadata))
    .bind(t.created_at.clone())
    .bind(t.updated_at.clone())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sets a thread's status and interruption reason.
pub(super) async fn set_state(
    conn: &mut SqliteConnection,
    thread_id: &str,
    status: ThreadStatus,
    interruption_reason: Option<&str>,
) -> Result<(), StorageError> {
    sqlx::query("UPDATE threads SET status = ?, interruption_reason = ?, updated_at = ? WHERE thread_id = ?")
        .bind(status.as_str())
        .bind(interruption_reason.map(str::to_owned))
        .bind(crate::clock::now_rfc3339())
        .bind(thread_id.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records a thread's auto-handoff plan and progress.
pub(super) async fn set_handoff(
    conn: &mut SqliteConnection,
    thread_id: &str,
    handoff: &serde_json::Value,
) -> Result<(), StorageError> {
    sqlx::query("UPDATE threads SET handoff_json = ?, updated_at = ? WHERE thread_id = ?")
        .bind(json_text(handoff))
        .bind(crate::clock::now_rfc3339())
        .bind(thread_id.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
