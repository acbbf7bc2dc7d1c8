//! API tokens, purely: what a token looks like, the scopes it carries, how it is stored
//! (HMAC-SHA256 of its secret under a key only the node holds — a copy of the database reveals
//! no usable token) and how a presented token is checked. The service layer keeps the book of
//! tokens; storage persists [`TokenRecord`]s. One store serves every binding (the HTTP API's
//! `Authorization: Bearer`, the Aether gateway's `x-api-key`).
//!
//! A token reads `alink_<id>_<secret>`: the id (a ULID) finds the record, the secret (32 random
//! bytes, base64url) is compared against the stored HMAC in constant time.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::TryRngCore as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::clock::Timestamp;

/// What every token starts with: a secret scanner (and a human) can tell it is ours.
pub const TOKEN_PREFIX: &str = "alink_";
/// Bytes of randomness in a token's secret.
const SECRET_BYTES: usize = 32;

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Read tasks, their events and artifacts, targets, threads, node state.
    #[serde(rename = "tasks:read")]
    TasksRead,
    /// Create, cancel and resume tasks, continue threads (includes `tasks:read`).
    #[serde(rename = "tasks:write")]
    TasksWrite,
    /// Register, replace and unregister agents — including ones that spawn processes (a launch
    /// command, environment or working directory).
    #[serde(rename = "agents:register")]
    AgentsRegister,
    /// Everything: runtimes, peers, tokens.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope, in documentation order.
    pub const ALL: [Scope; 4] = [Scope::TasksRead, Scope::TasksWrite, Scope::AgentsRegister, Scope::Admin];

    /// The scope's wire name (`tasks:read`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::TasksRead => "tasks:read",
            Scope::TasksWrite => "tasks:write",
            Scope::AgentsRegister => "agents:register",
            Scope::Admin => "admin",
        }
    }

    /// Reads a wire name; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text.trim())
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored token. The secret itself is never stored, only its HMAC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Finds the record from a presented token; shown in listings, safe to log.
    pub token_id: String,
    /// What the operator called it (who or what holds it).
    pub name: String,
    /// What it allows (at least one).
    pub scopes: Vec<Scope>,
    /// Hex HMAC-SHA256 of the secret under the node's token key.
    #[serde(skip_serializing)]
    pub secret_hmac: String,
    pub created_at: Timestamp,
    /// After this the token is refused; `None`: it does not expire.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked; a revoked token is refused for good.
    pub revoked_at: Option<Timestamp>,
}

impl TokenRecord {
    /// Whether the token may be used at `now`.
    pub fn state_at(&self, now: &Timestamp) -> TokenState {
        if self.revoked_at.is_some() {
            TokenState::Revoked
        } else if self.expires_at.as_ref().is_some_and(|at| at <= now) {
            TokenState::Expired
        } else {
            TokenState::Active
        }
    }
}

/// A token's standing at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

/// Why a presented token was refused (the metric's `reason` label; never shown in detail to the
/// caller, who only learns that the token is not valid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not a token of this node")]
    Malformed,
    #[error("no such token")]
    Unknown,
    #[error("the token does not match")]
    Mismatch,
    #[error("the token has expired")]
    Expired,
    #[error("the token was revoked")]
    Revoked,
}

impl Rejection {
    /// Label value for metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Unknown => "unknown",
            Rejection::Mismatch => "mismatch",
            Rejection::Expired => "expired",
            Rejection::Revoked => "revoked",
        }
    }
}

/// Computes and checks token HMACs under the node's token key.
#[derive(Clone)]
pub struct TokenHasher {
    /// HMAC key; derived from the node's secret key, so it lives only where that key does.
    key: [u8; 32],
}

impl std::fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHasher(..)")
    }
}

impl TokenHasher {
    pub fn new(key: [u8; 32]) -> Self {
        TokenHasher { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length: this cannot fail.
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts any key length"),
        }
    }

    /// Hex HMAC of `secret`.
    pub fn hmac_hex(&self, secret: &str) -> String {
        let mut mac = self.mac();
        mac.update(secret.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `secret` is the one whose HMAC is `expected_hex` (constant time).
    pub fn matches(&self, secret: &str, expected_hex: &str) -> bool {
        let Ok(expected) = hex::decode(expected_hex) else { return false };
        let mut mac = self.mac();
        mac.update(secret.as_bytes());
        mac.verify_slice(&expected).is_ok()
    }
}

/// A token just made: the text is shown once, the record is stored.
#[derive(Clone, Debug)]
pub struct MintedToken {
    /// `alink_<id>_<secret>`: what the holder presents.
    pub token: String,
    pub record: TokenRecord,
}

/// Why a token could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// Makes a token with a fresh id and secret.
pub fn mint(
    hasher: &TokenHasher,
    name: String,
    mut scopes: Vec<Scope>,
    expires_at: Option<Timestamp>,
) -> Result<MintedToken, MintError> {
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.try_fill_bytes(&mut secret).map_err(|e| MintError::Random(e.to_string()))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let token_id = crate::ids::new_id().to_ascii_lowercase();
    scopes.sort();
    scopes.dedup();
    let record = TokenRecord {
        secret_hmac: hasher.hmac_hex(&secret),
        token_id: token_id.clone(),
        name,
        scopes,
        created_at: Timestamp::now(),
        expires_at,
        revoked_at: None,
    };
    Ok(MintedToken { token: format!("{TOKEN_PREFIX}{token_id}_{secret}"), record })
}

/// Splits a presented token into its id and secret; `None` if it is not shaped like ours.
pub fn split_token(text: &str) -> Option<(&str, &str)> {
    let rest = text.trim().strip_prefix(TOKEN_PREFIX)?;
    // The id (a ULID) has no '_'; the secret (base64url) may.
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 26 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    (id_ok && !secret.is_empty()).then_some((id, secret))
}

/// Checks a presented token's secret against its record at `now`.
pub fn check(hasher: &TokenHasher, record: &TokenRecord, secret: &str, now: &Timestamp) -> Result<(), Rejection> {
    // The secret first: the standing of a token is not revealed to someone who does not hold it.
    if !hasher.matches(secret, &record.secret_hmac) {
        return Err(Rejection::Mismatch);
    }
    match record.state_at(now) {
        TokenState::Active => Ok(()),
        TokenState::Expired => Err(Rejection::Expired),
        TokenState::Revoked => Err(Rejection::Revoked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> TokenHasher {
        TokenHasher::new([7u8; 32])
    }

    #[test]
    fn a_minted_token_checks_against_its_record_and_nothing_else() -> Result<(), MintError> {
        let h = hasher();
        let minted = mint(&h, "ci".into(), vec![Scope::TasksRead], None)?;
        let Some((id, secret)) = split_token(&minted.token) else { panic!("unsplittable {}", minted.token) };
        assert_eq!(id, minted.record.token_id);
        let now = Timestamp::now();
        assert_eq!(check(&h, &minted.record, secret, &now), Ok(()));
        assert_eq!(check(&h, &minted.record, "other", &now), Err(Rejection::Mismatch));
        // Another node's key does not accept it.
        assert_eq!(check(&TokenHasher::new([8u8; 32]), &minted.record, secret, &now), Err(Rejection::Mismatch));
        // The stored form is not the secret.
        assert!(!minted.record.secret_hmac.contains(secret));
        let json = serde_json::to_string(&minted.record).unwrap_or_default();
        assert!(!json.contains(&minted.record.secret_hmac), "the HMAC is never serialised: {json}");
        Ok(())
    }

    #[test]
    fn expired_and_revoked_tokens_are_refused() -> Result<(), MintError> {
        let h = hasher();
        let past = Timestamp::after(-1);
        let minted = mint(&h, "old".into(), vec![Scope::Admin], Some(past))?;
        let Some((_, secret)) = split_token(&minted.token) else { panic!() };
        assert_eq!(check(&h, &minted.record, secret, &Timestamp::now()), Err(Rejection::Expired));
        let mut revoked = mint(&h, "gone".into(), vec![Scope::Admin], Some(Timestamp::after(3600)))?;
        let Some((_, secret)) = split_token(&revoked.token) else { panic!() };
        revoked.record.revoked_at = Some(Timestamp::now());
        assert_eq!(check(&h, &revoked.record, secret, &Timestamp::now()), Err(Rejection::Revoked));
        Ok(())
    }

    #[test]
    fn only_our_shape_splits() {
        assert_eq!(split_token("Bearer x"), None);
        assert_eq!(split_token("alink_short_secret"), None);
        assert_eq!(split_token("alink_01jabcdefghjkmnpqrstvwxyz0_"), None);
        // A 25-character id is not a ULID.
        assert_eq!(split_token("alink_01jabcdefghjkmnpqrstvwxyz_a_b"), None);
        assert!(split_token("alink_01jabcdefghjkmnpqrstvwxyz0_a_b").is_some_and(|(_, s)| s == "a_b"));
    }

    #[test]
    fn scopes_have_wire_names() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
            assert_eq!(serde_json::to_value(scope).ok(), Some(serde_json::json!(scope.as_str())));
        }
        assert_eq!(Scope::parse("tasks:delete"), None);
    }
}
