//! Thread routes: create, get, list, turns, inspect, continue (contract §10).

use std::collections::BTreeMap;

use aethrolink_actors::clock;
use aethrolink_actors::ids;
use aethrolink_actors::intake::{TaskRequest, create_task};
use aethrolink_actors::model::{JsonObject, TaskStatus, ThreadRecord};
use aethrolink_actors::runtime::RuntimeSupMsg;
use aethrolink_actors::runtime::dialect::{Dialect, StickyInput};
use aethrolink_actors::storage::{StorageMsg, WriteOp};
use aethrolink_actors::supervision::ASK_TIMEOUT;
use aethrolink_actors::threads::{HandoffPlan, ThreadMsg};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::StrictJson;
use super::tasks::{DeliveryRequest, delivery_policy, intake_error, links};
use super::{ApiError, AppState};

fn unprocessable(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m)
}

fn thread_links(id: &str) -> Value {
    json!({ "self": format!("/v1/threads/{id}"), "turns": format!("/v1/threads/{id}/turns") })
}

async fn load(st: &AppState, id: &str) -> Result<ThreadRecord, ApiError> {
    st.dir.reader.thread(id).await?.ok_or_else(|| ApiError::not_found(format!("thread not found: {id}")))
}

/// Body of `POST /v1/threads`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateThread {
    #[serde(default)]
    agent_a_id: String,
    #[serde(default)]
    agent_b_id: String,
    #[serde(default)]
    continuity_key: Option<String>,
    #[serde(default)]
    metadata: JsonObject,
}

/// `POST /v1/threads` → 201 `{thread, links}`.
pub async fn create(
    State(st): State<AppState>,
    StrictJson(req): StrictJson<CreateThread>,
) -> Result<impl IntoResponse, ApiError> {
    let (a, b) = (req.agent_a_id.trim().to_owned(), req.agent_b_id.trim().to_owned());
    if a.is_empty() || b.is_empty() {
        return Err(ApiError::bad_request("agent_a_id and agent_b_id are required"));
    }
    if a == b {
        return Err(unprocessable("thread agent pair invalid: agent_a_id and agent_b_id must differ"));
    }
    for id in [&a, &b] {
        let known = st.dir.targets.borrow().get(id).is_some() || st.dir.reader.agent(id).await?.is_some();
        if !known {
            return Err(ApiError::not_found(format!("target agent not found: {id}")));
        }
    }
    let continuity_key = req.continuity_key.filter(|k| !k.is_empty()).unwrap_or_else(|| format!("{a}:{b}"));
    let thread = ThreadRecord::new(ids::new_id(), a, b, continuity_key, req.metadata, &clock::now_rfc3339());
    let op = WriteOp::ThreadCreate(Box::new(thread.clone()));
    st.dir.storage.ask(ASK_TIMEOUT, |r| StorageMsg::Write(op, r)).await??;
    let links = thread_links(&thread.thread_id);
    Ok((StatusCode::CREATED, Json(json!({ "thread": thread, "links": links }))))
}

/// `GET /v1/threads/{id}`.
pub async fn get(State(st): State<AppState>, Path(id): Path<String>) -> Result<Json<ThreadRecord>, ApiError> {
    Ok(Json(load(&st, &id).await?))
}

/// `GET /v1/threads?agent=&status=&limit=`.
pub async fn list(
    State(st): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(k) = params.keys().find(|k| !["agent", "status", "limit"].contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("unknown query parameter '{k}'; expected agent, status, limit")));
    }
    let limit = match params.get("limit") {
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit '{l}' must be an integer from 1 to 500")))?,
        None => 50,
    };
    let threads = st
        .dir
        .reader
        .threads(params.get("agent").map(String::as_str), params.get("status").map(String::as_str), limit)
        .await?;
    Ok(Json(json!({ "threads": threads })))
}

/// `GET /v1/threads/{id}/turns` → `{"turns": [...]}` by turn index.
pub async fn turns(State(st): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    load(&st, &id).await?;
    Ok(Json(json!({ "turns": st.dir.reader.turns(&id).await? })))
}

/// Who speaks next when the caller does not say: the agent that last *received* a turn; a given
/// target makes the other participant the sender (contract §10.3). Pure.
pub fn derive_pair(
    thread: &ThreadRecord,
    sender: Option<&str>,
    target: Option<&str>,
) -> Result<(String, String), String> {
    let (a, b) = (thread.agent_a_id.as_str(), thread.agent_b_id.as_str());
    let sender = match (sender, target) {
        (Some(s), _) => s.to_owned(),
        (None, Some(t)) if t == a => b.to_owned(),
        (None, Some(t)) if t == b => a.to_owned(),
        (None, Some(t)) => {
            return Err(format!("target '{t}' is not a participant of thread {} ({a}, {b})", thread.thread_id));
        }
        (None, None) => thread.last_target_agent_id.clone().unwrap_or_else(|| a.to_owned()),
    };
    let target = aethrolink_actors::intake::thread_pair(thread, &sender, target)?;
    Ok((sender, target))
}

/// Body of `POST /v1/threads/{id}/continue` (contract §2.9).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinueRequest {
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    target_agent_id: Option<String>,
    #[serde(default)]
    intent: Option<String>,
    #[serde(default)]
    intent_by_agent: BTreeMap<String, String>,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    payload_by_agent: BTreeMap<String, Value>,
    #[serde(default)]
    runtime_options: JsonObject,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    delivery: Option<DeliveryRequest>,
    #[serde(default)]
    auto_continue: bool,
    #[serde(default)]
    max_turns: Option<u32>,
    #[serde(default)]
    stop_on_awaiting_input: bool,
    #[serde(default)]
    stop_on_same_actor_repeat: bool,
    #[serde(default)]
    stop_on_terminal_error: bool,
    #[serde(default)]
    metadata: JsonObject,
}

/// `POST /v1/threads/{id}/continue` → 202 `{task, links}` (the first task of the run).
pub async fn continue_thread(
    State(st): State<AppState>,
    Path(id): Path<String>,
    StrictJson(req): StrictJson<ContinueRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let thread = load(&st, &id).await?;
    let clean = |s: Option<String>| s.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let (sender, target) = derive_pair(&thread, clean(req.sender).as_deref(), clean(req.target_agent_id).as_deref())
        .map_err(|m| unprocessable(format!("thread agent pair invalid: {m}")))?;
    let delivery = delivery_policy(req.delivery);
    let request = TaskRequest {
        thread_id: Some(id.clone()),
        sender: Some(sender.clone()),
        target_agent_id: Some(target.clone()),
        intent: req.intent_by_agent.get(&sender).cloned().or_else(|| req.intent.clone()),
        payload: req.payload_by_agent.get(&sender).cloned().unwrap_or_else(|| req.payload.clone()),
        runtime_options: req.runtime_options.clone(),
        conversation_id: req.conversation_id,
        delivery: delivery.clone(),
        metadata: req.metadata.clone(),
    };
    let task = create_task(&st.dir, request).await.map_err(intake_error)?;
    let max_turns = req.max_turns.unwrap_or(1).max(1);
    if req.auto_continue && max_turns > 1 {
        let plan = HandoffPlan {
            max_turns,
            turns_done: 1,
            stop_on_awaiting_input: req.stop_on_awaiting_input,
            stop_on_terminal_error: req.stop_on_terminal_error,
            stop_on_same_actor_repeat: req.stop_on_same_actor_repeat,
            intent: req.intent,
            intent_by_agent: req.intent_by_agent,
            payload: req.payload,
            payload_by_agent: req.payload_by_agent,
            runtime_options: req.runtime_options,
            delivery,
            metadata: req.metadata,
            last_task_id: task.task_id.clone(),
            last_sender: sender,
            last_target: target,
            active: true,
            stopped_reason: None,
        };
        st.dir.threads.cast(ThreadMsg::StartHandoff { thread_id: id, plan: Box::new(plan) })?;
    }
    let links = links(&task.task_id);
    Ok((StatusCode::ACCEPTED, Json(json!({ "task": task, "links": links }))))
}

/// `GET /v1/threads/{id}/inspect`: the thread, its turns, participants, per-agent continuity
/// (last remote ids, session bindings), who continues next and whether that turn would reuse a
/// remote session — computed from persisted bindings and runtime state, never by asking the agent.
pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let thread = load(&st, &id).await?;
    let turns = st.dir.reader.turns(&id).await?;
    let sticky = Dialect::Acp
        .sticky_key(&JsonObject::new(), &StickyInput { thread_id: Some(&id), conversation_id: None, task_id: "" });
    let mut continuity = Vec::new();
    let mut participants = Vec::new();
    for agent in [&thread.agent_a_id, &thread.agent_b_id] {
        let last = turns.iter().rev().find(|t| &t.target_agent_id == agent);
        continuity.push(json!({
            "agent_id": agent,
            "last_remote_session_id": last.and_then(|t| t.remote_session_id.clone()),
            "last_remote_execution_id": last.and_then(|t| t.remote_execution_id.clone()),
            "session_bindings": st.dir.reader.session_bindings_for(agent, &sticky).await?,
        }));
        participants.push(json!({ "agent_id": agent, "owner": "local", "node_id": st.node_id }));
    }
    let (next_sender, next_target) = derive_pair(&thread, None, None).unwrap_or_default();
    let target = st.dir.targets.borrow().get(&next_target).cloned();
    let will_reuse = match target.filter(|t| t.adapter == "acp") {
        Some(t) => {
            let options = t.defaults.clone();
            let bindings = st.dir.reader.session_bindings_for(&t.target_id, &sticky).await?;
            let (up, live, loadable) = st
                .dir
                .runtimes
                .ask(ASK_TIMEOUT, |reply| RuntimeSupMsg::SessionProbe {
                    target: Box::new(t),
                    options,
                    sticky: sticky.clone(),
                    reply,
                })
                .await?;
            up && (live || (loadable && !bindings.is_empty()))
        }
        None => false,
    };
    let last_task = match &thread.last_task_id {
        Some(t) => st.dir.reader.task(t).await?.map(|s| s.task),
        None => None,
    };
    let interruption_reason = if thread.status == "interrupted" {
        thread
            .interruption_reason
            .clone()
            .or_else(|| Some("thread was interrupted before the prior turn reached a terminal state".into()))
    } else {
        last_task
            .as_ref()
            .filter(|t| t.status == TaskStatus::Failed)
            .and_then(|t| t.last_error.as_ref())
            .map(|e| format!("last task failed: {}", e.reason))
    };
    Ok(Json(json!({
        "thread": thread,
        "turns": turns,
        "participants": participants,
        "continuity": continuity,
        "next_continue": {
            "sender_agent_id": next_sender,
            "target_agent_id": next_target,
            "will_reuse_remote_session": will_reuse,
        },
        "interruption_reason": interruption_reason,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(last_target: Option<&str>) -> ThreadRecord {
        let mut t = ThreadRecord::new("t".into(), "a".into(), "b".into(), "a:b".into(), JsonObject::new(), "");
        t.last_target_agent_id = last_target.map(str::to_owned);
        t
    }

    #[test]
    fn the_agent_that_last_received_speaks_next() {
        assert_eq!(derive_pair(&thread(None), None, None), Ok(("a".into(), "b".into())));
        assert_eq!(derive_pair(&thread(Some("b")), None, None), Ok(("b".into(), "a".into())));
        assert_eq!(derive_pair(&thread(Some("a")), None, None), Ok(("a".into(), "b".into())));
        assert_eq!(derive_pair(&thread(None), None, Some("a")), Ok(("b".into(), "a".into())));
        assert_eq!(derive_pair(&thread(None), Some("b"), None), Ok(("b".into(), "a".into())));
        assert!(derive_pair(&thread(None), Some("c"), None).is_err());
        assert!(derive_pair(&thread(None), None, Some("c")).is_err());
        assert!(derive_pair(&thread(None), Some("a"), Some("a")).is_err());
    }
}
