//! The node-to-node protocol `aethrolink.node.v1` (contract §9.4): the messages an origin node
//! and a destination node exchange to relay a task. Plain wire types, shared by the destination
//! endpoints (the service layer) and the origin's peer runtime (`runtime::peer`); no IO.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{DeliveryRequest, JsonObject};

/// The protocol name in `GET /v1/node/health`.
pub const PROTOCOL: &str = "aethrolink.node.v1";

/// Keys of a mirrored event's data the origin writes itself (a peer cannot spoof them).
pub const RESERVED_DATA_KEYS: [&str; 6] = [
    "destination_node_id",
    "destination_task_id",
    "destination_thread_id",
    "remote_event_seq",
    "remote_execution_id",
    "remote_session_id",
];

/// Trace context carried by submit, resume and cancel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    #[serde(default)]
    pub trace_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_task_id: Option<String>,
}

/// `task.submit`: `POST /v1/node/tasks`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSubmitRequest {
    #[serde(default)]
    pub origin_node_id: String,
    #[serde(default)]
    pub origin_proxy_task_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_thread_id: Option<String>,
    #[serde(default)]
    pub target_agent_id: String,
    #[serde(default)]
    pub intent: String,
    /// Required (null or missing is refused).
    #[serde(default)]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_options: Option<JsonObject>,
    #[serde(default)]
    pub trace: Trace,
    /// Absent: the destination's default policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryRequest>,
    #[serde(default)]
    pub submitted_at: String,
    /// Which attempt of the origin's task this is (absent: the first). An addition Go nodes
    /// ignore: a retried proxy task is a new task at the destination, not a replay of the
    /// attempt that ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_attempt: Option<u32>,
}

impl TaskSubmitRequest {
    /// The destination's idempotency key of this submit: the proxy task id, with the attempt
    /// after the first (one destination task per proxy task attempt). Pure.
    pub fn idempotency_key(&self) -> String {
        match self.origin_attempt {
            Some(attempt) if attempt > 1 => format!("{}#attempt-{attempt}", self.origin_proxy_task_id),
            _ => self.origin_proxy_task_id.clone(),
        }
    }

    /// The first missing field, in the contract's order and words.
    pub fn validate(&self) -> Result<(), String> {
        let required = [
            (self.origin_node_id.trim().is_empty(), "origin_node_id is required"),
            (self.origin_proxy_task_id.trim().is_empty(), "origin_proxy_task_id is required"),
            (self.target_agent_id.trim().is_empty(), "target_agent_id is required"),
            (self.intent.trim().is_empty(), "intent is required"),
            (self.payload.is_null(), "payload is required"),
        ];
        match required.into_iter().find(|(missing, _)| *missing) {
            Some((_, message)) => Err(message.to_owned()),
            None => Ok(()),
        }
    }
}

/// `task.accepted`: the answer to a submit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAccepted {
    pub origin_proxy_task_id: String,
    pub destination_node_id: String,
    pub destination_task_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_thread_id: Option<String>,
    pub accepted_at: String,
}

/// `task.event`: one destination event, as `GET /v1/node/tasks/{id}/events` streams it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskEventFrame {
    pub origin_proxy_task_id: String,
    pub destination_node_id: String,
    pub destination_task_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_thread_id: Option<String>,
    pub seq: u64,
    pub kind: String,
    pub state: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_session_id: Option<String>,
    pub occurred_at: String,
}

/// `task.resume`: `POST /v1/node/tasks/{id}/resume`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskResumeRequest {
    #[serde(default)]
    pub origin_node_id: String,
    #[serde(default)]
    pub origin_proxy_task_id: String,
    #[serde(default)]
    pub destination_task_id: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub trace: Trace,
    #[serde(default)]
    pub requested_at: String,
}

/// `task.cancel`: `POST /v1/node/tasks/{id}/cancel`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskCancelRequest {
    #[serde(default)]
    pub origin_node_id: String,
    #[serde(default)]
    pub origin_proxy_task_id: String,
    #[serde(default)]
    pub destination_task_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub trace: Trace,
    #[serde(default)]
    pub requested_at: String,
}

/// The three ids a control message (resume, cancel) must carry; the first missing one.
pub fn validate_control(
    origin_node_id: &str,
    origin_proxy_task_id: &str,
    destination_task_id: &str,
) -> Result<(), String> {
    let required = [
        (origin_node_id, "origin_node_id is required"),
        (origin_proxy_task_id, "origin_proxy_task_id is required"),
        (destination_task_id, "destination_task_id is required"),
    ];
    match required.into_iter().find(|(v, _)| v.trim().is_empty()) {
        Some((_, message)) => Err(message.to_owned()),
        None => Ok(()),
    }
}

/// The message family an error answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageType {
    #[serde(rename = "task.submit")]
    TaskSubmit,
    #[serde(rename = "task.event")]
    TaskEvent,
    #[serde(rename = "task.resume")]
    TaskResume,
    #[serde(rename = "task.cancel")]
    TaskCancel,
}

/// The error codes of the destination endpoints (contract §9.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeErrorCode {
    InvalidJson,
    InvalidTaskSubmit,
    TaskSubmitFailed,
    InvalidTaskEvents,
    TaskEventsFailed,
    InvalidTaskResume,
    InvalidTaskCancel,
    TaskIdMismatch,
    TaskResumeFailed,
    TaskCancelFailed,
    /// The caller did not prove which node it is (this node refuses unsigned peers unless it
    /// runs in the Go-compatibility mode).
    Unauthenticated,
    /// Not a destination code: the origin's name for a non-2xx answer without a typed body.
    HttpError,
}

impl NodeErrorCode {
    /// Whether the origin may retry: failures of the operation itself are; a bad request is not.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            NodeErrorCode::TaskSubmitFailed
                | NodeErrorCode::TaskEventsFailed
                | NodeErrorCode::TaskResumeFailed
                | NodeErrorCode::TaskCancelFailed
        )
    }
}

/// `error`: a typed error frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeErrorFrame {
    pub message_type: MessageType,
    pub code: NodeErrorCode,
    pub message: String,
    pub retryable: bool,
}

impl NodeErrorFrame {
    pub fn new(message_type: MessageType, code: NodeErrorCode, message: impl Into<String>) -> Self {
        NodeErrorFrame { message_type, code, message: message.into(), retryable: code.retryable() }
    }
}

/// A mirrored event's data: the peer's data without the reserved keys, then the origin's own
/// values for them (written last, so a peer cannot spoof them). Pure.
pub fn mirrored_data(frame: &TaskEventFrame) -> JsonObject {
    let mut data = match &frame.data {
        Some(Value::Object(m)) => m.clone(),
        _ => JsonObject::new(),
    };
    for key in RESERVED_DATA_KEYS {
        data.remove(key);
    }
    data.insert("destination_node_id".into(), Value::String(frame.destination_node_id.clone()));
    data.insert("destination_task_id".into(), Value::String(frame.destination_task_id.clone()));
    data.insert("remote_event_seq".into(), Value::from(frame.seq));
    let optional = [
        ("destination_thread_id", &frame.destination_thread_id),
        ("remote_execution_id", &frame.remote_execution_id),
        ("remote_session_id", &frame.remote_session_id),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            data.insert(key.into(), Value::String(v.clone()));
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn submit_validation_follows_the_contract_order() {
        let full = TaskSubmitRequest {
            origin_node_id: "a".into(),
            origin_proxy_task_id: "p".into(),
            target_agent_id: "t".into(),
            intent: "i".into(),
            payload: json!({}),
            ..Default::default()
        };
        type Change = fn(&mut TaskSubmitRequest);
        let cases: [(Change, Result<(), &str>); 6] = [
            (|_| {}, Ok(())),
            (|r| r.origin_node_id.clear(), Err("origin_node_id is required")),
            (|r| r.origin_proxy_task_id.clear(), Err("origin_proxy_task_id is required")),
            (|r| r.target_agent_id.clear(), Err("target_agent_id is required")),
            (|r| r.intent = " ".into(), Err("intent is required")),
            (|r| r.payload = Value::Null, Err("payload is required")),
        ];
        for (change, want) in cases {
            let mut req = full.clone();
            change(&mut req);
            assert_eq!(req.validate(), want.map_err(str::to_owned));
        }
        assert_eq!(validate_control("a", "", "d"), Err("origin_proxy_task_id is required".to_owned()));
    }

    #[test]
    fn each_attempt_of_a_proxy_task_is_its_own_submit() {
        let submit = |origin_attempt| TaskSubmitRequest {
            origin_proxy_task_id: "p".into(),
            origin_attempt,
            ..Default::default()
        };
        let keys: Vec<String> = [None, Some(1), Some(2), Some(3)].map(|a| submit(a).idempotency_key()).into();
        assert_eq!(keys, ["p", "p", "p#attempt-2", "p#attempt-3"]);
        // The first attempt's submit is what a Go node receives: no new field.
        let text = serde_json::to_string(&submit(None)).unwrap_or_default();
        assert!(!text.contains("origin_attempt"), "{text}");
    }

    #[test]
    fn mirrored_data_cannot_spoof_reserved_keys() {
        let frame = TaskEventFrame {
            origin_proxy_task_id: "p".into(),
            destination_node_id: "b".into(),
            destination_task_id: "d".into(),
            destination_thread_id: None,
            seq: 7,
            kind: "task.running".into(),
            state: "running".into(),
            source: "adapter".into(),
            message: None,
            data: Some(json!({"destination_task_id": "spoof", "remote_event_seq": 1, "keep": true})),
            remote_execution_id: None,
            remote_session_id: None,
            occurred_at: "t".into(),
        };
        let data = mirrored_data(&frame);
        assert_eq!(
            Value::Object(data),
            json!({"keep": true, "destination_node_id": "b", "destination_task_id": "d", "remote_event_seq": 7})
        );
        let error = NodeErrorFrame::new(MessageType::TaskEvent, NodeErrorCode::InvalidTaskEvents, "x");
        assert_eq!(
            serde_json::to_value(&error).ok(),
            Some(
                json!({"message_type": "task.event", "code": "invalid_task_events", "message": "x", "retryable": false})
            )
        );
    }
}
