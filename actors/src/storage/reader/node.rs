//! Node-level keys (node id, …).

use super::StoreReader;
use crate::error::StorageError;

/// The node id this process runs under (the `--node-id` flag, the stored id, or the one derived
/// from the key), written at every start: what a relay names as its origin.
pub const NODE_ID_IN_USE: &str = "node_id_in_use";

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
