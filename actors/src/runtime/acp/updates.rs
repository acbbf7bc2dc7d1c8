//! What an ACP agent's messages mean for a task: `session/update` notifications ([`map_update`]),
//! OpenClaw's structured events ([`structured_event`], contract §8.3) and the answer to
//! `session/prompt` ([`prompt_outcome`]). Pure; the session actor does the IO.

use agent_client_protocol_schema::v1::{ContentBlock, PromptResponse, SessionNotification, SessionUpdate, StopReason};
use serde_json::{Value, json};

use crate::model::{FailureReason, JsonObject};
use crate::port::{AdapterEvent, PendingInput};
use crate::runtime::jsonrpc::RpcError;

/// What a `session/update` means for the task. Pure.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateEffect {
    /// Agent message text.
    Text(String),
    /// A running event.
    Event { message: String, data: JsonObject },
    /// Nothing to report (thoughts, usage, modes, commands, unknown variants).
    Ignore,
}

/// Maps `session/update` params to their effect. Unknown `sessionUpdate` variants and unknown
/// fields are tolerated (ignored), never an error.
pub fn map_update(params: &Value) -> UpdateEffect {
    let update = params.get("update").cloned().unwrap_or(Value::Null);
    let raw = match &update {
        Value::Object(o) => o.clone(),
        _ => return UpdateEffect::Ignore,
    };
    let Ok(n) = serde_json::from_value::<SessionNotification>(params.clone()) else {
        return UpdateEffect::Ignore;
    };
    let title = |raw: &JsonObject| raw.get("title").and_then(Value::as_str).map(str::to_owned);
    match n.update {
        SessionUpdate::AgentMessageChunk(chunk) => match chunk.content {
            ContentBlock::Text(t) => UpdateEffect::Text(t.text),
            _ => UpdateEffect::Ignore,
        },
        SessionUpdate::ToolCall(_) => UpdateEffect::Event {
            message: format!("Tool call: {}", title(&raw).unwrap_or_else(|| "(untitled)".into())),
            data: [("tool_call".to_owned(), Value::Object(raw))].into_iter().collect(),
        },
        SessionUpdate::ToolCallUpdate(_) => {
            let status = raw.get("status").and_then(Value::as_str).unwrap_or("updated").to_owned();
            UpdateEffect::Event {
                message: format!("Tool call {status}"),
                data: [("tool_call_update".to_owned(), Value::Object(raw))].into_iter().collect(),
            }
        }
        SessionUpdate::Plan(_) => UpdateEffect::Event {
            message: "Plan".into(),
            data: [("plan".to_owned(), Value::Object(raw))].into_iter().collect(),
        },
        _ => UpdateEffect::Ignore,
    }
}

/// The session id a structured notification names: `params.session_id`, else `params.sessionId`
/// (structured events use the former, `session/update` the latter).
pub fn structured_session_id(params: &Value) -> Option<&str> {
    ["session_id", "sessionId"].iter().find_map(|k| params.get(*k).and_then(Value::as_str))
}

/// Whether a notification carries a structured event (`params.event` is an object).
pub fn is_structured(params: &Value) -> bool {
    params.get("event").is_some_and(Value::is_object)
}

/// A structured event (`params.event = {kind, message, data}`) as the task event it stands for:
/// `task.awaiting_input` → awaiting input that no resume can answer ([`PendingInput::Structured`]);
/// `task.completed` → completed with `data.result` (an object), else the turn's `text`;
/// `task.failed` → failed `remote_failed` with `data.reason` (else the message) as detail;
/// `task.cancelled` → cancelled; any other kind → running. `None`: no event object.
/// `display` names the agent family in default messages.
pub fn structured_event(display: &str, params: &Value, text: &str) -> Option<AdapterEvent> {
    let event = params.get("event")?.as_object()?;
    let kind = event.get("kind").and_then(Value::as_str).unwrap_or("");
    let data = event.get("data").and_then(Value::as_object).cloned().unwrap_or_default();
    let given = event.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()).map(str::to_owned);
    let message = |default: &str| given.clone().unwrap_or_else(|| default.to_owned());
    Some(match kind {
        "task.awaiting_input" => AdapterEvent::AwaitingInput {
            message: message(&format!("{display} requires additional input")),
            data,
            pending: PendingInput::Structured,
        },
        "task.completed" => AdapterEvent::Completed {
            message: message(&format!("{display} completed the task")),
            result: match data.get("result") {
                Some(r @ Value::Object(_)) => r.clone(),
                _ => json!({ "text": text }),
            },
        },
        "task.failed" => {
            let message = message(&format!("{display} failed the task"));
            let reason = data.get("reason").and_then(Value::as_str).filter(|r| !r.is_empty());
            AdapterEvent::Failed {
                reason: FailureReason::RemoteFailed,
                detail: Some(reason.map_or_else(|| message.clone(), str::to_owned)),
                message,
            }
        }
        "task.cancelled" => AdapterEvent::Cancelled { message: message(&format!("{display} cancelled the task")) },
        _ => AdapterEvent::Running { message: message(&format!("{display} running")), data },
    })
}

/// The events that end a prompt turn, from the agent's `session/prompt` answer: `end_turn` →
/// completed with the turn's `text`; `cancelled` (or any answer after a cancel request) →
/// cancelled; other stop reasons fail with that reason; a dead connection fails
/// `runtime_exited`. `display` names the agent family in messages.
pub fn prompt_outcome(
    display: &str,
    cancel_requested: bool,
    text: &str,
    result: Result<Value, RpcError>,
) -> Vec<AdapterEvent> {
    match result {
        Ok(v) => {
            let stop = serde_json::from_value::<PromptResponse>(v.clone()).map(|r| r.stop_reason);
            let stop_name = v.get("stopReason").and_then(Value::as_str).unwrap_or("unknown").to_owned();
            match stop {
                _ if cancel_requested => {
                    vec![AdapterEvent::Cancelled { message: format!("{display} cancelled the task ({stop_name})") }]
                }
                Ok(StopReason::EndTurn) => vec![AdapterEvent::Completed {
                    message: format!("{display} completed the task"),
                    result: json!({"text": text, "stop_reason": "end_turn"}),
                }],
                Ok(StopReason::Cancelled) => {
                    vec![AdapterEvent::Cancelled { message: format!("{display} cancelled the task") }]
                }
                Ok(_) => vec![AdapterEvent::Failed {
                    reason: FailureReason::from(stop_name.as_str()),
                    detail: Some(format!("the agent ended the turn with stopReason {stop_name}")),
                    message: format!("{display} stopped: {stop_name}"),
                }],
                Err(e) => vec![AdapterEvent::Failed {
                    reason: FailureReason::PromptFailed,
                    detail: Some(format!("unreadable prompt answer ({e}): {v}")),
                    message: "Unreadable prompt answer".into(),
                }],
            }
        }
        Err(_) if cancel_requested => {
            vec![AdapterEvent::Cancelled { message: format!("{display} cancelled the task") }]
        }
        Err(RpcError::Closed(detail)) => vec![AdapterEvent::Failed {
            reason: FailureReason::RuntimeExited,
            detail: Some(detail),
            message: "Runtime exited during the turn".into(),
        }],
        Err(e) => vec![AdapterEvent::Failed {
            reason: FailureReason::PromptFailed,
            detail: Some(e.to_string()),
            message: format!("{display} failed the prompt"),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_map_to_text_events_or_nothing() {
        let chunk = json!({"sessionId": "s", "update": {"content": {"type": "text", "text": "hi"}, "sessionUpdate": "agent_message_chunk"}});
        assert_eq!(map_update(&chunk), UpdateEffect::Text("hi".into()));
        let tool = json!({"sessionId": "s", "update": {"sessionUpdate": "tool_call", "toolCallId": "t1", "title": "Read", "kind": "read", "status": "pending", "extra": 1}});
        assert!(
            matches!(map_update(&tool), UpdateEffect::Event { message, data } if message == "Tool call: Read" && data["tool_call"]["extra"] == 1)
        );
        let plan = json!({"sessionId": "s", "update": {"sessionUpdate": "plan", "entries": [{"content": "a", "priority": "high", "status": "pending"}]}});
        assert!(matches!(map_update(&plan), UpdateEffect::Event { message, .. } if message == "Plan"));
        let unknown = json!({"sessionId": "s", "update": {"sessionUpdate": "compaction_update", "whatever": true}});
        assert_eq!(map_update(&unknown), UpdateEffect::Ignore);
        let thought = json!({"sessionId": "s", "update": {"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": "hmm"}}});
        assert_eq!(map_update(&thought), UpdateEffect::Ignore);
        assert_eq!(map_update(&json!({"sessionId": "s"})), UpdateEffect::Ignore);
    }

    #[test]
    fn structured_events_map_by_kind() {
        let ev = |kind: &str, message: &str, data: Value| json!({"session_id": "s", "event": {"kind": kind, "message": message, "data": data}});
        let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
        let cases: Vec<(&str, Value, Option<AdapterEvent>)> = vec![
            (
                "awaiting input cannot be resumed",
                ev("task.awaiting_input", "Approve?", json!({"prompt": "Approve?"})),
                Some(AdapterEvent::AwaitingInput {
                    message: "Approve?".into(),
                    data: obj(json!({"prompt": "Approve?"})),
                    pending: PendingInput::Structured,
                }),
            ),
            (
                "a heartbeat is running",
                ev("task.running", "Heartbeat", json!({"heartbeat": true})),
                Some(AdapterEvent::Running { message: "Heartbeat".into(), data: obj(json!({"heartbeat": true})) }),
            ),
            (
                "an unknown kind is running, with a default message",
                ev("task.progress", "", json!({})),
                Some(AdapterEvent::Running { message: "OpenClaw running".into(), data: JsonObject::new() }),
            ),
            (
                "completed with the event's result",
                ev("task.completed", "Done", json!({"result": {"text": "ok"}})),
                Some(AdapterEvent::Completed { message: "Done".into(), result: json!({"text": "ok"}) }),
            ),
            (
                "completed without a result keeps the turn's text",
                ev("task.completed", "", json!({})),
                Some(AdapterEvent::Completed {
                    message: "OpenClaw completed the task".into(),
                    result: json!({"text": "so far"}),
                }),
            ),
            (
                "failed is remote_failed with data.reason",
                ev("task.failed", "Task failed", json!({"reason": "tool exploded"})),
                Some(AdapterEvent::Failed {
                    reason: FailureReason::RemoteFailed,
                    detail: Some("tool exploded".into()),
                    message: "Task failed".into(),
                }),
            ),
            (
                "failed without a reason names the message",
                ev("task.failed", "Task failed", json!({})),
                Some(AdapterEvent::Failed {
                    reason: FailureReason::RemoteFailed,
                    detail: Some("Task failed".into()),
                    message: "Task failed".into(),
                }),
            ),
            (
                "cancelled",
                ev("task.cancelled", "Task cancelled", json!({})),
                Some(AdapterEvent::Cancelled { message: "Task cancelled".into() }),
            ),
            ("no event object", json!({"session_id": "s", "event": "x"}), None),
        ];
        for (name, params, want) in cases {
            assert_eq!(structured_event("OpenClaw", &params, "so far"), want, "{name}");
        }
        assert!(is_structured(&ev("task.running", "", json!({}))));
        assert!(!is_structured(&json!({"sessionId": "s", "update": {}})));
        assert_eq!(structured_session_id(&json!({"session_id": "a", "sessionId": "b"})), Some("a"));
        assert_eq!(structured_session_id(&json!({"sessionId": "b"})), Some("b"));
        assert_eq!(structured_session_id(&json!({})), None);
    }

    #[test]
    fn prompt_answers_map_to_the_turn_end() {
        let failed = |reason: &str, detail: &str, message: &str| AdapterEvent::Failed {
            reason: reason.into(),
            detail: Some(detail.into()),
            message: message.into(),
        };
        let cancelled = |m: &str| AdapterEvent::Cancelled { message: m.into() };
        let answer = |stop: &str| Ok(json!({"stopReason": stop}));
        let cases: Vec<(&str, bool, Result<Value, RpcError>, AdapterEvent)> = vec![
            (
                "end_turn completes with the text",
                false,
                answer("end_turn"),
                AdapterEvent::Completed {
                    message: "Goose completed the task".into(),
                    result: json!({"text": "hi", "stop_reason": "end_turn"}),
                },
            ),
            ("cancelled", false, answer("cancelled"), cancelled("Goose cancelled the task")),
            (
                "any answer after a cancel request",
                true,
                answer("end_turn"),
                cancelled("Goose cancelled the task (end_turn)"),
            ),
            (
                "refusal fails with its reason",
                false,
                answer("refusal"),
                failed("refusal", "the agent ended the turn with stopReason refusal", "Goose stopped: refusal"),
            ),
            (
                "max_tokens fails with its reason",
                false,
                answer("max_tokens"),
                failed(
                    "max_tokens",
                    "the agent ended the turn with stopReason max_tokens",
                    "Goose stopped: max_tokens",
                ),
            ),
            (
                "a dead connection",
                false,
                Err(RpcError::Closed("stdout closed".into())),
                failed("runtime_exited", "stdout closed", "Runtime exited during the turn"),
            ),
            (
                "an error after a cancel request",
                true,
                Err(RpcError::Closed("x".into())),
                cancelled("Goose cancelled the task"),
            ),
            (
                "an agent error",
                false,
                Err(RpcError::Remote { code: -32000, message: "boom".into(), data: None }),
                failed("prompt_failed", "agent error -32000: boom", "Goose failed the prompt"),
            ),
        ];
        for (name, cancel, result, want) in cases {
            assert_eq!(prompt_outcome("Goose", cancel, "hi", result), vec![want], "{name}");
        }
        let unreadable = prompt_outcome("Goose", false, "", Ok(json!({"stopReason": 3})));
        assert!(matches!(&unreadable[..], [AdapterEvent::Failed { reason, .. }] if *reason == "prompt_failed"));
    }
}
