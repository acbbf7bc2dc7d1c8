//! Peer operations (contract §9.3): register a static peer, list peers, sync one or all (each
//! peer's targets are cached and listed with `owner` = the peer id).

use super::{Caller, ErrorKind, Need, ServiceError, Services};
use crate::model::PeerRecord;
use crate::peers::{PEER_SYNC_TIMEOUT, PeerError, PeerMsg, PeerSynced, PeerUpsert};
use crate::supervision::ASK_TIMEOUT;

/// A sync waits for every peer's fetch (each bounded) plus the writes.
const SYNC_ASK: std::time::Duration = PEER_SYNC_TIMEOUT.saturating_add(ASK_TIMEOUT);

impl From<PeerError> for ServiceError {
    fn from(e: PeerError) -> Self {
        let kind = match &e {
            PeerError::Invalid(_) => ErrorKind::Invalid,
            PeerError::NotFound(_) => ErrorKind::NotFound,
            PeerError::Storage(_) | PeerError::Ask(_) => ErrorKind::Unavailable,
        };
        ServiceError::new(kind, e.to_string())
    }
}

impl Services {
    /// Registers (or updates) a static peer; nothing is contacted.
    pub async fn add_peer(&self, caller: &Caller, req: PeerUpsert) -> Result<PeerRecord, ServiceError> {
        caller.require(Need::Operate)?;
        Ok(self.dir.peers.ask(ASK_TIMEOUT, |reply| PeerMsg::Upsert(Box::new(req), reply)).await??)
    }

    /// Every peer, by display name then id (no probing).
    pub async fn list_peers(&self, caller: &Caller) -> Result<Vec<PeerRecord>, ServiceError> {
        caller.require(Need::Read)?;
        Ok(self.dir.peers.ask(ASK_TIMEOUT, PeerMsg::List).await?)
    }

    /// Syncs one peer: 404 if unknown; a failed fetch is recorded on the peer (offline, its
    /// error) and answered 400 with that error (contract route 25).
    pub async fn sync_peer(&self, caller: &Caller, peer_id: &str) -> Result<PeerSynced, ServiceError> {
        caller.require(Need::Operate)?;
        let peer_id = peer_id.to_owned();
        let mut synced = self
            .dir
            .peers
            .ask(SYNC_ASK, |reply| PeerMsg::Sync { peer_id: Some(peer_id.clone()), reply: Some(reply) })
            .await??;
        let one = synced
            .pop()
            .ok_or_else(|| ServiceError::not_found(format!("peer not found: {peer_id} (removed during the sync)")))?;
        match &one.peer.last_error {
            Some(error) => {
                Err(ServiceError::invalid(format!("peer sync failed: {peer_id}: {error}"))
                    .with("peer_id", peer_id.clone()))
            }
            None => Ok(one),
        }
    }

    /// Syncs every peer concurrently; a failing peer does not stop the others (its error is on
    /// its record).
    pub async fn sync_peers(&self, caller: &Caller) -> Result<Vec<PeerSynced>, ServiceError> {
        caller.require(Need::Read)?;
        Ok(self.dir.peers.ask(SYNC_ASK, |reply| PeerMsg::Sync { peer_id: None, reply: Some(reply) }).await??)
    }
}
