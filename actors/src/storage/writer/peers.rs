//! Static peers and their cached targets.

use sqlx::SqliteConnection;

use super::json_text;
use crate::error::StorageError;
use crate::model::{PeerRecord, PeerTargetRecord};

/// Inserts or replaces a peer (all but `registered_at` on update).
pub(super) async fn upsert(conn: &mut SqliteConnection, p: &PeerRecord) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO peers (peer_id, display_name, base_url, status, capabilities_json, metadata_json, last_error, \
         public_key, key_id, registered_at, updated_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT(peer_id) DO UPDATE SET display_name = excluded.display_name, base_url = excluded.base_url, \
         status = excluded.status, capabilities_json = excluded.capabilities_json, \
         metadata_json = excluded.metadata_json, last_error = excluded.last_error, \
         public_key = excluded.public_key, key_id = excluded.key_id, \
         updated_at = excluded.updated_at, last_seen_at = excluded.last_seen_at",
    )
    .bind(p.peer_id.clone())
    .bind(p.display_name.clone())
    .bind(p.base_url.clone())
    .bind(p.status.as_str())
    .bind(json_text(&p.capabilities))
    .bind(json_text(&p.metadata))
    .bind(p.last_error.clone())
    .bind(p.public_key.clone())
    .bind(p.key_id.clone())
    .bind(p.registered_at.clone())
    .bind(p.updated_at.clone())
    .bind(p.last_seen_at.clone())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Replaces the cached targets of a peer with `targets` (targets it no longer exports go).
pub(super) async fn replace_targets(
    conn: &mut SqliteConnection,
    peer_id: &str,
    targets: &[PeerTargetRecord],
) -> Result<(), StorageError> {
    sqlx::query("DELETE FROM peer_targets WHERE peer_id = ?").bind(peer_id.to_owned()).execute(&mut *conn).await?;
    for t in targets {
        sqlx::query(
            "INSERT INTO peer_targets (peer_id, target_id, display_name, capabilities_json, defaults_json, \
             metadata_json, status, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(peer_id.to_owned())
        .bind(t.target_id.clone())
        .bind(t.display_name.clone())
        .bind(json_text(&t.capabilities))
        .bind(json_text(&t.defaults))
        .bind(json_text(&t.metadata))
        .bind(t.status.clone())
        .bind(t.synced_at.clone())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
