//! Bulk task actions: cancel or retry many tasks at once, named by id or by a listing filter,
//! with a dry run that only counts. Each task is acted on through the same operation a single
//! request uses (`cancel_task`, the task actor's `Retry`), so the state machine rules hold.

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::tasks::{TaskListQuery, task_filter};
use super::{Caller, Need, ServiceError, Services, TASK_ASK};
use crate::error::AskError;
use crate::model::TaskStatus;
use crate::storage::reader::{MAX_PAGE, TaskCursor};
use crate::supervision::ask;
use crate::task::TaskMsg;
use crate::task_supervisor::TaskSupMsg;

/// Most tasks one bulk request acts on; a filter matching more is cut here (`truncated`).
pub const MAX_BULK_TASKS: usize = 10_000;
/// Tasks acted on at once.
const BULK_CONCURRENCY: usize = 16;

/// What to do to each task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// As `POST /v1/tasks/{id}/cancel`.
    Cancel,
    /// Schedule a new attempt of a `failed` or `cancelled` task now.
    Retry,
}

/// `status` of a bulk filter: one status, a comma-separated list, or an array.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StatusSet {
    One(String),
    Many(Vec<String>),
}

/// The tasks a bulk action applies to, with the listing's filters (`GET /v1/tasks`) as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    pub status: Option<StatusSet>,
    pub target: Option<String>,
    pub intent: Option<String>,
    pub conversation_id: Option<String>,
    pub sender: Option<String>,
    pub thread_id: Option<String>,
    pub correlation_id: Option<String>,
    pub retrying: Option<bool>,
    pub stuck: Option<bool>,
    pub stuck_after_ms: Option<u64>,
    pub created_after: Option<String>,
    pub created_before: Option<String>,
    pub updated_after: Option<String>,
    pub updated_before: Option<String>,
    pub q: Option<String>,
}

impl BulkFilter {
    /// The listing query it stands for. Pure.
    pub fn to_query(&self) -> TaskListQuery {
        let flag = |b: Option<bool>| b.map(|v| v.to_string());
        let status = match &self.status {
            None => Vec::new(),
            Some(StatusSet::One(s)) => vec![s.clone()],
            Some(StatusSet::Many(list)) => list.clone(),
        };
        TaskListQuery {
            status,
            target: self.target.clone(),
            intent: self.intent.clone(),
            conversation_id: self.conversation_id.clone(),
            sender: self.sender.clone(),
            thread_id: self.thread_id.clone(),
            correlation_id: self.correlation_id.clone(),
            retrying: flag(self.retrying),
            stuck: flag(self.stuck),
            stuck_after_ms: self.stuck_after_ms.map(|n| n.to_string()),
            created_after: self.created_after.clone(),
            created_before: self.created_before.clone(),
            updated_after: self.updated_after.clone(),
            updated_before: self.updated_before.clone(),
            q: self.q.clone(),
            cursor: None,
            limit: None,
        }
    }
}

/// Why a bulk filter is refused although each of its values is valid.
const EMPTY_FILTER: &str = "filter names no condition; it would match every task (name at least one, \
                            e.g. {\"status\": \"failed\"}, or pass ids)";

/// A bulk request.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    pub action: BulkAction,
    /// The tasks, by id (exclusive with `filter`).
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// The tasks, by listing filter (exclusive with `ids`).
    #[serde(default)]
    pub filter: Option<BulkFilter>,
    /// Only count and list what would be acted on.
    #[serde(default)]
    pub dry_run: bool,
    /// Recorded on each cancel or retry event.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One task the action could not be applied to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BulkFailure {
    pub task_id: String,
    pub error: String,
    /// The task's status, when it has one (it exists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
}

/// What a bulk request did.
#[derive(Clone, Debug, Serialize)]
pub struct BulkOutcome {
    pub action: BulkAction,
    pub dry_run: bool,
    /// Tasks the ids or filter named.
    pub matched: usize,
    /// Tasks the action was applied to (0 on a dry run).
    pub applied: usize,
    /// Tasks it could not be applied to (listed in `failures`).
    pub failed: usize,
    /// The matched tasks' ids, in listing order (newest-updated first) or as given.
    pub task_ids: Vec<String>,
    pub failures: Vec<BulkFailure>,
    /// The filter matched more than [`MAX_BULK_TASKS`]; only the first were acted on.
    pub truncated: bool,
}

impl Services {
    /// Cancels or retries the tasks named by `ids` or `filter` (exactly one), or on a dry run
    /// only says which they are.
    pub async fn bulk_tasks(&self, caller: &Caller, req: BulkRequest) -> Result<BulkOutcome, ServiceError> {
        caller.require(Need::Write)?;
        let (ids, truncated) = match (req.ids, req.filter) {
            (Some(_), Some(_)) => return Err(ServiceError::invalid("pass either ids or filter, not both")),
            (None, None) => return Err(ServiceError::invalid("pass ids or filter: which tasks to act on")),
            (Some(ids), None) => {
                if ids.is_empty() {
                    return Err(ServiceError::invalid("ids is empty"));
                }
                if ids.len() > MAX_BULK_TASKS {
                    return Err(ServiceError::invalid(format!(
                        "ids names {} tasks; at most {MAX_BULK_TASKS} per request",
                        ids.len()
                    )));
                }
                let mut unique = Vec::with_capacity(ids.len());
                for id in ids.into_iter().map(|i| i.trim().to_owned()) {
                    if id.is_empty() {
                        return Err(ServiceError::invalid("ids holds an empty task id"));
                    }
                    if !unique.contains(&id) {
                        unique.push(id);
                    }
                }
                (unique, false)
            }
            (None, Some(filter)) => self.matching(&filter).await?,
        };
        let mut outcome = BulkOutcome {
            action: req.action,
            dry_run: req.dry_run,
            matched: ids.len(),
            applied: 0,
            failed: 0,
            task_ids: ids.clone(),
            failures: Vec::new(),
            truncated,
        };
        if req.dry_run {
            return Ok(outcome);
        }
        let reason = req.reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
        let results: Vec<(String, Result<(), BulkFailure>)> = futures::stream::iter(ids)
            .map(|id| {
                let reason = reason.clone();
                async move {
                    let result = self.apply(caller, req.action, &id, reason).await;
                    (id, result)
                }
            })
            .buffered(BULK_CONCURRENCY)
            .collect()
            .await;
        for (_, result) in results {
            match result {
                Ok(()) => outcome.applied += 1,
                Err(f) => outcome.failures.push(f),
            }
        }
        outcome.failed = outcome.failures.len();
        tracing::info!(
            actor_kind = "service", action = ?req.action, matched = outcome.matched, applied = outcome.applied,
            failed = outcome.failed, "bulk task action"
        );
        Ok(outcome)
    }

    /// The ids of the tasks `filter` matches (newest-updated first, at most [`MAX_BULK_TASKS`]),
    /// read before anything is changed (acting on them reorders the listing).
    async fn matching(&self, filter: &BulkFilter) -> Result<(Vec<String>, bool), ServiceError> {
        let mut query = filter.to_query();
        query.limit = Some(MAX_PAGE.to_string());
        let mut filter = task_filter(query)?;
        // Read off the parsed filter: blank text and `false` flags narrow nothing.
        if !filter.narrows() {
            return Err(ServiceError::invalid(EMPTY_FILTER).with("parameter", "filter"));
        }
        let mut ids = Vec::new();
        loop {
            let page = self.searched_tasks(&filter).await?;
            ids.extend(page.tasks.into_iter().map(|t| t.task_id));
            if ids.len() >= MAX_BULK_TASKS {
                let more = ids.len() > MAX_BULK_TASKS || page.next_cursor.is_some();
                ids.truncate(MAX_BULK_TASKS);
                return Ok((ids, more));
            }
            match page.next_cursor.as_deref().and_then(TaskCursor::decode) {
                Some(cursor) => filter.cursor = Some(cursor),
                None => return Ok((ids, false)),
            }
        }
    }

    /// Applies `action` to one task; the failure names why not.
    pub(crate) async fn apply(
        &self,
        caller: &Caller,
        action: BulkAction,
        task_id: &str,
        reason: Option<String>,
    ) -> Result<(), BulkFailure> {
        let fail =
            |error: String, status: Option<TaskStatus>| BulkFailure { task_id: task_id.to_owned(), error, status };
        let stored = match self.dir.reader.task(task_id).await {
            Ok(Some(s)) => s.task,
            Ok(None) => return Err(fail(format!("task not found: {task_id}"), None)),
            Err(e) => return Err(fail(ServiceError::from(e).message, None)),
        };
        match action {
            BulkAction::Cancel => {
                if stored.status.is_terminal() {
                    return Err(fail(format!("task is already {}", stored.status), Some(stored.status)));
                }
                match self.cancel_task(caller, task_id, reason).await {
                    Ok(TaskStatus::Completed) => {
                        Err(fail("task completed before the cancel".into(), Some(TaskStatus::Completed)))
                    }
                    Ok(TaskStatus::Failed) => {
                        Err(fail("task failed before the cancel".into(), Some(TaskStatus::Failed)))
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(fail(e.message, Some(stored.status))),
                }
            }
            BulkAction::Retry => {
                if !matches!(stored.status, TaskStatus::Failed | TaskStatus::Cancelled) {
                    return Err(fail(
                        format!("task is {}: only a failed or cancelled task can be retried", stored.status),
                        Some(stored.status),
                    ));
                }
                let actor = match self.dir.tasks.ask(TASK_ASK, |r| TaskSupMsg::Revive(task_id.to_owned(), r)).await {
                    Ok(Ok(actor)) => actor,
                    Ok(Err(e)) => return Err(fail(ServiceError::from(e).message, Some(stored.status))),
                    Err(e) => return Err(fail(ServiceError::from(e).message, Some(stored.status))),
                };
                match ask(&actor, "task", TASK_ASK, |reply| TaskMsg::Retry { reason, reply }).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(fail(ServiceError::from(e).message, Some(stored.status))),
                    Err(AskError::Unavailable(_) | AskError::Dropped(_)) => {
                        Err(fail("the task's actor stopped before the retry was recorded".into(), Some(stored.status)))
                    }
                    Err(e) => Err(fail(ServiceError::from(e).message, Some(stored.status))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_filter_is_refused_and_others_become_listing_queries() {
        let narrows = |f: BulkFilter| task_filter(f.to_query()).map(|t| t.narrows()).ok();
        assert_eq!(narrows(BulkFilter::default()), Some(false));
        let falsy =
            BulkFilter { retrying: Some(false), stuck: Some(false), q: Some("  ".into()), ..Default::default() };
        assert_eq!(narrows(falsy), Some(false));
        let by_status = BulkFilter {
            status: Some(StatusSet::Many(vec!["failed".into(), "cancelled".into()])),
            ..Default::default()
        };
        assert_eq!(by_status.to_query().status, vec!["failed".to_owned(), "cancelled".to_owned()]);
        assert_eq!(narrows(by_status), Some(true));
        let stuck = BulkFilter { stuck: Some(true), stuck_after_ms: Some(5), ..Default::default() };
        let q = stuck.to_query();
        assert_eq!((q.stuck.as_deref(), q.stuck_after_ms.as_deref()), (Some("true"), Some("5")));
        assert_eq!(narrows(stuck), Some(true));
        let parsed: Result<BulkRequest, _> =
            serde_json::from_str(r#"{"action":"cancel","filter":{"status":"running","target":"echo"},"dry_run":true}"#);
        assert!(parsed.is_ok_and(|r| r.dry_run && r.action == BulkAction::Cancel));
        let unknown: Result<BulkRequest, _> = serde_json::from_str(r#"{"action":"cancel","filter":{"colour":"red"}}"#);
        assert!(unknown.is_err_and(|e| e.to_string().contains("colour")));
    }
}
