//! The Aether gateway's way in: a client's `InitConnection` (decoded by the binding) becomes a
//! session — principal checked, credentials authenticated, identity lock taken — served by its
//! own connection actor.
//!
//! Credentials travel inside `InitConnection.credentials` (the SDK sends no metadata): an
//! `x-api-key` (alias `api_key`) or an `authorization: Bearer …` holding the admin key or an API
//! token authenticates through [`Services::authenticate`]; a task token (`token`) is not served
//! yet and is refused; no credential admits the claimed principal only where the anonymous
//! policy allows it (a node bound to loopback without `--require-auth`).

use std::collections::HashMap;

use tokio::sync::mpsc;

use super::{Binding, Caller, ErrorKind, Need, Principal, ServiceError, Services};
use crate::aether::acl;
use crate::aether::connection::{ConnectionMsg, OUTBOUND_CAPACITY, Outbound, Request, Session, SessionAuthority};
use crate::aether::identity::{ClaimedPrincipal, Identity};
use crate::aether::presence::{ConnectionInfo, OpenRefused, OpenRequest, PresenceMsg};
use crate::aether::queue::Outbox;
use crate::supervision::ASK_TIMEOUT;

/// What a client sent in its `InitConnection`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConnect {
    pub principal: ClaimedPrincipal,
    /// `InitConnection.credentials` as sent.
    pub credentials: HashMap<String, String>,
    /// `resume_session_id` (empty: absent).
    pub resume_session_id: String,
    /// `client_sdk` and `client_version` (logs).
    pub client: String,
    /// The client's address as the binding saw it (listings).
    pub remote_addr: String,
    /// An orchestrator's `supported_profiles` (whom it launches).
    pub profiles: Vec<String>,
}

/// Whether a client without a credential is admitted as the principal it claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnonymousPolicy {
    /// The gateway is bound to loopback and the node does not require tokens.
    AdmitClaimed,
    /// Every session needs a credential.
    Refuse,
}

/// A credential found in `InitConnection.credentials`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `x-api-key` / `api_key`, or the token of `authorization: Bearer …`.
    Key(String),
    /// `token`: an Aether task token (this node's: a launched agent's one-shot token).
    TaskToken(String),
    None,
}

/// The credential a client presents. Pure. A task token takes precedence (as upstream), then
/// an API key, then a bearer token; empty values count as absent.
pub fn credential_of(credentials: &HashMap<String, String>) -> Credential {
    let get = |k: &str| credentials.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(token) = get("token") {
        return Credential::TaskToken(token.to_owned());
    }
    if let Some(key) = get("x-api-key").or_else(|| get("api_key")) {
        return Credential::Key(key.to_owned());
    }
    let bearer = get("authorization").or_else(|| get("bearer_token"));
    if let Some(value) = bearer {
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).unwrap_or(value);
        return Credential::Key(token.trim().to_owned());
    }
    Credential::None
}

/// A session the gateway serves: what to tell the client, and where its requests go.
#[derive(Clone)]
pub struct GatewaySession {
    pub session: Session,
    connection: ractor::ActorRef<ConnectionMsg>,
}

impl GatewaySession {
    /// Hands a request from the stream to the session (in arrival order).
    pub fn request(&self, request: Request) {
        let _ = self.connection.cast(ConnectionMsg::Request(request));
    }

    /// A service's answer to one of the stream's requests, written in stream order.
    pub fn reply(&self, out: Outbound) {
        let _ = self.connection.cast(ConnectionMsg::Reply(Box::new(out)));
    }

    /// The stream ended: the session ends and its identity is released.
    pub fn closed(&self) {
        let _ = self.connection.cast(ConnectionMsg::Closed);
    }
}

impl Services {
    /// Opens a gateway session: checks the claimed principal (`Invalid`), authenticates the
    /// credential (`Unauthenticated`), takes the identity's lock (`Conflict` if another live
    /// session holds it and this is not its resume) and starts the connection actor, which sends
    /// the ack (and the config snapshot) into the session's [`Outbox`] first, which the binding
    /// writes to the stream.
    pub async fn gateway_connect(
        &self,
        connect: GatewayConnect,
        policy: AnonymousPolicy,
    ) -> Result<(GatewaySession, Outbox), ServiceError> {
        let identity = connect
            .principal
            .resolve(|| crate::ids::new_id().to_ascii_lowercase())
            .map_err(|e| ServiceError::invalid(format!("InitConnection {e}")))?;
        let mut acl_exempt = false;
        let authority = match credential_of(&connect.credentials) {
            Credential::Key(key) => {
                let caller = self.authenticate(Binding::Gateway, &key)?;
                acl_exempt = caller.rights.admin;
                match caller.principal {
                    Principal::Operator => SessionAuthority::Admin,
                    Principal::Token(id) => SessionAuthority::Token(id),
                    _ => SessionAuthority::Claimed,
                }
            }
            Credential::TaskToken(token) => {
                // An agent an orchestrator launched for the node: admitted once, as itself.
                let redeemed = self
                    .launches
                    .lock()
                    .map_err(|_| ServiceError::internal("launch book poisoned"))?
                    .redeem(&token, &identity.key, std::time::Instant::now());
                if let Err(e) = redeemed {
                    return Err(ServiceError::new(ErrorKind::Unauthenticated, e.to_string()));
                }
                tracing::info!(identity = %identity.key, "a launched agent connected with its task token");
                SessionAuthority::Claimed
            }
            Credential::None => match policy {
                AnonymousPolicy::AdmitClaimed => SessionAuthority::Claimed,
                AnonymousPolicy::Refuse => {
                    return Err(ServiceError::new(
                        ErrorKind::Unauthenticated,
                        format!("{} {} needs a credential (x-api-key)", identity.kind.as_str(), identity.key),
                    ));
                }
            },
        };
        if !acl_exempt && let Some(workspace) = identity.workspace.as_deref() {
            self.check_workspace_access(&identity, workspace).await?;
        }
        let resume = Some(connect.resume_session_id.trim().to_owned()).filter(|s| !s.is_empty());
        tracing::debug!(identity = %identity.key, client = %connect.client, resume = resume.is_some(), "gateway connect");
        let (outbound, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let request = OpenRequest {
            identity,
            authority,
            resume_session_id: resume,
            outbound,
            remote_addr: connect.remote_addr,
            acl_exempt,
            profiles: connect.profiles,
        };
        let opened = self.dir.presence.ask(ASK_TIMEOUT, |reply| PresenceMsg::Open(Box::new(request), reply)).await?;
        match opened {
            Ok(opened) => {
                let outbox =
                    Outbox::new(rx, opened.session.identity.key.clone(), opened.generation, self.dir.presence.clone());
                Ok((GatewaySession { session: opened.session, connection: opened.connection }, outbox))
            }
            Err(OpenRefused::AlreadyConnected(key)) => Err(ServiceError::new(
                ErrorKind::Conflict,
                format!("DuplicateIdentityError: identity ({key}) already connected"),
            )),
            Err(OpenRefused::Spawn(detail)) => {
                Err(ServiceError::hidden(ErrorKind::Unavailable, "could not start the session; retry", detail))
            }
        }
    }

    /// Whether the access rules let `identity` into `workspace` (at connect; `Forbidden` naming
    /// the rule or the default that decided).
    pub async fn check_workspace_access(&self, identity: &Identity, workspace: &str) -> Result<(), ServiceError> {
        let rules = self.dir.reader.aether_acl_rules().await?;
        if rules.is_empty() {
            return Ok(());
        }
        let principal = acl::principal_of(identity);
        let decision = acl::decide(
            &rules,
            &principal,
            &acl::workspace(workspace),
            acl::WORKSPACE_CONNECT_LEVEL,
            crate::clock::unix_seconds(),
        );
        if decision.allowed {
            return Ok(());
        }
        tracing::info!(identity = %identity.key, workspace, reason = %decision.reason, "workspace access denied");
        Err(ServiceError::new(ErrorKind::Forbidden, format!("ERR_PERMISSION_DENIED: {}", decision.reason)))
    }

    /// The live gateway sessions, by identity (`GET /v1/aether/connections`).
    pub async fn gateway_connections(&self, caller: &Caller) -> Result<Vec<ConnectionInfo>, ServiceError> {
        caller.require(Need::Read)?;
        Ok(self.dir.presence.ask(ASK_TIMEOUT, PresenceMsg::List).await?)
    }

    /// Live gateway sessions.
    pub async fn gateway_sessions(&self) -> Result<usize, ServiceError> {
        Ok(self.dir.presence.ask(ASK_TIMEOUT, PresenceMsg::Count).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn credentials_are_read_from_the_init_map() {
        assert_eq!(credential_of(&creds(&[])), Credential::None);
        assert_eq!(credential_of(&creds(&[("x-api-key", " k1 ")])), Credential::Key("k1".into()));
        assert_eq!(credential_of(&creds(&[("api_key", "k2")])), Credential::Key("k2".into()));
        assert_eq!(credential_of(&creds(&[("authorization", "Bearer t1")])), Credential::Key("t1".into()));
        assert_eq!(credential_of(&creds(&[("x-api-key", ""), ("x-tenant-id", "t")])), Credential::None);
        assert_eq!(credential_of(&creds(&[("token", "tt"), ("x-api-key", "k")])), Credential::TaskToken("tt".into()));
        assert_eq!(
            credential_of(&creds(&[("authorization", "Bearer b"), ("x-api-key", "k")])),
            Credential::Key("k".into())
        );
    }
}
