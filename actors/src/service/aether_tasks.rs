//! Aether tasks over a gateway session ([`crate::aether::tasks`]): `create_task` in its three
//! modes, `task_op`, `task_query`, `progress` and task event subscriptions — all on the node's
//! one task model. A created task goes through intake like `POST /v1/tasks`; a task for an
//! Aether agent or pool runs on the `aether` adapter (the presence actor's board hands it to a
//! worker as a `TaskAssignment`); one for a node target (loopback, ACP, ACP HTTP) runs there.
//! A worker's claim, progress, complete and fail go to the board, which reports them to the task.

use serde_json::{Value, json};

use super::aether::GatewaySession;
use super::aether_admin::aether_error;
use super::tasks::{EventSubscription, ResumeInput, TaskListQuery};
use super::{ErrorKind, Need, ServiceError, Services};
use crate::aether::connection::Session;
use crate::aether::identity::PrincipalKind;
use crate::aether::presence::{PresenceMsg, SELF_ASSIGNED};
use crate::aether::tasks::{
    AetherTarget, AssignMode, Assignment, CreateReply, CreateTask, METADATA_KEY, Progress, QueryFilter,
    TASK_PAYLOAD_MAX, TaskOp, TaskOpKind, TaskOpReply, TaskQuery, TaskQueryReply, TaskView, WorkerReport, facts,
    node_statuses, payload_value, view_of,
};
use crate::intake::{IdempotencyKey, TaskRequest, create_task_once};
use crate::model::{JsonObject, Priority, TaskRecord, TaskStatus};
use crate::supervision::ASK_TIMEOUT;

/// Most tasks one LIST returns.
const QUERY_PAGE_MAX: u32 = 500;
/// Tasks one LIST returns when the filter gives no limit.
const QUERY_PAGE_DEFAULT: u32 = 100;

/// The agent registry's launch parameter naming what the node runs itself (a JSON argv).
const LAUNCH_COMMAND: &str = "command";

/// How long a creator's report on its own new task waits for the board to have it: tries, step.
const SELF_ASSIGN_WAIT_TRIES: u32 = 100;
const SELF_ASSIGN_WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(20);

/// One answer for a task that is missing and one the caller may not see (nothing leaks).
fn not_found(task_id: &str) -> String {
    format!("ERR_TASK_NOT_FOUND: task {task_id} not found or not accessible")
}

/// Where an SDK task goes, decided before it is created.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Destination {
    /// A node target or an Aether agent or pool: the task's target id.
    Target(String),
    /// The creator holds it (SELF_ASSIGN).
    Creator,
}

/// `CODE: message` when `text` starts with an upstream-style code (`ERR_…`, `TASK_PAYLOAD_TOO_LARGE`). Pure.
fn own_code(text: &str) -> Option<(&str, &str)> {
    let (code, message) = text.split_once(": ")?;
    let shaped = code.contains('_') && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit());
    shaped.then_some((code, message))
}

/// The wire's `TaskPriority` as the node's (low 1, normal 2/0, high 3 and above). Pure.
fn priority_of(wire: i32) -> Priority {
    match wire {
        1 => Priority::Low,
        n if n >= 3 => Priority::High,
        _ => Priority::Normal,
    }
}

impl Services {
    /// Asks an orchestrator to launch an Aether agent that is not connected and has a task
    /// waiting (lazy launch): when its implementation is registered with a profile and an
    /// orchestrator of that profile is connected, that orchestrator gets the startup
    /// `TaskAssignment{task_type: agent_startup, profile, target_implementation, workspace,
    /// specifier, launch_params (the registry's, the overrides, "auth_token")}`; the agent it
    /// starts connects with that one-shot token and receives its queued task. Once per agent
    /// per minute; `None` when nobody was asked (the task waits for the agent either way).
    pub(crate) async fn request_launch(
        &self,
        target: &AetherTarget,
        overrides: &std::collections::BTreeMap<String, String>,
    ) -> Option<String> {
        let AetherTarget::Agent { workspace, implementation, specifier } = target else { return None };
        let registered =
            self.dir.reader.aether_agents().await.ok()?.into_iter().find(|a| &a.implementation == implementation)?;
        let profile = Some(registered.orchestrator_profile.clone())
            .filter(|p| !p.is_empty())
            .or_else(|| registered.launch_params.get("profile").cloned())
            .unwrap_or_default();
        let command = registered.launch_params.get(LAUNCH_COMMAND).cloned();
        if profile.is_empty() && command.is_none() {
            return None;
        }
        let identity = target.id();
        let now = std::time::Instant::now();
        let token = {
            let mut random = [0u8; 32];
            use rand::TryRngCore as _;
            rand::rngs::OsRng.try_fill_bytes(&mut random).ok()?;
            let mut book = self.launches.lock().ok()?;
            if book.pending(&identity, now) {
                return None;
            }
            book.mint(&identity, random, now)
        };
        let mut launch_params = registered.launch_params.clone();
        launch_params.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        launch_params.insert("profile".into(), profile.clone());
        launch_params.insert("specifier".into(), specifier.clone());
        launch_params.insert("auth_token".into(), token);
        let assignment = Assignment {
            task_id: format!("startup_{}", crate::ids::new_id().to_ascii_lowercase()),
            task_type: "agent_startup".into(),
            assigned_at_ms: crate::clock::unix_millis(),
            workspace: workspace.clone(),
            target_implementation: implementation.clone(),
            specifier: specifier.clone(),
            profile: profile.clone(),
            launch_params,
            ..Assignment::default()
        };
        let launch_params = assignment.launch_params.clone();
        let asked = match profile.is_empty() {
            true => None,
            false => self
                .dir
                .presence
                .ask(ASK_TIMEOUT, |reply| PresenceMsg::Launch {
                    profile: profile.clone(),
                    assignment: Box::new(assignment),
                    reply,
                })
                .await
                .ok()
                .flatten(),
        };
        if let Some(orchestrator) = &asked {
            tracing::info!(identity = %identity, %profile, %orchestrator, "asked an orchestrator to launch an Aether agent");
            return asked;
        }
        // No orchestrator for it: the node is its own, when the registry says what to run.
        if let Some(command) = command {
            return self.launch_agent_itself(target, &command, &launch_params);
        }
        tracing::info!(identity = %identity, %profile, "no orchestrator of the profile is connected; the task waits for the agent");
        None
    }

    /// Starts an Aether agent as the node's own child (its registry entry's
    /// `launch_params["command"]`, a JSON array of argv; `launch_params["cwd"]`), in its own
    /// process group that dies with the node, told where to connect and with what in its
    /// environment: `AETHER_GATEWAY`, `AETHER_AUTH_TOKEN`, `AETHER_WORKSPACE`,
    /// `AETHER_IMPLEMENTATION`, `AETHER_SPECIFIER`. Its output goes to the node's log.
    fn launch_agent_itself(
        &self,
        target: &AetherTarget,
        command: &str,
        params: &std::collections::BTreeMap<String, String>,
    ) -> Option<String> {
        use crate::runtime::process;
        let AetherTarget::Agent { workspace, implementation, specifier } = target else { return None };
        let identity = target.id();
        let argv: Vec<String> = match serde_json::from_str(command) {
            Ok(argv) => argv,
            Err(e) => {
                tracing::warn!(identity = %identity, error = %e, "launch_params.command must be a JSON array of strings; not launched");
                return None;
            }
        };
        let Some(gateway) = self.gateway_address.get().cloned() else {
            tracing::warn!(identity = %identity, "the gateway's address is not known; not launched");
            return None;
        };
        let env = [
            ("AETHER_GATEWAY", gateway),
            ("AETHER_AUTH_TOKEN", params.get("auth_token").cloned().unwrap_or_default()),
            ("AETHER_WORKSPACE", workspace.clone()),
            ("AETHER_IMPLEMENTATION", implementation.clone()),
            ("AETHER_SPECIFIER", specifier.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let cmd =
            process::LaunchCommand { argv, env, cwd: process::absolute_dir(params.get("cwd").map(String::as_str)) };
        let spawned = match process::spawn(&cmd, &identity) {
            Ok(spawned) => spawned,
            Err(e) => {
                tracing::warn!(identity = %identity, error = %e, "could not launch the Aether agent");
                return None;
            }
        };
        let pid = spawned.pid;
        tracing::info!(identity = %identity, pid, "launched an Aether agent itself (no orchestrator)");
        // The child is owned by this task: when the node stops, dropping it kills the agent
        // (and its keeper the agent's group); it is reaped and its end logged otherwise.
        tokio::spawn(async move {
            let process::Spawned { mut child, stdout, stderr_tail, stdin, keeper, .. } = spawned;
            drop(stdin);
            process::log_stdout(stdout, stderr_tail, &identity, pid);
            let status = child.wait().await;
            let ended = status.as_ref().map_or_else(|e| e.to_string(), process::describe_exit);
            tracing::info!(identity = %identity, pid, status = %ended, "a launched Aether agent ended");
            drop(keeper);
        });
        Some("node".into())
    }

    /// Whether an Aether agent or pool can take tasks: its implementation is in the agent
    /// registry, or the agent (or another agent of its implementation in its workspace) is
    /// connected. Otherwise a task for it would wait for nobody: not found.
    pub(crate) async fn check_aether_target(&self, target: &AetherTarget) -> Result<(), ServiceError> {
        let registered =
            self.dir.reader.aether_agents().await?.iter().any(|a| a.implementation == target.implementation());
        if registered {
            return Ok(());
        }
        // The agent itself, or (for an agent that is not connected) a worker of its
        // implementation in its workspace: the implementation is live there.
        let pool = AetherTarget::Pool {
            workspace: target.workspace().to_owned(),
            implementation: target.implementation().to_owned(),
        };
        for identity in [target.id(), pool.id()] {
            if self.dir.presence.ask(ASK_TIMEOUT, |reply| PresenceMsg::Online { identity, reply }).await? {
                return Ok(());
            }
        }
        Err(ServiceError::not_found(format!(
            "target agent not found: {} (implementation '{}' is not registered and no such agent is connected)",
            target.id(),
            target.implementation()
        )))
    }

    /// Where a TARGETED task goes: an Aether agent (its implementation registered or the agent
    /// online), else the node target its implementation (or the whole id) names.
    async fn targeted(&self, workspace: &str, id: &str) -> Result<String, ServiceError> {
        if let Some(target) = AetherTarget::parse(id) {
            if self.check_aether_target(&target).await.is_ok() {
                return Ok(target.id());
            }
            if self.dir.targets.borrow().get(target.implementation()).is_some() {
                return Ok(target.implementation().to_owned());
            }
            return Err(ServiceError::invalid(format!(
                "ERR_TASK_CREATE_FAILED: target_agent_id '{id}': implementation '{}' is not registered, no such agent \
                 is connected and no node target has that id",
                target.implementation()
            )));
        }
        if self.dir.targets.borrow().get(id).is_some() {
            return Ok(id.to_owned());
        }
        Err(ServiceError::invalid(format!(
            "target_agent_id '{id}' is neither an agent identity (ag::{workspace}::{{implementation}}::{{specifier}}) \
             nor a node target"
        )))
    }

    /// A `create_task` of `session`: the reply the SDK expects (sent only for a `request_id`).
    pub async fn gateway_create_task(&self, session: &GatewaySession, req: CreateTask) -> CreateReply {
        let request_id = req.request_id.clone().unwrap_or_default();
        match self.create_aether_task(&session.session, req).await {
            Ok(reply) => reply,
            Err(e) => {
                let text = aether_error(&e);
                let (code, message) = match text.split_once(": ") {
                    // A refusal that names its own code keeps it (`ERR_TASK_CREATE_FAILED: …`).
                    Some((_, rest)) if own_code(rest).is_some() => own_code(rest).unwrap_or((rest, "")),
                    Some(pair) => pair,
                    None => ("ERR_TASK_CREATE_FAILED", text.as_str()),
                };
                CreateReply::refused(request_id, code, message)
            }
        }
    }

    async fn create_aether_task(&self, session: &Session, req: CreateTask) -> Result<CreateReply, ServiceError> {
        let caller = self.gateway_caller(session)?;
        caller.require(Need::Write)?;
        let creator = &session.identity;
        if req.task_type.trim().is_empty() {
            return Err(ServiceError::invalid("task_type: must not be empty"));
        }
        if req.payload.len() > TASK_PAYLOAD_MAX {
            return Err(ServiceError::new(
                ErrorKind::Invalid,
                format!(
                    "TASK_PAYLOAD_TOO_LARGE: the payload is {} bytes; at most {TASK_PAYLOAD_MAX} are accepted",
                    req.payload.len()
                ),
            ));
        }
        let workspace = match (req.workspace.trim(), creator.workspace.as_deref()) {
            ("", Some(ws)) => ws.to_owned(),
            ("", None) => return Err(ServiceError::invalid("workspace: required (the caller has none)")),
            (ws, _) => ws.to_owned(),
        };
        if !session.acl_exempt {
            self.check_workspace_access(creator, &workspace).await?;
        }
        let destination = match req.mode {
            AssignMode::SelfAssign => Destination::Creator,
            AssignMode::Targeted if req.target_agent_id.trim().is_empty() => {
                return Err(ServiceError::invalid("target_agent_id: required for a TARGETED task"));
            }
            AssignMode::Targeted => Destination::Target(self.targeted(&workspace, req.target_agent_id.trim()).await?),
            AssignMode::Pool => {
                let implementation = req.target_implementation.trim();
                if implementation.is_empty() {
                    return Err(ServiceError::invalid("target_implementation: required for a POOL task"));
                }
                if let Err(problem) = crate::aether::identity::check_identifier(implementation) {
                    return Err(ServiceError::invalid(format!("target_implementation: {problem}")));
                }
                Destination::Target(format!("ag::{workspace}::{implementation}"))
            }
        };
        if destination == Destination::Creator && creator.kind != PrincipalKind::Agent {
            return Err(ServiceError::invalid(
                "a SELF_ASSIGN task is held by its creator, which must be an agent here; name a target_agent_id or \
                 a target_implementation",
            ));
        }
        let mut runtime_options = JsonObject::new();
        runtime_options.insert("aether_metadata".into(), json!(req.metadata));
        let target = match &destination {
            Destination::Target(id) => id.clone(),
            Destination::Creator => {
                runtime_options.insert(SELF_ASSIGNED.into(), json!(true));
                creator.key.clone()
            }
        };
        let mut metadata = JsonObject::new();
        metadata.insert(METADATA_KEY.into(), facts(&workspace, req.mode, &creator.key, &req.metadata));
        let request = TaskRequest {
            sender: Some(creator.key.clone()),
            target_agent_id: Some(target.clone()),
            intent: Some(req.task_type.clone()),
            payload: payload_value(&req.payload),
            runtime_options,
            conversation_id: (!req.context_id.is_empty()).then(|| req.context_id.clone()),
            metadata,
            idempotency: (!req.idempotency_key.is_empty())
                .then(|| IdempotencyKey { scope: format!("aether:{}", creator.key), key: req.idempotency_key.clone() }),
            priority: priority_of(req.priority),
            ..TaskRequest::default()
        };
        let created = create_task_once(&self.dir.intake, request).await?.record;
        let (status, assigned_to) = match (&destination, req.mode) {
            (Destination::Creator, _) => ("assigned", creator.key.clone()),
            (Destination::Target(_), AssignMode::Pool) => ("pending_pool", String::new()),
            (Destination::Target(id), _) if AetherTarget::parse(id).is_some() => {
                let identity = id.clone();
                let online = self
                    .dir
                    .presence
                    .ask(ASK_TIMEOUT, |reply| PresenceMsg::Online { identity, reply })
                    .await
                    .unwrap_or(false);
                if !online && let Some(target) = AetherTarget::parse(id) {
                    self.request_launch(&target, &req.launch_overrides).await;
                }
                (if online { "assigned" } else { "orchestration_triggered" }, id.clone())
            }
            (Destination::Target(id), _) => ("assigned", id.clone()),
        };
        Ok(CreateReply {
            request_id: req.request_id.unwrap_or_default(),
            success: true,
            task_id: created.task_id,
            status: status.to_owned(),
            assigned_to,
            ..CreateReply::default()
        })
    }

    /// A `task_op` of `session`.
    pub async fn gateway_task_op(&self, session: &GatewaySession, op: TaskOp) -> TaskOpReply {
        let request_id = op.request_id.clone();
        match self.aether_task_op(&session.session, op).await {
            Ok(reply) => reply,
            Err(error) => TaskOpReply::refused(request_id, error),
        }
    }

    async fn aether_task_op(&self, session: &Session, op: TaskOp) -> Result<TaskOpReply, String> {
        let caller = self.gateway_caller(session).map_err(|e| aether_error(&e))?;
        caller.require(Need::Write).map_err(|e| aether_error(&e))?;
        let identity = session.identity.key.clone();
        // The holder's own report needs no read first: the board knows who holds the task (a
        // refusal falls through to the checks below, which name why).
        let fast = match op.op {
            TaskOpKind::Claim => Some((WorkerReport::Claim, "claimed")),
            TaskOpKind::Complete => Some((WorkerReport::Complete, "completed")),
            TaskOpKind::Fail => Some((WorkerReport::Fail { reason: op.reason.clone() }, "failed")),
            _ => None,
        };
        if let Some((report, message)) = fast {
            let (who, task_id) = (identity.clone(), op.task_id.clone());
            let asked = self
                .dir
                .presence
                .ask(ASK_TIMEOUT, |reply| PresenceMsg::Work { identity: who, task_id, report, reply })
                .await;
            if let Ok(Ok(())) = asked {
                let now = self.dir.reader.task(&op.task_id).await.ok().flatten();
                return Ok(TaskOpReply {
                    request_id: op.request_id,
                    success: true,
                    message: message.to_owned(),
                    task: now.map(|s| view_of(&s.task, None)),
                    ..TaskOpReply::default()
                });
            }
        }
        let task = self.visible_task(session, &op.task_id).await?;
        // A self-assigned task reaches the board just after its creation is durable; its
        // creator may report on it at once, so the board is asked again for a moment.
        let own = task.sender == identity
            && task.runtime_options.get(SELF_ASSIGNED).and_then(Value::as_bool) == Some(true)
            && !task.status.is_terminal();
        let worker = |report: WorkerReport| {
            let (identity, task_id) = (identity.clone(), op.task_id.clone());
            async move {
                let mut tries = if own { SELF_ASSIGN_WAIT_TRIES } else { 1 };
                loop {
                    let (identity, task_id, report) = (identity.clone(), task_id.clone(), report.clone());
                    let asked = self
                        .dir
                        .presence
                        .ask(ASK_TIMEOUT, |reply| PresenceMsg::Work { identity, task_id, report, reply })
                        .await;
                    tries -= 1;
                    match asked {
                        Ok(Ok(())) => return Ok(()),
                        Ok(Err(_)) if tries > 0 => tokio::time::sleep(SELF_ASSIGN_WAIT_STEP).await,
                        Ok(Err(refused)) => return Err(refused.to_string()),
                        Err(e) => return Err(aether_error(&ServiceError::from(e))),
                    }
                }
            }
        };
        let message = match op.op {
            TaskOpKind::Claim => worker(WorkerReport::Claim).await.map(|()| "claimed"),
            TaskOpKind::Complete => worker(WorkerReport::Complete).await.map(|()| "completed"),
            TaskOpKind::Fail => worker(WorkerReport::Fail { reason: op.reason.clone() }).await.map(|()| "failed"),
            // The creator of a task awaiting permission rejects the request (the agent goes
            // on with the rejection); a worker rejects a task it holds (the task fails).
            TaskOpKind::Reject if task.status == TaskStatus::AwaitingInput && task.sender == identity => {
                let input = ResumeInput { decision: Some("reject".into()), ..ResumeInput::default() };
                self.resume_task(&caller, &task.task_id, input).await.map(|_| "rejected").map_err(|e| aether_error(&e))
            }
            TaskOpKind::Reject => worker(WorkerReport::Reject { reason: op.reason.clone() }).await.map(|()| "rejected"),
            TaskOpKind::Cancel => {
                let reason = (!op.reason.is_empty()).then(|| op.reason.clone());
                self.cancel_task(&caller, &task.task_id, reason)
                    .await
                    .map(|_| "cancelled")
                    .map_err(|e| aether_error(&e))
            }
            TaskOpKind::Resume => {
                // An ACP permission request answered from the SDK: `reason` (raw `task_op`s)
                // names the option (its id or kind: allow, allow_always, reject, reject_always),
                // or is a JSON answer.
                // The SDK's `resume_task` sends no reason: a permission request is allowed.
                let input = match serde_json::from_str::<Value>(&op.reason) {
                    Ok(Value::Object(map)) => ResumeInput { payload: Value::Object(map), ..ResumeInput::default() },
                    _ if op.reason.is_empty() => {
                        ResumeInput { decision: Some("allow".into()), ..ResumeInput::default() }
                    }
                    _ if matches!(op.reason.as_str(), "allow" | "allow_always" | "reject" | "reject_always") => {
                        ResumeInput { decision: Some(op.reason.clone()), ..ResumeInput::default() }
                    }
                    _ => ResumeInput { option_id: Some(op.reason.clone()), ..ResumeInput::default() },
                };
                self.resume_task(&caller, &task.task_id, input).await.map(|_| "resumed").map_err(|e| aether_error(&e))
            }
            TaskOpKind::Retry => self
                .apply(&caller, super::bulk::BulkAction::Retry, &task.task_id, None)
                .await
                .map(|()| "retried")
                .map_err(|e| format!("ERR_TASK_OP_FAILED: {}", e.error)),
            TaskOpKind::Pause | TaskOpKind::WaitFor => {
                Err("ERR_NOT_IMPLEMENTED: pause and wait_for are not served by this node; cancel or fail the task"
                    .into())
            }
            TaskOpKind::Unknown(n) => Err(format!("ERR_INVALID_ARGUMENT: task operation {n} is not known")),
        }?;
        // The task as it is now (the op's effect may still be on its way to storage).
        let now = self.dir.reader.task(&task.task_id).await.ok().flatten().map_or(task, |s| s.task);
        Ok(TaskOpReply {
            request_id: op.request_id,
            success: true,
            message: message.to_owned(),
            task: Some(view_of(&now, None)),
            ..TaskOpReply::default()
        })
    }

    /// A task `session` may see and act on: it created it, holds it (or is its target), or has
    /// admin rights. Anything else reads as missing.
    async fn visible_task(&self, session: &Session, task_id: &str) -> Result<TaskRecord, String> {
        let stored = self.dir.reader.task(task_id).await.map_err(|e| aether_error(&ServiceError::from(e)))?;
        let Some(stored) = stored else { return Err(not_found(task_id)) };
        let task = stored.task;
        let me = session.identity.key.as_str();
        let admin = session.acl_exempt || self.gateway_caller(session).is_ok_and(|c| c.require(Need::Admin).is_ok());
        let mine = task.sender == me
            || task.resolved_agent_id.as_deref() == Some(me)
            || task.remote.as_ref().and_then(|r| r.remote_session_id.as_deref()) == Some(me);
        if mine || admin {
            return Ok(task);
        }
        let task_id = task_id.to_owned();
        let holder = self.dir.presence.ask(ASK_TIMEOUT, |reply| PresenceMsg::Holder { task_id, reply }).await;
        match holder {
            Ok(Some(holder)) if holder == me => Ok(task),
            _ => Err(not_found(&task.task_id)),
        }
    }

    /// A `task_query` of `session`.
    pub async fn gateway_task_query(&self, session: &GatewaySession, query: TaskQuery) -> TaskQueryReply {
        let request_id = query.request_id.clone();
        match self.aether_task_query(&session.session, query).await {
            Ok(reply) => reply,
            Err(error) => TaskQueryReply { request_id, success: false, error, ..TaskQueryReply::default() },
        }
    }

    async fn aether_task_query(&self, session: &Session, query: TaskQuery) -> Result<TaskQueryReply, String> {
        let caller = self.gateway_caller(session).map_err(|e| aether_error(&e))?;
        caller.require(Need::Read).map_err(|e| aether_error(&e))?;
        let mut reply =
            TaskQueryReply { request_id: query.request_id.clone(), success: true, ..TaskQueryReply::default() };
        if let Some(task_id) = &query.get {
            let task = self.visible_task(session, task_id).await?;
            let result = self.result_of(&task).await;
            reply.task = Some(view_of(&task, result.as_ref()));
            reply.total_count = 1;
            return Ok(reply);
        }
        let (views, total) = self.query_views(session, &query.filter).await?;
        reply.total_count = total;
        reply.tasks = views;
        Ok(reply)
    }

    /// The tasks of a LIST: the ones the session may see that match, newest first.
    async fn query_views(&self, session: &Session, filter: &QueryFilter) -> Result<(Vec<TaskView>, u32), String> {
        let limit = match filter.limit {
            0 => QUERY_PAGE_DEFAULT,
            n => n.min(QUERY_PAGE_MAX),
        } as usize;
        let statuses: Vec<String> =
            filter.statuses.iter().flat_map(|s| node_statuses(*s)).map(|s| s.as_str().to_owned()).collect();
        if !filter.statuses.is_empty() && statuses.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let admin = session.acl_exempt || self.gateway_caller(session).is_ok_and(|c| c.require(Need::Admin).is_ok());
        let me = session.identity.key.clone();
        let wanted = filter.offset as usize + limit;
        let mut out = Vec::new();
        let mut cursor = None;
        // Pages of the node's listing, filtered here by what the node's filter does not know.
        for _ in 0..20 {
            let query = TaskListQuery {
                status: if statuses.is_empty() { Vec::new() } else { vec![statuses.join(",")] },
                intent: (!filter.task_type.is_empty()).then(|| filter.task_type.clone()),
                conversation_id: (!filter.context_id.is_empty()).then(|| filter.context_id.clone()),
                cursor: cursor.clone(),
                limit: Some("200".into()),
                ..TaskListQuery::default()
            };
            let caller = self.gateway_caller(session).map_err(|e| aether_error(&e))?;
            let page = self.list_tasks(&caller, query).await.map_err(|e| aether_error(&e))?;
            for task in page.tasks {
                let view = view_of(&task, None);
                let visible = admin || view.creator == me || view.assigned_to == me;
                if visible && (filter.workspace.is_empty() || view.workspace == filter.workspace) {
                    out.push(view);
                }
            }
            match page.next_cursor {
                Some(next) if out.len() < wanted => cursor = Some(next),
                _ => break,
            }
        }
        let total = u32::try_from(out.len()).unwrap_or(u32::MAX);
        Ok((out.into_iter().skip(filter.offset as usize).take(limit).collect(), total))
    }

    /// A finished task's result (its result artifact, as JSON).
    async fn result_of(&self, task: &TaskRecord) -> Option<Value> {
        let id = task.result_artifact_id.as_deref()?;
        let (_, body) = self.dir.reader.artifact(id).await.ok()??;
        let bytes = self.dir.artifacts.read(body).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// A `progress` report of `session` on a task it holds; a refusal is the uncorrelated
    /// error the SDK shows (`ERR_INVALID_PRINCIPAL`, or the task is not the sender's).
    pub async fn gateway_progress(&self, session: &GatewaySession, progress: Progress) -> Result<(), String> {
        let identity = &session.session.identity;
        if !matches!(
            identity.kind,
            PrincipalKind::Agent | PrincipalKind::UniqueTask | PrincipalKind::PooledTask | PrincipalKind::Service
        ) {
            return Err("ERR_INVALID_PRINCIPAL: only agents, tasks and services report progress".into());
        }
        let (identity, task_id) = (identity.key.clone(), progress.task_id.clone());
        let report = WorkerReport::Progress(progress);
        match self.dir.presence.ask(ASK_TIMEOUT, |reply| PresenceMsg::Work { identity, task_id, report, reply }).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refused)) => Err(refused.to_string()),
            Err(e) => Err(aether_error(&ServiceError::from(e))),
        }
    }

    /// A subscription to the events of a task `session` may see, from now on.
    pub async fn gateway_subscribe(
        &self,
        session: &GatewaySession,
        task_id: &str,
    ) -> Result<(EventSubscription, TaskRecord), String> {
        let task = self.visible_task(&session.session, task_id).await?;
        let caller = self.gateway_caller(&session.session).map_err(|e| aether_error(&e))?;
        let last = self.dir.reader.task(task_id).await.ok().flatten().map_or(0, |s| s.last_seq);
        let subscription = self.subscribe_task_events(&caller, task_id, last).await.map_err(|e| aether_error(&e))?;
        Ok((subscription, task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_the_code_they_name() {
        assert_eq!(own_code("TASK_PAYLOAD_TOO_LARGE: 9 bytes"), Some(("TASK_PAYLOAD_TOO_LARGE", "9 bytes")));
        assert_eq!(own_code("ERR_TASK_CREATE_FAILED: x: y"), Some(("ERR_TASK_CREATE_FAILED", "x: y")));
        assert_eq!(own_code("target_agent_id: required"), None);
        assert_eq!(own_code("no code here"), None);
    }

    #[test]
    fn priorities_map_onto_the_nodes_three() {
        assert_eq!(priority_of(0), Priority::Normal);
        assert_eq!(priority_of(1), Priority::Low);
        assert_eq!(priority_of(2), Priority::Normal);
        assert_eq!(priority_of(3), Priority::High);
        assert_eq!(priority_of(4), Priority::High);
    }
}
