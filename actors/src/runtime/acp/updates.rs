//! What an ACP agent's messages mean for a task: `session/update` notifications ([`map_update`])
//! and the answer to `session/prompt` ([`prompt_outcome`]). Pure; the session actor does the IO.

use agent_client_protocol_schema::v1::{ContentBlock, PromptResponse, SessionNotification, SessionUpdate, StopReason};
use serde_json::{Value, json};

use crate::model::{FailureReason, JsonObject};
use crate::port::AdapterEvent;
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
