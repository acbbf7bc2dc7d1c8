//! Strict JSON request bodies: `application/json` only (415 otherwise; a body without a type is
//! refused earlier, by [`super::guard`]), size-limited (413),
//! unknown fields and wrong types rejected with the path of the offending field (400).
//!
//! A rejected body is read to its end and discarded (up to a bound, [`BodyBudget`]) before the
//! answer goes out: a client that writes its whole body before reading (Python `http.client`,
//! `curl --data-binary` without `Expect`) would otherwise see the connection reset while it is
//! still sending, and never read the 413. A client that waits for `100 Continue` is answered at
//! once (it sends nothing until told to).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::ApiError;

/// A JSON body decoded strictly.
pub struct StrictJson<T>(pub T);

/// A JSON body that may be absent (empty body → `None`).
pub struct OptionalJson<T>(pub Option<T>);

/// The node's request body limit (`--max-body-bytes`), put on every request by the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

/// Least and most a rejected body is drained past the limit.
const DRAIN_FLOOR: usize = 1024 * 1024;
const DRAIN_CEILING: usize = 16 * 1024 * 1024;
/// How long draining a rejected body may take before the connection is closed instead.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a request body the node reads, and what it does with one it refuses. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyBudget {
    /// Bytes a body may have.
    pub limit: usize,
}

/// What to do with a body before reading any of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyPlan {
    /// Read it (it may still turn out too large).
    Read,
    /// Refuse it without reading: the client waits for `100 Continue` and sends nothing, or it
    /// declared more than would ever be drained (the connection closes either way).
    RefuseNow,
    /// Refuse it, but read and discard it first so the client reads the answer.
    DrainThenRefuse,
}

impl BodyBudget {
    /// Bytes of a refused body discarded past the limit before the node gives up and closes:
    /// 8× the limit, at least 1 MiB, at most 16 MiB.
    pub fn drain_allowance(&self) -> usize {
        self.limit.saturating_mul(8).clamp(DRAIN_FLOOR, DRAIN_CEILING)
    }

    /// Most bytes read of a refused body, in all.
    pub fn drain_cap(&self) -> usize {
        self.limit.saturating_add(self.drain_allowance())
    }

    /// The plan for a body that declared `declared` bytes (`Content-Length`), if it did.
    pub fn plan(&self, declared: Option<u64>, expects_continue: bool) -> BodyPlan {
        match declared {
            Some(n) if n > self.limit as u64 => self.refusal(Some(n), expects_continue),
            _ => BodyPlan::Read,
        }
    }

    /// How to refuse a body whose length is `declared` (if known).
    pub fn refusal(&self, declared: Option<u64>, expects_continue: bool) -> BodyPlan {
        if expects_continue || declared.is_some_and(|n| n > self.drain_cap() as u64) {
            BodyPlan::RefuseNow
        } else {
            BodyPlan::DrainThenRefuse
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the node's limit of {limit} bytes (--max-body-bytes)"),
    )
}

/// The 415 for a body whose `Content-Type` (`None`: absent) is not `application/json` or
/// `application/*+json` (parameters such as `charset` allowed); `None` when it is JSON.
pub(super) fn unsupported_media_type(value: Option<&HeaderValue>) -> Option<ApiError> {
    let Some(value) = value else {
        return Some(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request has a body but no Content-Type: send application/json",
        ));
    };
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        None
    } else {
        Some(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type '{text}': send application/json"),
        ))
    }
}

/// Whether a request declares a body: a non-zero `Content-Length`, or `Transfer-Encoding`.
pub(super) fn carries_body(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING) || declared_length(headers).is_some_and(|n| n > 0)
}

/// Reads and discards what is left of `stream`, up to `cap` bytes in all (`already` counted)
/// and [`DRAIN_TIMEOUT`]; past either the connection is closed when the answer has gone out.
async fn drain(mut stream: axum::body::BodyDataStream, already: usize, cap: usize) {
    let discard = async {
        let mut read = already;
        while let Some(Ok(chunk)) = stream.next().await {
            read = read.saturating_add(chunk.len());
            if read > cap {
                return Some(read);
            }
        }
        None
    };
    match tokio::time::timeout(DRAIN_TIMEOUT, discard).await {
        Ok(None) => {}
        Ok(Some(read)) => tracing::debug!(read, cap, "refused request body is too large to drain; closing"),
        Err(_) => tracing::debug!("refused request body did not end in time; closing"),
    }
}

/// Refuses `body` with `error`, draining it first when [`BodyBudget::refusal`] says so.
pub(super) async fn refuse(body: Body, headers: &HeaderMap, budget: BodyBudget, error: ApiError) -> ApiError {
    if budget.refusal(declared_length(headers), expects_continue(headers)) == BodyPlan::DrainThenRefuse {
        drain(body.into_data_stream(), 0, budget.drain_cap()).await;
    }
    error
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(EXPECT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

async fn body_bytes(req: Request) -> Result<Bytes, ApiError> {
    let budget = BodyBudget { limit: req.extensions().get::<BodyLimit>().map_or(usize::MAX, |l| l.0) };
    let (parts, body) = req.into_parts();
    // An empty body needs no type (the guard refused any other body without one).
    if let Some(error) = parts.headers.get(CONTENT_TYPE).and_then(|v| unsupported_media_type(Some(v))) {
        return Err(refuse(body, &parts.headers, budget, error).await);
    }
    match budget.plan(declared_length(&parts.headers), expects_continue(&parts.headers)) {
        BodyPlan::Read => {}
        BodyPlan::RefuseNow => return Err(too_large(budget.limit)),
        BodyPlan::DrainThenRefuse => {
            drain(body.into_data_stream(), 0, budget.drain_cap()).await;
            return Err(too_large(budget.limit));
        }
    }
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("could not read request body: {e}")))?;
        let read = bytes.len().saturating_add(chunk.len());
        if read > budget.limit {
            drain(stream, read, budget.drain_cap()).await;
            return Err(too_large(budget.limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(bytes))
}

/// Decodes `bytes`, naming the field at fault on error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid JSON body at '{path}': {inner}"))
        }
    })?;
    de.end().map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("request body is empty: expected a JSON object"));
        }
        decode(&bytes).map(StrictJson)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        decode(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn oversize_bodies_are_drained_within_a_bound() {
        let budget = BodyBudget { limit: MIB };
        assert_eq!(budget.drain_allowance(), 8 * MIB);
        assert_eq!(BodyBudget { limit: 2048 }.drain_allowance(), MIB, "a floor for tiny limits");
        assert_eq!(BodyBudget { limit: 64 * MIB }.drain_allowance(), 16 * MIB, "a ceiling");
        let (mib, two, huge) = (MIB as u64, 2 * MIB as u64, 10 * MIB as u64);
        let cases: [(Option<u64>, bool, BodyPlan); 7] = [
            (None, false, BodyPlan::Read),
            (Some(0), false, BodyPlan::Read),
            (Some(mib), false, BodyPlan::Read),
            (Some(two), false, BodyPlan::DrainThenRefuse),
            (Some(two), true, BodyPlan::RefuseNow),
            (Some(huge), false, BodyPlan::RefuseNow),
            (Some(mib), true, BodyPlan::Read),
        ];
        for (declared, expects, want) in cases {
            assert_eq!(budget.plan(declared, expects), want, "{declared:?} expect={expects}");
        }
        // Found too large while reading (chunked): drained unless the client waits.
        assert_eq!(budget.refusal(None, false), BodyPlan::DrainThenRefuse);
        assert_eq!(budget.refusal(None, true), BodyPlan::RefuseNow);
    }
}
