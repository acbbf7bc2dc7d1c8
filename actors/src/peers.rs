//! The peer directory: static peers (operator-registered, contract §9.3), the targets each
//! exported at its last sync, and the sync itself. It publishes an immutable [`PeerTable`] on a
//! watch channel, so routing (in intake) and listing read it without an actor hop, like the
//! registry's `TargetTable`.
//!
//! Why an actor of its own and not the registry: peer sync is network IO on a timer with its own
//! failure modes (a hung peer, a peer that went away), and the registry's job — validating and
//! persisting local registrations, presence leases — is local and must stay quick. Two
//! snapshots, each with one writer, keep both simple; routing combines them (local wins).
//!
//! A sync fetches each peer's `GET /v1/node/health`, `GET /v1/targets` and `GET /v1/node/identity`
//! (signed with this node's key; the identity's key is pinned at the first success, and a
//! different key later is recorded as the sync's error, never re-pinned) in a spawned task
//! (all peers concurrently, 10 s each): a failing peer never holds up the others, and its error
//! is recorded on the peer. Results come back as one `Fetched` message stamped with the base URL
//! each fetch used; a peer re-registered elsewhere meanwhile ignores the stale result. The
//! decisions are the pure [`PeerBook`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::clock;
use crate::error::{AskError, StorageError};
use crate::identity::NodeIdentity;
use crate::identity::node_auth;
use crate::model::{JsonObject, LaunchSpec, PeerRecord, PeerStatus, PeerTargetRecord, TargetSource, TargetSpec};
use crate::storage::{StorageMsg, StoreReader, WriteOp};
use crate::supervision::{ASK_TIMEOUT, Slot};

/// How long one peer's sync (health + targets) may take.
pub const PEER_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// The adapter kind spelling of peer targets (`AdapterKind::Peer`).
pub const PEER_ADAPTER: &str = "peer";

/// `POST /v1/peers` (contract §2.10 PeerUpsertRequest).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerUpsert {
    #[serde(default)]
    pub peer_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub base_url: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub metadata: JsonObject,
    /// The peer's public key (base64url ed25519) to pin now instead of at the first sync.
    #[serde(default)]
    pub public_key: Option<String>,
    /// Replace an already pinned key with `public_key` (re-pinning is an explicit act).
    #[serde(default)]
    pub replace_key: bool,
}

/// Why a peer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The request is wrong (contract messages: `peer_id required`, `peer base_url invalid`).
    #[error("{0}")]
    Invalid(String),
    #[error("peer not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("storage: {0}")]
    Ask(#[from] AskError),
}

/// A peer after a sync: its record (with `last_error` when the sync failed) and its cached
/// targets (contract §2.10 PeerSyncResponse).
#[derive(Clone, Debug, Serialize)]
pub struct PeerSynced {
    pub peer: PeerRecord,
    pub targets: Vec<PeerTargetRecord>,
}

/// A target as a peer exported it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportedTarget {
    pub target_id: String,
    pub capabilities: Vec<String>,
    pub defaults: JsonObject,
}

/// What a peer answered a sync with.
#[derive(Clone, Debug, PartialEq)]
pub struct Export {
    /// The peer's node id (from its health answer).
    pub node_id: Option<String>,
    /// The peer's public key (base64url, from its identity document), if it publishes one.
    pub public_key: Option<String>,
    /// The peer's identity document says its node submits are idempotent (a submit sent again
    /// answers with the task it created).
    pub idempotent_submit: bool,
    pub targets: Vec<ExportedTarget>,
}

/// One peer's fetch, stamped with the base URL it used.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub peer_id: String,
    pub base_url: String,
    pub outcome: Result<Export, String>,
}

/// Normalises an absolute http(s) URL (no trailing `/`), or says why it is not one.
pub fn normalize_base_url(raw: &str) -> Result<String, String> {
    let invalid = |why: &str| format!("peer base_url invalid: '{raw}' {why}");
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| invalid(&format!("({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Peers and their cached targets, and every decision about them. Pure.
#[derive(Clone, Debug, Default)]
pub struct PeerBook {
    /// Peers by id.
    peers: BTreeMap<String, PeerRecord>,
    /// Cached targets per peer id, by target id.
    targets: BTreeMap<String, Vec<PeerTargetRecord>>,
}

impl PeerBook {
    /// How many peers are in each status (every status listed, zeros included).
    pub fn status_counts(&self) -> [(&'static str, usize); 2] {
        let count = |s: PeerStatus| self.peers.values().filter(|p| p.status == s).count();
        [
            (PeerStatus::Online.as_str(), count(PeerStatus::Online)),
            (PeerStatus::Offline.as_str(), count(PeerStatus::Offline)),
        ]
    }

    /// A book of what storage holds.
    pub fn load(peers: Vec<PeerRecord>, targets: Vec<PeerTargetRecord>) -> Self {
        let mut book =
            PeerBook { peers: peers.into_iter().map(|p| (p.peer_id.clone(), p)).collect(), ..Default::default() };
        for t in targets {
            book.targets.entry(t.peer_id.clone()).or_default().push(t);
        }
        book
    }

    /// Validates and applies a registration. Re-adding with the same base URL keeps the peer's
    /// status and targets; a new base URL makes it `offline` with no targets until it syncs.
    /// Returns the record and whether its cached targets were dropped.
    pub fn upsert(&mut self, req: PeerUpsert, now: &str) -> Result<(PeerRecord, bool), PeerError> {
        let peer_id = req.peer_id.trim().to_owned();
        if peer_id.is_empty() {
            return Err(PeerError::Invalid("peer_id required".into()));
        }
        if !crate::ids::is_valid_id(&peer_id) {
            return Err(PeerError::Invalid(format!(
                "peer_id '{peer_id}' may only contain letters, digits, '-', '_', '.', ':'"
            )));
        }
        let base_url = normalize_base_url(&req.base_url).map_err(PeerError::Invalid)?;
        let display_name =
            req.display_name.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()).unwrap_or_else(|| peer_id.clone());
        let previous = self.peers.get(&peer_id);
        let pinned = previous.and_then(|p| p.public_key.clone().zip(p.key_id.clone()));
        let (public_key, key_id) = match (req.public_key.as_deref().map(str::trim), pinned) {
            (None, pinned) => pinned.unzip(),
            (Some(text), pinned) => {
                let key = crate::identity::PublicKey::from_base64url(text)
                    .map_err(|e| PeerError::Invalid(format!("peer public_key invalid: {e}")))?;
                let key_id = key.key_id().to_string();
                if let Some((_, old_id)) = pinned.filter(|(_, old_id)| *old_id != key_id && !req.replace_key) {
                    return Err(PeerError::Invalid(format!(
                        "peer {peer_id} has pinned key {old_id}; pass \"replace_key\": true to replace it with {key_id}"
                    )));
                }
                (Some(key.to_base64url()), Some(key_id))
            }
        };
        let moved = previous.is_some_and(|p| p.base_url != base_url);
        let record = PeerRecord {
            peer_id: peer_id.clone(),
            display_name,
            status: match previous {
                Some(p) if !moved => p.status,
                _ => PeerStatus::Offline,
            },
            base_url,
            capabilities: req.capabilities.into_iter().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect(),
            metadata: req.metadata,
            last_error: previous.filter(|_| !moved).and_then(|p| p.last_error.clone()),
            public_key,
            key_id,
            registered_at: previous.map_or_else(|| now.to_owned(), |p| p.registered_at.clone()),
            updated_at: now.to_owned(),
            last_seen_at: previous.filter(|_| !moved).map_or_else(|| now.to_owned(), |p| p.last_seen_at.clone()),
        };
        if moved {
            self.targets.remove(&peer_id);
        }
        self.peers.insert(peer_id, record.clone());
        Ok((record, moved))
    }

    /// Applies a fetch: success → `online`, node id in metadata, targets replaced (exported
    /// peer-owned targets are never re-exported); failure → `offline` with the error, targets
    /// kept (a relay to them fails until the peer is back). `None` if the peer is gone or moved
    /// since the fetch started (a stale result).
    pub fn apply(&mut self, fetched: Fetched, now: &str) -> Option<(PeerSynced, bool)> {
        let peer = self.peers.get_mut(&fetched.peer_id).filter(|p| p.base_url == fetched.base_url)?;
        peer.updated_at = now.to_owned();
        let replaced = match fetched.outcome {
            Ok(export) if key_conflict(peer, &export).is_some() => {
                peer.status = PeerStatus::Offline;
                peer.last_error = key_conflict(peer, &export);
                false
            }
            Ok(export) => {
                let presented = export.public_key.as_deref().map(crate::identity::PublicKey::from_base64url);
                if let (None, Some(Ok(key))) = (&peer.public_key, presented) {
                    peer.public_key = Some(key.to_base64url());
                    peer.key_id = Some(key.key_id().to_string());
                }
                peer.status = PeerStatus::Online;
                peer.last_error = None;
                peer.last_seen_at = now.to_owned();
                // Said by the peer at each sync (a peer replaced by an older node stops saying it).
                if export.idempotent_submit {
                    peer.metadata.insert(IDEMPOTENT_SUBMIT.into(), Value::Bool(true));
                } else {
                    peer.metadata.remove(IDEMPOTENT_SUBMIT);
                }
                let mut metadata = JsonObject::new();
                if let Some(node_id) = export.node_id.filter(|n| !n.is_empty()) {
                    peer.metadata.insert("node_id".into(), Value::String(node_id.clone()));
                    metadata.insert("source_node_id".into(), Value::String(node_id));
                }
                let mut targets: Vec<PeerTargetRecord> = export
                    .targets
                    .into_iter()
                    .map(|t| PeerTargetRecord {
                        peer_id: fetched.peer_id.clone(),
                        display_name: t.target_id.clone(),
                        target_id: t.target_id,
                        capabilities: t.capabilities,
                        defaults: t.defaults,
                        metadata: metadata.clone(),
                        status: "available".into(),
                        synced_at: now.to_owned(),
                    })
                    .collect();
                targets.sort_by(|a, b| a.target_id.cmp(&b.target_id));
                targets.dedup_by(|a, b| a.target_id == b.target_id);
                self.targets.insert(fetched.peer_id.clone(), targets);
                true
            }
            Err(error) => {
                peer.status = PeerStatus::Offline;
                peer.last_error = Some(error);
                false
            }
        };
        let peer = peer.clone();
        let targets = self.targets.get(&fetched.peer_id).cloned().unwrap_or_default();
        Some((PeerSynced { peer, targets }, replaced))
    }

    /// The pinned keys of every peer (what signed node requests are checked against).
    pub fn pinned(&self) -> Vec<crate::identity::node_auth::PinnedPeer> {
        self.peers
            .values()
            .filter_map(|p| {
                let key = crate::identity::PublicKey::from_base64url(p.public_key.as_deref()?).ok()?;
                let node_id = p.metadata.get("node_id").and_then(Value::as_str).unwrap_or(&p.peer_id).to_owned();
                Some(crate::identity::node_auth::PinnedPeer { node_id, key })
            })
            .collect()
    }

    /// Every peer, by display name then id.
    pub fn peers(&self) -> Vec<PeerRecord> {
        let mut out: Vec<PeerRecord> = self.peers.values().cloned().collect();
        out.sort_by(|a, b| (&a.display_name, &a.peer_id).cmp(&(&b.display_name, &b.peer_id)));
        out
    }

    /// One peer.
    pub fn peer(&self, peer_id: &str) -> Option<&PeerRecord> {
        self.peers.get(peer_id)
    }

    /// A peer's cached targets.
    pub fn targets_of(&self, peer_id: &str) -> Vec<PeerTargetRecord> {
        self.targets.get(peer_id).cloned().unwrap_or_default()
    }

    /// The routing snapshot of this book.
    pub fn table(&self) -> PeerTable {
        let mut entries: BTreeMap<String, Vec<PeerTarget>> = BTreeMap::new();
        for (peer_id, targets) in &self.targets {
            let Some(peer) = self.peers.get(peer_id) else { continue };
            for t in targets {
                entries.entry(t.target_id.clone()).or_default().push(PeerTarget {
                    peer_id: peer.peer_id.clone(),
                    base_url: peer.base_url.clone(),
                    status: peer.status,
                    resubmit_safe: resubmit_safe(peer),
                    target: t.clone(),
                });
            }
        }
        PeerTable { entries, pinned: self.pinned() }
    }
}

/// The peer metadata key a sync sets when the peer's identity document says its node submits
/// are idempotent.
pub const IDEMPOTENT_SUBMIT: &str = "idempotent_submit";

/// Whether a relay to `peer` may be submitted again after a restart: the peer has a pinned key
/// and its identity document (checked at every sync) says its submits are idempotent. Pure.
pub fn resubmit_safe(peer: &PeerRecord) -> bool {
    peer.key_id.is_some() && peer.metadata.get(IDEMPOTENT_SUBMIT).and_then(Value::as_bool) == Some(true)
}

/// A cached target with the peer that exports it.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerTarget {
    pub peer_id: String,
    pub base_url: String,
    pub status: PeerStatus,
    /// [`resubmit_safe`] of the peer (see `TargetSpec::resubmit_safe`).
    pub resubmit_safe: bool,
    pub target: PeerTargetRecord,
}

impl PeerTarget {
    /// The target as the task and its runtime see it: adapter `peer`, endpoint the peer's base
    /// URL, owner the peer id.
    pub fn spec(&self) -> TargetSpec {
        TargetSpec {
            target_id: self.target.target_id.clone(),
            adapter: PEER_ADAPTER.into(),
            dialect: None,
            endpoint: Some(self.base_url.clone()),
            healthcheck: None,
            launch: LaunchSpec::default(),
            defaults: self.target.defaults.clone(),
            capabilities: self.target.capabilities.clone(),
            owner: self.peer_id.clone(),
            source: TargetSource::Peer,
            permissions: None,
            resubmit_safe: self.resubmit_safe,
        }
    }
}

/// Why a sync's export cannot be accepted: the peer presents a key other than the pinned one
/// (never re-pinned silently). Pure.
fn key_conflict(peer: &PeerRecord, export: &Export) -> Option<String> {
    let pinned = peer.key_id.as_deref()?;
    let presented = crate::identity::PublicKey::from_base64url(export.public_key.as_deref()?).ok()?.key_id();
    (presented.as_str() != pinned).then(|| {
        format!(
            "peer key changed: pinned {pinned}, the peer presents {presented}; not re-pinned (re-pin explicitly: POST /v1/peers with public_key and \"replace_key\": true)"
        )
    })
}

/// What a target id resolves to among peer targets.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerLookup<'a> {
    None,
    One(&'a PeerTarget),
    /// Several peers export it: a routing conflict naming them.
    Several(Vec<String>),
}

/// Every cached peer target, by target id, and every pinned peer key (a snapshot; never mutated
/// once published).
#[derive(Clone, Debug, Default)]
pub struct PeerTable {
    entries: BTreeMap<String, Vec<PeerTarget>>,
    /// What signed node-protocol requests are checked against: read from the snapshot, so an
    /// incoming relay does not wait for the directory actor (published with every change).
    pinned: Vec<node_auth::PinnedPeer>,
}

impl PeerTable {
    /// The pinned key of every peer that has one.
    pub fn pinned(&self) -> &[node_auth::PinnedPeer] {
        &self.pinned
    }

    /// The peers exporting `target_id`.
    pub fn lookup(&self, target_id: &str) -> PeerLookup<'_> {
        match self.entries.get(target_id).map(Vec::as_slice) {
            None | Some([]) => PeerLookup::None,
            Some([one]) => PeerLookup::One(one),
            Some(many) => PeerLookup::Several(many.iter().map(|t| t.peer_id.clone()).collect()),
        }
    }

    /// Every cached target, by target id then peer id.
    pub fn iter(&self) -> impl Iterator<Item = &PeerTarget> {
        self.entries.values().flatten()
    }
}

/// Reads a peer's export: its health (node id) and its targets, bounded by [`PEER_SYNC_TIMEOUT`].
pub async fn fetch_export(
    client: &reqwest::Client,
    base_url: &str,
    signer: Option<&NodeIdentity>,
) -> Result<Export, String> {
    let fetch = async {
        let health: Value = get_json(client, &format!("{base_url}/v1/node/health"), signer)
            .await
            .map_err(|e| format!("peer health: {e}"))?;
        let listing: Value = get_json(client, &format!("{base_url}/v1/targets"), signer)
            .await
            .map_err(|e| format!("peer targets: {e}"))?;
        // A Go peer has no identity document: it is synced without a key (nothing to pin).
        let identity = get_json(client, &format!("{base_url}/v1/node/identity"), signer).await.ok();
        let mut export = export_of(&health, &listing);
        export.public_key =
            identity.as_ref().and_then(|d| d.pointer("/public_key/key")).and_then(Value::as_str).map(str::to_owned);
        export.idempotent_submit =
            identity.as_ref().and_then(|d| d.get("idempotent_submit")).and_then(Value::as_bool).unwrap_or(false);
        Ok::<_, String>(export)
    };
    match tokio::time::timeout(PEER_SYNC_TIMEOUT, fetch).await {
        Ok(result) => result,
        Err(_) => Err(format!("peer sync timed out after {} s", PEER_SYNC_TIMEOUT.as_secs())),
    }
}

async fn get_json(client: &reqwest::Client, url: &str, signer: Option<&NodeIdentity>) -> Result<Value, String> {
    let mut request = client.get(url);
    if let Some(identity) = signer {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        for (name, value) in node_auth::signed_headers(identity, "GET", &node_auth::target_of(&parsed), b"") {
            request = request.header(name, value);
        }
    }
    let resp = request.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    resp.json::<Value>().await.map_err(|e| format!("{url}: {e}"))
}

/// The export in a peer's answers: its local targets only (no transitive re-export), and not
/// those it lists as not dispatchable. Pure.
pub fn export_of(health: &Value, listing: &Value) -> Export {
    let node_id = health.get("node_id").and_then(Value::as_str).map(str::to_owned);
    let targets = listing
        .get("targets")
        .and_then(Value::as_array)
        .map(|all| {
            all.iter()
                .filter(|t| t.get("owner").and_then(Value::as_str).is_none_or(|o| o == "local"))
                .filter(|t| t.get("state").and_then(Value::as_str) != Some("not_dispatchable"))
                .filter_map(|t| {
                    let target_id = t.get("target_id")?.as_str()?.to_owned();
                    let capabilities = t
                        .get("capabilities")
                        .and_then(Value::as_array)
                        .map(|c| c.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default();
                    let defaults = t.get("defaults").and_then(Value::as_object).cloned().unwrap_or_default();
                    Some(ExportedTarget { target_id, capabilities, defaults })
                })
                .collect()
        })
        .unwrap_or_default();
    Export { node_id, public_key: None, idempotent_submit: false, targets }
}

/// Messages of the peer directory.
pub enum PeerMsg {
    /// Validate, persist and publish a peer.
    Upsert(Box<PeerUpsert>, RpcReplyPort<Result<PeerRecord, PeerError>>),
    /// Every peer.
    List(RpcReplyPort<Vec<PeerRecord>>),
    /// Sync one peer (`Some`) or all; answered once every fetch is applied (`reply` `None`:
    /// the background timer).
    Sync { peer_id: Option<String>, reply: Option<RpcReplyPort<Result<Vec<PeerSynced>, PeerError>>> },
    /// Internal: the fetches of a sync, cast back by the spawned task.
    Fetched { results: Vec<Fetched>, reply: Option<RpcReplyPort<Result<Vec<PeerSynced>, PeerError>>> },
}

/// Arguments of the peer directory.
pub struct PeerArgs {
    /// To load peers at start.
    pub reader: StoreReader,
    /// To persist peers and sync outcomes.
    pub storage: Arc<Slot<StorageMsg>>,
    /// Where the routing snapshot is published.
    pub publish: watch::Sender<Arc<PeerTable>>,
    /// Background sync period; zero disables it.
    pub sync_interval: Duration,
    /// Signs sync requests (`None`: unsigned, core tests).
    pub signer: Option<Arc<NodeIdentity>>,
}

/// State of the peer directory.
pub struct PeerState {
    /// Peers and cached targets: the decisions.
    book: PeerBook,
    /// Persists every change before it is published.
    storage: Arc<Slot<StorageMsg>>,
    /// Publishes the routing snapshot after each change.
    publish: watch::Sender<Arc<PeerTable>>,
    /// Shared HTTP client of every fetch (connection reuse).
    client: reqwest::Client,
    /// Background sync period (zero: none).
    sync_interval: Duration,
    /// Signs every sync request with this node's key (`None`: unsigned).
    signer: Option<Arc<NodeIdentity>>,
}

impl PeerState {
    async fn persist(&self, peer: &PeerRecord, targets: Option<Vec<PeerTargetRecord>>) -> Result<(), PeerError> {
        let op = WriteOp::Peer { peer: Box::new(peer.clone()), targets };
        self.storage.ask(ASK_TIMEOUT, |reply| StorageMsg::Write(op, reply)).await??;
        Ok(())
    }

    fn publish(&self) {
        let _ = self.publish.send(Arc::new(self.book.table()));
        for (status, count) in self.book.status_counts() {
            metrics::gauge!(crate::telemetry::PEERS, "status" => status).set(count as f64);
        }
    }
}

/// The peer directory actor.
pub struct PeerDirectory;

impl Actor for PeerDirectory {
    type Msg = PeerMsg;
    type State = PeerState;
    type Arguments = PeerArgs;

    async fn pre_start(&self, _myself: ActorRef<PeerMsg>, args: PeerArgs) -> Result<PeerState, ActorProcessingErr> {
        let book = PeerBook::load(args.reader.peers().await?, args.reader.peer_targets().await?);
        let client = reqwest::Client::builder().timeout(PEER_SYNC_TIMEOUT).build()?;
        let state = PeerState {
            book,
            storage: args.storage,
            publish: args.publish,
            client,
            sync_interval: args.sync_interval,
            signer: args.signer,
        };
        state.publish();
        Ok(state)
    }

    async fn post_start(&self, myself: ActorRef<PeerMsg>, state: &mut PeerState) -> Result<(), ActorProcessingErr> {
        if !state.sync_interval.is_zero() {
            // First run after one interval, not at boot (contract §9.3).
            myself.send_interval(state.sync_interval, || PeerMsg::Sync { peer_id: None, reply: None });
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<PeerMsg>,
        msg: PeerMsg,
        state: &mut PeerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PeerMsg::Upsert(req, reply) => {
                let mut book = state.book.clone();
                let result = match book.upsert(*req, &clock::now_rfc3339()) {
                    Ok((record, moved)) => {
                        let targets = moved.then(Vec::new);
                        match state.persist(&record, targets).await {
                            Ok(()) => {
                                state.book = book;
                                state.publish();
                                Ok(record)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            PeerMsg::List(reply) => {
                let _ = reply.send(state.book.peers());
            }
            PeerMsg::Sync { peer_id, reply } => {
                let peers: Vec<(String, String)> = match &peer_id {
                    Some(id) => match state.book.peer(id) {
                        Some(p) => vec![(p.peer_id.clone(), p.base_url.clone())],
                        None => {
                            if let Some(reply) = reply {
                                let _ = reply.send(Err(PeerError::NotFound(id.clone())));
                            }
                            return Ok(());
                        }
                    },
                    None => state.book.peers().into_iter().map(|p| (p.peer_id, p.base_url)).collect(),
                };
                let (client, signer) = (state.client.clone(), state.signer.clone());
                tokio::spawn(async move {
                    let fetches = peers.into_iter().map(|(peer_id, base_url)| {
                        let (client, signer) = (client.clone(), signer.clone());
                        async move {
                            let outcome = fetch_export(&client, &base_url, signer.as_deref()).await;
                            Fetched { peer_id, base_url, outcome }
                        }
                    });
                    let results = futures::future::join_all(fetches).await;
                    let _ = myself.cast(PeerMsg::Fetched { results, reply });
                });
            }
            PeerMsg::Fetched { results, reply } => {
                let now = clock::now_rfc3339();
                let mut synced = Vec::with_capacity(results.len());
                let mut failure = None;
                for fetched in results {
                    let peer_id = fetched.peer_id.clone();
                    if let Err(error) = &fetched.outcome {
                        tracing::warn!(actor_kind = "peers", peer_id = %peer_id, %error, "peer sync failed");
                    }
                    let mut book = state.book.clone();
                    let Some((outcome, replaced)) = book.apply(fetched, &now) else { continue };
                    let targets = replaced.then(|| outcome.targets.clone());
                    match state.persist(&outcome.peer, targets).await {
                        Ok(()) => {
                            state.book = book;
                            synced.push(outcome);
                        }
                        Err(e) => {
                            tracing::warn!(actor_kind = "peers", peer_id = %peer_id, error = %e, "peer sync not persisted");
                            failure = Some(e);
                        }
                    }
                }
                state.publish();
                if let Some(reply) = reply {
                    let _ = reply.send(match failure {
                        Some(e) if synced.is_empty() => Err(e),
                        _ => Ok(synced),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The JSON of a sync answer (contract §2.10 PeerSyncResponse).
pub fn sync_response(synced: &PeerSynced) -> Value {
    json!({ "peer": synced.peer, "targets": synced.targets })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(id: &str, url: &str) -> PeerUpsert {
        PeerUpsert { peer_id: id.into(), base_url: url.into(), ..Default::default() }
    }

    fn export(ids: &[&str]) -> Export {
        Export {
            node_id: Some("node-b".into()),
            public_key: None,
            idempotent_submit: false,
            targets: ids
                .iter()
                .map(|id| ExportedTarget { target_id: (*id).into(), capabilities: vec![], defaults: JsonObject::new() })
                .collect(),
        }
    }

    #[test]
    fn registrations_are_validated() {
        let cases: [(PeerUpsert, Result<&str, &str>); 6] = [
            (upsert("", "http://x"), Err("peer_id required")),
            (upsert("b", "ftp://x"), Err("peer base_url invalid")),
            (upsert("b", "not a url"), Err("peer base_url invalid")),
            (upsert("b", ""), Err("peer base_url invalid")),
            (upsert("b", "http://127.0.0.1:9/"), Ok("http://127.0.0.1:9")),
            (upsert("b", "https://node.example/base/"), Ok("https://node.example/base")),
        ];
        for (req, want) in cases {
            let got = PeerBook::default().upsert(req, "t").map(|(r, _)| r.base_url).map_err(|e| e.to_string());
            match want {
                Ok(url) => assert_eq!(got.as_deref(), Ok(url)),
                Err(prefix) => assert!(got.as_ref().is_err_and(|e| e.starts_with(prefix)), "{got:?}"),
            }
        }
    }

    #[test]
    fn sync_outcomes_update_the_book() {
        let mut book = PeerBook::default();
        book.upsert(upsert("b", "http://b"), "t0").ok();
        book.upsert(upsert("c", "http://c"), "t0").ok();
        let ok = |id: &str, url: &str, ids: &[&str]| Fetched {
            peer_id: id.into(),
            base_url: url.into(),
            outcome: Ok(export(ids)),
        };
        let (b, replaced) = book.apply(ok("b", "http://b", &["x", "y"]), "t1").unwrap_or_else(|| panic!("applied"));
        assert!(replaced);
        assert_eq!(b.peer.status, PeerStatus::Online);
        assert_eq!(b.peer.metadata.get("node_id"), Some(&json!("node-b")));
        assert_eq!(b.targets.len(), 2);
        // A failure keeps the targets and records the error.
        let failed = Fetched { peer_id: "b".into(), base_url: "http://b".into(), outcome: Err("down".into()) };
        let (b, replaced) = book.apply(failed, "t2").unwrap_or_else(|| panic!("applied"));
        assert!(!replaced);
        assert_eq!(
            (b.peer.status, b.peer.last_error.as_deref(), b.targets.len()),
            (PeerStatus::Offline, Some("down"), 2)
        );
        // A stale result (peer moved meanwhile) is ignored; a target dropped by the peer goes.
        assert!(book.apply(ok("b", "http://old", &[]), "t3").is_none());
        book.apply(ok("b", "http://b", &["x"]), "t4");
        book.apply(ok("c", "http://c", &["x", "z"]), "t4");
        let table = book.table();
        assert_eq!(table.lookup("x"), PeerLookup::Several(vec!["b".into(), "c".into()]));
        assert!(matches!(table.lookup("z"), PeerLookup::One(t) if t.peer_id == "c" && t.spec().owner == "c"));
        assert_eq!(table.lookup("y"), PeerLookup::None);
        // Re-registering elsewhere drops the cache until the next sync.
        let (record, moved) = book.upsert(upsert("c", "http://c2"), "t5").unwrap_or_else(|e| panic!("{e}"));
        assert!(moved);
        assert_eq!(record.status, PeerStatus::Offline);
        assert_eq!(book.table().lookup("z"), PeerLookup::None);
    }

    #[test]
    fn keys_are_pinned_once_and_re_pinned_only_explicitly() {
        /// What happens to peer `b`.
        enum Step {
            /// A sync where the peer presents key `seed`.
            Sync(u8),
            /// A registration with key `seed` (`replace_key`), or none.
            Add(Option<u8>, bool),
        }
        let key = |seed: u8| crate::identity::NodeKey::from_seed(&[seed; 32]).public_key();
        let id = |seed: u8| Some(key(seed).key_id().to_string());
        // (step, the pinned key after it, what the step's error or the peer's last error says)
        let cases = [
            (Step::Add(None, false), None, None),
            (Step::Sync(1), id(1), None),
            (Step::Sync(2), id(1), Some("peer key changed")),
            (Step::Add(Some(2), false), id(1), Some("replace_key")),
            (Step::Add(Some(2), true), id(2), None),
            (Step::Sync(2), id(2), None),
            (Step::Add(None, false), id(2), None),
        ];
        let mut book = PeerBook::default();
        for (i, (step, pinned, error)) in cases.into_iter().enumerate() {
            let said = match step {
                Step::Sync(seed) => {
                    let outcome = Ok(Export { public_key: Some(key(seed).to_base64url()), ..export(&["x"]) });
                    let fetched = Fetched { peer_id: "b".into(), base_url: "http://b".into(), outcome };
                    book.apply(fetched, "t").and_then(|(s, _)| s.peer.last_error)
                }
                Step::Add(seed, replace_key) => {
                    let public_key = seed.map(|s| key(s).to_base64url());
                    let req = PeerUpsert { public_key, replace_key, ..upsert("b", "http://b") };
                    book.upsert(req, "t").err().map(|e| e.to_string())
                }
            };
            assert_eq!(book.peer("b").and_then(|p| p.key_id.clone()), pinned, "step {i}");
            match error {
                Some(part) => assert!(said.as_deref().is_some_and(|s| s.contains(part)), "step {i}: {said:?}"),
                None => assert_eq!(said, None, "step {i}"),
            }
        }
        assert_eq!(book.pinned().len(), 1);
    }

    #[test]
    fn relays_are_resubmit_safe_only_to_pinned_peers_that_say_their_submits_are_idempotent() {
        let key = crate::identity::NodeKey::from_seed(&[7; 32]).public_key().to_base64url();
        // (the sync's key, whether its identity says idempotent, resubmit-safe after it)
        let cases = [
            (None, false, false),       // a Go node: no identity document
            (None, true, false),        // says so, but nothing is pinned
            (Some(&key), false, false), // an AethroLink node that does not dedupe submits
            (Some(&key), true, true),
            (Some(&key), false, false), // said at each sync: a replaced node stops saying it
        ];
        let mut book = PeerBook::default();
        book.upsert(upsert("b", "http://b"), "t").unwrap_or_else(|e| panic!("{e}"));
        for (i, (public_key, idempotent_submit, want)) in cases.into_iter().enumerate() {
            let export = Export { public_key: public_key.cloned(), idempotent_submit, ..export(&["x"]) };
            let fetched = Fetched { peer_id: "b".into(), base_url: "http://b".into(), outcome: Ok(export) };
            book.apply(fetched, "t");
            let table = book.table();
            let PeerLookup::One(target) = table.lookup("x") else { panic!("step {i}: x not routed to b") };
            assert_eq!(target.spec().resubmit_safe, want, "step {i}");
            assert_eq!(book.peer("b").map(resubmit_safe), Some(want), "step {i}");
        }
    }

    #[test]
    fn exports_skip_peer_owned_and_undispatchable_targets() {
        let listing = json!({"targets": [
            {"target_id": "a", "owner": "local", "capabilities": ["chat"], "defaults": {"k": 1}},
            {"target_id": "b", "owner": "other-peer"},
            {"target_id": "c", "owner": "local", "state": "not_dispatchable"},
        ]});
        let got = export_of(&json!({"node_id": "n"}), &listing);
        assert_eq!(got.node_id.as_deref(), Some("n"));
        assert_eq!(got.targets.len(), 1);
        assert_eq!(got.targets[0].capabilities, vec!["chat".to_owned()]);
    }
}
