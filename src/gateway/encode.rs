//! The core's answers into downstream frames and gRPC statuses.
//!
//! Statuses are chosen for what the SDK does with them: `UNAUTHENTICATED`, `PERMISSION_DENIED`,
//! `ALREADY_EXISTS` and `INVALID_ARGUMENT` stop a client for good; `UNAVAILABLE` makes it
//! reconnect (with `resume_session_id`). A stream is never ended with OK by the node: the SDK
//! would be left a zombie.

use aethrolink_actors::aether::acl::{Explanation, Principal as AclPrincipal, Rule};
use aethrolink_actors::aether::admin::{AgentShown, TokenShown, WorkspaceShown};
use aethrolink_actors::aether::connection::{Correlation, EndKind, FifoKind, Outbound};
use aethrolink_actors::aether::presence::ConnectionInfo;
use aethrolink_actors::aether::tasks::{TaskChange, TaskEventPush, TaskView};
use aethrolink_actors::service::{ErrorKind, ServiceError};
use tonic::Status;

use super::proto::downstream_message::Payload;
use super::proto::{
    AclAccessContributionInfo, AclAccessExplanationInfo, AclResponse, AclRuleInfo, AgentRegistrationInfo,
    AgentResponse, CheckpointResponse, ConfigSnapshot, ConnectionAck, DownstreamMessage, ErrorResponse,
    IncomingMessage, KvResponse, ProxyHttpResponse, SessionOperationResponse, Signal, TokenInfo, TokenResponse,
    TunnelClose, WorkspaceInfo, WorkspaceResponse, signal,
};

/// A task as the SDK's `TaskInfo`.
fn task_info(t: TaskView) -> super::proto::TaskInfo {
    super::proto::TaskInfo {
        task_id: t.task_id,
        task_type: t.task_type,
        status: t.status.wire(),
        workspace: t.workspace,
        assigned_to: t.assigned_to,
        created_at: t.created_at,
        started_at: t.started_at,
        completed_at: t.completed_at,
        attempt: t.attempt,
        max_attempts: t.max_attempts,
        error: t.error,
        metadata: t.metadata.into_iter().collect(),
        creator_actor_id: t.creator,
        context_id: t.context_id,
        ..Default::default()
    }
}

/// A pushed task event.
fn task_event(e: TaskEventPush) -> super::proto::TaskEvent {
    use super::proto::task_event::Event;
    let event = match e.change {
        TaskChange::Status { from, to, reason } => Event::StatusChanged(super::proto::TaskStatusChangedEvent {
            from_status: from.wire(),
            to_status: to.wire(),
            reason,
        }),
        TaskChange::Progress { state, progress, message } => {
            Event::Progress(super::proto::TaskProgressEvent { state, progress, message, ..Default::default() })
        }
    };
    super::proto::TaskEvent {
        task_id: e.task_id,
        emitted_at_unix_ms: e.emitted_at_ms,
        workspace: e.workspace,
        subscription_id: e.subscription_id,
        event: Some(event),
        ..Default::default()
    }
}

/// The node's version, told in the ack.
const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

fn frame(payload: Payload) -> DownstreamMessage {
    DownstreamMessage { payload: Some(payload), ..Default::default() }
}

/// An outbound item as a frame, or the status that ends the stream.
pub fn outbound(out: Outbound) -> Result<DownstreamMessage, Status> {
    Ok(match out {
        Outbound::Ack { session_id, resumed } => frame(Payload::ConnectionAck(ConnectionAck {
            session_id,
            resumed,
            server_version: SERVER_VERSION.into(),
            ..Default::default()
        })),
        Outbound::Config(config) => frame(Payload::Config(ConfigSnapshot {
            workspace_exclusive_kv: config.workspace_exclusive.into_iter().collect(),
            global_exclusive_kv: config.global_exclusive.into_iter().collect(),
            ..Default::default()
        })),
        Outbound::Message(m) | Outbound::Kept(m) => frame(Payload::Msg(IncomingMessage {
            source_topic: m.source_topic,
            payload: std::sync::Arc::unwrap_or_clone(m.payload),
            message_type: m.message_type,
            workspace: m.workspace,
            ..Default::default()
        })),
        Outbound::Kv(r) => frame(Payload::Kv(KvResponse {
            success: r.success,
            value: r.value,
            keys: r.keys,
            kv_map: r.entries.into_iter().collect(),
            request_id: r.request_id,
            has_more: r.has_more,
            counter_value: r.counter_value,
            applied: r.applied,
            ..Default::default()
        })),
        Outbound::Checkpoint(r) => frame(Payload::Checkpoint(CheckpointResponse {
            success: r.success,
            data: r.data,
            keys: r.keys,
            error: r.error,
            saved_at: r.saved_at,
            request_id: r.request_id,
        })),
        Outbound::Refused { code, message, correlation } => {
            let error = |request_id: String| {
                frame(Payload::Error(ErrorResponse {
                    code: code.as_str().into(),
                    message: message.clone(),
                    request_id,
                    ..Default::default()
                }))
            };
            match correlation {
                Correlation::RequestId(id) => error(id),
                Correlation::None => error(String::new()),
                // FIFO calls resolve only on their own response type.
                Correlation::Fifo(FifoKind::Workspace) => frame(Payload::Workspace(WorkspaceResponse {
                    success: false,
                    error: message,
                    ..Default::default()
                })),
                Correlation::Fifo(FifoKind::Agent) => {
                    frame(Payload::Agent(AgentResponse { success: false, error: message, ..Default::default() }))
                }
                Correlation::Fifo(FifoKind::Acl) => {
                    frame(Payload::Acl(AclResponse { success: false, error: message, ..Default::default() }))
                }
                Correlation::Proxy(request_id) => frame(Payload::ProxyHttpResponse(ProxyHttpResponse {
                    request_id,
                    status_code: 501,
                    ..Default::default()
                })),
                Correlation::Tunnel(tunnel_id) => {
                    frame(Payload::TunnelClose(TunnelClose { tunnel_id, ..Default::default() }))
                }
            }
        }
        Outbound::Sessions(r) => frame(Payload::SessionResponse(SessionOperationResponse {
            success: r.success,
            message: r.message,
            error: r.error,
            request_id: r.request_id,
            connection: r.connection.map(connection_info),
            connections: r.connections.into_iter().map(connection_info).collect(),
            total_count: i32::try_from(r.total_count).unwrap_or(i32::MAX),
        })),
        Outbound::Tokens(r) => {
            let token = r.token.map(token_info);
            frame(Payload::Token(TokenResponse {
                success: r.success,
                error: r.error,
                message: r.message,
                // CREATE: upstream sets only `created_token`; the SDK's README reads `token.id`.
                created_token: (!r.plaintext_token.is_empty()).then(|| token.clone()).flatten(),
                token,
                tokens: r.tokens.into_iter().map(token_info).collect(),
                total_count: i32::try_from(r.total_count).unwrap_or(i32::MAX),
                plaintext_token: r.plaintext_token,
                request_id: r.request_id,
            }))
        }
        Outbound::Workspaces(r) => frame(Payload::Workspace(WorkspaceResponse {
            success: r.success,
            error: r.error,
            message: r.message,
            workspace: r.workspace.map(workspace_info),
            workspaces: r.workspaces.into_iter().map(workspace_info).collect(),
            total_count: i32::try_from(r.total_count).unwrap_or(i32::MAX),
            ..Default::default()
        })),
        Outbound::Agents(r) => frame(Payload::Agent(AgentResponse {
            success: r.success,
            error: r.error,
            message: r.message,
            agent: r.agent.map(agent_info),
            agents: r.agents.into_iter().map(agent_info).collect(),
            total_count: i32::try_from(r.total_count).unwrap_or(i32::MAX),
            ..Default::default()
        })),
        Outbound::Acl(r) => frame(Payload::Acl(AclResponse {
            success: r.success,
            error: r.error,
            message: r.message,
            rule: r.rule.map(rule_info),
            rules: r.rules.into_iter().map(rule_info).collect(),
            total_rules: i32::try_from(r.total_rules).unwrap_or(i32::MAX),
            explanation: r.explanation.map(|(principal, e)| explanation_info(principal, e)),
            ..Default::default()
        })),
        Outbound::TaskAssignment(a) => frame(Payload::TaskAssignment(super::proto::TaskAssignment {
            task_id: a.task_id,
            task_type: a.task_type,
            assigned_to: a.assigned_to,
            metadata: a.metadata.into_iter().collect(),
            assigned_at: a.assigned_at_ms,
            target_implementation: a.target_implementation,
            workspace: a.workspace,
            specifier: a.specifier,
            payload: a.payload,
            profile: a.profile,
            launch_params: a.launch_params.into_iter().collect(),
            ..Default::default()
        })),
        Outbound::CreatedTask(r) => frame(Payload::CreateTask(super::proto::CreateTaskResponse {
            success: r.success,
            task_id: r.task_id,
            status: r.status,
            error_code: r.error_code,
            error_message: r.error_message,
            request_id: r.request_id,
            assigned_to: r.assigned_to,
            ..Default::default()
        })),
        Outbound::TaskOp(r) => frame(Payload::TaskOp(super::proto::TaskOperationResponse {
            success: r.success,
            message: r.message,
            error: r.error,
            task: r.task.map(task_info),
            request_id: r.request_id,
        })),
        Outbound::TaskQuery(r) => frame(Payload::TaskQuery(super::proto::TaskQueryResponse {
            success: r.success,
            error: r.error,
            task: r.task.map(task_info),
            tasks: r.tasks.into_iter().map(task_info).collect(),
            total_count: i32::try_from(r.total_count).unwrap_or(i32::MAX),
            request_id: r.request_id,
            next_page_token: String::new(),
        })),
        Outbound::TaskSubscription(r) => {
            frame(Payload::TaskSubscriptionResponse(super::proto::TaskSubscriptionOperationResponse {
                success: r.success,
                error: r.error,
                client_request_id: r.client_request_id,
                task_id: r.task_id,
                subscription_id: r.subscription_id,
            }))
        }
        Outbound::TaskEvent(e) => frame(Payload::TaskEvent(task_event(e))),
        Outbound::ForceDisconnect { reason } => {
            frame(Payload::Signal(Signal { r#type: signal::SignalType::ForceDisconnect as i32, reason }))
        }
        Outbound::End { end: EndKind::InvalidArgument, message } => return Err(Status::invalid_argument(message)),
        Outbound::End { end: EndKind::Unavailable, message } => return Err(Status::unavailable(message)),
        Outbound::End { end: EndKind::Cancelled, message } => return Err(Status::cancelled(message)),
    })
}

/// A live session as the gateway lists it.
fn connection_info(c: ConnectionInfo) -> super::proto::ConnectionInfo {
    let seconds = (aethrolink_actors::clock::unix_seconds() - c.connected_at_unix).max(0);
    super::proto::ConnectionInfo {
        session_id: c.session_id,
        r#type: super::decode::principal_type(c.kind) as i32,
        identity: c.identity,
        workspace: c.workspace.unwrap_or_default(),
        implementation: c.implementation.unwrap_or_default(),
        specifier: c.specifier.unwrap_or_default(),
        connected_at: c.connected_at_unix,
        duration: format!("{seconds}s"),
        remote_addr: c.remote_addr,
        last_activity: 0,
    }
}

/// An access rule as the gateway shows it.
fn rule_info(r: Rule) -> AclRuleInfo {
    AclRuleInfo {
        access_level_name: aethrolink_actors::aether::acl::level_name(r.access_level),
        rule_id: r.rule_id,
        principal_type: r.principal_type,
        principal_id: r.principal_id,
        resource_type: r.resource_type,
        resource_id: r.resource_id,
        access_level: r.access_level,
        granted_by: r.granted_by,
        granted_at: r.granted_at,
        expires_at: r.expires_at,
        reason: r.reason,
    }
}

/// A decision as `EXPLAIN_ACCESS` shows it: the rule that decided is the one contribution.
fn explanation_info(principal: AclPrincipal, e: Explanation) -> AclAccessExplanationInfo {
    let subject = format!("{}:{}", principal.principal_type, principal.principal_id);
    let contributions = e
        .rule
        .iter()
        .map(|r| AclAccessContributionInfo {
            subject: subject.clone(),
            rule_id: r.rule_id.clone(),
            access_level: r.access_level,
            resource: format!("{}/{}", r.resource_type, r.resource_id),
            expired: false,
        })
        .collect();
    AclAccessExplanationInfo {
        principal: subject.clone(),
        subjects: vec![subject],
        contributions,
        allowed: e.allowed,
        decision: if e.allowed { "allow".into() } else { "deny".into() },
        effective_access_level: e.effective_level,
        fallback_applied: e.fallback_applied,
        reason: e.reason,
    }
}

/// A registration as the gateway shows it.
fn agent_info(a: AgentShown) -> AgentRegistrationInfo {
    AgentRegistrationInfo {
        implementation: a.fields.implementation,
        orchestrator_profile: a.fields.orchestrator_profile,
        description: a.fields.description,
        launch_params: a.fields.launch_params.into_iter().collect(),
        registered_at: a.registered_at,
        updated_at: a.updated_at,
        capabilities: a.fields.capabilities.into_iter().collect(),
        extensions: a.fields.extensions,
        ..Default::default()
    }
}

/// A workspace as the gateway shows it.
fn workspace_info(w: WorkspaceShown) -> WorkspaceInfo {
    WorkspaceInfo {
        workspace_id: w.fields.workspace_id,
        display_name: w.fields.display_name,
        description: w.fields.description,
        tenant_id: w.fields.tenant_id,
        created_at: w.created_at,
        updated_at: w.updated_at,
        metadata: w.fields.metadata.into_iter().collect(),
        active_agents: i32::try_from(w.active_agents).unwrap_or(i32::MAX),
        active_tasks: i32::try_from(w.active_tasks).unwrap_or(i32::MAX),
        active_users: i32::try_from(w.active_users).unwrap_or(i32::MAX),
        total_messages: 0,
    }
}

/// A token as the gateway shows it (never its secret).
fn token_info(t: TokenShown) -> TokenInfo {
    TokenInfo {
        id: t.id,
        name: t.name,
        scopes: t.scopes,
        expires_at: t.expires_at,
        revoked: t.revoked,
        revoked_at: t.revoked_at,
        created_at: t.created_at,
        ..Default::default()
    }
}

/// A refused connect as the status the SDK understands.
pub fn status_of(e: &ServiceError) -> Status {
    let message = e.message.clone();
    match e.kind {
        ErrorKind::Invalid | ErrorKind::Unprocessable => Status::invalid_argument(message),
        ErrorKind::Unauthenticated => Status::unauthenticated(message),
        ErrorKind::Forbidden => Status::permission_denied(message),
        ErrorKind::Conflict => Status::already_exists(message),
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::Unavailable => Status::unavailable(message),
        ErrorKind::Internal => Status::internal(message),
    }
}

#[cfg(test)]
mod tests {
    use aethrolink_actors::aether::connection::ErrorCode;
    use tonic::Code;

    use super::*;

    fn refused(correlation: Correlation) -> Option<Payload> {
        outbound(Outbound::Refused { code: ErrorCode::NotImplemented, message: "no".into(), correlation })
            .ok()
            .and_then(|f| f.payload)
    }

    #[test]
    fn refusals_reach_the_waiting_call() {
        match refused(Correlation::RequestId("r1".into())) {
            Some(Payload::Error(e)) => {
                assert_eq!((e.code.as_str(), e.request_id.as_str()), ("ERR_NOT_IMPLEMENTED", "r1"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(refused(Correlation::Fifo(FifoKind::Workspace)), Some(Payload::Workspace(r)) if !r.success));
        assert!(matches!(refused(Correlation::Fifo(FifoKind::Acl)), Some(Payload::Acl(r)) if !r.success));
        assert!(
            matches!(refused(Correlation::Proxy("p".into())), Some(Payload::ProxyHttpResponse(r)) if r.status_code == 501)
        );
        assert!(
            matches!(refused(Correlation::Tunnel("t".into())), Some(Payload::TunnelClose(r)) if r.tunnel_id == "t")
        );
    }

    #[test]
    fn the_ack_carries_the_session_id_and_ends_are_never_ok() {
        let ack = outbound(Outbound::Ack { session_id: "as_1".into(), resumed: false }).ok().and_then(|f| f.payload);
        assert!(matches!(ack, Some(Payload::ConnectionAck(a)) if a.session_id == "as_1"));
        let end = outbound(Outbound::End { end: EndKind::Unavailable, message: "bye".into() });
        assert_eq!(end.err().map(|s| s.code()), Some(Code::Unavailable));
        assert_eq!(status_of(&ServiceError::new(ErrorKind::Conflict, "dup")).code(), Code::AlreadyExists);
        assert_eq!(status_of(&ServiceError::new(ErrorKind::Unauthenticated, "no")).code(), Code::Unauthenticated);
    }

    #[test]
    fn a_kick_is_force_disconnect_then_cancelled_and_a_minted_token_is_shown_twice() {
        let signal = outbound(Outbound::ForceDisconnect { reason: "ops".into() }).ok().and_then(|f| f.payload);
        assert!(
            matches!(signal, Some(Payload::Signal(s)) if s.r#type == signal::SignalType::ForceDisconnect as i32 && s.reason == "ops")
        );
        let end = outbound(Outbound::End { end: EndKind::Cancelled, message: "kicked".into() });
        assert_eq!(end.err().map(|s| s.code()), Some(Code::Cancelled));
        let shown = TokenShown { id: "t1".into(), ..TokenShown::default() };
        let reply = aethrolink_actors::aether::admin::TokenReply {
            request_id: "r".into(),
            success: true,
            token: Some(shown.clone()),
            plaintext_token: "t1.secret".into(),
            ..Default::default()
        };
        match outbound(Outbound::Tokens(reply)).ok().and_then(|f| f.payload) {
            Some(Payload::Token(t)) => {
                assert_eq!(t.token.map(|t| t.id), Some("t1".into()));
                assert_eq!(t.created_token.map(|t| t.id), Some("t1".into()));
                assert_eq!((t.request_id.as_str(), t.plaintext_token.as_str()), ("r", "t1.secret"));
            }
            other => panic!("{other:?}"),
        }
        let listed = aethrolink_actors::aether::admin::TokenReply { tokens: vec![shown], ..Default::default() };
        match outbound(Outbound::Tokens(listed)).ok().and_then(|f| f.payload) {
            Some(Payload::Token(t)) => assert!(t.created_token.is_none() && t.tokens.len() == 1),
            other => panic!("{other:?}"),
        }
    }
}
