//! The root supervisor. It alone knows every service: it builds each child's typed handles (task
//! actors get [`TaskDeps`], the thread coordinator [`ThreadDeps`], runtimes
//! [`crate::runtime::RuntimeDeps`], the registry its adapter catalog) from [`CoreHandles`], which
//! only the root and the service layer see.
//!
//! Start order: storage → registry → peer directory → runtime supervisor → SSE hub → Aether presence →
//! thread coordinator (its thread recovery runs in `pre_start`) → task supervisor (whose recovery
//! needs all the others).
//! Stop order is the reverse of what depends on what: Aether presence (ends gateway sessions) →
//! SSE hub (ends streams) → task supervisor →
//! thread coordinator → runtime supervisor → peer directory → registry → storage, drained last so
//! every queued write commits. A child that fails is restarted under [`RestartPolicy::SERVICE`];
//! past its intensity limit the root fails, which ends the node with an error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::aether::presence::{PresenceActor, PresenceMsg};
use crate::artifacts::ArtifactStore;
use crate::intake::Intake;
use crate::model::TargetSpec;
use crate::peers::{PeerArgs, PeerDirectory, PeerMsg, PeerTable};
use crate::registry::{RegistryActor, RegistryArgs, RegistryMsg, TargetTable};
use crate::restart::{RestartDecision, RestartPolicy, RestartTracker, jitter};
use crate::runtime::{RuntimeSupMsg, RuntimeSupervisor};
use crate::sse::{SseHub, SseHubMsg};
use crate::storage::{Db, StorageActor, StorageArgs, StorageMsg, StoreReader};
use crate::supervision::{Notify, Slot, actor_label, cast_or_drop};
use crate::task::TaskDeps;
use crate::task_supervisor::{TaskSupMsg, TaskSupervisor};
use crate::threads::{ThreadCoordinator, ThreadDeps, ThreadMsg};

/// Tunables of the core.
#[derive(Clone, Debug)]
pub struct CoreSettings {
    /// How long a runtime has to confirm a cancel before the node ends the task itself.
    pub cancel_grace: Duration,
    /// Background peer sync period (zero disables it).
    pub peer_sync_interval: Duration,
    /// The node's identity: peer sync and relays sign their requests with its key (`None`:
    /// unsigned, for core tests that run no peers).
    pub signer: Option<Arc<crate::identity::NodeIdentity>>,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings { cancel_grace: Duration::from_secs(10), peer_sync_interval: Duration::ZERO, signer: None }
    }
}

/// The slot of every service and the shared read-side handles: what the root builds children's
/// handles from, and what the service layer calls. No actor below the root holds it.
pub struct CoreHandles {
    pub storage: Arc<Slot<StorageMsg>>,
    pub registry: Arc<Slot<RegistryMsg>>,
    pub runtimes: Arc<Slot<RuntimeSupMsg>>,
    pub tasks: Arc<Slot<TaskSupMsg>>,
    pub sse: Arc<Slot<SseHubMsg>>,
    pub threads: Arc<Slot<ThreadMsg>>,
    pub peers: Arc<Slot<PeerMsg>>,
    /// The Aether gateway's identity locks and connection actors.
    pub presence: Arc<Slot<PresenceMsg>>,
    /// The `aether` adapter's session port (presence's), handed to the runtime supervisor.
    pub aether_sessions: Arc<crate::port::SessionSlot>,
    /// Reads (separate pool).
    pub reader: StoreReader,
    /// Artifact bytes.
    pub artifacts: ArtifactStore,
    /// Latest routing snapshot, published by the registry actor.
    pub targets: watch::Receiver<Arc<TargetTable>>,
    /// Latest cached peer targets, published by the peer directory.
    pub peer_targets: watch::Receiver<Arc<PeerTable>>,
    pub settings: CoreSettings,
    /// The one task-creation path (service layer and thread coordinator).
    pub intake: Intake,
}

impl CoreHandles {
    /// What every task actor gets.
    fn task_deps(&self) -> TaskDeps {
        let threads = self.threads.clone();
        TaskDeps {
            storage: self.storage.clone(),
            reader: self.reader.clone(),
            artifacts: self.artifacts.clone(),
            sse: self.sse.clone(),
            runtimes: self.runtimes.clone(),
            targets: self.targets.clone(),
            peer_targets: self.peer_targets.clone(),
            turn_settled: Notify::new(move |s| cast_or_drop(&threads, ThreadMsg::TurnSettled(s))),
            cancel_grace: self.settings.cancel_grace,
        }
    }

    /// What the thread coordinator gets.
    fn thread_deps(&self) -> ThreadDeps {
        ThreadDeps {
            storage: self.storage.clone(),
            reader: self.reader.clone(),
            intake: self.intake.clone(),
            artifacts: self.artifacts.clone(),
        }
    }
}

/// The services the root supervises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Storage,
    Registry,
    Runtimes,
    SseHub,
    Threads,
    Tasks,
    Peers,
    Presence,
}

impl Service {
    const START_ORDER: [Service; 8] = [
        Service::Storage,
        Service::Registry,
        Service::Peers,
        Service::Runtimes,
        Service::SseHub,
        Service::Presence,
        Service::Threads,
        Service::Tasks,
    ];
    const STOP_ORDER: [Service; 8] = [
        Service::Presence,
        Service::SseHub,
        Service::Tasks,
        Service::Threads,
        Service::Runtimes,
        Service::Peers,
        Service::Registry,
        Service::Storage,
    ];

    fn name(self) -> &'static str {
        match self {
            Service::Storage => "storage",
            Service::Registry => "registry",
            Service::Runtimes => "runtime_supervisor",
            Service::SseHub => "sse_hub",
            Service::Threads => "thread_coordinator",
            Service::Tasks => "task_supervisor",
            Service::Peers => "peer_directory",
            Service::Presence => "aether_presence",
        }
    }
}

/// Arguments of the root supervisor.
pub struct RootArgs {
    pub db: Db,
    pub artifacts: ArtifactStore,
    pub file_targets: Vec<TargetSpec>,
    pub settings: CoreSettings,
}

/// Messages of the root supervisor.
pub enum RootMsg {
    /// Replies once every service is up and restart recovery finished.
    Ready(RpcReplyPort<()>),
    /// Internal: restart a failed service after its backoff.
    Restart { service: Service, generation: u64 },
}

/// Cores started in this process so far: actor names are process-global, so a second core
/// (in-process tests) prefixes its actors' names.
static CORES_STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// State of the root supervisor.
pub struct RootState {
    /// Prefix of this core's actor names (empty for the first core of the process).
    name_prefix: String,
    dir: Arc<CoreHandles>,
    /// Kept to build the registry again on restart.
    db: Db,
    file_targets: Vec<TargetSpec>,
    /// Publisher of routing snapshots, handed to each registry incarnation.
    targets_tx: watch::Sender<Arc<TargetTable>>,
    /// Publisher of peer target snapshots, handed to each peer directory incarnation.
    peers_tx: watch::Sender<Arc<PeerTable>>,
    /// Which service each child actor is.
    children: HashMap<ActorId, Service>,
    /// Failure history per service.
    restarts: HashMap<Service, RestartTracker>,
    /// Incarnation per service; a restart timer for an older one is ignored.
    generations: HashMap<Service, u64>,
}

/// The root supervisor.
pub struct RootSupervisor;

impl RootSupervisor {
    /// Starts the tree and returns the root and the directory once recovery is done.
    pub async fn start(
        args: RootArgs,
    ) -> Result<(ActorRef<RootMsg>, Arc<CoreHandles>, tokio::task::JoinHandle<()>), ActorProcessingErr> {
        let (targets_tx, targets_rx) = watch::channel(Arc::new(TargetTable::default()));
        let (peers_tx, peers_rx) = watch::channel(Arc::new(PeerTable::default()));
        let tasks = Slot::new("task supervisor");
        let reader = args.db.reader();
        let intake = Intake {
            reader: reader.clone(),
            targets: targets_rx.clone(),
            peers: peers_rx.clone(),
            tasks: tasks.clone(),
        };
        let dir = Arc::new(CoreHandles {
            storage: Slot::new("storage"),
            registry: Slot::new("registry"),
            runtimes: Slot::new("runtime supervisor"),
            tasks,
            sse: Slot::new("sse hub"),
            threads: Slot::new("thread coordinator"),
            peers: Slot::new("peer directory"),
            presence: Slot::new("aether presence"),
            aether_sessions: Arc::default(),
            reader,
            artifacts: args.artifacts,
            targets: targets_rx,
            peer_targets: peers_rx,
            settings: args.settings,
            intake,
        });
        let instance = CORES_STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let name_prefix = if instance == 1 { String::new() } else { format!("core{instance}.") };
        let state = RootState {
            name_prefix: name_prefix.clone(),
            dir: dir.clone(),
            db: args.db,
            file_targets: args.file_targets,
            targets_tx,
            peers_tx,
            children: HashMap::new(),
            restarts: HashMap::new(),
            generations: HashMap::new(),
        };
        let (root, join) = Actor::spawn(Some(format!("{name_prefix}aethrolink.root")), RootSupervisor, state).await?;
        crate::supervision::ask(&root, "root", Duration::from_secs(300), RootMsg::Ready).await?;
        Ok((root, dir, join))
    }
}

async fn start_service(
    myself: &ActorRef<RootMsg>,
    state: &mut RootState,
    service: Service,
) -> Result<ActorCell, ActorProcessingErr> {
    let generation = *state.generations.entry(service).and_modify(|g| *g += 1).or_insert(1);
    let name = Some(format!("{}{}:{generation}", state.name_prefix, service.name()));
    let sup = myself.get_cell();
    let cell = match service {
        Service::Storage => {
            let (a, _) = Actor::spawn_linked(name, StorageActor, StorageArgs { db: state.db.clone() }, sup).await?;
            state.dir.storage.set(Some(a.clone()));
            a.get_cell()
        }
        Service::Registry => {
            let args = RegistryArgs {
                file_targets: state.file_targets.clone(),
                reader: state.dir.reader.clone(),
                storage: state.dir.storage.clone(),
                publish: state.targets_tx.clone(),
                adapters: crate::runtime::adapter_catalog(),
            };
            let (a, _) = Actor::spawn_linked(name, RegistryActor, args, sup).await?;
            state.dir.registry.set(Some(a.clone()));
            a.get_cell()
        }
        Service::Peers => {
            let args = PeerArgs {
                reader: state.dir.reader.clone(),
                storage: state.dir.storage.clone(),
                publish: state.peers_tx.clone(),
                sync_interval: state.dir.settings.peer_sync_interval,
                signer: state.dir.settings.signer.clone(),
            };
            let (a, _) = Actor::spawn_linked(name, PeerDirectory, args, sup).await?;
            state.dir.peers.set(Some(a.clone()));
            a.get_cell()
        }
        Service::Runtimes => {
            let (pauses_tx, pauses) = crate::runtime::DispatchPauses::channel();
            let deps = Arc::new(crate::runtime::RuntimeDeps {
                storage: state.dir.storage.clone(),
                reader: state.dir.reader.clone(),
                cancel_grace: state.dir.settings.cancel_grace,
                signer: state.dir.settings.signer.clone(),
                pauses,
                aether: state.dir.aether_sessions.clone(),
            });
            let args = crate::runtime::RuntimeSupArgs { deps, pauses_tx };
            let (a, _) = Actor::spawn_linked(name, RuntimeSupervisor, args, sup).await?;
            state.dir.runtimes.set(Some(a.clone()));
            a.get_cell()
        }
        Service::SseHub => {
            let (a, _) = Actor::spawn_linked(name, SseHub, (), sup).await?;
            state.dir.sse.set(Some(a.clone()));
            a.get_cell()
        }
        Service::Threads => {
            let (a, _) = Actor::spawn_linked(name, ThreadCoordinator, state.dir.thread_deps(), sup).await?;
            state.dir.threads.set(Some(a.clone()));
            a.get_cell()
        }
        Service::Tasks => {
            let (a, _) = Actor::spawn_linked(name, TaskSupervisor, state.dir.task_deps(), sup).await?;
            state.dir.tasks.set(Some(a.clone()));
            a.get_cell()
        }
        Service::Presence => {
            let store = crate::aether::connection::SessionStore {
                storage: state.dir.storage.clone(),
                reader: state.dir.reader.clone(),
            };
            let (a, _) = Actor::spawn_linked(name, PresenceActor, store, sup).await?;
            state.dir.presence.set(Some(a.clone()));
            state.dir.aether_sessions.set(Some(a.get_derived()));
            a.get_cell()
        }
    };
    state.children.insert(cell.get_id(), service);
    tracing::info!(actor_kind = service.name(), actor = %actor_label(&cell), generation, "service started");
    Ok(cell)
}

fn clear_slot(dir: &CoreHandles, service: Service) {
    match service {
        Service::Storage => dir.storage.set(None),
        Service::Registry => dir.registry.set(None),
        Service::Runtimes => dir.runtimes.set(None),
        Service::SseHub => dir.sse.set(None),
        Service::Threads => dir.threads.set(None),
        Service::Tasks => dir.tasks.set(None),
        Service::Peers => dir.peers.set(None),
        Service::Presence => {
            dir.presence.set(None);
            dir.aether_sessions.set(None);
        }
    }
}

fn slot_cell(dir: &CoreHandles, service: Service) -> Option<ActorCell> {
    match service {
        Service::Storage => dir.storage.get().ok().map(|a| a.get_cell()),
        Service::Registry => dir.registry.get().ok().map(|a| a.get_cell()),
        Service::Runtimes => dir.runtimes.get().ok().map(|a| a.get_cell()),
        Service::SseHub => dir.sse.get().ok().map(|a| a.get_cell()),
        Service::Threads => dir.threads.get().ok().map(|a| a.get_cell()),
        Service::Tasks => dir.tasks.get().ok().map(|a| a.get_cell()),
        Service::Peers => dir.peers.get().ok().map(|a| a.get_cell()),
        Service::Presence => dir.presence.get().ok().map(|a| a.get_cell()),
    }
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootState;

    async fn pre_start(&self, _myself: ActorRef<RootMsg>, state: RootState) -> Result<RootState, ActorProcessingErr> {
        Ok(state)
    }

    async fn post_start(&self, myself: ActorRef<RootMsg>, state: &mut RootState) -> Result<(), ActorProcessingErr> {
        for service in Service::START_ORDER {
            start_service(&myself, state, service).await?;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        msg: RootMsg,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Ready(reply) => {
                // The task supervisor answers only after its post_start (recovery) finished.
                state.dir.tasks.ask(Duration::from_secs(300), TaskSupMsg::Count).await?;
                let _ = reply.send(());
            }
            RootMsg::Restart { service, generation } => {
                if state.generations.get(&service) == Some(&generation) && slot_cell(&state.dir, service).is_none() {
                    start_service(&myself, state, service).await?;
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        evt: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, error) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(service) = state.children.remove(&cell.get_id()) {
                    tracing::info!(actor_kind = service.name(), actor = %actor_label(&cell), reason = reason.as_deref().unwrap_or(""), "service stopped");
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        let Some(service) = state.children.remove(&cell.get_id()) else { return Ok(()) };
        let error = error.unwrap_or_default();
        clear_slot(&state.dir, service);
        let tracker = state.restarts.entry(service).or_insert_with(|| RestartTracker::new(RestartPolicy::SERVICE));
        match tracker.on_failure(Instant::now(), jitter()) {
            RestartDecision::Restart { attempt, backoff } => {
                let generation = state.generations.get(&service).copied().unwrap_or(0);
                tracing::warn!(
                    actor_kind = service.name(), actor = %actor_label(&cell), %error, attempt,
                    backoff_ms = backoff.as_millis() as u64, "service failed; restarting"
                );
                myself.send_after(backoff, move || RootMsg::Restart { service, generation });
                Ok(())
            }
            RestartDecision::Escalate { failures } => {
                tracing::error!(actor_kind = service.name(), actor = %actor_label(&cell), %error, failures, "service failed too often; escalating");
                Err(format!("{} failed {failures} times; last error: {error}", service.name()).into())
            }
        }
    }

    async fn post_stop(&self, _myself: ActorRef<RootMsg>, state: &mut RootState) -> Result<(), ActorProcessingErr> {
        for service in Service::STOP_ORDER {
            let Some(cell) = slot_cell(&state.dir, service) else { continue };
            // Storage drains its mailbox so every queued write commits, and Aether presence so
            // every send it took reaches its queue; the others just stop.
            let stopped = if matches!(service, Service::Storage | Service::Presence) {
                cell.drain_and_wait(Some(Duration::from_secs(10))).await.map_err(|e| e.to_string())
            } else {
                cell.stop_and_wait(Some("node shutting down".into()), Some(Duration::from_secs(5)))
                    .await
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = stopped {
                tracing::warn!(actor_kind = service.name(), error = %e, "service did not stop cleanly");
            }
            clear_slot(&state.dir, service);
        }
        state.db.close().await;
        tracing::info!(actor_kind = "root", "supervision tree stopped");
        Ok(())
    }
}
