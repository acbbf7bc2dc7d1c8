//! Runtime bookkeeping: leases, launch history, ACP session bindings.

use serde_json::Value;
use sqlx::Row;

use super::{StoreReader, json_col};
use crate::error::StorageError;

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

impl StoreReader {
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
}

/// A target an operator paused: when and by whom.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TargetPause {
    pub target_id: String,
    pub paused_at: String,
    pub paused_by: String,
}

impl StoreReader {
    /// Every paused target.
    pub async fn target_pauses(&self) -> Result<Vec<TargetPause>, StorageError> {
        let rows = sqlx::query("SELECT target_id, paused_at, paused_by FROM target_pauses ORDER BY target_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TargetPause {
                    target_id: r.try_get("target_id")?,
                    paused_at: r.try_get("paused_at")?,
                    paused_by: r.try_get("paused_by")?,
                })
            })
            .collect()
    }
}
