//! Task operations: create, get, list, cancel, resume, event history and live subscription,
//! artifacts.

use std::sync::Arc;

use ractor::{Actor, ActorRef};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Caller, ErrorKind, Need, ServiceError, Services, TASK_ASK, non_empty};
use crate::error::AskError;
use crate::intake::{Creation, IdempotencyKey, TaskRequest, create_task, create_task_once};
use crate::model::{ArtifactMeta, DeliveryRequest, JsonObject, TaskEvent, TaskRecord, TaskStatus};
use crate::sse::{SINK_CAPACITY, Subscriber, SubscriberArgs, SubscriberMsg};
use crate::state_machine::ResumeRejection;
use crate::storage::reader::MAX_PAGE;
use crate::storage::reader::TaskCursor;
use crate::storage::{StorageMsg, TaskFilter, TaskPage};
use crate::supervision::{ASK_TIMEOUT, ask};
use crate::task::{TaskError, TaskMsg};
use crate::task_supervisor::TaskSupMsg;

/// Default page of a task listing.
pub const DEFAULT_TASK_PAGE: u32 = 50;

/// A task as a client asks for it (contract §2.3).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    #[serde(default)]
    pub thread_id: Option<String>,
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default, alias = "target_runtime")]
    pub target_agent_id: Option<String>,
    #[serde(default)]
    pub intent: Option<String>,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub runtime_options: Option<JsonObject>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub delivery: Option<DeliveryRequest>,
    #[serde(default)]
    pub metadata: Option<JsonObject>,
    /// The caller's idempotency key (the HTTP binding also takes it from `Idempotency-Key`).
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Dispatch order on a busy runtime scope (`low`, `normal`, `high`; default `normal`).
    #[serde(default)]
    pub priority: crate::model::Priority,
    /// How failed attempts are retried (default: the target's `defaults.retry_policy`, else never).
    #[serde(default)]
    pub retry_policy: Option<crate::model::RetryPolicyRequest>,
    /// Bounds on each attempt (default: the target's `defaults.deadlines`).
    #[serde(default)]
    pub deadlines: Option<crate::model::Deadlines>,
}

impl From<CreateTask> for TaskRequest {
    fn from(req: CreateTask) -> Self {
        TaskRequest {
            thread_id: req.thread_id,
            sender: req.sender,
            target_agent_id: req.target_agent_id,
            intent: req.intent,
            payload: req.payload,
            runtime_options: req.runtime_options.unwrap_or_default(),
            conversation_id: req.conversation_id,
            delivery: DeliveryRequest::resolve(req.delivery),
            metadata: req.metadata.unwrap_or_default(),
            // Scoped by the service, which knows the caller.
            idempotency: None,
            priority: req.priority,
            retry_policy: req.retry_policy,
            deadlines: req.deadlines,
        }
    }
}

/// Filters of a task listing as the caller wrote them; the service checks the values.
#[derive(Clone, Debug, Default)]
pub struct TaskListQuery {
    /// Each value may hold several statuses separated by commas; any of them matches.
    pub status: Vec<String>,
    pub target: Option<String>,
    pub intent: Option<String>,
    pub conversation_id: Option<String>,
    pub sender: Option<String>,
    pub thread_id: Option<String>,
    pub correlation_id: Option<String>,
    /// `true`: only tasks with a scheduled retry.
    pub retrying: Option<String>,
    /// `true`: only non-terminal tasks without progress for `stuck_after_ms`.
    pub stuck: Option<String>,
    pub stuck_after_ms: Option<String>,
    pub created_after: Option<String>,
    pub created_before: Option<String>,
    pub updated_after: Option<String>,
    pub updated_before: Option<String>,
    /// Text in the task's last event (case-insensitive substring).
    pub q: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<String>,
}

/// How long a non-terminal task may go without progress before `stuck=true` lists it, unless
/// `stuck_after_ms` says otherwise.
pub const DEFAULT_STUCK_AFTER_MS: u64 = 10 * 60 * 1000;

/// Longest `stuck_after_ms` accepted (30 days).
const MAX_STUCK_AFTER_MS: u64 = 30 * 24 * 3600 * 1000;

/// Longest `q` accepted.
const MAX_TEXT_QUERY: usize = 256;

/// An answer to a pending input request.
#[derive(Clone, Debug, Default)]
pub struct ResumeInput {
    /// Must be a JSON object (or null).
    pub payload: Value,
    /// Answer a permission request with this option.
    pub option_id: Option<String>,
    /// Answer a permission request by kind (`allow`, `allow_always`, `reject`, `reject_always`).
    pub decision: Option<String>,
}

/// A live subscription to a task's events: history after the given seq, then live events with
/// no gap and no duplicate; the channel closes after the terminal event.
pub struct EventSubscription {
    /// Events in seq order.
    pub events: mpsc::Receiver<Arc<TaskEvent>>,
    /// Ends the subscription when dropped.
    pub guard: SubscriptionGuard,
}

/// Stops the subscriber actor when dropped (client gone, or shutdown).
pub struct SubscriptionGuard(ActorRef<SubscriberMsg>);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.stop(Some("stream closed".into()));
    }
}

fn task_not_found(task_id: &str) -> ServiceError {
    ServiceError::not_found(format!("task not found: {task_id}"))
}

/// A listing parameter's value is wrong: the message and the `parameter` field name it.
fn bad_param(name: &str, message: String) -> ServiceError {
    ServiceError::invalid(message).with("parameter", name)
}

/// A `true`/`false` parameter.
fn flag(name: &str, value: Option<String>) -> Result<bool, ServiceError> {
    match value.as_deref().map(str::trim) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(bad_param(name, format!("{name} '{other}' must be true or false"))),
    }
}

/// An RFC 3339 bound, normalised to the stored convention.
fn instant(name: &str, value: Option<String>) -> Result<Option<String>, ServiceError> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else { return Ok(None) };
    crate::clock::Timestamp::parse(&value).map(|t| Some(t.into_string())).map_err(|_| {
        bad_param(name, format!("{name} '{value}' is not an RFC 3339 timestamp (e.g. 2026-04-24T07:00:00Z)"))
    })
}

/// The filter a listing query asks for at `now`; the message (and the error's `parameter`
/// field) names the parameter at fault. Pure.
pub fn task_filter_at(q: TaskListQuery, now: time::OffsetDateTime) -> Result<TaskFilter, ServiceError> {
    let trimmed = |v: Option<String>| v.map(|s| s.trim().to_owned());
    let non_empty = |v: Option<String>| trimmed(v).filter(|s| !s.is_empty());
    let mut statuses = Vec::new();
    for value in q.status.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()) {
        let status = value.parse::<TaskStatus>().map_err(|_| {
            let all: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
            bad_param("status", format!("status '{value}' is not a task status; expected one of {}", all.join(", ")))
        })?;
        if !statuses.contains(&status) {
            statuses.push(status);
        }
    }
    let limit =
        match trimmed(q.limit) {
            None => DEFAULT_TASK_PAGE,
            Some(value) => value.parse::<u32>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
                bad_param("limit", format!("limit '{value}' must be an integer from 1 to {MAX_PAGE}"))
            })?,
        };
    let stuck = flag("stuck", q.stuck)?;
    let stuck_after_ms = match trimmed(q.stuck_after_ms) {
        None => DEFAULT_STUCK_AFTER_MS,
        Some(value) => value.parse::<u64>().ok().filter(|n| (1..=MAX_STUCK_AFTER_MS).contains(n)).ok_or_else(|| {
            bad_param(
                "stuck_after_ms",
                format!("stuck_after_ms '{value}' must be an integer from 1 to {MAX_STUCK_AFTER_MS}"),
            )
        })?,
    };
    let stuck_since = stuck.then(|| {
        let bound = time::Duration::milliseconds(i64::try_from(stuck_after_ms).unwrap_or(i64::MAX));
        crate::clock::format_rfc3339(now - bound)
    });
    let text = match non_empty(q.q) {
        Some(t) if t.chars().count() > MAX_TEXT_QUERY => {
            return Err(bad_param("q", format!("q is longer than {MAX_TEXT_QUERY} characters")));
        }
        other => other,
    };
    let cursor = match non_empty(q.cursor) {
        None => None,
        Some(c) => Some(TaskCursor::decode(&c).ok_or_else(|| {
            bad_param(
                "cursor",
                format!("cursor '{c}' is not a listing cursor; pass the next_cursor of the previous page"),
            )
        })?),
    };
    Ok(TaskFilter {
        statuses,
        target: non_empty(q.target),
        intent: non_empty(q.intent),
        conversation_id: non_empty(q.conversation_id),
        sender: non_empty(q.sender),
        thread_id: non_empty(q.thread_id),
        correlation_id: non_empty(q.correlation_id),
        retrying: flag("retrying", q.retrying)?,
        stuck_since,
        created_after: instant("created_after", q.created_after)?,
        created_before: instant("created_before", q.created_before)?,
        updated_after: instant("updated_after", q.updated_after)?,
        updated_before: instant("updated_before", q.updated_before)?,
        text,
        cursor,
        limit,
    })
}

/// [`task_filter_at`] now.
pub fn task_filter(q: TaskListQuery) -> Result<TaskFilter, ServiceError> {
    task_filter_at(q, time::OffsetDateTime::now_utc())
}

/// The payload a resume sends: the caller's object with `option_id`/`decision` folded in. Pure.
pub fn resume_payload(input: ResumeInput) -> Result<JsonObject, ServiceError> {
    let mut payload = match input.payload {
        Value::Null => JsonObject::new(),
        Value::Object(o) => o,
        other => {
            return Err(ServiceError::invalid(format!(
                "payload must be a JSON object, got {}",
                crate::model::json_type(&other)
            )));
        }
    };
    if let Some(o) = input.option_id {
        payload.insert("option_id".into(), Value::String(o));
    }
    if let Some(d) = input.decision {
        payload.insert("decision".into(), Value::String(d));
    }
    Ok(payload)
}

fn not_awaitable(status: TaskStatus) -> ServiceError {
    ServiceError::conflict(format!("task not awaitable: status is {status}")).with("status", status.as_str())
}

impl Services {
    /// Creates a task; answers once `task.created` and `task.routed` are durable.
    pub async fn create_task(&self, caller: &Caller, req: impl Into<TaskRequest>) -> Result<TaskRecord, ServiceError> {
        caller.require(Need::Write)?;
        let req = req.into();
        self.check_aether_destination(&req).await?;
        let created = create_task(&self.dir.intake, req).await?;
        self.launch_if_offline(&created).await;
        Ok(created)
    }

    /// A task for an Aether agent that is not connected asks an orchestrator to launch it.
    async fn launch_if_offline(&self, task: &TaskRecord) {
        let Some(target) = task.resolved_agent_id.as_deref().and_then(crate::aether::tasks::AetherTarget::parse) else {
            return;
        };
        let identity = target.id();
        let online = self
            .dir
            .presence
            .ask(TASK_ASK, |reply| crate::aether::presence::PresenceMsg::Online { identity, reply })
            .await
            .unwrap_or(true);
        if !online {
            self.request_launch(&target, &std::collections::BTreeMap::new()).await;
        }
    }

    /// A task for an Aether agent or pool (`ag::…`, not a node target of that id) needs one
    /// that can take it: a registered implementation or a connected agent (else 404).
    async fn check_aether_destination(&self, req: &TaskRequest) -> Result<(), ServiceError> {
        let Some(id) = req.target_agent_id.as_deref().map(str::trim) else { return Ok(()) };
        if self.dir.targets.borrow().get(id).is_some() {
            return Ok(());
        }
        match crate::aether::tasks::AetherTarget::parse(id) {
            Some(target) => self.check_aether_target(&target).await,
            None => Ok(()),
        }
    }

    /// Creates a task unless the caller's idempotency key (`header_key`, or the body's
    /// `idempotency_key`; both must agree) already did: then that task, `replayed`.
    pub async fn create_task_once(
        &self,
        caller: &Caller,
        req: CreateTask,
        header_key: Option<String>,
    ) -> Result<Creation, ServiceError> {
        caller.require(Need::Write)?;
        let key = match (header_key, req.idempotency_key.clone()) {
            (Some(h), Some(b)) if h != b => {
                return Err(ServiceError::invalid(format!(
                    "Idempotency-Key header '{h}' and body idempotency_key '{b}' differ"
                )));
            }
            (h, b) => h.or(b),
        };
        let mut request = TaskRequest::from(req);
        request.idempotency = key.map(|key| IdempotencyKey { scope: caller.idempotency_scope(), key });
        self.check_aether_destination(&request).await?;
        let created = create_task_once(&self.dir.intake, request).await?;
        if !created.replayed {
            self.launch_if_offline(&created.record).await;
        }
        Ok(created)
    }

    /// One task.
    pub async fn get_task(&self, caller: &Caller, task_id: &str) -> Result<TaskRecord, ServiceError> {
        caller.require(Need::Read)?;
        let stored = self.dir.reader.task(task_id).await?.ok_or_else(|| task_not_found(task_id))?;
        Ok(stored.task)
    }

    /// A page of tasks, newest first.
    pub async fn list_tasks(&self, caller: &Caller, query: TaskListQuery) -> Result<TaskPage, ServiceError> {
        caller.require(Need::Read)?;
        let filter = task_filter(query)?;
        self.searched_tasks(&filter).await
    }

    /// A page of `filter`'s tasks. A text search first brings the search index up to every write
    /// acknowledged so far (the index is kept behind the writes): a task's latest event is found
    /// as soon as it was published.
    pub(crate) async fn searched_tasks(&self, filter: &TaskFilter) -> Result<TaskPage, ServiceError> {
        if filter.text.is_some() {
            self.dir.storage.ask(ASK_TIMEOUT, StorageMsg::SyncTextIndex).await??;
        }
        Ok(self.dir.reader.tasks(filter).await?)
    }

    /// The live actor of a task, or `None` when it has none (terminal, or being restarted).
    async fn live_actor(&self, task_id: &str) -> Result<Option<ActorRef<TaskMsg>>, ServiceError> {
        Ok(self.dir.tasks.ask(TASK_ASK, |reply| TaskSupMsg::Lookup(task_id.to_owned(), reply)).await?)
    }

    /// The stored status, for requests that found no live actor: not found when the task does
    /// not exist; unavailable when it is live but its actor is being restarted.
    async fn settled_status(&self, task_id: &str) -> Result<TaskStatus, ServiceError> {
        let stored = self.dir.reader.task(task_id).await?.ok_or_else(|| task_not_found(task_id))?;
        if !stored.task.status.is_terminal() {
            return Err(ServiceError::unavailable(format!("task {task_id} is being restarted; retry shortly"))
                .with("status", stored.task.status.as_str()));
        }
        Ok(stored.task.status)
    }

    /// Cancels a task; answers with its status once the request is recorded (terminal when it
    /// already was, or when nothing had been dispatched yet).
    pub async fn cancel_task(
        &self,
        caller: &Caller,
        task_id: &str,
        reason: Option<String>,
    ) -> Result<TaskStatus, ServiceError> {
        caller.require(Need::Write)?;
        let reason = non_empty(reason);
        let Some(actor) = self.live_actor(task_id).await? else { return self.settled_status(task_id).await };
        match ask(&actor, "task", TASK_ASK, |reply| TaskMsg::Cancel { reason, reply }).await {
            Ok(result) => Ok(result?),
            // The actor stopped between lookup and request: the task just ended.
            Err(AskError::Unavailable(_) | AskError::Dropped(_)) => self.settled_status(task_id).await,
            Err(e) => Err(e.into()),
        }
    }

    /// Answers a task's pending input request; conflict unless it is `awaiting_input`.
    pub async fn resume_task(
        &self,
        caller: &Caller,
        task_id: &str,
        input: ResumeInput,
    ) -> Result<TaskStatus, ServiceError> {
        caller.require(Need::Write)?;
        let payload = resume_payload(input)?;
        let Some(actor) = self.live_actor(task_id).await? else {
            return Err(not_awaitable(self.settled_status(task_id).await?));
        };
        match ask(&actor, "task", TASK_ASK, |reply| TaskMsg::Resume { payload, reply }).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(TaskError::NotAwaitable(r))) => {
                let status = match r {
                    ResumeRejection::NotAwaiting(s) => s,
                    ResumeRejection::AlreadyResuming => TaskStatus::AwaitingInput,
                };
                Err(ServiceError::conflict(r.to_string()).with("status", status.as_str()))
            }
            Ok(Err(e)) => Err(e.into()),
            Err(AskError::Unavailable(_) | AskError::Dropped(_)) => {
                Err(not_awaitable(self.settled_status(task_id).await?))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A task's stored events with `seq > after`, all of them.
    pub async fn task_history(
        &self,
        caller: &Caller,
        task_id: &str,
        after: u64,
    ) -> Result<Vec<TaskEvent>, ServiceError> {
        caller.require(Need::Read)?;
        self.dir.reader.task(task_id).await?.ok_or_else(|| task_not_found(task_id))?;
        let mut events = Vec::new();
        let mut from = after;
        loop {
            let page = self.dir.reader.events(task_id, from, MAX_PAGE).await?;
            let done = page.len() < MAX_PAGE as usize;
            from = page.last().map_or(from, |e| e.seq);
            events.extend(page);
            if done {
                return Ok(events);
            }
        }
    }

    /// Subscribes to a task's events with `seq > after`: one subscriber actor under the SSE hub.
    pub async fn subscribe_task_events(
        &self,
        caller: &Caller,
        task_id: &str,
        after: u64,
    ) -> Result<EventSubscription, ServiceError> {
        caller.require(Need::Read)?;
        self.dir.reader.task(task_id).await?.ok_or_else(|| task_not_found(task_id))?;
        let hub = self.dir.sse.get()?;
        let (sink, events) = mpsc::channel::<Arc<TaskEvent>>(SINK_CAPACITY);
        let args = SubscriberArgs {
            task_id: task_id.to_owned(),
            after,
            sink,
            reader: self.dir.reader.clone(),
            hub: hub.clone(),
        };
        let (subscriber, _) = Actor::spawn_linked(None, Subscriber, args, hub.get_cell()).await.map_err(|e| {
            ServiceError::hidden(
                ErrorKind::Unavailable,
                "could not open the event stream; retry shortly",
                e.to_string(),
            )
        })?;
        Ok(EventSubscription { events, guard: SubscriptionGuard(subscriber) })
    }

    /// Watches every task's events from now on (no history; the task list's live view): a
    /// receiver of the SSE hub's broadcast, which tells a slow reader how many events it missed.
    pub async fn watch_task_events(
        &self,
        caller: &Caller,
    ) -> Result<tokio::sync::broadcast::Receiver<Arc<TaskEvent>>, ServiceError> {
        caller.require(Need::Read)?;
        Ok(self.dir.sse.ask(TASK_ASK, crate::sse::SseHubMsg::Watch).await?)
    }

    /// An artifact's metadata and bytes.
    pub async fn artifact(&self, caller: &Caller, artifact_id: &str) -> Result<(ArtifactMeta, Vec<u8>), ServiceError> {
        caller.require(Need::Read)?;
        let (meta, body) = self
            .dir
            .reader
            .artifact(artifact_id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("artifact not found: {artifact_id}")))?;
        // The cause (the file's path, the OS error) is logged under the error id, never sent.
        let bytes = self.dir.artifacts.read(body).await.map_err(|e| {
            let message = format!("artifact {artifact_id} is recorded but its bytes are unreadable");
            ServiceError::hidden(ErrorKind::Internal, message, e.to_string())
        })?;
        Ok((meta, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ErrorKind;

    #[test]
    fn listing_values_are_checked_with_the_parameter_named() {
        let q = |f: fn(&mut TaskListQuery)| {
            let mut q = TaskListQuery::default();
            f(&mut q);
            task_filter(q)
        };
        let f = q(|q| q.status = vec![" running ".into(), "failed,running, created".into()]);
        assert_eq!(
            f.map(|f| (f.statuses, f.limit)),
            Ok((vec![TaskStatus::Running, TaskStatus::Failed, TaskStatus::Created], DEFAULT_TASK_PAGE))
        );
        type Bad = (fn(&mut TaskListQuery), &'static str, &'static str);
        let bad: &[Bad] = &[
            (|q| q.status = vec!["running,nope".into()], "status", "status 'nope'"),
            (|q| q.limit = Some("0".into()), "limit", "limit '0'"),
            (|q| q.limit = Some("501".into()), "limit", "limit '501'"),
            (|q| q.limit = Some("x".into()), "limit", "limit 'x'"),
            (|q| q.limit = Some("-1".into()), "limit", "limit '-1'"),
            (|q| q.cursor = Some("garbage".into()), "cursor", "cursor 'garbage'"),
            (|q| q.cursor = Some("01ARZ3NDEKTSV4RRFFQ69G5FA".into()), "cursor", "cursor '01ARZ"),
            (|q| q.cursor = Some("'; drop".into()), "cursor", "cursor ''; drop'"),
            (|q| q.retrying = Some("yes".into()), "retrying", "retrying 'yes'"),
            (|q| q.stuck = Some("1".into()), "stuck", "stuck '1'"),
            (|q| q.stuck_after_ms = Some("0".into()), "stuck_after_ms", "stuck_after_ms '0'"),
            (|q| q.stuck_after_ms = Some("ten".into()), "stuck_after_ms", "stuck_after_ms 'ten'"),
            (|q| q.created_after = Some("yesterday".into()), "created_after", "created_after 'yesterday'"),
            (|q| q.created_before = Some("2026-13-01T00:00:00Z".into()), "created_before", "created_before"),
            (|q| q.updated_after = Some("2026-01-01".into()), "updated_after", "updated_after '2026-01-01'"),
            (|q| q.updated_before = Some("x".into()), "updated_before", "updated_before 'x'"),
            (|q| q.q = Some("x".repeat(300)), "q", "q is longer"),
        ];
        for (set, param, start) in bad {
            let got = q(*set);
            assert!(
                matches!(&got, Err(e) if e.kind == ErrorKind::Invalid && e.message.starts_with(start)
                    && e.fields.get("parameter").and_then(Value::as_str) == Some(*param)),
                "{param}: {got:?}"
            );
        }
        assert_eq!(q(|q| q.cursor = Some(String::new())).map(|f| f.cursor), Ok(None));
        let cursor = TaskCursor { updated_at: crate::clock::now_rfc3339(), task_id: crate::ids::new_id() };
        let text = cursor.encode();
        let mut query = TaskListQuery { cursor: Some(text), ..Default::default() };
        assert_eq!(task_filter(query.clone()).map(|f| f.cursor), Ok(Some(cursor)));
        // A bare task id (the old cursor) is refused, naming the parameter.
        query.cursor = Some(crate::ids::new_id());
        assert!(matches!(task_filter(query), Err(e) if e.message.starts_with("cursor '")));
        let got = q(|q| q.created_after = Some("2026-04-24T09:00:00+02:00".into())).map(|f| f.created_after);
        assert_eq!(got, Ok(Some("2026-04-24T07:00:00.000000000Z".into())));
    }

    #[test]
    fn stuck_is_measured_back_from_now() {
        let now = time::OffsetDateTime::parse("2026-04-24T08:00:00Z", &time::format_description::well_known::Rfc3339);
        let Ok(now) = now else { panic!("bad test time") };
        let at = |stuck: &str, after: Option<&str>| {
            let q = TaskListQuery {
                stuck: Some(stuck.into()),
                stuck_after_ms: after.map(str::to_owned),
                ..Default::default()
            };
            task_filter_at(q, now).map(|f| f.stuck_since)
        };
        assert_eq!(at("true", None), Ok(Some("2026-04-24T07:50:00.000000000Z".into())));
        assert_eq!(at("true", Some("1500")), Ok(Some("2026-04-24T07:59:58.500000000Z".into())));
        assert_eq!(at("false", Some("1500")), Ok(None));
    }

    #[test]
    fn resume_payload_folds_in_the_answer() {
        let p = resume_payload(ResumeInput {
            payload: serde_json::json!({"text": "yes"}),
            option_id: Some("o1".into()),
            decision: None,
        });
        assert_eq!(p.map(Value::Object), Ok(serde_json::json!({"text": "yes", "option_id": "o1"})));
        let bad = resume_payload(ResumeInput { payload: serde_json::json!([1]), ..Default::default() });
        assert!(matches!(bad, Err(e) if e.message == "payload must be a JSON object, got an array"));
    }
}
