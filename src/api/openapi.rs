//! The OpenAPI 3.1 document of the HTTP API, served at `GET /v1/openapi.json`.
//!
//! Generated from the code: every route is registered through [`utoipa_axum`] from its handler's
//! `#[utoipa::path]` (so the router and the document list the same routes), and
//! [`declare_refusals`] adds the answers that do not come from a handler but from the layers every
//! request passes — the browser guard (421, 403, 415), the body limit (413), authentication (401),
//! decoding (400), ids (404) and an unavailable core (503) — from one table, so no route can give a
//! status its operation does not declare.
//!
//! The bodies of the core's records (tasks, agents, threads, …) are described here as JSON
//! objects, not derived from the core's model types: the core stays free of HTTP concerns, and
//! `docs/api.md` remains the field-by-field reference.

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::info::{InfoBuilder, LicenseBuilder};
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ComponentsBuilder, Content, OpenApi, OpenApiBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

use super::HttpCaller;

/// Routes that answer without touching the core (no 401, no 503).
const OPEN: [&str; 2] = ["/ping", "/healthz"];
/// Prefix of the node-protocol routes, whose errors are typed frames.
const NODE_PROTOCOL: &str = "/v1/node/tasks";

/// Any JSON object (a record of the core; see `docs/api.md` for its fields).
pub struct Object;

impl PartialSchema for Object {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("A JSON object; its fields are listed in docs/api.md."))
            .into()
    }
}

impl ToSchema for Object {}

/// An error: `{"error": "<message>"}`, with extra fields on some (`error_id`, `status`).
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // describes a body, never built
pub struct ErrorBody {
    /// What was wrong (names the field, parameter or reason).
    error: String,
    /// On a failure on the node's side: the id its log records the cause under.
    #[schema(required = false)]
    error_id: String,
    /// The task's current status (a resume's 409, a cancel's or resume's 503).
    #[schema(required = false)]
    status: String,
}

/// A node-protocol error: a typed error frame (`{"type": "error", "error": {"code", "message"}, …}`),
/// or `{"error": "<message>"}` for the guard's refusals, which come first.
pub struct NodeErrorBody;

impl PartialSchema for NodeErrorBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("A typed error frame of the node protocol, or {\"error\": …} from the guard."))
            .into()
    }
}

impl ToSchema for NodeErrorBody {}

/// The body of `POST /v1/tasks` (the core's `CreateTask`, described here: see the module doc).
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes a body, never built
pub struct CreateTaskBody {
    /// What to do; routes to a target with this capability (or must be one of `target_agent_id`'s).
    #[serde(default)]
    #[schema(example = "demo.echo")]
    intent: Option<String>,
    /// The target (or agent) to run it on; alias `target_runtime`.
    #[serde(default)]
    target_agent_id: Option<String>,
    /// The task's input.
    #[serde(default)]
    payload: serde_json::Value,
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    thread_id: Option<String>,
    #[serde(default)]
    conversation_id: Option<String>,
    /// Options for the runtime, merged over the target's defaults.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    runtime_options: Option<serde_json::Value>,
    #[serde(default)]
    delivery: Option<DeliveryBody>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    /// As the `Idempotency-Key` header.
    #[serde(default)]
    idempotency_key: Option<String>,
    /// Dispatch order on a busy runtime scope (default `normal`).
    #[serde(default)]
    #[schema(pattern = "^(low|normal|high)$")]
    priority: Option<String>,
    /// How failed attempts are retried (default: the target's `defaults.retry_policy`, else never).
    #[serde(default)]
    retry_policy: Option<RetryPolicyBody>,
    /// Bounds on each attempt (default: the target's `defaults.deadlines`).
    #[serde(default)]
    deadlines: Option<DeadlinesBody>,
}

/// `POST /v1/tasks/bulk`: which tasks (exactly one of `ids` and `filter`) and what to do.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes a body, never built
pub struct BulkBody {
    /// `cancel`, or `retry` (a new attempt of a failed or cancelled task, now).
    #[schema(pattern = "^(cancel|retry)$")]
    action: String,
    /// The tasks by id (at most 10,000).
    #[serde(default)]
    ids: Option<Vec<String>>,
    /// The tasks by the listing's filters (`status` may be a string or an array; `retrying` and
    /// `stuck` are booleans); one that names no condition is refused.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    filter: Option<serde_json::Value>,
    /// Only count and list the tasks.
    #[serde(default)]
    dry_run: Option<bool>,
    /// Recorded with each cancel or retry.
    #[serde(default)]
    reason: Option<String>,
}

/// How a task's failed attempts are retried; each field defaults on its own.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes a body, never built
pub struct RetryPolicyBody {
    /// Attempts in all, the first included (default 3).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    max_attempts: Option<u32>,
    /// `fixed` or `exponential` (default; the delay doubles per attempt).
    #[serde(default)]
    #[schema(pattern = "^(fixed|exponential)$")]
    backoff: Option<String>,
    /// Delay before the first retry (default 1000).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86400000)]
    initial_delay_ms: Option<u64>,
    /// Upper bound of any delay (default 60000, at least `initial_delay_ms`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86400000)]
    max_delay_ms: Option<u64>,
    /// Draw each delay from [delay/2, delay] (default false).
    #[serde(default)]
    jitter: Option<bool>,
    /// Failure reasons retried (default: all but `adapter missing` and `crashed`).
    #[serde(default)]
    retry_on: Option<Vec<String>>,
}

/// Bounds on each attempt of a task, in milliseconds; each fails the attempt with its own reason.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes a body, never built
pub struct DeadlinesBody {
    /// From scheduling (creation, or the retry coming due) to the agent starting the attempt:
    /// `schedule_to_start_timeout`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2592000000u64)]
    schedule_to_start_ms: Option<u64>,
    /// From the agent starting the attempt to its end: `start_to_close_timeout`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2592000000u64)]
    start_to_close_ms: Option<u64>,
    /// Longest silence of a started attempt (not while awaiting input): `heartbeat_timeout`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2592000000u64)]
    heartbeat_timeout_ms: Option<u64>,
}

/// How the caller wants results delivered.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes a body, never built
pub struct DeliveryBody {
    /// `stream` or `sync` (no behavioural difference).
    #[serde(default)]
    #[schema(pattern = "^(stream|sync)$")]
    mode: Option<String>,
    /// Launch the target's runtime if it is down (default true).
    #[serde(default)]
    launch_if_down: Option<bool>,
    /// Fail the task if it has not finished after this many milliseconds.
    #[serde(default)]
    #[schema(minimum = 0)]
    timeout_ms: Option<u64>,
}

/// Tags of the operations, with what each groups.
const TAGS: [(&str, &str); 9] = [
    ("node", "Health, readiness, statistics, identity, metrics, this document"),
    ("tasks", "Tasks and their events"),
    ("targets", "Targets and their runtimes"),
    ("agents", "Registered agents"),
    ("threads", "Threads of turns between agents"),
    ("peers", "Static peers"),
    ("node-protocol", "Node-to-node protocol (destination side)"),
    ("artifacts", "Artifact bytes"),
    ("tokens", "API tokens (admin)"),
];

/// The document's root (info, tags, shared schemas); the routes add their paths.
pub fn base() -> OpenApi {
    let info = InfoBuilder::new()
        .title("AethroLink node HTTP API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "AethroLink v1: tasks, events, targets, agents, threads, peers, the node protocol, artifacts, tokens \
             and the node's own health. Errors are {\"error\": \"<message>\"}; docs/api.md is the human reference.",
        ))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build()));
    let components = ComponentsBuilder::new()
        .schema("Error", ErrorBody::schema())
        .schema("Object", Object::schema())
        .schema("CreateTaskBody", CreateTaskBody::schema())
        .schema("DeliveryBody", DeliveryBody::schema())
        .schema("RetryPolicyBody", RetryPolicyBody::schema())
        .schema("BulkBody", BulkBody::schema())
        .schema("DeadlinesBody", DeadlinesBody::schema())
        .schema("NodeErrorBody", NodeErrorBody::schema());
    let tags = TAGS.map(|(name, what)| TagBuilder::new().name(name).description(Some(what)).build());
    OpenApiBuilder::new().info(info).components(Some(components.build())).tags(Some(tags)).build()
}

/// The refusals a route can give without its handler, by status: (status, when).
fn refusals(path: &str, method: &HttpMethod, operation: &Operation) -> Vec<(u16, &'static str)> {
    let open = OPEN.contains(&path);
    let params = operation.parameters.as_deref().unwrap_or_default();
    let has_path_param = params.iter().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path));
    let post = *method == HttpMethod::Post;
    let mut out = vec![
        (421, "The Host header does not name this node (browser safety)."),
        (
            403,
            "An Origin that is not this node's own or configured; or the caller lacks the right (the message names the scope).",
        ),
    ];
    if !open {
        out.push((401, "A token that is not valid, or none where the node needs one."));
        out.push((503, "The node cannot serve now (storage unavailable, a core service restarting); retryable."));
    }
    if post || !params.is_empty() {
        out.push((400, "A malformed request: the body, a parameter or a header (the message names it)."));
    }
    if post {
        out.push((413, "The body is larger than the node's limit (--max-body-bytes)."));
        out.push((415, "A body that is not application/json (or has no Content-Type)."));
    }
    if has_path_param {
        out.push((404, "No such id."));
    }
    out
}

/// Adds to every operation the statuses the layers in front of its handler can answer
/// ([`refusals`]), each with the error body; statuses the route declares itself are kept.
pub fn declare_refusals(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let node_protocol = path.starts_with(NODE_PROTOCOL);
        let ops = [(HttpMethod::Get, item.get.as_mut()), (HttpMethod::Post, item.post.as_mut())];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            for (status, why) in refusals(path, &method, op) {
                let schema = Ref::from_schema_name(if node_protocol { "NodeErrorBody" } else { "Error" });
                let response =
                    ResponseBuilder::new().description(why).content("application/json", Content::new(Some(schema)));
                op.responses.responses.entry(status.to_string()).or_insert_with(|| RefOr::T(response.build()));
            }
        }
    }
}

/// The document, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut doc = super::document();
    declare_refusals(&mut doc);
    doc.to_json().unwrap_or_else(|_| "{}".to_owned())
});

/// The OpenAPI document of this API (as served).
pub fn document_json() -> &'static str {
    &DOCUMENT
}

/// `GET /v1/openapi.json`: this document (the same policy as other reads).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "node",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
pub async fn serve(HttpCaller(_caller): HttpCaller) -> Response {
    ([(CONTENT_TYPE, "application/json")], document_json()).into_response()
}
