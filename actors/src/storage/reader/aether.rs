//! Reads of the Aether gateway's KV rows and checkpoints; expired rows are invisible.

use sqlx::Row;

use super::StoreReader;
use crate::error::StorageError;

/// A checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub data: Vec<u8>,
    /// Unix seconds.
    pub saved_at: i64,
}

impl StoreReader {
    /// A live KV value.
    pub async fn aether_kv_get(
        &self,
        namespace: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let row = sqlx::query(
            "SELECT value FROM aether_kv WHERE namespace = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(namespace)
        .bind(key)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Live KV rows whose key starts with `prefix`, in key order, at most `limit` (+1 to tell
    /// whether more follow).
    pub async fn aether_kv_list(
        &self,
        namespace: &str,
        prefix: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let rows = sqlx::query(
            "SELECT key, value FROM aether_kv WHERE namespace = ? AND substr(key, 1, length(?)) = ? \
             AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?",
        )
        .bind(namespace)
        .bind(prefix)
        .bind(prefix)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("key")?, r.try_get("value")?))).collect()
    }

    /// A live checkpoint of `identity`.
    pub async fn aether_checkpoint(
        &self,
        identity: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<StoredCheckpoint>, StorageError> {
        let row = sqlx::query(
            "SELECT data, saved_at FROM aether_checkpoints WHERE identity = ? AND key = ? \
             AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(identity)
        .bind(key)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(StoredCheckpoint { data: r.try_get("data")?, saved_at: r.try_get("saved_at")? })).transpose()
    }

    /// The keys of `identity`'s live checkpoints, in order.
    pub async fn aether_checkpoint_keys(&self, identity: &str, now_ms: i64) -> Result<Vec<String>, StorageError> {
        let rows = sqlx::query(
            "SELECT key FROM aether_checkpoints WHERE identity = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY key",
        )
        .bind(identity)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("key")?)).collect()
    }
}
