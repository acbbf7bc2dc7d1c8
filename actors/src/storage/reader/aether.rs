//! Reads of the Aether gateway's KV rows, checkpoints and queued messages; expired rows are
//! invisible.

use sqlx::Row;

use super::StoreReader;
use crate::error::StorageError;

/// A queued message as stored (`aether_messages`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its place in publish order.
    pub seq: i64,
    pub source_topic: String,
    pub message_type: i32,
    pub workspace: String,
    pub payload: Vec<u8>,
}

/// A checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub data: Vec<u8>,
    /// Unix seconds.
    pub saved_at: i64,
}

impl StoreReader {
    /// Every Aether access rule (expired ones too: the decision skips them), oldest first.
    pub async fn aether_acl_rules(&self) -> Result<Vec<crate::model::acl_rule::Rule>, StorageError> {
        let rows = sqlx::query(
            "SELECT rule_id, principal_type, principal_id, resource_type, resource_id, access_level, granted_by, \
             reason, granted_at, expires_at FROM aether_acl_rules ORDER BY granted_at, rule_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::model::acl_rule::Rule {
                    rule_id: r.try_get("rule_id")?,
                    principal_type: r.try_get("principal_type")?,
                    principal_id: r.try_get("principal_id")?,
                    resource_type: r.try_get("resource_type")?,
                    resource_id: r.try_get("resource_id")?,
                    access_level: r.try_get("access_level")?,
                    granted_by: r.try_get("granted_by")?,
                    reason: r.try_get("reason")?,
                    granted_at: r.try_get("granted_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }

    /// Every Aether agent registration, by implementation.
    pub async fn aether_agents(&self) -> Result<Vec<crate::storage::AetherAgentRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT implementation, orchestrator_profile, description, launch_params, capabilities, extensions, \
             registered_at, updated_at FROM aether_agents ORDER BY implementation",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let (params, caps, exts): (String, String, String) =
                    (r.try_get("launch_params")?, r.try_get("capabilities")?, r.try_get("extensions")?);
                Ok(crate::storage::AetherAgentRecord {
                    implementation: r.try_get("implementation")?,
                    orchestrator_profile: r.try_get("orchestrator_profile")?,
                    description: r.try_get("description")?,
                    // Written by the storage actor as JSON; anything else reads as none.
                    launch_params: serde_json::from_str(&params).unwrap_or_default(),
                    capabilities: serde_json::from_str(&caps).unwrap_or_default(),
                    extensions: serde_json::from_str(&exts).unwrap_or_default(),
                    registered_at: r.try_get("registered_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Every Aether workspace record, by id.
    pub async fn aether_workspaces(&self) -> Result<Vec<crate::storage::WorkspaceRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT workspace_id, display_name, description, tenant_id, metadata, created_at, updated_at \
             FROM aether_workspaces ORDER BY workspace_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let metadata: String = r.try_get("metadata")?;
                Ok(crate::storage::WorkspaceRecord {
                    workspace_id: r.try_get("workspace_id")?,
                    display_name: r.try_get("display_name")?,
                    description: r.try_get("description")?,
                    tenant_id: r.try_get("tenant_id")?,
                    // Written by the storage actor as a JSON object of strings; anything else reads as none.
                    metadata: serde_json::from_str(&metadata).unwrap_or_default(),
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

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

    /// `identity`'s queued messages after `after_seq`, created at or after `not_before_ms`, in
    /// publish order, at most `limit`.
    pub async fn aether_messages_page(
        &self,
        identity: &str,
        after_seq: i64,
        not_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, source_topic, message_type, workspace, payload FROM aether_messages \
             WHERE identity = ? AND seq > ? AND created_at >= ? ORDER BY seq LIMIT ?",
        )
        .bind(identity)
        .bind(after_seq)
        .bind(not_before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredMessage {
                    seq: r.try_get("seq")?,
                    source_topic: r.try_get("source_topic")?,
                    message_type: r.try_get("message_type")?,
                    workspace: r.try_get("workspace")?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect()
    }

    /// Per identity: how many queued messages, and their payload bytes, were created at or after
    /// `from_ms` and before `until_ms` (the live backlog at start-up; the rows a sweep expires).
    pub async fn aether_message_totals(
        &self,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(String, u64, u64)>, StorageError> {
        let rows = sqlx::query(
            "SELECT identity, COUNT(*) AS n, COALESCE(SUM(length(payload)), 0) AS bytes FROM aether_messages \
             WHERE created_at >= ? AND created_at < ? GROUP BY identity",
        )
        .bind(from_ms)
        .bind(until_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let (n, bytes): (i64, i64) = (r.try_get("n")?, r.try_get("bytes")?);
                Ok((r.try_get("identity")?, u64::try_from(n).unwrap_or(0), u64::try_from(bytes).unwrap_or(0)))
            })
            .collect()
    }
}
