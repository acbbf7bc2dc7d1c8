//! HTTP Message Signatures (RFC 9421) with `ed25519`, over a Content-Digest (RFC 9530, sha-256)
//! of the body. Pure: the caller passes the time and the nonce cache, and the binding moves the
//! three headers between these types and its HTTP library.
//!
//! A signed request carries
//!
//! ```text
//! content-digest: sha-256=:<base64 of SHA-256(body)>:
//! signature-input: sig1=("@method" "@path" "content-digest");created=<unix s>;keyid="<key id>";nonce="<random>";alg="ed25519"
//! signature: sig1=:<base64 of the Ed25519 signature of the signature base>:
//! ```
//!
//! and `"@query"` is covered too when the request target has a query. The verifier requires that
//! coverage, a fresh `created` (not older than [`Freshness::max_age_s`], not later than
//! [`Freshness::max_future_s`]), a known `keyid`, a matching digest and a nonce not seen within the
//! window ([`NonceCache`]).

use std::collections::{BTreeSet, HashSet};

use sha2::{Digest as _, Sha256};

use super::sfv::{self, BareItem, Item, Member, Params};
use super::{ALG_ED25519, KeyId, NodeKey, PublicKey};

/// The label this node signs under.
pub const SIGNATURE_LABEL: &str = "sig1";

/// How long a signature is accepted after its `created` (seconds).
pub const DEFAULT_MAX_AGE_S: i64 = 300;

/// How far a `created` may lie ahead of this node's clock (seconds): peers' clocks drift.
pub const DEFAULT_MAX_FUTURE_S: i64 = 30;

/// How many nonces a cache holds at most before it refuses new ones.
pub const DEFAULT_NONCE_CAPACITY: usize = 100_000;

/// The three headers of a signed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignedHeader {
    ContentDigest,
    SignatureInput,
    Signature,
}

impl SignedHeader {
    /// The header's (lowercase) name.
    pub fn name(self) -> &'static str {
        match self {
            SignedHeader::ContentDigest => "content-digest",
            SignedHeader::SignatureInput => "signature-input",
            SignedHeader::Signature => "signature",
        }
    }
}

impl std::fmt::Display for SignedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The components this implementation can cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    Method,
    Path,
    Query,
    ContentDigest,
}

impl Component {
    /// The component identifier as it appears in `signature-input`.
    pub fn identifier(self) -> &'static str {
        match self {
            Component::Method => "@method",
            Component::Path => "@path",
            Component::Query => "@query",
            Component::ContentDigest => "content-digest",
        }
    }

    fn of(identifier: &str) -> Option<Component> {
        [Component::Method, Component::Path, Component::Query, Component::ContentDigest]
            .into_iter()
            .find(|c| c.identifier() == identifier)
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.identifier())
    }
}

/// Signature parameters a verifier reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureParam {
    Created,
    KeyId,
    Nonce,
    Alg,
    Expires,
}

/// What is wrong with a header's syntax or content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not a structured-field dictionary of the expected shape.
    Syntax,
    /// No `signature-input` member with a `signature` member of the same label.
    NoMatchingLabel,
    /// A covered component is not a plain string, has parameters, or is repeated.
    CoveredComponent,
    MissingParameter(SignatureParam),
    /// A parameter of the wrong type.
    BadParameter(SignatureParam),
    /// The signature is not a byte sequence of 64 bytes.
    SignatureValue,
}

/// Why a request's signature was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(SignedHeader),
    #[error("malformed header {header}: {reason:?}")]
    Malformed { header: SignedHeader, reason: Malformed },
    #[error("unsupported signature algorithm '{0}'")]
    UnsupportedAlgorithm(String),
    #[error("covered component '{0}' is not supported")]
    UnsupportedComponent(String),
    #[error("the signature does not cover {0}")]
    NotCovered(Component),
    #[error("unknown key '{0}'")]
    UnknownKey(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("content-digest has no sha-256 digest")]
    UnsupportedDigest,
    #[error("content-digest does not match the body")]
    DigestMismatch,
    #[error("signature created at {created} is too old (now {now})")]
    Stale { created: i64, now: i64 },
    #[error("signature created at {created} is in the future (now {now})")]
    Future { created: i64, now: i64 },
    #[error("nonce already used")]
    Replayed,
    #[error("too many recent nonces to remember another")]
    NonceCacheFull,
}

/// The parts of a request a signature covers.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    /// The method as sent (`POST`).
    pub method: &'a str,
    /// The request target: the path and, if any, `?` and the query, as sent.
    pub target: &'a str,
    pub body: &'a [u8],
}

impl<'a> RequestParts<'a> {
    /// `@path` (RFC 9421 §2.2.6): the absolute path, `/` if empty.
    fn path(&self) -> &'a str {
        let path = self.target.split_once('?').map_or(self.target, |(p, _)| p);
        if path.is_empty() { "/" } else { path }
    }

    /// `@query` (RFC 9421 §2.2.7): `?` and the query, if the target has one.
    fn query(&self) -> Option<&'a str> {
        self.target.find('?').map(|at| &self.target[at..])
    }

    /// What the signature must cover for this request.
    fn required(&self) -> Vec<Component> {
        let mut covered = vec![Component::Method, Component::Path];
        if self.query().is_some() {
            covered.push(Component::Query);
        }
        covered.push(Component::ContentDigest);
        covered
    }
}

/// The headers a signer adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub content_digest: String,
    pub signature_input: String,
    pub signature: String,
}

impl SignatureHeaders {
    /// `(name, value)` pairs, to add to a request.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (SignedHeader::ContentDigest.name(), &self.content_digest),
            (SignedHeader::SignatureInput.name(), &self.signature_input),
            (SignedHeader::Signature.name(), &self.signature),
        ]
    }
}

/// The headers as received (each absent if the request did not carry it).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReceivedHeaders<'a> {
    pub content_digest: Option<&'a str>,
    pub signature_input: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl<'a> From<&'a SignatureHeaders> for ReceivedHeaders<'a> {
    fn from(h: &'a SignatureHeaders) -> Self {
        ReceivedHeaders {
            content_digest: Some(&h.content_digest),
            signature_input: Some(&h.signature_input),
            signature: Some(&h.signature),
        }
    }
}

/// A verified request: who signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub key_id: KeyId,
    pub created: i64,
}

/// Finds the public key a `keyid` names (a peer table, a pinned key…).
pub trait KeyLookup {
    fn public_key(&self, key_id: &str) -> Option<PublicKey>;
}

impl<F: Fn(&str) -> Option<PublicKey>> KeyLookup for F {
    fn public_key(&self, key_id: &str) -> Option<PublicKey> {
        self(key_id)
    }
}

/// `content-digest` of a body (RFC 9530): `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256={}", sfv::serialize_bytes(&Sha256::digest(body)))
}

/// A fresh nonce: 16 random bytes, base64url.
pub fn new_nonce() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// The signature base (RFC 9421 §2.5): one `"<component>": <value>` line per covered component,
/// then `"@signature-params": <the serialised inner list and parameters>`, joined by `\n`.
pub fn signature_base(components: &[(&str, &str)], signature_params: &str) -> String {
    let mut base = String::new();
    for (identifier, value) in components {
        base.push_str(&sfv::serialize_string(identifier));
        base.push_str(": ");
        base.push_str(value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(signature_params);
    base
}

/// Signs `request` with `key`: created at `created` (unix seconds), with `nonce`.
pub fn sign(key: &NodeKey, request: &RequestParts<'_>, created: i64, nonce: &str) -> SignatureHeaders {
    let content_digest = content_digest(request.body);
    let covered = request.required();
    let items: Vec<Item> = covered
        .iter()
        .map(|c| Item { bare: BareItem::String(c.identifier().to_owned()), params: Vec::new() })
        .collect();
    let params: Params = vec![
        ("created".into(), BareItem::Integer(created)),
        ("keyid".into(), BareItem::String(key.public_key().key_id().as_str().to_owned())),
        ("nonce".into(), BareItem::String(nonce.to_owned())),
        ("alg".into(), BareItem::String(ALG_ED25519.to_owned())),
    ];
    let signature_params = sfv::serialize_inner_list(&items, &params);
    let values: Vec<(&str, &str)> =
        covered.iter().map(|c| (c.identifier(), component_value(*c, request, &content_digest))).collect();
    let base = signature_base(&values, &signature_params);
    let signature = key.sign(base.as_bytes());
    SignatureHeaders {
        content_digest,
        signature_input: format!("{SIGNATURE_LABEL}={signature_params}"),
        signature: format!("{SIGNATURE_LABEL}={}", sfv::serialize_bytes(&signature)),
    }
}

fn component_value<'a>(component: Component, request: &RequestParts<'a>, content_digest: &'a str) -> &'a str {
    match component {
        Component::Method => request.method,
        Component::Path => request.path(),
        Component::Query => request.query().unwrap_or("?"),
        Component::ContentDigest => content_digest,
    }
}

/// Checks a request's signature; on success its nonce is remembered in `nonces`.
pub fn verify(
    headers: &ReceivedHeaders<'_>,
    request: &RequestParts<'_>,
    keys: &impl KeyLookup,
    now: i64,
    nonces: &mut NonceCache,
) -> Result<Verified, SignatureError> {
    let malformed = |header, reason| SignatureError::Malformed { header, reason };
    let input = headers.signature_input.ok_or(SignatureError::MissingHeader(SignedHeader::SignatureInput))?;
    let signature = headers.signature.ok_or(SignatureError::MissingHeader(SignedHeader::Signature))?;
    let inputs =
        sfv::parse_dictionary(input).map_err(|_| malformed(SignedHeader::SignatureInput, Malformed::Syntax))?;
    let signatures =
        sfv::parse_dictionary(signature).map_err(|_| malformed(SignedHeader::Signature, Malformed::Syntax))?;
    // The first labelled input that has a signature: one signature per request is what nodes send.
    let (items, params, signature) = inputs
        .iter()
        .find_map(|(label, member)| {
            let Member::InnerList(items, params) = member else { return None };
            let (_, sig) = signatures.iter().find(|(l, _)| l == label)?;
            Some((items, params, sig))
        })
        .ok_or(malformed(SignedHeader::SignatureInput, Malformed::NoMatchingLabel))?;
    let signature: [u8; 64] = match signature {
        Member::Item(Item { bare: BareItem::Bytes(b), .. }) => b.as_slice().try_into().ok(),
        _ => None,
    }
    .ok_or(malformed(SignedHeader::Signature, Malformed::SignatureValue))?;

    let covered = covered_components(items)?;
    for required in request.required() {
        if !covered.contains(&required) {
            return Err(SignatureError::NotCovered(required));
        }
    }
    let p = SignedParams::read(params)?;
    nonces.freshness.check(p.created, p.expires, now)?;
    let key = keys.public_key(p.key_id).ok_or_else(|| SignatureError::UnknownKey(p.key_id.to_owned()))?;

    let received_digest =
        headers.content_digest.ok_or(SignatureError::MissingHeader(SignedHeader::ContentDigest))?.trim();
    let values: Vec<(&str, &str)> =
        covered.iter().map(|c| (c.identifier(), component_value(*c, request, received_digest))).collect();
    let base = signature_base(&values, &sfv::serialize_inner_list(items, params));
    if !key.verifies(base.as_bytes(), &signature) {
        return Err(SignatureError::BadSignature);
    }
    check_digest(received_digest, request.body)?;
    let key_id = key.key_id();
    nonces.insert(&key_id, p.nonce, p.created, now)?;
    Ok(Verified { key_id, created: p.created })
}

/// The covered components, in order; each known, a plain string, and listed once.
fn covered_components(items: &[Item]) -> Result<Vec<Component>, SignatureError> {
    let mut covered = Vec::with_capacity(items.len());
    for item in items {
        let BareItem::String(identifier) = &item.bare else {
            return Err(SignatureError::Malformed {
                header: SignedHeader::SignatureInput,
                reason: Malformed::CoveredComponent,
            });
        };
        let component =
            Component::of(identifier).ok_or_else(|| SignatureError::UnsupportedComponent(identifier.clone()))?;
        if !item.params.is_empty() || covered.contains(&component) {
            return Err(SignatureError::Malformed {
                header: SignedHeader::SignatureInput,
                reason: Malformed::CoveredComponent,
            });
        }
        covered.push(component);
    }
    Ok(covered)
}

/// The parameters a verifier needs.
struct SignedParams<'a> {
    created: i64,
    expires: Option<i64>,
    key_id: &'a str,
    nonce: &'a str,
}

impl<'a> SignedParams<'a> {
    fn read(params: &'a Params) -> Result<Self, SignatureError> {
        let find = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let bad = |param| SignatureError::Malformed {
            header: SignedHeader::SignatureInput,
            reason: Malformed::BadParameter(param),
        };
        let missing = |param| SignatureError::Malformed {
            header: SignedHeader::SignatureInput,
            reason: Malformed::MissingParameter(param),
        };
        let integer = |name, param| match find(name) {
            None => Ok(None),
            Some(BareItem::Integer(n)) => Ok(Some(*n)),
            Some(_) => Err(bad(param)),
        };
        let string = |name, param| match find(name) {
            None => Ok(None),
            Some(BareItem::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(bad(param)),
        };
        if let Some(alg) = string("alg", SignatureParam::Alg)?
            && alg != ALG_ED25519
        {
            return Err(SignatureError::UnsupportedAlgorithm(alg.to_owned()));
        }
        Ok(SignedParams {
            created: integer("created", SignatureParam::Created)?.ok_or(missing(SignatureParam::Created))?,
            expires: integer("expires", SignatureParam::Expires)?,
            key_id: string("keyid", SignatureParam::KeyId)?.ok_or(missing(SignatureParam::KeyId))?,
            nonce: string("nonce", SignatureParam::Nonce)?.ok_or(missing(SignatureParam::Nonce))?,
        })
    }
}

fn check_digest(header: &str, body: &[u8]) -> Result<(), SignatureError> {
    let digests = sfv::parse_dictionary(header)
        .map_err(|_| SignatureError::Malformed { header: SignedHeader::ContentDigest, reason: Malformed::Syntax })?;
    let (_, sha256) = digests.iter().find(|(alg, _)| alg == "sha-256").ok_or(SignatureError::UnsupportedDigest)?;
    match sha256 {
        Member::Item(Item { bare: BareItem::Bytes(digest), .. }) if digest[..] == Sha256::digest(body)[..] => Ok(()),
        Member::Item(Item { bare: BareItem::Bytes(_), .. }) => Err(SignatureError::DigestMismatch),
        _ => Err(SignatureError::Malformed { header: SignedHeader::ContentDigest, reason: Malformed::Syntax }),
    }
}

/// How fresh a signature must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// Oldest accepted `created`, in seconds before now; also how long nonces are remembered.
    pub max_age_s: i64,
    /// Latest accepted `created`, in seconds after now.
    pub max_future_s: i64,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness { max_age_s: DEFAULT_MAX_AGE_S, max_future_s: DEFAULT_MAX_FUTURE_S }
    }
}

impl Freshness {
    fn check(&self, created: i64, expires: Option<i64>, now: i64) -> Result<(), SignatureError> {
        if created > now.saturating_add(self.max_future_s) {
            return Err(SignatureError::Future { created, now });
        }
        if created < now.saturating_sub(self.max_age_s) || expires.is_some_and(|e| now >= e) {
            return Err(SignatureError::Stale { created, now });
        }
        Ok(())
    }
}

/// The nonces of recently accepted signatures, per key. The freshness rule lives here because
/// forgetting is only safe for nonces whose signatures are already too old to be accepted.
/// Bounded: when full of nonces still within the window, new ones are refused (never a forgotten
/// nonce that could be replayed).
#[derive(Debug)]
pub struct NonceCache {
    /// Which signatures are fresh; entries older than `max_age_s` are evicted.
    freshness: Freshness,
    /// Most nonces held at once.
    capacity: usize,
    /// `(key id, nonce)` seen within the window: the replay check.
    seen: HashSet<(KeyId, String)>,
    /// The same entries by `created`: eviction in time order.
    by_created: BTreeSet<(i64, KeyId, String)>,
}

impl Default for NonceCache {
    fn default() -> Self {
        NonceCache::new(Freshness::default(), DEFAULT_NONCE_CAPACITY)
    }
}

impl NonceCache {
    pub fn new(freshness: Freshness, capacity: usize) -> Self {
        NonceCache { freshness, capacity, seen: HashSet::new(), by_created: BTreeSet::new() }
    }

    pub fn freshness(&self) -> Freshness {
        self.freshness
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Remembers `nonce` of a signature `created` at that time; `Replayed` if it is known.
    pub fn insert(&mut self, key_id: &KeyId, nonce: &str, created: i64, now: i64) -> Result<(), SignatureError> {
        self.evict(now);
        let entry = (key_id.clone(), nonce.to_owned());
        if self.seen.contains(&entry) {
            return Err(SignatureError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(SignatureError::NonceCacheFull);
        }
        self.by_created.insert((created, entry.0.clone(), entry.1.clone()));
        self.seen.insert(entry);
        Ok(())
    }

    /// Forgets nonces of signatures that are too old to be accepted anyway.
    pub fn evict(&mut self, now: i64) {
        let oldest = now.saturating_sub(self.freshness.max_age_s);
        while let Some(first) = self.by_created.first() {
            if first.0 >= oldest {
                break;
            }
            if let Some((_, key_id, nonce)) = self.by_created.pop_first() {
                self.seen.remove(&(key_id, nonce));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const NOW: i64 = 1_700_000_000;

    fn key() -> NodeKey {
        NodeKey::from_seed(&[42; 32])
    }

    fn keys() -> impl Fn(&str) -> Option<PublicKey> {
        let public = key().public_key();
        move |id: &str| (id == public.key_id().as_str()).then_some(public)
    }

    fn post<'a>(target: &'a str, body: &'a [u8]) -> RequestParts<'a> {
        RequestParts { method: "POST", target, body }
    }

    fn check(headers: &SignatureHeaders, request: &RequestParts<'_>) -> Result<Verified, SignatureError> {
        verify(&headers.into(), request, &keys(), NOW, &mut NonceCache::default())
    }

    #[test]
    fn a_signed_request_verifies() -> TestResult {
        let request = post("/v1/node/tasks", br#"{"a":1}"#);
        let headers = sign(&key(), &request, NOW, "n-1");
        assert_eq!(headers.content_digest, content_digest(br#"{"a":1}"#));
        assert_eq!(
            headers.signature_input,
            format!(
                r#"sig1=("@method" "@path" "content-digest");created={NOW};keyid="{}";nonce="n-1";alg="ed25519""#,
                key().public_key().key_id()
            )
        );
        let verified = check(&headers, &request)?;
        assert_eq!(verified, Verified { key_id: key().public_key().key_id(), created: NOW });
        Ok(())
    }

    #[test]
    fn a_query_is_covered_when_present() -> TestResult {
        let request =
            RequestParts { method: "GET", target: "/v1/node/tasks/t1/events?origin_proxy_task_id=p", body: b"" };
        let headers = sign(&key(), &request, NOW, "n");
        assert!(headers.signature_input.starts_with(r#"sig1=("@method" "@path" "@query" "content-digest")"#));
        check(&headers, &request)?;
        let other = RequestParts { target: "/v1/node/tasks/t1/events?origin_proxy_task_id=q", ..request };
        assert_eq!(check(&headers, &other), Err(SignatureError::BadSignature));
        let dropped = RequestParts { target: "/v1/node/tasks/t1/events", ..request };
        assert_eq!(check(&headers, &dropped), Err(SignatureError::BadSignature));
        Ok(())
    }

    #[test]
    fn every_tamper_is_caught() {
        let request = post("/v1/node/tasks", b"body");
        let headers = sign(&key(), &request, NOW, "n");
        let replaced = |f: &dyn Fn(&mut SignatureHeaders)| {
            let mut h = headers.clone();
            f(&mut h);
            h
        };
        let other_digest = content_digest(b"other");
        let other_key_signed = sign(&NodeKey::from_seed(&[1; 32]), &request, NOW, "n");
        let table: Vec<(&str, SignatureHeaders, RequestParts<'_>, SignatureError)> = vec![
            ("method", headers.clone(), RequestParts { method: "PUT", ..request }, SignatureError::BadSignature),
            ("path", headers.clone(), post("/v1/node/taskz", b"body"), SignatureError::BadSignature),
            (
                "query added",
                headers.clone(),
                post("/v1/node/tasks?x=1", b"body"),
                SignatureError::NotCovered(Component::Query),
            ),
            ("body", headers.clone(), post("/v1/node/tasks", b"bodY"), SignatureError::DigestMismatch),
            (
                "digest header",
                replaced(&|h| h.content_digest = other_digest.clone()),
                post("/v1/node/tasks", b"other"),
                SignatureError::BadSignature,
            ),
            (
                "created",
                replaced(&|h| h.signature_input = h.signature_input.replace(&NOW.to_string(), &(NOW - 1).to_string())),
                request,
                SignatureError::BadSignature,
            ),
            (
                "nonce",
                replaced(&|h| h.signature_input = h.signature_input.replace("nonce=\"n\"", "nonce=\"m\"")),
                request,
                SignatureError::BadSignature,
            ),
            (
                "signature bytes",
                replaced(&|h| h.signature = other_key_signed.signature.clone()),
                request,
                SignatureError::BadSignature,
            ),
            (
                "coverage",
                replaced(&|h| h.signature_input = h.signature_input.replace(" \"content-digest\"", "")),
                request,
                SignatureError::NotCovered(Component::ContentDigest),
            ),
            (
                "unknown key",
                other_key_signed.clone(),
                request,
                SignatureError::UnknownKey(NodeKey::from_seed(&[1; 32]).public_key().key_id().to_string()),
            ),
            (
                "label",
                replaced(&|h| h.signature = h.signature.replacen("sig1", "sig2", 1)),
                request,
                SignatureError::Malformed { header: SignedHeader::SignatureInput, reason: Malformed::NoMatchingLabel },
            ),
            (
                "alg",
                replaced(&|h| h.signature_input = h.signature_input.replace("ed25519", "rsa-pss-sha512")),
                request,
                SignatureError::UnsupportedAlgorithm("rsa-pss-sha512".into()),
            ),
            (
                "extra component",
                replaced(&|h| h.signature_input = h.signature_input.replace("(\"@method\"", "(\"date\" \"@method\"")),
                request,
                SignatureError::UnsupportedComponent("date".into()),
            ),
            (
                "syntax",
                replaced(&|h| h.signature_input = "sig1=(".into()),
                request,
                SignatureError::Malformed { header: SignedHeader::SignatureInput, reason: Malformed::Syntax },
            ),
            (
                "short signature",
                replaced(&|h| h.signature = "sig1=:AAAA:".into()),
                request,
                SignatureError::Malformed { header: SignedHeader::Signature, reason: Malformed::SignatureValue },
            ),
            (
                "no nonce",
                replaced(&|h| h.signature_input = h.signature_input.replace(";nonce=\"n\"", "")),
                request,
                SignatureError::Malformed {
                    header: SignedHeader::SignatureInput,
                    reason: Malformed::MissingParameter(SignatureParam::Nonce),
                },
            ),
            (
                "created as string",
                replaced(&|h| {
                    h.signature_input = h.signature_input.replace(&format!("created={NOW}"), "created=\"x\"")
                }),
                request,
                SignatureError::Malformed {
                    header: SignedHeader::SignatureInput,
                    reason: Malformed::BadParameter(SignatureParam::Created),
                },
            ),
            (
                "sha-512 only",
                replaced(&|h| h.content_digest = "sha-512=:AAAA:".into()),
                request,
                SignatureError::BadSignature,
            ),
        ];
        for (name, headers, request, expected) in table {
            assert_eq!(check(&headers, &request), Err(expected), "{name}");
        }
    }

    #[test]
    fn missing_headers_are_named() {
        let request = post("/p", b"");
        let headers = sign(&key(), &request, NOW, "n");
        let full = ReceivedHeaders::from(&headers);
        let table = [
            (ReceivedHeaders { content_digest: None, ..full }, SignedHeader::ContentDigest),
            (ReceivedHeaders { signature_input: None, ..full }, SignedHeader::SignatureInput),
            (ReceivedHeaders { signature: None, ..full }, SignedHeader::Signature),
        ];
        for (received, header) in table {
            let got = verify(&received, &request, &keys(), NOW, &mut NonceCache::default());
            assert_eq!(got, Err(SignatureError::MissingHeader(header)));
        }
    }

    #[test]
    fn created_must_be_within_the_window() {
        let request = post("/p", b"x");
        let table = [
            (NOW - DEFAULT_MAX_AGE_S, true),
            (NOW - DEFAULT_MAX_AGE_S - 1, false),
            (NOW + DEFAULT_MAX_FUTURE_S, true),
            (NOW + DEFAULT_MAX_FUTURE_S + 1, false),
        ];
        for (created, accepted) in table {
            let got = check(&sign(&key(), &request, created, "n"), &request);
            match (accepted, got) {
                (true, Ok(_)) => {}
                (false, Err(SignatureError::Stale { created: c, now })) if created < NOW => {
                    assert_eq!((c, now), (created, NOW))
                }
                (false, Err(SignatureError::Future { created: c, now })) if created > NOW => {
                    assert_eq!((c, now), (created, NOW))
                }
                (_, other) => panic!("created {created}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_replayed_nonce_is_refused_until_it_is_too_old_anyway() -> TestResult {
        let mut nonces = NonceCache::new(Freshness::default(), 10);
        let request = post("/p", b"x");
        let headers = sign(&key(), &request, NOW, "n");
        verify(&(&headers).into(), &request, &keys(), NOW, &mut nonces)?;
        assert_eq!(verify(&(&headers).into(), &request, &keys(), NOW + 1, &mut nonces), Err(SignatureError::Replayed));
        // Another nonce of the same key is fine.
        verify(&(&sign(&key(), &request, NOW, "m")).into(), &request, &keys(), NOW, &mut nonces)?;
        // Past the window, the signature itself is stale (so the nonce may be forgotten).
        let later = NOW + DEFAULT_MAX_AGE_S + 1;
        assert!(matches!(
            verify(&(&headers).into(), &request, &keys(), later, &mut nonces),
            Err(SignatureError::Stale { .. })
        ));
        nonces.evict(later);
        assert!(nonces.is_empty());
        Ok(())
    }

    #[test]
    fn a_full_cache_refuses_instead_of_forgetting() -> TestResult {
        let mut nonces = NonceCache::new(Freshness::default(), 2);
        let id = key().public_key().key_id();
        nonces.insert(&id, "a", NOW, NOW)?;
        nonces.insert(&id, "b", NOW - 10, NOW)?;
        assert_eq!(nonces.insert(&id, "c", NOW, NOW), Err(SignatureError::NonceCacheFull));
        // Once "b" is out of the window there is room again; "a" is still remembered.
        let later = NOW - 10 + DEFAULT_MAX_AGE_S + 1;
        nonces.insert(&id, "c", later, later)?;
        assert_eq!(nonces.insert(&id, "a", later, later), Err(SignatureError::Replayed));
        // Nonces are per key.
        let other = NodeKey::from_seed(&[1; 32]).public_key().key_id();
        nonces.evict(NOW + DEFAULT_MAX_AGE_S + 1);
        nonces.insert(&other, "c", later, later)?;
        Ok(())
    }

    /// RFC 9421 Appendix B.2.6 (ed25519 over the B.1.4 test key): the signature base has the
    /// RFC's format and the signature is the RFC's (Ed25519 is deterministic).
    #[test]
    fn rfc_9421_b_2_6_test_vector() -> TestResult {
        use base64::Engine as _;
        let std = base64::engine::general_purpose::STANDARD;
        // B.1.4 PKCS#8 private key: the seed is the last 32 bytes.
        let der = std.decode("MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF")?;
        let key = NodeKey::from_seed(&der[der.len() - 32..].try_into()?);
        let spki = std.decode("MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=")?;
        assert_eq!(key.public_key().to_bytes().as_slice(), &spki[spki.len() - 32..]);

        let input = r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#;
        let dict = sfv::parse_dictionary(input).map_err(|_| "parse")?;
        let Member::InnerList(items, params) = &dict[0].1 else { return Err("inner list".into()) };
        let params_text = sfv::serialize_inner_list(items, params);
        let base = signature_base(
            &[
                ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
                ("@method", "POST"),
                ("@path", "/foo"),
                ("@authority", "example.com"),
                ("content-type", "application/json"),
                ("content-length", "18"),
            ],
            &params_text,
        );
        let expected = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
                        \"@method\": POST\n\
                        \"@path\": /foo\n\
                        \"@authority\": example.com\n\
                        \"content-type\": application/json\n\
                        \"content-length\": 18\n\
                        \"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
        assert_eq!(base, expected);
        let signature = sfv::serialize_bytes(&key.sign(base.as_bytes()));
        assert_eq!(
            signature,
            ":wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
        );
        Ok(())
    }

    /// RFC 9530 §B.1-style digest: `{"hello": "world"}` has the RFC's sha-256 value.
    #[test]
    fn content_digest_matches_rfc_9530() {
        assert_eq!(content_digest(br#"{"hello": "world"}"#), "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:");
    }
}
