//! The registry actor: owns discovery. It merges the targets of the registry file with agents
//! registered over HTTP (persisted), validates registrations, and publishes an immutable
//! [`TargetTable`] snapshot on a watch channel so request handlers route without an actor hop.
//!
//! The table lists every target; only some are dispatchable ([`TargetEntry`]): an agent
//! registered without an adapter is listed (and may take part in threads) but takes no tasks.
//! A registration naming an adapter kind this node does not run is accepted with a
//! [`RegistrationWarning`] (a peer may run it; tasks sent to it here fail `adapter missing`);
//! the registry file refuses it.

use std::collections::BTreeMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;

use crate::adapters::{AdapterCatalog, AdapterError};
use crate::clock::Timestamp;
use crate::error::StorageError;
use crate::model::{AgentRecord, JsonObject, LaunchSpec, Presence, TargetSpec};
use crate::storage::{StorageMsg, StoreReader, WriteOp};
use crate::supervision::{ASK_TIMEOUT, Slot};

/// Default agent presence lease (contract §2.8).
pub const DEFAULT_LEASE_TTL_SECONDS: i64 = 300;

/// Why a task could not be routed (contract §6.2 step 4).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("target agent not found: {0}")]
    TargetNotFound(String),
    #[error("target agent cannot satisfy intent: {target} does not list capability '{intent}'")]
    CannotSatisfy { target: String, intent: String },
    #[error("route not found: no target lists capability '{0}'")]
    NoRoute(String),
    #[error("routing conflict: several targets list capability '{intent}': {}", candidates.join(", "))]
    Conflict { intent: String, candidates: Vec<String> },
    /// No local target has this id and several peers export it (names them all).
    #[error("routing conflict: target '{target}' is exported by several peers: {}", peers.join(", "))]
    PeerConflict { target: String, peers: Vec<String> },
    /// Listed, but nothing here runs its tasks (404, like an unknown target: contract §6.2).
    #[error("target agent not found: {target} is listed but not dispatchable ({reason})")]
    NotDispatchable { target: String, reason: NotDispatchable },
}

/// Why a listed target takes no tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotDispatchable {
    /// Registered without an adapter: nothing runs its tasks (contract §5.2).
    NoAdapter,
}

impl std::fmt::Display for NotDispatchable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotDispatchable::NoAdapter => "registered without an adapter",
        })
    }
}

/// A target as the table holds it: tasks may be sent to it, or it is only listed.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetEntry {
    Dispatchable(TargetSpec),
    /// Shown by `GET /v1/targets` (the spec's `adapter` is `""` for [`NotDispatchable::NoAdapter`]),
    /// never routed to.
    Listed(TargetSpec, NotDispatchable),
}

impl TargetEntry {
    /// A registered agent's entry: dispatchable when it names an adapter.
    pub fn of_agent(agent: &AgentRecord) -> Self {
        match agent.to_target() {
            Some(spec) => TargetEntry::Dispatchable(spec),
            None => TargetEntry::Listed(agent.listed_spec(), NotDispatchable::NoAdapter),
        }
    }

    /// The definition, dispatchable or not.
    pub fn spec(&self) -> &TargetSpec {
        match self {
            TargetEntry::Dispatchable(spec) | TargetEntry::Listed(spec, _) => spec,
        }
    }

    /// The definition, if tasks may be sent to it.
    pub fn dispatchable(&self) -> Option<&TargetSpec> {
        match self {
            TargetEntry::Dispatchable(spec) => Some(spec),
            TargetEntry::Listed(..) => None,
        }
    }
}

/// Every target, by id (a snapshot; never mutated once published).
#[derive(Clone, Debug, Default)]
pub struct TargetTable {
    entries: BTreeMap<String, TargetEntry>,
}

impl TargetTable {
    /// A table of dispatchable targets.
    pub fn new(targets: impl IntoIterator<Item = TargetSpec>) -> Self {
        Self::of_entries(targets.into_iter().map(TargetEntry::Dispatchable))
    }

    /// A table of these entries (a later entry with the same id wins).
    pub fn of_entries(entries: impl IntoIterator<Item = TargetEntry>) -> Self {
        TargetTable { entries: entries.into_iter().map(|e| (e.spec().target_id.clone(), e)).collect() }
    }

    /// One dispatchable target.
    pub fn get(&self, id: &str) -> Option<&TargetSpec> {
        self.entries.get(id).and_then(TargetEntry::dispatchable)
    }

    /// All dispatchable targets, by id.
    pub fn iter(&self) -> impl Iterator<Item = &TargetSpec> {
        self.entries.values().filter_map(TargetEntry::dispatchable)
    }

    /// Every target, dispatchable or only listed, by id.
    pub fn entries(&self) -> impl Iterator<Item = &TargetEntry> {
        self.entries.values()
    }

    /// Routes a task: explicit target (404 unknown or not dispatchable / 422 capability missing),
    /// else the unique dispatchable target whose capabilities contain the intent (404 none / 409
    /// several).
    pub fn route(&self, target: Option<&str>, intent: &str) -> Result<&TargetSpec, RouteError> {
        if let Some(id) = target {
            let spec = match self.entries.get(id) {
                None => return Err(RouteError::TargetNotFound(id.to_owned())),
                Some(TargetEntry::Listed(_, reason)) => {
                    return Err(RouteError::NotDispatchable { target: id.to_owned(), reason: *reason });
                }
                Some(TargetEntry::Dispatchable(spec)) => spec,
            };
            return if spec.can_satisfy(intent) {
                Ok(spec)
            } else {
                Err(RouteError::CannotSatisfy { target: id.to_owned(), intent: intent.to_owned() })
            };
        }
        let mut matches = self.iter().filter(|t| t.can_satisfy(intent));
        match (matches.next(), matches.next()) {
            (None, _) => Err(RouteError::NoRoute(intent.to_owned())),
            (Some(one), None) => Ok(one),
            (Some(a), Some(b)) => {
                let mut candidates = vec![a.target_id.clone(), b.target_id.clone()];
                candidates.extend(matches.map(|t| t.target_id.clone()));
                Err(RouteError::Conflict { intent: intent.to_owned(), candidates })
            }
        }
    }
}

/// Something a registration was accepted despite; shown beside the agent and logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrationWarning {
    /// Its adapter is a kind this node does not run (a peer may): tasks sent to it here fail
    /// with `adapter missing`.
    AdapterNotRun { adapter: String, known: String },
}

impl std::fmt::Display for RegistrationWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistrationWarning::AdapterNotRun { adapter, known } => write!(
                f,
                "adapter '{adapter}' is not run by this node (it runs {known}); tasks sent to this agent here fail with 'adapter missing'"
            ),
        }
    }
}

impl serde::Serialize for RegistrationWarning {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An accepted registration: the stored agent and what it was accepted despite.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Registered {
    pub agent: AgentRecord,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<RegistrationWarning>,
}

/// How a well-formed adapter kind this build does not run is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NotRunAdapter {
    /// The registry file: a config error.
    Refuse,
    /// A registration: accepted with a warning.
    Warn,
}

/// One step of a field path inside a target: a key, or an index into a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldStep {
    Key(String),
    Index(usize),
}

/// Why a target definition is refused: the field at fault, as a path inside the target
/// (`adapter`, `launch.command`, `capabilities[2]`; empty for the target itself: its id, or a
/// fault no single field explains), and what is wrong. Displays as the message alone, which
/// names the field too (registrations answer with it as is; the registry file adds its line).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    pub field: Vec<FieldStep>,
    pub message: String,
}

impl TargetError {
    fn new(field: &[&str], message: impl Into<String>) -> Self {
        TargetError { field: field.iter().map(|k| FieldStep::Key((*k).to_owned())).collect(), message: message.into() }
    }

    /// A message of an adapter kind's check, which starts with the field it names
    /// (`launch.command is required…`, `endpoint '…' is not a URL…`, `defaults.headers.x must
    /// be…`) or speaks of the target's dialect; anything else is laid on the target itself.
    fn of_kind_check(message: String) -> Self {
        const FIELDS: [&str; 6] = ["adapter", "launch", "endpoint", "healthcheck", "dialect", "defaults"];
        let token = message.split([' ', ':']).next().unwrap_or_default();
        let mut steps = token.splitn(3, '.');
        let field = match steps.next() {
            Some(root) if FIELDS.contains(&root) => std::iter::once(root)
                .chain(steps)
                .filter(|k| !k.is_empty())
                .map(|k| FieldStep::Key(k.to_owned()))
                .collect(),
            _ if message.contains(" dialect ") => vec![FieldStep::Key("dialect".to_owned())],
            _ => Vec::new(),
        };
        TargetError { field, message }
    }

    /// The field path, dotted (`launch.command`, `capabilities[2]`); empty for the target itself.
    pub fn field_path(&self) -> String {
        let mut path = String::new();
        for step in &self.field {
            match step {
                FieldStep::Key(k) if path.is_empty() => path.push_str(k),
                FieldStep::Key(k) => {
                    path.push('.');
                    path.push_str(k);
                }
                FieldStep::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        path
    }
}

/// Checks a target of the registry file against the adapter kinds this build runs; the error
/// names the field at fault.
pub fn validate_target(spec: &TargetSpec, adapters: &AdapterCatalog) -> Result<(), TargetError> {
    check_target(spec, adapters, NotRunAdapter::Refuse).map(drop)
}

/// Checks a registered agent's target: like the file, except that a well-formed adapter kind
/// this build does not run is a warning, not an error.
pub fn validate_registered_target(
    spec: &TargetSpec,
    adapters: &AdapterCatalog,
) -> Result<Vec<RegistrationWarning>, TargetError> {
    check_target(spec, adapters, NotRunAdapter::Warn)
}

fn check_target(
    spec: &TargetSpec,
    adapters: &AdapterCatalog,
    not_run: NotRunAdapter,
) -> Result<Vec<RegistrationWarning>, TargetError> {
    if spec.target_id.trim().is_empty() {
        return Err(TargetError::new(&[], "target id must not be empty"));
    }
    if !crate::ids::is_valid_id(&spec.target_id) {
        return Err(TargetError::new(
            &[],
            format!("target id '{}' may only contain letters, digits, '-', '_', '.', ':'", spec.target_id),
        ));
    }
    let not_run = match adapters.kind(&spec.adapter) {
        Ok(_) => None,
        Err(AdapterError::NotRun { adapter, known }) if not_run == NotRunAdapter::Warn => {
            Some(RegistrationWarning::AdapterNotRun { adapter, known })
        }
        Err(e) => return Err(TargetError::new(&["adapter"], e.to_string())),
    };
    if let Some(i) = spec.capabilities.iter().position(|c| c.trim().is_empty()) {
        return Err(TargetError {
            field: vec![FieldStep::Key("capabilities".to_owned()), FieldStep::Index(i)],
            message: "capabilities must not contain empty strings".to_owned(),
        });
    }
    match not_run {
        // What the kind itself needs (a command to start, an endpoint to reach) is the runtime's call.
        None => adapters.validate(spec).map(|()| Vec::new()).map_err(TargetError::of_kind_check),
        // Another node's kind: what it needs is that node's call.
        Some(warning) => Ok(vec![warning]),
    }
}

/// A registration as the API received it (contract §2.8, plus `replace`).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub transport_kind: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub adapter: Option<String>,
    #[serde(default)]
    pub dialect: Option<String>,
    #[serde(default)]
    pub healthcheck: Option<String>,
    #[serde(default)]
    pub launch: LaunchSpec,
    #[serde(default)]
    pub defaults: JsonObject,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub sticky_mode: Option<String>,
    #[serde(default)]
    pub metadata: JsonObject,
    #[serde(default)]
    pub lease_ttl_seconds: Option<i64>,
    /// Allow this registration to take over a target defined in the registry file.
    #[serde(default)]
    pub replace: bool,
}

impl Registration {
    /// Whether the target it describes makes this node spawn a process: a launch command (or
    /// named alternatives), an environment or a working directory.
    pub fn spawns_process(&self) -> bool {
        let l = &self.launch;
        !l.command.is_empty() || !l.commands.is_empty() || !l.env.is_empty() || l.cwd.is_some()
    }
}

/// Why a registration was refused.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request is wrong; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// It would silently shadow a target of the registry file.
    #[error("target '{0}' is defined in the registry file; send \"replace\": true to override it")]
    Conflict(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("storage: {0}")]
    Ask(#[from] crate::error::AskError),
    /// No such registered agent.
    #[error("agent not found: {0}")]
    NotFound(String),
}

/// Messages of the registry actor.
pub enum RegistryMsg {
    /// Validate, persist and publish a registration.
    Register(Box<Registration>, RpcReplyPort<Result<Registered, RegistryError>>),
    /// Renew an agent's presence lease (`ttl` seconds, default 300).
    Heartbeat { agent_id: String, ttl: Option<i64>, reply: RpcReplyPort<Result<AgentRecord, RegistryError>> },
    /// Mark an agent offline now (it stays a target: presence never blocks on-demand launch).
    Unregister { agent_id: String, reply: RpcReplyPort<Result<AgentRecord, RegistryError>> },
    /// Periodic presence check (logs lease lapses and returns).
    PresenceTick,
}

/// Arguments of the registry actor.
pub struct RegistryArgs {
    /// Targets of the registry file (already validated).
    pub file_targets: Vec<TargetSpec>,
    /// To load registered agents at start.
    pub reader: StoreReader,
    /// To persist registrations.
    pub storage: Arc<Slot<StorageMsg>>,
    /// Where the snapshot is published.
    pub publish: watch::Sender<Arc<TargetTable>>,
    /// The adapter kinds this build runs, to validate registrations (given by the root: the
    /// registry does not know the runtimes).
    pub adapters: AdapterCatalog,
}

/// State of the registry actor.
pub struct RegistryState {
    /// File targets by id: they come back if a registration that replaced them goes away.
    file_targets: BTreeMap<String, TargetSpec>,
    /// Every registered agent's entry, by id: a dispatchable one wins over the file target of
    /// its id (it was registered with `replace`); a listed-only one never hides a file target.
    registered: BTreeMap<String, TargetEntry>,
    /// Registered agents (presence, `registered_at` on re-registration).
    agents: BTreeMap<String, AgentRecord>,
    /// Presence last reported per agent, to log only transitions.
    online: BTreeMap<String, bool>,
    /// Persist through the storage actor.
    storage: Arc<Slot<StorageMsg>>,
    /// Publish snapshots here.
    publish: watch::Sender<Arc<TargetTable>>,
    /// Validates registrations.
    adapters: AdapterCatalog,
}

impl RegistryState {
    fn republish(&self) {
        let mut merged: BTreeMap<String, TargetEntry> =
            self.file_targets.iter().map(|(id, t)| (id.clone(), TargetEntry::Dispatchable(t.clone()))).collect();
        for (id, entry) in &self.registered {
            match entry {
                TargetEntry::Dispatchable(_) => {
                    merged.insert(id.clone(), entry.clone());
                }
                TargetEntry::Listed(..) => {
                    merged.entry(id.clone()).or_insert_with(|| entry.clone());
                }
            }
        }
        self.publish.send_replace(Arc::new(TargetTable::of_entries(merged.into_values())));
    }
}

/// Builds the agent record for a registration, validating it. Pure.
pub fn build_agent(
    reg: Registration,
    existing: Option<&AgentRecord>,
    now: &Timestamp,
    adapters: &AdapterCatalog,
) -> Result<Registered, RegistryError> {
    let invalid = |m: String| Err(RegistryError::Invalid(m));
    if reg.display_name.trim().is_empty() {
        return invalid("display_name is required".into());
    }
    if reg.transport_kind.trim().is_empty() {
        return invalid("transport_kind is required".into());
    }
    let agent_id = match reg.agent_id.filter(|s| !s.is_empty()) {
        Some(id) if !crate::ids::is_valid_id(&id) => {
            return invalid(format!("agent_id '{id}' may only contain letters, digits, '-', '_', '.', ':'"));
        }
        Some(id) => id,
        None => crate::ids::new_id(),
    };
    let ttl = match reg.lease_ttl_seconds {
        None => DEFAULT_LEASE_TTL_SECONDS,
        Some(t) if t <= 0 => DEFAULT_LEASE_TTL_SECONDS,
        Some(t) if t > 31_536_000 => return invalid(format!("lease_ttl_seconds {t} is more than a year")),
        Some(t) => t,
    };
    let record = AgentRecord {
        agent_id,
        display_name: reg.display_name,
        transport_kind: reg.transport_kind,
        endpoint: reg.endpoint.filter(|s| !s.is_empty()),
        adapter: reg.adapter.filter(|s| !s.is_empty()),
        dialect: reg.dialect.filter(|s| !s.is_empty()),
        healthcheck: reg.healthcheck.filter(|s| !s.is_empty()),
        launch: reg.launch,
        defaults: reg.defaults,
        capabilities: reg.capabilities.into_iter().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect(),
        sticky_mode: reg.sticky_mode.filter(|s| !s.is_empty()),
        metadata: reg.metadata,
        status: Presence::Online,
        registered_at: existing.map_or_else(|| now.clone(), |e| e.registered_at.clone()),
        updated_at: now.clone(),
        last_seen_at: now.clone(),
        lease_expires_at: Timestamp::after(ttl),
    };
    let warnings = match record.to_target() {
        Some(target) => {
            validate_registered_target(&target, adapters).map_err(|e| RegistryError::Invalid(e.to_string()))?
        }
        None => Vec::new(),
    };
    Ok(Registered { agent: record, warnings })
}

/// The registry actor.
pub struct RegistryActor;

impl Actor for RegistryActor {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = RegistryArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<RegistryMsg>,
        args: RegistryArgs,
    ) -> Result<RegistryState, ActorProcessingErr> {
        let agents = args.reader.agents().await?;
        let now = Timestamp::now();
        let state = RegistryState {
            file_targets: args.file_targets.into_iter().map(|t| (t.target_id.clone(), t)).collect(),
            registered: agents.iter().map(|a| (a.agent_id.clone(), TargetEntry::of_agent(a))).collect(),
            online: agents.iter().map(|a| (a.agent_id.clone(), a.lease_holds_at(&now))).collect(),
            agents: agents.into_iter().map(|a| (a.agent_id.clone(), a)).collect(),
            storage: args.storage,
            publish: args.publish,
            adapters: args.adapters,
        };
        state.republish();
        tracing::info!(
            actor_kind = "registry",
            file_targets = state.file_targets.len(),
            registered = state.registered.len(),
            "registry loaded"
        );
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<RegistryMsg>,
        _state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        myself.send_interval(PRESENCE_CHECK, || RegistryMsg::PresenceTick);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<RegistryMsg>,
        msg: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Heartbeat { agent_id, ttl, reply } => {
                let result = touch(state, &agent_id, LeaseChange::Renew(ttl)).await;
                let _ = reply.send(result);
            }
            RegistryMsg::Unregister { agent_id, reply } => {
                let result = touch(state, &agent_id, LeaseChange::End).await;
                if result.is_ok() {
                    tracing::info!(actor_kind = "registry", agent_id = %agent_id, "agent unregistered (offline; still launchable)");
                }
                let _ = reply.send(result);
            }
            RegistryMsg::PresenceTick => {
                let now = Timestamp::now();
                for (id, agent) in &state.agents {
                    let online = agent.lease_holds_at(&now);
                    let was = state.online.insert(id.clone(), online);
                    if was == Some(true) && !online {
                        tracing::warn!(actor_kind = "registry", event = "agent.offline", agent_id = %id, lease_expires_at = %agent.lease_expires_at, "agent.offline: presence lease lapsed");
                    } else if was == Some(false) && online {
                        tracing::info!(actor_kind = "registry", event = "agent.online", agent_id = %id, "agent.online: presence lease renewed");
                    }
                }
            }
            RegistryMsg::Register(reg, reply) => {
                let result = register(state, *reg).await;
                if let Ok(Registered { agent, warnings }) = &result {
                    tracing::info!(actor_kind = "registry", agent_id = %agent.agent_id, adapter = agent.adapter.as_deref().unwrap_or(""), "agent registered");
                    for warning in warnings {
                        tracing::warn!(actor_kind = "registry", agent_id = %agent.agent_id, adapter = agent.adapter.as_deref().unwrap_or(""), "registration accepted with a warning: {warning}");
                    }
                }
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

/// How often presence is checked (lease lapses are logged within this delay).
const PRESENCE_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// What a presence call does to an agent's lease.
enum LeaseChange {
    /// Heartbeat: extend it by `ttl` seconds (default 300) from now.
    Renew(Option<i64>),
    /// Unregister: end it now.
    End,
}

async fn touch(state: &mut RegistryState, agent_id: &str, change: LeaseChange) -> Result<AgentRecord, RegistryError> {
    let mut agent = state.agents.get(agent_id).cloned().ok_or_else(|| RegistryError::NotFound(agent_id.to_owned()))?;
    let now = Timestamp::now();
    agent.updated_at = now.clone();
    match change {
        LeaseChange::Renew(ttl) => {
            let ttl = ttl.filter(|t| *t > 0).unwrap_or(DEFAULT_LEASE_TTL_SECONDS).min(31_536_000);
            agent.last_seen_at = now;
            agent.lease_expires_at = Timestamp::after(ttl);
            agent.status = Presence::Online;
        }
        LeaseChange::End => {
            agent.lease_expires_at = now;
            agent.status = Presence::Offline;
        }
    }
    let op = WriteOp::Agent(Box::new(agent.clone()));
    state.storage.ask(ASK_TIMEOUT, |reply| StorageMsg::Write(op, reply)).await??;
    state.agents.insert(agent_id.to_owned(), agent.clone());
    Ok(agent.with_effective_status(&Timestamp::now()))
}

async fn register(state: &mut RegistryState, reg: Registration) -> Result<Registered, RegistryError> {
    let replace = reg.replace;
    let requested = reg.agent_id.clone().unwrap_or_default();
    if !replace && state.file_targets.contains_key(&requested) {
        return Err(RegistryError::Conflict(requested));
    }
    let existing = state.agents.get(&requested).cloned();
    let registered = build_agent(reg, existing.as_ref(), &Timestamp::now(), &state.adapters)?;
    let record = &registered.agent;
    let op = WriteOp::Agent(Box::new(record.clone()));
    state.storage.ask(ASK_TIMEOUT, |reply| StorageMsg::Write(op, reply)).await??;
    state.registered.insert(record.agent_id.clone(), TargetEntry::of_agent(record));
    state.agents.insert(record.agent_id.clone(), record.clone());
    state.republish();
    Ok(registered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, caps: &[&str]) -> TargetSpec {
        TargetSpec { capabilities: caps.iter().map(|c| c.to_string()).collect(), ..TargetSpec::new(id, "loopback") }
    }

    #[test]
    fn routing_rules() {
        let table = TargetTable::new([target("a", &["x", "y"]), target("b", &["y"]), target("c", &["z"])]);
        assert_eq!(table.route(Some("a"), "x").map(|t| t.target_id.as_str()), Ok("a"));
        assert_eq!(table.route(Some("nope"), "x").err(), Some(RouteError::TargetNotFound("nope".into())));
        assert!(matches!(table.route(Some("c"), "x"), Err(RouteError::CannotSatisfy { .. })));
        assert_eq!(table.route(None, "z").map(|t| t.target_id.as_str()), Ok("c"));
        assert_eq!(table.route(None, "q").err(), Some(RouteError::NoRoute("q".into())));
        assert_eq!(
            table.route(None, "y").err(),
            Some(RouteError::Conflict { intent: "y".into(), candidates: vec!["a".into(), "b".into()] })
        );
    }

    #[test]
    fn listed_targets_are_never_routed_to() {
        let listed = |id: &str, caps: &[&str]| {
            TargetEntry::Listed(TargetSpec { adapter: String::new(), ..target(id, caps) }, NotDispatchable::NoAdapter)
        };
        let table =
            TargetTable::of_entries([TargetEntry::Dispatchable(target("a", &["x"])), listed("n", &["x", "only.n"])]);
        assert_eq!(table.route(None, "x").map(|t| t.target_id.as_str()), Ok("a"), "no conflict with a listed one");
        assert_eq!(table.route(None, "only.n").err(), Some(RouteError::NoRoute("only.n".into())));
        assert_eq!(
            table.route(Some("n"), "x").err(),
            Some(RouteError::NotDispatchable { target: "n".into(), reason: NotDispatchable::NoAdapter })
        );
        assert!(table.get("n").is_none());
        assert_eq!(table.iter().map(|t| t.target_id.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(table.entries().map(|e| e.spec().target_id.as_str()).collect::<Vec<_>>(), ["a", "n"]);
    }

    #[test]
    fn the_file_refuses_what_a_registration_is_warned_about() {
        let adapters = crate::runtime::adapter_catalog();
        let spec = TargetSpec { adapter: "a2a_future".into(), ..target("t", &["x"]) };
        assert!(
            matches!(validate_target(&spec, &adapters), Err(e) if e.message.contains("adapter 'a2a_future' is not known") && e.field_path() == "adapter")
        );
        assert!(matches!(validate_registered_target(&spec, &adapters), Ok(w) if w.len() == 1));
        let malformed = TargetSpec { adapter: "warp-drive".into(), ..target("t", &["x"]) };
        assert!(validate_registered_target(&malformed, &adapters).is_err());
        let empty_cap = TargetSpec { capabilities: vec![" ".into()], ..spec };
        assert!(validate_registered_target(&empty_cap, &adapters).is_err());
    }

    #[test]
    fn target_errors_name_the_field_at_fault() {
        let adapters = crate::runtime::adapter_catalog();
        let http = |f: fn(&mut TargetSpec)| {
            let mut spec = TargetSpec { endpoint: Some("http://127.0.0.1:9/".into()), ..target("h", &["x"]) };
            spec.adapter = "acp_http".into();
            f(&mut spec);
            spec
        };
        let acp = |f: fn(&mut TargetSpec)| {
            let mut spec = TargetSpec {
                launch: LaunchSpec { command: vec!["agent".into()], ..Default::default() },
                ..target("a", &["x"])
            };
            spec.adapter = "acp".into();
            f(&mut spec);
            spec
        };
        let cases: Vec<(TargetSpec, &str, &str)> = vec![
            (TargetSpec { target_id: " ".into(), ..target("t", &[]) }, "", "must not be empty"),
            (target("bad id", &[]), "", "target id 'bad id' may only contain"),
            (TargetSpec { adapter: "warp-drive".into(), ..target("t", &[]) }, "adapter", "not an adapter kind name"),
            (TargetSpec { adapter: "a2a_future".into(), ..target("t", &[]) }, "adapter", "is not known"),
            (target("t", &["x", " "]), "capabilities[1]", "must not contain empty strings"),
            (acp(|s| s.launch.command.clear()), "launch.command", "launch.command is required"),
            (acp(|s| s.dialect = Some("klingon".into())), "dialect", "klingon"),
            (http(|s| s.endpoint = None), "endpoint", "endpoint is required"),
            (http(|s| s.endpoint = Some("not a url".into())), "endpoint", "is not a URL"),
            (http(|s| s.endpoint = Some("ftp://h/".into())), "endpoint", "http:// or https://"),
            (http(|s| s.healthcheck = Some("nope".into())), "healthcheck", "is not a URL"),
            (http(|s| s.dialect = Some("klingon".into())), "dialect", "klingon"),
            (
                http(|s| {
                    s.defaults.insert("headers".into(), serde_json::json!({"x-token": 3}));
                }),
                "defaults.headers.x-token",
                "must be a string",
            ),
        ];
        for (spec, field, needle) in cases {
            let got = validate_target(&spec, &adapters);
            assert!(
                matches!(&got, Err(e) if e.field_path() == field && e.to_string().contains(needle)),
                "{spec:?}: want {field} / {needle}, got {got:?}"
            );
        }
        for spec in [acp(|_| ()), http(|_| ()), target("t", &["x"])] {
            assert_eq!(validate_target(&spec, &adapters), Ok(()), "{spec:?}");
        }
    }

    #[test]
    fn registration_validation_names_the_field() {
        let now = Timestamp::now();
        let adapters = crate::runtime::adapter_catalog();
        let base =
            Registration { display_name: "d".into(), transport_kind: "local_managed".into(), ..Default::default() };
        assert!(
            matches!(build_agent(Registration { display_name: "".into(), ..base.clone() }, None, &now, &adapters), Err(RegistryError::Invalid(m)) if m.contains("display_name"))
        );
        assert!(
            matches!(build_agent(Registration { transport_kind: "".into(), ..base.clone() }, None, &now, &adapters), Err(RegistryError::Invalid(m)) if m.contains("transport_kind"))
        );
        assert!(
            matches!(build_agent(Registration { adapter: Some("warp-drive".into()), ..base.clone() }, None, &now, &adapters), Err(RegistryError::Invalid(m)) if m.contains("adapter 'warp-drive' is not an adapter kind name"))
        );
        // A kind this node does not run: accepted, with a warning naming it.
        let Ok(Registered { agent, warnings }) =
            build_agent(Registration { adapter: Some("a2a_future".into()), ..base.clone() }, None, &now, &adapters)
        else {
            panic!("a kind another node may run was refused")
        };
        assert_eq!(agent.adapter.as_deref(), Some("a2a_future"));
        assert!(
            matches!(&warnings[..], [RegistrationWarning::AdapterNotRun { adapter, .. }] if adapter == "a2a_future"),
            "{warnings:?}"
        );
        assert!(warnings[0].to_string().contains("adapter missing"));
        let ok = build_agent(
            Registration { adapter: Some("loopback".into()), capabilities: vec![" x ".into(), "".into()], ..base },
            None,
            &now,
            &adapters,
        );
        let Ok(Registered { agent, warnings }) = ok else { panic!("valid registration refused") };
        assert_eq!(warnings, vec![]);
        assert_eq!(agent.capabilities, vec!["x".to_string()]);
        assert_eq!(agent.agent_id.len(), 26);
        assert!(agent.lease_expires_at > now);
    }
}
