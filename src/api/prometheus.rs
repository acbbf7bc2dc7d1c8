//! `GET /metrics` (Prometheus text format) and the HTTP request metrics. The recorder is
//! process-wide (the `metrics` facade has one global recorder): installed once, on first use,
//! with histogram buckets for every `_seconds` metric; the names live in
//! `aethrolink_actors::telemetry`.

use std::sync::OnceLock;
use std::time::Instant;

use aethrolink_actors::telemetry;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::{ApiError, AppState, HttpCaller};

/// The process's Prometheus recorder (`None`: another recorder was installed first, e.g. by a
/// test harness; metrics then go there).
pub fn recorder() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &telemetry::SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(telemetry::STORAGE_BATCH_SIZE.into()),
                        &telemetry::BATCH_BUCKETS,
                    )
                });
            let handle = match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics is unavailable");
                    return None;
                }
            };
            telemetry::describe();
            Some(handle)
        })
        .clone()
}

/// `GET /metrics` (read right: off loopback a scraper presents a `tasks:read` token).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "node",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String))
)]
pub async fn scrape(State(st): State<AppState>, HttpCaller(caller): HttpCaller) -> Result<Response, ApiError> {
    caller.require(aethrolink_actors::service::Need::Read)?;
    let handle =
        st.metrics.as_ref().ok_or_else(|| ApiError::unavailable("metrics are not recorded by this process"))?;
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response())
}

/// Counts every answered request by method, matched route and status, and times it.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(telemetry::HTTP_REQUEST_DURATION, "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(telemetry::HTTP_REQUESTS, "method" => method, "route" => route, "status" => status).increment(1);
    response
}
