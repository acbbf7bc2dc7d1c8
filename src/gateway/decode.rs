//! Upstream frames into the core's requests: `InitConnection` into a [`GatewayConnect`], every
//! other case into a [`Frame`]: a session [`Request`] (each with the correlation the SDK waits
//! on), or an admin operation the binding hands to the service layer.

use aethrolink_actors::aether::acl::{AclOp, Principal as AclPrincipal, Resource as AclResource, Rule, RuleFilter};
use aethrolink_actors::aether::admin::{
    AgentFields, AgentOp, SessionAction, SessionFilter, SessionOp, TokenAction, TokenCreate, TokenOp, WorkspaceFields,
    WorkspaceOp,
};
use aethrolink_actors::aether::connection::{Correlation, FifoKind, Request, SendRequest};
use aethrolink_actors::aether::identity::{ClaimedPrincipal, PrincipalKind};
use aethrolink_actors::aether::kv::{CheckpointOp, CheckpointRequest, KvOp, KvRequest, KvScope};
use aethrolink_actors::aether::tasks::{
    AetherStatus, AssignMode, CreateTask, Progress, ProgressStep, QueryFilter, SubscriptionOp, TaskOp, TaskOpKind,
    TaskQuery,
};
use aethrolink_actors::aether::topics::MetricShape;
use aethrolink_actors::model::kv_update::{Guard, KvUpdate};
use aethrolink_actors::service::aether::GatewayConnect;
use prost::Message as _;

use super::proto::init_connection::ClientType;
use super::proto::kv_operation::OpType;
use super::proto::upstream_message::Payload;
use super::proto::{
    AclOperation, AclRuleFilter, AgentOperation, AgentRegistrationInfo, CheckpointOperation, InitConnection,
    KvOperation, MessageType, Metric, PrincipalType, SessionOperation, TokenOperation, UpstreamMessage, WorkspaceInfo,
    WorkspaceOperation, acl_operation, agent_operation, session_operation, token_operation, workspace_operation,
};

/// `InitConnection` into the core's connect request; `Err` names what is missing.
pub fn connect(init: InitConnection) -> Result<GatewayConnect, &'static str> {
    let mut profiles = Vec::new();
    let principal = match init.client_type.ok_or("InitConnection.client_type is required")? {
        ClientType::Agent(a) => {
            ClaimedPrincipal::Agent { workspace: a.workspace, implementation: a.implementation, specifier: a.specifier }
        }
        ClientType::Task(t) => ClaimedPrincipal::Task {
            workspace: t.workspace,
            implementation: t.implementation,
            unique_specifier: t.unique_specifier,
        },
        ClientType::User(u) => ClaimedPrincipal::User { user_id: u.user_id, window_id: u.window_id },
        ClientType::Orchestrator(o) => {
            profiles = o.supported_profiles;
            ClaimedPrincipal::Orchestrator { implementation: o.implementation, specifier: o.specifier }
        }
        ClientType::WorkflowEngine(_) => ClaimedPrincipal::WorkflowEngine,
        ClientType::MetricsBridge(_) => ClaimedPrincipal::MetricsBridge,
        ClientType::Bridge(b) => ClaimedPrincipal::Bridge { implementation: b.implementation, specifier: b.specifier },
        ClientType::Service(s) => ClaimedPrincipal::Service {
            implementation: s.implementation,
            specifier: s.specifier,
            consumes_pool_tasks: !s.no_pool_consumer,
        },
    };
    Ok(GatewayConnect {
        principal,
        credentials: init.credentials,
        resume_session_id: init.resume_session_id,
        client: format!("{} {}", init.client_sdk, init.client_version).trim().to_owned(),
        remote_addr: String::new(),
        profiles,
    })
}

/// What a frame after `InitConnection` asks.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// Answered by the session's connection actor.
    Session(Request),
    /// Admin operations, carried out by the service layer for the session's caller.
    Sessions(SessionOp),
    Tokens(TokenOp),
    Workspaces(WorkspaceOp),
    Agents(AgentOp),
    Acl(AclOp),
    /// Tasks, carried out by the service layer on the node's task model.
    CreateTask(CreateTask),
    TaskOp(TaskOp),
    TaskQuery(TaskQuery),
    Progress(Progress),
    TaskSubscription(SubscriptionOp),
}

/// A frame after `InitConnection`.
pub fn frame(frame: UpstreamMessage) -> Frame {
    match frame.payload {
        Some(Payload::SessionOp(op)) => Frame::Sessions(session_op(op)),
        Some(Payload::TokenOp(op)) => Frame::Tokens(token_op(op)),
        Some(Payload::WorkspaceOp(op)) => Frame::Workspaces(workspace_op(op)),
        Some(Payload::AgentOp(op)) => Frame::Agents(agent_op(op)),
        Some(Payload::AclOp(op)) => Frame::Acl(acl_op(op)),
        Some(Payload::CreateTask(op)) => Frame::CreateTask(create_task(op)),
        Some(Payload::TaskOp(op)) => Frame::TaskOp(TaskOp {
            request_id: op.request_id,
            op: TaskOpKind::of_wire(op.op),
            task_id: op.task_id,
            reason: op.reason,
        }),
        Some(Payload::TaskQuery(op)) => Frame::TaskQuery(task_query(op)),
        Some(Payload::Progress(p)) => Frame::Progress(Progress {
            task_id: p.task_id,
            state: p.state,
            completion: p.completion,
            summary: p.summary,
            step: p.step.map(|s| ProgressStep {
                name: s.name,
                detail: s.detail,
                sequence: s.sequence,
                total: s.total_steps,
            }),
            metadata: p.metadata.into_iter().collect(),
        }),
        Some(Payload::TaskSubscriptionOp(op)) => {
            Frame::TaskSubscription(if op.op == super::proto::task_subscription_operation::OpType::Unsubscribe as i32 {
                SubscriptionOp::Unsubscribe {
                    client_request_id: op.client_request_id,
                    subscription_id: op.subscription_id,
                }
            } else {
                SubscriptionOp::Subscribe { client_request_id: op.client_request_id, task_id: op.task_id }
            })
        }
        payload => Frame::Session(request(UpstreamMessage { payload, ..frame })),
    }
}

/// A `CreateTaskRequest` (the SDK promotes the mode itself; the wire's is taken as sent).
fn create_task(op: super::proto::CreateTaskRequest) -> CreateTask {
    use super::proto::TaskAssignmentMode;
    let mode = match TaskAssignmentMode::try_from(op.assignment_mode) {
        Ok(TaskAssignmentMode::Targeted) => AssignMode::Targeted,
        Ok(TaskAssignmentMode::Pool) => AssignMode::Pool,
        Ok(TaskAssignmentMode::SelfAssign) | Err(_) => AssignMode::SelfAssign,
    };
    CreateTask {
        request_id: (!op.request_id.is_empty()).then_some(op.request_id),
        task_type: op.task_type,
        workspace: op.workspace,
        mode,
        target_agent_id: op.target_agent_id,
        target_implementation: op.target_implementation,
        metadata: op.metadata.into_iter().collect(),
        payload: op.payload,
        idempotency_key: op.idempotency_key,
        context_id: op.context_id,
        priority: op.priority,
        launch_overrides: op.launch_param_overrides.into_iter().collect(),
    }
}

/// A `TaskQuery`: GET of one task, or a LIST with the filter fields this node applies.
fn task_query(op: super::proto::TaskQuery) -> TaskQuery {
    let get = (op.op == super::proto::task_query::OpType::Get as i32).then(|| op.task_id.clone());
    let filter = op.filter.unwrap_or_default();
    let mut statuses: Vec<AetherStatus> = filter.statuses.iter().map(|s| AetherStatus::of_wire(*s)).collect();
    if statuses.is_empty() && filter.status != 0 {
        statuses.push(AetherStatus::of_wire(filter.status));
    }
    TaskQuery {
        request_id: op.request_id,
        get,
        filter: QueryFilter {
            statuses,
            workspace: filter.workspace,
            task_type: filter.task_type,
            limit: u32::try_from(filter.limit).unwrap_or(0),
            offset: u32::try_from(filter.offset).unwrap_or(0),
            context_id: filter.context_id,
        },
    }
}

/// The principal kinds a `PrincipalType` filter names (`Unspecified`: all).
fn principal_kinds(n: i32) -> Vec<PrincipalKind> {
    match PrincipalType::try_from(n) {
        Ok(PrincipalType::PrincipalAgent) => vec![PrincipalKind::Agent],
        Ok(PrincipalType::PrincipalTask) => vec![PrincipalKind::UniqueTask, PrincipalKind::PooledTask],
        Ok(PrincipalType::PrincipalUser) => vec![PrincipalKind::User],
        Ok(PrincipalType::PrincipalOrchestrator) => vec![PrincipalKind::Orchestrator],
        Ok(PrincipalType::PrincipalWorkflowEngine) => vec![PrincipalKind::WorkflowEngine],
        Ok(PrincipalType::PrincipalMetricsBridge) => vec![PrincipalKind::MetricsBridge],
        Ok(PrincipalType::PrincipalBridge) => vec![PrincipalKind::Bridge],
        Ok(PrincipalType::PrincipalService) => vec![PrincipalKind::Service],
        Ok(PrincipalType::Unspecified) | Err(_) => Vec::new(),
    }
}

/// The principal type a kind is listed as.
pub fn principal_type(kind: PrincipalKind) -> PrincipalType {
    match kind {
        PrincipalKind::Agent => PrincipalType::PrincipalAgent,
        PrincipalKind::UniqueTask | PrincipalKind::PooledTask => PrincipalType::PrincipalTask,
        PrincipalKind::User => PrincipalType::PrincipalUser,
        PrincipalKind::Orchestrator => PrincipalType::PrincipalOrchestrator,
        PrincipalKind::WorkflowEngine => PrincipalType::PrincipalWorkflowEngine,
        PrincipalKind::MetricsBridge => PrincipalType::PrincipalMetricsBridge,
        PrincipalKind::Bridge => PrincipalType::PrincipalBridge,
        PrincipalKind::Service => PrincipalType::PrincipalService,
    }
}

fn session_op(op: SessionOperation) -> SessionOp {
    use session_operation::OpType as Op;
    let action = match Op::try_from(op.op) {
        Ok(Op::List) => {
            let filter = op.filter.unwrap_or_default();
            SessionAction::List(SessionFilter {
                kinds: principal_kinds(filter.r#type),
                workspace: filter.workspace,
                limit: u32::try_from(filter.limit).unwrap_or(0),
                offset: u32::try_from(filter.offset).unwrap_or(0),
            })
        }
        Ok(Op::Get) => SessionAction::Get { session_id: op.session_id },
        Ok(Op::Disconnect) => SessionAction::Disconnect { session_id: op.session_id, reason: op.reason },
        Err(_) => SessionAction::Unknown(op.op),
    };
    SessionOp { request_id: op.request_id, action }
}

fn workspace_fields(info: WorkspaceInfo) -> WorkspaceFields {
    WorkspaceFields {
        workspace_id: info.workspace_id,
        display_name: info.display_name,
        description: info.description,
        tenant_id: info.tenant_id,
        metadata: info.metadata.into_iter().collect(),
    }
}

fn workspace_op(op: WorkspaceOperation) -> WorkspaceOp {
    use workspace_operation::OpType as Op;
    // The id is `workspace_id`, or the info's when the SDK sets only that (CREATE).
    let id = |op: &WorkspaceOperation| match op.workspace_id.is_empty() {
        true => op.workspace.as_ref().map(|w| w.workspace_id.clone()).unwrap_or_default(),
        false => op.workspace_id.clone(),
    };
    match Op::try_from(op.op) {
        Ok(Op::List) => {
            let f = op.filter.unwrap_or_default();
            WorkspaceOp::List {
                limit: u32::try_from(f.limit).unwrap_or(0),
                offset: u32::try_from(f.offset).unwrap_or(0),
            }
        }
        Ok(Op::Get) => WorkspaceOp::Get { workspace_id: id(&op) },
        Ok(Op::Create) => {
            let workspace_id = id(&op);
            let fields = workspace_fields(op.workspace.unwrap_or_default());
            WorkspaceOp::Create(WorkspaceFields { workspace_id, ..fields })
        }
        Ok(Op::Update) => {
            let workspace_id = id(&op);
            WorkspaceOp::Update { workspace_id, fields: workspace_fields(op.workspace.unwrap_or_default()) }
        }
        Ok(Op::Delete) => WorkspaceOp::Delete { workspace_id: id(&op) },
        Ok(Op::GetMessageFlow) => WorkspaceOp::Unserved("GET_MESSAGE_FLOW".into()),
        Err(_) => WorkspaceOp::Unserved(format!("operation {}", op.op)),
    }
}

fn agent_fields(info: AgentRegistrationInfo) -> AgentFields {
    AgentFields {
        implementation: info.implementation,
        orchestrator_profile: info.orchestrator_profile,
        description: info.description,
        launch_params: info.launch_params.into_iter().collect(),
        capabilities: info.capabilities.into_iter().collect(),
        extensions: info.extensions,
        resource_schema: info.resource_schema.len(),
    }
}

fn agent_op(op: AgentOperation) -> AgentOp {
    use agent_operation::OpType as Op;
    // The implementation is the op's, or the info's when only that is set.
    let implementation = match op.implementation.is_empty() {
        true => op.agent.as_ref().map(|a| a.implementation.clone()).unwrap_or_default(),
        false => op.implementation.clone(),
    };
    let fields = |info: Option<AgentRegistrationInfo>| AgentFields {
        implementation: implementation.clone(),
        ..agent_fields(info.unwrap_or_default())
    };
    match Op::try_from(op.op) {
        Ok(Op::List) => {
            let f = op.filter.unwrap_or_default();
            AgentOp::List {
                profile: f.orchestrator_profile,
                limit: u32::try_from(f.limit).unwrap_or(0),
                offset: u32::try_from(f.offset).unwrap_or(0),
            }
        }
        Ok(Op::Get) => AgentOp::Get { implementation },
        Ok(Op::Register) => AgentOp::Register(fields(op.agent)),
        Ok(Op::Update) => AgentOp::Update(fields(op.agent)),
        Ok(Op::Delete) => AgentOp::Delete { implementation },
        Ok(Op::Launch) => AgentOp::Unserved("LAUNCH".into()),
        Ok(Op::ListOrchestrators) => AgentOp::Unserved("LIST_ORCHESTRATORS".into()),
        Err(_) => AgentOp::Unserved(format!("operation {}", op.op)),
    }
}

fn rule_filter(f: AclRuleFilter) -> RuleFilter {
    RuleFilter {
        principal_type: f.principal_type.trim().to_ascii_lowercase(),
        principal_id: f.principal_id.trim().to_owned(),
        resource_type: f.resource_type.trim().to_ascii_lowercase(),
        resource_id: f.resource_id.trim().to_owned(),
        limit: u32::try_from(f.limit).unwrap_or(0),
        offset: u32::try_from(f.offset).unwrap_or(0),
    }
}

fn acl_op(op: AclOperation) -> AclOp {
    use acl_operation::OpType as Op;
    match Op::try_from(op.op) {
        Ok(Op::ListRules) => AclOp::List(rule_filter(op.rule_filter.unwrap_or_default())),
        Ok(Op::GetRule) => AclOp::Get { rule_id: op.rule_id },
        Ok(Op::Grant) => {
            let g = op.grant_request.unwrap_or_default();
            AclOp::Grant(Rule {
                principal_type: g.principal_type,
                principal_id: g.principal_id,
                resource_type: g.resource_type,
                resource_id: g.resource_id,
                access_level: g.access_level,
                granted_by: g.granted_by,
                reason: g.reason,
                expires_at: g.expires_at.max(0),
                ..Rule::default()
            })
        }
        Ok(Op::Revoke) if !op.rule_id.trim().is_empty() => AclOp::RevokeById { rule_id: op.rule_id },
        Ok(Op::Revoke) => AclOp::RevokeByKey(rule_filter(op.rule_filter.unwrap_or_default())),
        Ok(Op::ExplainAccess) => {
            let p = op.principal.unwrap_or_default();
            AclOp::Explain {
                principal: AclPrincipal {
                    principal_type: p.principal_type.trim().to_ascii_lowercase(),
                    principal_id: p.principal_id.trim().to_owned(),
                },
                resource: AclResource {
                    resource_type: op.resource_type.trim().to_ascii_lowercase(),
                    resource_id: op.resource_id.trim().to_owned(),
                },
                required: op.required_level,
            }
        }
        Ok(other) => AclOp::Unserved(other.as_str_name().to_owned()),
        Err(_) => AclOp::Unserved(format!("operation {}", op.op)),
    }
}

fn token_op(op: TokenOperation) -> TokenOp {
    use token_operation::OpType as Op;
    let action = match Op::try_from(op.op) {
        Ok(Op::Create) => {
            let c = op.create_request.unwrap_or_default();
            TokenAction::Create(TokenCreate {
                name: c.name,
                principal_type: c.principal_type,
                workspace_patterns: c.workspace_patterns,
                scopes: c.scopes,
                expires_in_hours: c.expires_in_hours,
                created_by: c.created_by,
            })
        }
        Ok(Op::List) => {
            let f = op.filter.unwrap_or_default();
            TokenAction::List {
                include_revoked: f.include_revoked,
                limit: u32::try_from(f.limit).unwrap_or(0),
                offset: u32::try_from(f.offset).unwrap_or(0),
            }
        }
        Ok(Op::Get) => TokenAction::Get { token_id: op.token_id },
        Ok(Op::Revoke) | Ok(Op::Delete) => TokenAction::Revoke { token_id: op.token_id },
        Err(_) => TokenAction::Unknown(op.op),
    };
    TokenOp { request_id: op.request_id, action }
}

fn by_id(id: String) -> Correlation {
    if id.is_empty() { Correlation::None } else { Correlation::RequestId(id) }
}

/// A counter step as sent: 0 (absent) is one; a negative one counts as its magnitude (the
/// operation says the direction).
fn step(delta: i64) -> i64 {
    if delta == 0 { 1 } else { delta.saturating_abs() }
}

/// A `KVOperation` (an absent `op` is GET: zero values are real operations).
fn kv(op: KvOperation) -> KvRequest {
    let kind = match OpType::try_from(op.op) {
        Ok(OpType::Get) => KvOp::Get,
        Ok(OpType::Put) => KvOp::Put,
        Ok(OpType::Delete) => KvOp::Delete,
        Ok(OpType::List) => KvOp::List,
        // The SDK's plain increment and decrement send no delta: one.
        Ok(OpType::Increment) => KvOp::Update(KvUpdate::Add { delta: step(op.delta_value), guard: None }),
        Ok(OpType::Decrement) => KvOp::Update(KvUpdate::Add { delta: -step(op.delta_value), guard: None }),
        // A ceiling of 0 is "no guard" (the SDK's documented default); a floor of 0 is a floor.
        Ok(OpType::IncrementIf) => KvOp::Update(KvUpdate::Add {
            delta: step(op.delta_value),
            guard: (op.guard_value != 0).then_some(Guard::Ceiling(op.guard_value)),
        }),
        Ok(OpType::DecrementIf) => {
            KvOp::Update(KvUpdate::Add { delta: -step(op.delta_value), guard: Some(Guard::Floor(op.guard_value)) })
        }
        Ok(OpType::SetNx) => KvOp::Update(KvUpdate::SetIfAbsent { value: op.value.clone() }),
        Ok(OpType::CompareAndSet) => {
            KvOp::Update(KvUpdate::CompareAndSet { expected: op.expected_value.clone(), value: op.value.clone() })
        }
        Ok(OpType::CompareAndDelete) => {
            KvOp::Update(KvUpdate::CompareAndDelete { expected: op.expected_value.clone() })
        }
        Ok(other) => KvOp::Unserved(other.as_str_name()),
        Err(_) => KvOp::Unserved("operation (unknown)"),
    };
    KvRequest {
        op: kind,
        scope: KvScope::from_wire(op.scope),
        key: op.key,
        value: op.value,
        user_id: op.user_id,
        workspace: op.workspace,
        ttl_seconds: op.ttl,
        limit: op.limit,
        request_id: op.request_id,
    }
}

/// A `CheckpointOperation` (an absent `op` is SAVE).
fn checkpoint(op: CheckpointOperation) -> Request {
    match CheckpointOp::from_wire(op.op) {
        Some(kind) => Request::Checkpoint(CheckpointRequest {
            op: kind,
            key: op.key,
            data: op.data,
            ttl: op.ttl,
            request_id: op.request_id,
        }),
        None => Request::Unserved { operation: "checkpoint_op (unknown operation)", correlation: by_id(op.request_id) },
    }
}

/// A METRIC payload's shape (the node checks it before routing; the payload goes on as sent).
fn metric_shape(payload: &[u8]) -> Result<MetricShape, String> {
    let metric = Metric::decode(payload).map_err(|e| e.to_string())?;
    Ok(MetricShape {
        entries: metric.entries.into_iter().map(|e| (e.name, e.qty)).collect(),
        metadata_keys: metric.metadata.len(),
    })
}

/// A frame after `InitConnection` into the session's request.
pub fn request(frame: UpstreamMessage) -> Request {
    let unserved = |operation, correlation| Request::Unserved { operation, correlation };
    let Some(payload) = frame.payload else {
        // An unknown oneof case (a newer SDK) decodes as no payload.
        return unserved("this message type", Correlation::None);
    };
    match payload {
        Payload::Init(_) => Request::Violation("InitConnection may only be the first message of a stream".into()),
        Payload::Send(m) => {
            let metric = (m.message_type == MessageType::Metric as i32).then(|| metric_shape(&m.payload));
            Request::Send(SendRequest {
                target_topic: m.target_topic,
                payload: m.payload,
                message_type: m.message_type,
                metric,
            })
        }
        Payload::SwitchWorkspace(m) => Request::SwitchWorkspace(m.new_workspace_id),
        Payload::KvOp(op) => Request::Kv(kv(op)),
        Payload::CreateTask(op) => unserved("create_task", by_id(op.request_id)),
        Payload::CheckpointOp(op) => checkpoint(op),
        Payload::AdminQuery(op) => unserved("admin_query", by_id(op.request_id)),
        // Carried out by the service layer (see `frame`); never reaches here from a stream.
        Payload::SessionOp(op) => unserved("session_op", by_id(op.request_id)),
        Payload::TaskQuery(op) => unserved("task_query", by_id(op.request_id)),
        Payload::TaskOp(op) => unserved("task_op", by_id(op.request_id)),
        Payload::WorkspaceOp(_) => unserved("workspace_op", Correlation::Fifo(FifoKind::Workspace)),
        Payload::AgentOp(_) => unserved("agent_op", Correlation::Fifo(FifoKind::Agent)),
        Payload::AclOp(_) => unserved("acl_op", Correlation::Fifo(FifoKind::Acl)),
        Payload::Progress(_) => unserved("progress", Correlation::None),
        Payload::WorkflowOp(op) => unserved("workflow_op", by_id(op.request_id)),
        Payload::WorkflowResponse(_) => unserved("workflow_response", Correlation::None),
        Payload::TokenOp(op) => unserved("token_op", by_id(op.request_id)),
        Payload::AuditQuery(op) => unserved("audit_query", by_id(op.request_id)),
        Payload::AuthorityGrantOp(op) => unserved("authority_grant_op", by_id(op.request_id)),
        Payload::ProxyHttpRequest(op) => unserved("proxy_http_request", Correlation::Proxy(op.request_id)),
        Payload::ProxyHttpBodyChunk(_) => unserved("proxy_http_body_chunk", Correlation::None),
        Payload::TunnelOpen(op) => unserved("tunnel_open", Correlation::Tunnel(op.tunnel_id)),
        Payload::TunnelData(_) => unserved("tunnel_data", Correlation::None),
        Payload::TunnelClose(_) => unserved("tunnel_close", Correlation::None),
        Payload::ProxyHttpResponse(_) => unserved("proxy_http_response", Correlation::None),
        Payload::TunnelAck(_) => unserved("tunnel_ack", Correlation::None),
        Payload::ResolveAuthorityRequest(op) => unserved("resolve_authority_request", by_id(op.request_id)),
        Payload::ConnectionStatusRequest(op) => unserved("connection_status_request", by_id(op.request_id)),
        Payload::SubmitAuditEvent(op) => unserved("submit_audit_event", by_id(op.client_request_id)),
        Payload::AuthorityRequestOp(op) => unserved("authority_request_op", by_id(op.client_request_id)),
        Payload::TaskSubscriptionOp(op) => unserved("task_subscription_op", by_id(op.client_request_id)),
        Payload::AccessCheck(op) => unserved("access_check", by_id(op.request_id)),
        Payload::BatchAccessCheck(op) => unserved("batch_access_check", by_id(op.request_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto::{AgentIdentity, WorkspaceOperation};
    use super::*;

    #[test]
    fn session_and_token_ops_go_to_the_service_layer() {
        use super::super::proto::{ConnectionFilter, TokenCreateRequest};
        let list = SessionOperation {
            op: session_operation::OpType::List as i32,
            request_id: "r1".into(),
            filter: Some(ConnectionFilter {
                r#type: PrincipalType::PrincipalTask as i32,
                limit: 5,
                ..Default::default()
            }),
            ..Default::default()
        };
        let got = frame(UpstreamMessage { payload: Some(Payload::SessionOp(list)), ..Default::default() });
        let Frame::Sessions(SessionOp { request_id, action: SessionAction::List(filter) }) = got else {
            panic!("{got:?}")
        };
        assert_eq!(request_id, "r1");
        assert_eq!(filter.kinds, vec![PrincipalKind::UniqueTask, PrincipalKind::PooledTask], "tasks of both kinds");
        assert_eq!(filter.limit, 5);
        let kick = SessionOperation { op: 0, session_id: "as_1".into(), reason: "r".into(), ..Default::default() };
        let got = frame(UpstreamMessage { payload: Some(Payload::SessionOp(kick)), ..Default::default() });
        assert!(matches!(got, Frame::Sessions(SessionOp { action: SessionAction::Disconnect { .. }, .. })), "{got:?}");
        let create = TokenOperation {
            op: token_operation::OpType::Create as i32,
            create_request: Some(TokenCreateRequest { name: "ci".into(), ..Default::default() }),
            request_id: "r2".into(),
            ..Default::default()
        };
        let got = frame(UpstreamMessage { payload: Some(Payload::TokenOp(create)), ..Default::default() });
        assert!(
            matches!(&got, Frame::Tokens(TokenOp { action: TokenAction::Create(c), .. }) if c.name == "ci"),
            "{got:?}"
        );
        let delete =
            TokenOperation { op: token_operation::OpType::Delete as i32, token_id: "t".into(), ..Default::default() };
        let got = frame(UpstreamMessage { payload: Some(Payload::TokenOp(delete)), ..Default::default() });
        assert!(matches!(got, Frame::Tokens(TokenOp { action: TokenAction::Revoke { .. }, .. })), "DELETE revokes");
        let kv = frame(UpstreamMessage { payload: Some(Payload::KvOp(KvOperation::default())), ..Default::default() });
        assert!(matches!(kv, Frame::Session(Request::Kv(_))));
    }

    #[test]
    fn init_names_the_claimed_principal_and_keeps_the_credentials() {
        let init = InitConnection {
            client_type: Some(ClientType::Agent(AgentIdentity {
                workspace: "default".into(),
                implementation: "my-agent".into(),
                specifier: "01".into(),
            })),
            credentials: [("x-api-key".to_owned(), "k".to_owned())].into(),
            resume_session_id: "as_1".into(),
            client_sdk: "python".into(),
            client_version: "0.2.3".into(),
            ..Default::default()
        };
        let c = connect(init);
        assert_eq!(c.as_ref().map(|c| c.client.as_str()), Ok("python 0.2.3"));
        assert_eq!(c.as_ref().map(|c| c.resume_session_id.as_str()), Ok("as_1"));
        assert!(matches!(c.map(|c| c.principal), Ok(ClaimedPrincipal::Agent { .. })));
        assert_eq!(connect(InitConnection::default()).err(), Some("InitConnection.client_type is required"));
    }

    #[test]
    fn unserved_frames_keep_what_the_sdk_correlates_on() {
        let kv = UpstreamMessage {
            payload: Some(Payload::KvOp(KvOperation { request_id: "r1".into(), ..Default::default() })),
            ..Default::default()
        };
        // An absent op is GET; an absent scope is the workspace.
        let Request::Kv(get) = request(kv) else { panic!("not a KV request") };
        assert_eq!((get.op, get.scope, get.request_id.as_str()), (KvOp::Get, KvScope::Workspace, "r1"));
        let incr = UpstreamMessage {
            payload: Some(Payload::KvOp(KvOperation { op: OpType::Increment as i32, ..Default::default() })),
            ..Default::default()
        };
        assert!(matches!(
            request(incr),
            Request::Kv(KvRequest { op: KvOp::Update(KvUpdate::Add { delta: 1, guard: None }), .. })
        ));
        let save = UpstreamMessage {
            payload: Some(Payload::CheckpointOp(CheckpointOperation::default())),
            ..Default::default()
        };
        assert!(matches!(request(save), Request::Checkpoint(CheckpointRequest { op: CheckpointOp::Save, .. })));
        let query = super::super::proto::TaskQuery { request_id: "t1".into(), ..Default::default() };
        let task = UpstreamMessage { payload: Some(Payload::TaskQuery(query)), ..Default::default() };
        assert_eq!(
            request(task),
            Request::Unserved { operation: "task_query", correlation: Correlation::RequestId("t1".into()) }
        );
        let ws = UpstreamMessage {
            payload: Some(Payload::WorkspaceOp(WorkspaceOperation::default())),
            ..Default::default()
        };
        assert_eq!(
            request(ws),
            Request::Unserved { operation: "workspace_op", correlation: Correlation::Fifo(FifoKind::Workspace) }
        );
        let init = UpstreamMessage { payload: Some(Payload::Init(InitConnection::default())), ..Default::default() };
        assert!(matches!(request(init), Request::Violation(_)));
    }
}
