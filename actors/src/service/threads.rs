//! Thread operations (contract §10): create, get, list, turns, continue (with bounded
//! auto-handoff), and inspection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Caller, Need, ServiceError, Services, non_empty};
use crate::adapters::AdapterKind;
use crate::clock;
use crate::ids::{self, AgentId};
use crate::intake::{TaskRequest, create_task, thread_pair};
use crate::model::{
    DeliveryRequest, JsonObject, TargetOwner, TargetSpec, TaskRecord, TaskStatus, ThreadRecord, ThreadStatus,
    ThreadTurn,
};
use crate::runtime::RuntimeSupMsg;
use crate::runtime::dialect::{Dialect, StickyInput};
use crate::storage::{StorageMsg, WriteOp};
use crate::supervision::ASK_TIMEOUT;
use crate::threads::{HandoffPlan, ThreadMsg};

/// Largest page of a thread listing.
pub const MAX_THREAD_PAGE: u32 = 500;
/// Default page of a thread listing.
pub const DEFAULT_THREAD_PAGE: u32 = 50;
/// Adapters whose sessions persist across turns (the reuse prediction covers exactly these).
const SESSION_REUSING_ADAPTERS: [AdapterKind; 2] = [AdapterKind::Acp, AdapterKind::AcpHttp];

/// A new thread between two participants.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateThread {
    #[serde(default)]
    pub agent_a_id: String,
    #[serde(default)]
    pub agent_b_id: String,
    #[serde(default)]
    pub continuity_key: Option<String>,
    #[serde(default)]
    pub metadata: JsonObject,
}

/// The next turn of a thread, optionally handing back and forth (contract §2.9).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinueThread {
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub target_agent_id: Option<String>,
    #[serde(default)]
    pub intent: Option<String>,
    #[serde(default)]
    pub intent_by_agent: BTreeMap<String, String>,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub payload_by_agent: BTreeMap<String, Value>,
    #[serde(default)]
    pub runtime_options: JsonObject,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub delivery: Option<DeliveryRequest>,
    #[serde(default)]
    pub auto_continue: bool,
    #[serde(default)]
    pub max_turns: Option<u32>,
    #[serde(default)]
    pub stop_on_awaiting_input: bool,
    #[serde(default)]
    pub stop_on_same_actor_repeat: bool,
    #[serde(default)]
    pub stop_on_terminal_error: bool,
    #[serde(default)]
    pub metadata: JsonObject,
    /// Auto-continue: each next turn's `payload.text` is the previous turn's result text
    /// (default); `false` sends the configured payload every turn.
    #[serde(default)]
    pub pass_result: Option<bool>,
}

/// What inspection says about one participant: where its turns run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Participant {
    pub agent_id: String,
    pub owner: TargetOwner,
    /// The peer that runs it (remote participants).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// The node that runs it: this node, the destination node of its last relayed turn, or (no
    /// relayed turn yet) the peer id.
    pub node_id: String,
}

/// Where a participant runs (contract §10.7): the last turn *to* it that was relayed names the
/// peer and the destination node; else a cached remote target of that id makes it the caching
/// peer's (`cached_peer`, even if a local agent of that id exists, as the Go node reports);
/// else it is local to `node_id`. Pure.
pub fn participant(agent: &AgentId, turns: &[ThreadTurn], cached_peer: Option<&str>, node_id: &str) -> Participant {
    let relayed = turns
        .iter()
        .rev()
        .find(|t| *agent == t.target_agent_id.as_str() && t.target_owner == Some(TargetOwner::Remote));
    let remote = |peer_id: Option<String>, node: Option<String>| Participant {
        agent_id: agent.to_string(),
        owner: TargetOwner::Remote,
        node_id: node.or_else(|| peer_id.clone()).unwrap_or_default(),
        peer_id,
    };
    match (relayed, cached_peer) {
        (Some(turn), _) => remote(turn.remote_peer_id.clone(), turn.destination_node_id.clone()),
        (None, Some(peer)) => remote(Some(peer.to_owned()), None),
        (None, None) => Participant {
            agent_id: agent.to_string(),
            owner: TargetOwner::Local,
            peer_id: None,
            node_id: node_id.to_owned(),
        },
    }
}

/// A participant's remote continuity: the last remote ids and the persisted session bindings.
#[derive(Clone, Debug, Serialize)]
pub struct Continuity {
    pub agent_id: String,
    pub last_remote_session_id: Option<String>,
    pub last_remote_execution_id: Option<String>,
    pub session_bindings: Vec<Value>,
}

/// Who continues next and whether that turn would reuse a remote session.
#[derive(Clone, Debug, Serialize)]
pub struct NextContinue {
    pub sender_agent_id: String,
    pub target_agent_id: String,
    pub will_reuse_remote_session: bool,
}

/// A thread explained: computed from persisted state and runtime state, never by asking an agent.
#[derive(Clone, Debug, Serialize)]
pub struct ThreadInspection {
    pub thread: ThreadRecord,
    pub turns: Vec<ThreadTurn>,
    pub participants: Vec<Participant>,
    pub continuity: Vec<Continuity>,
    pub next_continue: NextContinue,
    pub interruption_reason: Option<String>,
}

/// Who speaks next when the caller does not say: the agent that last *received* a turn; a given
/// target makes the other participant the sender (contract §10.3). Pure.
pub fn derive_pair(
    thread: &ThreadRecord,
    sender: Option<&AgentId>,
    target: Option<&AgentId>,
) -> Result<(AgentId, AgentId), String> {
    let (a, b) = (&thread.agent_a_id, &thread.agent_b_id);
    let sender = match (sender, target) {
        (Some(s), _) => s.clone(),
        (None, Some(t)) if t == a => b.clone(),
        (None, Some(t)) if t == b => a.clone(),
        (None, Some(t)) => {
            return Err(format!("target '{t}' is not a participant of thread {} ({a}, {b})", thread.thread_id));
        }
        (None, None) => thread.last_target_agent_id.clone().unwrap_or_else(|| a.clone()),
    };
    let target = thread_pair(thread, &sender, target)?;
    Ok((sender, target))
}

/// Why a thread cannot simply continue: its interruption, or its last turn's failure. Pure.
pub fn interruption_reason(thread: &ThreadRecord, last_task: Option<&TaskRecord>) -> Option<String> {
    if thread.status == ThreadStatus::Interrupted {
        return thread
            .interruption_reason
            .clone()
            .or_else(|| Some("thread was interrupted before the prior turn reached a terminal state".into()));
    }
    last_task
        .filter(|t| t.status == TaskStatus::Failed)
        .and_then(|t| t.last_error.as_ref())
        .map(|e| format!("last task failed: {}", e.reason))
}

impl Services {
    /// The first peer (by peer id) whose cached targets include `target_id`.
    fn cached_peer_of(&self, target_id: &str) -> Option<String> {
        self.dir.peer_targets.borrow().iter().find(|t| t.target.target_id == target_id).map(|t| t.peer_id.clone())
    }

    async fn thread(&self, thread_id: &str) -> Result<ThreadRecord, ServiceError> {
        self.dir
            .reader
            .thread(thread_id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("thread not found: {thread_id}")))
    }

    /// Creates a thread between two known participants (targets or registered agents).
    pub async fn create_thread(&self, caller: &Caller, req: CreateThread) -> Result<ThreadRecord, ServiceError> {
        caller.require(Need::Write)?;
        let (a, b) = (req.agent_a_id.trim().to_owned(), req.agent_b_id.trim().to_owned());
        if a.is_empty() || b.is_empty() {
            return Err(ServiceError::unprocessable(
                "thread agent pair invalid: agent_a_id and agent_b_id are required",
            ));
        }
        if a == b {
            return Err(ServiceError::unprocessable(
                "thread agent pair invalid: agent_a_id and agent_b_id must differ",
            ));
        }
        for id in [&a, &b] {
            // Any local agent (adapter-less and offline ones included) or any cached remote target.
            let listed = self.dir.targets.borrow().get(id).is_some() || self.cached_peer_of(id).is_some();
            let known = listed || self.dir.reader.agent(id).await?.is_some();
            if !known {
                return Err(ServiceError::not_found(format!("target agent not found: {id}")));
            }
        }
        let continuity_key = req.continuity_key.filter(|k| !k.is_empty()).unwrap_or_else(|| format!("{a}:{b}"));
        let thread =
            ThreadRecord::new(ids::new_id(), a.into(), b.into(), continuity_key, req.metadata, &clock::now_rfc3339());
        let op = WriteOp::ThreadCreate(Box::new(thread.clone()));
        self.dir.storage.ask(ASK_TIMEOUT, |r| StorageMsg::Write(op, r)).await??;
        Ok(thread)
    }

    /// One thread.
    pub async fn get_thread(&self, caller: &Caller, thread_id: &str) -> Result<ThreadRecord, ServiceError> {
        caller.require(Need::Read)?;
        self.thread(thread_id).await
    }

    /// Threads, newest first, optionally of one agent and/or in one status.
    pub async fn list_threads(
        &self,
        caller: &Caller,
        agent: Option<&str>,
        status: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Vec<ThreadRecord>, ServiceError> {
        caller.require(Need::Read)?;
        let status = status
            .map(|s| {
                s.parse::<ThreadStatus>().map_err(|_| {
                    ServiceError::invalid(format!("status '{s}' is not a thread status; expected active, interrupted"))
                })
            })
            .transpose()?;
        let limit = match limit {
            Some(l) => l.parse::<u32>().ok().filter(|n| (1..=MAX_THREAD_PAGE).contains(n)).ok_or_else(|| {
                ServiceError::invalid(format!("limit '{l}' must be an integer from 1 to {MAX_THREAD_PAGE}"))
            })?,
            None => DEFAULT_THREAD_PAGE,
        };
        Ok(self.dir.reader.threads(agent, status, limit).await?)
    }

    /// A thread's turns by turn index.
    pub async fn thread_turns(&self, caller: &Caller, thread_id: &str) -> Result<Vec<ThreadTurn>, ServiceError> {
        caller.require(Need::Read)?;
        self.thread(thread_id).await?;
        Ok(self.dir.reader.turns(thread_id).await?)
    }

    /// Creates the thread's next turn (the first task of an auto-handoff run when asked).
    pub async fn continue_thread(
        &self,
        caller: &Caller,
        thread_id: &str,
        req: ContinueThread,
    ) -> Result<TaskRecord, ServiceError> {
        caller.require(Need::Write)?;
        let thread = self.thread(thread_id).await?;
        let (sender, target) = derive_pair(
            &thread,
            non_empty(req.sender).map(AgentId::from).as_ref(),
            non_empty(req.target_agent_id).map(AgentId::from).as_ref(),
        )
        .map_err(|m| ServiceError::unprocessable(format!("thread agent pair invalid: {m}")))?;
        let delivery = DeliveryRequest::resolve(req.delivery);
        let request = TaskRequest {
            thread_id: Some(thread_id.to_owned()),
            sender: Some(sender.to_string()),
            target_agent_id: Some(target.to_string()),
            intent: req.intent_by_agent.get(sender.as_str()).cloned().or_else(|| req.intent.clone()),
            payload: req.payload_by_agent.get(sender.as_str()).cloned().unwrap_or_else(|| req.payload.clone()),
            runtime_options: req.runtime_options.clone(),
            conversation_id: req.conversation_id,
            delivery: delivery.clone(),
            metadata: req.metadata.clone(),
            idempotency: None,
            priority: Default::default(),
            ..Default::default()
        };
        let task = create_task(&self.dir.intake, request).await?;
        let max_turns = req.max_turns.unwrap_or(1).max(1);
        if req.auto_continue && max_turns > 1 {
            let plan = HandoffPlan {
                max_turns,
                turns_done: 1,
                stop_on_awaiting_input: req.stop_on_awaiting_input,
                stop_on_terminal_error: req.stop_on_terminal_error,
                stop_on_same_actor_repeat: req.stop_on_same_actor_repeat,
                intent: req.intent,
                intent_by_agent: req.intent_by_agent,
                payload: req.payload,
                payload_by_agent: req.payload_by_agent,
                runtime_options: req.runtime_options,
                delivery,
                metadata: req.metadata,
                last_task_id: task.task_id.clone().into(),
                last_sender: sender,
                last_target: target,
                active: true,
                stopped_reason: None,
                pass_result: req.pass_result.unwrap_or(true),
            };
            // Recorded before the answer, so a read right after the 202 shows the plan (the
            // coordinator records its progress from here on).
            let handoff = serde_json::to_value(&plan).map_err(|e| {
                ServiceError::hidden(super::ErrorKind::Internal, "could not record the hand-off plan", e.to_string())
            })?;
            let op = WriteOp::ThreadHandoff { thread_id: thread_id.to_owned(), handoff };
            self.dir.storage.ask(ASK_TIMEOUT, |r| StorageMsg::Write(op, r)).await??;
            self.dir.threads.cast(ThreadMsg::StartHandoff { thread_id: thread_id.to_owned(), plan: Box::new(plan) })?;
        }
        Ok(task)
    }

    /// Explains a thread: turns, participants, per-agent continuity, who continues next and
    /// whether that turn would reuse a remote session.
    pub async fn inspect_thread(&self, caller: &Caller, thread_id: &str) -> Result<ThreadInspection, ServiceError> {
        caller.require(Need::Read)?;
        let thread = self.thread(thread_id).await?;
        let turns = self.dir.reader.turns(thread_id).await?;
        let sticky = Dialect::Acp.sticky_key(
            &JsonObject::new(),
            &StickyInput { thread_id: Some(thread_id), conversation_id: None, task_id: "" },
        );
        let mut continuity = Vec::new();
        let mut participants = Vec::new();
        for agent in [&thread.agent_a_id, &thread.agent_b_id] {
            // Turns keep their agent ids as stored text.
            let last = turns.iter().rev().find(|t| *agent == t.target_agent_id.as_str());
            continuity.push(Continuity {
                agent_id: agent.to_string(),
                last_remote_session_id: last.and_then(|t| t.remote_session_id.clone()),
                last_remote_execution_id: last.and_then(|t| t.remote_execution_id.clone()),
                session_bindings: self.dir.reader.session_bindings_for(agent.as_str(), &sticky).await?,
            });
            let cached_peer = self.cached_peer_of(agent.as_str());
            participants.push(participant(agent, &turns, cached_peer.as_deref(), self.node_id()));
        }
        let (next_sender, next_target) = derive_pair(&thread, None, None).unwrap_or_default();
        // A remote participant's session lives on its peer: nothing here can predict its reuse.
        let next_is_remote =
            participants.iter().any(|p| next_target == p.agent_id.as_str() && p.owner == TargetOwner::Remote);
        let target = self.dir.targets.borrow().get(next_target.as_str()).cloned().filter(|_| !next_is_remote);
        let reuses_sessions = |t: &TargetSpec| t.adapter.parse().is_ok_and(|k| SESSION_REUSING_ADAPTERS.contains(&k));
        let will_reuse = match target.filter(reuses_sessions) {
            Some(t) => {
                let options = t.defaults.clone();
                let bindings = self.dir.reader.session_bindings_for(&t.target_id, &sticky).await?;
                let (up, live, loadable) = self
                    .dir
                    .runtimes
                    .ask(ASK_TIMEOUT, |reply| RuntimeSupMsg::SessionProbe {
                        target: Box::new(t),
                        options,
                        sticky: sticky.clone(),
                        reply,
                    })
                    .await?;
                up && (live || (loadable && !bindings.is_empty()))
            }
            None => false,
        };
        let last_task = match &thread.last_task_id {
            Some(t) => self.dir.reader.task(t).await?.map(|s| s.task),
            None => None,
        };
        let interruption_reason = interruption_reason(&thread, last_task.as_ref());
        Ok(ThreadInspection {
            thread,
            turns,
            participants,
            continuity,
            next_continue: NextContinue {
                sender_agent_id: next_sender.into_string(),
                target_agent_id: next_target.into_string(),
                will_reuse_remote_session: will_reuse,
            },
            interruption_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LastError;

    fn thread(last_target: Option<&str>) -> ThreadRecord {
        let mut t = ThreadRecord::new("t".into(), "a".into(), "b".into(), "a:b".into(), JsonObject::new(), "");
        t.last_target_agent_id = last_target.map(AgentId::from);
        t
    }

    #[test]
    fn the_agent_that_last_received_speaks_next() {
        let pair = |last_target: Option<&str>, sender: Option<&str>, target: Option<&str>| {
            let (sender, target) = (sender.map(AgentId::from), target.map(AgentId::from));
            derive_pair(&thread(last_target), sender.as_ref(), target.as_ref())
                .map(|(s, t)| (s.into_string(), t.into_string()))
        };
        assert_eq!(pair(None, None, None), Ok(("a".into(), "b".into())));
        assert_eq!(pair(Some("b"), None, None), Ok(("b".into(), "a".into())));
        assert_eq!(pair(Some("a"), None, None), Ok(("a".into(), "b".into())));
        assert_eq!(pair(None, None, Some("a")), Ok(("b".into(), "a".into())));
        assert_eq!(pair(None, Some("b"), None), Ok(("b".into(), "a".into())));
        assert!(pair(None, Some("c"), None).is_err());
        assert!(pair(None, None, Some("c")).is_err());
        assert!(pair(None, Some("a"), Some("a")).is_err());
    }

    fn turn(target: &str, owner: Option<TargetOwner>, peer: Option<&str>, node: Option<&str>) -> ThreadTurn {
        ThreadTurn {
            thread_id: "t".into(),
            turn_index: 1,
            task_id: None,
            sender_agent_id: "x".into(),
            target_agent_id: target.into(),
            target_owner: owner,
            remote_peer_id: peer.map(str::to_owned),
            destination_node_id: node.map(str::to_owned),
            destination_task_id: None,
            destination_thread_id: None,
            remote_session_id: None,
            remote_execution_id: None,
            status: "completed".into(),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn a_participant_is_remote_after_a_relayed_turn_or_when_a_peer_caches_it() {
        const REMOTE: Option<TargetOwner> = Some(TargetOwner::Remote);
        let local = |agent: &str| (TargetOwner::Local, None, "node-a".to_owned(), agent.to_owned());
        let remote = |agent: &str, peer: &str, node: &str| {
            (TargetOwner::Remote, Some(peer.to_owned()), node.to_owned(), agent.to_owned())
        };
        type Case<'a> = (&'a str, Vec<ThreadTurn>, Option<&'a str>, (TargetOwner, Option<String>, String, String));
        let cases: Vec<Case<'_>> = vec![
            ("no turns, not cached: local to this node", vec![], None, local("b")),
            ("a local turn to it", vec![turn("b", None, None, None)], None, local("b")),
            ("cached by a peer: the peer id is the node id", vec![], Some("p"), remote("b", "p", "p")),
            (
                "a relayed turn names the destination node",
                vec![turn("b", REMOTE, Some("p"), Some("node-b"))],
                None,
                remote("b", "p", "node-b"),
            ),
            (
                "the relayed turn wins over the cache",
                vec![turn("b", REMOTE, Some("p"), Some("node-b"))],
                Some("q"),
                remote("b", "p", "node-b"),
            ),
            (
                "the last relayed turn counts",
                vec![
                    turn("b", REMOTE, Some("p"), Some("node-b")),
                    turn("b", None, None, None),
                    turn("b", REMOTE, Some("q"), Some("node-c")),
                ],
                None,
                remote("b", "q", "node-c"),
            ),
            (
                "a relay not yet accepted: the peer id stands for the node",
                vec![turn("b", REMOTE, Some("p"), None)],
                None,
                remote("b", "p", "p"),
            ),
            (
                "turns to the other agent do not count",
                vec![turn("a", REMOTE, Some("p"), Some("node-b"))],
                None,
                local("b"),
            ),
        ];
        for (name, turns, cached, want) in cases {
            let got = participant(&AgentId::from("b"), &turns, cached, "node-a");
            assert_eq!((got.owner, got.peer_id, got.node_id, got.agent_id), want, "{name}");
        }
        let json = |p: &Participant| serde_json::to_value(p).ok();
        assert_eq!(
            json(&participant(&AgentId::from("b"), &[], None, "node-a")),
            Some(serde_json::json!({"agent_id": "b", "owner": "local", "node_id": "node-a"})),
            "peer_id is omitted for a local participant"
        );
        assert_eq!(
            json(&participant(&AgentId::from("b"), &[], Some("p"), "node-a")),
            Some(serde_json::json!({"agent_id": "b", "owner": "remote", "peer_id": "p", "node_id": "p"}))
        );
    }

    #[test]
    fn interruption_is_explained_from_the_thread_or_its_last_failure() {
        let mut t = thread(None);
        assert_eq!(interruption_reason(&t, None), None);
        let failed = TaskRecord {
            task_id: "x".into(),
            thread_id: None,
            conversation_id: "c".into(),
            sender: "a".into(),
            intent: "i".into(),
            requested_agent_id: None,
            resolved_agent_id: None,
            runtime_options: JsonObject::new(),
            payload_artifact_id: None,
            status: TaskStatus::Failed,
            remote: None,
            last_error: Some(LastError { reason: "timeout".into(), detail: None }),
            result_artifact_id: None,
            delivery: Default::default(),
            metadata: JsonObject::new(),
            priority: Default::default(),
            attempts: Default::default(),
            created_at: String::new(),
            updated_at: String::new(),
        };
        assert_eq!(interruption_reason(&t, Some(&failed)).as_deref(), Some("last task failed: timeout"));
        t.status = ThreadStatus::Interrupted;
        assert!(interruption_reason(&t, Some(&failed)).is_some_and(|r| r.starts_with("thread was interrupted")));
        t.interruption_reason = Some("restart".into());
        assert_eq!(interruption_reason(&t, None).as_deref(), Some("restart"));
    }
}
