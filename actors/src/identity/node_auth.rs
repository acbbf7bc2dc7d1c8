//! Node-protocol authentication, pure: how an origin signs a request to a peer, and how a
//! destination decides who signed one. Both bindings (HTTP node protocol, later gRPC) gather
//! the headers and body and call [`authenticate`]; the nonce cache is theirs (one per process).
//!
//! A signed request carries the RFC 9421 headers of [`super::signature`] plus two that name the
//! signer: [`NODE_ID_HEADER`] (the origin node id, informational) and [`NODE_KEY_HEADER`] (its
//! public key, base64url: a destination that accepts any node needs the key, the `keyid` is only
//! its thumbprint). The `keyid` must be the thumbprint of that key.

use super::signature::{self, NonceCache, ReceivedHeaders, RequestParts, SignatureError};
use super::{KeyId, NodeIdentity, PublicKey};

/// Names the origin node id on signed requests.
pub const NODE_ID_HEADER: &str = "alink-node-id";
/// Carries the signer's public key (base64url) on signed requests.
pub const NODE_KEY_HEADER: &str = "alink-node-key";

/// The headers a signed node request carries: `(name, value)` pairs.
pub fn signed_headers(identity: &NodeIdentity, method: &str, target: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let request = RequestParts { method, target, body };
    let signed = signature::sign(identity.key(), &request, unix_now(), &signature::new_nonce());
    let mut out: Vec<(&'static str, String)> = signed.pairs().iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
    out.push((NODE_ID_HEADER, identity.node_id().to_owned()));
    out.push((NODE_KEY_HEADER, identity.public_key().to_base64url()));
    out
}

/// The request target (path and query) of a URL, as signed.
pub fn target_of(url: &reqwest::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Now, in unix seconds (what `created` is).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A registered peer's pinned key: who a signature by it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedPeer {
    /// The principal a request signed by this key acts as (the peer's node id, else its peer id).
    pub node_id: String,
    pub key: PublicKey,
}

/// Which signed callers a destination accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptPolicy {
    /// Only registered peers, by pinned key (the default).
    RegisteredPeers,
    /// Any correctly signed node (`--accept-from-any-node`).
    AnyNode,
}

/// What a node request carried.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeRequestHeaders<'a> {
    pub signature: ReceivedHeaders<'a>,
    /// [`NODE_KEY_HEADER`].
    pub node_key: Option<&'a str>,
}

impl NodeRequestHeaders<'_> {
    /// Whether the request carries any signature header at all (unsigned: the Go-compat path).
    pub fn is_signed(&self) -> bool {
        self.signature.signature.is_some() || self.signature.signature_input.is_some()
    }
}

/// Who signed an accepted request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The node the request acts as: a pinned peer's node id, or (any-node mode, unregistered
    /// key) the id derived from the key, which no other key can claim.
    pub node_id: String,
    pub key_id: KeyId,
    /// Whether the key is a registered peer's pinned key.
    pub registered: bool,
}

/// Why a signed request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("node signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("node signature refused: the {NODE_KEY_HEADER} header is not a valid ed25519 public key")]
    BadNodeKey,
    #[error(
        "node signature refused: key {0} is not the pinned key of a registered peer (this node accepts relayed work only from registered peers; start it with --accept-from-any-node to accept any signed node)"
    )]
    NotRegistered(KeyId),
}

impl AuthError {
    /// A short label for metrics (`alink_auth_failures_total{reason}`).
    pub fn reason(&self) -> &'static str {
        use crate::identity::signature::SignatureError as S;
        match self {
            AuthError::BadNodeKey => "bad_node_key",
            AuthError::NotRegistered(_) => "not_registered",
            AuthError::Signature(e) => match e {
                S::MissingHeader(_) | S::Malformed { .. } => "malformed",
                S::UnsupportedAlgorithm(_) | S::UnsupportedComponent(_) | S::UnsupportedDigest => "unsupported",
                S::NotCovered(_) => "not_covered",
                S::UnknownKey(_) => "unknown_key",
                S::BadSignature => "bad_signature",
                S::DigestMismatch => "digest_mismatch",
                S::Stale { .. } | S::Future { .. } => "stale",
                S::Replayed => "replayed",
                S::NonceCacheFull => "nonce_cache_full",
            },
        }
    }
}

/// Checks a signed node request against the pinned peers and the policy; on success its nonce
/// is remembered in `nonces` (a replay of it is refused).
pub fn authenticate(
    headers: &NodeRequestHeaders<'_>,
    request: &RequestParts<'_>,
    pinned: &[PinnedPeer],
    policy: AcceptPolicy,
    now: i64,
    nonces: &mut NonceCache,
) -> Result<Authenticated, AuthError> {
    let offered = match headers.node_key {
        Some(k) => Some(PublicKey::from_base64url(k.trim()).map_err(|_| AuthError::BadNodeKey)?),
        None => None,
    };
    let lookup = |key_id: &str| {
        pinned
            .iter()
            .map(|p| p.key)
            .chain(offered.filter(|_| policy == AcceptPolicy::AnyNode))
            .find(|k| k.key_id().as_str() == key_id)
    };
    let verified = match signature::verify(&headers.signature, request, &lookup, now, nonces) {
        Err(SignatureError::UnknownKey(id)) if policy == AcceptPolicy::RegisteredPeers => {
            let key_id = offered.map(|k| k.key_id()).filter(|k| k.as_str() == id);
            return Err(match key_id {
                Some(k) => AuthError::NotRegistered(k),
                None => AuthError::Signature(SignatureError::UnknownKey(id)),
            });
        }
        other => other?,
    };
    if let Some(peer) = pinned.iter().find(|p| p.key.key_id() == verified.key_id) {
        return Ok(Authenticated { node_id: peer.node_id.clone(), key_id: verified.key_id, registered: true });
    }
    let derived = offered.map(|k| k.derived_node_id()).unwrap_or_default();
    Ok(Authenticated { node_id: derived, key_id: verified.key_id, registered: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::identity::NodeKey;

    fn identity(seed: u8) -> NodeIdentity {
        NodeIdentity::new(format!("node-{seed}"), NodeKey::from_seed(&[seed; 32]), Timestamp::now())
    }

    fn received<'a>(pairs: &'a [(&'static str, String)]) -> (ReceivedHeaders<'a>, Option<&'a str>) {
        let get = |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        (
            ReceivedHeaders {
                content_digest: get("content-digest"),
                signature_input: get("signature-input"),
                signature: get("signature"),
            },
            get(NODE_KEY_HEADER),
        )
    }

    #[test]
    fn pinned_any_unknown_forged_and_replayed() {
        let (a, b) = (identity(1), identity(2));
        let pinned = [PinnedPeer { node_id: "peer-a".into(), key: a.public_key() }];
        let body = br#"{"x":1}"#;
        let request = RequestParts { method: "POST", target: "/v1/node/tasks", body };
        let now = unix_now();
        let mut nonces = NonceCache::default();
        let check = |who: &NodeIdentity, policy, nonces: &mut NonceCache, body: &[u8]| {
            let pairs = signed_headers(who, "POST", "/v1/node/tasks", body);
            let (signature, node_key) = received(&pairs);
            let headers = NodeRequestHeaders { signature, node_key };
            authenticate(&headers, &request, &pinned, policy, now, nonces).map(|a| (a.node_id, a.registered))
        };
        type Case<'a> = (&'a NodeIdentity, AcceptPolicy, &'a [u8], Result<(String, bool), &'a str>);
        let cases: [Case<'_>; 4] = [
            (&a, AcceptPolicy::RegisteredPeers, body, Ok(("peer-a".into(), true))),
            (&b, AcceptPolicy::RegisteredPeers, body, Err("not the pinned key")),
            (&b, AcceptPolicy::AnyNode, body, Ok((b.public_key().derived_node_id(), false))),
            (&a, AcceptPolicy::RegisteredPeers, b"{}", Err("content-digest does not match")),
        ];
        for (who, policy, signed_body, want) in cases {
            let got = check(who, policy, &mut nonces, signed_body).map_err(|e| e.to_string());
            match want {
                Ok(w) => assert_eq!(got, Ok(w)),
                Err(part) => assert!(got.as_ref().is_err_and(|e| e.contains(part)), "{got:?}"),
            }
        }
        // The same headers twice: the second is a replay.
        let pairs = signed_headers(&a, "POST", "/v1/node/tasks", body);
        let (signature, node_key) = received(&pairs);
        let headers = NodeRequestHeaders { signature, node_key };
        assert!(authenticate(&headers, &request, &pinned, AcceptPolicy::RegisteredPeers, now, &mut nonces).is_ok());
        let again = authenticate(&headers, &request, &pinned, AcceptPolicy::RegisteredPeers, now, &mut nonces);
        assert_eq!(again, Err(AuthError::Signature(SignatureError::Replayed)));
        // Stale.
        let stale = authenticate(&headers, &request, &pinned, AcceptPolicy::RegisteredPeers, now + 3600, &mut nonces);
        assert!(matches!(stale, Err(AuthError::Signature(SignatureError::Stale { .. }))), "{stale:?}");
    }
}
