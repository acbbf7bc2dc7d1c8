//! Admin operations over an Aether gateway session ([`crate::aether::admin`]): gateway sessions
//! (list, get, disconnect) and API tokens (create, list, get, revoke) — the node's one token
//! store, so a token minted through the SDK's `AdminClient` is the same kind of token
//! `alink-cli` and the HTTP API use. Each needs admin rights, checked for the session's caller
//! when the operation arrives (a token revoked since the session opened no longer has them).
//! Every outcome is a typed reply: a refusal is `success=false` with `ERR_…: why`.

use super::aether::GatewaySession;
use super::auth::{TokenRequest, TokenView};
use super::{Binding, Caller, ErrorKind, Need, Principal, Rights, ServiceError, Services};
use crate::aether::acl::{self, AclOp, AclReply};
use crate::aether::admin::{
    AgentFields, AgentOp, AgentReply, AgentShown, SDK_TOKEN_DEFAULT_SCOPE, SessionAction, SessionOp, SessionReply,
    TOKEN_PRINCIPAL_TYPES, TokenAction, TokenCreate, TokenOp, TokenReply, TokenShown, WORKSPACES_PAGE_MAX,
    WorkspaceFields, WorkspaceOp, WorkspaceReply, WorkspaceShown, check_agent, check_workspace, select_sessions,
};
use crate::aether::connection::{Session, SessionAuthority};
use crate::aether::identity::PrincipalKind;
use crate::aether::presence::ConnectionInfo;
use crate::aether::presence::PresenceMsg;
use crate::clock::{Timestamp, unix_seconds_of as unix};
use crate::storage::{
    AclWrite, AetherAgentRecord, AgentWrite, AppliedSlot, StorageMsg, WorkspaceRecord, WorkspaceWrite, WriteOp,
};
use crate::supervision::ASK_TIMEOUT;
use crate::tokens::TokenState;

/// Most tokens one listing shows.
const TOKENS_PAGE_MAX: u32 = 1000;

/// A refusal as the gateway's error text: the upstream code, then why.
pub fn aether_error(e: &ServiceError) -> String {
    let code = match e.kind {
        ErrorKind::Forbidden => "ERR_PERMISSION_DENIED",
        ErrorKind::Unauthenticated => "ERR_UNAUTHENTICATED",
        ErrorKind::Invalid | ErrorKind::Unprocessable => "ERR_INVALID_ARGUMENT",
        ErrorKind::NotFound => "ERR_NOT_FOUND",
        ErrorKind::Conflict => "ERR_CONFLICT",
        ErrorKind::Unavailable => "ERR_UNAVAILABLE",
        ErrorKind::Internal => "ERR_INTERNAL",
    };
    format!("{code}: {}", e.message)
}

fn shown(view: &TokenView) -> TokenShown {
    let r = &view.record;
    TokenShown {
        id: r.token_id.clone(),
        name: r.name.clone(),
        scopes: r.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        created_at: unix(&r.created_at),
        expires_at: r.expires_at.as_ref().map_or(0, unix),
        revoked_at: r.revoked_at.as_ref().map_or(0, unix),
        revoked: view.state == TokenState::Revoked,
    }
}

/// The SDK's `TokenCreateRequest` as the node's token request. Pure.
pub fn token_request(create: TokenCreate) -> Result<TokenRequest, ServiceError> {
    let principal_type = create.principal_type.trim().to_ascii_lowercase();
    if !principal_type.is_empty() && !TOKEN_PRINCIPAL_TYPES.contains(&principal_type.as_str()) {
        return Err(ServiceError::invalid(format!(
            "principal_type: unknown '{principal_type}' (known: {})",
            TOKEN_PRINCIPAL_TYPES.join(", ")
        )));
    }
    if !create.workspace_patterns.is_empty() {
        return Err(ServiceError::invalid(
            "workspace_patterns: this node does not bind tokens to workspaces; leave it empty",
        ));
    }
    if create.expires_in_hours < 0 {
        return Err(ServiceError::invalid("expires_in_hours: must not be negative (0: the token does not expire)"));
    }
    let scopes = match create.scopes.is_empty() {
        true => vec![SDK_TOKEN_DEFAULT_SCOPE.to_owned()],
        false => create.scopes,
    };
    let expires_in_seconds =
        (create.expires_in_hours > 0).then(|| u64::from(create.expires_in_hours.unsigned_abs()) * 3600);
    Ok(TokenRequest { name: create.name, scopes, expires_in_seconds })
}

/// A stored workspace as shown, with the live sessions in it counted. Pure.
fn workspace_shown(w: WorkspaceRecord, live: &[ConnectionInfo]) -> WorkspaceShown {
    let here = |kinds: &[PrincipalKind]| {
        live.iter()
            .filter(|c| c.workspace.as_deref() == Some(w.workspace_id.as_str()) && kinds.contains(&c.kind))
            .count() as u32
    };
    WorkspaceShown {
        active_agents: here(&[PrincipalKind::Agent]),
        active_tasks: here(&[PrincipalKind::UniqueTask, PrincipalKind::PooledTask]),
        active_users: here(&[PrincipalKind::User]),
        created_at: w.created_at / 1000,
        updated_at: w.updated_at / 1000,
        fields: WorkspaceFields {
            workspace_id: w.workspace_id,
            display_name: w.display_name,
            description: w.description,
            tenant_id: w.tenant_id,
            metadata: w.metadata,
        },
    }
}

/// A stored registration as shown. Pure.
fn agent_shown(a: AetherAgentRecord) -> AgentShown {
    AgentShown {
        registered_at: a.registered_at / 1000,
        updated_at: a.updated_at / 1000,
        fields: AgentFields {
            implementation: a.implementation,
            orchestrator_profile: a.orchestrator_profile,
            description: a.description,
            launch_params: a.launch_params,
            capabilities: a.capabilities,
            extensions: a.extensions,
            resource_schema: 0,
        },
    }
}

impl Services {
    /// Who a gateway session acts as now: the operator (admin key), its API token's rights as
    /// of now (refused once the token is revoked or expired), or an anonymous claimed principal.
    pub fn gateway_caller(&self, session: &Session) -> Result<Caller, ServiceError> {
        match &session.authority {
            SessionAuthority::Admin => {
                Ok(Caller { principal: Principal::Operator, binding: Binding::Gateway, rights: Rights::ALL })
            }
            SessionAuthority::Token(id) => {
                let book = self.auth.book();
                let record = book.get(id).filter(|r| r.state_at(&Timestamp::now()) == TokenState::Active);
                match record {
                    Some(r) => Ok(Caller {
                        principal: Principal::Token(id.clone()),
                        binding: Binding::Gateway,
                        rights: Rights::of_scopes(&r.scopes),
                    }),
                    None => Err(ServiceError::new(
                        ErrorKind::Unauthenticated,
                        "this session's token is no longer valid (revoked or expired); reconnect with a valid one",
                    )),
                }
            }
            SessionAuthority::Claimed => Ok(Caller::anonymous(Binding::Gateway)),
        }
    }

    /// A `session_op` of `session` (admin only).
    pub async fn gateway_session_op(&self, session: &GatewaySession, op: SessionOp) -> SessionReply {
        let request_id = op.request_id.clone();
        match self.session_op(&session.session, op).await {
            Ok(reply) => reply,
            Err(e) => SessionReply::refused(request_id, aether_error(&e)),
        }
    }

    async fn session_op(&self, session: &Session, op: SessionOp) -> Result<SessionReply, ServiceError> {
        let caller = self.gateway_caller(session)?;
        caller.require(Need::Admin)?;
        let mut reply = SessionReply { request_id: op.request_id, success: true, ..SessionReply::default() };
        match op.action {
            SessionAction::List(filter) => {
                let all = self.dir.presence.ask(ASK_TIMEOUT, PresenceMsg::List).await?;
                let (page, total) = select_sessions(all, &filter);
                reply.connections = page;
                reply.total_count = total;
            }
            SessionAction::Get { session_id } => {
                let all = self.dir.presence.ask(ASK_TIMEOUT, PresenceMsg::List).await?;
                let found = all.into_iter().find(|c| c.session_id == session_id.trim());
                reply.connection =
                    Some(found.ok_or_else(|| ServiceError::not_found(format!("no live session {session_id}")))?);
            }
            SessionAction::Disconnect { session_id, reason } => {
                let session_id = session_id.trim().to_owned();
                if session_id.is_empty() {
                    return Err(ServiceError::invalid("session_id: give the session to disconnect"));
                }
                let reason = match reason.trim() {
                    "" => "disconnected by an admin".to_owned(),
                    r => r.to_owned(),
                };
                let kicked = self
                    .dir
                    .presence
                    .ask(ASK_TIMEOUT, |r| PresenceMsg::Kick { session_id: session_id.clone(), reason, reply: r })
                    .await?;
                let kicked = kicked.ok_or_else(|| ServiceError::not_found(format!("no live session {session_id}")))?;
                reply.message = format!("session {session_id} ({}) disconnected", kicked.identity);
                reply.connection = Some(kicked);
            }
            SessionAction::Unknown(n) => {
                return Err(ServiceError::invalid(format!("session_op: unknown operation {n}")));
            }
        }
        Ok(reply)
    }

    /// A conditional write through the storage actor: whether it was applied (a create of an
    /// existing id, a change or removal of a missing one, is not).
    async fn write_applied(&self, op: impl FnOnce(AppliedSlot) -> WriteOp) -> Result<bool, ServiceError> {
        let applied = AppliedSlot::default();
        let op = op(applied.clone());
        self.dir.storage.ask(ASK_TIMEOUT, |r| StorageMsg::Write(op, r)).await??;
        Ok(applied.applied())
    }

    /// A `workspace_op` of `session` (admin only).
    pub async fn gateway_workspace_op(&self, session: &GatewaySession, op: WorkspaceOp) -> WorkspaceReply {
        match self.workspace_op(&session.session, op).await {
            Ok(reply) => reply,
            Err(e) => WorkspaceReply::refused(aether_error(&e)),
        }
    }

    async fn workspace_op(&self, session: &Session, op: WorkspaceOp) -> Result<WorkspaceReply, ServiceError> {
        let caller = self.gateway_caller(session)?;
        caller.require(Need::Admin)?;
        let mut reply = WorkspaceReply { success: true, ..WorkspaceReply::default() };
        let now = crate::aether::queue::now_ms();
        let find = |id: String| async move {
            let id = id.trim().to_owned();
            let found = self.dir.reader.aether_workspaces().await?.into_iter().find(|w| w.workspace_id == id);
            found.ok_or_else(|| ServiceError::not_found(format!("workspace not found: {id}")))
        };
        let live = || async { Ok::<_, ServiceError>(self.dir.presence.ask(ASK_TIMEOUT, PresenceMsg::List).await?) };
        match op {
            WorkspaceOp::List { limit, offset } => {
                let all = self.dir.reader.aether_workspaces().await?;
                let live = live().await?;
                reply.total_count = u32::try_from(all.len()).unwrap_or(u32::MAX);
                let limit = if limit == 0 { WORKSPACES_PAGE_MAX } else { limit.min(WORKSPACES_PAGE_MAX) };
                reply.workspaces = all
                    .into_iter()
                    .skip(offset as usize)
                    .take(limit as usize)
                    .map(|w| workspace_shown(w, &live))
                    .collect();
            }
            WorkspaceOp::Get { workspace_id } => {
                let w = find(workspace_id).await?;
                reply.workspace = Some(workspace_shown(w, &live().await?));
            }
            WorkspaceOp::Create(fields) => {
                check_workspace(&fields).map_err(ServiceError::invalid)?;
                let id = fields.workspace_id.clone();
                let record = WorkspaceRecord {
                    workspace_id: fields.workspace_id,
                    display_name: fields.display_name,
                    description: fields.description,
                    tenant_id: fields.tenant_id,
                    metadata: fields.metadata,
                    created_at: now,
                    updated_at: now,
                };
                if !self
                    .write_applied(|applied| WriteOp::AetherWorkspace {
                        write: WorkspaceWrite::Create(record),
                        applied,
                    })
                    .await?
                {
                    return Err(ServiceError::conflict(format!("workspace {id} already exists")));
                }
                tracing::info!(workspace = %id, by = %session.identity, "workspace created");
                reply.message = format!("workspace {id} created");
                reply.workspace = Some(workspace_shown(find(id).await?, &live().await?));
            }
            WorkspaceOp::Update { workspace_id, fields } => {
                let id = workspace_id.trim().to_owned();
                let fields = WorkspaceFields { workspace_id: id.clone(), ..fields };
                check_workspace(&fields).map_err(ServiceError::invalid)?;
                let record = WorkspaceRecord {
                    workspace_id: id.clone(),
                    display_name: fields.display_name,
                    description: fields.description,
                    tenant_id: fields.tenant_id,
                    metadata: fields.metadata,
                    created_at: 0,
                    updated_at: now,
                };
                if !self
                    .write_applied(|applied| WriteOp::AetherWorkspace {
                        write: WorkspaceWrite::Update(record),
                        applied,
                    })
                    .await?
                {
                    return Err(ServiceError::not_found(format!("workspace not found: {id}")));
                }
                reply.message = format!("workspace {id} updated");
                reply.workspace = Some(workspace_shown(find(id).await?, &live().await?));
            }
            WorkspaceOp::Delete { workspace_id } => {
                let id = workspace_id.trim().to_owned();
                let shown = workspace_shown(find(id.clone()).await?, &live().await?);
                if !self
                    .write_applied(|applied| WriteOp::AetherWorkspace {
                        write: WorkspaceWrite::Delete(id.clone()),
                        applied,
                    })
                    .await?
                {
                    return Err(ServiceError::not_found(format!("workspace not found: {id}")));
                }
                tracing::info!(workspace = %id, by = %session.identity, "workspace deleted");
                reply.message = format!("workspace {id} deleted");
                reply.workspace = Some(shown);
            }
            WorkspaceOp::Unserved(name) => {
                return Ok(WorkspaceReply::refused(format!(
                    "ERR_NOT_IMPLEMENTED: workspace_op {name} is not served by this node"
                )));
            }
        }
        Ok(reply)
    }

    /// An `agent_op` of `session`: listing and reading the registry need admin rights;
    /// registering, changing and removing need `agents:register` (or admin).
    pub async fn gateway_agent_op(&self, session: &GatewaySession, op: AgentOp) -> AgentReply {
        match self.agent_op(&session.session, op).await {
            Ok(reply) => reply,
            Err(e) => AgentReply::refused(aether_error(&e)),
        }
    }

    async fn agent_op(&self, session: &Session, op: AgentOp) -> Result<AgentReply, ServiceError> {
        let caller = self.gateway_caller(session)?;
        let mut reply = AgentReply { success: true, ..AgentReply::default() };
        let now = crate::aether::queue::now_ms();
        let find = |implementation: String| async move {
            let implementation = implementation.trim().to_owned();
            let all = self.dir.reader.aether_agents().await?;
            let found = all.into_iter().find(|a| a.implementation == implementation);
            found.ok_or_else(|| {
                ServiceError::not_found(format!("agent implementation not registered: {implementation}"))
            })
        };
        let record = |f: AgentFields| AetherAgentRecord {
            implementation: f.implementation.trim().to_owned(),
            orchestrator_profile: match f.orchestrator_profile.trim() {
                "" => f.launch_params.get("profile").cloned().unwrap_or_default(),
                p => p.to_owned(),
            },
            description: f.description,
            launch_params: f.launch_params,
            capabilities: f.capabilities,
            extensions: f.extensions,
            registered_at: now,
            updated_at: now,
        };
        match op {
            AgentOp::List { profile, limit, offset } => {
                caller.require(Need::Admin)?;
                let all: Vec<AetherAgentRecord> = self
                    .dir
                    .reader
                    .aether_agents()
                    .await?
                    .into_iter()
                    .filter(|a| profile.is_empty() || a.orchestrator_profile == profile)
                    .collect();
                reply.total_count = u32::try_from(all.len()).unwrap_or(u32::MAX);
                let limit = if limit == 0 { WORKSPACES_PAGE_MAX } else { limit.min(WORKSPACES_PAGE_MAX) };
                reply.agents = all.into_iter().skip(offset as usize).take(limit as usize).map(agent_shown).collect();
            }
            AgentOp::Get { implementation } => {
                caller.require(Need::Admin)?;
                reply.agent = Some(agent_shown(find(implementation).await?));
            }
            AgentOp::Register(fields) => {
                caller.require(Need::Register)?;
                check_agent(&fields).map_err(ServiceError::invalid)?;
                let record = record(fields);
                let implementation = record.implementation.clone();
                self.write_applied(|applied| WriteOp::AetherAgent { write: AgentWrite::Register(record), applied })
                    .await?;
                tracing::info!(implementation = %implementation, by = %session.identity, "agent implementation registered");
                reply.message = format!("agent implementation {implementation} registered");
                reply.agent = Some(agent_shown(find(implementation).await?));
            }
            AgentOp::Update(fields) => {
                caller.require(Need::Register)?;
                check_agent(&fields).map_err(ServiceError::invalid)?;
                let record = record(fields);
                let implementation = record.implementation.clone();
                if !self
                    .write_applied(|applied| WriteOp::AetherAgent { write: AgentWrite::Update(record), applied })
                    .await?
                {
                    return Err(ServiceError::not_found(format!(
                        "agent implementation not registered: {implementation}"
                    )));
                }
                reply.message = format!("agent implementation {implementation} updated");
                reply.agent = Some(agent_shown(find(implementation).await?));
            }
            AgentOp::Delete { implementation } => {
                caller.require(Need::Register)?;
                let shown = agent_shown(find(implementation.clone()).await?);
                let implementation = shown.fields.implementation.clone();
                if !self
                    .write_applied(|applied| WriteOp::AetherAgent {
                        write: AgentWrite::Delete(implementation.clone()),
                        applied,
                    })
                    .await?
                {
                    return Err(ServiceError::not_found(format!(
                        "agent implementation not registered: {implementation}"
                    )));
                }
                tracing::info!(implementation = %implementation, by = %session.identity, "agent implementation removed");
                reply.message = format!("agent implementation {implementation} removed");
                reply.agent = Some(shown);
            }
            AgentOp::Unserved(name) => {
                return Ok(AgentReply::refused(format!(
                    "ERR_NOT_IMPLEMENTED: agent_op {name} is not served by this node"
                )));
            }
        }
        Ok(reply)
    }

    /// An `acl_op` of `session` (admin only).
    pub async fn gateway_acl_op(&self, session: &GatewaySession, op: AclOp) -> AclReply {
        match self.acl_op(&session.session, op).await {
            Ok(reply) => reply,
            Err(e) => AclReply::refused(aether_error(&e)),
        }
    }

    async fn acl_op(&self, session: &Session, op: AclOp) -> Result<AclReply, ServiceError> {
        // What is not served is said so to anyone (it reveals nothing and changes nothing).
        if !matches!(op, AclOp::Unserved(_)) {
            self.gateway_caller(session)?.require(Need::Admin)?;
        }
        let mut reply = AclReply { success: true, ..AclReply::default() };
        let rules = self.dir.reader.aether_acl_rules().await?;
        let by_id = |rules: &[acl::Rule], id: &str| {
            let id = id.trim();
            rules
                .iter()
                .find(|r| r.rule_id == id)
                .cloned()
                .ok_or_else(|| ServiceError::not_found(format!("no access rule {id}")))
        };
        match op {
            AclOp::List(filter) => {
                let matching: Vec<acl::Rule> = rules.into_iter().filter(|r| filter.matches(r)).collect();
                reply.total_rules = u32::try_from(matching.len()).unwrap_or(u32::MAX);
                let limit = if filter.limit == 0 { WORKSPACES_PAGE_MAX } else { filter.limit.min(WORKSPACES_PAGE_MAX) };
                reply.rules = matching.into_iter().skip(filter.offset as usize).take(limit as usize).collect();
            }
            AclOp::Get { rule_id } => reply.rule = Some(by_id(&rules, &rule_id)?),
            AclOp::Grant(mut rule) => {
                for field in
                    [&mut rule.principal_type, &mut rule.principal_id, &mut rule.resource_type, &mut rule.resource_id]
                {
                    *field = field.trim().to_owned();
                }
                rule.principal_type = rule.principal_type.to_ascii_lowercase();
                rule.resource_type = rule.resource_type.to_ascii_lowercase();
                acl::check_rule(&rule).map_err(ServiceError::invalid)?;
                rule.rule_id = crate::ids::new_id().to_ascii_lowercase();
                rule.granted_at = crate::clock::unix_seconds();
                if rule.granted_by.trim().is_empty() {
                    rule.granted_by = session.identity.key.clone();
                }
                self.write_applied(|applied| WriteOp::AetherAcl { write: AclWrite::Grant(rule.clone()), applied })
                    .await?;
                // A re-grant keeps the rule's first id.
                let key = acl::RuleFilter {
                    principal_type: rule.principal_type.clone(),
                    principal_id: rule.principal_id.clone(),
                    resource_type: rule.resource_type.clone(),
                    resource_id: rule.resource_id.clone(),
                    ..acl::RuleFilter::default()
                };
                let stored =
                    self.dir.reader.aether_acl_rules().await?.into_iter().find(|r| key.matches(r)).unwrap_or(rule);
                tracing::info!(
                    rule_id = %stored.rule_id, principal_type = %stored.principal_type, principal_id = %stored.principal_id,
                    resource_type = %stored.resource_type, resource_id = %stored.resource_id,
                    access_level = %acl::level_name(stored.access_level), by = %session.identity, "access rule granted"
                );
                reply.message = format!("rule {} granted", stored.rule_id);
                reply.rule = Some(stored);
            }
            AclOp::RevokeById { rule_id } => {
                let rule = by_id(&rules, &rule_id)?;
                self.revoke_rule(&rule, session).await?;
                reply.message = format!("rule {} revoked", rule.rule_id);
                reply.rule = Some(rule);
            }
            AclOp::RevokeByKey(key) => {
                if !key.is_key() {
                    return Err(ServiceError::invalid(
                        "rule_filter: give principal_type, principal_id, resource_type and resource_id (or a rule_id)",
                    ));
                }
                let rule = rules.into_iter().find(|r| key.matches(r)).ok_or_else(|| {
                    ServiceError::not_found(format!(
                        "no access rule for {} {} on {} {}",
                        key.principal_type, key.principal_id, key.resource_type, key.resource_id
                    ))
                })?;
                self.revoke_rule(&rule, session).await?;
                reply.message = format!("rule {} revoked", rule.rule_id);
                reply.rule = Some(rule);
            }
            AclOp::Explain { principal, resource, required } => {
                let decision = acl::decide(&rules, &principal, &resource, required, crate::clock::unix_seconds());
                reply.explanation = Some((principal, decision));
            }
            AclOp::Unserved(name) => {
                return Ok(AclReply::refused(format!("ERR_NOT_IMPLEMENTED: acl_op {name} is not served by this node")));
            }
        }
        Ok(reply)
    }

    async fn revoke_rule(&self, rule: &acl::Rule, session: &Session) -> Result<(), ServiceError> {
        if !self
            .write_applied(|applied| WriteOp::AetherAcl {
                write: AclWrite::Delete { rule_id: rule.rule_id.clone() },
                applied,
            })
            .await?
        {
            return Err(ServiceError::not_found(format!("no access rule {}", rule.rule_id)));
        }
        tracing::info!(rule_id = %rule.rule_id, by = %session.identity, "access rule revoked");
        Ok(())
    }

    /// A `token_op` of `session` (admin only).
    pub async fn gateway_token_op(&self, session: &GatewaySession, op: TokenOp) -> TokenReply {
        let request_id = op.request_id.clone();
        match self.token_op(&session.session, op).await {
            Ok(reply) => reply,
            Err(e) => TokenReply::refused(request_id, aether_error(&e)),
        }
    }

    async fn token_op(&self, session: &Session, op: TokenOp) -> Result<TokenReply, ServiceError> {
        let caller = self.gateway_caller(session)?;
        caller.require(Need::Admin)?;
        let mut reply = TokenReply { request_id: op.request_id, success: true, ..TokenReply::default() };
        match op.action {
            TokenAction::Create(create) => {
                let principal_type = create.principal_type.clone();
                let created = self.create_token(&caller, token_request(create)?).await?;
                tracing::info!(
                    token_id = %created.view.record.token_id, by = %session.identity, principal_type = %principal_type,
                    "token created through the gateway"
                );
                reply.token = Some(shown(&created.view));
                reply.plaintext_token = created.token;
            }
            TokenAction::List { include_revoked, limit, offset } => {
                let all: Vec<TokenView> = self
                    .list_tokens(&caller)?
                    .into_iter()
                    .filter(|v| include_revoked || v.state != TokenState::Revoked)
                    .collect();
                reply.total_count = u32::try_from(all.len()).unwrap_or(u32::MAX);
                let limit = if limit == 0 { TOKENS_PAGE_MAX } else { limit.min(TOKENS_PAGE_MAX) };
                reply.tokens = all.iter().skip(offset as usize).take(limit as usize).map(shown).collect();
            }
            TokenAction::Get { token_id } => {
                let id = token_id.trim().to_ascii_lowercase();
                let view = self.list_tokens(&caller)?.into_iter().find(|v| v.record.token_id == id);
                reply.token =
                    Some(shown(&view.ok_or_else(|| ServiceError::not_found(format!("token not found: {id}")))?));
            }
            TokenAction::Revoke { token_id } => {
                let view = self.revoke_token(&caller, &token_id).await?;
                reply.message = format!("token {} revoked", view.record.token_id);
                reply.token = Some(shown(&view));
            }
            TokenAction::Unknown(n) => return Err(ServiceError::invalid(format!("token_op: unknown operation {n}"))),
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_token_requests_map_to_node_tokens() {
        let plain = TokenCreate { name: "ci".into(), principal_type: "agent".into(), ..TokenCreate::default() };
        let req = token_request(plain.clone()).map_err(|e| e.message).unwrap_or_else(|m| panic!("{m}"));
        assert_eq!(req.scopes, vec![SDK_TOKEN_DEFAULT_SCOPE.to_owned()], "no scopes: what an agent needs");
        assert_eq!(req.expires_in_seconds, None);
        let timed = TokenCreate { expires_in_hours: 2, scopes: vec!["admin".into()], ..plain.clone() };
        let req = token_request(timed).map_err(|e| e.message).unwrap_or_else(|m| panic!("{m}"));
        assert_eq!((req.scopes, req.expires_in_seconds), (vec!["admin".to_owned()], Some(7200)));
        let bad = TokenCreate { principal_type: "robot".into(), ..plain.clone() };
        let e = token_request(bad).err().map(|e| e.message).unwrap_or_default();
        assert!(e.contains("robot") && e.contains("agent"), "{e}");
        let scoped = TokenCreate { workspace_patterns: vec!["ws-*".into()], ..plain.clone() };
        assert!(token_request(scoped).is_err(), "a restriction the node would not enforce is refused");
        assert!(token_request(TokenCreate { expires_in_hours: -1, ..plain }).is_err());
    }

    #[test]
    fn refusals_carry_the_upstream_code() {
        let e = ServiceError::new(ErrorKind::Forbidden, "this caller's token lacks the 'admin' scope");
        assert_eq!(aether_error(&e), "ERR_PERMISSION_DENIED: this caller's token lacks the 'admin' scope");
        assert!(aether_error(&ServiceError::not_found("token not found: x")).starts_with("ERR_NOT_FOUND: "));
    }
}
