//! The Aether gateway's KV rows and checkpoints (`migrations/0011_aether.sql`) and its durable
//! message queue (`migrations/0014_aether_messages.sql`).

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::error::StorageError;
use crate::model::kv_update::{KvUpdate, OutcomeSlot, RowChange};

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

/// Applies an atomic update to a KV row (read, decide, write in the caller's transaction) and
/// leaves the outcome in `outcome`.
pub async fn kv_update(
    conn: &mut SqliteConnection,
    namespace: &str,
    key: &str,
    update: &KvUpdate,
    ttl_ms: Option<i64>,
    now: i64,
    outcome: &OutcomeSlot,
) -> Result<(), StorageError> {
    let row = sqlx::query(
        "SELECT value, expires_at FROM aether_kv WHERE namespace = ? AND key = ? \
         AND (expires_at IS NULL OR expires_at > ?)",
    )
    .bind(namespace)
    .bind(key)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let (current, expires_at): (Option<Vec<u8>>, Option<i64>) = match row {
        Some(row) => (Some(row.try_get("value")?), row.try_get("expires_at")?),
        None => (None, None),
    };
    let (change, result) = update.apply(current.as_deref());
    match change {
        RowChange::Keep => {}
        RowChange::Write { value, fresh } => {
            let expires_at = if fresh { ttl_ms.map(|t| now + t) } else { expires_at };
            kv_put(conn, namespace, key, &value, expires_at, now).await?;
        }
        RowChange::Delete => kv_delete(conn, namespace, key).await?,
    }
    outcome.set(result);
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

/// A message kept for an identity that is not connected (`migrations/0014_aether_messages.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The identity string it is for (`ag::ws::impl::spec`, …).
    pub identity: String,
    pub source_topic: String,
    pub message_type: i32,
    pub workspace: String,
    /// Shared with the delivered message: a queued payload is never copied before its INSERT.
    pub payload: std::sync::Arc<Vec<u8>>,
    /// Unix ms.
    pub created_at: i64,
}

pub(super) fn enqueue_statement(rows: &[&QueuedMessage]) -> QueryBuilder<Sqlite> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO aether_messages (identity, source_topic, message_type, workspace, payload, created_at) ",
    );
    qb.push_values(rows, |mut b, m| {
        b.push_bind(m.identity.clone())
            .push_bind(m.source_topic.clone())
            .push_bind(m.message_type)
            .push_bind(m.workspace.clone())
            .push_bind(m.payload.as_ref().clone())
            .push_bind(m.created_at);
    });
    qb
}

/// Appends queued messages, in order (their seqs ascend in this order).
pub async fn enqueue(conn: &mut SqliteConnection, rows: &[&QueuedMessage]) -> Result<(), StorageError> {
    enqueue_statement(rows).build().execute(conn).await?;
    Ok(())
}

/// Puts messages a session's stream was handed but never wrote back at the front of their
/// identities' queues, in order: their seqs are below every row's (seqs need only be unique and
/// ordered, so they go negative). They are older than anything still queued: what is queued was
/// either sent after them or not yet handed.
pub async fn enqueue_front(conn: &mut SqliteConnection, rows: &[&QueuedMessage]) -> Result<(), StorageError> {
    let lowest: i64 =
        sqlx::query_scalar("SELECT COALESCE(MIN(seq), 1) FROM aether_messages").fetch_one(&mut *conn).await?;
    let base = lowest.min(1) - rows.len() as i64;
    for (seq, m) in (base..).zip(rows) {
        sqlx::query(
            "INSERT INTO aether_messages (seq, identity, source_topic, message_type, workspace, payload, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(seq)
        .bind(&m.identity)
        .bind(&m.source_topic)
        .bind(m.message_type)
        .bind(&m.workspace)
        .bind(m.payload.as_slice())
        .bind(m.created_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Deletes `identity`'s queued messages with seqs in `from_seq..=upto_seq` (a page handed to its
/// session; rows put at the front after the page was read stay).
pub async fn delivered(
    conn: &mut SqliteConnection,
    identity: &str,
    from_seq: i64,
    upto_seq: i64,
) -> Result<(), StorageError> {
    sqlx::query("DELETE FROM aether_messages WHERE identity = ? AND seq >= ? AND seq <= ?")
        .bind(identity)
        .bind(from_seq)
        .bind(upto_seq)
        .execute(conn)
        .await?;
    Ok(())
}

/// An Aether workspace record (`migrations/0015_aether_workspaces.sql`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceRecord {
    pub workspace_id: String,
    pub display_name: String,
    pub description: String,
    pub tenant_id: String,
    /// Keys and values, in key order.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Unix ms.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A change to a workspace record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkspaceWrite {
    /// Refused (not applied) when the id exists.
    Create(WorkspaceRecord),
    /// Not applied when there is no such record.
    Update(WorkspaceRecord),
    Delete(String),
}

/// Whether a conditional write was applied, read by the caller after the commit.
#[derive(Clone, Debug, Default)]
pub struct AppliedSlot(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl AppliedSlot {
    pub fn set(&self, applied: bool) {
        self.0.store(applied, std::sync::atomic::Ordering::Release);
    }

    pub fn applied(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Applies a workspace change and says whether it was applied.
pub async fn workspace(
    conn: &mut SqliteConnection,
    write: &WorkspaceWrite,
    applied: &AppliedSlot,
) -> Result<(), StorageError> {
    let done = match write {
        WorkspaceWrite::Create(w) => workspace_create(conn, w).await?,
        WorkspaceWrite::Update(w) => workspace_update(conn, w).await?,
        WorkspaceWrite::Delete(id) => workspace_delete(conn, id).await?,
    };
    applied.set(done);
    Ok(())
}

/// An Aether agent registration (`migrations/0016_aether_agents.sql`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AetherAgentRecord {
    pub implementation: String,
    pub orchestrator_profile: String,
    pub description: String,
    pub launch_params: std::collections::BTreeMap<String, String>,
    pub capabilities: std::collections::BTreeMap<String, bool>,
    pub extensions: Vec<String>,
    /// Unix ms.
    pub registered_at: i64,
    pub updated_at: i64,
}

/// A change to the agent registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentWrite {
    /// Registers or re-registers (the first registration time stays); always applied.
    Register(AetherAgentRecord),
    /// Not applied when the implementation is not registered.
    Update(AetherAgentRecord),
    Delete(String),
}

/// Applies an agent registry change and says whether it was applied.
pub async fn agent(conn: &mut SqliteConnection, write: &AgentWrite, applied: &AppliedSlot) -> Result<(), StorageError> {
    let done = match write {
        AgentWrite::Register(a) => {
            sqlx::query(
                "INSERT INTO aether_agents (implementation, orchestrator_profile, description, launch_params, \
                 capabilities, extensions, registered_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (implementation) DO UPDATE SET orchestrator_profile = excluded.orchestrator_profile, \
                 description = excluded.description, launch_params = excluded.launch_params, \
                 capabilities = excluded.capabilities, extensions = excluded.extensions, updated_at = excluded.updated_at",
            )
            .bind(&a.implementation)
            .bind(&a.orchestrator_profile)
            .bind(&a.description)
            .bind(json(&a.launch_params))
            .bind(json(&a.capabilities))
            .bind(json(&a.extensions))
            .bind(a.registered_at)
            .bind(a.updated_at)
            .execute(conn)
            .await?
            .rows_affected()
                == 1
        }
        AgentWrite::Update(a) => {
            sqlx::query(
                "UPDATE aether_agents SET orchestrator_profile = ?, description = ?, launch_params = ?, \
                 capabilities = ?, extensions = ?, updated_at = ? WHERE implementation = ?",
            )
            .bind(&a.orchestrator_profile)
            .bind(&a.description)
            .bind(json(&a.launch_params))
            .bind(json(&a.capabilities))
            .bind(json(&a.extensions))
            .bind(a.updated_at)
            .bind(&a.implementation)
            .execute(conn)
            .await?
            .rows_affected()
                == 1
        }
        AgentWrite::Delete(implementation) => {
            sqlx::query("DELETE FROM aether_agents WHERE implementation = ?")
                .bind(implementation)
                .execute(conn)
                .await?
                .rows_affected()
                == 1
        }
    };
    applied.set(done);
    Ok(())
}

/// A change to the access rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclWrite {
    /// Grants, or re-grants (the rule with the same principal and resource keeps its id and
    /// takes the new level, reason, grantor and expiry); always applied.
    Grant(crate::model::acl_rule::Rule),
    /// Not applied when there is no such rule.
    Delete { rule_id: String },
}

/// Applies an access rule change and says whether it was applied.
pub async fn acl(conn: &mut SqliteConnection, write: &AclWrite, applied: &AppliedSlot) -> Result<(), StorageError> {
    let done = match write {
        AclWrite::Grant(r) => {
            sqlx::query(
                "INSERT INTO aether_acl_rules (rule_id, principal_type, principal_id, resource_type, resource_id, \
                 access_level, granted_by, reason, granted_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (principal_type, principal_id, resource_type, resource_id) DO UPDATE SET \
                 access_level = excluded.access_level, granted_by = excluded.granted_by, reason = excluded.reason, \
                 granted_at = excluded.granted_at, expires_at = excluded.expires_at",
            )
            .bind(&r.rule_id)
            .bind(&r.principal_type)
            .bind(&r.principal_id)
            .bind(&r.resource_type)
            .bind(&r.resource_id)
            .bind(r.access_level)
            .bind(&r.granted_by)
            .bind(&r.reason)
            .bind(r.granted_at)
            .bind(r.expires_at)
            .execute(conn)
            .await?
            .rows_affected()
                == 1
        }
        AclWrite::Delete { rule_id } => {
            sqlx::query("DELETE FROM aether_acl_rules WHERE rule_id = ?")
                .bind(rule_id)
                .execute(conn)
                .await?
                .rows_affected()
                == 1
        }
    };
    applied.set(done);
    Ok(())
}

/// A JSON column's text (maps and lists of plain values do not fail to serialise).
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// Creates a workspace record; `false` (nothing written) when one with its id exists.
pub async fn workspace_create(conn: &mut SqliteConnection, w: &WorkspaceRecord) -> Result<bool, StorageError> {
    let metadata = serde_json::to_string(&w.metadata).unwrap_or_else(|_| "{}".into());
    let done = sqlx::query(
        "INSERT INTO aether_workspaces (workspace_id, display_name, description, tenant_id, metadata, created_at, \
         updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id) DO NOTHING",
    )
    .bind(&w.workspace_id)
    .bind(&w.display_name)
    .bind(&w.description)
    .bind(&w.tenant_id)
    .bind(metadata)
    .bind(w.created_at)
    .bind(w.updated_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces a workspace record's fields (not its creation time); `false` when there is none.
pub async fn workspace_update(conn: &mut SqliteConnection, w: &WorkspaceRecord) -> Result<bool, StorageError> {
    let metadata = serde_json::to_string(&w.metadata).unwrap_or_else(|_| "{}".into());
    let done = sqlx::query(
        "UPDATE aether_workspaces SET display_name = ?, description = ?, tenant_id = ?, metadata = ?, updated_at = ? \
         WHERE workspace_id = ?",
    )
    .bind(&w.display_name)
    .bind(&w.description)
    .bind(&w.tenant_id)
    .bind(metadata)
    .bind(w.updated_at)
    .bind(&w.workspace_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a workspace record; `false` when there is none.
pub async fn workspace_delete(conn: &mut SqliteConnection, workspace_id: &str) -> Result<bool, StorageError> {
    let done =
        sqlx::query("DELETE FROM aether_workspaces WHERE workspace_id = ?").bind(workspace_id).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes queued messages created before `before_ms` (past the retention).
pub async fn expire(conn: &mut SqliteConnection, before_ms: i64) -> Result<(), StorageError> {
    sqlx::query("DELETE FROM aether_messages WHERE created_at < ?").bind(before_ms).execute(conn).await?;
    Ok(())
}
