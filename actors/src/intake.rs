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
use crate::model::{DeliveryPolicy, JsonObject, TaskRecord, TaskStatus, ThreadRecord, deep_merge};
use crate::model::{TargetSource, TargetSpec};
use crate::peers::{PeerLookup, PeerTable};
use crate::registry::{RouteError, TargetTable};
use crate::storage::{NewTurn, StoreReader};
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
    let runtime_options = deep_merge(&target.defaults, &req.runtime_options);
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
        created_at: now.clone(),
        updated_at: now,
    };
    let new = NewTask { record, payload, target, new_turn };
    let actor: ActorRef<TaskMsg> =
        intake.tasks.ask(INTAKE_ASK, |reply| TaskSupMsg::Spawn(Box::new(new), reply)).await??;
    Ok(ask(&actor, "task", INTAKE_ASK, TaskMsg::Create).await??)
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
                    outcome: Ok(Export { node_id: None, public_key: None, targets }),
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
