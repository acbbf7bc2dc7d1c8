//! `GET /artifacts/{id}` and `GET /v1/artifacts/{id}`: the bytes with their media type.

use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

pub async fn get(State(st): State<AppState>, Path(artifact_id): Path<String>) -> Result<Response, ApiError> {
    let (meta, body) = st
        .dir
        .reader
        .artifact(&artifact_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("artifact not found: {artifact_id}")))?;
    let bytes = st.dir.artifacts.read(body).await.map_err(|e| {
        tracing::error!(artifact_id = %artifact_id, error = %e, "artifact bytes unreadable");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("artifact {artifact_id} is recorded but its bytes are unreadable"),
        )
    })?;
    let media = HeaderValue::from_str(&meta.media_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let sha = HeaderValue::from_str(&meta.sha256).unwrap_or(HeaderValue::from_static(""));
    Ok((StatusCode::OK, [(CONTENT_TYPE, media), (HeaderName::from_static("x-artifact-sha256"), sha)], bytes)
        .into_response())
}
