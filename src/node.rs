//! Runs the node: loads configuration, locks the database (one node per database), binds the
//! listener, opens storage, starts the supervision tree (which recovers live tasks and sweeps the
//! process groups a previous run left before anything is served), serves, and shuts down in
//! order. Everything that can refuse the start without side effects — a bad address or registry,
//! a database another node holds, a port in use — is settled before storage is opened.
//!
//! Shutdown: the first SIGINT/SIGTERM stops accepting connections and ends every SSE stream;
//! in-flight requests may finish within `--shutdown-grace`, then every connection still open is
//! dropped ([`crate::listener`]); then the root supervisor stops task actors, runtimes and the registry and drains the storage
//! actor so every queued write commits. A second signal exits at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aethrolink_actors::artifacts::ArtifactStore;
use aethrolink_actors::identity::NodeIdentity;
use aethrolink_actors::identity::key_file::{KeyFileError, KeyStore};
use aethrolink_actors::identity::node_auth::AcceptPolicy;
use aethrolink_actors::identity::signature::NonceCache;
use aethrolink_actors::root::{CoreSettings, RootArgs, RootMsg, RootSupervisor};
use aethrolink_actors::service::Services;
use aethrolink_actors::service::aether::AnonymousPolicy;
use aethrolink_actors::storage::lock::{DatabaseLock, DatabaseLockError};
use aethrolink_actors::storage::{DatabaseLocation, Db, StorageMsg, WriteOp};
use aethrolink_actors::supervision::ASK_TIMEOUT;
use ractor::ActorRef;
use tokio_util::sync::CancellationToken;

use crate::api::guard::BrowserPolicy;
use crate::api::{AppState, AuthPolicy, router};
use crate::config::{ConfigError, DEFAULT_REGISTRY, NodeArgs, check_exposure, load_registry};
use crate::listener::{ListenerSettings, serve_http};
use crate::tls::TlsConfig;

/// Why the node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database {database}: {source}")]
    Storage { database: String, source: aethrolink_actors::error::StorageError },
    #[error("artifact directory: {0}")]
    Artifacts(#[from] aethrolink_actors::artifacts::ArtifactError),
    #[error(transparent)]
    Locked(#[from] DatabaseLockError),
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error(
        "node key file {} is missing, but this database's node has key {key_id}: restore the file (a new key would make a new identity)",
        path.display()
    )]
    KeyMissing { path: PathBuf, key_id: String },
    #[error(
        "node key file {} holds key {found}, but this database's node has key {key_id}: restore the node's key file",
        path.display()
    )]
    KeyMismatch { path: PathBuf, key_id: String, found: String },
    #[error("supervision tree: {0}")]
    Tree(String),
    #[error("listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
}

/// How long the ordered stop of the supervision tree may take.
const TREE_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running core: the supervision tree (recovered), and the service layer over it.
pub struct Core {
    /// The root supervisor; stopping it stops the tree in order.
    root: ActorRef<RootMsg>,
    /// Ends when the root stops (normally or because a service failed beyond its limit).
    root_join: tokio::task::JoinHandle<()>,
    /// What every binding calls.
    pub services: Services,
    /// One node per database: held until the tree has stopped (`None` for an in-memory one).
    lock: Option<DatabaseLock>,
}

impl Core {
    /// Stops the supervision tree in order (every queued write commits), then lets go of the
    /// database.
    pub async fn stop(self) {
        if let Err(e) = self.root.stop_and_wait(Some("node shutting down".into()), Some(TREE_STOP_TIMEOUT)).await {
            tracing::warn!(error = %e, "supervision tree did not stop in time");
        }
        drop(self.lock);
    }
}

/// What start-up settles before it has any effect: the registry's targets (read and
/// validated), a valid bind address (off loopback only with TLS or `--insecure-plaintext`), the
/// TLS configuration, and the database's lock.
pub struct Preflight {
    /// The registry file read (for the start log).
    registry_path: PathBuf,
    /// Its targets.
    file_targets: Vec<aethrolink_actors::model::TargetSpec>,
    /// The database's lock (`None` for an in-memory database).
    lock: Option<DatabaseLock>,
    /// The operator's admin key (`--admin-key`, `--admin-key-file`), read before anything starts.
    admin_key: Option<String>,
    /// The listener's TLS configuration (`None`: plaintext).
    tls: Option<TlsConfig>,
    /// The gateway's TLS configuration (`--aether-tls-*`; `None`: plaintext).
    aether_tls: Option<TlsConfig>,
}

/// Reads the registry, checks the address and takes the database's lock: a second node on the
/// same database is refused here, naming the database and the holder's pid, before it touches
/// anything.
pub fn preflight(args: &NodeArgs) -> Result<Preflight, NodeError> {
    let (registry_path, explicit) = match &args.registry {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_REGISTRY), false),
    };
    let file_targets = load_registry(&registry_path, explicit)?;
    // A bad address or allow-list entry is reported before anything is opened.
    let addr = args.bind_addr()?;
    args.check_allowlists()?;
    let admin_key = args.admin_key()?;
    // A bad certificate or key, or plaintext off loopback, refuses the start before the lock.
    let tls = args.tls()?;
    check_exposure(addr, tls.is_some(), args.insecure_plaintext)?;
    let aether_tls = args.aether_tls()?;
    let lock = DatabaseLock::acquire(&DatabaseLocation::parse(&args.database))?;
    if let Some(lock) = &lock {
        tracing::debug!(lock_file = %lock.path().display(), "database locked");
    }
    Ok(Preflight { registry_path, file_targets, lock, admin_key, tls, aether_tls })
}

/// How the bindings serve (from the node flags).
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Request body limit (413 above).
    pub max_body_bytes: usize,
    /// Go-compatibility mode: accept unsigned node-protocol callers.
    pub allow_unsigned_peers: bool,
    /// Accept any correctly signed node, not only registered peers' pinned keys.
    pub accept_from_any_node: bool,
    /// More names the node answers to in `Host` (`--allowed-host`).
    pub allowed_hosts: Vec<String>,
    /// Web origins granted CORS access (`--allowed-origin`).
    pub allowed_origins: Vec<String>,
    /// Go-compatibility mode: anonymous loopback callers may register spawning targets.
    pub allow_anonymous_register: bool,
    /// Tokens on every request, also from loopback (`--require-auth`).
    pub require_auth: bool,
    /// Where to keep the local admin token file; `None`: make none (in-process tests).
    pub local_token_dir: Option<PathBuf>,
    /// Accept to end of request head (`--header-read-timeout`; `ZERO`: none).
    pub header_read_timeout: Duration,
    /// Kept-alive connection with nothing in flight (`--idle-timeout`; `ZERO`: none).
    pub idle_timeout: Duration,
    /// Connections open at once (`--max-connections`).
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests (`--shutdown-grace`).
    pub shutdown_grace: Duration,
    /// Serve HTTPS (`--tls-cert`, `--tls-key`).
    pub tls: Option<TlsConfig>,
    /// Allow plaintext on a non-loopback address (`--insecure-plaintext`).
    pub insecure_plaintext: bool,
    /// Serve the gateway over TLS (`--aether-tls-cert`, `--aether-tls-key`, optionally
    /// `--aether-tls-client-ca`).
    pub aether_tls: Option<TlsConfig>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_body_bytes: 1024 * 1024,
            allow_unsigned_peers: false,
            accept_from_any_node: false,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            allow_anonymous_register: false,
            require_auth: false,
            local_token_dir: None,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(10),
            tls: None,
            insecure_plaintext: false,
            aether_tls: None,
        }
    }
}

impl From<&NodeArgs> for ServeOptions {
    /// The options the flags give; `tls` and `aether_tls` stay `None` (read by [`preflight`]).
    fn from(args: &NodeArgs) -> Self {
        ServeOptions {
            max_body_bytes: args.max_body_bytes,
            allow_unsigned_peers: args.allow_unsigned_peers,
            accept_from_any_node: args.accept_from_any_node,
            allowed_hosts: args.allowed_hosts.clone(),
            allowed_origins: args.allowed_origins.clone(),
            allow_anonymous_register: args.allow_anonymous_register,
            require_auth: args.require_auth,
            // No state directory (no HOME): the node runs, the CLI then needs --token.
            local_token_dir: crate::local_token::state_dir(args.state_dir.as_deref())
                .inspect_err(|e| tracing::warn!(error = %e, "no local admin token file will be written"))
                .ok(),
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            max_connections: args.max_connections as usize,
            shutdown_grace: args.shutdown_grace,
            tls: None,
            insecure_plaintext: args.insecure_plaintext,
            aether_tls: None,
        }
    }
}

/// The sockets a node serves on, bound before anything is served.
pub struct Listeners {
    /// The HTTP API.
    pub http: tokio::net::TcpListener,
    /// The Aether gateway (gRPC); `None`: not served (in-process tests).
    pub aether: Option<tokio::net::TcpListener>,
}

/// Loads configuration, locks the database, opens storage and starts the supervision tree, which
/// recovers live tasks before this returns.
pub async fn start_core(args: &NodeArgs) -> Result<Core, NodeError> {
    start_core_after(args, preflight(args)?).await
}

/// [`start_core`] once [`preflight`] has passed: opens storage and starts the supervision tree
/// (recovery, the sweep of process groups a previous run left).
pub async fn start_core_after(args: &NodeArgs, preflight: Preflight) -> Result<Core, NodeError> {
    let Preflight { registry_path, file_targets, lock, admin_key, tls: _, aether_tls: _ } = preflight;
    let location = DatabaseLocation::parse(&args.database);
    let db =
        Db::open(&location).await.map_err(|source| NodeError::Storage { database: args.database.clone(), source })?;
    let key_store = match &location {
        DatabaseLocation::Memory => KeyStore::Memory,
        DatabaseLocation::File(path) => KeyStore::beside(path),
    };
    // Settled before the tree starts: a refused key file starts nothing.
    let identity = resolve_identity(args, &db, &key_store).await?;
    let artifacts = ArtifactStore::open(&args.artifact_dir, args.artifact_inline_max)?;
    tracing::info!(
        database = %args.database, registry = %registry_path.display(), file_targets = file_targets.len(),
        peer_sync_interval_ms = args.peer_sync_interval.as_millis() as u64, "starting node"
    );
    let settings = CoreSettings {
        cancel_grace: Duration::from_millis(args.cancel_grace_ms),
        peer_sync_interval: args.peer_sync_interval,
        signer: Some(Arc::new(identity.identity.clone())),
    };
    let (root, dir, root_join) = RootSupervisor::start(RootArgs { db: db.clone(), artifacts, file_targets, settings })
        .await
        .map_err(|e| NodeError::Tree(e.to_string()))?;
    let services = match persist_identity(args, &dir, identity).await {
        Ok(identity) => Services::new(dir, identity),
        Err(e) => {
            let _ = root.stop_and_wait(None, Some(TREE_STOP_TIMEOUT)).await;
            return Err(e);
        }
    };
    if let Some(key) = &admin_key {
        services.set_admin_key(key);
    }
    match services.load_tokens().await {
        Ok(tokens) => {
            tracing::debug!(tokens, admin_key = admin_key.is_some(), "credentials loaded");
            Ok(Core { root, root_join, services, lock })
        }
        Err(e) => {
            let _ = root.stop_and_wait(None, Some(TREE_STOP_TIMEOUT)).await;
            Err(NodeError::Tree(format!("loading API tokens: {e}")))
        }
    }
}

/// Runs until a shutdown signal (or `shutdown` is cancelled); returns after a clean stop.
pub async fn run(args: NodeArgs, shutdown: CancellationToken) -> Result<(), NodeError> {
    let mut preflight = preflight(&args)?;
    let tls = preflight.tls.take();
    let aether_tls = preflight.aether_tls.take();
    // Bound before recovery and the sweep: a port in use ends the start with no side effect.
    // (Connections that arrive meanwhile wait in the backlog until serving starts.)
    let addr = args.bind_addr()?;
    let http = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Listen { addr: addr.to_string(), source })?;
    let aether_addr = args.aether_addr()?;
    let aether = tokio::net::TcpListener::bind(aether_addr)
        .await
        .map_err(|source| NodeError::Listen { addr: aether_addr.to_string(), source })?;
    let core = start_core_after(&args, preflight).await?;
    let listeners = Listeners { http, aether: Some(aether) };
    serve(core, listeners, shutdown, ServeOptions { tls, aether_tls, ..ServeOptions::from(&args) }).await
}

/// Serves the bindings over a running core until `shutdown` is cancelled (or the tree dies),
/// then stops the tree in order. The in-process test seam: tests start a core, bind port 0,
/// and call this.
pub async fn serve(
    core: Core,
    listeners: Listeners,
    shutdown: CancellationToken,
    options: ServeOptions,
) -> Result<(), NodeError> {
    let Core { root, root_join, services, lock } = core;
    if options.allow_unsigned_peers {
        tracing::warn!("Go-compatibility mode: node-protocol requests from unsigned peers are accepted");
    }
    if options.accept_from_any_node {
        tracing::warn!("node-protocol requests correctly signed by any node are accepted (--accept-from-any-node)");
    }
    let accept = if options.accept_from_any_node { AcceptPolicy::AnyNode } else { AcceptPolicy::RegisteredPeers };
    let state = AppState {
        services,
        shutdown: shutdown.clone(),
        allow_unsigned_peers: options.allow_unsigned_peers,
        accept,
        nonces: Arc::new(std::sync::Mutex::new(NonceCache::default())),
        metrics: crate::api::prometheus::recorder(),
        auth: AuthPolicy::default(),
    };
    let tls = options.tls.is_some();
    let browser = listeners.http.local_addr().map_err(NodeError::Serve).and_then(|bound| {
        check_exposure(bound, tls, options.insecure_plaintext)?;
        BrowserPolicy::new(bound, tls, &options.allowed_hosts, &options.allowed_origins, options.max_body_bytes)
            .map(|policy| (bound, policy))
            .map_err(|e| NodeError::Config(ConfigError::Flag(e)))
    });
    // Off loopback the gateway is served over TLS (--aether-tls-cert) or with
    // --insecure-plaintext; otherwise the node starts without it (its HTTP API may be TLS).
    let aether = match &listeners.aether {
        Some(l) => l.local_addr().map_err(NodeError::Serve).map(|bound| {
            if bound.ip().is_loopback() || options.insecure_plaintext || options.aether_tls.is_some() {
                Some(bound)
            } else {
                tracing::warn!(
                    addr = %bound,
                    "the Aether gateway is not served: --host is not loopback and it has no TLS; pass \
                     --aether-tls-cert and --aether-tls-key, or --insecure-plaintext to serve it in plaintext"
                );
                None
            }
        }),
        None => Ok(None),
    };
    let browser = browser.and_then(|b| aether.map(|a| (b, a)));
    let ((bound, browser), aether_bound) = match browser {
        Ok(ok) => ok,
        Err(e) => {
            // Nothing is served: stop the tree that was started for it.
            let _ = root.stop_and_wait(Some("node not serving".into()), Some(TREE_STOP_TIMEOUT)).await;
            drop(lock);
            return Err(e);
        }
    };
    let auth = AuthPolicy::new(&bound, options.require_auth, options.allow_anonymous_register);
    if auth.require_token {
        tracing::info!(addr = %bound, "every request needs a token (Authorization: Bearer)");
    }
    if options.allow_anonymous_register {
        tracing::warn!(
            "Go-compatibility mode (--allow-anonymous-register): anonymous loopback callers may register targets \
             that run commands on this machine"
        );
    }
    if !bound.ip().is_loopback() {
        if tls {
            tracing::info!(addr = %bound, "the HTTP API is served over TLS on a non-loopback address");
        } else {
            tracing::warn!(
                addr = %bound,
                "serving plaintext HTTP on a non-loopback address (--insecure-plaintext): requests and answers cross \
                 the network unencrypted and anyone on it can read or alter them; serve HTTPS with --tls-cert and \
                 --tls-key unless every host on that network is trusted"
            );
        }
    }
    if let Some(dir) = &options.local_token_dir {
        ensure_local_admin_token(&state.services, dir, bound).await;
    }
    let state = AppState { auth, ..state };
    // The lines on stdout, once the node is ready to serve (and its local admin token is
    // written): scripts and tests started on port 0 read the addresses here. The HTTP line is
    // first; both go out in one write, so a reader that reads only the first line and closes
    // the pipe cannot make the second fail.
    let scheme = if tls { "https" } else { "http" };
    let mut lines = format!("alink-node listening on {scheme}://{bound}\n");
    if let Some(a) = aether_bound {
        lines.push_str(&format!("alink-node aether gateway listening on {a}\n"));
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(lines.as_bytes()).and_then(|()| out.flush());
    }
    tracing::info!(node_id = %state.services.node_id(), addr = %bound, tls, "listening");
    let gateway = match (listeners.aether, aether_bound) {
        (Some(listener), Some(a)) => {
            let policy = if a.ip().is_loopback() && !options.require_auth {
                AnonymousPolicy::AdmitClaimed
            } else {
                AnonymousPolicy::Refuse
            };
            tracing::info!(addr = %a, anonymous = ?policy, tls = options.aether_tls.is_some(), "aether gateway listening");
            // Agents the node launches itself connect here (an unspecified address: loopback).
            let reachable = if a.ip().is_unspecified() {
                std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
            } else {
                a
            };
            state.services.set_gateway_address(reachable.to_string());
            let (services, token, grace) = (state.services.clone(), shutdown.clone(), options.shutdown_grace);
            let tls = options.aether_tls.as_ref().map(TlsConfig::server_config);
            Some(tokio::spawn(async move {
                if let Err(e) = crate::gateway::serve(listener, tls, services, policy, token.clone(), grace).await {
                    tracing::error!(error = %e, "aether gateway failed; shutting down");
                    token.cancel();
                }
            }))
        }
        _ => None,
    };
    let app = router(state, options.max_body_bytes, browser);
    let settings = ListenerSettings {
        header_read_timeout: options.header_read_timeout,
        idle_timeout: options.idle_timeout,
        max_connections: options.max_connections,
        shutdown_grace: options.shutdown_grace,
        tls: options.tls.clone(),
    };
    let server = serve_http(listeners.http, app, settings, shutdown.clone());

    let root_died = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (token, died) = (shutdown.clone(), root_died.clone());
        tokio::spawn(async move {
            let _ = root_join.await;
            if !token.is_cancelled() {
                tracing::error!("supervision tree stopped unexpectedly; shutting down");
                died.store(true, Ordering::SeqCst);
                token.cancel();
            }
        })
    };
    server.await;
    if let Some(gateway) = gateway {
        let _ = gateway.await;
    }
    tracing::info!("connections closed; stopping the supervision tree");
    let stopped = root.stop_and_wait(Some("node shutting down".into()), Some(TREE_STOP_TIMEOUT)).await;
    watcher.abort();
    if let Err(e) = stopped {
        tracing::warn!(error = %e, "supervision tree did not stop in time");
    }
    // Held until the tree (and with it every agent process) has stopped.
    drop(lock);
    if root_died.load(Ordering::SeqCst) {
        return Err(NodeError::Tree("a core service failed beyond its restart limit".into()));
    }
    tracing::info!("node stopped");
    Ok(())
}

/// Makes sure the node's user holds an admin token for this node in its state directory
/// ([`crate::local_token`]). A failure is logged, not fatal: the CLI then needs `--token`.
async fn ensure_local_admin_token(services: &Services, state_dir: &std::path::Path, bound: SocketAddr) {
    let key = crate::local_token::address_key_of_bind(bound);
    let path = crate::local_token::token_path(state_dir, &key);
    let existing = match crate::local_token::read_token(&path) {
        Ok(existing) => existing,
        Err(e) => {
            // Unreadable or too open: whatever it held is replaced (and its token revoked).
            tracing::warn!(error = %e, "replacing the local admin token file");
            None
        }
    };
    match services.ensure_local_admin_token(&key, existing.as_deref()).await {
        Ok(None) => tracing::debug!(file = %path.display(), "local admin token kept"),
        Ok(Some(token)) => match crate::local_token::write_token(&path, &token) {
            Ok(()) => tracing::info!(file = %path.display(), "local admin token written"),
            Err(e) => tracing::warn!(error = %e, "could not write the local admin token file"),
        },
        Err(e) => tracing::warn!(error = %e, "could not make the local admin token"),
    }
}

/// `node_meta` key of the node id.
const META_NODE_ID: &str = "node_id";
/// `node_meta` key of the id of the node's key: a missing or swapped key file is noticed.
const META_NODE_KEY_ID: &str = "node_key_id";

/// The node's identity as found at start, and what of it is still to be recorded.
struct ResolvedIdentity {
    identity: NodeIdentity,
    /// `node_meta` rows to write once the storage actor runs.
    writes: Vec<WriteOp>,
}

/// The key pair (read, or made at first start) and the node id bound to it: the flag if given,
/// else the persisted id (a node older than its key keeps its id), else one derived from the
/// public key. A key file that is unreadable, too open, malformed, missing or not the one this
/// database's node has refuses the start, naming the file.
async fn resolve_identity(args: &NodeArgs, db: &Db, store: &KeyStore) -> Result<ResolvedIdentity, NodeError> {
    let storage_err = |source| NodeError::Storage { database: args.database.clone(), source };
    let reader = db.reader();
    let recorded_key = reader.node_meta(META_NODE_KEY_ID).await.map_err(storage_err)?;
    let stored = match (store.load()?, &recorded_key, store.path()) {
        (Some(stored), Some(recorded), Some(path)) if stored.key.public_key().key_id().as_str() != recorded => {
            return Err(NodeError::KeyMismatch {
                path: path.to_path_buf(),
                key_id: recorded.clone(),
                found: stored.key.public_key().key_id().to_string(),
            });
        }
        (Some(stored), _, _) => stored,
        (None, Some(recorded), Some(path)) => {
            return Err(NodeError::KeyMissing { path: path.to_path_buf(), key_id: recorded.clone() });
        }
        (None, _, _) => store.create()?,
    };
    let public = stored.key.public_key();
    let mut writes = Vec::new();
    if recorded_key.is_none() {
        writes.push(WriteOp::NodeMeta { key: META_NODE_KEY_ID.into(), value: public.key_id().to_string() });
    }
    let node_id = match args.node_id.clone().filter(|s| !s.trim().is_empty()) {
        Some(id) => id,
        None => match reader.node_meta(META_NODE_ID).await.map_err(storage_err)? {
            Some(id) => id,
            None => {
                let id = public.derived_node_id();
                writes.push(WriteOp::NodeMeta { key: META_NODE_ID.into(), value: id.clone() });
                id
            }
        },
    };
    // Relays name this node as their origin by the id it runs under now.
    writes.push(WriteOp::NodeMeta { key: aethrolink_actors::storage::NODE_ID_IN_USE.into(), value: node_id.clone() });
    tracing::info!(
        node_id = %node_id, key_id = %public.key_id(), new_key = stored.created,
        id_derived_from_key = node_id == public.derived_node_id(),
        key_file = %store.path().map_or("(in memory)".into(), |p| p.display().to_string()),
        "node identity"
    );
    Ok(ResolvedIdentity { identity: NodeIdentity::new(node_id, stored.key, stored.created_at), writes })
}

/// Records what `resolve_identity` found new (the key's id, a derived node id).
async fn persist_identity(
    args: &NodeArgs,
    dir: &aethrolink_actors::root::CoreHandles,
    resolved: ResolvedIdentity,
) -> Result<NodeIdentity, NodeError> {
    for op in resolved.writes {
        dir.storage
            .ask(ASK_TIMEOUT, |reply| StorageMsg::Write(op, reply))
            .await
            .map_err(|e| NodeError::Tree(e.to_string()))?
            .map_err(|source| NodeError::Storage { database: args.database.clone(), source })?;
    }
    Ok(resolved.identity)
}

/// Cancels `token` on the first SIGINT/SIGTERM and exits the process on the second.
pub fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; stopping (send again to exit at once)");
        token.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting at once");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
