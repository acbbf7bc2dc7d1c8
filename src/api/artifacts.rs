//! `GET /artifacts/{id}` and `GET /v1/artifacts/{id}`: the bytes with their media type.

use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, HttpCaller};

pub async fn get(
    State(st): State<AppState>,
    HttpCaller(caller): HttpCaller,
    Path(artifact_id): Path<String>,
) -> Result<Response, ApiError> {
    let (meta, bytes) = st.services.artifact(&caller, &artifact_id).await?;
    let media = HeaderValue::from_str(&meta.media_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let sha = HeaderValue::from_str(&meta.sha256).unwrap_or(HeaderValue::from_static(""));
    Ok((StatusCode::OK, [(CONTENT_TYPE, media), (HeaderName::from_static("x-artifact-sha256"), sha)], bytes)
        .into_response())
}
