//! The peer runtime: a task routed to a peer's target is relayed over the node protocol
//! (contract §9.6). The task stays an ordinary task here — same task actor, state machine and
//! storage — and this runtime is its adapter: one actor per peer (peer id, base URL), one
//! spawned relay per task that submits it (`POST /v1/node/tasks`), reports `Remote task
//! accepted`, then follows the destination's event stream and reports each frame as a mirrored
//! event (source `transport`) through the task's `TaskReplyTo`. The task's state machine refuses
//! what would walk its status back (the destination replays its whole history: `task.created`,
//! launch events…), so the proxy only moves forward.
//!
//! Not yet (clean seams): re-opening a closed stream with `Last-Event-ID` (a stream that ends
//! without a terminal frame fails the task `remote event stream failed`), relaying resume and
//! cancel (a resume is refused; a cancel ends the proxy here and leaves the destination task
//! alone), re-attaching after an origin restart (`Attach` fails the task `interrupted`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::{Value, json};
use tokio::task::AbortHandle;

use super::{AdapterEvent, Dispatch, SessionMsg, TaskReplyTo};
use crate::clock;
use crate::identity::NodeIdentity;
use crate::identity::node_auth;
use crate::model::{DeliveryRequest, EventKind, FailureReason, JsonObject, RemoteRef};
use crate::node_proto::{TaskAccepted, TaskEventFrame, TaskSubmitRequest, Trace, mirrored_data};
use crate::port::report;
use crate::storage::StoreReader;

/// How long the destination has to accept a submit.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the destination has to start answering the event stream.
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest SSE line accepted from a peer.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Which peer a runtime relays to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerLink {
    pub peer_id: String,
    /// Normalised, no trailing `/`.
    pub base_url: String,
}

/// Arguments of a peer runtime.
pub struct PeerRuntimeArgs {
    pub link: PeerLink,
    /// This node's id (`node_meta`), sent as `origin_node_id`.
    pub reader: StoreReader,
    /// Signs every request to the peer (`None`: unsigned).
    pub signer: Option<Arc<NodeIdentity>>,
}

/// A relay in flight.
struct Relay {
    /// Generation of the task actor that submitted it.
    generation: u64,
    /// Aborts the relay on cancel.
    abort: AbortHandle,
    /// Where its events go (to answer resume and cancel).
    reply_to: TaskReplyTo,
}

/// State of a peer runtime.
pub struct PeerRuntimeState {
    /// The peer relayed to.
    link: PeerLink,
    /// To read this node's id for each submit.
    reader: StoreReader,
    /// Shared by every relay (connection reuse); no overall timeout: streams are long.
    client: reqwest::Client,
    /// Relays in flight by task id.
    relays: HashMap<String, Relay>,
    /// Signs every request of every relay with this node's key (`None`: unsigned).
    signer: Option<Arc<NodeIdentity>>,
}

/// The peer runtime actor.
pub struct PeerRuntime;

impl Actor for PeerRuntime {
    type Msg = SessionMsg;
    type State = PeerRuntimeState;
    type Arguments = PeerRuntimeArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SessionMsg>,
        args: PeerRuntimeArgs,
    ) -> Result<PeerRuntimeState, ActorProcessingErr> {
        let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;
        Ok(PeerRuntimeState {
            link: args.link,
            reader: args.reader,
            client,
            relays: HashMap::new(),
            signer: args.signer,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut PeerRuntimeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Submit(d) => {
                let (task_id, generation, reply_to) = (d.task_id.clone(), d.generation, d.reply_to.clone());
                let (link, reader, me) = (state.link.clone(), state.reader.clone(), myself.clone());
                let client = Client { http: state.client.clone(), signer: state.signer.clone() };
                let join = tokio::spawn(async move {
                    let origin = reader
                        .node_meta(crate::storage::NODE_ID_IN_USE)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| "unknown-origin".into());
                    relay(*d, &link, &client, origin).await;
                });
                // The relay's end is noticed by its handle; a watcher casts `Finished` back.
                let (abort, watched) = (join.abort_handle(), task_id.clone());
                tokio::spawn(async move {
                    let _ = join.await;
                    let _ = me.cast(SessionMsg::Finished { task_id: watched, generation });
                });
                state.relays.insert(task_id, Relay { generation, abort, reply_to });
            }
            SessionMsg::Resume { task_id, generation, .. } => {
                if let Some(r) = state.relays.get(&task_id).filter(|r| r.generation == generation) {
                    let reason = "resuming a relayed task is not supported yet".to_owned();
                    report(&r.reply_to, generation, vec![AdapterEvent::ResumeRefused { reason }]);
                }
            }
            SessionMsg::Cancel { task_id, generation } => {
                if let Some(r) = state.relays.remove(&task_id).filter(|r| r.generation == generation) {
                    r.abort.abort();
                    let message = "Relay stopped at the origin (relayed cancel is not supported yet: the destination task is not cancelled)".to_owned();
                    report(&r.reply_to, generation, vec![AdapterEvent::Cancelled { message }]);
                }
            }
            SessionMsg::Finished { task_id, generation } => {
                if state.relays.get(&task_id).is_some_and(|r| r.generation == generation) {
                    state.relays.remove(&task_id);
                }
            }
            SessionMsg::Attach { dispatch, .. } => {
                dispatch.report(vec![AdapterEvent::Failed {
                    reason: FailureReason::Interrupted,
                    detail: Some("re-attaching a relayed task after an origin restart is not supported yet".into()),
                    message: "Remote relay interrupted by origin restart".into(),
                }]);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        state: &mut PeerRuntimeState,
    ) -> Result<(), ActorProcessingErr> {
        for (_, r) in state.relays.drain() {
            r.abort.abort();
        }
        Ok(())
    }
}

/// The HTTP client of a relay and the identity that signs its requests.
struct Client {
    http: reqwest::Client,
    signer: Option<Arc<NodeIdentity>>,
}

impl Client {
    /// A request to `url` with `body`, signed when this node signs.
    fn request(&self, method: reqwest::Method, url: reqwest::Url, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut builder = self.http.request(method.clone(), url.clone());
        if let Some(identity) = &self.signer {
            let target = node_auth::target_of(&url);
            for (name, value) in node_auth::signed_headers(identity, method.as_str(), &target, &body) {
                builder = builder.header(name, value);
            }
        }
        if body.is_empty() { builder } else { builder.header("content-type", "application/json").body(body) }
    }
}

/// A relay failure as the task records it (source `transport`).
fn relay_failed(reason: FailureReason, link: &PeerLink, detail: String) -> AdapterEvent {
    let mut data = JsonObject::new();
    data.insert("reason".into(), json!(reason.as_str()));
    data.insert("remote_peer_id".into(), json!(link.peer_id));
    data.insert("detail".into(), json!(detail));
    AdapterEvent::Relayed { kind: EventKind::TaskFailed, message: reason.as_str().to_owned(), data, remote: None }
}

/// Submits the task to the peer and mirrors its events until the destination task ends.
async fn relay(d: Dispatch, link: &PeerLink, client: &Client, origin_node_id: String) {
    let submit = TaskSubmitRequest {
        origin_node_id,
        origin_proxy_task_id: d.task_id.clone(),
        origin_thread_id: d.thread_id.clone(),
        target_agent_id: d.target_id.clone(),
        intent: d.intent.clone(),
        payload: d.payload.clone(),
        runtime_options: Some(d.runtime_options.clone()),
        trace: Trace { trace_id: d.trace_id.clone(), parent_task_id: None },
        delivery: Some(DeliveryRequest {
            mode: Some(d.delivery.mode),
            launch_if_down: Some(d.delivery.launch_if_down),
            timeout_ms: d.delivery.timeout_ms,
        }),
        submitted_at: clock::now_rfc3339(),
    };
    let accepted = match submit_task(client, link, &submit).await {
        Ok(a) => a,
        Err(detail) => {
            d.report(vec![relay_failed(FailureReason::RemoteRelayFailed, link, detail)]);
            return;
        }
    };
    let mut data = JsonObject::new();
    data.insert("remote_peer_id".into(), json!(link.peer_id));
    data.insert("destination_node_id".into(), json!(accepted.destination_node_id));
    data.insert("destination_task_id".into(), json!(accepted.destination_task_id));
    let remote = RemoteRef { binding: accepted.destination_task_id.clone(), ..Default::default() };
    d.report(vec![AdapterEvent::Relayed {
        kind: EventKind::TaskDispatching,
        message: "Remote task accepted".into(),
        data,
        remote: Some(remote),
    }]);
    if let Err(detail) = mirror(&d, link, client, &accepted).await {
        d.report(vec![relay_failed(FailureReason::RemoteEventStreamFailed, link, detail)]);
    }
}

/// `POST <peer>/v1/node/tasks` → the acceptance, or why not (the peer's typed error if it sent one).
async fn submit_task(client: &Client, link: &PeerLink, req: &TaskSubmitRequest) -> Result<TaskAccepted, String> {
    let url = format!("{}/v1/node/tasks", link.base_url);
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("{url}: {e}"))?;
    let body = serde_json::to_vec(req).map_err(|e| format!("{url}: {e}"))?;
    let sent = client
        .request(reqwest::Method::POST, parsed, body)
        .timeout(SUBMIT_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = sent.status();
    let body = sent.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    if status != reqwest::StatusCode::ACCEPTED {
        let typed = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| Some(format!("{} ({}): {}", status, v.get("code")?.as_str()?, v.get("message")?.as_str()?)));
        return Err(typed.unwrap_or_else(|| format!("http_error: {url} answered {status}")));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: unreadable acceptance: {e}"))
}

/// Follows the destination's event stream, reporting each frame as it arrives; `Ok` once a
/// terminal frame was reported.
async fn mirror(d: &Dispatch, link: &PeerLink, client: &Client, accepted: &TaskAccepted) -> Result<(), String> {
    let url = format!("{}/v1/node/tasks/{}/events", link.base_url, accepted.destination_task_id);
    let mut parsed = reqwest::Url::parse(&url).map_err(|e| format!("{url}: {e}"))?;
    parsed.query_pairs_mut().append_pair("origin_proxy_task_id", &d.task_id);
    let opened =
        tokio::time::timeout(STREAM_OPEN_TIMEOUT, client.request(reqwest::Method::GET, parsed, Vec::new()).send())
            .await
            .map_err(|_| format!("{url}: no answer within {} s", STREAM_OPEN_TIMEOUT.as_secs()))?
            .map_err(|e| format!("{url}: {e}"))?;
    if opened.status() != reqwest::StatusCode::OK {
        return Err(format!("{url} answered {}", opened.status()));
    }
    let mut body = opened.bytes_stream();
    let mut lines = SseLines::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("{url}: {e}"))?;
        for data in lines.push(&chunk)? {
            let frame: TaskEventFrame =
                serde_json::from_str(&data).map_err(|e| format!("{url}: unreadable frame: {e}"))?;
            let Some((event, terminal)) = mirrored(&frame) else { continue };
            d.report(vec![event]);
            if terminal {
                return Ok(());
            }
        }
    }
    Err("the peer closed the event stream before the task ended".into())
}

/// The event a frame becomes, and whether it ends the task (`None`: a kind this node does not
/// know). Pure.
pub fn mirrored(frame: &TaskEventFrame) -> Option<(AdapterEvent, bool)> {
    let kind: EventKind = frame.kind.parse().ok()?;
    let terminal = matches!(kind, EventKind::TaskCompleted | EventKind::TaskFailed | EventKind::TaskCancelled);
    let event = AdapterEvent::Relayed {
        kind,
        message: frame.message.clone().unwrap_or_default(),
        data: mirrored_data(frame),
        remote: None,
    };
    Some((event, terminal))
}

/// Splits an SSE body into the `data:` payloads of its events (`event:`, `id:` and comments are
/// not needed: every frame carries its kind and seq). Pure.
#[derive(Default)]
pub struct SseLines {
    /// Bytes of the line not yet ended.
    partial: Vec<u8>,
    /// `data:` lines of the event not yet ended (joined with `\n`).
    data: Vec<String>,
}

impl SseLines {
    /// Feeds bytes; returns the data of every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.partial.push(b);
                if self.partial.len() > MAX_LINE {
                    return Err(format!("an event stream line is longer than {MAX_LINE} bytes"));
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.partial).trim_end_matches('\r').to_owned();
            self.partial.clear();
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(rest) = line.strip_prefix("data:") {
                self.data.push(rest.strip_prefix(' ').unwrap_or(rest).to_owned());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_lines_yield_data_per_event_across_chunks() {
        let mut lines = SseLines::default();
        let cases: [(&str, Vec<&str>); 4] = [
            ("event: task.event\nid: 1\nda", vec![]),
            ("ta: {\"a\":1}\n\n: keep-alive\n\n", vec!["{\"a\":1}"]),
            ("data: x\r\ndata: y\r\n\r\n", vec!["x\ny"]),
            ("id: 3\n\n", vec![]),
        ];
        for (chunk, want) in cases {
            assert_eq!(lines.push(chunk.as_bytes()), Ok(want.into_iter().map(str::to_owned).collect()), "{chunk:?}");
        }
    }

    #[test]
    fn frames_become_mirrored_events() {
        let frame = |kind: &str| TaskEventFrame {
            origin_proxy_task_id: "p".into(),
            destination_node_id: "b".into(),
            destination_task_id: "d".into(),
            destination_thread_id: None,
            seq: 3,
            kind: kind.into(),
            state: "x".into(),
            source: "adapter".into(),
            message: Some("m".into()),
            data: None,
            remote_execution_id: None,
            remote_session_id: None,
            occurred_at: "t".into(),
        };
        let cases: [(&str, Option<(EventKind, bool)>); 4] = [
            ("task.running", Some((EventKind::TaskRunning, false))),
            ("task.completed", Some((EventKind::TaskCompleted, true))),
            ("task.failed", Some((EventKind::TaskFailed, true))),
            ("task.teleported", None),
        ];
        for (kind, want) in cases {
            let got = mirrored(&frame(kind)).map(|(e, terminal)| match e {
                AdapterEvent::Relayed { kind, .. } => (kind, terminal),
                other => panic!("{other:?}"),
            });
            assert_eq!(got, want, "{kind}");
        }
    }
}
