//! The Aether admin operations a session may ask for over its stream: gateway sessions
//! (`session_op`: list, get, disconnect) and API tokens (`token_op`: create, list, get, revoke,
//! delete). Decoded by the binding into these types, carried out by `service::aether_admin`
//! for the session's caller, answered with the typed replies the SDK correlates by
//! `request_id` (a refusal is a `success=false` reply with an `ERR_…` error, never an
//! uncorrelated error alone). The selection of sessions is pure ([`select_sessions`]).

use super::identity::PrincipalKind;
use super::presence::ConnectionInfo;

/// A `session_op`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOp {
    pub request_id: String,
    pub action: SessionAction,
}

/// What a `session_op` asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionAction {
    /// The live sessions, filtered and paged.
    List(SessionFilter),
    /// One live session by id.
    Get { session_id: String },
    /// End a live session: the client is sent `FORCE_DISCONNECT` (it stops, and does not
    /// reconnect), then its stream ends `CANCELLED`.
    Disconnect { session_id: String, reason: String },
    /// An op number this node does not know.
    Unknown(i32),
}

/// Which sessions a listing shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Only these principal kinds (empty: all; the SDK's "task" is unique and pooled tasks).
    pub kinds: Vec<PrincipalKind>,
    /// Only sessions in this workspace (empty: all).
    pub workspace: String,
    /// At most this many (0: [`SESSIONS_PAGE_DEFAULT`]; capped at [`SESSIONS_PAGE_MAX`]).
    pub limit: u32,
    pub offset: u32,
}

/// Sessions listed when the filter gives no limit.
pub const SESSIONS_PAGE_DEFAULT: u32 = 100;
/// Most sessions listed at once.
pub const SESSIONS_PAGE_MAX: u32 = 1000;

/// The answer to a `session_op`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionReply {
    pub request_id: String,
    pub success: bool,
    /// `ERR_…: why` when `success` is false.
    pub error: String,
    pub message: String,
    /// GET's session, DISCONNECT's (as it was).
    pub connection: Option<ConnectionInfo>,
    /// LIST's page.
    pub connections: Vec<ConnectionInfo>,
    /// LIST: how many matched before paging.
    pub total_count: u32,
}

impl SessionReply {
    pub fn refused(request_id: String, error: String) -> Self {
        SessionReply { request_id, success: false, error, ..SessionReply::default() }
    }
}

/// A page of `sessions` (ordered by identity) matching `filter`, and how many matched. Pure.
pub fn select_sessions(sessions: Vec<ConnectionInfo>, filter: &SessionFilter) -> (Vec<ConnectionInfo>, u32) {
    let matching: Vec<ConnectionInfo> = sessions
        .into_iter()
        .filter(|s| filter.kinds.is_empty() || filter.kinds.contains(&s.kind))
        .filter(|s| filter.workspace.is_empty() || s.workspace.as_deref() == Some(filter.workspace.as_str()))
        .collect();
    let total = u32::try_from(matching.len()).unwrap_or(u32::MAX);
    let limit = match filter.limit {
        0 => SESSIONS_PAGE_DEFAULT,
        n => n.min(SESSIONS_PAGE_MAX),
    };
    let page = matching.into_iter().skip(filter.offset as usize).take(limit as usize).collect();
    (page, total)
}

/// A `token_op`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenOp {
    pub request_id: String,
    pub action: TokenAction,
}

/// What a `token_op` asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenAction {
    /// Mint a token (its text is in the reply, once).
    Create(TokenCreate),
    /// The tokens, oldest first (revoked ones only when asked), paged.
    List {
        include_revoked: bool,
        limit: u32,
        offset: u32,
    },
    Get {
        token_id: String,
    },
    /// Revoke for good (upstream's DELETE does the same here: a token row is never removed,
    /// so a revoked token stays refused and listed).
    Revoke {
        token_id: String,
    },
    Unknown(i32),
}

/// `TokenCreateRequest` as the SDK sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenCreate {
    pub name: String,
    /// `agent`, `user`, … (checked to be a principal kind; the node's tokens are not bound to
    /// one).
    pub principal_type: String,
    /// Not enforced by this node: a non-empty list is refused rather than ignored.
    pub workspace_patterns: Vec<String>,
    /// The node's scope names; none: [`SDK_TOKEN_DEFAULT_SCOPE`].
    pub scopes: Vec<String>,
    /// 0: the token does not expire.
    pub expires_in_hours: i32,
    pub created_by: String,
}

/// The scope of a token minted through the SDK without scopes: what an agent needs to connect
/// and to hand and follow tasks (`alink-cli`, `POST /v1/tasks`).
pub const SDK_TOKEN_DEFAULT_SCOPE: &str = "tasks:write";

/// The principal kinds a `principal_type` may name (the SDK's lowercase REST forms).
pub const TOKEN_PRINCIPAL_TYPES: [&str; 8] =
    ["agent", "task", "user", "orchestrator", "workflow_engine", "metrics_bridge", "bridge", "service"];

/// A token as a reply shows it (never its secret or HMAC).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenShown {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// Unix seconds; 0: none.
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: i64,
    pub revoked: bool,
}

/// The answer to a `token_op`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenReply {
    pub request_id: String,
    pub success: bool,
    pub error: String,
    pub message: String,
    /// GET's and REVOKE's token; CREATE's too (upstream sets only `created_token`; the SDK's
    /// README reads `token.id`, so both are set).
    pub token: Option<TokenShown>,
    pub tokens: Vec<TokenShown>,
    pub total_count: u32,
    /// CREATE: the token's text, shown this once.
    pub plaintext_token: String,
}

impl TokenReply {
    pub fn refused(request_id: String, error: String) -> Self {
        TokenReply { request_id, success: false, error, ..TokenReply::default() }
    }
}

/// A `workspace_op` (correlated first-in first-out: every one gets exactly one reply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkspaceOp {
    List {
        limit: u32,
        offset: u32,
    },
    Get {
        workspace_id: String,
    },
    Create(WorkspaceFields),
    /// Replaces display name, description and metadata of `workspace_id`.
    Update {
        workspace_id: String,
        fields: WorkspaceFields,
    },
    Delete {
        workspace_id: String,
    },
    /// An operation this node does not serve (`GET_MESSAGE_FLOW`, unknown numbers).
    Unserved(String),
}

/// A workspace's fields as the SDK sends them (`WorkspaceInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceFields {
    pub workspace_id: String,
    pub display_name: String,
    pub description: String,
    pub tenant_id: String,
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// Longest display name, description and metadata entry (key + value) of a workspace.
pub const WORKSPACE_NAME_MAX: usize = 256;
pub const WORKSPACE_DESCRIPTION_MAX: usize = 4096;
pub const WORKSPACE_METADATA_MAX: usize = 64;
pub const WORKSPACE_METADATA_ENTRY_MAX: usize = 1024;
/// Workspaces listed when the SDK gives no limit (`list_workspaces()`), and at most.
pub const WORKSPACES_PAGE_MAX: u32 = 1000;

/// Checks a workspace's fields; the error names the field. Pure.
pub fn check_workspace(fields: &WorkspaceFields) -> Result<(), String> {
    super::identity::check_identifier(&fields.workspace_id).map_err(|p| format!("workspace_id {p}"))?;
    if fields.display_name.len() > WORKSPACE_NAME_MAX {
        return Err(format!("display_name: at most {WORKSPACE_NAME_MAX} bytes"));
    }
    if fields.description.len() > WORKSPACE_DESCRIPTION_MAX {
        return Err(format!("description: at most {WORKSPACE_DESCRIPTION_MAX} bytes"));
    }
    if fields.tenant_id.len() > WORKSPACE_NAME_MAX {
        return Err(format!("tenant_id: at most {WORKSPACE_NAME_MAX} bytes"));
    }
    if fields.metadata.len() > WORKSPACE_METADATA_MAX {
        return Err(format!("metadata: at most {WORKSPACE_METADATA_MAX} entries"));
    }
    if let Some((k, _)) = fields.metadata.iter().find(|(k, v)| k.len() + v.len() > WORKSPACE_METADATA_ENTRY_MAX) {
        return Err(format!("metadata[{k}]: key and value at most {WORKSPACE_METADATA_ENTRY_MAX} bytes"));
    }
    Ok(())
}

/// A workspace as a reply shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceShown {
    pub fields: WorkspaceFields,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// Live sessions in it now, by kind.
    pub active_agents: u32,
    pub active_tasks: u32,
    pub active_users: u32,
}

/// The answer to a `workspace_op`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceReply {
    pub success: bool,
    pub error: String,
    pub message: String,
    pub workspace: Option<WorkspaceShown>,
    pub workspaces: Vec<WorkspaceShown>,
    pub total_count: u32,
}

impl WorkspaceReply {
    pub fn refused(error: String) -> Self {
        WorkspaceReply { success: false, error, ..WorkspaceReply::default() }
    }
}

/// An `agent_op` (correlated first-in first-out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentOp {
    List {
        profile: String,
        limit: u32,
        offset: u32,
    },
    Get {
        implementation: String,
    },
    /// Registers or re-registers an implementation (agents call it on every start).
    Register(AgentFields),
    /// Changes a registered implementation.
    Update(AgentFields),
    Delete {
        implementation: String,
    },
    /// `LAUNCH`, `LIST_ORCHESTRATORS`, unknown numbers.
    Unserved(String),
}

/// An `AgentRegistrationInfo` as the SDK sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentFields {
    pub implementation: String,
    pub orchestrator_profile: String,
    pub description: String,
    /// Must hold `profile` (the SDK's `register_agent` sets it).
    pub launch_params: std::collections::BTreeMap<String, String>,
    pub capabilities: std::collections::BTreeMap<String, bool>,
    pub extensions: Vec<String>,
    /// Resource prefixes claimed (upstream's phase 5): refused, not silently dropped.
    pub resource_schema: usize,
}

/// Most launch parameters, capabilities and extensions of one registration, and their sizes.
pub const AGENT_ENTRIES_MAX: usize = 64;
pub const AGENT_ENTRY_MAX: usize = 4096;

/// Checks a registration; the error names the field. Pure.
pub fn check_agent(fields: &AgentFields) -> Result<(), String> {
    if fields.implementation.trim().is_empty() {
        return Err("implementation: give the implementation to register".into());
    }
    if fields.implementation.contains("::") || fields.implementation.len() > WORKSPACE_NAME_MAX {
        return Err(format!("implementation: at most {WORKSPACE_NAME_MAX} bytes, without '::'"));
    }
    if !fields.launch_params.contains_key("profile") {
        return Err("launch_params: must hold 'profile' (the orchestrator profile that launches it)".into());
    }
    if fields.description.len() > WORKSPACE_DESCRIPTION_MAX {
        return Err(format!("description: at most {WORKSPACE_DESCRIPTION_MAX} bytes"));
    }
    for (name, n) in [
        ("launch_params", fields.launch_params.len()),
        ("capabilities", fields.capabilities.len()),
        ("extensions", fields.extensions.len()),
    ] {
        if n > AGENT_ENTRIES_MAX {
            return Err(format!("{name}: at most {AGENT_ENTRIES_MAX} entries"));
        }
    }
    if let Some((k, _)) = fields.launch_params.iter().find(|(k, v)| k.len() + v.len() > AGENT_ENTRY_MAX) {
        return Err(format!("launch_params[{k}]: key and value at most {AGENT_ENTRY_MAX} bytes"));
    }
    if fields.resource_schema > 0 {
        return Err("resource_schema: resource prefixes are not served by this node; register without them".into());
    }
    Ok(())
}

/// A registration as a reply shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentShown {
    pub fields: AgentFields,
    /// Unix seconds.
    pub registered_at: i64,
    pub updated_at: i64,
}

/// The answer to an `agent_op`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentReply {
    pub success: bool,
    pub error: String,
    pub message: String,
    pub agent: Option<AgentShown>,
    pub agents: Vec<AgentShown>,
    pub total_count: u32,
}

impl AgentReply {
    pub fn refused(error: String) -> Self {
        AgentReply { success: false, error, ..AgentReply::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(identity: &str, kind: PrincipalKind, workspace: Option<&str>) -> ConnectionInfo {
        ConnectionInfo {
            kind,
            principal: kind.as_str(),
            identity: identity.into(),
            workspace: workspace.map(str::to_owned),
            session_id: format!("s-{identity}"),
            authority: "claimed",
            token_id: None,
            connected_at: String::new(),
            connected_at_unix: 0,
            remote_addr: String::new(),
            implementation: None,
            specifier: None,
            resumed: false,
        }
    }

    #[test]
    fn sessions_are_filtered_by_kind_and_workspace_and_paged() {
        let all = vec![
            session("ag::a::i::1", PrincipalKind::Agent, Some("a")),
            session("ag::b::i::2", PrincipalKind::Agent, Some("b")),
            session("tu::a::i::3", PrincipalKind::UniqueTask, Some("a")),
            session("us::u::w", PrincipalKind::User, None),
        ];
        let (page, total) = select_sessions(all.clone(), &SessionFilter::default());
        assert_eq!((page.len(), total), (4, 4));
        let agents = SessionFilter { kinds: vec![PrincipalKind::Agent], ..SessionFilter::default() };
        let (page, total) = select_sessions(all.clone(), &agents);
        assert_eq!(total, 2);
        assert!(page.iter().all(|s| s.principal == "agent"));
        let in_a = SessionFilter { workspace: "a".into(), ..SessionFilter::default() };
        let (page, _) = select_sessions(all.clone(), &in_a);
        assert_eq!(page.iter().map(|s| s.identity.as_str()).collect::<Vec<_>>(), ["ag::a::i::1", "tu::a::i::3"]);
        let paged = SessionFilter { limit: 2, offset: 3, ..SessionFilter::default() };
        let (page, total) = select_sessions(all, &paged);
        assert_eq!((page.len(), total), (1, 4), "the total counts every match, the page what is left");
    }

    #[test]
    fn workspace_fields_are_checked_naming_the_field() {
        let ok = WorkspaceFields { workspace_id: "ws-1".into(), display_name: "One".into(), ..Default::default() };
        assert_eq!(check_workspace(&ok), Ok(()));
        let bad = |f: WorkspaceFields| check_workspace(&f).err().unwrap_or_default();
        assert!(bad(WorkspaceFields { workspace_id: String::new(), ..ok.clone() }).starts_with("workspace_id"));
        assert!(bad(WorkspaceFields { workspace_id: "a::b".into(), ..ok.clone() }).starts_with("workspace_id"));
        assert!(bad(WorkspaceFields { display_name: "x".repeat(300), ..ok.clone() }).starts_with("display_name"));
        let metadata = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(bad(WorkspaceFields { metadata, ..ok.clone() }).starts_with("metadata"));
    }

    #[test]
    fn registrations_need_an_implementation_and_a_profile() {
        let ok = AgentFields {
            implementation: "scitrera/echo-bot".into(),
            launch_params: [("profile".to_owned(), "local".to_owned())].into(),
            ..Default::default()
        };
        assert_eq!(check_agent(&ok), Ok(()));
        let bad = |f: AgentFields| check_agent(&f).err().unwrap_or_default();
        assert!(bad(AgentFields { implementation: " ".into(), ..ok.clone() }).starts_with("implementation"));
        assert!(bad(AgentFields { launch_params: Default::default(), ..ok.clone() }).contains("profile"));
        assert!(bad(AgentFields { resource_schema: 1, ..ok.clone() }).starts_with("resource_schema"));
    }
}
