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
use crate::storage::{TaskFilter, TaskPage};
use crate::supervision::ask;
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
        }
    }
}

/// Filters of a task listing as the caller wrote them; the service checks the values.
#[derive(Clone, Debug, Default)]
pub struct TaskListQuery {
    pub status: Option<String>,
    pub target: Option<String>,
    pub conversation_id: Option<String>,
    pub sender: Option<String>,
    pub thread_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<String>,
}

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

/// The filter a listing query asks for; the message names the parameter at fault. Pure.
pub fn task_filter(q: TaskListQuery) -> Result<TaskFilter, ServiceError> {
    let trimmed = |v: Option<String>| v.map(|s| s.trim().to_owned());
    let status = match trimmed(q.status) {
        None => None,
        Some(value) => Some(value.parse::<TaskStatus>().map_err(|_| {
            let all: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
            ServiceError::invalid(format!("status '{value}' is not a task status; expected one of {}", all.join(", ")))
        })?),
    };
    let limit =
        match trimmed(q.limit) {
            None => DEFAULT_TASK_PAGE,
            Some(value) => value.parse::<u32>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
                ServiceError::invalid(format!("limit '{value}' must be an integer from 1 to {MAX_PAGE}"))
            })?,
        };
    Ok(TaskFilter {
        status,
        target: trimmed(q.target),
        conversation_id: trimmed(q.conversation_id),
        sender: trimmed(q.sender),
        thread_id: trimmed(q.thread_id),
        cursor: match trimmed(q.cursor).filter(|v| !v.is_empty()) {
            // Cursors are task ids (ULIDs) from `next_cursor`: anything else would silently
            // page from nowhere.
            Some(c) if ulid::Ulid::from_string(&c).is_err() => {
                return Err(ServiceError::invalid(format!(
                    "cursor '{c}' is not a task id; pass the next_cursor of the previous page"
                )));
            }
            other => other,
        },
        limit,
    })
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
        Ok(create_task(&self.dir.intake, req.into()).await?)
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
        Ok(create_task_once(&self.dir.intake, request).await?)
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
        Ok(self.dir.reader.tasks(&filter).await?)
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
        let f = task_filter(TaskListQuery { status: Some(" running ".into()), ..Default::default() });
        assert_eq!(f.map(|f| (f.status, f.limit)), Ok((Some(TaskStatus::Running), DEFAULT_TASK_PAGE)));
        let bad = task_filter(TaskListQuery { status: Some("nope".into()), ..Default::default() });
        assert!(matches!(bad, Err(e) if e.kind == ErrorKind::Invalid && e.message.starts_with("status 'nope'")));
        for limit in ["0", "501", "x", "-1"] {
            let bad = task_filter(TaskListQuery { limit: Some(limit.into()), ..Default::default() });
            assert!(matches!(bad, Err(e) if e.message.starts_with(&format!("limit '{limit}'"))), "{limit}");
        }
        let empty_cursor = task_filter(TaskListQuery { cursor: Some(String::new()), ..Default::default() });
        assert_eq!(empty_cursor.map(|f| f.cursor), Ok(None));
        for cursor in ["garbage", "01ARZ3NDEKTSV4RRFFQ69G5FA", "'; drop"] {
            let bad = task_filter(TaskListQuery { cursor: Some(cursor.into()), ..Default::default() });
            assert!(matches!(bad, Err(e) if e.message.starts_with(&format!("cursor '{cursor}'"))), "{cursor}");
        }
        let id = crate::ids::new_id();
        let good = task_filter(TaskListQuery { cursor: Some(id.clone()), ..Default::default() });
        assert_eq!(good.map(|f| f.cursor), Ok(Some(id)));
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
