//! `GET /artifacts/{id}` and `GET /v1/artifacts/{id}`: the bytes with their media type.

use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, HttpCaller};

/// `GET /v1/artifacts/{id}`.
#[utoipa::path(
    get,
    path = "/v1/artifacts/{artifact_id}",
    operation_id = "get_artifact",
    tag = "artifacts",
    params(("artifact_id" = String, Path, description = "The artifact's id")),
    responses(
        (status = 200, description = "The bytes, with the artifact's media type and `X-Artifact-SHA256`", content_type = "*/*", body = String),
        (status = 500, description = "The artifact is recorded but its bytes are unreadable (a fault of the node)", body = super::openapi::ErrorBody)
    )
)]
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

/// `GET /artifacts/{id}`: the same as [`get`] (the Go node's path).
#[utoipa::path(
    get,
    path = "/artifacts/{artifact_id}",
    operation_id = "get_artifact_legacy",
    tag = "artifacts",
    params(("artifact_id" = String, Path, description = "The artifact's id")),
    responses(
        (status = 200, description = "The bytes, with the artifact's media type and `X-Artifact-SHA256`", content_type = "*/*", body = String),
        (status = 500, description = "The artifact is recorded but its bytes are unreadable (a fault of the node)", body = super::openapi::ErrorBody)
    )
)]
pub async fn get_legacy(
    state: State<AppState>,
    caller: HttpCaller,
    artifact_id: Path<String>,
) -> Result<Response, ApiError> {
    get(state, caller, artifact_id).await
}
