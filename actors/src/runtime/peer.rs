//! The peer runtime: a task routed to a peer's target is relayed over the node protocol
//! (contract §9.6). The task stays an ordinary task here — same task actor, state machine and
//! storage — and this runtime is its adapter: one actor per peer (peer id, base URL), one
//! spawned relay per task that submits it (`POST /v1/node/tasks`), reports `Remote task
//! accepted`, then follows the destination's event stream and reports each frame as a mirrored
//! event (source `transport`) through the task's `TaskReplyTo`. The task's state machine refuses
//! what would walk its status back (the destination replays its whole history: `task.created`,
//! launch events…), so the proxy only moves forward.
//!
//! Where the Go node is defective (contract §9.6) this runtime does what it intended:
//! - a stream that ends without a terminal frame is re-opened with `Last-Event-ID` (the last
//!   destination seq seen) under a bounded [`Reconnect`] budget; past it the task fails
//!   `remote event stream failed`;
//! - resume and cancel are relayed to the destination (`POST /v1/node/tasks/{id}/resume|cancel`);
//!   the destination's own events then end or continue the proxy;
//! - after an origin restart a relay in flight re-attaches (`Attach`): it follows the
//!   destination's stream from the last mirrored seq to the real outcome; only a destination that
//!   no longer knows the task, or stays unreachable past the budget, fails the proxy
//!   `remote relay interrupted`. A restart before the acceptance was recorded submits again
//!   to a peer that answers a repeated submit with the task it created (an AethroLink node:
//!   `TargetSpec::resubmit_safe`), which then continues like a re-attach; to a peer that may not
//!   (a Go node) the proxy fails `remote relay interrupted` rather than risk a second run.
//!
//! Writes on the relay's path are few: the destination's quiet frames (creation, launch,
//! dispatch) wait up to [`QUIET_HOLD`] to share the first write that moves the proxy; to a
//! resubmit-safe peer the acceptance waits the same way and the task actor defers its own
//! dispatch write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::{Value, json};
use tokio::task::AbortHandle;

use super::{AdapterEvent, Dispatch, SessionMsg, TaskReplyTo};
use crate::clock;
use crate::identity::NodeIdentity;
use crate::identity::node_auth;
use crate::model::{DeliveryRequest, EventKind, FailureReason, JsonObject, RemoteRef};
use crate::node_proto::{
    TaskAccepted, TaskCancelRequest, TaskEventFrame, TaskResumeRequest, TaskSubmitRequest, Trace, mirrored_data,
};
use crate::port::report;
use crate::storage::StoreReader;

/// How long the destination has to accept a submit.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the destination has to start answering the event stream.
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the destination has to answer a resume or cancel.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long mirrored frames that cannot move the proxy wait for the next frame to share its
/// durable write (a destination's launch and dispatch events come just before its running ones).
const QUIET_HOLD: Duration = Duration::from_millis(20);
/// Longest SSE line accepted from a peer.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Which peer a runtime relays to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerLink {
    pub peer_id: String,
    /// Normalised, no trailing `/`.
    pub base_url: String,
    /// The peer answers a submit sent again with the task it created
    /// (`TargetSpec::resubmit_safe`): its acceptance may wait to share a later write, since a
    /// restart before that write submits again instead of failing the relay.
    pub resubmit_safe: bool,
}

/// Arguments of a peer runtime.
pub struct PeerRuntimeArgs {
    pub link: PeerLink,
    /// Reads this node's id (sent as `origin_node_id`) and a re-attached task's mirrored events.
    pub reader: StoreReader,
    /// Signs every request to the peer (`None`: unsigned).
    pub signer: Option<Arc<NodeIdentity>>,
}

/// What a relay's spawned task and the runtime actor both see: where the destination holds the
/// task, and whether a cancel came before it said (a lock, not messages: the relay must learn
/// of a cancel between acceptance and its first frame without a round trip).
#[derive(Debug, Default)]
struct RelayControl {
    /// The destination's task id once it accepted the submit (resume and cancel go there).
    destination_task_id: Option<String>,
    /// A cancel arrived before acceptance: the relay relays it as soon as it is accepted.
    cancel_pending: bool,
}

type SharedControl = Arc<Mutex<RelayControl>>;

fn lock(control: &SharedControl) -> std::sync::MutexGuard<'_, RelayControl> {
    control.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A relay in flight.
struct Relay {
    /// Generation of the task actor that submitted it.
    generation: u64,
    /// Aborts the relay when its task is cancelled and the destination cannot be told.
    abort: AbortHandle,
    /// Where its events go (to answer resume and cancel).
    reply_to: TaskReplyTo,
    /// The destination task id, shared with the relay.
    control: SharedControl,
}

/// State of a peer runtime.
pub struct PeerRuntimeState {
    /// The peer relayed to.
    link: PeerLink,
    /// Reads a re-attached task's mirrored events (where its stream resumes).
    reader: StoreReader,
    /// Shared by every relay (connection reuse); no overall timeout: streams are long.
    client: reqwest::Client,
    /// Relays in flight by task id.
    relays: HashMap<String, Relay>,
    /// Signs every request of every relay with this node's key (`None`: unsigned).
    signer: Option<Arc<NodeIdentity>>,
    /// This node's id, sent as `origin_node_id` (read once: it is fixed for the process's life).
    origin_node_id: Arc<str>,
}

impl PeerRuntimeState {
    fn client(&self) -> Client {
        Client {
            http: self.client.clone(),
            signer: self.signer.clone(),
            link: self.link.clone(),
            origin_node_id: self.origin_node_id.clone(),
        }
    }

    /// Runs `work` as the relay of `task_id` (generation `generation`); its end is noticed by a
    /// watcher that casts `Finished` back.
    fn start(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        task_id: String,
        generation: u64,
        reply_to: TaskReplyTo,
        control: SharedControl,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let join = tokio::spawn(work);
        let (abort, watched, me) = (join.abort_handle(), task_id.clone(), myself.clone());
        tokio::spawn(async move {
            let _ = join.await;
            let _ = me.cast(SessionMsg::Finished { task_id: watched, generation });
        });
        if self.relays.insert(task_id.clone(), Relay { generation, abort, reply_to, control }).is_none() {
            metrics::gauge!(crate::telemetry::RELAYS_IN_FLIGHT).increment(1.0);
        }
    }
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
        let origin_node_id = args.reader.node_meta(crate::storage::NODE_ID_IN_USE).await?;
        Ok(PeerRuntimeState {
            link: args.link,
            reader: args.reader,
            client,
            relays: HashMap::new(),
            signer: args.signer,
            origin_node_id: Arc::from(origin_node_id.unwrap_or_else(|| "unknown-origin".into())),
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
                let (client, control) = (state.client(), SharedControl::default());
                let shared = control.clone();
                let work = async move { relay(*d, &client, &shared).await };
                state.start(&myself, task_id, generation, reply_to, control, work);
            }
            SessionMsg::Attach { dispatch, remote, .. } => {
                let (task_id, generation, reply_to) =
                    (dispatch.task_id.clone(), dispatch.generation, dispatch.reply_to.clone());
                let control = SharedControl::new(Mutex::new(RelayControl {
                    destination_task_id: Some(remote.binding.clone()),
                    cancel_pending: false,
                }));
                let (client, reader) = (state.client(), state.reader.clone());
                let work = async move { reattach(*dispatch, &client, &reader, remote.binding).await };
                state.start(&myself, task_id, generation, reply_to, control, work);
            }
            SessionMsg::Resume { task_id, generation, payload } => {
                let Some(r) = state.relays.get(&task_id).filter(|r| r.generation == generation) else {
                    return Ok(());
                };
                let destination = lock(&r.control).destination_task_id.clone();
                let Some(destination) = destination else {
                    let reason = "the destination has not accepted the task yet".to_owned();
                    report(&r.reply_to, generation, vec![AdapterEvent::ResumeRefused { reason }]);
                    return Ok(());
                };
                let (client, reply_to, proxy) = (state.client(), r.reply_to.clone(), task_id.clone());
                tokio::spawn(async move {
                    let req = TaskResumeRequest {
                        origin_node_id: client.origin_node_id.to_string(),
                        origin_proxy_task_id: proxy,
                        destination_task_id: destination.clone(),
                        payload: Value::Object(payload),
                        trace: Trace::default(),
                        requested_at: clock::now_rfc3339(),
                    };
                    // Accepted: the destination's own events (resumed, running…) follow on the stream.
                    if let Err(reason) = client.control(&destination, "resume", &req).await {
                        let reason = format!("the destination refused the resume: {reason}");
                        report(&reply_to, generation, vec![AdapterEvent::ResumeRefused { reason }]);
                    }
                });
            }
            SessionMsg::Cancel { task_id, generation } => {
                let Some(r) = state.relays.get(&task_id).filter(|r| r.generation == generation) else {
                    return Ok(());
                };
                let destination = {
                    let mut control = lock(&r.control);
                    if control.destination_task_id.is_none() {
                        // The relay relays it once the destination accepts (or ends it if not).
                        control.cancel_pending = true;
                    }
                    control.destination_task_id.clone()
                };
                let Some(destination) = destination else { return Ok(()) };
                let (client, reply_to, proxy, abort) =
                    (state.client(), r.reply_to.clone(), task_id.clone(), r.abort.clone());
                tokio::spawn(async move {
                    if let Err(detail) = cancel_at_destination(&client, &proxy, &destination).await {
                        // The destination cannot be told: stop following it and end the proxy here.
                        abort.abort();
                        let message = format!("Cancelled at the origin; the destination could not be told: {detail}");
                        report(&reply_to, generation, vec![AdapterEvent::Cancelled { message }]);
                    }
                });
            }
            SessionMsg::Finished { task_id, generation } => {
                if state.relays.get(&task_id).is_some_and(|r| r.generation == generation) {
                    state.relays.remove(&task_id);
                    metrics::gauge!(crate::telemetry::RELAYS_IN_FLIGHT).decrement(1.0);
                }
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
            metrics::gauge!(crate::telemetry::RELAYS_IN_FLIGHT).decrement(1.0);
        }
        Ok(())
    }
}

/// Relays a cancel of proxy task `proxy` to the destination's task.
async fn cancel_at_destination(client: &Client, proxy: &str, destination: &str) -> Result<(), String> {
    let req = TaskCancelRequest {
        origin_node_id: client.origin_node_id.to_string(),
        origin_proxy_task_id: proxy.to_owned(),
        destination_task_id: destination.to_owned(),
        reason: Some("cancelled at the origin".into()),
        trace: Trace::default(),
        requested_at: clock::now_rfc3339(),
    };
    client.control(destination, "cancel", &req).await
}

/// The HTTP client of a relay, the peer it talks to and the identity that signs its requests.
struct Client {
    http: reqwest::Client,
    signer: Option<Arc<NodeIdentity>>,
    link: PeerLink,
    /// This node's id as the destination knows it (`origin_node_id`).
    origin_node_id: Arc<str>,
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

    /// `POST <peer>/v1/node/tasks/{destination}/{action}` with `req`: `Ok` on a 2xx, else the
    /// destination's typed error (or the status).
    async fn control(&self, destination: &str, action: &str, req: &impl serde::Serialize) -> Result<(), String> {
        let url = format!("{}/v1/node/tasks/{destination}/{action}", self.link.base_url);
        let parsed = reqwest::Url::parse(&url).map_err(|e| format!("{url}: {e}"))?;
        let body = serde_json::to_vec(req).map_err(|e| format!("{url}: {e}"))?;
        let sent = self
            .request(reqwest::Method::POST, parsed, body)
            .timeout(CONTROL_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = sent.status();
        if status.is_success() {
            return Ok(());
        }
        let body = sent.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        Err(typed_error(&url, status, &body))
    }
}

/// A peer's non-success answer as a detail: its typed error frame, or the status line.
fn typed_error(url: &str, status: reqwest::StatusCode, body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| Some(format!("{} ({}): {}", status, v.get("code")?.as_str()?, v.get("message")?.as_str()?)))
        .unwrap_or_else(|| format!("http_error: {url} answered {status}"))
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
async fn relay(d: Dispatch, client: &Client, control: &SharedControl) {
    let link = &client.link;
    let submit = TaskSubmitRequest {
        origin_node_id: client.origin_node_id.to_string(),
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
        origin_attempt: (d.attempt > 1).then_some(d.attempt),
    };
    let accepted = match submit_task(client, &submit).await {
        Ok(a) => a,
        Err(_) if lock(control).cancel_pending => {
            let message = "Task cancelled before the destination accepted it".to_owned();
            d.report(vec![AdapterEvent::Cancelled { message }]);
            return;
        }
        Err(detail) => {
            d.report(vec![relay_failed(FailureReason::RemoteRelayFailed, link, detail)]);
            return;
        }
    };
    let destination = accepted.destination_task_id.clone();
    let cancel_pending = {
        let mut c = lock(control);
        c.destination_task_id = Some(destination.clone());
        c.cancel_pending
    };
    let mut data = JsonObject::new();
    data.insert("remote_peer_id".into(), json!(link.peer_id));
    data.insert("destination_node_id".into(), json!(accepted.destination_node_id));
    data.insert("destination_task_id".into(), json!(destination));
    let remote = RemoteRef { binding: destination.clone(), ..Default::default() };
    let accepted = AdapterEvent::Relayed {
        kind: EventKind::TaskDispatching,
        message: "Remote task accepted".into(),
        data,
        remote: Some(remote),
    };
    // The acceptance cannot move the proxy (it is `dispatching` already): to a resubmit-safe
    // peer it waits, like the destination's own quiet frames, at most [`QUIET_HOLD`] to share
    // the first mirrored write, instead of a commit of its own racing the destination's. To
    // another peer it is written at once (until it is, a restart fails the relay). A cancel
    // waiting for it goes first.
    if !cancel_pending && link.resubmit_safe {
        return follow_accepted(&d, client, &destination, vec![accepted]).await;
    }
    d.report(vec![accepted]);
    if cancel_pending && let Err(detail) = cancel_at_destination(client, &d.task_id, &destination).await {
        let message = format!("Cancelled at the origin; the destination could not be told: {detail}");
        d.report(vec![AdapterEvent::Cancelled { message }]);
        return;
    }
    follow_accepted(&d, client, &destination, Vec::new()).await
}

/// Follows an accepted relay's destination stream from its start (`held`: the acceptance, if
/// not reported yet) to the outcome, failing the relay if the stream cannot be followed.
async fn follow_accepted(d: &Dispatch, client: &Client, destination: &str, held: Vec<AdapterEvent>) {
    let link = &client.link;
    match follow(d, client, destination, 0, held).await {
        StreamEnd::Terminal => {}
        StreamEnd::Gone(detail) | StreamEnd::Broken(detail) => {
            d.report(vec![relay_failed(FailureReason::RemoteEventStreamFailed, link, detail)]);
        }
    }
}

/// Follows a relay again after an origin restart, from the last destination seq it mirrored.
async fn reattach(d: Dispatch, client: &Client, reader: &StoreReader, destination: String) {
    let link = &client.link;
    let after = match last_mirrored_seq(reader, &d.task_id).await {
        Ok(seq) => seq,
        Err(detail) => {
            d.report(vec![interrupted(link, &destination, format!("cannot read the mirrored events: {detail}"))]);
            return;
        }
    };
    tracing::info!(
        actor_kind = "peer_runtime",
        task_id = %d.task_id,
        peer_id = %link.peer_id,
        destination_task_id = %destination,
        after_seq = after,
        "re-attaching a relay after an origin restart"
    );
    match follow(&d, client, &destination, after, Vec::new()).await {
        StreamEnd::Terminal => {}
        StreamEnd::Gone(detail) | StreamEnd::Broken(detail) => {
            d.report(vec![interrupted(link, &destination, detail)]);
        }
    }
}

/// `remote relay interrupted`: the relay could not reach the destination's outcome after an
/// origin restart.
fn interrupted(link: &PeerLink, destination: &str, detail: String) -> AdapterEvent {
    let reason = FailureReason::RemoteRelayInterrupted;
    let mut data = JsonObject::new();
    data.insert("reason".into(), json!(reason.as_str()));
    data.insert("remote_peer_id".into(), json!(link.peer_id));
    data.insert("destination_task_id".into(), json!(destination));
    data.insert("relay_status".into(), json!("relay_interrupted"));
    data.insert("detail".into(), json!(detail));
    AdapterEvent::Relayed {
        kind: EventKind::TaskFailed,
        message: "Remote relay interrupted by origin restart".into(),
        data,
        remote: None,
    }
}

/// The highest destination seq among a proxy task's mirrored events (0: none yet).
async fn last_mirrored_seq(reader: &StoreReader, task_id: &str) -> Result<u64, String> {
    const PAGE: u32 = 1000;
    let (mut after, mut last) = (0, 0);
    loop {
        let events = reader.events(task_id, after, PAGE).await.map_err(|e| e.to_string())?;
        for e in &events {
            if let Some(seq) = e.data.get("remote_event_seq").and_then(Value::as_u64) {
                last = last.max(seq);
            }
        }
        match events.last() {
            Some(e) if events.len() == PAGE as usize => after = e.seq,
            _ => return Ok(last),
        }
    }
}

/// `POST <peer>/v1/node/tasks` → the acceptance, or why not (the peer's typed error if it sent one).
async fn submit_task(client: &Client, req: &TaskSubmitRequest) -> Result<TaskAccepted, String> {
    let url = format!("{}/v1/node/tasks", client.link.base_url);
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
        return Err(typed_error(&url, status, &body));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: unreadable acceptance: {e}"))
}

/// How following a destination's stream ended.
#[derive(Debug)]
enum StreamEnd {
    /// A terminal frame was reported.
    Terminal,
    /// The destination does not know the task (404).
    Gone(String),
    /// The stream broke and could not be re-opened within the [`Reconnect`] budget, or sent
    /// something unreadable.
    Broken(String),
}

/// Why one open of the stream ended without a terminal frame.
enum StreamFault {
    /// Worth re-opening: a closed stream, a refused connection, a 5xx.
    Transient(String),
    /// The destination does not know the task.
    Gone(String),
    /// Re-opening would read the same thing again (unreadable frame, oversize line, 4xx).
    Fatal(String),
}

/// Follows the destination's event stream from after destination seq `after`, reporting each
/// frame once as it arrives, re-opening it with `Last-Event-ID` when it ends early. `held`:
/// quiet events of this relay not yet reported (they go with the first mirrored write).
async fn follow(
    d: &Dispatch,
    client: &Client,
    destination: &str,
    mut after: u64,
    mut held: Vec<AdapterEvent>,
) -> StreamEnd {
    let mut budget = Reconnect::default();
    loop {
        let before = after;
        let outcome = mirror_once(d, client, destination, &mut after, &mut held).await;
        if !held.is_empty() {
            // The stream did not open: what was held is reported before anything else.
            d.report(std::mem::take(&mut held));
        }
        let fault = match outcome {
            Ok(()) => return StreamEnd::Terminal,
            Err(StreamFault::Gone(detail)) => return StreamEnd::Gone(detail),
            Err(StreamFault::Fatal(detail)) => return StreamEnd::Broken(detail),
            Err(StreamFault::Transient(detail)) => detail,
        };
        if after > before {
            budget = Reconnect::default();
        }
        let Some(delay) = budget.next_delay() else {
            return StreamEnd::Broken(format!("{fault} (gave up after {} re-opens)", Reconnect::ATTEMPTS));
        };
        tracing::debug!(task_id = %d.task_id, destination_task_id = %destination, after_seq = after, %fault, delay_ms = delay.as_millis() as u64, "re-opening the destination's event stream");
        tokio::time::sleep(delay).await;
    }
}

/// One open of the destination's stream: reports frames past `after` (advancing it) until a
/// terminal one (`Ok`) or the stream ends. `pending` (quiet events still unreported) is taken
/// into the first write once the stream is open, or reported if opening takes longer than
/// [`QUIET_HOLD`].
async fn mirror_once(
    d: &Dispatch,
    client: &Client,
    destination: &str,
    after: &mut u64,
    pending: &mut Vec<AdapterEvent>,
) -> Result<(), StreamFault> {
    let url = format!("{}/v1/node/tasks/{destination}/events", client.link.base_url);
    let mut parsed = reqwest::Url::parse(&url).map_err(|e| StreamFault::Fatal(format!("{url}: {e}")))?;
    parsed.query_pairs_mut().append_pair("origin_proxy_task_id", &d.task_id);
    let mut request = client.request(reqwest::Method::GET, parsed, Vec::new());
    if *after > 0 {
        request = request.header("last-event-id", after.to_string());
    }
    let opening = tokio::time::Instant::now();
    let send = tokio::time::timeout(STREAM_OPEN_TIMEOUT, request.send());
    tokio::pin!(send);
    let opened = match tokio::time::timeout(QUIET_HOLD, &mut send).await {
        Ok(opened) => opened,
        Err(_) => {
            if !pending.is_empty() {
                d.report(std::mem::take(pending));
            }
            send.await
        }
    };
    let opened = opened
        .map_err(|_| StreamFault::Transient(format!("{url}: no answer within {} s", STREAM_OPEN_TIMEOUT.as_secs())))?
        .map_err(|e| StreamFault::Transient(format!("{url}: {e}")))?;
    let status = opened.status();
    if status != reqwest::StatusCode::OK {
        let body = opened.bytes().await.unwrap_or_default();
        let detail = typed_error(&url, status, &body);
        return Err(match status {
            reqwest::StatusCode::NOT_FOUND => StreamFault::Gone(detail),
            s if s.is_server_error() || s == reqwest::StatusCode::TOO_MANY_REQUESTS => StreamFault::Transient(detail),
            _ => StreamFault::Fatal(detail),
        });
    }
    let mut body = opened.bytes_stream().fuse();
    let mut lines = SseLines::default();
    // Frames that cannot move the proxy, waiting (briefly) to share the next frame's write.
    let mut held: Vec<AdapterEvent> = std::mem::take(pending);
    // What was pending has waited since the open began: [`QUIET_HOLD`] in all, not twice.
    let mut hold_for = QUIET_HOLD.saturating_sub(opening.elapsed());
    loop {
        let first = if held.is_empty() {
            hold_for = QUIET_HOLD;
            body.next().await
        } else {
            let wait = std::mem::replace(&mut hold_for, QUIET_HOLD);
            match tokio::time::timeout(wait, body.next()).await {
                Ok(chunk) => chunk,
                Err(_) => {
                    d.report(std::mem::take(&mut held));
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        // Every frame already received goes to the task in one report, so the destination's
        // events written in one transaction are mirrored in one too.
        let mut batch = std::mem::take(&mut held);
        let mut next = Some(first);
        let mut outcome = None;
        while let Some(chunk) = next.take() {
            let taken = chunk
                .map_err(|e| StreamFault::Transient(format!("{url}: {e}")))
                .and_then(|bytes| mirror_chunk(&bytes, &url, &mut lines, after, &mut batch));
            match taken {
                Ok(false) => next = body.next().now_or_never().flatten(),
                Ok(true) => outcome = Some(Ok(())),
                Err(fault) => outcome = Some(Err(fault)),
            }
        }
        if outcome.is_none() && !batch.iter().any(moves_the_proxy) {
            held = batch;
            continue;
        }
        d.report(batch);
        if let Some(outcome) = outcome {
            return outcome;
        }
    }
    d.report(held);
    Err(StreamFault::Transient("the peer closed the event stream before the task ended".into()))
}

/// Whether a mirrored event can change the proxy's status once the destination accepted the
/// task (it is `dispatching` then): the destination's creation, launch and dispatch events
/// cannot, so they may wait for the next frame's durable write. Pure.
pub fn moves_the_proxy(event: &AdapterEvent) -> bool {
    let quiet = [
        EventKind::TaskCreated,
        EventKind::TaskRouted,
        EventKind::RuntimePendingLaunch,
        EventKind::RuntimeLaunching,
        EventKind::RuntimeReady,
        EventKind::TaskDispatching,
        EventKind::RuntimeHealth,
    ];
    !matches!(event, AdapterEvent::Relayed { kind, .. } if quiet.contains(kind))
}

/// Turns one chunk of the stream into mirrored events (appended to `batch`, frames past
/// `after` only, advancing it); `true` once a terminal frame was taken (the rest is ignored).
fn mirror_chunk(
    chunk: &[u8],
    url: &str,
    lines: &mut SseLines,
    after: &mut u64,
    batch: &mut Vec<AdapterEvent>,
) -> Result<bool, StreamFault> {
    for data in lines.push(chunk).map_err(StreamFault::Fatal)? {
        let frame: TaskEventFrame =
            serde_json::from_str(&data).map_err(|e| StreamFault::Fatal(format!("{url}: unreadable frame: {e}")))?;
        // A destination that ignores `Last-Event-ID` (a Go node) replays what was mirrored.
        if frame.seq <= *after {
            continue;
        }
        *after = frame.seq;
        let Some((event, terminal)) = mirrored(&frame) else { continue };
        batch.push(event);
        if terminal {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The bounded budget of stream re-opens without progress: exponential backoff from
/// [`Reconnect::FIRST`], doubling, [`Reconnect::ATTEMPTS`] times (a stream that delivers frames
/// starts a fresh budget). Pure.
#[derive(Debug, Default)]
pub struct Reconnect {
    /// Re-opens used since the last progress.
    used: u32,
}

impl Reconnect {
    /// Re-opens allowed without progress.
    pub const ATTEMPTS: u32 = 5;
    /// The first delay (then 2×, 4×…: 0.25 + 0.5 + 1 + 2 + 4 ≈ 7.75 s in all).
    pub const FIRST: Duration = Duration::from_millis(250);

    /// The delay before the next re-open, `None` once the budget is spent.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.used >= Self::ATTEMPTS {
            return None;
        }
        let delay = Self::FIRST * 2u32.pow(self.used);
        self.used += 1;
        Some(delay)
    }
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
    fn reconnect_backs_off_exponentially_then_gives_up() {
        let mut budget = Reconnect::default();
        let delays: Vec<u64> = std::iter::from_fn(|| budget.next_delay()).map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, vec![250, 500, 1000, 2000, 4000]);
        assert_eq!(budget.next_delay(), None);
    }

    #[test]
    fn only_events_past_dispatching_move_the_proxy() {
        let relayed =
            |kind| AdapterEvent::Relayed { kind, message: String::new(), data: JsonObject::new(), remote: None };
        let cases = [
            (EventKind::TaskCreated, false),
            (EventKind::RuntimeReady, false),
            (EventKind::TaskDispatching, false),
            (EventKind::TaskRunning, true),
            (EventKind::TaskAwaitingInput, true),
            (EventKind::TaskCompleted, true),
            (EventKind::TaskCancelRequested, true),
        ];
        for (kind, moves) in cases {
            assert_eq!(moves_the_proxy(&relayed(kind)), moves, "{kind}");
        }
    }

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
