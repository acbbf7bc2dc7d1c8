//! Metric names and the one-line helpers that record them, through the `metrics` facade (the
//! binary installs the Prometheus recorder and serves `GET /metrics`; without one, recording is
//! a no-op). Names follow Prometheus conventions: the `alink_` prefix, base units in the name
//! (`_seconds`), `_total` on counters; labels are small closed sets (statuses, reasons, adapter
//! kinds) or operator-chosen ids (targets, peers). The list with meanings is in
//! `docs/operations.md`; keep the two together.

use std::time::Duration;

use crate::model::TaskStatus;

/// Tasks created, by `target` and `adapter`.
pub const TASKS_CREATED: &str = "alink_tasks_created_total";
/// Task status transitions, by `from` and `to`.
pub const TASK_TRANSITIONS: &str = "alink_task_transitions_total";
/// Tasks that reached a terminal status, by `status` and `reason` (`last_error.reason`, `none`).
pub const TASKS_FINISHED: &str = "alink_tasks_finished_total";
/// Creation → terminal status, by `status`.
pub const TASK_DURATION: &str = "alink_task_duration_seconds";
/// Creation → first `dispatching` (routing, launch, queueing).
pub const TASK_DISPATCH_LATENCY: &str = "alink_task_dispatch_latency_seconds";
/// Runtime launches that ended, by `adapter` kind and `outcome` (`ready`, `failed`, `exited`).
pub const RUNTIME_LAUNCHES: &str = "alink_runtime_launches_total";
/// Spawn → ready of launches that became ready.
pub const RUNTIME_LAUNCH_DURATION: &str = "alink_runtime_launch_duration_seconds";
/// Agent processes running now.
pub const RUNTIMES_LIVE: &str = "alink_runtimes_live";
/// SSE subscribers now (task event streams being served).
pub const SSE_SUBSCRIBERS: &str = "alink_sse_subscribers";
/// Gauge: live Aether gateway sessions.
pub const AETHER_SESSIONS: &str = "alink_aether_sessions";
/// Times a slow SSE client lagged (its buffer was full; it catches up from storage).
pub const SSE_LAGGED: &str = "alink_sse_lagged_total";
/// Storage transactions committed (one per group commit).
pub const STORAGE_COMMITS: &str = "alink_storage_commits_total";
/// Duration of a storage transaction (BEGIN … COMMIT, fsync included).
pub const STORAGE_COMMIT_DURATION: &str = "alink_storage_commit_duration_seconds";
/// Writes per committed transaction.
pub const STORAGE_BATCH_SIZE: &str = "alink_storage_batch_writes";
/// Registered peers, by `status` (`online`, `offline`).
pub const PEERS: &str = "alink_peers";
/// Relayed tasks being followed now.
pub const RELAYS_IN_FLIGHT: &str = "alink_relays_in_flight";
/// Node-protocol requests refused as unauthenticated or forbidden, by `reason`.
pub const AUTH_FAILURES: &str = "alink_auth_failures_total";
/// Presented API tokens refused (HTTP bearer, gateway key), by `reason`.
pub const TOKEN_FAILURES: &str = "alink_token_failures_total";
/// HTTP requests answered, by `method`, matched `route` and `status`.
pub const HTTP_REQUESTS: &str = "alink_http_requests_total";
/// HTTP request duration (to the response head), by `method` and matched `route`.
pub const HTTP_REQUEST_DURATION: &str = "alink_http_request_duration_seconds";
/// HTTP connections open now (counted against `--max-connections`).
pub const HTTP_CONNECTIONS: &str = "alink_http_connections";
/// HTTP connections the node closed or refused itself, by `reason`.
pub const HTTP_CONNECTIONS_CLOSED: &str = "alink_http_connections_closed_total";

/// Every metric with its unit and help text, for the recorder to describe.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(TASKS_CREATED, Unit::Count, "Tasks created, by target and adapter kind.");
    describe_counter!(TASK_TRANSITIONS, Unit::Count, "Task status transitions, by from and to status.");
    describe_counter!(
        TASKS_FINISHED,
        Unit::Count,
        "Tasks that reached a terminal status, by status and failure reason."
    );
    describe_histogram!(TASK_DURATION, Unit::Seconds, "Task creation to terminal status, by status.");
    describe_histogram!(TASK_DISPATCH_LATENCY, Unit::Seconds, "Task creation to its first dispatch.");
    describe_counter!(RUNTIME_LAUNCHES, Unit::Count, "Runtime launches that ended, by adapter kind and outcome.");
    describe_histogram!(RUNTIME_LAUNCH_DURATION, Unit::Seconds, "Spawn to ready of launches that became ready.");
    describe_gauge!(RUNTIMES_LIVE, Unit::Count, "Agent processes running now.");
    describe_gauge!(SSE_SUBSCRIBERS, Unit::Count, "Task event streams being served now.");
    describe_gauge!(AETHER_SESSIONS, Unit::Count, "Aether gateway sessions connected now.");
    describe_counter!(SSE_LAGGED, Unit::Count, "Times a slow event-stream client lagged and caught up from storage.");
    describe_counter!(STORAGE_COMMITS, Unit::Count, "Storage transactions committed.");
    describe_histogram!(STORAGE_COMMIT_DURATION, Unit::Seconds, "Storage transaction duration, fsync included.");
    describe_histogram!(STORAGE_BATCH_SIZE, Unit::Count, "Writes per committed storage transaction.");
    describe_gauge!(PEERS, Unit::Count, "Registered peers, by status.");
    describe_gauge!(RELAYS_IN_FLIGHT, Unit::Count, "Relayed tasks being followed now.");
    describe_counter!(AUTH_FAILURES, Unit::Count, "Node-protocol requests refused, by reason.");
    describe_counter!(TOKEN_FAILURES, Unit::Count, "Presented API tokens refused, by reason.");
    describe_counter!(HTTP_REQUESTS, Unit::Count, "HTTP requests answered, by method, route and status.");
    describe_histogram!(HTTP_REQUEST_DURATION, Unit::Seconds, "HTTP request duration to the response head.");
    describe_gauge!(HTTP_CONNECTIONS, Unit::Count, "HTTP connections open now.");
    describe_counter!(HTTP_CONNECTIONS_CLOSED, Unit::Count, "HTTP connections the node closed or refused, by reason.");
}

/// Histogram buckets of every `_seconds` metric: 0.5 ms … 5 min.
pub const SECONDS_BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0];
/// Buckets of the storage batch size.
pub const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A task changed status.
pub fn task_transition(from: TaskStatus, to: TaskStatus) {
    metrics::counter!(TASK_TRANSITIONS, "from" => from.as_str(), "to" => to.as_str()).increment(1);
}

/// A task reached terminal `status` (with its failure reason, if any) `age` after creation.
pub fn task_finished(status: TaskStatus, reason: Option<&str>, age: Option<Duration>) {
    let reason = reason.unwrap_or("none").to_owned();
    metrics::counter!(TASKS_FINISHED, "status" => status.as_str(), "reason" => reason).increment(1);
    if let Some(age) = age {
        metrics::histogram!(TASK_DURATION, "status" => status.as_str()).record(age.as_secs_f64());
    }
}

/// Seconds from an RFC 3339 timestamp to now (`None`: unreadable or in the future).
pub fn age_of(rfc3339: &str) -> Option<Duration> {
    let at = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
    let age = time::OffsetDateTime::now_utc() - at;
    Duration::try_from(age).ok()
}
