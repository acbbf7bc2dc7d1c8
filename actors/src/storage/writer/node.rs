//! Node-level keys (node id, …).

use sqlx::SqliteConnection;

use crate::error::StorageError;

/// Sets `key` to `value`.
pub(super) async fn set_meta(conn: &mut SqliteConnection, key: &str, value: &str) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO node_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )
    .bind(key.to_owned())
    .bind(value.to_owned())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
