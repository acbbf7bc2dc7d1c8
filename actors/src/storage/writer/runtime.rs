//! Runtime bookkeeping: launch history, the leases of spawned process groups, ACP session bindings.

use sqlx::SqliteConnection;

use super::json_text;
use crate::error::StorageError;

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

/// A spawned process: its launch history row and its lease (pid, process group).
pub(super) async fn launch_started(conn: &mut SqliteConnection, l: &LaunchRecord) -> Result<(), StorageError> {
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
    Ok(())
}

/// A launch ended (or became `ready`, which keeps it open); `release_lease` releases its lease.
pub(super) async fn launch_ended(
    conn: &mut SqliteConnection,
    launch_id: &str,
    status: &str,
    exit_code: Option<i32>,
    error: Option<&str>,
    release_lease: bool,
) -> Result<(), StorageError> {
    let now = crate::clock::now_rfc3339();
    let ended = if status == "ready" { None } else { Some(now.clone()) };
    sqlx::query("UPDATE launch_history SET status = ?, exit_code = COALESCE(?, exit_code), error_text = COALESCE(?, error_text), ended_at = COALESCE(?, ended_at) WHERE launch_id = ?")
        .bind(status.to_owned())
        .bind(exit_code)
        .bind(error.map(str::to_owned))
        .bind(ended)
        .bind(launch_id.to_owned())
        .execute(&mut *conn)
        .await?;
    if release_lease {
        release_lease_row(conn, launch_id, &now).await?;
    }
    Ok(())
}

/// Leases of process groups killed at start-up (left by a previous run); their launches still
/// open become `orphaned`.
pub(super) async fn release_leases(conn: &mut SqliteConnection, lease_ids: &[String]) -> Result<(), StorageError> {
    let now = crate::clock::now_rfc3339();
    for id in lease_ids {
        release_lease_row(conn, id, &now).await?;
        sqlx::query("UPDATE launch_history SET status = CASE WHEN status IN ('launching', 'ready') THEN 'orphaned' ELSE status END, ended_at = COALESCE(ended_at, ?) WHERE launch_id = ?")
            .bind(now.clone())
            .bind(id.clone())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Releases a lease once (a released lease keeps its first `released_at`).
async fn release_lease_row(conn: &mut SqliteConnection, lease_id: &str, now: &str) -> Result<(), StorageError> {
    sqlx::query("UPDATE runtime_leases SET released_at = ? WHERE lease_id = ? AND released_at IS NULL")
        .bind(now.to_owned())
        .bind(lease_id.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Upserts a session binding (keeps `created_at`).
pub(super) async fn upsert_session_binding(
    conn: &mut SqliteConnection,
    b: &SessionBindingRecord,
) -> Result<(), StorageError> {
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
    Ok(())
}

/// Pauses dispatching to a target (`Some((at, by))`) or resumes it (`None`).
pub(super) async fn set_target_pause(
    conn: &mut SqliteConnection,
    target_id: &str,
    pause: Option<&(String, String)>,
) -> Result<(), StorageError> {
    match pause {
        Some((at, by)) => {
            sqlx::query(
                "INSERT INTO target_pauses (target_id, paused_at, paused_by) VALUES (?, ?, ?) \
                 ON CONFLICT(target_id) DO NOTHING",
            )
            .bind(target_id.to_owned())
            .bind(at.clone())
            .bind(by.clone())
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM target_pauses WHERE target_id = ?")
                .bind(target_id.to_owned())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}
