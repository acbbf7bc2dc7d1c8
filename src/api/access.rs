//! The access log: one line per request under the target `aethrolink::access` — INFO for a
//! 4xx, WARN for a 5xx (with the `{"error"}` message of the answer), DEBUG for the rest.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::Response;

/// Largest error body read back for its message (error answers are small JSON documents).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Logs the request once its answer is known.
pub async fn access_log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    let ms = started.elapsed().as_millis() as u64;
    if !(status.is_client_error() || status.is_server_error()) {
        tracing::debug!(target: "aethrolink::access", %method, %path, status = status.as_u16(), ms, "request");
        return response;
    }
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // A body of known, small size (error answers are built in memory) is read back whole.
    let small = axum::body::HttpBody::size_hint(response.body()).upper().is_some_and(|n| n <= MAX_ERROR_BODY as u64);
    let (response, error) = if is_json && small {
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, MAX_ERROR_BODY).await {
            Ok(bytes) => {
                let error = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                    .unwrap_or_default();
                (Response::from_parts(parts, Body::from(bytes)), error)
            }
            Err(_) => (Response::from_parts(parts, Body::empty()), String::new()),
        }
    } else {
        (response, String::new())
    };
    if status.is_server_error() {
        tracing::warn!(target: "aethrolink::access", %method, %path, status = status.as_u16(), ms, %error, "request failed");
    } else {
        tracing::info!(target: "aethrolink::access", %method, %path, status = status.as_u16(), ms, %error, "request refused");
    }
    response
}
