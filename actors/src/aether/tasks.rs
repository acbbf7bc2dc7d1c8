//! Aether tasks as node tasks: the requests the gateway decodes (`create_task`, `task_op`,
//! `task_query`, `progress`, `task_subscription_op`), the replies it encodes, and the pure
//! mappings between the two task models — one task table, one state machine.
//!
//! **The mapping** (docs/api.md, "Aether tasks"):
//! * An Aether task is a node task: `intent` = `task_type`, `sender` = the creator's identity
//!   string, the payload bytes are the task's JSON payload ([`payload_value`]), and the Aether
//!   facts (workspace, mode, creator, the caller's string metadata) are kept under the task's
//!   `metadata.aether`.
//! * Targets: `ag::{ws}::{impl}::{spec}` is one agent (TARGETED), `ag::{ws}::{impl}` any worker
//!   of the implementation (POOL); both are targets of adapter kind `aether`. A node target `T`
//!   (loopback, ACP, ACP HTTP) is reached from the SDK as `T`, `ag::{ws}::{T}` or
//!   `ag::{ws}::{T}::{anything}` when no Aether implementation `T` is registered or online.
//! * Statuses: [`status_of`] (node → Aether) and [`node_statuses`] (Aether filter → node).
//! * A worker's `complete` has no result on the wire: the result is `{"completed_by", "progress"}`
//!   (its last progress report); a node result reaches the SDK as `metadata["result"]` (JSON).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::model::{JsonObject, TaskRecord, TaskStatus};

/// Largest task payload accepted (contract §6.5: 512 KiB).
pub const TASK_PAYLOAD_MAX: usize = 512 * 1024;

/// Key of the Aether facts in a node task's `metadata`.
pub const METADATA_KEY: &str = "aether";

/// How a `create_task` asks for its task to be assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignMode {
    SelfAssign,
    Targeted,
    Pool,
}

impl AssignMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AssignMode::SelfAssign => "self_assign",
            AssignMode::Targeted => "targeted",
            AssignMode::Pool => "pool",
        }
    }
}

/// A `create_task`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateTask {
    /// Set by `create_task_sync`: only then is a `CreateTaskResponse` sent.
    pub request_id: Option<String>,
    pub task_type: String,
    /// Empty: the caller's.
    pub workspace: String,
    pub mode: AssignMode,
    pub target_agent_id: String,
    pub target_implementation: String,
    pub metadata: BTreeMap<String, String>,
    pub payload: Vec<u8>,
    pub idempotency_key: String,
    pub context_id: String,
    /// The wire's `TaskPriority` (0 unspecified = normal).
    pub priority: i32,
    /// Over the registry's launch parameters when the target agent must be launched.
    pub launch_overrides: BTreeMap<String, String>,
}

/// The answer to a `create_task`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateReply {
    pub request_id: String,
    pub success: bool,
    pub task_id: String,
    /// `assigned`, `orchestration_triggered` or `pending_pool`.
    pub status: String,
    pub error_code: String,
    pub error_message: String,
    pub assigned_to: String,
}

impl CreateReply {
    pub fn refused(request_id: String, code: &str, message: impl Into<String>) -> Self {
        CreateReply {
            request_id,
            success: false,
            error_code: code.to_owned(),
            error_message: message.into(),
            ..CreateReply::default()
        }
    }
}

/// What a `task_op` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskOpKind {
    Retry,
    Cancel,
    Complete,
    Fail,
    Pause,
    WaitFor,
    Resume,
    Reject,
    Claim,
    Unknown(i32),
}

impl TaskOpKind {
    /// The wire's `TaskOperation.OpType`.
    pub fn of_wire(n: i32) -> Self {
        match n {
            0 => TaskOpKind::Retry,
            1 => TaskOpKind::Cancel,
            2 => TaskOpKind::Complete,
            3 => TaskOpKind::Fail,
            4 => TaskOpKind::Pause,
            5 => TaskOpKind::WaitFor,
            6 => TaskOpKind::Resume,
            7 => TaskOpKind::Reject,
            8 => TaskOpKind::Claim,
            n => TaskOpKind::Unknown(n),
        }
    }
}

/// A `task_op`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskOp {
    pub request_id: String,
    pub op: TaskOpKind,
    pub task_id: String,
    pub reason: String,
}

/// A task as the SDK's `TaskInfo` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskView {
    pub task_id: String,
    pub task_type: String,
    pub status: AetherStatus,
    pub workspace: String,
    pub assigned_to: String,
    /// Unix ms (0: not yet).
    pub created_at: i64,
    pub started_at: i64,
    pub completed_at: i64,
    pub attempt: i32,
    pub max_attempts: i32,
    pub error: String,
    pub metadata: BTreeMap<String, String>,
    pub creator: String,
    pub context_id: String,
}

/// The answer to a `task_op`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskOpReply {
    pub request_id: String,
    pub success: bool,
    pub message: String,
    pub error: String,
    pub task: Option<TaskView>,
}

impl TaskOpReply {
    pub fn refused(request_id: String, error: impl Into<String>) -> Self {
        TaskOpReply { request_id, success: false, error: error.into(), ..TaskOpReply::default() }
    }
}

/// A `task_query`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskQuery {
    pub request_id: String,
    /// GET of this task; `None`: LIST.
    pub get: Option<String>,
    pub filter: QueryFilter,
}

/// A LIST's filter, as far as this node applies it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryFilter {
    pub statuses: Vec<AetherStatus>,
    pub workspace: String,
    pub task_type: String,
    pub limit: u32,
    pub offset: u32,
    pub context_id: String,
}

/// The answer to a `task_query`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskQueryReply {
    pub request_id: String,
    pub success: bool,
    pub error: String,
    pub task: Option<TaskView>,
    pub tasks: Vec<TaskView>,
    pub total_count: u32,
}

/// A `progress` report of a worker.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    pub task_id: String,
    pub state: String,
    /// 0..1, or negative: indeterminate.
    pub completion: f64,
    pub summary: String,
    pub step: Option<ProgressStep>,
    pub metadata: BTreeMap<String, String>,
}

/// A multi-step report's step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressStep {
    pub name: String,
    pub detail: String,
    pub sequence: i32,
    pub total: i32,
}

impl Progress {
    /// The task event data of this report.
    pub fn data(&self) -> JsonObject {
        let mut data = JsonObject::new();
        data.insert("state".into(), json!(self.state));
        if self.completion >= 0.0 {
            data.insert("completion".into(), json!(self.completion));
        }
        if let Some(step) = &self.step {
            data.insert(
                "step".into(),
                json!({"name": step.name, "detail": step.detail, "sequence": step.sequence, "total": step.total}),
            );
        }
        if !self.metadata.is_empty() {
            data.insert("metadata".into(), json!(self.metadata));
        }
        data
    }
}

/// A `task_subscription_op`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriptionOp {
    Subscribe { client_request_id: String, task_id: String },
    Unsubscribe { client_request_id: String, subscription_id: String },
}

/// The answer to a `task_subscription_op`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionReply {
    pub client_request_id: String,
    pub success: bool,
    pub error: String,
    pub task_id: String,
    pub subscription_id: String,
}

/// A pushed `TaskEvent`: a status change or a progress report.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskEventPush {
    pub task_id: String,
    pub subscription_id: String,
    pub workspace: String,
    pub emitted_at_ms: i64,
    pub change: TaskChange,
}

/// What a pushed event says.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskChange {
    Status { from: AetherStatus, to: AetherStatus, reason: String },
    Progress { state: String, progress: f64, message: String },
}

/// A task pushed to a worker (`TaskAssignment`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    pub task_id: String,
    pub task_type: String,
    pub assigned_to: String,
    pub metadata: BTreeMap<String, String>,
    pub assigned_at_ms: i64,
    pub payload: Vec<u8>,
    pub workspace: String,
    pub target_implementation: String,
    pub specifier: String,
    /// A startup assignment to an orchestrator: the profile, and what to launch with (with
    /// `auth_token`, the launched agent's one-shot task token).
    pub profile: String,
    pub launch_params: BTreeMap<String, String>,
}

/// What a worker reports on a task it holds.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerReport {
    /// It started (`claim`).
    Claim,
    Progress(Progress),
    Complete,
    Fail {
        reason: String,
    },
    /// It will not do it (`reject`): the task fails.
    Reject {
        reason: String,
    },
}

/// Why a worker's report was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportRefused {
    /// Not a task this identity holds (or no such task): one answer for both, so nothing leaks.
    #[error("ERR_TASK_NOT_FOUND: task {0} not found or not assigned to you")]
    NotHeld(String),
}

/// The Aether task statuses (the wire's `TaskStatus`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AetherStatus {
    #[default]
    Unspecified,
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
    WaitingInput,
    Rejected,
}

impl AetherStatus {
    /// The wire number.
    pub fn wire(self) -> i32 {
        match self {
            AetherStatus::Unspecified => 0,
            AetherStatus::Queued => 1,
            AetherStatus::Running => 2,
            AetherStatus::Completed => 3,
            AetherStatus::Failed => 4,
            AetherStatus::Cancelled => 5,
            AetherStatus::WaitingInput => 6,
            AetherStatus::Rejected => 10,
        }
    }

    /// The status of a wire number (the ones this node never gives map to `Unspecified`).
    pub fn of_wire(n: i32) -> Self {
        match n {
            1 => AetherStatus::Queued,
            2 => AetherStatus::Running,
            3 => AetherStatus::Completed,
            4 => AetherStatus::Failed,
            5 => AetherStatus::Cancelled,
            6 => AetherStatus::WaitingInput,
            10 => AetherStatus::Rejected,
            _ => AetherStatus::Unspecified,
        }
    }
}

/// The one table between the two models, node → Aether: before a worker or runtime has it a
/// task is `queued`; handed over it is `running`; a pause for input is `waiting_input`. Pure.
pub fn status_of(status: TaskStatus) -> AetherStatus {
    match status {
        TaskStatus::Created
        | TaskStatus::PendingLaunch
        | TaskStatus::Launching
        | TaskStatus::Ready
        | TaskStatus::Dispatching => AetherStatus::Queued,
        TaskStatus::Running => AetherStatus::Running,
        TaskStatus::AwaitingInput => AetherStatus::WaitingInput,
        TaskStatus::Completed => AetherStatus::Completed,
        TaskStatus::Failed => AetherStatus::Failed,
        TaskStatus::Cancelled => AetherStatus::Cancelled,
    }
}

/// The same table read backwards, for a LIST's status filter. Pure.
pub fn node_statuses(status: AetherStatus) -> Vec<TaskStatus> {
    let all = [
        TaskStatus::Created,
        TaskStatus::PendingLaunch,
        TaskStatus::Launching,
        TaskStatus::Ready,
        TaskStatus::Dispatching,
        TaskStatus::Running,
        TaskStatus::AwaitingInput,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];
    all.into_iter().filter(|s| status_of(*s) == status).collect()
}

/// A target of adapter kind `aether`, as its id names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AetherTarget {
    /// `ag::{ws}::{impl}::{spec}`.
    Agent { workspace: String, implementation: String, specifier: String },
    /// `ag::{ws}::{impl}`: any worker of it.
    Pool { workspace: String, implementation: String },
}

impl AetherTarget {
    /// Reads an `ag::` id (each part non-empty, no more than four). Pure.
    pub fn parse(id: &str) -> Option<AetherTarget> {
        let rest = id.strip_prefix("ag::")?;
        let parts: Vec<&str> = rest.split("::").collect();
        if parts.iter().any(|p| p.is_empty() || p.contains(['*', '>', ' '])) {
            return None;
        }
        match parts.as_slice() {
            [ws, imp] => Some(AetherTarget::Pool { workspace: (*ws).into(), implementation: (*imp).into() }),
            [ws, imp, spec] => Some(AetherTarget::Agent {
                workspace: (*ws).into(),
                implementation: (*imp).into(),
                specifier: (*spec).into(),
            }),
            _ => None,
        }
    }

    /// The target id.
    pub fn id(&self) -> String {
        match self {
            AetherTarget::Agent { workspace, implementation, specifier } => {
                format!("ag::{workspace}::{implementation}::{specifier}")
            }
            AetherTarget::Pool { workspace, implementation } => format!("ag::{workspace}::{implementation}"),
        }
    }

    pub fn workspace(&self) -> &str {
        match self {
            AetherTarget::Agent { workspace, .. } | AetherTarget::Pool { workspace, .. } => workspace,
        }
    }

    pub fn implementation(&self) -> &str {
        match self {
            AetherTarget::Agent { implementation, .. } | AetherTarget::Pool { implementation, .. } => implementation,
        }
    }
}

/// The node task target spec of an `aether` target id (listed and routed like any target).
pub fn target_spec(target: &AetherTarget) -> crate::model::TargetSpec {
    let mut spec = crate::model::TargetSpec::new(target.id(), crate::adapters::AdapterKind::Aether.as_str());
    spec.source = crate::model::TargetSource::Aether;
    spec
}

/// A payload's bytes as the task's JSON payload: JSON text is its value, other UTF-8 text a
/// string, anything else `{"base64": …}`; empty is `{}`. Pure.
pub fn payload_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return json!({});
    }
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return v;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => {
            use base64::Engine;
            json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) })
        }
    }
}

/// A task's JSON payload as the bytes a worker receives: its JSON text (a string payload that
/// came as plain text goes back as that text). Pure.
pub fn payload_bytes(payload: &Value) -> Vec<u8> {
    match payload {
        Value::String(text) => text.clone().into_bytes(),
        Value::Object(map) if map.is_empty() => Vec::new(),
        other => other.to_string().into_bytes(),
    }
}

/// The Aether facts kept in a node task's `metadata.aether`.
pub fn facts(workspace: &str, mode: AssignMode, creator: &str, metadata: &BTreeMap<String, String>) -> Value {
    json!({ "workspace": workspace, "mode": mode.as_str(), "creator": creator, "metadata": metadata })
}

/// A node task as the SDK sees it (`result`: the task's result, if it has one). Pure.
pub fn view_of(task: &TaskRecord, result: Option<&Value>) -> TaskView {
    let aether = task.metadata.get(METADATA_KEY);
    let text = |key: &str| aether.and_then(|a| a.get(key)).and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut metadata: BTreeMap<String, String> = aether
        .and_then(|a| a.get("metadata"))
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect())
        .unwrap_or_default();
    if let Some(result) = result {
        metadata.insert("result".into(), result.to_string());
    }
    let workspace = match text("workspace") {
        ws if !ws.is_empty() => ws,
        _ => task
            .resolved_agent_id
            .as_deref()
            .and_then(AetherTarget::parse)
            .map(|t| t.workspace().to_owned())
            .unwrap_or_default(),
    };
    let status = status_of(task.status);
    let assigned_to = task
        .remote
        .as_ref()
        .and_then(|r| r.remote_session_id.clone())
        .filter(|_| task.remote.as_ref().is_some_and(|r| r.binding == ASSIGNMENT_BINDING))
        .or_else(|| task.resolved_agent_id.clone())
        .unwrap_or_default();
    let updated = crate::clock::unix_millis_of(&task.updated_at);
    TaskView {
        task_id: task.task_id.clone(),
        task_type: task.intent.clone(),
        status,
        workspace,
        assigned_to,
        created_at: crate::clock::unix_millis_of(&task.created_at),
        started_at: if task.status.is_dispatched() || task.status.is_terminal() { updated } else { 0 },
        completed_at: if task.status.is_terminal() { updated } else { 0 },
        attempt: i32::try_from(task.attempts.attempt).unwrap_or(i32::MAX),
        max_attempts: i32::try_from(task.attempts.max_attempts).unwrap_or(i32::MAX),
        error: task
            .last_error
            .as_ref()
            .map(|e| match &e.detail {
                Some(d) => format!("{}: {d}", e.reason.as_str()),
                None => e.reason.as_str().to_owned(),
            })
            .unwrap_or_default(),
        metadata,
        creator: match text("creator") {
            c if !c.is_empty() => c,
            _ => task.sender.clone(),
        },
        context_id: task.conversation_id.clone(),
    }
}

/// What a node task event says to an SDK subscriber, given the status it had before: a status
/// change (`from` → `to`), a worker's progress (an event with progress data), or both. Pure.
pub fn changes_of(before: AetherStatus, event: &crate::model::TaskEvent) -> Vec<TaskChange> {
    let mut out = Vec::new();
    let to = status_of(event.state);
    if to != before {
        out.push(TaskChange::Status { from: before, to, reason: event.message.clone().unwrap_or_default() });
    }
    if let Some(state) = event.data.get("state").and_then(Value::as_str) {
        out.push(TaskChange::Progress {
            state: state.to_owned(),
            progress: event.data.get("completion").and_then(Value::as_f64).unwrap_or(-1.0),
            message: event.message.clone().unwrap_or_default(),
        });
    }
    out
}

/// The binding an Aether worker's hand-over records (`remote.binding`; `remote_session_id` is
/// the worker's identity).
pub const ASSIGNMENT_BINDING: &str = "aether";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table_reads_both_ways() {
        let cases = [
            (TaskStatus::Created, AetherStatus::Queued),
            (TaskStatus::PendingLaunch, AetherStatus::Queued),
            (TaskStatus::Launching, AetherStatus::Queued),
            (TaskStatus::Ready, AetherStatus::Queued),
            (TaskStatus::Dispatching, AetherStatus::Queued),
            (TaskStatus::Running, AetherStatus::Running),
            (TaskStatus::AwaitingInput, AetherStatus::WaitingInput),
            (TaskStatus::Completed, AetherStatus::Completed),
            (TaskStatus::Failed, AetherStatus::Failed),
            (TaskStatus::Cancelled, AetherStatus::Cancelled),
        ];
        for (node, aether) in cases {
            assert_eq!(status_of(node), aether, "{node:?}");
            assert!(node_statuses(aether).contains(&node));
            assert_eq!(AetherStatus::of_wire(aether.wire()), aether);
        }
        assert_eq!(node_statuses(AetherStatus::Queued).len(), 5);
        assert!(node_statuses(AetherStatus::Rejected).is_empty());
    }

    #[test]
    fn aether_target_ids() {
        assert_eq!(
            AetherTarget::parse("ag::ws::impl::s1"),
            Some(AetherTarget::Agent { workspace: "ws".into(), implementation: "impl".into(), specifier: "s1".into() })
        );
        assert_eq!(
            AetherTarget::parse("ag::ws::impl"),
            Some(AetherTarget::Pool { workspace: "ws".into(), implementation: "impl".into() })
        );
        for bad in ["ag::ws", "ag::", "ag::ws::::x", "ag::ws::a::b::c", "tu::ws::a::b", "echo", "ag::w s::a"] {
            assert_eq!(AetherTarget::parse(bad), None, "{bad}");
        }
        let Some(t) = AetherTarget::parse("ag::ws::impl::s1") else { panic!("does not parse") };
        assert_eq!(AetherTarget::parse(&t.id()), Some(t));
    }

    #[test]
    fn events_read_as_status_changes_and_progress() {
        let event = |state: TaskStatus, data: Value| crate::model::TaskEvent {
            event_id: "e".into(),
            task_id: "t".into(),
            seq: 3,
            kind: crate::model::EventKind::TaskRunning,
            state,
            source: crate::model::EventSource::Adapter,
            message: Some("half way".into()),
            data: data.as_object().cloned().unwrap_or_default(),
            created_at: "2026-12-03T00:00:00.000Z".into(),
        };
        let progress = TaskChange::Progress { state: "working".into(), progress: 0.5, message: "half way".into() };
        let running = event(TaskStatus::Running, json!({"state": "working", "completion": 0.5}));
        assert_eq!(changes_of(AetherStatus::Running, &running), vec![progress.clone()]);
        // A first progress report also moves a queued task to running: both are told.
        let moved =
            TaskChange::Status { from: AetherStatus::Queued, to: AetherStatus::Running, reason: "half way".into() };
        assert_eq!(changes_of(AetherStatus::Queued, &running), vec![moved, progress]);
        assert!(changes_of(AetherStatus::Running, &event(TaskStatus::Running, json!({}))).is_empty());
    }

    #[test]
    fn payloads_round_trip() {
        for bytes in [&br#"{"n":1}"#[..], b"plain text", b"[1,2]", b""] {
            assert_eq!(payload_bytes(&payload_value(bytes)), bytes.to_vec(), "{bytes:?}");
        }
        assert_eq!(payload_value(&[0xff, 0x00]), json!({"base64": "/wA="}));
    }
}
