//! Wire and storage types of the AethroLink v1 contract (§2): field names, enum spellings and
//! "omit when empty" rules are the Go node's, so its clients and peers read ours unchanged.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::Timestamp;
use crate::ids::AgentId;

/// A JSON object, the shape of payloads, runtime options, metadata and event data.
pub type JsonObject = Map<String, Value>;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::model::UnknownValue { kind: stringify!($name), value: s.to_owned() }),
                }
            }
        }
    };
}

pub mod acl_rule;
pub mod kv_update;
mod retry;
pub use retry::{Attempts, Backoff, DeadlineKind, Deadlines, NoRetry, RetryPolicy, RetryPolicyRequest, remaining_ms};

/// A string that is not one of an enum's wire spellings.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {kind} value '{value}'")]
pub struct UnknownValue {
    /// Which enum was being parsed.
    pub kind: &'static str,
    /// The offending text.
    pub value: String,
}

string_enum!(
    /// A thread's state (contract §10): `interrupted` when a restart caught its last turn in
    /// flight; continuing it makes it `active` again.
    ThreadStatus {
        Active => "active",
        Interrupted => "interrupted",
    }
);

string_enum!(
    /// Where a thread participant's turns run: on this node, or relayed to the peer that
    /// exports its target (contract §2.9, §10.7).
    TargetOwner {
        Local => "local",
        Remote => "remote",
    }
);

string_enum!(
    /// A registered agent's presence (contract §2.8): `offline` once its lease has lapsed or it
    /// unregistered.
    Presence {
        Online => "online",
        Offline => "offline",
    }
);

string_enum!(
    /// Task lifecycle state (contract §2.1). The last three are terminal.
    TaskStatus {
        Created => "created",
        PendingLaunch => "pending_launch",
        Launching => "launching",
        Ready => "ready",
        Dispatching => "dispatching",
        Running => "running",
        AwaitingInput => "awaiting_input",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl TaskStatus {
    /// Terminal states absorb everything: no event is ever appended after one.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled)
    }

    /// Whether the task has been handed to its runtime (cancel must then go through the runtime).
    pub fn is_dispatched(self) -> bool {
        matches!(self, TaskStatus::Dispatching | TaskStatus::Running | TaskStatus::AwaitingInput)
    }
}

string_enum!(
    /// A task's dispatch priority: on a busy runtime scope (one ACP session, one HTTP scope)
    /// waiting work runs high before normal before low, in creation order within a priority.
    Priority {
        Low => "low",
        Normal => "normal",
        High => "high",
    }
);

// The enum comes from `string_enum!`, whose variants take no attributes (no `#[default]`).
#[allow(clippy::derivable_impls)]
impl Default for Priority {
    fn default() -> Self {
        Priority::Normal
    }
}

impl Priority {
    /// Rank for ordering: higher runs first.
    pub fn rank(self) -> u8 {
        match self {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
        }
    }
}

string_enum!(
    /// Kind of a task event (contract §2.1).
    EventKind {
        TaskCreated => "task.created",
        TaskRouted => "task.routed",
        RuntimePendingLaunch => "runtime.pending_launch",
        RuntimeLaunching => "runtime.launching",
        RuntimeReady => "runtime.ready",
        TaskDispatching => "task.dispatching",
        TaskRunning => "task.running",
        TaskAwaitingInput => "task.awaiting_input",
        TaskResumeRequested => "task.resume_requested",
        TaskResumed => "task.resumed",
        TaskCancelRequested => "task.cancel_requested",
        TaskCompleted => "task.completed",
        TaskFailed => "task.failed",
        TaskCancelled => "task.cancelled",
        TaskRetryScheduled => "task.retry_scheduled",
        ArtifactCreated => "artifact.created",
        RuntimeHealth => "runtime.health",
    }
);

string_enum!(
    /// Which component produced an event.
    EventSource {
        Core => "core",
        Adapter => "adapter",
        Runtime => "runtime",
        Transport => "transport",
        Storage => "storage",
        Api => "api",
    }
);

string_enum!(
    /// How the caller wants results delivered (no behavioural difference, kept for the contract).
    DeliveryMode {
        Stream => "stream",
        Sync => "sync",
    }
);

string_enum!(
    /// How a target's runtime process is managed.
    LaunchMode {
        Managed => "managed",
        OnDemand => "on_demand",
        External => "external",
    }
);

/// Effective delivery policy of a task (every field resolved).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPolicy {
    /// `stream` or `sync`.
    pub mode: DeliveryMode,
    /// Start the target's runtime when it is down (else fail `runtime unavailable`).
    pub launch_if_down: bool,
    /// Upper bound on the task's run time from dispatch; `None` = no bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy { mode: DeliveryMode::Stream, launch_if_down: true, timeout_ms: None }
    }
}

/// `delivery` as a client sends it: each field defaults on its own (the Go node defaulted only a
/// missing object, so a partial one silently meant `launch_if_down=false`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<DeliveryMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_if_down: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl DeliveryRequest {
    /// The effective policy: per-field defaults. An absent request is the default policy.
    pub fn resolve(request: Option<DeliveryRequest>) -> DeliveryPolicy {
        let d = request.unwrap_or_default();
        let defaults = DeliveryPolicy::default();
        DeliveryPolicy {
            mode: d.mode.unwrap_or(defaults.mode),
            launch_if_down: d.launch_if_down.unwrap_or(defaults.launch_if_down),
            timeout_ms: d.timeout_ms,
        }
    }
}

/// Why a task failed (`last_error.reason`): one spelling per reason, the contract's vocabulary.
/// A reason an agent or a loopback script names itself (an HTTP agent's error code, `boom`) is
/// kept as [`FailureReason::Other`]; parsing a known spelling always gives its variant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// `delivery.timeout_ms` elapsed.
    Timeout,
    /// A node restart (or a runtime restart) caught the task in flight.
    Interrupted,
    /// The task's actor kept failing.
    Crashed,
    /// The runtime could not take the task.
    SubmitFailed,
    /// A resume could not be delivered.
    ResumeFailed,
    /// The runtime could not be started or did not become ready.
    LaunchFailed,
    /// The runtime is down and may not be launched.
    RuntimeUnavailable,
    /// No runtime of the target's adapter kind in this build.
    AdapterMissing,
    /// The agent process exited (or its stdio closed) mid-task.
    RuntimeExited,
    /// The agent refused or failed to open a session.
    SessionFailed,
    /// The agent answered the prompt with an error.
    PromptFailed,
    /// The agent reported a failure without a code of its own.
    RemoteFailed,
    /// The remote run is no longer known to the HTTP agent.
    RemoteRunGone,
    /// The HTTP agent stayed unreachable past the re-sync bound.
    RemoteUnreachable,
    /// The HTTP agent's event stream failed before a run id arrived.
    StreamFailed,
    /// A relay to a peer could not hand the task over (peer down, refused, bad answer).
    RemoteRelayFailed,
    /// A relayed task's event stream from the peer failed or ended before a terminal event.
    RemoteEventStreamFailed,
    /// After an origin restart, a relayed task's destination no longer knew it or stayed
    /// unreachable past the re-open bound.
    RemoteRelayInterrupted,
    /// `deadlines.schedule_to_start_ms` elapsed before the agent started the attempt.
    ScheduleToStartTimeout,
    /// `deadlines.start_to_close_ms` elapsed after the agent started the attempt.
    StartToCloseTimeout,
    /// A started attempt went `deadlines.heartbeat_timeout_ms` without a progress event.
    HeartbeatTimeout,
    /// A reason the agent (or a script) named itself.
    Other(String),
}

impl FailureReason {
    const KNOWN: [(FailureReason, &'static str); 21] = [
        (FailureReason::Timeout, "timeout"),
        (FailureReason::Interrupted, "interrupted"),
        (FailureReason::Crashed, "crashed"),
        (FailureReason::SubmitFailed, "submit_failed"),
        (FailureReason::ResumeFailed, "resume_failed"),
        (FailureReason::LaunchFailed, "launch_failed"),
        (FailureReason::RuntimeUnavailable, "runtime unavailable"),
        (FailureReason::AdapterMissing, "adapter missing"),
        (FailureReason::RuntimeExited, "runtime_exited"),
        (FailureReason::SessionFailed, "session_failed"),
        (FailureReason::PromptFailed, "prompt_failed"),
        (FailureReason::RemoteFailed, "remote_failed"),
        (FailureReason::RemoteRunGone, "remote_run_gone"),
        (FailureReason::RemoteUnreachable, "remote_unreachable"),
        (FailureReason::StreamFailed, "stream_failed"),
        (FailureReason::RemoteRelayFailed, "remote relay failed"),
        (FailureReason::RemoteEventStreamFailed, "remote event stream failed"),
        (FailureReason::RemoteRelayInterrupted, "remote relay interrupted"),
        (FailureReason::ScheduleToStartTimeout, "schedule_to_start_timeout"),
        (FailureReason::StartToCloseTimeout, "start_to_close_timeout"),
        (FailureReason::HeartbeatTimeout, "heartbeat_timeout"),
    ];

    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            FailureReason::Other(s) => s,
            known => Self::KNOWN.iter().find(|(k, _)| k == known).map_or("", |(_, s)| s),
        }
    }
}

impl From<&str> for FailureReason {
    fn from(s: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|(_, text)| *text == s)
            .map_or_else(|| FailureReason::Other(s.to_owned()), |(k, _)| k.clone())
    }
}

impl From<String> for FailureReason {
    fn from(s: String) -> Self {
        FailureReason::from(s.as_str())
    }
}

impl PartialEq<str> for FailureReason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FailureReason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FailureReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FailureReason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(FailureReason::from(String::deserialize(deserializer)?))
    }
}

string_enum!(
    /// A peer's liveness as the last sync saw it (never probed on listing).
    PeerStatus {
        Online => "online",
        Offline => "offline",
    }
);

/// A static peer (contract §2.10 PeerRecord, plus the last sync error).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub peer_id: String,
    pub display_name: String,
    /// Normalised absolute http(s) URL, no trailing `/`.
    pub base_url: String,
    pub status: PeerStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Sync adds `node_id` (the peer's own id from its health answer).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: JsonObject,
    /// Why the last sync failed (cleared by a successful one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The pinned public key (base64url ed25519): node-protocol requests signed by it act as
    /// this peer. Given at registration or pinned at the first successful sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The pinned key's id (RFC 7638 thumbprint), what its signatures name in `keyid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub registered_at: String,
    pub updated_at: String,
    pub last_seen_at: String,
}

/// A target a peer exported at its last successful sync (contract §2.10 PeerTargetRecord).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerTargetRecord {
    pub peer_id: String,
    pub target_id: String,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub defaults: JsonObject,
    /// `{"source_node_id": <peer node id>}`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: JsonObject,
    /// Always `available` (a peer's liveness is the peer's status).
    pub status: String,
    pub synced_at: String,
}

#[cfg(test)]
mod failure_reason_tests {
    use super::FailureReason;

    #[test]
    fn every_known_spelling_round_trips_and_others_are_kept() {
        for (reason, text) in FailureReason::KNOWN {
            assert_eq!(reason.as_str(), text);
            assert_eq!(FailureReason::from(text), reason);
            assert_eq!(serde_json::to_value(&reason).ok(), Some(serde_json::json!(text)));
        }
        assert_eq!(FailureReason::from("boom"), FailureReason::Other("boom".into()));
        assert_eq!(FailureReason::from("boom").as_str(), "boom");
        let parsed: Result<FailureReason, _> = serde_json::from_str("\"runtime_exited\"");
        assert_eq!(parsed.ok(), Some(FailureReason::RuntimeExited));
    }
}

/// The error recorded on a failed task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// Machine-readable reason (`timeout`, `interrupted`, `remote_failed`, …).
    pub reason: FailureReason,
    /// Human detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Where a task lives in its runtime (contract §2.4 `remote`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRef {
    /// Adapter binding name (`loopback`, `hermes_acp`, …).
    pub binding: String,
    /// The runtime's id for this execution, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_execution_id: Option<String>,
    /// The runtime's session id, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_session_id: Option<String>,
}

/// A task as stored and as returned by `GET /v1/tasks/{id}` (contract §2.4, plus `delivery`
/// and `metadata`, which the Go node dropped).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    pub conversation_id: String,
    pub sender: String,
    pub intent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub runtime_options: JsonObject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_artifact_id: Option<String>,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_artifact_id: Option<String>,
    pub delivery: DeliveryPolicy,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: JsonObject,
    /// Dispatch order on a busy runtime scope.
    #[serde(default)]
    pub priority: Priority,
    /// Attempt number, retry policy and deadlines (flattened: `attempt`, `max_attempts`,
    /// `next_retry_at`, `retry_policy`, `deadlines`, …).
    #[serde(flatten)]
    pub attempts: Attempts,
    pub created_at: String,
    pub updated_at: String,
}

/// One entry of a task's append-only event log (contract §2.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub event_id: String,
    pub task_id: String,
    /// 1-based, contiguous per task; allocated only by the task's actor.
    pub seq: u64,
    pub kind: EventKind,
    /// The task's status after this event.
    pub state: TaskStatus,
    pub source: EventSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data: JsonObject,
    pub created_at: String,
}

/// How a target's runtime is started (contract §2.6 `launch`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchSpec {
    /// `managed` (default), `on_demand` or `external`.
    #[serde(default = "default_launch_mode")]
    pub mode: LaunchMode,
    /// argv of the runtime process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Named alternatives to `command` (Hermes executors).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub commands: BTreeMap<String, Vec<String>>,
    /// Environment added to the runtime process.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory of the runtime process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// How long a launch may take to become ready (ACP: `initialize` answered). Default 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Stop the runtime after this long without work. Default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
}

fn default_launch_mode() -> LaunchMode {
    LaunchMode::Managed
}

// Written out because the enum comes from `string_enum!`, which cannot mark a `#[default]` variant.
#[allow(clippy::derivable_impls)]
impl Default for LaunchMode {
    fn default() -> Self {
        LaunchMode::Managed
    }
}

/// Where a target definition came from; decides what may replace it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetSource {
    /// The registry YAML file given at start.
    File,
    /// `POST /v1/agents/register` (persisted in the `agents` table).
    Registered,
    /// A peer's exported target, cached by the last sync (`owner` is the peer id).
    Peer,
    /// An Aether agent or implementation reached through the gateway (`ag::…` ids).
    Aether,
}

/// A dispatchable target (contract §2.6 RuntimeSpec).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetSpec {
    pub target_id: String,
    /// Adapter kind: which runtime implementation runs tasks for this target.
    pub adapter: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<String>,
    pub launch: LaunchSpec,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub defaults: JsonObject,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// `local`, or the id of the peer that exports the target.
    pub owner: String,
    /// Where the definition came from.
    pub source: TargetSource,
    /// How agent permission requests are answered (default `ask`: the task awaits input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<PermissionPolicy>,
    /// A peer target whose peer answers a relayed submit sent again with the task it created
    /// (`peers::resubmit_safe`: a pinned key and `idempotent_submit` in its identity document;
    /// a Go node publishes no identity), so a relay may be submitted again after a restart and
    /// its dispatch need not be durable first.
    /// Node-internal (peer sync sets it), never listed or read from a definition.
    #[serde(skip)]
    pub resubmit_safe: bool,
}

/// How a target's agent permission requests are answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionPolicy {
    /// Put the task in `awaiting_input`; `POST /v1/tasks/{id}/resume` answers.
    #[default]
    Ask,
    /// Answer with the agent's allow option.
    Allow,
    /// Answer with the agent's reject option.
    Reject,
}

impl TargetSpec {
    /// A local file target of `adapter` with nothing else set (callers fill in what they need).
    pub fn new(target_id: impl Into<String>, adapter: impl Into<String>) -> Self {
        TargetSpec {
            target_id: target_id.into(),
            adapter: adapter.into(),
            dialect: None,
            endpoint: None,
            healthcheck: None,
            launch: LaunchSpec::default(),
            defaults: JsonObject::new(),
            capabilities: Vec::new(),
            owner: "local".into(),
            source: TargetSource::File,
            permissions: None,
            resubmit_safe: false,
        }
    }

    /// Whether a task with this intent may be sent here.
    pub fn can_satisfy(&self, intent: &str) -> bool {
        self.capabilities.iter().any(|c| c == intent)
    }
}

/// A registered agent (contract §2.7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: String,
    pub display_name: String,
    pub transport_kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<String>,
    pub launch: LaunchSpec,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub defaults: JsonObject,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: JsonObject,
    /// Effective presence: `offline` once `lease_expires_at` has passed.
    pub status: Presence,
    pub registered_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub lease_expires_at: Timestamp,
}

impl AgentRecord {
    /// The agent as a dispatchable target, when it names an adapter.
    pub fn to_target(&self) -> Option<TargetSpec> {
        self.adapter.as_deref().is_some_and(|a| !a.is_empty()).then(|| self.listed_spec())
    }

    /// The agent as a target spec whether or not it names an adapter (`adapter` is `""` when it
    /// names none): what `GET /v1/targets` lists.
    pub fn listed_spec(&self) -> TargetSpec {
        TargetSpec {
            target_id: self.agent_id.clone(),
            adapter: self.adapter.clone().unwrap_or_default(),
            dialect: self.dialect.clone(),
            endpoint: self.endpoint.clone(),
            healthcheck: self.healthcheck.clone(),
            launch: self.launch.clone(),
            defaults: self.defaults.clone(),
            capabilities: self.capabilities.clone(),
            owner: "local".to_owned(),
            source: TargetSource::Registered,
            // Registrations carry the policy as a default runtime option.
            permissions: self.defaults.get("permissions").and_then(|v| serde_json::from_value(v.clone()).ok()),
            resubmit_safe: false,
        }
    }

    /// Whether the presence lease still holds at `now` (it holds through its last instant).
    pub fn lease_holds_at(&self, now: &Timestamp) -> bool {
        *now <= self.lease_expires_at
    }

    /// Recomputes `status` from the lease against `now`.
    pub fn with_effective_status(mut self, now: &Timestamp) -> Self {
        self.status = if self.lease_holds_at(now) { Presence::Online } else { Presence::Offline };
        self
    }
}

/// Artifact metadata (the bytes live inline in SQLite or in a file under the artifact dir).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactMeta {
    pub artifact_id: String,
    pub media_type: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub created_at: String,
}

/// "a string", "an array", … — for errors that say what was sent instead of an object.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Deep merge of JSON objects: `overlay` wins, nested objects merge, `null` overlay values are
/// ignored (contract §5.2: request `runtime_options` over target `defaults`).
pub fn deep_merge(base: &JsonObject, overlay: &JsonObject) -> JsonObject {
    let mut out = base.clone();
    for (key, value) in overlay {
        match (out.get_mut(key), value) {
            (_, Value::Null) => {}
            (Some(Value::Object(existing)), Value::Object(incoming)) => {
                let merged = deep_merge(existing, incoming);
                *existing = merged;
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> JsonObject {
        match v {
            Value::Object(m) => m,
            _ => JsonObject::new(),
        }
    }

    #[test]
    fn enums_round_trip_their_wire_spelling() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().ok(), Some(*s));
            assert_eq!(serde_json::to_value(s).ok(), Some(json!(s.as_str())));
        }
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>().ok(), Some(*k));
        }
        assert!("bogus".parse::<TaskStatus>().is_err());
    }

    #[test]
    fn deep_merge_request_wins_and_nulls_are_ignored() {
        let base = obj(json!({"executor": "coder", "nested": {"a": 1, "b": 2}, "keep": true}));
        let overlay = obj(json!({"executor": "research", "nested": {"b": 3}, "keep": null}));
        let merged = deep_merge(&base, &overlay);
        assert_eq!(Value::Object(merged), json!({"executor": "research", "nested": {"a": 1, "b": 3}, "keep": true}));
    }

    #[test]
    fn agent_status_follows_the_lease() {
        let agent = AgentRecord {
            agent_id: "a".into(),
            display_name: "a".into(),
            transport_kind: "local_managed".into(),
            endpoint: None,
            adapter: Some("loopback".into()),
            dialect: None,
            healthcheck: None,
            launch: LaunchSpec::default(),
            defaults: JsonObject::new(),
            capabilities: vec![],
            sticky_mode: None,
            metadata: JsonObject::new(),
            status: Presence::Online,
            registered_at: at("2026-01-01T00:00:00.000000000Z"),
            updated_at: at("2026-01-01T00:00:00.000000000Z"),
            last_seen_at: at("2026-01-01T00:00:00.000000000Z"),
            lease_expires_at: at("2026-01-01T00:05:00.000000000Z"),
        };
        let cases = [
            ("2026-01-01T00:04:00.000000000Z", Presence::Online),
            ("2026-01-01T00:05:00.000000000Z", Presence::Online),
            ("2026-01-01T00:05:00.000000001Z", Presence::Offline),
            ("2026-01-01T00:06:00.000000000Z", Presence::Offline),
        ];
        for (now, want) in cases {
            assert_eq!(agent.clone().with_effective_status(&at(now)).status, want, "{now}");
        }
        let offline = agent.with_effective_status(&at("2027-01-01T00:00:00Z"));
        let json = serde_json::to_value(&offline).unwrap_or_default();
        assert_eq!(json["status"], json!("offline"));
        assert_eq!(json["lease_expires_at"], json!("2026-01-01T00:05:00.000000000Z"));
        let back: Option<AgentRecord> = serde_json::from_value(json).ok();
        assert_eq!(back, Some(offline));
    }

    #[test]
    fn presence_spells_as_before() {
        for (presence, text) in [(Presence::Online, "online"), (Presence::Offline, "offline")] {
            assert_eq!(serde_json::to_value(presence).ok(), Some(json!(text)));
            assert_eq!(text.parse::<Presence>().ok(), Some(presence));
        }
        assert!("away".parse::<Presence>().is_err());
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A two-agent thread (contract §2.9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreadRecord {
    pub thread_id: String,
    pub agent_a_id: AgentId,
    pub agent_b_id: AgentId,
    pub status: ThreadStatus,
    pub continuity_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_actor_agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_target_agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: JsonObject,
    /// Why it is interrupted, or why its auto-handoff stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruption_reason: Option<String>,
    /// The running or last auto-handoff (plan, progress, stop reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
}

impl ThreadRecord {
    /// A new, active thread with no turns.
    pub fn new(
        thread_id: String,
        agent_a_id: AgentId,
        agent_b_id: AgentId,
        continuity_key: String,
        metadata: JsonObject,
        now: &str,
    ) -> Self {
        ThreadRecord {
            thread_id,
            agent_a_id,
            agent_b_id,
            status: ThreadStatus::Active,
            continuity_key,
            last_task_id: None,
            last_actor_agent_id: None,
            last_target_agent_id: None,
            metadata,
            interruption_reason: None,
            handoff: None,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        }
    }
}

/// One turn of a thread (contract §2.9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreadTurn {
    pub thread_id: String,
    pub turn_index: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub sender_agent_id: String,
    pub target_agent_id: String,
    /// `remote` when the turn's task is relayed to a peer; omitted for local turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_owner: Option<TargetOwner>,
    /// The peer the turn is relayed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_peer_id: Option<String>,
    /// The node that runs the relayed task (the peer's node id, from its acceptance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_node_id: Option<String>,
    /// The relayed task's id on the destination (the proxy task's `remote.binding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_thread_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_execution_id: Option<String>,
    /// Mirrors the task's status.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

/// What a relayed task's events say about where it runs: the destination's ids and the remote
/// session it uses (contract §9.6 steps 5–6), each the latest non-empty value. A thread turn
/// records them (contract §10.4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayIds {
    pub destination_node_id: Option<String>,
    pub destination_task_id: Option<String>,
    pub destination_thread_id: Option<String>,
    pub remote_session_id: Option<String>,
    pub remote_execution_id: Option<String>,
}

impl RelayIds {
    /// Reads the ids from events in append order. Only the relay's own events count (source
    /// `transport`: the acceptance and the mirrored frames, whose ids the origin wrote itself);
    /// later values win, empty ones are absent. Pure.
    pub fn of_events<'a>(events: impl IntoIterator<Item = &'a TaskEvent>) -> Self {
        let mut ids = RelayIds::default();
        for event in events.into_iter().filter(|e| e.source == EventSource::Transport) {
            let slots = [
                ("destination_node_id", &mut ids.destination_node_id),
                ("destination_task_id", &mut ids.destination_task_id),
                ("destination_thread_id", &mut ids.destination_thread_id),
                ("remote_session_id", &mut ids.remote_session_id),
                ("remote_execution_id", &mut ids.remote_execution_id),
            ];
            for (key, slot) in slots {
                if let Some(v) = event.data.get(key).and_then(Value::as_str).filter(|v| !v.is_empty()) {
                    *slot = Some(v.to_owned());
                }
            }
        }
        ids
    }
}

/// Whether a target's runtime can take work now, as `GET /v1/targets` and health report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeState {
    /// Running and ready (in-process runtimes always are).
    Up,
    /// Not running (it is launched on demand).
    Down,
    /// Being started.
    Launching,
}

impl RuntimeState {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeState::Up => "up",
            RuntimeState::Down => "down",
            RuntimeState::Launching => "launching",
        }
    }

    /// A target's state from its runtimes' (one per subcontext): up if any is up, else launching
    /// if any is launching, else down.
    pub fn of_target(in_process: bool, runtimes: impl IntoIterator<Item = RuntimeState>) -> Self {
        if in_process {
            return RuntimeState::Up;
        }
        runtimes.into_iter().fold(RuntimeState::Down, |acc, s| match (acc, s) {
            (RuntimeState::Up, _) | (_, RuntimeState::Up) => RuntimeState::Up,
            (RuntimeState::Launching, _) | (_, RuntimeState::Launching) => RuntimeState::Launching,
            _ => RuntimeState::Down,
        })
    }
}

impl fmt::Display for RuntimeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod runtime_state_tests {
    use super::RuntimeState::{self, Down, Launching, Up};

    #[test]
    fn a_target_is_as_up_as_its_best_runtime() {
        let cases: &[(bool, &[RuntimeState], RuntimeState)] = &[
            (true, &[], Up),
            (false, &[], Down),
            (false, &[Down, Launching], Launching),
            (false, &[Launching, Up, Down], Up),
            (false, &[Down, Down], Down),
        ];
        for (in_process, runtimes, want) in cases {
            assert_eq!(RuntimeState::of_target(*in_process, runtimes.iter().copied()), *want, "{runtimes:?}");
        }
    }
}

#[cfg(test)]
mod relay_ids_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn relay_ids_come_from_the_relay_events_latest_first() {
        let event = |source: EventSource, data: Value| TaskEvent {
            event_id: "e".into(),
            task_id: "p".into(),
            seq: 1,
            kind: EventKind::TaskRunning,
            state: TaskStatus::Running,
            source,
            message: None,
            data: data.as_object().cloned().unwrap_or_default(),
            created_at: "t".into(),
        };
        let ids = |node: Option<&str>,
                   task: Option<&str>,
                   thread: Option<&str>,
                   session: Option<&str>,
                   exec: Option<&str>| RelayIds {
            destination_node_id: node.map(str::to_owned),
            destination_task_id: task.map(str::to_owned),
            destination_thread_id: thread.map(str::to_owned),
            remote_session_id: session.map(str::to_owned),
            remote_execution_id: exec.map(str::to_owned),
        };
        let accepted = json!({"remote_peer_id": "b", "destination_node_id": "node-b", "destination_task_id": "d"});
        let mirrored = json!({"destination_node_id": "node-b", "destination_task_id": "d", "remote_event_seq": 4,
            "destination_thread_id": "th", "remote_session_id": "s1", "remote_execution_id": "x1"});
        let cases: Vec<(&str, Vec<TaskEvent>, RelayIds)> = vec![
            ("no events", vec![], RelayIds::default()),
            (
                "the acceptance",
                vec![event(EventSource::Transport, accepted.clone())],
                ids(Some("node-b"), Some("d"), None, None, None),
            ),
            (
                "core events do not count",
                vec![event(EventSource::Core, json!({"destination_task_id": "spoof"}))],
                RelayIds::default(),
            ),
            (
                "adapter events do not count",
                vec![event(EventSource::Adapter, json!({"remote_session_id": "local"}))],
                RelayIds::default(),
            ),
            (
                "mirrored frames add the remote session",
                vec![event(EventSource::Transport, accepted), event(EventSource::Transport, mirrored.clone())],
                ids(Some("node-b"), Some("d"), Some("th"), Some("s1"), Some("x1")),
            ),
            (
                "later values win, empty and missing ones do not erase",
                vec![
                    event(EventSource::Transport, mirrored),
                    event(EventSource::Transport, json!({"remote_session_id": "s2", "remote_execution_id": ""})),
                ],
                ids(Some("node-b"), Some("d"), Some("th"), Some("s2"), Some("x1")),
            ),
        ];
        for (name, events, want) in cases {
            assert_eq!(RelayIds::of_events(&events), want, "{name}");
        }
    }
}
