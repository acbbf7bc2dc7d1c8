//! SSE fan-out: the hub actor and one subscriber actor per connection.
//!
//! Ordering guarantee (the Go node lost and duplicated events here, contract §13.2 items 1–2):
//! a subscriber registers with the hub *before* it reads history, and task actors publish an
//! event only after it is durable. So every event is either already in storage when the replay
//! reads it, or reaches the subscriber live afterwards; the subscriber forwards only
//! `seq > last_sent`, so nothing is sent twice and nothing is skipped.
//!
//! Back-pressure: the subscriber writes into a bounded channel drained by the HTTP response.
//! When it is full (slow client) the subscriber stops forwarding live events and a catch-up task
//! re-reads the missing range from storage, in order, waiting on the client as long as needed.
//! Neither the hub nor the task actors ever wait on a client.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::{broadcast, mpsc};

use crate::model::TaskEvent;
use crate::storage::StoreReader;
use crate::supervision::{ASK_TIMEOUT, ask};

/// Capacity of the channel between a subscriber actor and its HTTP response.
pub const SINK_CAPACITY: usize = 64;
/// Events read from storage per catch-up query.
const CATCH_UP_PAGE: u32 = 256;
/// Events of every task buffered for each watcher ([`SseHubMsg::Watch`]); a watcher further
/// behind than this is told how many it missed (it re-reads what it shows).
pub const WATCH_CAPACITY: usize = 1024;

/// Messages of the SSE hub.
pub enum SseHubMsg {
    /// Register a subscriber for a task's live events; replies once registered.
    Subscribe { task_id: String, subscriber: ActorRef<SubscriberMsg>, reply: RpcReplyPort<()> },
    /// Durable events of a task, in seq order.
    Publish { task_id: String, events: Vec<Arc<TaskEvent>> },
    /// Number of connected subscribers.
    Count(RpcReplyPort<usize>),
    /// Watch every task's durable events from now on (no history): the task list's live view.
    /// The receiver lags (never blocks the hub) when its reader is slow.
    Watch(RpcReplyPort<broadcast::Receiver<Arc<TaskEvent>>>),
    /// Number of open watchers.
    WatcherCount(RpcReplyPort<usize>),
}

/// State of the SSE hub.
pub struct SseHubState {
    /// Subscribers by task id.
    by_task: HashMap<String, Vec<ActorRef<SubscriberMsg>>>,
    /// Task id of each subscriber, to drop it when it stops.
    by_actor: HashMap<ActorId, String>,
    /// Every published event, for watchers of all tasks: a broadcast channel, so a slow
    /// watcher loses the oldest events (and is told) instead of holding up the hub.
    all: broadcast::Sender<Arc<TaskEvent>>,
}

/// The SSE hub: parent of every subscriber actor.
pub struct SseHub;

impl Actor for SseHub {
    type Msg = SseHubMsg;
    type State = SseHubState;
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<SseHubMsg>, _: ()) -> Result<SseHubState, ActorProcessingErr> {
        let (all, _) = broadcast::channel(WATCH_CAPACITY);
        Ok(SseHubState { by_task: HashMap::new(), by_actor: HashMap::new(), all })
    }

    async fn handle(
        &self,
        _myself: ActorRef<SseHubMsg>,
        msg: SseHubMsg,
        state: &mut SseHubState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SseHubMsg::Subscribe { task_id, subscriber, reply } => {
                state.by_actor.insert(subscriber.get_id(), task_id.clone());
                metrics::gauge!(crate::telemetry::SSE_SUBSCRIBERS).set(state.by_actor.len() as f64);
                state.by_task.entry(task_id).or_default().push(subscriber);
                let _ = reply.send(());
            }
            SseHubMsg::Publish { task_id, events } => {
                if state.all.receiver_count() > 0 {
                    for event in &events {
                        // Never waits: a lagging watcher loses its oldest events.
                        let _ = state.all.send(event.clone());
                    }
                }
                if let Some(subs) = state.by_task.get(&task_id) {
                    for s in subs {
                        // A mailbox enqueue: never waits on the client.
                        let _ = s.cast(SubscriberMsg::Live(events.clone()));
                    }
                }
            }
            SseHubMsg::Count(reply) => {
                let _ = reply.send(state.by_actor.len());
            }
            SseHubMsg::Watch(reply) => {
                let _ = reply.send(state.all.subscribe());
            }
            SseHubMsg::WatcherCount(reply) => {
                let _ = reply.send(state.all.receiver_count());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SseHubMsg>,
        evt: SupervisionEvent,
        state: &mut SseHubState,
    ) -> Result<(), ActorProcessingErr> {
        // Subscribers are temporary children: never restarted (the client reconnects with
        // Last-Event-ID), only forgotten.
        let (cell, failure) = match evt {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            _ => return Ok(()),
        };
        if let Some(task_id) = state.by_actor.remove(&cell.get_id()) {
            metrics::gauge!(crate::telemetry::SSE_SUBSCRIBERS).set(state.by_actor.len() as f64);
            if let Some(subs) = state.by_task.get_mut(&task_id) {
                subs.retain(|s| s.get_id() != cell.get_id());
                if subs.is_empty() {
                    state.by_task.remove(&task_id);
                }
            }
            match failure {
                Some(error) => {
                    tracing::warn!(actor_kind = "sse_subscriber", task_id = %task_id, %error, "subscriber failed; stream closed")
                }
                None => tracing::debug!(actor_kind = "sse_subscriber", task_id = %task_id, "subscriber stopped"),
            }
        }
        Ok(())
    }
}

/// Messages of a subscriber actor.
pub enum SubscriberMsg {
    /// Live events from the hub.
    Live(Vec<Arc<TaskEvent>>),
    /// A catch-up from storage ended.
    CaughtUp { last_sent: u64, terminal: bool, client_gone: bool },
}

/// Arguments of a subscriber actor.
pub struct SubscriberArgs {
    pub task_id: String,
    /// Send only events with `seq > after` (from `Last-Event-ID` or `?after=`).
    pub after: u64,
    /// Where frames go (drained by the HTTP response).
    pub sink: mpsc::Sender<Arc<TaskEvent>>,
    pub reader: StoreReader,
    pub hub: ActorRef<SseHubMsg>,
}

/// State of a subscriber actor.
pub struct SubscriberState {
    task_id: String,
    /// Seq of the last event handed to the client.
    last_sent: u64,
    /// Highest seq heard of live; if above `last_sent` after a catch-up, catch up again.
    latest_seen: u64,
    /// A catch-up task is running; live events are only noted meanwhile.
    catching_up: bool,
    /// A terminal event was heard live: nothing follows it, so once everything up to
    /// `latest_seen` is sent (or was before the client's resume point), the stream ends.
    terminal_heard: bool,
    /// The HTTP response's channel.
    sink: mpsc::Sender<Arc<TaskEvent>>,
    reader: StoreReader,
}

/// One SSE connection.
pub struct Subscriber;

fn start_catch_up(myself: &ActorRef<SubscriberMsg>, state: &mut SubscriberState) {
    state.catching_up = true;
    let (me, reader, sink, task_id, from) =
        (myself.clone(), state.reader.clone(), state.sink.clone(), state.task_id.clone(), state.last_sent);
    tokio::spawn(async move {
        let mut last_sent = from;
        let mut terminal = false;
        let mut client_gone = false;
        'pages: loop {
            let page = match reader.events(&task_id, last_sent, CATCH_UP_PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(actor_kind = "sse_subscriber", task_id = %task_id, error = %e, "catch-up read failed; closing stream");
                    client_gone = true;
                    break;
                }
            };
            let full_page = page.len() as u32 == CATCH_UP_PAGE;
            for event in page {
                let seq = event.seq;
                terminal = event.state.is_terminal();
                if sink.send(Arc::new(event)).await.is_err() {
                    client_gone = true;
                    break 'pages;
                }
                // A terminal event ends the stream only as the task's last one: an operator's
                // retry may have appended a new attempt after it.
                last_sent = seq;
            }
            if !full_page {
                break;
            }
        }
        if !terminal && !client_gone && last_sent == from {
            // Nothing new: the task may have ended before `after` (replay from a terminal seq).
            if let Ok(Some(stored)) = reader.task(&task_id).await {
                terminal = stored.task.status.is_terminal() && stored.last_seq <= last_sent;
            }
        }
        let _ = me.cast(SubscriberMsg::CaughtUp { last_sent, terminal, client_gone });
    });
}

impl Actor for Subscriber {
    type Msg = SubscriberMsg;
    type State = SubscriberState;
    type Arguments = SubscriberArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SubscriberMsg>,
        args: SubscriberArgs,
    ) -> Result<SubscriberState, ActorProcessingErr> {
        // Registered before the first storage read: see the module docs.
        let (task_id, subscriber) = (args.task_id.clone(), myself.clone());
        ask(&args.hub, "sse hub", ASK_TIMEOUT, |reply| SseHubMsg::Subscribe { task_id, subscriber, reply }).await?;
        Ok(SubscriberState {
            task_id: args.task_id,
            last_sent: args.after,
            latest_seen: args.after,
            catching_up: false,
            terminal_heard: false,
            sink: args.sink,
            reader: args.reader,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SubscriberMsg>,
        state: &mut SubscriberState,
    ) -> Result<(), ActorProcessingErr> {
        start_catch_up(&myself, state);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SubscriberMsg>,
        msg: SubscriberMsg,
        state: &mut SubscriberState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SubscriberMsg::Live(events) => {
                if let Some(last) = events.last() {
                    state.latest_seen = state.latest_seen.max(last.seq);
                }
                state.terminal_heard |= events.iter().any(|e| e.state.is_terminal());
                if state.catching_up {
                    return Ok(());
                }
                for event in events {
                    if event.seq <= state.last_sent {
                        // Resumed past it (`Last-Event-ID` at or beyond the end): a terminal
                        // event ends the stream even though it is not sent again.
                        if event.state.is_terminal() {
                            myself.stop(Some("resumed past the terminal event".into()));
                            return Ok(());
                        }
                        continue;
                    }
                    if event.seq != state.last_sent + 1 {
                        // A gap can only mean we missed something: storage has it.
                        start_catch_up(&myself, state);
                        return Ok(());
                    }
                    let (seq, terminal) = (event.seq, event.state.is_terminal());
                    match state.sink.try_send(event) {
                        Ok(()) => {
                            state.last_sent = seq;
                            if terminal {
                                myself.stop(Some("terminal event sent".into()));
                                return Ok(());
                            }
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            metrics::counter!(crate::telemetry::SSE_LAGGED).increment(1);
                            start_catch_up(&myself, state);
                            return Ok(());
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            myself.stop(Some("client disconnected".into()));
                            return Ok(());
                        }
                    }
                }
            }
            SubscriberMsg::CaughtUp { last_sent, terminal, client_gone } => {
                state.catching_up = false;
                state.last_sent = state.last_sent.max(last_sent);
                if client_gone {
                    myself.stop(Some("client disconnected".into()));
                } else if terminal || (state.terminal_heard && state.latest_seen <= state.last_sent) {
                    myself.stop(Some("terminal event sent".into()));
                } else if state.latest_seen > state.last_sent {
                    start_catch_up(&myself, state);
                }
            }
        }
        Ok(())
    }
}
