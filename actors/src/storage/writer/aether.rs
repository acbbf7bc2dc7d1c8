//! The Aether gateway's KV rows and checkpoints (`migrations/0011_aether.sql`).

use sqlx::SqliteConnection;

use crate::error::StorageError;

/// Inserts or replaces a KV row.
pub async fn kv_put(
    conn: &mut SqliteConnection,
    namespace: &str,
    key: &str,
    value: &[u8],
    expires_at: Option<i64>,
    now: i64,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO aether_kv (namespace, key, value, expires_at, updated_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, \
         updated_at = excluded.updated_at",
    )
    .bind(namespace)
    .bind(key)
    .bind(value)
    .bind(expires_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes a KV row (absent: nothing happens).
pub async fn kv_delete(conn: &mut SqliteConnection, namespace: &str, key: &str) -> Result<(), StorageError> {
    sqlx::query("DELETE FROM aether_kv WHERE namespace = ? AND key = ?")
        .bind(namespace)
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts or replaces a checkpoint.
pub async fn checkpoint_save(
    conn: &mut SqliteConnection,
    identity: &str,
    key: &str,
    data: &[u8],
    saved_at: i64,
    expires_at: Option<i64>,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO aether_checkpoints (identity, key, data, saved_at, expires_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (identity, key) DO UPDATE SET data = excluded.data, saved_at = excluded.saved_at, \
         expires_at = excluded.expires_at",
    )
    .bind(identity)
    .bind(key)
    .bind(data)
    .bind(saved_at)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes a checkpoint (absent: nothing happens).
pub async fn checkpoint_delete(conn: &mut SqliteConnection, identity: &str, key: &str) -> Result<(), StorageError> {
    sqlx::query("DELETE FROM aether_checkpoints WHERE identity = ? AND key = ?")
        .bind(identity)
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}
