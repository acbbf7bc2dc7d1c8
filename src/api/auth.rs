//! Who sent an HTTP request: `Authorization: Bearer <token>` (an API token or the admin key) is
//! checked by the core ([`Services::authenticate`](aethrolink_actors::service::Services)); no
//! header makes an anonymous caller where the policy allows one. And the token routes:
//! `POST /v1/tokens`, `GET /v1/tokens`, `POST /v1/tokens/{token_id}/revoke` (admin).

use std::net::SocketAddr;

use aethrolink_actors::service::auth::{CreatedToken, TokenRequest, TokenView};
use aethrolink_actors::service::{Binding, Caller, Rights};
use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::json::StrictJson;
use super::{ApiError, AppState};

/// When the HTTP API asks for a token, and what an anonymous caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthPolicy {
    /// Every request needs a token (bound off loopback, or `--require-auth`).
    pub require_token: bool,
    /// What a request without a token may do when none is required.
    pub anonymous: Rights,
}

impl Default for AuthPolicy {
    /// Loopback without `--require-auth`: anonymous callers do all but spawning registrations
    /// and administration.
    fn default() -> Self {
        AuthPolicy { require_token: false, anonymous: Rights::ANONYMOUS }
    }
}

impl AuthPolicy {
    /// The policy of a node bound to `bound`. Pure.
    pub fn new(bound: &SocketAddr, require_auth: bool, allow_anonymous_register: bool) -> Self {
        let anonymous = if allow_anonymous_register { Rights::ANONYMOUS.with_register() } else { Rights::ANONYMOUS };
        AuthPolicy { require_token: require_auth || !bound.ip().is_loopback(), anonymous }
    }
}

/// What an `Authorization` header presents. Pure.
#[derive(Debug, PartialEq, Eq)]
enum Presented<'a> {
    None,
    Bearer(&'a str),
    /// Present but not `Bearer <credential>` (or not text).
    Malformed,
}

fn presented(value: Option<&HeaderValue>) -> Presented<'_> {
    let Some(value) = value else { return Presented::None };
    let Ok(text) = value.to_str() else { return Presented::Malformed };
    match text.trim().split_once(' ') {
        Some((scheme, credential)) if scheme.eq_ignore_ascii_case("bearer") && !credential.trim().is_empty() => {
            Presented::Bearer(credential.trim())
        }
        _ => Presented::Malformed,
    }
}

/// A 401 that says how to authenticate.
fn unauthorized(message: impl Into<String>) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"aethrolink\""));
    resp
}

/// Reads open to anyone even where tokens are required: a node's public identity (its id and
/// public key), which a peer fetches before it can pin the key.
const PUBLIC_READS: [&str; 2] = ["/v1/node/health", "/v1/node/identity"];

/// A `GET` signed by a node this one accepts (a registered peer's pinned key, or any node with
/// `--accept-from-any-node`): that node, with read rights (peer sync reads `/v1/targets`).
async fn signed_peer_read(parts: &Parts, state: &AppState) -> Option<Caller> {
    use aethrolink_actors::identity::signature::RequestParts;
    if parts.method != axum::http::Method::GET {
        return None;
    }
    let headers = super::node::node_request_headers(&parts.headers);
    if !headers.is_signed() {
        return None;
    }
    let target = parts.uri.path_and_query().map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let request = RequestParts { method: "GET", target, body: &[] };
    let caller = state
        .services
        // Never the unsigned Go-compatibility path here: only a valid signature counts.
        .authenticate_node(
            aethrolink_actors::node_proto::MessageType::TaskEvent,
            &headers,
            &request,
            state.accept,
            false,
            &state.nonces,
        )
        .await
        .ok()?;
    Some(Caller { rights: Rights::READ, binding: Binding::Http, ..caller })
}

/// Who sent an HTTP request.
pub struct HttpCaller(pub Caller);

impl FromRequestParts<AppState> for HttpCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match presented(parts.headers.get(AUTHORIZATION)) {
            Presented::Bearer(credential) => match state.services.authenticate(Binding::Http, credential) {
                Ok(caller) => Ok(HttpCaller(caller)),
                Err(e) => Err(unauthorized(e.message)),
            },
            Presented::Malformed => Err(unauthorized("Authorization must be 'Bearer <token>'")),
            Presented::None if state.auth.require_token => {
                // What peers read to sync (and pin keys) is theirs to read without a token:
                // the identity documents always, other reads when signed by an accepted node.
                if PUBLIC_READS.contains(&parts.uri.path()) {
                    return Ok(HttpCaller(Caller { rights: Rights::READ, ..Caller::anonymous(Binding::Http) }));
                }
                if let Some(caller) = signed_peer_read(parts, state).await {
                    return Ok(HttpCaller(caller));
                }
                metrics::counter!(aethrolink_actors::telemetry::TOKEN_FAILURES, "reason" => "missing").increment(1);
                Err(unauthorized("this node needs a token: send Authorization: Bearer <token>"))
            }
            Presented::None => {
                Ok(HttpCaller(Caller { rights: state.auth.anonymous, ..Caller::anonymous(Binding::Http) }))
            }
        }
    }
}

/// `POST /v1/tokens` → 201 with the token (shown this once).
#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "create_token",
    tag = "tokens",
    request_body(content = super::openapi::Object, content_type = "application/json", description = "See docs/api.md"),
    responses((status = 201, description = "The token (its secret shown this once)", body = super::openapi::Object))
)]
pub async fn create(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    StrictJson(req): StrictJson<TokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    Ok((StatusCode::CREATED, Json(st.services.create_token(&caller, req).await?)))
}

/// `GET /v1/tokens` → `{"tokens": [...]}` (no secrets).
#[utoipa::path(
    get,
    path = "/v1/tokens",
    operation_id = "list_tokens",
    tag = "tokens",
    responses((status = 200, description = "`{tokens: [...]}` (no secrets)", body = super::openapi::Object))
)]
pub async fn list(State(st): State<AppState>, HttpCaller(caller): HttpCaller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "tokens": st.services.list_tokens(&caller)? })))
}

/// `POST /v1/tokens/{token_id}/revoke` → the token, revoked.
#[utoipa::path(
    post,
    path = "/v1/tokens/{token_id}/revoke",
    operation_id = "revoke_token",
    tag = "tokens",
    params(("token_id" = String, Path, description = "The token's id")),
    responses((status = 200, description = "The token, revoked", body = super::openapi::Object))
)]
pub async fn revoke(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(token_id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    Ok(Json(st.services.revoke_token(&caller, &token_id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_anonymous_unless_required_and_elsewhere_never() {
        let lo: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 1));
        let any: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 1));
        assert_eq!(AuthPolicy::new(&lo, false, false), AuthPolicy::default());
        assert!(AuthPolicy::new(&lo, true, false).require_token);
        assert!(AuthPolicy::new(&any, false, false).require_token);
        assert!(AuthPolicy::new(&lo, false, true).anonymous.register);
        assert!(!AuthPolicy::default().anonymous.register && !AuthPolicy::default().anonymous.admin);
    }

    #[test]
    fn only_bearer_credentials_are_read() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(presented(None), Presented::None);
        assert_eq!(presented(Some(&h("Bearer abc"))), Presented::Bearer("abc"));
        assert_eq!(presented(Some(&h("bearer  abc "))), Presented::Bearer("abc"));
        assert_eq!(presented(Some(&h("Basic dXNlcg=="))), Presented::Malformed);
        assert_eq!(presented(Some(&h("Bearer "))), Presented::Malformed);
    }
}
