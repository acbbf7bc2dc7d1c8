//! Node identity: the node's Ed25519 key pair, the id bound to it, and what is published of it.
//!
//! * [`NodeKey`] — the key pair (the secret never leaves it; `Debug` redacts it).
//! * [`PublicKey`] — what peers know: published as base64url (no padding), identified by its
//!   [`KeyId`], the RFC 7638 JWK thumbprint (SHA-256, base64url) of its RFC 8037 OKP form.
//! * [`PublicKey::derived_node_id`] — a new node's id: `node-` + the first 26 characters of the
//!   lowercase RFC 4648 base32 of SHA-256(raw public key) (130 bits). A node whose id existed
//!   before it had a key keeps that id; the identity document publishes the binding either way.
//! * [`key_file`] — the 0600 key file beside the database.
//! * [`signature`] — HTTP Message Signatures (RFC 9421) with `ed25519` and Content-Digest
//!   (RFC 9530), pure: what the node-protocol binding will sign and verify peers' requests with.

pub mod key_file;
pub mod node_auth;
mod sfv;
pub mod signature;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand::TryRngCore as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::clock::Timestamp;

/// The one signature algorithm nodes use (RFC 9421 §3.3.6 name).
pub const ALG_ED25519: &str = "ed25519";

/// Length of the base32 part of a derived node id (26 × 5 = 130 bits of the key's hash).
const DERIVED_ID_CHARS: usize = 26;

/// Why key material could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("public key is not 32 bytes of base64url")]
    PublicKeyEncoding,
    #[error("public key is not a valid Ed25519 point")]
    PublicKeyInvalid,
}

/// Key algorithms a published key may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlg {
    Ed25519,
}

/// The node's Ed25519 key pair.
#[derive(Clone)]
pub struct NodeKey {
    /// The secret key (the 32-byte seed); zeroized on drop by `ed25519-dalek`.
    signing: SigningKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey").field("key_id", &self.public_key().key_id()).finish_non_exhaustive()
    }
}

impl NodeKey {
    /// A new key pair from the operating system's random source.
    pub fn generate() -> Result<NodeKey, KeyError> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.try_fill_bytes(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(NodeKey::from_seed(&seed))
    }

    /// The key pair of a 32-byte Ed25519 seed (RFC 8032 secret key).
    pub fn from_seed(seed: &[u8; 32]) -> NodeKey {
        NodeKey { signing: SigningKey::from_bytes(seed) }
    }

    /// The seed, for the key file only.
    pub(crate) fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// A 32-byte secret for `purpose`, derived from the secret key (HMAC-SHA256 keyed with the
    /// seed): it lives wherever the key does, and reveals nothing about it.
    pub(crate) fn derive_key(&self, purpose: &[u8]) -> [u8; 32] {
        use hmac::Mac as _;
        let mut mac = match <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.seed()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts any key length"),
        };
        mac.update(purpose);
        mac.finalize().into_bytes().into()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// An Ed25519 signature of `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

/// An Ed25519 public key: what a peer checks this node's signatures with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_bytes(bytes).map(PublicKey).map_err(|_| KeyError::PublicKeyInvalid)
    }

    /// Reads the published form (base64url, no padding).
    pub fn from_base64url(text: &str) -> Result<PublicKey, KeyError> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| KeyError::PublicKeyEncoding)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::PublicKeyEncoding)?;
        PublicKey::from_bytes(&bytes)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The published form: base64url of the raw 32 bytes, no padding (as JWK `x`, RFC 8037).
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }

    /// The RFC 7638 JWK thumbprint: base64url(SHA-256(`{"crv":"Ed25519","kty":"OKP","x":…}`)).
    /// Stable for the key, and what signatures name in `keyid`.
    pub fn key_id(&self) -> KeyId {
        let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, self.to_base64url());
        KeyId(URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes())))
    }

    /// The id a new node takes: `node-` + 26 lowercase base32 characters of SHA-256(key).
    pub fn derived_node_id(&self) -> String {
        let hash = Sha256::digest(self.0.as_bytes());
        let mut encoded = base32_lower(&hash);
        encoded.truncate(DERIVED_ID_CHARS);
        format!("node-{encoded}")
    }

    /// Whether `signature` is this key's signature of `message` (strict: no malleable or
    /// small-order forms).
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature)).is_ok()
    }

    /// The published form of this key.
    pub fn published(&self) -> PublishedKey {
        PublishedKey { alg: KeyAlg::Ed25519, key: self.to_base64url() }
    }
}

/// A key's stable id (its JWK thumbprint).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A public key as the identity document and health publish it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublishedKey {
    pub alg: KeyAlg,
    /// base64url, no padding, of the raw key.
    pub key: String,
}

/// This node's identity: its id, bound to its key pair.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    /// The node id peers know this node by.
    node_id: String,
    /// The key pair the id is bound to.
    key: NodeKey,
    /// When the key was made (published, so a peer can tell a new key from an old one).
    created_at: Timestamp,
}

impl NodeIdentity {
    pub fn new(node_id: impl Into<String>, key: NodeKey, created_at: Timestamp) -> Self {
        NodeIdentity { node_id: node_id.into(), key, created_at }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    pub fn created_at(&self) -> &Timestamp {
        &self.created_at
    }
}

/// RFC 4648 base32, lowercase, no padding.
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn base32_matches_rfc_4648_vectors() {
        let table = [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ];
        for (input, expected) in table {
            assert_eq!(base32_lower(input.as_bytes()), expected, "base32({input:?})");
        }
    }

    /// RFC 8037 Appendix A: the Ed25519 key and its RFC 7638 thumbprint.
    #[test]
    fn key_id_is_the_rfc_8037_thumbprint() -> TestResult {
        let seed = URL_SAFE_NO_PAD.decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")?;
        let key = NodeKey::from_seed(&seed.as_slice().try_into()?);
        assert_eq!(key.public_key().to_base64url(), "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        assert_eq!(key.public_key().key_id().as_str(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        Ok(())
    }

    #[test]
    fn derived_node_id_is_stable_and_shaped() -> TestResult {
        let key = NodeKey::from_seed(&[7u8; 32]);
        let id = key.public_key().derived_node_id();
        assert_eq!(id, NodeKey::from_seed(&[7u8; 32]).public_key().derived_node_id());
        assert_ne!(id, NodeKey::from_seed(&[8u8; 32]).public_key().derived_node_id());
        let tail = id.strip_prefix("node-").ok_or("prefix")?;
        assert_eq!(tail.len(), 26);
        assert!(tail.chars().all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)), "{id}");
        Ok(())
    }

    #[test]
    fn published_key_round_trips_and_signatures_verify() -> TestResult {
        let key = NodeKey::generate()?;
        let public = PublicKey::from_base64url(&key.public_key().to_base64url())?;
        assert_eq!(public, key.public_key());
        let signature = key.sign(b"message");
        assert!(public.verifies(b"message", &signature));
        assert!(!public.verifies(b"messagE", &signature));
        assert!(PublicKey::from_base64url("not base64!").is_err());
        assert!(PublicKey::from_base64url("AAAA").is_err());
        assert!(!format!("{key:?}").contains(&URL_SAFE_NO_PAD.encode(key.seed())), "Debug must not print the secret");
        Ok(())
    }
}
