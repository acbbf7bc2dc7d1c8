//! Task intake: turns a validated request into a durable task with a live actor. Used by
//! `POST /v1/tasks`, `POST /v1/threads/{id}/continue` and the thread coordinator's auto-handoff,
//! so every task — whoever asks for it — is routed, checked and recorded the same way.

use std::sync::Arc;

use ractor::ActorRef;
use std::time::Duration;
use tokio::sync::watch;

use serde_json::{Value, json};

use crate::clock;
use crate::error::AskError;
use crate::ids::{self, AgentId};
use crate::model::{
    Attempts, Deadlines, DeliveryPolicy, JsonObject, RetryPolicy, RetryPolicyRequest, TaskRecord, TaskStatus,
    ThreadRecord, deep_merge,
};
use crate::model::{TargetSource, TargetSpec};
use crate::peers::{PeerLookup, PeerTable};
use crate::registry::{RouteError, TargetTable};
use crate::storage::{IdempotencyClaim, NewTurn, StoreReader};
use crate::supervision::{Slot, ask};
use crate::task::{NewTask, TaskError, TaskMsg};
use crate::task_supervisor::TaskSupMsg;

/// Budget for the spawn and creation requests.
const INTAKE_ASK: Duration = Duration::from_secs(10);

/// What task creation needs: threads to check a turn's pair, the routing snapshot, and the task
/// supervisor that spawns the task's actor. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    /// Thread lookups for thread-bound tasks.
    pub reader: StoreReader,
    /// Latest routing snapshot (no actor hop to route).
    pub targets: watch::Receiver<Arc<TargetTable>>,
    /// Latest cached peer targets (routing falls back to them).
    pub peers: watch::Receiver<Arc<PeerTable>>,
    /// Spawns the task's actor.
    pub tasks: Arc<Slot<TaskSupMsg>>,
}

/// A task request after the edge parsed it.
#[derive(Clone, Debug, Default)]
pub struct TaskRequest {
    pub thread_id: Option<String>,
    pub sender: Option<String>,
    pub target_agent_id: Option<String>,
    pub intent: Option<String>,
    pub payload: Value,
    pub runtime_options: JsonObject,
    pub conversation_id: Option<String>,
    pub delivery: DeliveryPolicy,
    pub metadata: JsonObject,
    /// The caller's idempotency key, if it sent one: a replay answers with the task it created.
    pub idempotency: Option<IdempotencyKey>,
    /// Dispatch order on a busy runtime scope.
    pub priority: crate::model::Priority,
    /// How failed attempts are retried (over the target's `defaults.retry_policy`, field by
    /// field); `None` and no target default: never.
    pub retry_policy: Option<RetryPolicyRequest>,
    /// Bounds on each attempt (over the target's `defaults.deadlines`, field by field).
    pub deadlines: Option<Deadlines>,
}

/// An idempotency key as a caller sent it, in the caller's scope (keys of different callers
/// never meet: a principal, or a relaying origin node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
}

/// How long a key keeps answering with its task; after it, the key creates a new one.
pub const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A task creation's outcome: the task, and whether it was created earlier under the same
/// idempotency key (nothing new was created).
#[derive(Clone, Debug)]
pub struct Creation {
    pub record: TaskRecord,
    pub replayed: bool,
}

/// Checks a key: 1–255 visible ASCII characters (it travels in a header). Pure.
pub fn check_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters (no spaces), got {} bytes",
            key.len()
        ));
    }
    Ok(())
}

/// SHA-256 (hex) of what a request asks for, every field but the key itself: the same key with
/// another request is a client mistake, not a replay. Pure.
pub fn request_hash(req: &TaskRequest) -> String {
    use sha2::Digest;
    // serde_json's maps are ordered by key, so the text is canonical.
    let mut canonical = json!({
        "thread_id": req.thread_id,
        "sender": req.sender,
        "target_agent_id": req.target_agent_id,
        "intent": req.intent,
        "payload": req.payload,
        "runtime_options": req.runtime_options,
        "conversation_id": req.conversation_id,
        "delivery": req.delivery,
        "metadata": req.metadata,
    });
    // Only a non-default priority is part of it, so keys stored before priorities keep their hash.
    if req.priority != crate::model::Priority::Normal {
        canonical["priority"] = json!(req.priority);
    }
    if let Some(policy) = &req.retry_policy {
        canonical["retry_policy"] = json!(policy);
    }
    if let Some(deadlines) = &req.deadlines {
        canonical["deadlines"] = json!(deadlines);
    }
    let digest = sha2::Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a stored holder of a key means for a new request under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyVerdict {
    /// The same request: answer with its task.
    Replay(String),
    /// Another request under the key: a client mistake.
    Mismatch,
    /// Past the retention window: the key is free again.
    Expired,
}

/// The verdict of a stored holder for a request with `hash` (claims older than `reclaim_before`
/// have expired). Pure.
pub fn holder_verdict(holder: &crate::storage::IdempotencyHolder, hash: &str, reclaim_before: &str) -> KeyVerdict {
    if holder.created_at.as_str() < reclaim_before {
        KeyVerdict::Expired
    } else if holder.request_hash == hash {
        KeyVerdict::Replay(holder.task_id.clone())
    } else {
        KeyVerdict::Mismatch
    }
}

/// Why a task was not created; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// 400.
    #[error("{0}")]
    Invalid(String),
    /// 404 / 409 / 422 by kind.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// 404.
    #[error("thread not found: {0}")]
    ThreadNotFound(String),
    /// 422.
    #[error("thread agent pair invalid: {0}")]
    Participants(String),
    /// 422: the key was used with another request.
    #[error("idempotency key '{0}' was already used with a different request")]
    IdempotencyMismatch(String),
    /// 503.
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Ask(#[from] AskError),
    #[error(transparent)]
    Storage(#[from] crate::error::StorageError),
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Checks a thread-bound task's pair: sender ∈ {A, B}; target omitted → the other participant;
/// target ∈ {A, B} and ≠ sender. Pure.
pub fn thread_pair(thread: &ThreadRecord, sender: &AgentId, target: Option<&AgentId>) -> Result<AgentId, String> {
    let (a, b) = (&thread.agent_a_id, &thread.agent_b_id);
    if sender != a && sender != b {
        return Err(format!("sender '{sender}' is not a participant of thread {} ({a}, {b})", thread.thread_id));
    }
    let other = if sender == a { b } else { a };
    match target {
        None => Ok(other.clone()),
        Some(t) if t == sender => Err(format!("target '{t}' is the sender; a turn goes to the other participant")),
        Some(t) if t != a && t != b => {
            Err(format!("target '{t}' is not a participant of thread {} ({a}, {b})", thread.thread_id))
        }
        Some(t) => Ok(t.clone()),
    }
}

/// Routes a task over local and peer targets: a dispatchable local target of the requested id
/// wins; else exactly one peer exporting it is the route (its intent is the destination's to
/// check, contract §9.6), several are a conflict naming them; else local routing decides (and
/// its error is the answer). Pure.
pub fn route(
    local: &TargetTable,
    peers: &PeerTable,
    requested: Option<&str>,
    intent: &str,
) -> Result<TargetSpec, RouteError> {
    if let Some(id) = requested.filter(|id| local.get(id).is_none()) {
        // An Aether agent or pool (the gateway's workers): the service checked it is known.
        if let Some(target) = crate::aether::tasks::AetherTarget::parse(id) {
            return Ok(crate::aether::tasks::target_spec(&target));
        }
        match peers.lookup(id) {
            PeerLookup::One(peer_target) => return Ok(peer_target.spec()),
            PeerLookup::Several(peers) => return Err(RouteError::PeerConflict { target: id.to_owned(), peers }),
            PeerLookup::None => {}
        }
    }
    local.route(requested, intent).cloned()
}

/// The peer a task routed to `target` is relayed to: its owner when it is a peer's cached
/// target; `None` for a local one. Pure.
pub fn relayed_to(target: &TargetSpec) -> Option<&str> {
    (target.source == TargetSource::Peer).then_some(target.owner.as_str())
}

/// Creates a task: validates, routes, records (with its thread turn), spawns its actor, and
/// returns the record once `task.created` and `task.routed` are durable.
pub async fn create_task(intake: &Intake, req: TaskRequest) -> Result<TaskRecord, IntakeError> {
    Ok(create_task_once(intake, req).await?.record)
}

/// [`create_task`] honouring the request's idempotency key: a key already held (within the
/// retention window) by the same request answers with its task, by another request is a
/// mismatch; a new key is claimed in the creation's own transaction, so of concurrent identical
/// requests exactly one creates the task and the others answer with it.
pub async fn create_task_once(intake: &Intake, req: TaskRequest) -> Result<Creation, IntakeError> {
    let Some(key) = req.idempotency.clone() else { return create_new(intake, req, None).await };
    check_idempotency_key(&key.key).map_err(IntakeError::Invalid)?;
    let hash = request_hash(&req);
    let retention = time::Duration::seconds(IDEMPOTENCY_RETENTION.as_secs() as i64);
    let reclaim_before = clock::Timestamp::at(time::OffsetDateTime::now_utc() - retention).to_string();
    // No read first: the claim is written with the task, and only a refused claim (the key is
    // held) looks the holder up. A new key costs one row in the creation's transaction.
    let claim = IdempotencyClaim {
        scope: key.scope.clone(),
        key: key.key.clone(),
        request_hash: hash.clone(),
        reclaim_before: reclaim_before.clone(),
    };
    match create_new(intake, req, Some(claim)).await {
        Ok(created) => Ok(created),
        // Another request claimed the key meanwhile: answer as it did.
        Err(e) => replay(intake, &key, &hash, &reclaim_before).await?.ok_or(e),
    }
}

/// The task a live claim of `key` created, if the claim is for the same request.
async fn replay(
    intake: &Intake,
    key: &IdempotencyKey,
    hash: &str,
    reclaim_before: &str,
) -> Result<Option<Creation>, IntakeError> {
    let Some(holder) = intake.reader.idempotency_holder(&key.scope, &key.key).await? else { return Ok(None) };
    match holder_verdict(&holder, hash, reclaim_before) {
        KeyVerdict::Expired => Ok(None),
        KeyVerdict::Mismatch => Err(IntakeError::IdempotencyMismatch(key.key.clone())),
        KeyVerdict::Replay(task_id) => {
            let stored = intake.reader.task(&task_id).await?.ok_or_else(|| {
                crate::error::StorageError::Corrupt(format!(
                    "idempotency key '{}' names missing task {task_id}",
                    key.key
                ))
            })?;
            Ok(Some(Creation { record: stored.task, replayed: true }))
        }
    }
}

/// The retry policy and deadlines of a new task: the request's fields over the target's
/// `defaults.retry_policy` / `defaults.deadlines`, checked; the error names what is wrong. Pure.
pub fn attempt_rules(
    defaults: &JsonObject,
    policy: Option<RetryPolicyRequest>,
    deadlines: Option<Deadlines>,
) -> Result<(Option<RetryPolicy>, Deadlines), String> {
    fn layered<T: serde::Serialize + serde::de::DeserializeOwned>(
        defaults: &JsonObject,
        key: &str,
        request: Option<&T>,
    ) -> Result<Option<T>, String> {
        let base = match defaults.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => Some(o.clone()),
            Some(_) => return Err(format!("the target's defaults.{key} must be an object")),
        };
        let over = request.map(|r| match serde_json::to_value(r) {
            Ok(Value::Object(o)) => o,
            _ => JsonObject::new(),
        });
        let merged = match (base, over) {
            (None, None) => return Ok(None),
            (Some(b), None) => b,
            (None, Some(o)) => o,
            (Some(b), Some(o)) => deep_merge(&b, &o),
        };
        serde_json::from_value(Value::Object(merged)).map(Some).map_err(|e| format!("the target's defaults.{key}: {e}"))
    }
    let policy = layered(defaults, "retry_policy", policy.as_ref())?.map(RetryPolicyRequest::resolve).transpose()?;
    let deadlines = layered(defaults, "deadlines", deadlines.as_ref())?.unwrap_or_default();
    deadlines.check()?;
    Ok((policy, deadlines))
}

/// Creates a new task, claiming `claim` with it.
async fn create_new(
    intake: &Intake,
    req: TaskRequest,
    claim: Option<IdempotencyClaim>,
) -> Result<Creation, IntakeError> {
    let intent = non_empty(req.intent).ok_or_else(|| IntakeError::Invalid("intent is required".into()))?;
    let payload = match req.payload {
        Value::Null => json!({}),
        v @ Value::Object(_) => v,
        other => {
            return Err(IntakeError::Invalid(format!(
                "payload must be a JSON object, got {}",
                crate::model::json_type(&other)
            )));
        }
    };
    if req.delivery.timeout_ms == Some(0) {
        return Err(IntakeError::Invalid("delivery.timeout_ms must be greater than 0".into()));
    }
    let sender = non_empty(req.sender).unwrap_or_else(|| "local".to_owned());
    let mut requested = non_empty(req.target_agent_id);
    let thread_id = non_empty(req.thread_id);
    let mut new_turn = None;
    if let Some(tid) = &thread_id {
        let thread = intake.reader.thread(tid).await?.ok_or_else(|| IntakeError::ThreadNotFound(tid.clone()))?;
        let requested_id = requested.as_deref().map(AgentId::from);
        let target = thread_pair(&thread, &AgentId::from(sender.as_str()), requested_id.as_ref())
            .map_err(IntakeError::Participants)?
            .into_string();
        new_turn =
            Some(NewTurn { sender_agent_id: sender.clone(), target_agent_id: target.clone(), remote_peer_id: None });
        requested = Some(target);
    }
    let target = {
        let (local, peers) = (intake.targets.borrow(), intake.peers.borrow());
        route(&local, &peers, requested.as_deref(), &intent)?
    };
    if let Some(turn) = new_turn.as_mut() {
        // A turn to a peer's cached target is relayed: it runs on that peer (contract §9.6 step 4).
        turn.remote_peer_id = relayed_to(&target).map(str::to_owned);
    }
    let mut runtime_options = deep_merge(&target.defaults, &req.runtime_options);
    // Target defaults of the node's own, not options for the agent.
    runtime_options.remove("retry_policy");
    runtime_options.remove("deadlines");
    let (retry_policy, deadlines) =
        attempt_rules(&target.defaults, req.retry_policy, req.deadlines).map_err(IntakeError::Invalid)?;
    let now = clock::now_rfc3339();
    let conversation_id = non_empty(req.conversation_id).or_else(|| thread_id.clone()).unwrap_or_else(ids::new_id);
    let record = TaskRecord {
        task_id: ids::new_id(),
        thread_id,
        conversation_id,
        sender,
        intent,
        requested_agent_id: requested,
        resolved_agent_id: Some(target.target_id.clone()),
        runtime_options,
        payload_artifact_id: None,
        status: TaskStatus::Created,
        remote: None,
        last_error: None,
        result_artifact_id: None,
        delivery: req.delivery,
        metadata: req.metadata,
        priority: req.priority,
        attempts: Attempts::first(retry_policy, deadlines, &now),
        created_at: now.clone(),
        updated_at: now,
    };
    let (target_id, adapter) = (target.target_id.clone(), target.adapter.clone());
    let new = NewTask { record, payload, target, new_turn, claim };
    let actor: ActorRef<TaskMsg> =
        intake.tasks.ask(INTAKE_ASK, |reply| TaskSupMsg::Spawn(Box::new(new), reply)).await??;
    let record = ask(&actor, "task", INTAKE_ASK, TaskMsg::Create).await??;
    metrics::counter!(crate::telemetry::TASKS_CREATED, "target" => target_id, "adapter" => adapter).increment(1);
    Ok(Creation { record, replayed: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread() -> ThreadRecord {
        ThreadRecord::new("t".into(), "a".into(), "b".into(), "a:b".into(), JsonObject::new(), "")
    }

    #[test]
    fn local_targets_win_over_peer_targets_and_peers_may_conflict() {
        use crate::peers::{Export, ExportedTarget, Fetched, PeerBook, PeerUpsert};
        let mut book = PeerBook::default();
        for (peer, ids) in [("b", &["echo", "both", "only-b"][..]), ("c", &["both"][..])] {
            let url = format!("http://{peer}");
            let req = PeerUpsert { peer_id: peer.into(), base_url: url.clone(), ..Default::default() };
            book.upsert(req, "t").ok();
            let targets = ids
                .iter()
                .map(|id| ExportedTarget { target_id: (*id).into(), capabilities: vec![], defaults: JsonObject::new() })
                .collect();
            book.apply(
                Fetched {
                    peer_id: peer.into(),
                    base_url: url,
                    outcome: Ok(Export { node_id: None, public_key: None, idempotent_submit: false, targets }),
                },
                "t",
            );
        }
        let peers = book.table();
        let mut echo = crate::model::TargetSpec {
            capabilities: vec!["demo.echo".into()],
            ..crate::model::TargetSpec::new("echo", "loopback")
        };
        let local = TargetTable::new([echo.clone()]);
        echo.owner = "b".into();
        type Case<'a> = (Option<&'a str>, &'a str, Result<(&'a str, &'a str, Option<&'a str>), &'a str>);
        let cases: [Case<'_>; 5] = [
            (Some("echo"), "demo.echo", Ok(("echo", "local", None))),
            (Some("only-b"), "anything", Ok(("only-b", "b", Some("b")))),
            (Some("both"), "x", Err("routing conflict: target 'both' is exported by several peers: b, c")),
            (Some("nope"), "x", Err("target agent not found: nope")),
            (None, "demo.echo", Ok(("echo", "local", None))),
        ];
        for (target, intent, want) in cases {
            let got = route(&local, &peers, target, intent);
            let got = got
                .as_ref()
                .map(|t| (t.target_id.as_str(), t.owner.as_str(), relayed_to(t)))
                .map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "{target:?}");
        }
    }

    #[test]
    fn idempotency_keys_hashes_and_holders() {
        let long = "k".repeat(256);
        let cases: [(&str, bool); 5] = [("order-1", true), ("", false), ("a b", false), ("é", false), (&long, false)];
        for (key, ok) in cases {
            assert_eq!(check_idempotency_key(key).is_ok(), ok, "{key:?}");
        }
        let req = |text: &str| TaskRequest {
            intent: Some("i".into()),
            payload: json!({ "text": text }),
            ..Default::default()
        };
        assert_eq!(request_hash(&req("a")), request_hash(&req("a")));
        assert_ne!(request_hash(&req("a")), request_hash(&req("b")));
        // The key is not part of what the request asks for.
        let mut keyed = req("a");
        keyed.idempotency = Some(IdempotencyKey { scope: "s".into(), key: "k".into() });
        assert_eq!(request_hash(&keyed), request_hash(&req("a")));
        let holder = crate::storage::IdempotencyHolder {
            task_id: "t1".into(),
            request_hash: "h".into(),
            created_at: "2026-01-02T00:00:00.000000000Z".into(),
        };
        let cases: [(&str, &str, KeyVerdict); 3] = [
            ("h", "2026-01-01T00:00:00.000000000Z", KeyVerdict::Replay("t1".into())),
            ("other", "2026-01-01T00:00:00.000000000Z", KeyVerdict::Mismatch),
            ("h", "2026-01-03T00:00:00.000000000Z", KeyVerdict::Expired),
        ];
        for (hash, reclaim_before, want) in cases {
            assert_eq!(holder_verdict(&holder, hash, reclaim_before), want, "{hash} {reclaim_before}");
        }
    }

    #[test]
    fn participant_rules() {
        let t = thread();
        let pair = |sender: &str, target: Option<&str>| {
            thread_pair(&t, &AgentId::from(sender), target.map(AgentId::from).as_ref())
        };
        assert_eq!(pair("a", None), Ok("b".into()));
        assert_eq!(pair("b", None), Ok("a".into()));
        assert_eq!(pair("a", Some("b")), Ok("b".into()));
        assert!(pair("local", None).is_err());
        assert!(pair("a", Some("a")).is_err());
        assert!(pair("a", Some("c")).is_err());
    }
}
