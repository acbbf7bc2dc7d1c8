//! Registered agents.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{StoreReader, json_col, parse_col};
use crate::error::StorageError;
use crate::model::AgentRecord;

impl StoreReader {
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
}

const AGENT_SELECT_ALL: &str = "SELECT agent_id, display_name, transport_kind, endpoint, adapter_kind, dialect, healthcheck, \
    launch_json, defaults_json, capabilities_json, sticky_mode, metadata_json, status, registered_at, updated_at, \
    last_seen_at, lease_expires_at FROM agents ORDER BY display_name, agent_id";
const AGENT_SELECT_ONE: &str = "SELECT agent_id, display_name, transport_kind, endpoint, adapter_kind, dialect, healthcheck, \
    launch_json, defaults_json, capabilities_json, sticky_mode, metadata_json, status, registered_at, updated_at, \
    last_seen_at, lease_expires_at FROM agents WHERE agent_id = ?";

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
        status: parse_col(r, "status")?,
        registered_at: parse_col(r, "registered_at")?,
        updated_at: parse_col(r, "updated_at")?,
        last_seen_at: parse_col(r, "last_seen_at")?,
        lease_expires_at: parse_col(r, "lease_expires_at")?,
    })
}
