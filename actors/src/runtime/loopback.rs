//! The loopback runtime: the contract's in-process "local loopback transport", scripted by the
//! task payload. It lets every lifecycle path be exercised and benchmarked without a child
//! process:
//!
//! | payload | behaviour |
//! |---|---|
//! | `{"mode":"echo","text":"…"}` (or just `{"text":"…"}`) | completes with `result: {"text": "…"}` |
//! | `{"mode":"progress","steps":n,"interval_ms":ms}` | n running events, then completes |
//! | `{"mode":"await_input"}` | `awaiting_input`; a resume completes with the resume payload in the result |
//! | `{"mode":"fail","reason":"…"}` | fails with that reason |
//! | `{"mode":"sleep","ms":n}` | completes after n ms |
//! | `{"mode":"hang"}` | never completes (for cancel and timeout) |
//!
//! Each execution is a spawned task that casts its events to the task actor, stamped with the
//! task actor's generation; the runtime actor keeps a control channel per task for resume/cancel.

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{AdapterEvent, Dispatch, SessionMsg, TaskReplyTo};
use crate::model::{FailureReason, JsonObject};
use crate::port::{PendingInput, report};

/// Largest number of progress steps a script may ask for.
pub const MAX_STEPS: u64 = 100_000;
/// Longest single wait a script may ask for (one day).
pub const MAX_WAIT_MS: u64 = 86_400_000;

/// A parsed loopback script. Pure.
#[derive(Clone, Debug, PartialEq)]
pub enum Script {
    Echo { text: String },
    Progress { steps: u64, interval_ms: u64 },
    AwaitInput { prompt: Option<String> },
    Fail { reason: String },
    Sleep { ms: u64 },
    Hang,
}

fn uint_field(payload: &JsonObject, field: &str, default: u64, max: u64) -> Result<u64, String> {
    match payload.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n <= max => Ok(n),
            Some(n) => Err(format!("loopback payload field '{field}' is {n}, more than the maximum {max}")),
            None => Err(format!("loopback payload field '{field}' must be a non-negative integer, got {v}")),
        },
    }
}

fn text_field(payload: &JsonObject, field: &str) -> Result<Option<String>, String> {
    match payload.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!("loopback payload field '{field}' must be a string, got {v}")),
    }
}

impl Script {
    /// Reads the script from a task payload; the error names the field at fault.
    pub fn parse(payload: &Value) -> Result<Script, String> {
        let empty = JsonObject::new();
        let obj = match payload {
            Value::Object(o) => o,
            Value::Null => &empty,
            other => return Err(format!("loopback payload must be a JSON object, got {other}")),
        };
        let mode = text_field(obj, "mode")?.unwrap_or_else(|| "echo".to_owned());
        match mode.as_str() {
            "echo" => Ok(Script::Echo { text: text_field(obj, "text")?.unwrap_or_default() }),
            "progress" => Ok(Script::Progress {
                steps: uint_field(obj, "steps", 3, MAX_STEPS)?,
                interval_ms: uint_field(obj, "interval_ms", 10, MAX_WAIT_MS)?,
            }),
            "await_input" => Ok(Script::AwaitInput { prompt: text_field(obj, "prompt")? }),
            "fail" => Ok(Script::Fail {
                reason: text_field(obj, "reason")?.unwrap_or_else(|| "loopback failure requested".to_owned()),
            }),
            "sleep" => Ok(Script::Sleep { ms: uint_field(obj, "ms", 100, MAX_WAIT_MS)? }),
            "hang" => Ok(Script::Hang),
            other => Err(format!(
                "unknown loopback mode '{other}'; expected one of echo, progress, await_input, fail, sleep, hang"
            )),
        }
    }
}

/// Control messages from the runtime actor to one running script.
enum Control {
    Resume(JsonObject),
}

/// A running script.
struct Execution {
    /// Generation of the task actor that submitted it.
    generation: u64,
    /// Resume input goes here.
    control: mpsc::Sender<Control>,
    /// Aborted on cancel.
    join: JoinHandle<()>,
    /// The script is waiting for input right now.
    awaiting: bool,
    /// Where its events go (to confirm a cancel).
    reply_to: TaskReplyTo,
}

/// State of the loopback runtime.
pub struct LoopbackState {
    /// Running scripts by task id.
    executions: HashMap<String, Execution>,
}

/// The loopback runtime actor.
pub struct LoopbackRuntime;

/// Sends events that happen together in one message, so the task actor makes them durable in
/// one transaction.
fn emit(to: &TaskReplyTo, generation: u64, events: Vec<AdapterEvent>) -> bool {
    report(to, generation, events)
}

async fn run_script(script: Script, d: Dispatch, mut control: mpsc::Receiver<Control>, runtime: ActorRef<SessionMsg>) {
    let (to, generation) = (&d.reply_to, d.generation);
    let running = |message: String, data: JsonObject| AdapterEvent::Running { message, data };
    let completed = |message: &str, result: Value| AdapterEvent::Completed { message: message.to_owned(), result };
    let mut accepted = vec![
        AdapterEvent::Submitted {
            binding: "loopback".into(),
            remote_execution_id: Some(d.task_id.clone()),
            remote_session_id: None,
        },
        running("Loopback accepted the task".into(), JsonObject::new()),
    ];
    match script {
        Script::Echo { text } => {
            accepted.push(completed("Loopback completed the task", json!({ "text": text })));
            emit(to, generation, accepted);
        }
        Script::Progress { steps, interval_ms } => {
            emit(to, generation, accepted);
            for step in 1..=steps {
                tokio::time::sleep(Duration::from_millis(interval_ms)).await;
                let mut data = JsonObject::new();
                data.insert("step".into(), json!(step));
                data.insert("steps".into(), json!(steps));
                if !emit(to, generation, vec![running(format!("Progress {step}/{steps}"), data)]) {
                    return;
                }
            }
            emit(
                to,
                generation,
                vec![completed(
                    "Loopback completed the task",
                    json!({ "text": format!("completed {steps} steps"), "steps": steps }),
                )],
            );
        }
        Script::AwaitInput { prompt } => {
            let mut data = JsonObject::new();
            data.insert("prompt".into(), json!(prompt.unwrap_or_else(|| "Loopback is waiting for input".into())));
            accepted.push(AdapterEvent::AwaitingInput {
                message: "Waiting for input".into(),
                data,
                pending: PendingInput::Free,
            });
            emit(to, generation, accepted);
            let Some(Control::Resume(input)) = control.recv().await else { return };
            let text = input.get("text").cloned().unwrap_or(Value::Null);
            emit(
                to,
                generation,
                vec![
                    AdapterEvent::Resumed { message: "Loopback resumed the task".into() },
                    completed("Loopback completed the task", json!({ "text": text, "resume": input })),
                ],
            );
        }
        Script::Fail { reason } => {
            let message = format!("Loopback failed: {reason}");
            accepted.push(AdapterEvent::Failed { reason: reason.into(), detail: None, message });
            emit(to, generation, accepted);
        }
        Script::Sleep { ms } => {
            emit(to, generation, accepted);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            emit(to, generation, vec![completed("Loopback completed the task", json!({ "slept_ms": ms }))]);
        }
        Script::Hang => {
            emit(to, generation, accepted);
            std::future::pending::<()>().await
        }
    }
    let _ = runtime.cast(SessionMsg::Finished { task_id: d.task_id.clone(), generation });
}

impl Actor for LoopbackRuntime {
    type Msg = SessionMsg;
    type State = LoopbackState;
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<SessionMsg>, _: ()) -> Result<LoopbackState, ActorProcessingErr> {
        Ok(LoopbackState { executions: HashMap::new() })
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut LoopbackState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Submit(d) => {
                let d = *d;
                let script = match Script::parse(&d.payload) {
                    Ok(s) => s,
                    Err(detail) => {
                        emit(
                            &d.reply_to,
                            d.generation,
                            vec![AdapterEvent::Failed {
                                reason: FailureReason::SubmitFailed,
                                detail: Some(detail.clone()),
                                message: detail,
                            }],
                        );
                        return Ok(());
                    }
                };
                // A resubmission (restarted task actor) replaces the older execution.
                if let Some(old) = state.executions.remove(&d.task_id) {
                    old.join.abort();
                }
                let (tx, rx) = mpsc::channel(1);
                let awaiting = matches!(script, Script::AwaitInput { .. });
                let (task_id, generation, reply_to) = (d.task_id.clone(), d.generation, d.reply_to.clone());
                let join = tokio::spawn(run_script(script, d, rx, myself.clone()));
                state.executions.insert(task_id, Execution { generation, control: tx, join, awaiting, reply_to });
            }
            SessionMsg::Resume { task_id, generation, payload } => {
                let pending = state.executions.get_mut(&task_id).filter(|e| e.generation == generation && e.awaiting);
                match pending {
                    Some(exec) => {
                        exec.awaiting = false;
                        let _ = exec.control.try_send(Control::Resume(payload));
                    }
                    None => {
                        if let Some(exec) = state.executions.get(&task_id) {
                            emit(
                                &exec.reply_to,
                                generation,
                                vec![AdapterEvent::ResumeRefused { reason: "no input request is pending".into() }],
                            );
                        }
                    }
                }
            }
            SessionMsg::Cancel { task_id, generation } => {
                if let Some(exec) = state.executions.remove(&task_id) {
                    exec.join.abort();
                    emit(
                        &exec.reply_to,
                        generation,
                        vec![AdapterEvent::Cancelled { message: "Loopback cancelled the task".into() }],
                    );
                }
            }
            SessionMsg::Finished { task_id, generation } => {
                if state.executions.get(&task_id).is_some_and(|e| e.generation == generation) {
                    state.executions.remove(&task_id);
                }
            }
            // Loopback keeps nothing across restarts; recovery never re-attaches to it.
            SessionMsg::Attach { dispatch, .. } => {
                dispatch.report(vec![AdapterEvent::Failed {
                    reason: FailureReason::Interrupted,
                    detail: Some("the loopback runtime cannot re-attach a task".into()),
                    message: "Task interrupted by node restart".into(),
                }]);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        state: &mut LoopbackState,
    ) -> Result<(), ActorProcessingErr> {
        for (_, exec) in state.executions.drain() {
            exec.join.abort();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse_with_defaults_and_clear_errors() {
        assert_eq!(Script::parse(&json!({"text": "hi"})), Ok(Script::Echo { text: "hi".into() }));
        assert_eq!(
            Script::parse(&json!({"mode": "progress", "steps": 2, "interval_ms": 5})),
            Ok(Script::Progress { steps: 2, interval_ms: 5 })
        );
        assert_eq!(Script::parse(&json!({"mode": "hang"})), Ok(Script::Hang));
        assert_eq!(Script::parse(&json!({"mode": "sleep", "ms": 7})), Ok(Script::Sleep { ms: 7 }));
        assert_eq!(
            Script::parse(&json!({"mode": "fail", "reason": "boom"})),
            Ok(Script::Fail { reason: "boom".into() })
        );
        assert!(
            matches!(Script::parse(&json!({"mode": "warp"})), Err(e) if e.contains("unknown loopback mode 'warp'"))
        );
        assert!(matches!(Script::parse(&json!({"mode": "progress", "steps": "3"})), Err(e) if e.contains("'steps'")));
        assert!(matches!(Script::parse(&json!({"mode": "sleep", "ms": -1})), Err(e) if e.contains("'ms'")));
        assert!(matches!(Script::parse(&json!({"mode": 3})), Err(e) if e.contains("'mode'")));
    }
}
