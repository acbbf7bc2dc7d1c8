//! Target operations: the routing table with each target's live runtime state, and runtime
//! control (health, start, stop, launch history).

use serde::Serialize;

use super::{Caller, Need, ServiceError, Services};
use crate::adapters::AdapterKind;
use crate::model::{JsonObject, PeerStatus, RuntimeState, TargetSpec, deep_merge};
use crate::registry::TargetEntry;
use crate::runtime::{RuntimeSupMsg, TargetHealth, Waiter};
use crate::storage::reader::{LaunchRow, TargetPause};
use crate::storage::{StorageMsg, WriteOp};
use crate::supervision::ASK_TIMEOUT;

/// How long a start may take (a launch has its own, shorter, timeout).
const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// How long a stop may take (SIGTERM, grace, SIGKILL of the process group).
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A target as listed: its definition, its state, and its live runtimes (one per subcontext).
#[derive(Clone, Debug, Serialize)]
pub struct TargetView {
    #[serde(flatten)]
    pub spec: TargetSpec,
    pub state: TargetState,
    pub runtimes: Vec<TargetHealth>,
    /// A peer's target: the peer, its base URL and liveness (omitted for local targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_status: Option<PeerStatus>,
    /// An operator paused dispatching to it: its tasks are accepted and wait.
    pub dispatch_paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch_paused_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch_paused_by: Option<String>,
}

impl TargetView {
    fn local(spec: TargetSpec, state: TargetState, runtimes: Vec<TargetHealth>) -> Self {
        TargetView {
            spec,
            state,
            runtimes,
            peer_id: None,
            peer_base_url: None,
            peer_status: None,
            dispatch_paused: false,
            dispatch_paused_at: None,
            dispatch_paused_by: None,
        }
    }

    /// Marks the view paused as `pause` says.
    fn with_pause(mut self, pause: Option<&TargetPause>) -> Self {
        if let Some(p) = pause {
            self.dispatch_paused = true;
            self.dispatch_paused_at = Some(p.paused_at.clone());
            self.dispatch_paused_by = Some(p.paused_by.clone());
            for r in &mut self.runtimes {
                r.dispatch_paused = true;
                r.dispatch_paused_at = Some(p.paused_at.clone());
            }
        }
        self
    }
}

/// The answer to a pause or resume.
#[derive(Clone, Debug, Serialize)]
pub struct TargetDispatch {
    pub target_agent_id: String,
    pub dispatch_paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch_paused_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch_paused_by: Option<String>,
}

/// A listed target's state: its runtime's, or that it takes no tasks at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    Up,
    Down,
    Launching,
    /// Listed but never routed to (e.g. registered without an adapter): no runtime to report.
    NotDispatchable,
}

impl From<RuntimeState> for TargetState {
    fn from(s: RuntimeState) -> Self {
        match s {
            RuntimeState::Up => TargetState::Up,
            RuntimeState::Down => TargetState::Down,
            RuntimeState::Launching => TargetState::Launching,
        }
    }
}

/// A started runtime.
#[derive(Clone, Debug, Serialize)]
pub struct TargetStarted {
    pub target_agent_id: String,
    pub healthy: bool,
    pub lease_id: Option<String>,
    pub process_id: Option<u32>,
    /// The options as the caller sent them (not merged over the target's defaults).
    pub runtime_options: JsonObject,
}

/// A stopped runtime.
#[derive(Clone, Debug, Serialize)]
pub struct TargetStopped {
    pub target_agent_id: String,
    pub healthy: bool,
    pub runtime_options: JsonObject,
}

impl Services {
    fn target(&self, target_id: &str) -> Result<TargetSpec, ServiceError> {
        self.dir
            .targets
            .borrow()
            .get(target_id)
            .cloned()
            .ok_or_else(|| ServiceError::not_found(format!("target agent not found: {target_id}")))
    }

    /// Syncs every peer (a failing one is recorded on its record, never an error here), then
    /// lists the targets.
    pub async fn refresh_targets(&self, caller: &Caller) -> Result<Vec<TargetView>, ServiceError> {
        self.sync_peers(caller).await?;
        self.list_targets(caller).await
    }

    /// Every target by id: dispatchable ones with their live runtime state, listed-only ones
    /// (e.g. registered without an adapter) as `not_dispatchable`; then the cached targets of
    /// peers by target id then peer id (`owner` = the peer id; state `up` while the peer was
    /// online at its last sync, else `down`).
    pub async fn list_targets(&self, caller: &Caller) -> Result<Vec<TargetView>, ServiceError> {
        caller.require(Need::Read)?;
        let table = self.dir.targets.borrow().clone();
        let peers = self.dir.peer_targets.borrow().clone();
        let live = self.dir.runtimes.ask(ASK_TIMEOUT, RuntimeSupMsg::States).await?;
        let pauses: std::collections::HashMap<String, TargetPause> =
            self.dir.reader.target_pauses().await?.into_iter().map(|p| (p.target_id.clone(), p)).collect();
        let peer_views = peers.iter().map(|p| {
            let view = TargetView {
                spec: p.spec(),
                state: if p.status == PeerStatus::Online { TargetState::Up } else { TargetState::Down },
                peer_id: Some(p.peer_id.clone()),
                peer_base_url: Some(p.base_url.clone()),
                peer_status: Some(p.status),
                ..TargetView::local(p.spec(), TargetState::Down, Vec::new())
            };
            let id = view.spec.target_id.clone();
            view.with_pause(pauses.get(&id))
        });
        Ok(table
            .entries()
            .map(|entry| match entry {
                TargetEntry::Dispatchable(t) => {
                    let runtimes: Vec<TargetHealth> =
                        live.iter().filter(|h| h.target_id == t.target_id).cloned().collect();
                    let in_process = t.adapter.parse::<AdapterKind>() == Ok(AdapterKind::Loopback);
                    let state = RuntimeState::of_target(in_process, runtimes.iter().map(|h| h.state));
                    TargetView::local(t.clone(), state.into(), runtimes).with_pause(pauses.get(&t.target_id))
                }
                TargetEntry::Listed(t, _) => TargetView::local(t.clone(), TargetState::NotDispatchable, Vec::new())
                    .with_pause(pauses.get(&t.target_id)),
            })
            .chain(peer_views)
            .chain(self.aether_target_views().await)
            .collect())
    }

    /// The connected Aether agents as targets of adapter `aether`: each agent
    /// (`ag::{ws}::{impl}::{spec}`) and each implementation with an agent online (`ag::{ws}::{impl}`,
    /// its pool), all `up` (a disconnected agent is not listed; tasks for it still wait for it).
    async fn aether_target_views(&self) -> Vec<TargetView> {
        use crate::aether::tasks::{AetherTarget, target_spec};
        let sessions = self.dir.presence.ask(ASK_TIMEOUT, crate::aether::presence::PresenceMsg::List).await;
        let mut ids = std::collections::BTreeSet::new();
        for c in sessions.unwrap_or_default() {
            if c.kind != crate::aether::identity::PrincipalKind::Agent {
                continue;
            }
            if let Some(AetherTarget::Agent { workspace, implementation, .. }) = AetherTarget::parse(&c.identity) {
                ids.insert(AetherTarget::Pool { workspace, implementation }.id());
                ids.insert(c.identity);
            }
        }
        ids.iter()
            .filter(|id| self.dir.targets.borrow().get(id).is_none())
            .filter_map(|id| AetherTarget::parse(id))
            .map(|t| TargetView::local(target_spec(&t), TargetState::Up, Vec::new()))
            .collect()
    }

    /// The runtime's view of a target, for the subcontext of its defaults.
    pub async fn target_health(&self, caller: &Caller, target_id: &str) -> Result<TargetHealth, ServiceError> {
        caller.require(Need::Read)?;
        let target = self.target(target_id)?;
        let options = target.defaults.clone();
        let mut health = self
            .dir
            .runtimes
            .ask(ASK_TIMEOUT, |reply| RuntimeSupMsg::Health { target: Box::new(target), options, reply })
            .await??;
        if let Some(p) = self.target_pause(target_id).await? {
            health.dispatch_paused = true;
            health.dispatch_paused_at = Some(p.paused_at);
        }
        Ok(health)
    }

    async fn target_pause(&self, target_id: &str) -> Result<Option<TargetPause>, ServiceError> {
        Ok(self.dir.reader.target_pauses().await?.into_iter().find(|p| p.target_id == target_id))
    }

    /// Pauses (`pause`) or resumes dispatching to a target: while paused its tasks are accepted
    /// and wait for their runtime (running ones finish); the pause is durable (it outlives a
    /// restart) and shown in the target listing and health. Pausing a paused target (or
    /// resuming an active one) changes nothing.
    pub async fn pause_target(
        &self,
        caller: &Caller,
        target_id: &str,
        pause: bool,
    ) -> Result<TargetDispatch, ServiceError> {
        caller.require(Need::Operate)?;
        let known = self.dir.targets.borrow().get(target_id).is_some()
            || !matches!(self.dir.peer_targets.borrow().lookup(target_id), crate::peers::PeerLookup::None);
        // Resuming a target that is gone still clears its pause.
        if !known && pause {
            return Err(ServiceError::not_found(format!("target agent not found: {target_id}")));
        }
        let record = pause.then(|| (crate::clock::now_rfc3339(), caller.idempotency_scope()));
        let op = WriteOp::TargetPause { target_id: target_id.to_owned(), pause: record };
        self.dir.storage.ask(ASK_TIMEOUT, |reply| StorageMsg::Write(op, reply)).await??;
        // What is stored wins (a target already paused keeps its first pause).
        let stored = self.target_pause(target_id).await?;
        let (id, now) = (target_id.to_owned(), stored.clone());
        self.dir
            .runtimes
            .ask(ASK_TIMEOUT, |reply| RuntimeSupMsg::SetPaused { target_id: id, pause: now, reply })
            .await?;
        Ok(TargetDispatch {
            target_agent_id: target_id.to_owned(),
            dispatch_paused: stored.is_some(),
            dispatch_paused_at: stored.as_ref().map(|p| p.paused_at.clone()),
            dispatch_paused_by: stored.map(|p| p.paused_by),
        })
    }

    /// Starts a target's runtime (for `runtime_options` merged over its defaults); answers once
    /// it is ready. While a crash loop pauses its launches this is a conflict naming
    /// `paused_until`, unless `force` clears the pause.
    pub async fn start_target(
        &self,
        caller: &Caller,
        target_id: &str,
        runtime_options: JsonObject,
        force: bool,
    ) -> Result<TargetStarted, ServiceError> {
        caller.require(Need::Operate)?;
        let target = self.target(target_id)?;
        let options = deep_merge(&target.defaults, &runtime_options);
        if !force {
            let health = self
                .dir
                .runtimes
                .ask(ASK_TIMEOUT, |reply| RuntimeSupMsg::Health {
                    target: Box::new(target.clone()),
                    options: options.clone(),
                    reply,
                })
                .await??;
            if let Some(until) = health.paused_until {
                let mut e = ServiceError::conflict(format!(
                    "launches of {target_id} are paused after a crash loop until {until}; start with force to launch now"
                ));
                e.fields.insert("paused_until".into(), until.into());
                return Err(e);
            }
        }
        let waiter = Waiter { task: None, launch_if_down: true, force };
        let handle = self
            .dir
            .runtimes
            .ask(START_TIMEOUT, |reply| RuntimeSupMsg::Acquire { target: Box::new(target), options, waiter, reply })
            .await??;
        Ok(TargetStarted {
            target_agent_id: target_id.to_owned(),
            healthy: true,
            lease_id: handle.lease_id,
            process_id: handle.process_id,
            runtime_options,
        })
    }

    /// Stops a target's runtime; answers once its process group is gone (nothing to do if down).
    pub async fn stop_target(
        &self,
        caller: &Caller,
        target_id: &str,
        runtime_options: JsonObject,
    ) -> Result<TargetStopped, ServiceError> {
        caller.require(Need::Operate)?;
        let target = self.target(target_id)?;
        let options = deep_merge(&target.defaults, &runtime_options);
        self.dir
            .runtimes
            .ask(STOP_TIMEOUT, |reply| RuntimeSupMsg::Stop { target: Box::new(target), options, reply })
            .await??;
        Ok(TargetStopped { target_agent_id: target_id.to_owned(), healthy: false, runtime_options })
    }

    /// A target's launch history, newest first.
    pub async fn target_launches(&self, caller: &Caller, target_id: &str) -> Result<Vec<LaunchRow>, ServiceError> {
        caller.require(Need::Read)?;
        self.target(target_id)?;
        Ok(self.dir.reader.launches(target_id).await?)
    }
}
