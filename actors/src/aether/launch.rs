//! Task tokens for agents an orchestrator launches (lazy launch): the node mints a one-shot
//! token bound to the identity it asks to be started (`ag::{ws}::{impl}::{spec}`), hands it to
//! the orchestrator in the startup `TaskAssignment` (`launch_params["auth_token"]`), and the
//! launched agent connects with `credentials{"token"}`. A token admits that identity once,
//! within [`GRANT_TTL`]; only its SHA-256 is kept. Pure (the caller gives the random bytes and
//! the time).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::Digest;

/// How long a launch token may wait to be used.
pub const GRANT_TTL: Duration = Duration::from_secs(600);

/// A launch is not asked again for the same identity within this (the first is on its way).
pub const RELAUNCH_AFTER: Duration = Duration::from_secs(60);

/// Why a task token does not admit a connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantRefused {
    #[error("task token unknown, already used or expired")]
    Unknown,
    #[error("task token was issued for {issued_for}, not {claimed}")]
    OtherIdentity { issued_for: String, claimed: String },
}

#[derive(Clone, Debug)]
struct Grant {
    identity: String,
    issued: Instant,
}

/// Outstanding launch tokens, by the hash of their text.
#[derive(Debug, Default)]
pub struct LaunchBook {
    grants: HashMap<[u8; 32], Grant>,
}

fn hash(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl LaunchBook {
    /// Whether a launch of `identity` was asked recently (and its token not used yet).
    pub fn pending(&self, identity: &str, now: Instant) -> bool {
        self.grants.values().any(|g| g.identity == identity && now.duration_since(g.issued) < RELAUNCH_AFTER)
    }

    /// Mints a token for `identity` from 32 random bytes; returns its text (`alt_…`).
    pub fn mint(&mut self, identity: &str, random: [u8; 32], now: Instant) -> String {
        use base64::Engine;
        self.grants.retain(|_, g| now.duration_since(g.issued) < GRANT_TTL);
        let token = format!("alt_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random));
        self.grants.insert(hash(&token), Grant { identity: identity.to_owned(), issued: now });
        token
    }

    /// Admits `claimed` with `token` once: the token is used up.
    pub fn redeem(&mut self, token: &str, claimed: &str, now: Instant) -> Result<(), GrantRefused> {
        let key = hash(token);
        let grant = self.grants.get(&key).filter(|g| now.duration_since(g.issued) < GRANT_TTL).cloned();
        let Some(grant) = grant else {
            self.grants.remove(&key);
            return Err(GrantRefused::Unknown);
        };
        if grant.identity != claimed {
            return Err(GrantRefused::OtherIdentity { issued_for: grant.identity, claimed: claimed.to_owned() });
        }
        self.grants.remove(&key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_admits_its_identity_once_within_its_lifetime() {
        let mut book = LaunchBook::default();
        let now = Instant::now();
        let token = book.mint("ag::ws::w::1", [7; 32], now);
        assert!(token.starts_with("alt_") && book.pending("ag::ws::w::1", now));
        assert!(!book.pending("ag::ws::w::1", now + RELAUNCH_AFTER));
        assert_eq!(
            book.redeem(&token, "ag::ws::w::2", now),
            Err(GrantRefused::OtherIdentity { issued_for: "ag::ws::w::1".into(), claimed: "ag::ws::w::2".into() })
        );
        assert_eq!(book.redeem(&token, "ag::ws::w::1", now), Ok(()));
        assert_eq!(book.redeem(&token, "ag::ws::w::1", now), Err(GrantRefused::Unknown));
        let late = book.mint("ag::ws::w::1", [8; 32], now);
        assert_eq!(book.redeem(&late, "ag::ws::w::1", now + GRANT_TTL), Err(GrantRefused::Unknown));
        assert_eq!(book.redeem("alt_forged", "ag::ws::w::1", now), Err(GrantRefused::Unknown));
    }
}
