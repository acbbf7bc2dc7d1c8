//! API errors: a status and a message naming what was wrong, rendered `{"error": "…"}`.

use aethrolink_actors::error::{AskError, StorageError};
use axum::Json;
use axum::http::StatusCode;
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

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// Adds a field beside `error`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        // Storage trouble is ours, never the client's: 503 so clients retry.
        tracing::error!(error = %e, "storage error while serving a request");
        ApiError::unavailable(e.to_string())
    }
}

impl From<AskError> for ApiError {
    fn from(e: AskError) -> Self {
        tracing::warn!(error = %e, "core did not answer a request");
        ApiError::unavailable(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.extra;
        body.insert("error".to_owned(), Value::String(self.message));
        (self.status, Json(Value::Object(body))).into_response()
    }
}
