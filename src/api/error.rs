//! API errors: a status and a message naming what was wrong, rendered `{"error": "…"}`. A failure
//! on the node's side whose cause must stay private (a path, an OS or database error) is logged
//! under an error id and answered with a stable message and `"error_id"`. [`json_errors`] gives
//! the router's and extractors' own refusals the same shape.

use aethrolink_actors::service::{ErrorKind, ServiceError};
use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Extra fields beside `error` (e.g. the task's current `status` on a 409).
    extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), extra: Map::new() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

/// The one table from a service error's kind to an HTTP status.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let error_id = e.log_detail();
        let mut extra = e.fields;
        if let Some(id) = error_id {
            extra.insert("error_id".to_owned(), Value::String(id));
        }
        ApiError { status: status_of(e.kind), message: e.message, extra }
    }
}

/// Most bytes of a non-JSON error body kept as the message.
const REWRITTEN_BODY_MAX: usize = 4096;

/// Whether an answer is an error whose body is not JSON (axum's own rejections of a bad path,
/// query string or body are `text/plain`). Pure.
pub fn needs_json_shape(status: StatusCode, headers: &HeaderMap) -> bool {
    let is_json = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let essence = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        essence == "application/json" || essence.ends_with("+json")
    });
    (status.is_client_error() || status.is_server_error()) && !is_json
}

/// The middleware that puts every error in the documented shape: a non-JSON error body becomes
/// `{"error": <its text>}` (or the status's reason when it had none); headers are kept.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if !needs_json_shape(response.status(), response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, REWRITTEN_BODY_MAX).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message =
        if text.is_empty() { parts.status.canonical_reason().unwrap_or("request failed").to_owned() } else { text };
    let json = serde_json::json!({ "error": message }).to_string();
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(json))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.extra;
        body.insert("error".to_owned(), Value::String(self.message));
        (self.status, Json(Value::Object(body))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_status() {
        let table = [
            (ErrorKind::Invalid, 400),
            (ErrorKind::Unauthenticated, 401),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Unprocessable, 422),
            (ErrorKind::Internal, 500),
            (ErrorKind::Unavailable, 503),
        ];
        for (kind, status) in table {
            assert_eq!(status_of(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn only_non_json_errors_are_rewritten() {
        let typed = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(t).unwrap_or(HeaderValue::from_static("x/y")));
            h
        };
        let cases = [
            (400, typed("text/plain; charset=utf-8"), true),
            (413, HeaderMap::new(), true),
            (500, typed("text/html"), true),
            (404, typed("application/json"), false),
            (415, typed("application/problem+json"), false),
            (200, typed("text/plain"), false),
            (304, HeaderMap::new(), false),
        ];
        for (status, headers, want) in cases {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            assert_eq!(needs_json_shape(status, &headers), want, "{status} {headers:?}");
        }
    }

    #[test]
    fn hidden_causes_stay_in_the_log() {
        let hidden = ServiceError::hidden(ErrorKind::Unavailable, "storage is unavailable", "/srv/x.db: EMFILE");
        let api = ApiError::from(hidden);
        assert_eq!(api.message, "storage is unavailable");
        assert!(api.extra.get("error_id").and_then(Value::as_str).is_some_and(|id| id.len() == 26), "{api:?}");
        assert!(!format!("{:?}", api.extra).contains("/srv"));
        let plain = ApiError::from(ServiceError::invalid("limit 'x' must be an integer"));
        assert!(plain.extra.get("error_id").is_none(), "client mistakes carry no error id");
    }
}
