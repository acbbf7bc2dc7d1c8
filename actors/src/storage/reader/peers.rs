//! Static peers and their cached targets.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{StoreReader, json_col, parse_col};
use crate::error::StorageError;
use crate::model::{PeerRecord, PeerTargetRecord};

impl StoreReader {
    /// Every peer, by display name then id.
    pub async fn peers(&self) -> Result<Vec<PeerRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT peer_id, display_name, base_url, status, capabilities_json, metadata_json, last_error, \
             public_key, key_id, registered_at, updated_at, last_seen_at FROM peers ORDER BY display_name, peer_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(peer_from_row).collect()
    }

    /// Every cached peer target, by target id then peer id.
    pub async fn peer_targets(&self) -> Result<Vec<PeerTargetRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT peer_id, target_id, display_name, capabilities_json, defaults_json, metadata_json, status, \
             synced_at FROM peer_targets ORDER BY target_id, peer_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(peer_target_from_row).collect()
    }
}

fn peer_from_row(r: &SqliteRow) -> Result<PeerRecord, StorageError> {
    Ok(PeerRecord {
        peer_id: r.try_get("peer_id")?,
        display_name: r.try_get("display_name")?,
        base_url: r.try_get("base_url")?,
        status: parse_col(r, "status")?,
        capabilities: json_col(r, "capabilities_json")?,
        metadata: json_col(r, "metadata_json")?,
        last_error: r.try_get("last_error")?,
        public_key: r.try_get("public_key")?,
        key_id: r.try_get("key_id")?,
        registered_at: r.try_get("registered_at")?,
        updated_at: r.try_get("updated_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
    })
}

fn peer_target_from_row(r: &SqliteRow) -> Result<PeerTargetRecord, StorageError> {
    Ok(PeerTargetRecord {
        peer_id: r.try_get("peer_id")?,
        target_id: r.try_get("target_id")?,
        display_name: r.try_get("display_name")?,
        capabilities: json_col(r, "capabilities_json")?,
        defaults: json_col(r, "defaults_json")?,
        metadata: json_col(r, "metadata_json")?,
        status: r.try_get("status")?,
        synced_at: r.try_get("synced_at")?,
    })
}
