//! Node-level keys (node id, …).

use super::StoreReader;
use crate::error::StorageError;

impl StoreReader {
    /// A node-level value (node id, …).
    pub async fn node_meta(&self, key: &str) -> Result<Option<String>, StorageError> {
        let value = sqlx::query_scalar::<_, String>("SELECT value FROM node_meta WHERE key = ?")
            .bind(key.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }
}
