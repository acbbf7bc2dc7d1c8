//! Authentication and API tokens: the one place every binding turns a presented credential (an
//! HTTP bearer token, an Aether gateway `x-api-key`, the operator's admin key) into a [`Caller`],
//! and where tokens are made, listed and revoked.
//!
//! The book of tokens is held in memory (loaded at start, updated after each committed write —
//! every token write passes through here), so checking a token costs no database round trip.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::{Binding, Caller, ErrorKind, Need, Principal, Rights, ServiceError, Services};
use crate::clock::Timestamp;
use crate::storage::{StorageMsg, WriteOp};
use crate::supervision::ASK_TIMEOUT;
use crate::tokens::{self, Rejection, Scope, TokenHasher, TokenRecord, TokenState};

/// Longest token name.
const NAME_MAX: usize = 200;
/// Name prefix of the local admin tokens the node makes for its own user.
const LOCAL_ADMIN_PREFIX: &str = "local admin ";

/// The credentials a node knows and how to check them.
pub struct Authenticator {
    /// HMACs token secrets (and the admin key) under a key derived from the node's secret key.
    hasher: TokenHasher,
    /// Every token of this database by id: the checks read it, writes keep it in step.
    book: RwLock<HashMap<String, TokenRecord>>,
    /// HMAC of the operator's admin key (`--admin-key`), when one was given.
    admin_key_hmac: RwLock<Option<String>>,
}

impl Authenticator {
    pub fn new(hasher: TokenHasher) -> Self {
        Authenticator { hasher, book: RwLock::new(HashMap::new()), admin_key_hmac: RwLock::new(None) }
    }

    pub(super) fn book(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, TokenRecord>> {
        self.book.read().unwrap_or_else(|p| p.into_inner())
    }

    fn book_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, TokenRecord>> {
        self.book.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a presented secret: the admin key, else a token. Pure over the book.
    fn check(&self, presented: &str, now: &Timestamp) -> Result<(Principal, Rights), Rejection> {
        let presented = presented.trim();
        let admin = self.admin_key_hmac.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(expected) = admin
            && self.hasher.matches(presented, &expected)
        {
            return Ok((Principal::Operator, Rights::ALL));
        }
        let (id, secret) = tokens::split_token(presented).ok_or(Rejection::Malformed)?;
        let book = self.book();
        let record = book.get(id).ok_or(Rejection::Unknown)?;
        tokens::check(&self.hasher, record, secret, now)?;
        Ok((Principal::Token(record.token_id.clone()), Rights::of_scopes(&record.scopes)))
    }
}

/// A request to make a token.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Who or what will hold it.
    pub name: String,
    /// Scope names (`tasks:read`, `tasks:write`, `agents:register`, `admin`).
    pub scopes: Vec<String>,
    /// Lifetime in seconds; absent: it does not expire.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// A token as listings show it (never its secret or HMAC).
#[derive(Clone, Debug, Serialize)]
pub struct TokenView {
    #[serde(flatten)]
    pub record: TokenRecord,
    /// `active`, `expired` or `revoked` as of now.
    pub state: TokenState,
}

/// A token just made: `token` is shown this once.
#[derive(Clone, Debug, Serialize)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub view: TokenView,
}

impl Services {
    /// Sets the operator's admin key (`--admin-key`): presented as a token, it is the operator.
    pub fn set_admin_key(&self, key: &str) {
        let hmac = self.auth.hasher.hmac_hex(key.trim());
        *self.auth.admin_key_hmac.write().unwrap_or_else(|p| p.into_inner()) = Some(hmac);
    }

    /// Loads the book of tokens from storage (once, at start).
    pub async fn load_tokens(&self) -> Result<usize, ServiceError> {
        let records = self.dir.reader.api_tokens().await?;
        let count = records.len();
        *self.auth.book_mut() = records.into_iter().map(|r| (r.token_id.clone(), r)).collect();
        Ok(count)
    }

    /// The caller a presented credential (a token or the admin key) makes over `binding`;
    /// `unauthenticated` if it is not valid (the reason is counted and logged, not told).
    pub fn authenticate(&self, binding: Binding, presented: &str) -> Result<Caller, ServiceError> {
        match self.auth.check(presented, &Timestamp::now()) {
            Ok((principal, rights)) => Ok(Caller { principal, binding, rights }),
            Err(rejection) => {
                metrics::counter!(crate::telemetry::TOKEN_FAILURES, "reason" => rejection.reason()).increment(1);
                tracing::info!(reason = rejection.reason(), ?binding, "token refused");
                Err(ServiceError::new(
                    ErrorKind::Unauthenticated,
                    "the token is not valid (unknown, expired or revoked)",
                ))
            }
        }
    }

    /// Makes a token (admin only). Its text is in the answer and nowhere else.
    pub async fn create_token(&self, caller: &Caller, req: TokenRequest) -> Result<CreatedToken, ServiceError> {
        caller.require(Need::Admin)?;
        let name = req.name.trim().to_owned();
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(ServiceError::invalid(format!("name: give a name of 1 to {NAME_MAX} characters")));
        }
        if req.scopes.is_empty() {
            return Err(ServiceError::invalid(format!("scopes: give at least one of {}", scope_names())));
        }
        let mut scopes = Vec::with_capacity(req.scopes.len());
        for text in &req.scopes {
            let scope = Scope::parse(text).ok_or_else(|| {
                ServiceError::invalid(format!("scopes: unknown scope '{text}' (known: {})", scope_names()))
            })?;
            scopes.push(scope);
        }
        let expires_at = match req.expires_in_seconds {
            Some(0) => return Err(ServiceError::invalid("expires_in_seconds: must be positive")),
            Some(s) => Some(Timestamp::after(i64::try_from(s).unwrap_or(i64::MAX / 2).min(100 * 365 * 86_400))),
            None => None,
        };
        self.mint(name, scopes, expires_at, Vec::new()).await
    }

    /// Every token, oldest first, with its state (admin only).
    pub fn list_tokens(&self, caller: &Caller) -> Result<Vec<TokenView>, ServiceError> {
        caller.require(Need::Admin)?;
        let now = Timestamp::now();
        let mut views: Vec<TokenView> =
            self.auth.book().values().map(|r| TokenView { state: r.state_at(&now), record: r.clone() }).collect();
        views.sort_by(|a, b| {
            (&a.record.created_at, &a.record.token_id).cmp(&(&b.record.created_at, &b.record.token_id))
        });
        Ok(views)
    }

    /// Revokes a token for good (admin only; revoking it again changes nothing).
    pub async fn revoke_token(&self, caller: &Caller, token_id: &str) -> Result<TokenView, ServiceError> {
        caller.require(Need::Admin)?;
        let token_id = token_id.trim().to_ascii_lowercase();
        let Some(record) = self.auth.book().get(&token_id).cloned() else {
            return Err(ServiceError::not_found(format!("token not found: {token_id}")));
        };
        if record.revoked_at.is_none() {
            let at = Timestamp::now();
            let op = WriteOp::TokenRevoke { token_ids: vec![token_id.clone()], at: at.clone() };
            self.dir.storage.ask(ASK_TIMEOUT, |r| StorageMsg::Write(op, r)).await??;
            if let Some(r) = self.auth.book_mut().get_mut(&token_id) {
                r.revoked_at = Some(at);
            }
            tracing::info!(token_id = %token_id, name = %record.name, "token revoked");
        }
        let record = self.auth.book().get(&token_id).cloned().unwrap_or(record);
        Ok(TokenView { state: record.state_at(&Timestamp::now()), record })
    }

    /// Makes sure the node's own user has an admin token for the node at `address_key`: keeps
    /// `existing` (what the token file holds) if it is a valid admin token of this node, else
    /// makes a new one (revoking earlier local admin tokens for the same key) and returns it.
    pub async fn ensure_local_admin_token(
        &self,
        address_key: &str,
        existing: Option<&str>,
    ) -> Result<Option<String>, ServiceError> {
        if let Some(text) = existing
            && let Ok((_, rights)) = self.auth.check(text, &Timestamp::now())
            && rights == Rights::ALL
        {
            return Ok(None);
        }
        let name = format!("{LOCAL_ADMIN_PREFIX}{address_key}");
        let stale: Vec<String> = self
            .auth
            .book()
            .values()
            .filter(|r| r.name == name && r.revoked_at.is_none())
            .map(|r| r.token_id.clone())
            .collect();
        let created = self.mint(name, vec![Scope::Admin], None, stale).await?;
        Ok(Some(created.token))
    }

    /// Makes, stores and books a token; `revokes` are revoked in the same transaction.
    async fn mint(
        &self,
        name: String,
        scopes: Vec<Scope>,
        expires_at: Option<Timestamp>,
        revokes: Vec<String>,
    ) -> Result<CreatedToken, ServiceError> {
        let minted = tokens::mint(&self.auth.hasher, name, scopes, expires_at)
            .map_err(|e| ServiceError::hidden(ErrorKind::Internal, "could not make a token", e.to_string()))?;
        let record = minted.record;
        let op = WriteOp::TokenCreate { token: Box::new(record.clone()), revokes: revokes.clone() };
        self.dir.storage.ask(ASK_TIMEOUT, |r| StorageMsg::Write(op, r)).await??;
        {
            let mut book = self.auth.book_mut();
            for id in &revokes {
                if let Some(r) = book.get_mut(id) {
                    r.revoked_at = Some(record.created_at.clone());
                }
            }
            book.insert(record.token_id.clone(), record.clone());
        }
        tracing::info!(
            token_id = %record.token_id, name = %record.name,
            scopes = %record.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
            "token created"
        );
        let view = TokenView { state: record.state_at(&Timestamp::now()), record };
        Ok(CreatedToken { token: minted.token, view })
    }
}

fn scope_names() -> String {
    Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_key_and_booked_tokens_authenticate() -> Result<(), tokens::MintError> {
        let auth = Authenticator::new(TokenHasher::new([3u8; 32]));
        let now = Timestamp::now();
        assert_eq!(auth.check("anything", &now), Err(Rejection::Malformed));
        *auth.admin_key_hmac.write().unwrap_or_else(|p| p.into_inner()) = Some(auth.hasher.hmac_hex("s3cret"));
        assert_eq!(auth.check(" s3cret ", &now), Ok((Principal::Operator, Rights::ALL)));
        let minted = tokens::mint(&auth.hasher, "reader".into(), vec![Scope::TasksRead], None)?;
        assert_eq!(auth.check(&minted.token, &now), Err(Rejection::Unknown));
        auth.book_mut().insert(minted.record.token_id.clone(), minted.record.clone());
        let (principal, rights) = auth.check(&minted.token, &now).map_err(|_| tokens::MintError::Random("x".into()))?;
        assert_eq!(principal, Principal::Token(minted.record.token_id.clone()));
        assert_eq!(rights, Rights::READ);
        Ok(())
    }
}
