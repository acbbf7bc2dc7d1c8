//! The Aether gateway's KV and checkpoint rules, pure: who may use KV, where each scope's keys
//! live (the storage namespace), sizes and lifetimes. The connection actor reads and writes
//! through these; storage holds the rows (`aether_kv`, `aether_checkpoints`).
//!
//! Scopes (as upstream, surprising names included): `global` and `workspace` are shared by all
//! principals; `user` and `user-workspace` are private to the calling agent (namespaced by its
//! implementation and specifier, not its workspace); `*-exclusive` are the agent's own;
//! `user-shared` / `user-workspace-shared` are per user, across agents.

use super::identity::{Identity, PrincipalKind};

/// Largest KV value, in bytes.
pub const KV_VALUE_MAX: usize = 1024 * 1024;
/// Largest checkpoint, in bytes (replies must stay under the SDK's 4 MiB frame limit).
pub const CHECKPOINT_MAX: usize = 3 * 1024 * 1024;
/// Keys per LIST page when the request gives no limit, and the most it may ask for.
pub const LIST_DEFAULT: u32 = 100;
pub const LIST_MAX: u32 = 1000;
/// Lifetime of a checkpoint saved with the SDK's default TTL (-1), in seconds.
pub const CHECKPOINT_DEFAULT_TTL_S: i64 = 3600;

/// A KV scope (the wire enum; an unknown value is `Workspace`, as upstream treats unspecified).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvScope {
    Global,
    Workspace,
    User,
    UserWorkspace,
    GlobalExclusive,
    WorkspaceExclusive,
    UserShared,
    UserWorkspaceShared,
}

impl KvScope {
    /// From the wire number (`KVOperation.Scope`).
    pub fn from_wire(n: i32) -> KvScope {
        match n {
            1 => KvScope::Global,
            3 => KvScope::User,
            4 => KvScope::UserWorkspace,
            5 => KvScope::GlobalExclusive,
            6 => KvScope::WorkspaceExclusive,
            7 => KvScope::UserShared,
            8 => KvScope::UserWorkspaceShared,
            _ => KvScope::Workspace,
        }
    }
}

/// A KV operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    Get,
    Put,
    Delete,
    List,
    /// Counters and conditional writes, applied atomically by the storage actor.
    Update(crate::model::kv_update::KvUpdate),
    /// Set operations and identity purges: not served yet (named in the answer).
    Unserved(&'static str),
}

/// A KV request as decoded from the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvRequest {
    pub op: KvOp,
    pub scope: KvScope,
    /// The key (LIST: the prefix).
    pub key: String,
    pub value: Vec<u8>,
    pub user_id: String,
    /// Empty: the caller's workspace.
    pub workspace: String,
    /// Seconds; 0 or less: no expiry.
    pub ttl_seconds: i64,
    /// LIST page size; 0: the default.
    pub limit: i32,
    /// Empty when the SDK sent none (the reply goes to `on_kv_response`).
    pub request_id: String,
}

/// A KV reply (always sent, also without a request id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvReply {
    pub request_id: String,
    pub success: bool,
    pub value: Vec<u8>,
    pub keys: Vec<String>,
    pub entries: Vec<(String, Vec<u8>)>,
    pub has_more: bool,
    /// A counter's value (INCREMENT, DECREMENT and their guarded forms).
    pub counter_value: i64,
    /// Whether a guarded or conditional update was carried out.
    pub applied: bool,
}

/// Why a KV request cannot be carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("ERR_PERMISSION_DENIED: {0} principals may not use KV")]
    Principal(&'static str),
    #[error("ERR_INVALID_ARGUMENT: {0}")]
    Invalid(String),
    #[error("ERR_NOT_IMPLEMENTED: KV {0} is not served by this node")]
    Unserved(&'static str),
    #[error("KV_ERROR: storage failed; retry")]
    Storage,
}

/// Replaces the namespace separators `:` and `|` inside a component.
fn component(s: &str) -> String {
    s.replace([':', '|'], "_")
}

/// The storage namespace of `scope` for `caller`.
pub fn namespace(scope: KvScope, caller: &Identity, user_id: &str, workspace: &str) -> Result<String, KvError> {
    match caller.kind {
        PrincipalKind::User | PrincipalKind::Orchestrator | PrincipalKind::Bridge => {
            return Err(KvError::Principal(caller.kind.as_str()));
        }
        _ => {}
    }
    let ws = if workspace.is_empty() { caller.workspace.clone().unwrap_or_default() } else { workspace.to_owned() };
    let need_ws = || {
        if ws.is_empty() {
            Err(KvError::Invalid("workspace is required for this scope".into()))
        } else {
            Ok(component(&ws))
        }
    };
    let need_user = || {
        if user_id.is_empty() {
            Err(KvError::Invalid("user_id is required for this scope".into()))
        } else {
            Ok(component(user_id))
        }
    };
    // Private scopes need a full implementation and specifier (a pooled task has an id made
    // per connection, so it is refused like upstream).
    let agent = || match (&caller.implementation, &caller.specifier, caller.kind) {
        (Some(i), Some(s), kind) if kind != PrincipalKind::PooledTask && !i.is_empty() && !s.is_empty() => {
            Ok(format!("{}|{}", component(i), component(s)))
        }
        _ => Err(KvError::Invalid("this scope needs a caller with an implementation and a specifier".into())),
    };
    Ok(match scope {
        KvScope::Global => "kv:global".to_owned(),
        KvScope::Workspace => format!("kv:ws:{}", need_ws()?),
        KvScope::User => format!("kv:agent:{}:user:{}", agent()?, need_user()?),
        KvScope::UserWorkspace => format!("kv:agent:{}:user:{}:ws:{}", agent()?, need_user()?, need_ws()?),
        KvScope::GlobalExclusive => format!("kv:agent:{}:global", agent()?),
        KvScope::WorkspaceExclusive => format!("kv:agent:{}:ws:{}", agent()?, need_ws()?),
        KvScope::UserShared => format!("kv:user:{}", need_user()?),
        KvScope::UserWorkspaceShared => format!("kv:user:{}:ws:{}", need_user()?, need_ws()?),
    })
}

/// Checks what a write carries.
pub fn check_put(req: &KvRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::Invalid("key must not be empty".into()));
    }
    if req.value.len() > KV_VALUE_MAX {
        return Err(KvError::Invalid(format!("value is {} bytes; at most {KV_VALUE_MAX}", req.value.len())));
    }
    Ok(())
}

/// A KV row's expiry (unix ms) for `ttl_seconds` from `now_ms`; none for 0 or less.
pub fn kv_expiry(now_ms: i64, ttl_seconds: i64) -> Option<i64> {
    (ttl_seconds > 0).then(|| now_ms.saturating_add(ttl_seconds.saturating_mul(1000)))
}

/// The page size of a LIST.
pub fn list_limit(limit: i32) -> u32 {
    match u32::try_from(limit) {
        Ok(0) | Err(_) => LIST_DEFAULT,
        Ok(n) => n.min(LIST_MAX),
    }
}

/// A checkpoint operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointOp {
    Save,
    Load,
    Delete,
    List,
}

impl CheckpointOp {
    /// From the wire number (0 is SAVE: an absent op is a save, as upstream).
    pub fn from_wire(n: i32) -> Option<CheckpointOp> {
        match n {
            0 => Some(CheckpointOp::Save),
            1 => Some(CheckpointOp::Load),
            2 => Some(CheckpointOp::Delete),
            3 => Some(CheckpointOp::List),
            _ => None,
        }
    }
}

/// A checkpoint request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRequest {
    pub op: CheckpointOp,
    /// Empty: `default`.
    pub key: String,
    pub data: Vec<u8>,
    /// -1: the default (1 h); 0: never expires; more: seconds.
    pub ttl: i64,
    pub request_id: String,
}

/// A checkpoint reply (always sent; errors are `success=false` with `error`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointReply {
    pub request_id: String,
    pub success: bool,
    pub data: Vec<u8>,
    pub keys: Vec<String>,
    pub error: String,
    /// Unix seconds.
    pub saved_at: i64,
}

/// The stored key of a checkpoint.
pub fn checkpoint_key(key: &str) -> &str {
    if key.is_empty() { "default" } else { key }
}

/// A checkpoint's expiry (unix ms) for `ttl` from `now_ms`.
pub fn checkpoint_expiry(now_ms: i64, ttl: i64) -> Option<i64> {
    match ttl {
        0 => None,
        t if t < 0 => Some(now_ms.saturating_add(CHECKPOINT_DEFAULT_TTL_S * 1000)),
        t => Some(now_ms.saturating_add(t.saturating_mul(1000))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::identity::ClaimedPrincipal;
    use super::*;

    fn agent(spec: &str) -> Identity {
        let claim = ClaimedPrincipal::Agent {
            workspace: "default".into(),
            implementation: "my-agent".into(),
            specifier: spec.into(),
        };
        claim.resolve(String::new).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn shared_scopes_meet_and_private_ones_do_not() {
        let (a, b) = (agent("a"), agent("b"));
        let ns = |scope, who: &Identity| namespace(scope, who, "alice", "");
        assert_eq!(ns(KvScope::Global, &a), Ok("kv:global".to_owned()));
        assert_eq!(ns(KvScope::Global, &a), ns(KvScope::Global, &b));
        assert_eq!(ns(KvScope::Workspace, &a), Ok("kv:ws:default".to_owned()));
        assert_eq!(ns(KvScope::Workspace, &a), ns(KvScope::Workspace, &b));
        assert_eq!(ns(KvScope::User, &a), Ok("kv:agent:my-agent|a:user:alice".to_owned()));
        assert_ne!(ns(KvScope::User, &a), ns(KvScope::User, &b));
        assert_eq!(ns(KvScope::UserShared, &a), ns(KvScope::UserShared, &b));
        assert_eq!(ns(KvScope::WorkspaceExclusive, &a), Ok("kv:agent:my-agent|a:ws:default".to_owned()));
        assert_eq!(namespace(KvScope::Workspace, &a, "", "other"), Ok("kv:ws:other".to_owned()));
        assert_eq!(namespace(KvScope::UserShared, &a, "x:y|z", ""), Ok("kv:user:x_y_z".to_owned()));
    }

    #[test]
    fn who_and_what_kv_refuses() {
        let user = ClaimedPrincipal::User { user_id: "u".into(), window_id: "w".into() }
            .resolve(String::new)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(namespace(KvScope::Global, &user, "", ""), Err(KvError::Principal("user")));
        assert!(matches!(namespace(KvScope::User, &agent("a"), "", ""), Err(KvError::Invalid(_))));
        let pooled = ClaimedPrincipal::Task {
            workspace: "default".into(),
            implementation: "p".into(),
            unique_specifier: String::new(),
        }
        .resolve(|| "id1".into())
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(namespace(KvScope::GlobalExclusive, &pooled, "", ""), Err(KvError::Invalid(_))));
        assert!(namespace(KvScope::Global, &pooled, "", "").is_ok());
        assert_eq!(KvScope::from_wire(0), KvScope::Workspace);
        assert_eq!(KvScope::from_wire(99), KvScope::Workspace);
    }

    #[test]
    fn sizes_and_lifetimes() {
        let put = |key: &str, len| KvRequest {
            op: KvOp::Put,
            scope: KvScope::Global,
            key: key.into(),
            value: vec![0; len],
            user_id: String::new(),
            workspace: String::new(),
            ttl_seconds: 0,
            limit: 0,
            request_id: String::new(),
        };
        assert!(check_put(&put("k", KV_VALUE_MAX)).is_ok());
        assert!(check_put(&put("k", KV_VALUE_MAX + 1)).is_err());
        assert!(check_put(&put("", 1)).is_err());
        assert_eq!(kv_expiry(1000, 0), None);
        assert_eq!(kv_expiry(1000, 2), Some(3000));
        assert_eq!(checkpoint_expiry(0, -1), Some(3_600_000));
        assert_eq!(checkpoint_expiry(0, 0), None);
        assert_eq!(checkpoint_expiry(0, 5), Some(5000));
        assert_eq!(checkpoint_key(""), "default");
        assert_eq!(list_limit(0), LIST_DEFAULT);
        assert_eq!(list_limit(-3), LIST_DEFAULT);
        assert_eq!(list_limit(5000), LIST_MAX);
        assert_eq!(CheckpointOp::from_wire(0), Some(CheckpointOp::Save));
    }
}
