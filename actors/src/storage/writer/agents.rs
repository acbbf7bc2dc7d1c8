//! Registered agents.

use sqlx::SqliteConnection;

use super::json_text;
use crate::error::StorageError;
use crate::model::AgentRecord;

/// Inserts or replaces an agent (all but `registered_at` on update).
pub(super) async fn upsert(conn: &mut SqliteConnection, a: &AgentRecord) -> Result<(), StorageError> {
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
    .bind(a.status.as_str())
    .bind(a.registered_at.as_str())
    .bind(a.updated_at.as_str())
    .bind(a.last_seen_at.as_str())
    .bind(a.lease_expires_at.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
