//! The durable per-identity message queue of the Aether gateway (`migrations/0014_aether_messages.sql`).
//!
//! A message routed to an identity topic ([`topics::durable`]) whose session is not live is
//! appended to the queue (also for an identity that never connected: upstream replays the
//! retained log to a brand-new consumer). When a session for the identity opens, it first gets
//! the queued messages, in publish order, then live ones; a row is deleted once handed to the
//! session's outbound channel (upstream commits its offset at the same point), so nothing is
//! delivered twice. The decisions are the pure [`Mailboxes`] (one [`Phase`] per identity:
//! `Offline` → `Replaying{buffer}` → `Live`); the presence actor owns them and does the IO:
//!
//! * **Appends** are batched by the presence actor (the first append into an empty batch casts
//!   `Flush` to self, so one write absorbs every send already in the mailbox) and written as one
//!   `WriteOp::AetherEnqueue` through the storage actor, which group-commits further; one batch
//!   is in flight at a time, so the sender never waits and batches grow with load.
//! * **Replay** runs in a spawned reader task per session ([`spawn_reader`]): it reads the queue
//!   in pages of [`REPLAY_PAGE`], hands each message to the session's outbound channel while at
//!   least [`REPLAY_HEADROOM`] slots stay free (else it waits: a backlog never overflows the
//!   channel and never kills the session), deletes the page through the storage actor (awaiting
//!   the commit, so a later reader never sees it), and casts its progress back. At the end it
//!   asks presence what next; messages that arrived meanwhile wait in the phase's buffer and are
//!   handed over the same way, and only then does the phase turn `Live`. Everything the reader
//!   casts carries its session generation: a stale reader is told `Done`. A new session's reader
//!   starts only once the previous one ended and every append for the identity committed.
//! * **Returns**: a stream can end with frames still in its channel (the client closed it with
//!   messages in flight). Its [`Outbox`], dropped, casts them back (`Unsent`); they are older
//!   than anything still queued for the identity, so they are written to the front of its queue
//!   (`WriteOp::AetherEnqueueFront`, seqs below every row's) — readers read every page from the
//!   front and delete exactly the seqs they handed — or handed to a newer live session at once.
//! * **Bounds**: rows older than [`RETENTION`] are never replayed and are swept every
//!   [`SWEEP_INTERVAL`]; an identity holding [`QUEUE_MAX_MESSAGES`] messages or
//!   [`QUEUE_MAX_BYTES`] bytes refuses further sends with `ERR_QUOTA_001` to the sender.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::{mpsc, oneshot};

use super::connection::{ConnectionMsg, ErrorCode, Incoming, Outbound, SessionStore};
use super::presence::PresenceMsg;
use crate::storage::{QueuedMessage, StorageMsg, StoreReader, WriteOp};
use crate::supervision::{ASK_TIMEOUT, Slot};

/// Most messages kept for one identity; past it a send is refused (`ERR_QUOTA_001`).
pub const QUEUE_MAX_MESSAGES: u64 = 10_000;
/// Most payload bytes kept for one identity; past it a send is refused (`ERR_QUOTA_001`).
pub const QUEUE_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// How long a queued message is kept (upstream's `AETHER_MESSAGE_RETENTION_TTL` default).
pub const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// How often rows past the retention are deleted (replay never reads them in between).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Messages one replay read fetches (and one delete removes).
pub const REPLAY_PAGE: u32 = 128;
/// Messages held in memory for a replaying session; past it they go to the queue instead.
pub const REPLAY_BUFFER_MAX: usize = 1024;
/// Outbound slots a replay leaves free, for the session's replies (KV, errors) meanwhile.
pub const REPLAY_HEADROOM: usize = 64;
/// How long a replay waits for the client to read before it looks again.
const REPLAY_PACE: Duration = Duration::from_millis(5);

/// A session's generation (the presence actor numbers sessions): fences stale readers.
pub type SessionGen = u64;

/// Where an identity's messages go.
#[derive(Debug)]
pub enum Phase<R> {
    /// No live session: messages are appended to the queue.
    Offline,
    /// A session opened and its reader hands it the queue. Messages arriving meanwhile wait in
    /// `buffer` (they come after every queued one); past [`REPLAY_BUFFER_MAX`] the buffer is
    /// appended to the queue and so is every later message (`spilled`), which the reader then
    /// reads too.
    Replaying {
        session: SessionGen,
        buffer: VecDeque<Incoming>,
        /// Payload bytes in `buffer` (for the quota).
        buffered_bytes: u64,
        spilled: bool,
        /// The reader's "what next?", held until every append of the identity committed.
        parked: Option<R>,
    },
    /// The queue was handed over: messages go straight to the session.
    Live { session: SessionGen },
}

/// One identity's queue bookkeeping.
#[derive(Debug)]
struct Mailbox<R> {
    phase: Phase<R>,
    /// Messages in the queue (committed or being written), not yet handed to a session.
    queued: u64,
    /// Their payload bytes.
    queued_bytes: u64,
    /// Appends not yet committed: a reader must not read before they are (it would miss them).
    uncommitted: u64,
    /// The session whose reader task is running (its deletes may still be in flight, so the
    /// next session's reader waits for it to end).
    reader: Option<SessionGen>,
    /// Messages were appended since the reader last started reading: it must read again.
    dirty: bool,
}

impl<R> Mailbox<R> {
    fn new() -> Self {
        Mailbox { phase: Phase::Offline, queued: 0, queued_bytes: 0, uncommitted: 0, reader: None, dirty: false }
    }

    fn append(&mut self, messages: &[Incoming]) {
        let bytes: u64 = messages.iter().map(|m| m.payload.len() as u64).sum();
        let n = messages.len() as u64;
        self.queued += n;
        self.queued_bytes += bytes;
        self.uncommitted += n;
        self.dirty = true;
    }

    fn forget(&mut self, n: u64, bytes: u64) {
        self.queued = self.queued.saturating_sub(n);
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
    }

    /// Nothing to remember: an absent mailbox means "nothing queued, nothing running".
    fn idle(&self) -> bool {
        matches!(self.phase, Phase::Offline | Phase::Live { .. })
            && self.queued == 0
            && self.uncommitted == 0
            && self.reader.is_none()
    }
}

/// What becomes of a routed message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// To the live session now.
    Deliver(Incoming),
    /// Append these to the queue, in this order (the buffer of a spilling replay, then this one).
    Append(Vec<Incoming>),
    /// Held in a replaying session's buffer.
    Held,
    /// The identity's queue is full: the sender is told.
    Refused(QuotaExceeded),
}

/// What becomes of messages a closing stream was handed but did not write.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Returned {
    /// To the front of the queue, in this order.
    pub front: Vec<Incoming>,
    /// Appended behind (a replay buffer of the ended session).
    pub back: Vec<Incoming>,
    /// To the identity's newer live session now.
    pub deliver: Vec<Incoming>,
}

/// A send refused because the target's queue is full (`ERR_QUOTA_001`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "ERR_QUOTA_001: {identity} is not connected and already has {messages} messages ({bytes} bytes) kept for it; at most {max_messages} messages or {max_bytes} bytes; retry after it connected"
)]
pub struct QuotaExceeded {
    pub identity: String,
    pub messages: u64,
    pub bytes: u64,
    pub max_messages: u64,
    pub max_bytes: u64,
}

/// What a reader does after it read the queue to its end.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayNext {
    /// More was appended: read again.
    ReadMore,
    /// Hand these (they arrived during the replay), then ask again.
    Deliver(Vec<Incoming>),
    /// The session is live (or the reader is stale): stop.
    Done,
}

/// What the presence actor does after an event.
#[derive(Debug)]
pub struct Step<R> {
    /// Start a reader for this session.
    pub spawn_reader: Option<SessionGen>,
    /// Answer a reader.
    pub answer: Option<(R, ReplayNext)>,
}

impl<R> Default for Step<R> {
    fn default() -> Self {
        Step { spawn_reader: None, answer: None }
    }
}

/// Every identity's queue bookkeeping. Pure: the presence actor feeds it events and does the IO
/// it asks for. `R` is how a reader is answered (a oneshot sender in the actor).
#[derive(Debug)]
pub struct Mailboxes<R> {
    /// By identity string; absent = nothing queued, no reader, no replay.
    boxes: HashMap<String, Mailbox<R>>,
    /// [`QUEUE_MAX_MESSAGES`] (smaller in tests).
    max_messages: u64,
    /// [`QUEUE_MAX_BYTES`] (smaller in tests).
    max_bytes: u64,
}

impl<R> Default for Mailboxes<R> {
    fn default() -> Self {
        Mailboxes::with_limits(QUEUE_MAX_MESSAGES, QUEUE_MAX_BYTES)
    }
}

impl<R> Mailboxes<R> {
    pub fn with_limits(max_messages: u64, max_bytes: u64) -> Self {
        Mailboxes { boxes: HashMap::new(), max_messages, max_bytes }
    }

    /// Records what the queue held at start-up (identity, messages, bytes).
    pub fn load(&mut self, backlog: impl IntoIterator<Item = (String, u64, u64)>) {
        for (identity, n, bytes) in backlog {
            let m = self.boxes.entry(identity).or_insert_with(Mailbox::new);
            m.queued += n;
            m.queued_bytes += bytes;
        }
    }

    /// A message for `identity`, whose session is `live` (or not).
    pub fn route(&mut self, identity: &str, live: bool, message: Incoming) -> Verdict {
        let (max_messages, max_bytes) = (self.max_messages, self.max_bytes);
        if live && !self.boxes.contains_key(identity) {
            return Verdict::Deliver(message);
        }
        let m = self.boxes.entry(identity.to_owned()).or_insert_with(Mailbox::new);
        let (held, held_bytes) = match &m.phase {
            Phase::Live { .. } => return Verdict::Deliver(message),
            Phase::Replaying { buffer, buffered_bytes, .. } => (buffer.len() as u64, *buffered_bytes),
            Phase::Offline => (0, 0),
        };
        let (messages, bytes) = (m.queued + held, m.queued_bytes + held_bytes);
        if messages >= max_messages || bytes + message.payload.len() as u64 > max_bytes {
            let refused = QuotaExceeded { identity: identity.to_owned(), messages, bytes, max_messages, max_bytes };
            if m.idle() {
                self.boxes.remove(identity);
            }
            return Verdict::Refused(refused);
        }
        let spill = match &mut m.phase {
            Phase::Replaying { buffer, buffered_bytes, spilled, .. } if !*spilled => {
                if buffer.len() < REPLAY_BUFFER_MAX {
                    *buffered_bytes += message.payload.len() as u64;
                    buffer.push_back(message);
                    return Verdict::Held;
                }
                *spilled = true;
                *buffered_bytes = 0;
                let mut all: Vec<Incoming> = buffer.drain(..).collect();
                all.push(message);
                all
            }
            _ => vec![message],
        };
        m.append(&spill);
        Verdict::Append(spill)
    }

    /// A session opened for `identity`: its replay starts (or waits for its turn).
    pub fn open(&mut self, identity: &str, session: SessionGen) -> Step<R> {
        let m = self.boxes.entry(identity.to_owned()).or_insert_with(Mailbox::new);
        let previous = std::mem::replace(&mut m.phase, Phase::Offline);
        let mut step = Step::default();
        // A takeover in the middle of a replay keeps what the old session had not been handed.
        let (buffer, buffered_bytes, spilled) = match previous {
            Phase::Replaying { buffer, buffered_bytes, spilled, parked, .. } => {
                step.answer = parked.map(|r| (r, ReplayNext::Done));
                (buffer, buffered_bytes, spilled)
            }
            Phase::Offline | Phase::Live { .. } => (VecDeque::new(), 0, false),
        };
        m.phase = Phase::Replaying { session, buffer, buffered_bytes, spilled, parked: None };
        m.dirty = true;
        let next = self.step(identity);
        Step { spawn_reader: next.spawn_reader, answer: step.answer.or(next.answer) }
    }

    /// The session `session` of `identity` ended: what it had not been handed goes to the queue
    /// (append these).
    pub fn closed(&mut self, identity: &str, session: SessionGen) -> Vec<Incoming> {
        let Some(m) = self.boxes.get_mut(identity) else { return Vec::new() };
        let current = match &m.phase {
            Phase::Replaying { session: s, .. } | Phase::Live { session: s } => *s == session,
            Phase::Offline => false,
        };
        if !current {
            return Vec::new();
        }
        let spill = match std::mem::replace(&mut m.phase, Phase::Offline) {
            Phase::Replaying { buffer, .. } => buffer.into_iter().collect(),
            _ => Vec::new(),
        };
        if !spill.is_empty() {
            m.append(&spill);
        }
        if m.idle() {
            self.boxes.remove(identity);
        }
        spill
    }

    /// The live session `session` could not take `message` (its stream is gone, or full): the
    /// session counts as closed from here on, and the message is kept like any other offline one.
    pub fn undelivered(&mut self, identity: &str, session: SessionGen, message: Incoming) -> Verdict {
        // Only a live phase delivers, and it holds no buffer: nothing to spill.
        let mut spill = self.closed(identity, session);
        match self.route(identity, false, message) {
            Verdict::Append(more) if !spill.is_empty() => {
                spill.extend(more);
                Verdict::Append(spill)
            }
            // A live phase of another session would deliver again: keep it rather than loop.
            Verdict::Deliver(message) => {
                let m = self.boxes.entry(identity.to_owned()).or_insert_with(Mailbox::new);
                m.phase = Phase::Offline;
                m.append(std::slice::from_ref(&message));
                Verdict::Append(vec![message])
            }
            other => other,
        }
    }

    /// The stream of `session` ended before writing `messages` it had been handed (a client
    /// that closed with frames in flight): they are older than anything still queued for the
    /// identity (what is queued was sent after them or not yet handed), so they go to the front
    /// of the queue; a newer live session gets them at once. `live` is the identity's live
    /// session now, if any.
    pub fn returned(
        &mut self,
        identity: &str,
        session: SessionGen,
        live: Option<SessionGen>,
        messages: Vec<Incoming>,
    ) -> Returned {
        if messages.is_empty() {
            return Returned::default();
        }
        // Still this session's (the stream ended before its connection actor): it counts as
        // closed from here on; a replay buffer it held is newer and goes behind.
        let back = self.closed(identity, session);
        let newer_live = live.is_some_and(|l| l != session);
        let handed_over = self.boxes.get(identity).is_none_or(|m| matches!(m.phase, Phase::Live { .. }));
        if newer_live && handed_over {
            return Returned { front: Vec::new(), back, deliver: messages };
        }
        // Offline, or a newer session replaying: its reader reads every page from the front.
        let m = self.boxes.entry(identity.to_owned()).or_insert_with(Mailbox::new);
        m.append(&messages);
        Returned { front: messages, back, deliver: Vec::new() }
    }

    /// The reader of `session` read the queue to its end and asks what next.
    pub fn drained(&mut self, identity: &str, session: SessionGen, reply: R) -> Step<R> {
        let current = self.boxes.get_mut(identity).and_then(|m| match &mut m.phase {
            Phase::Replaying { session: s, parked, .. } if *s == session && m.reader == Some(session) => Some(parked),
            _ => None,
        });
        match current {
            Some(parked) => {
                *parked = Some(reply);
                self.step(identity)
            }
            None => Step { spawn_reader: None, answer: Some((reply, ReplayNext::Done)) },
        }
    }

    /// The reader handed (and deleted) `n` queued messages of `bytes`.
    pub fn delivered(&mut self, identity: &str, n: u64, bytes: u64) {
        if let Some(m) = self.boxes.get_mut(identity) {
            m.forget(n, bytes);
        }
    }

    /// Rows of `identity` past the retention were deleted.
    pub fn expired(&mut self, identity: &str, n: u64, bytes: u64) {
        self.delivered(identity, n, bytes);
        if self.boxes.get(identity).is_some_and(Mailbox::idle) {
            self.boxes.remove(identity);
        }
    }

    /// An append batch's `n` messages (`bytes`) of `identity` committed (`ok`) or were lost.
    pub fn committed(&mut self, identity: &str, n: u64, bytes: u64, ok: bool) -> Step<R> {
        if let Some(m) = self.boxes.get_mut(identity) {
            m.uncommitted = m.uncommitted.saturating_sub(n);
            if !ok {
                m.forget(n, bytes);
            }
        }
        self.step(identity)
    }

    /// The reader of `session` ended; `failed` when it could not finish (storage). A failed
    /// reader of the current replay ends the replay: its buffer is returned to append (the
    /// session is then to be closed, and the client reconnects).
    pub fn reader_ended(
        &mut self,
        identity: &str,
        session: SessionGen,
        failed: bool,
    ) -> (Step<R>, Option<Vec<Incoming>>) {
        let Some(m) = self.boxes.get_mut(identity) else { return (Step::default(), None) };
        if m.reader == Some(session) {
            m.reader = None;
        }
        let mut spill = None;
        if failed && matches!(m.phase, Phase::Replaying { session: s, .. } if s == session) {
            spill = Some(self.closed(identity, session));
        }
        (self.step(identity), spill)
    }

    /// Whether `session` of `identity` is still replaying.
    pub fn replaying(&self, identity: &str, session: SessionGen) -> bool {
        self.boxes.get(identity).is_some_and(|m| matches!(m.phase, Phase::Replaying { session: s, .. } if s == session))
    }

    /// At shutdown: every replaying session's buffer (to append before the node stops).
    pub fn take_buffers(&mut self) -> Vec<(String, Vec<Incoming>)> {
        let mut out = Vec::new();
        for (identity, m) in &mut self.boxes {
            if let Phase::Replaying { buffer, buffered_bytes, .. } = &mut m.phase
                && !buffer.is_empty()
            {
                *buffered_bytes = 0;
                out.push((identity.clone(), buffer.drain(..).collect()));
            }
        }
        out
    }

    /// Identities with bookkeeping (tests, diagnostics).
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }

    /// Starts a reader or answers a parked one when their conditions hold; forgets an idle box.
    fn step(&mut self, identity: &str) -> Step<R> {
        let mut step = Step::default();
        let Some(m) = self.boxes.get_mut(identity) else { return step };
        if let Phase::Replaying { session, buffer, buffered_bytes, spilled, parked } = &mut m.phase {
            if m.reader.is_none() && m.uncommitted == 0 {
                m.reader = Some(*session);
                m.dirty = false;
                step.spawn_reader = Some(*session);
            } else if m.uncommitted == 0
                && let Some(reply) = parked.take()
            {
                let next = if m.dirty {
                    m.dirty = false;
                    ReplayNext::ReadMore
                } else if !buffer.is_empty() {
                    *buffered_bytes = 0;
                    ReplayNext::Deliver(buffer.drain(..).collect())
                } else {
                    *spilled = false;
                    let session = *session;
                    m.phase = Phase::Live { session };
                    ReplayNext::Done
                };
                step.answer = Some((reply, next));
            }
        }
        if m.idle() {
            self.boxes.remove(identity);
        }
        step
    }
}

/// The presence actor's messages about the queue.
pub enum QueueMsg {
    /// Write the batched appends (cast to self by the first append into an empty batch).
    Flush,
    /// An append batch committed (`ok`) or failed: per identity, messages and bytes.
    /// Per identity: messages, bytes, and whether they were stored (`false`: lost).
    Committed { counts: Vec<(String, u64, u64, bool)> },
    /// A reader handed and deleted `n` messages (`bytes`) of `identity`.
    Delivered { identity: String, n: u64, bytes: u64 },
    /// A reader read the queue to its end: what next?
    Drained { identity: String, session: SessionGen, reply: oneshot::Sender<ReplayNext> },
    /// A reader ended (`failure`: why it could not finish).
    ReaderEnded { identity: String, session: SessionGen, failure: Option<String> },
    /// The stream of `session` ended before writing these messages it had been handed
    /// (cast by its [`Outbox`] when dropped).
    Unsent { identity: String, session: SessionGen, messages: Vec<Incoming> },
    /// Time to sweep rows past the retention.
    Sweep,
    /// The sweep deleted these (per identity: messages, bytes).
    Swept(Vec<(String, u64, u64)>),
}

/// A live session as the presence actor knows it by identity (routes are one lookup).
pub struct LiveSession {
    pub connection: ActorRef<ConnectionMsg>,
    /// The session's generation (fences its reader).
    pub session: SessionGen,
    /// Its outbound channel, weakly (for its reader).
    pub outbound: mpsc::WeakSender<Outbound>,
}

/// What the queue's IO needs from the presence actor.
pub struct Ctx<'a> {
    /// Live sessions by identity.
    pub live: &'a HashMap<String, LiveSession>,
    pub store: &'a SessionStore,
    pub myself: &'a ActorRef<PresenceMsg>,
}

/// The presence actor's queue state: the pure bookkeeping and the append batch.
pub struct QueueState {
    /// Per identity: phase, counts, reader (the decisions).
    mailboxes: Mailboxes<oneshot::Sender<ReplayNext>>,
    /// Appends not yet handed to the storage actor, in publish order.
    pending: Vec<QueuedMessage>,
    /// Messages returned by closing streams, not yet put back at the front of their queues
    /// (written before `pending`, in the same batch).
    pending_front: Vec<QueuedMessage>,
    /// A `Flush` is in the mailbox already.
    flush_scheduled: bool,
    /// A batch is being written: the next waits for it (batches grow with load, and commits
    /// stay in publish order).
    in_flight: bool,
}

impl QueueState {
    /// With what the queue held at start-up.
    pub fn new(backlog: Vec<(String, u64, u64)>) -> Self {
        let mut mailboxes = Mailboxes::default();
        mailboxes.load(backlog);
        QueueState {
            mailboxes,
            pending: Vec::new(),
            pending_front: Vec::new(),
            flush_scheduled: false,
            in_flight: false,
        }
    }

    /// A message to the durable identity `key`: to its live session, into the queue, held for
    /// its replay, or refused to `from`.
    pub fn route(&mut self, key: &str, message: Incoming, from: &ActorRef<ConnectionMsg>, ctx: &Ctx<'_>) {
        let live = ctx.live.get(key);
        let verdict = self.mailboxes.route(key, live.is_some(), message);
        self.carry_out(key, verdict, live, Some(from), ctx);
    }

    fn carry_out(
        &mut self,
        key: &str,
        verdict: Verdict,
        live: Option<&LiveSession>,
        from: Option<&ActorRef<ConnectionMsg>>,
        ctx: &Ctx<'_>,
    ) {
        match verdict {
            // Handed to the session's channel here, not through its connection actor: whether it
            // was taken is known now, so a message to a session that just ended is kept, not lost.
            Verdict::Deliver(message) => {
                let Some(live) = live else { return };
                let refused = match live.outbound.upgrade() {
                    Some(tx) => match tx.try_send(Outbound::Kept(message)) {
                        Ok(()) => return,
                        Err(mpsc::error::TrySendError::Full(out)) => {
                            tracing::warn!(actor_kind = "aether_presence", identity = %key, "client is not reading its stream; session closed");
                            live.connection.stop(Some("client is not reading its stream".into()));
                            out
                        }
                        Err(mpsc::error::TrySendError::Closed(out)) => out,
                    },
                    None => Outbound::Kept(message),
                };
                if let Outbound::Kept(message) = refused {
                    let verdict = self.mailboxes.undelivered(key, live.session, message);
                    self.carry_out(key, verdict, None, from, ctx);
                }
            }
            Verdict::Append(messages) => self.append(key, messages, ctx.myself),
            Verdict::Held => {}
            Verdict::Refused(quota) => {
                tracing::info!(actor_kind = "aether_presence", identity = %key, messages = quota.messages, "queue full; send refused");
                if let Some(from) = from {
                    let _ =
                        from.cast(ConnectionMsg::SendRefused { code: ErrorCode::Quota, message: quota.to_string() });
                }
            }
        }
    }

    /// A session opened for the durable identity `key`.
    pub fn opened(&mut self, key: &str, session: SessionGen, ctx: &Ctx<'_>) {
        let step = self.mailboxes.open(key, session);
        self.apply(key, step, ctx);
    }

    /// The session `session` of `key` ended.
    pub fn closed(&mut self, key: &str, session: SessionGen, myself: &ActorRef<PresenceMsg>) {
        let spill = self.mailboxes.closed(key, session);
        self.append(key, spill, myself);
    }

    pub fn handle(&mut self, msg: QueueMsg, ctx: &Ctx<'_>) {
        match msg {
            QueueMsg::Flush => {
                self.flush_scheduled = false;
                self.flush(ctx);
            }
            QueueMsg::Committed { counts } => {
                self.in_flight = false;
                for (identity, n, bytes, ok) in counts {
                    let step = self.mailboxes.committed(&identity, n, bytes, ok);
                    self.apply(&identity, step, ctx);
                }
                self.flush(ctx);
            }
            QueueMsg::Delivered { identity, n, bytes } => self.mailboxes.delivered(&identity, n, bytes),
            QueueMsg::Drained { identity, session, reply } => {
                let step = self.mailboxes.drained(&identity, session, reply);
                self.apply(&identity, step, ctx);
            }
            QueueMsg::ReaderEnded { identity, session, failure } => {
                let (step, spill) = self.mailboxes.reader_ended(&identity, session, failure.is_some());
                if let Some(spill) = spill {
                    // The replay could not finish: the session ends (the client reconnects and
                    // replays again); what it was not handed stays queued.
                    self.append(&identity, spill, ctx.myself);
                    if let Some(live) = ctx.live.get(&identity).filter(|l| l.session == session) {
                        live.connection.stop(Some("replay of queued messages failed".into()));
                    }
                }
                self.apply(&identity, step, ctx);
            }
            QueueMsg::Unsent { identity, session, messages } => {
                let n = messages.len();
                let live = ctx.live.get(&identity);
                let returned = self.mailboxes.returned(&identity, session, live.map(|l| l.session), messages);
                tracing::info!(
                    actor_kind = "aether_presence", identity = %identity, messages = n,
                    redelivered = returned.deliver.len(), "stream ended with messages it had not written; kept"
                );
                if !returned.front.is_empty() {
                    let now = now_ms();
                    self.pending_front.extend(returned.front.into_iter().map(|m| queued(&identity, m, now)));
                    self.schedule_flush(ctx.myself);
                }
                self.append(&identity, returned.back, ctx.myself);
                for message in returned.deliver {
                    self.carry_out(&identity, Verdict::Deliver(message), live, None, ctx);
                }
            }
            QueueMsg::Sweep => {
                spawn_sweep(ctx.store.reader.clone(), ctx.store.storage.clone(), ctx.myself.clone());
            }
            QueueMsg::Swept(expired) => {
                for (identity, n, bytes) in expired {
                    tracing::info!(actor_kind = "aether_presence", identity = %identity, messages = n, "queued messages expired");
                    self.mailboxes.expired(&identity, n, bytes);
                }
                ctx.myself.send_after(SWEEP_INTERVAL, || PresenceMsg::Queue(QueueMsg::Sweep));
            }
        }
    }

    /// At shutdown: what replays still held, and every batched append, written now.
    pub async fn shutdown(&mut self, store: &SessionStore) {
        let now = now_ms();
        let front = std::mem::take(&mut self.pending_front);
        if !front.is_empty() {
            let n = front.len();
            if let Err(e) = write_queue(&store.storage, WriteOp::AetherEnqueueFront(front)).await {
                tracing::error!(actor_kind = "aether_presence", error = %e, messages = n, "queued messages lost at shutdown");
            }
        }
        let mut rows = std::mem::take(&mut self.pending);
        for (identity, held) in self.mailboxes.take_buffers() {
            rows.extend(held.into_iter().map(|m| queued(&identity, m, now)));
        }
        if rows.is_empty() {
            return;
        }
        let n = rows.len();
        match store.storage.ask(ASK_TIMEOUT, |r| StorageMsg::Write(WriteOp::AetherEnqueue(rows), r)).await {
            Ok(Ok(())) => {
                tracing::info!(actor_kind = "aether_presence", messages = n, "queued messages stored at shutdown")
            }
            Ok(Err(e)) => {
                tracing::error!(actor_kind = "aether_presence", error = %e, messages = n, "queued messages lost at shutdown")
            }
            Err(e) => {
                tracing::error!(actor_kind = "aether_presence", error = %e, messages = n, "queued messages lost at shutdown")
            }
        }
    }

    fn append(&mut self, key: &str, messages: Vec<Incoming>, myself: &ActorRef<PresenceMsg>) {
        if messages.is_empty() {
            return;
        }
        let now = now_ms();
        self.pending.extend(messages.into_iter().map(|m| queued(key, m, now)));
        self.schedule_flush(myself);
    }

    fn schedule_flush(&mut self, myself: &ActorRef<PresenceMsg>) {
        if !self.flush_scheduled && !self.in_flight {
            // Lands behind every send already in the mailbox: one batch absorbs them all.
            self.flush_scheduled = myself.cast(PresenceMsg::Queue(QueueMsg::Flush)).is_ok();
        }
    }

    fn flush(&mut self, ctx: &Ctx<'_>) {
        if self.in_flight || (self.pending.is_empty() && self.pending_front.is_empty()) {
            return;
        }
        self.in_flight = true;
        let batch = Batch { front: std::mem::take(&mut self.pending_front), back: std::mem::take(&mut self.pending) };
        spawn_flush(batch, ctx.store.storage.clone(), ctx.myself.clone());
    }

    fn apply(&mut self, key: &str, step: Step<oneshot::Sender<ReplayNext>>, ctx: &Ctx<'_>) {
        if let Some((reply, next)) = step.answer {
            // A reader that is gone already has nothing to be told.
            let _ = reply.send(next);
        }
        let Some(session) = step.spawn_reader else { return };
        match ctx.live.get(key).filter(|l| l.session == session) {
            Some(live) => spawn_reader(ReaderArgs {
                identity: key.to_owned(),
                session,
                outbound: live.outbound.clone(),
                reader: ctx.store.reader.clone(),
                storage: ctx.store.storage.clone(),
                presence: ctx.myself.clone(),
            }),
            None => {
                // The session is gone: the reader "ends" at once.
                let (step, spill) = self.mailboxes.reader_ended(key, session, false);
                if let Some(spill) = spill {
                    self.append(key, spill, ctx.myself);
                }
                self.apply(key, step, ctx);
            }
        }
    }
}

/// The receiving end of a session's outbound channel, which the binding writes to the stream.
/// A stream can end (the client closed it, the connection broke) with frames still in the
/// channel; dropped, the outbox hands a durable identity's messages among them back to the
/// presence actor, which puts them at the front of the identity's queue: a message the node
/// took is not lost to a stream that was closing when it was routed.
pub struct Outbox {
    rx: mpsc::Receiver<Outbound>,
    /// The identity whose session this is, and the session's generation (whose queue, and
    /// whether the session is still the live one, when the messages come back).
    identity: String,
    session: SessionGen,
    /// The presence actor as it is then (it may have been restarted meanwhile).
    presence: Arc<Slot<PresenceMsg>>,
}

impl Outbox {
    pub fn new(
        rx: mpsc::Receiver<Outbound>,
        identity: String,
        session: SessionGen,
        presence: Arc<Slot<PresenceMsg>>,
    ) -> Self {
        Outbox { rx, identity, session, presence }
    }

    /// The next frame to write; `None` once the session ended and everything was taken.
    pub async fn recv(&mut self) -> Option<Outbound> {
        self.rx.recv().await
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Closed first: a send after this fails (and its sender keeps the message), so what
        // the drain takes is everything the channel ever accepted and did not write.
        self.rx.close();
        let mut messages = Vec::new();
        while let Ok(out) = self.rx.try_recv() {
            if let Outbound::Kept(message) = out {
                messages.push(message);
            }
        }
        if !messages.is_empty() {
            let unsent =
                QueueMsg::Unsent { identity: std::mem::take(&mut self.identity), session: self.session, messages };
            if self.presence.cast(PresenceMsg::Queue(unsent)).is_err() {
                tracing::warn!(
                    actor_kind = "aether_presence",
                    "stream ended with messages it had not written; the node is stopping, lost"
                );
            }
        }
    }
}

/// Unix ms now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The oldest `created_at` still within the retention.
pub fn retained_since(now_ms: i64) -> i64 {
    now_ms.saturating_sub(i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX))
}

/// A message as the queue stores it.
pub fn queued(identity: &str, message: Incoming, now_ms: i64) -> QueuedMessage {
    QueuedMessage {
        identity: identity.to_owned(),
        source_topic: message.source_topic,
        message_type: message.message_type,
        workspace: message.workspace,
        payload: message.payload,
        created_at: now_ms,
    }
}

/// Per identity: messages and bytes of `rows`, in first-seen order.
pub fn tally(rows: &[QueuedMessage]) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for row in rows {
        let i = *index.entry(row.identity.as_str()).or_insert_with(|| {
            out.push((row.identity.clone(), 0, 0));
            out.len() - 1
        });
        out[i].1 += 1;
        out[i].2 += row.payload.len() as u64;
    }
    out
}

/// One write of the queue: returned messages to the front, then appends.
pub struct Batch {
    pub front: Vec<QueuedMessage>,
    pub back: Vec<QueuedMessage>,
}

/// One queue write through the storage actor.
async fn write_queue(storage: &Slot<StorageMsg>, op: WriteOp) -> Result<(), String> {
    match storage.ask(ASK_TIMEOUT, |r| StorageMsg::Write(op, r)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes a batch through the storage actor, then tells presence how it went.
pub fn spawn_flush(batch: Batch, storage: Arc<Slot<StorageMsg>>, presence: ActorRef<PresenceMsg>) {
    tokio::spawn(async move {
        let mut counts = Vec::new();
        for (rows, front) in [(batch.front, true), (batch.back, false)] {
            if rows.is_empty() {
                continue;
            }
            let (tally, n) = (tally(&rows), rows.len());
            let op = if front { WriteOp::AetherEnqueueFront(rows) } else { WriteOp::AetherEnqueue(rows) };
            let ok = match write_queue(&storage, op).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(actor_kind = "aether_presence", error = %e, messages = n, "queued messages could not be stored; lost");
                    false
                }
            };
            counts.extend(tally.into_iter().map(|(identity, n, bytes)| (identity, n, bytes, ok)));
        }
        let _ = presence.cast(PresenceMsg::Queue(QueueMsg::Committed { counts }));
    });
}

/// Deletes rows past the retention, then tells presence what went.
pub fn spawn_sweep(reader: StoreReader, storage: Arc<Slot<StorageMsg>>, presence: ActorRef<PresenceMsg>) {
    tokio::spawn(async move {
        let before = retained_since(now_ms());
        let expired = match reader.aether_message_totals(0, before).await {
            Ok(totals) if totals.is_empty() => Vec::new(),
            Ok(totals) => {
                match storage
                    .ask(ASK_TIMEOUT, |r| StorageMsg::Write(WriteOp::AetherExpire { before_ms: before }, r))
                    .await
                {
                    Ok(Ok(())) => totals,
                    Ok(Err(e)) => {
                        tracing::warn!(actor_kind = "aether_presence", error = %e, "queue sweep failed");
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::warn!(actor_kind = "aether_presence", error = %e, "queue sweep failed");
                        Vec::new()
                    }
                }
            }
            Err(e) => {
                tracing::warn!(actor_kind = "aether_presence", error = %e, "queue sweep failed");
                Vec::new()
            }
        };
        let _ = presence.cast(PresenceMsg::Queue(QueueMsg::Swept(expired)));
    });
}

/// What a reader needs.
pub struct ReaderArgs {
    pub identity: String,
    pub session: SessionGen,
    /// The session's outbound channel, weakly: the reader never keeps a closed session's stream
    /// open, and stops when the session's connection actor is gone.
    pub outbound: mpsc::WeakSender<Outbound>,
    pub reader: StoreReader,
    pub storage: Arc<Slot<StorageMsg>>,
    pub presence: ActorRef<PresenceMsg>,
}

/// Starts a session's replay; it always ends with `ReaderEnded` cast to presence.
pub fn spawn_reader(args: ReaderArgs) {
    let (identity, session, presence) = (args.identity.clone(), args.session, args.presence.clone());
    tokio::spawn(async move {
        let failure = match tokio::spawn(replay(args)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(format!("replay task failed: {e}")),
        };
        if let Some(error) = &failure {
            tracing::warn!(actor_kind = "aether_presence", identity = %identity, %error, "replay stopped");
        }
        let _ = presence.cast(PresenceMsg::Queue(QueueMsg::ReaderEnded { identity, session, failure }));
    });
}

/// Why a replay stopped early.
enum Stop {
    /// The session is gone: not a failure (the rows stay queued for the next one).
    SessionGone,
    Failed(String),
}

async fn replay(args: ReaderArgs) -> Result<(), String> {
    match replay_inner(&args).await {
        Ok(()) | Err(Stop::SessionGone) => Ok(()),
        Err(Stop::Failed(e)) => Err(e),
    }
}

async fn replay_inner(args: &ReaderArgs) -> Result<(), Stop> {
    loop {
        // The queue, page by page from its front (a handed page is deleted before the next read,
        // and messages a closing stream returns go to the front), until a short page.
        loop {
            let page = args
                .reader
                .aether_messages_page(&args.identity, i64::MIN, retained_since(now_ms()), REPLAY_PAGE)
                .await
                .map_err(|e| Stop::Failed(format!("reading the queue: {e}")))?;
            let short = page.len() < REPLAY_PAGE as usize;
            let Some(first) = page.first().map(|m| m.seq) else { break };
            let (mut handed, mut bytes, mut last) = (0u64, 0u64, first);
            let mut gone = None;
            for row in page {
                let (seq, size) = (row.seq, row.payload.len() as u64);
                let message = Incoming {
                    source_topic: row.source_topic,
                    payload: Arc::new(row.payload),
                    message_type: row.message_type,
                    workspace: row.workspace,
                };
                if let Err(stop) = hand(&args.outbound, message).await {
                    gone = Some(stop);
                    break;
                }
                (handed, bytes, last) = (handed + 1, bytes + size, seq);
            }
            // What was handed is deleted (a stream that ends before writing it returns it), before
            // the next read and before a later session's reader starts.
            if handed > 0 {
                let op = WriteOp::AetherDelivered { identity: args.identity.clone(), from_seq: first, upto_seq: last };
                match args.storage.ask(ASK_TIMEOUT, |r| StorageMsg::Write(op, r)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(Stop::Failed(format!("deleting delivered messages: {e}"))),
                    Err(e) => return Err(Stop::Failed(format!("deleting delivered messages: {e}"))),
                }
                let delivered = QueueMsg::Delivered { identity: args.identity.clone(), n: handed, bytes };
                let _ = args.presence.cast(PresenceMsg::Queue(delivered));
            }
            if let Some(stop) = gone {
                return Err(stop);
            }
            if short {
                break;
            }
        }
        let (tx, rx) = oneshot::channel();
        let drained = QueueMsg::Drained { identity: args.identity.clone(), session: args.session, reply: tx };
        if args.presence.cast(PresenceMsg::Queue(drained)).is_err() {
            return Err(Stop::SessionGone);
        }
        match rx.await {
            Ok(ReplayNext::ReadMore) => {}
            Ok(ReplayNext::Deliver(messages)) => {
                for message in messages {
                    hand(&args.outbound, message).await?;
                }
            }
            Ok(ReplayNext::Done) | Err(_) => return Ok(()),
        }
    }
}

/// Hands one message to the session, waiting while fewer than [`REPLAY_HEADROOM`] outbound slots
/// are free (the client reads slowly) so that the session's own replies still fit.
async fn hand(outbound: &mpsc::WeakSender<Outbound>, message: Incoming) -> Result<(), Stop> {
    let mut message = Some(message);
    loop {
        let Some(tx) = outbound.upgrade() else { return Err(Stop::SessionGone) };
        if tx.capacity() > REPLAY_HEADROOM
            && let Some(m) = message.take()
        {
            return match tx.try_send(Outbound::Kept(m)) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(Outbound::Kept(m))) => {
                    message = Some(m);
                    continue;
                }
                Err(_) => Err(Stop::SessionGone),
            };
        }
        drop(tx);
        tokio::time::sleep(REPLAY_PACE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u32) -> Incoming {
        Incoming {
            source_topic: "ag::w::i::a".into(),
            payload: Arc::new(n.to_string().into_bytes()),
            message_type: 0,
            workspace: "w".into(),
        }
    }

    fn payloads(messages: &[Incoming]) -> Vec<String> {
        messages.iter().map(|m| String::from_utf8_lossy(&m.payload).into_owned()).collect()
    }

    const B: &str = "ag::w::i::b";

    #[test]
    fn offline_messages_are_appended_and_a_live_session_gets_them_directly() {
        let mut boxes: Mailboxes<u32> = Mailboxes::default();
        assert_eq!(boxes.route(B, true, msg(1)), Verdict::Deliver(msg(1)), "live, nothing queued");
        assert!(boxes.is_empty(), "nothing to remember");
        assert_eq!(boxes.route(B, false, msg(2)), Verdict::Append(vec![msg(2)]), "never connected: kept");
        assert_eq!(boxes.len(), 1);
        // The append commits; the box stays (one message queued).
        assert!(boxes.committed(B, 1, 1, true).spawn_reader.is_none());
        assert_eq!(boxes.len(), 1);
    }

    #[test]
    fn replay_then_buffered_then_live_in_order() {
        let mut boxes: Mailboxes<u32> = Mailboxes::default();
        assert!(matches!(boxes.route(B, false, msg(1)), Verdict::Append(_)));
        // Opens while the append is not committed yet: the reader waits for the commit.
        let step = boxes.open(B, 7);
        assert_eq!(step.spawn_reader, None, "an uncommitted append would be missed");
        assert_eq!(boxes.route(B, true, msg(2)), Verdict::Held, "arrives during the replay: held");
        assert_eq!(boxes.committed(B, 1, 1, true).spawn_reader, Some(7));
        assert_eq!(boxes.route(B, true, msg(3)), Verdict::Held);
        boxes.delivered(B, 1, 1);
        // The reader drained the queue: it is handed the buffer, in arrival order.
        let step = boxes.drained(B, 7, 100);
        assert_eq!(step.answer, Some((100, ReplayNext::Deliver(vec![msg(2), msg(3)]))));
        assert_eq!(boxes.route(B, true, msg(4)), Verdict::Held, "still replaying until the reader asks again");
        let step = boxes.drained(B, 7, 101);
        assert_eq!(step.answer, Some((101, ReplayNext::Deliver(vec![msg(4)]))));
        let step = boxes.drained(B, 7, 102);
        assert_eq!(step.answer, Some((102, ReplayNext::Done)));
        // Live now: straight to the session, after everything the reader handed.
        assert_eq!(boxes.route(B, true, msg(5)), Verdict::Deliver(msg(5)));
        let (step, spill) = boxes.reader_ended(B, 7, false);
        assert!(step.spawn_reader.is_none() && spill.is_none());
        assert!(boxes.is_empty(), "live with nothing queued: forgotten");
        assert_eq!(boxes.route(B, true, msg(6)), Verdict::Deliver(msg(6)));
        // The session closes: back to appending.
        assert!(boxes.closed(B, 7).is_empty());
        assert!(matches!(boxes.route(B, false, msg(7)), Verdict::Append(_)));
    }

    #[test]
    fn a_reader_waits_for_appends_made_while_it_read() {
        let mut boxes: Mailboxes<u32> = Mailboxes::with_limits(100_000, u64::MAX);
        assert_eq!(
            boxes.open(B, 1).spawn_reader,
            Some(1),
            "always read on connect (the queue may hold rows from before a restart)"
        );
        for i in 0..REPLAY_BUFFER_MAX as u32 {
            assert_eq!(boxes.route(B, true, msg(i)), Verdict::Held);
        }
        // The buffer is full: it spills to the queue, with the new message behind it.
        let Verdict::Append(spilled) = boxes.route(B, true, msg(9999)) else { panic!("no spill") };
        assert_eq!(spilled.len(), REPLAY_BUFFER_MAX + 1);
        assert_eq!(payloads(&spilled[REPLAY_BUFFER_MAX..]), vec!["9999"]);
        assert!(
            matches!(boxes.route(B, true, msg(10_000)), Verdict::Append(_)),
            "spilled: later ones go to the queue too"
        );
        // The reader reaches the end before those commit: parked, then told to read again.
        assert!(boxes.drained(B, 1, 5).answer.is_none());
        let n = REPLAY_BUFFER_MAX as u64 + 2;
        assert_eq!(boxes.committed(B, n, 0, true).answer, Some((5, ReplayNext::ReadMore)));
        boxes.delivered(B, n, 0);
        assert_eq!(boxes.drained(B, 1, 6).answer, Some((6, ReplayNext::Done)));
        assert_eq!(boxes.route(B, true, msg(1)), Verdict::Deliver(msg(1)));
    }

    #[test]
    fn a_closed_replay_keeps_its_buffer_and_the_next_reader_waits_for_the_old_one() {
        let mut boxes: Mailboxes<u32> = Mailboxes::default();
        assert_eq!(boxes.open(B, 1).spawn_reader, Some(1));
        assert_eq!(boxes.route(B, true, msg(1)), Verdict::Held);
        // The session ends mid-replay: the held message goes to the queue.
        assert_eq!(boxes.closed(B, 1), vec![msg(1)]);
        assert!(matches!(boxes.route(B, false, msg(2)), Verdict::Append(_)));
        boxes.committed(B, 2, 2, true);
        // A new session opens while the old reader still runs (its deletes may be in flight).
        assert_eq!(boxes.open(B, 2).spawn_reader, None);
        // The old reader's questions are stale.
        assert_eq!(boxes.drained(B, 1, 9).answer, Some((9, ReplayNext::Done)));
        let (step, spill) = boxes.reader_ended(B, 1, false);
        assert_eq!(step.spawn_reader, Some(2), "the new reader starts once the old one ended");
        assert!(spill.is_none());
        assert!(boxes.closed(B, 1).is_empty(), "a stale close changes nothing");
        assert!(boxes.replaying(B, 2));
    }

    #[test]
    fn a_takeover_during_a_replay_keeps_the_buffer_and_stops_the_old_reader() {
        let mut boxes: Mailboxes<u32> = Mailboxes::default();
        boxes.open(B, 1);
        assert_eq!(boxes.route(B, true, msg(1)), Verdict::Held);
        assert!(boxes.drained(B, 1, 3).answer.is_some(), "handed the buffer");
        assert_eq!(boxes.route(B, true, msg(2)), Verdict::Held);
        // Parked only when appends are pending; here: answered. Take over now.
        let step = boxes.open(B, 2);
        assert_eq!(step.spawn_reader, None, "the old reader runs");
        let (step, _) = boxes.reader_ended(B, 1, false);
        assert_eq!(step.spawn_reader, Some(2));
        // The new reader read the queue before it asks: then it is handed what the old one was not.
        assert_eq!(boxes.drained(B, 2, 4).answer, Some((4, ReplayNext::Deliver(vec![msg(2)]))));
        assert_eq!(boxes.drained(B, 2, 5).answer, Some((5, ReplayNext::Done)));
    }

    #[test]
    fn a_failed_reader_ends_the_replay_and_keeps_the_buffer() {
        let mut boxes: Mailboxes<u32> = Mailboxes::default();
        boxes.open(B, 1);
        assert_eq!(boxes.route(B, true, msg(1)), Verdict::Held);
        let (step, spill) = boxes.reader_ended(B, 1, true);
        assert_eq!(spill, Some(vec![msg(1)]));
        assert!(step.spawn_reader.is_none(), "no retry loop: the session is closed instead");
        assert!(!boxes.replaying(B, 1));
        assert!(matches!(boxes.route(B, true, msg(2)), Verdict::Append(_)), "offline until it reconnects");
    }

    #[test]
    fn a_message_a_live_session_could_not_take_is_kept() {
        let mut boxes: Mailboxes<u32> = Mailboxes::default();
        // Live with nothing queued (no box), but its stream is already gone.
        assert_eq!(boxes.route(B, true, msg(1)), Verdict::Deliver(msg(1)));
        assert_eq!(boxes.undelivered(B, 3, msg(1)), Verdict::Append(vec![msg(1)]));
        // Until presence hears the session ended, later messages are kept too, in order.
        assert_eq!(boxes.route(B, true, msg(2)), Verdict::Append(vec![msg(2)]));
        // Live after a replay (a box in the live phase).
        let mut boxes: Mailboxes<u32> = Mailboxes::default();
        assert_eq!(boxes.open(B, 4).spawn_reader, Some(4));
        assert_eq!(boxes.drained(B, 4, 0).answer, Some((0, ReplayNext::Done)));
        assert_eq!(boxes.route(B, true, msg(3)), Verdict::Deliver(msg(3)));
        assert_eq!(boxes.undelivered(B, 4, msg(3)), Verdict::Append(vec![msg(3)]));
        assert!(boxes.closed(B, 4).is_empty(), "already offline");
        assert!(matches!(boxes.route(B, true, msg(4)), Verdict::Append(_)));
    }

    #[test]
    fn a_full_queue_refuses_naming_the_identity() {
        let mut boxes: Mailboxes<u32> = Mailboxes::with_limits(3, 1_000);
        for i in 0..3 {
            assert!(matches!(boxes.route(B, false, msg(i)), Verdict::Append(_)));
        }
        let Verdict::Refused(q) = boxes.route(B, false, msg(3)) else { panic!("not refused") };
        assert_eq!((q.identity.as_str(), q.messages), (B, 3));
        assert!(q.to_string().starts_with("ERR_QUOTA_001: ag::w::i::b "), "{q}");
        // Held messages of a replay count too; delivered ones free room.
        boxes.committed(B, 3, 3, true);
        boxes.delivered(B, 1, 1);
        assert!(matches!(boxes.route(B, false, msg(4)), Verdict::Append(_)));
        // Bytes count as well.
        let mut small: Mailboxes<u32> = Mailboxes::with_limits(100, 2);
        assert!(matches!(small.route(B, false, msg(10)), Verdict::Append(_)));
        assert!(matches!(small.route(B, false, msg(1)), Verdict::Refused(_)));
        // Expired rows free room too, and a lost batch is not counted.
        small.committed(B, 1, 2, false);
        assert!(small.is_empty());
        let mut loaded: Mailboxes<u32> = Mailboxes::with_limits(2, 100);
        loaded.load([(B.to_owned(), 2, 2)]);
        assert!(matches!(loaded.route(B, false, msg(1)), Verdict::Refused(_)), "the backlog at start-up counts");
        loaded.expired(B, 2, 2);
        assert!(loaded.is_empty());
    }

    /// The actors for real: a backlog larger than the outbound channel, a client that does not
    /// read at first, messages sent during the replay — all arrive once, in order, and the
    /// session is not ended for backpressure.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_big_backlog_is_paced_into_a_slow_client_in_order() -> Result<(), Box<dyn std::error::Error>> {
        use crate::aether::connection::{OUTBOUND_CAPACITY, SessionAuthority};
        use crate::aether::identity::ClaimedPrincipal;
        use crate::aether::presence::{OpenRequest, PresenceActor};
        use crate::storage::{DatabaseLocation, Db, StorageActor, StorageArgs};
        use crate::supervision::ask;
        use ractor::Actor;

        let db = Db::open(&DatabaseLocation::Memory).await?;
        let (storage_actor, _) = Actor::spawn(None, StorageActor, StorageArgs { db: db.clone() }).await?;
        let storage = Slot::new("storage");
        storage.set(Some(storage_actor.clone()));
        let store = SessionStore { storage, reader: db.reader() };
        let (presence, _) = Actor::spawn(None, PresenceActor, store).await?;
        let agent = |spec: &str| {
            ClaimedPrincipal::Agent { workspace: "w".into(), implementation: "i".into(), specifier: spec.into() }
                .resolve(|| "x".into())
        };
        let open = |spec: &str| {
            let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
            let request = OpenRequest {
                identity: agent(spec)?,
                authority: SessionAuthority::Claimed,
                resume_session_id: None,
                outbound: tx,
                remote_addr: String::new(),
                acl_exempt: false,
                profiles: Vec::new(),
            };
            Ok::<_, Box<dyn std::error::Error>>((request, rx))
        };
        let (request, _a_rx) = open("a")?;
        let a = ask(&presence, "presence", ASK_TIMEOUT, |r| PresenceMsg::Open(Box::new(request), r))
            .await?
            .map_err(|e| e.to_string())?;
        let send = |n: u32| {
            let message = Incoming {
                source_topic: "ag::w::i::a".into(),
                payload: Arc::new(n.to_string().into_bytes()),
                message_type: 0,
                workspace: "w".into(),
            };
            let route = super::super::topics::Route::Identity("ag::w::i::b".into());
            presence.cast(PresenceMsg::Route { route, message, from: a.connection.clone() }).map_err(|e| e.to_string())
        };
        let backlog = 1000u32;
        for n in 0..backlog {
            send(n)?;
        }
        // Wait for the appends to commit (they are batched behind the presence mailbox).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while db.reader().aether_message_totals(0, i64::MAX).await?.first().map(|t| t.1) != Some(u64::from(backlog)) {
            assert!(tokio::time::Instant::now() < deadline, "the backlog was never stored");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (request, mut rx) = open("b")?;
        ask(&presence, "presence", ASK_TIMEOUT, |r| PresenceMsg::Open(Box::new(request), r))
            .await?
            .map_err(|e| e.to_string())?;
        // The client does not read for a while: the replay fills the channel but leaves headroom.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rx.len() <= OUTBOUND_CAPACITY - REPLAY_HEADROOM + 2, "headroom kept: {}", rx.len());
        assert_eq!(ask(&presence, "presence", ASK_TIMEOUT, PresenceMsg::Count).await?, 2, "the session is not ended");
        // Messages sent during the replay come after the backlog.
        let live = 50u32;
        for n in backlog..backlog + live {
            send(n)?;
        }
        let mut got = Vec::new();
        while got.len() < (backlog + live) as usize {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await? {
                Some(Outbound::Kept(m)) => got.push(String::from_utf8_lossy(&m.payload).parse::<u32>()?),
                Some(_) => {}
                None => return Err("the session ended".into()),
            }
        }
        assert_eq!(got, (0..backlog + live).collect::<Vec<_>>());
        assert!(tokio::time::timeout(Duration::from_millis(300), rx.recv()).await.is_err(), "nothing twice");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !db.reader().aether_message_totals(0, i64::MAX).await?.is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "delivered rows are deleted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        presence.stop_and_wait(None, Some(Duration::from_secs(5))).await?;
        storage_actor.drain_and_wait(Some(Duration::from_secs(5))).await?;
        Ok(())
    }

    #[test]
    fn messages_a_closing_stream_returns_go_to_the_front_or_to_a_newer_session() {
        // The stream of live session 3 ended before its connection actor: its unsent messages
        // go to the front, and the session counts as closed.
        let mut boxes: Mailboxes<u32> = Mailboxes::default();
        assert_eq!(boxes.route(B, true, msg(1)), Verdict::Deliver(msg(1)));
        let r = boxes.returned(B, 3, Some(3), vec![msg(1)]);
        assert_eq!(r, Returned { front: vec![msg(1)], back: vec![], deliver: vec![] });
        assert_eq!(boxes.route(B, true, msg(2)), Verdict::Append(vec![msg(2)]), "kept behind it");
        // Nothing unsent: nothing changes.
        let mut boxes: Mailboxes<u32> = Mailboxes::default();
        assert_eq!(boxes.returned(B, 3, Some(3), vec![]), Returned::default());
        assert_eq!(boxes.route(B, true, msg(2)), Verdict::Deliver(msg(2)));
        // Ended during its replay: the buffer (newer) goes behind the returned ones.
        let mut boxes: Mailboxes<u32> = Mailboxes::default();
        assert_eq!(boxes.open(B, 5).spawn_reader, Some(5));
        assert_eq!(boxes.route(B, true, msg(9)), Verdict::Held);
        let r = boxes.returned(B, 5, Some(5), vec![msg(7), msg(8)]);
        assert_eq!(r, Returned { front: vec![msg(7), msg(8)], back: vec![msg(9)], deliver: vec![] });
        // A newer session live already (no box): it gets them at once.
        let mut boxes: Mailboxes<u32> = Mailboxes::default();
        let r = boxes.returned(B, 5, Some(6), vec![msg(1)]);
        assert_eq!(r, Returned { front: vec![], back: vec![], deliver: vec![msg(1)] });
        assert!(boxes.is_empty());
        // A newer session replaying: to the front, which its reader reads next.
        let mut boxes: Mailboxes<u32> = Mailboxes::default();
        assert_eq!(boxes.open(B, 6).spawn_reader, Some(6));
        let r = boxes.returned(B, 5, Some(6), vec![msg(1)]);
        assert_eq!(r.front, vec![msg(1)]);
        let step = boxes.drained(B, 6, 0);
        assert_eq!(step.answer, None, "waits for the returned rows to commit");
        let step = boxes.committed(B, 1, 1, true);
        assert_eq!(step.answer, Some((0, ReplayNext::ReadMore)));
    }

    /// The actors and storage for real: a stream that ends with messages in its channel (sent
    /// while live, and handed by a replay) gives them back; the next session gets every message
    /// once, in order.
    #[tokio::test]
    async fn messages_a_stream_did_not_write_reach_the_next_session_in_order() -> Result<(), Box<dyn std::error::Error>>
    {
        use crate::aether::connection::{OUTBOUND_CAPACITY, SessionAuthority};
        use crate::aether::identity::ClaimedPrincipal;
        use crate::aether::presence::{OpenRequest, PresenceActor};
        use crate::storage::{DatabaseLocation, Db, StorageActor, StorageArgs};
        use crate::supervision::ask;
        use ractor::Actor;

        let db = Db::open(&DatabaseLocation::Memory).await?;
        let (storage_actor, _) = Actor::spawn(None, StorageActor, StorageArgs { db: db.clone() }).await?;
        let storage = Slot::new("storage");
        storage.set(Some(storage_actor.clone()));
        let store = SessionStore { storage, reader: db.reader() };
        let (presence, _) = Actor::spawn(None, PresenceActor, store).await?;
        let presence_slot = Slot::new("presence");
        presence_slot.set(Some(presence.clone()));
        let open = |spec: &str| {
            let presence = presence.clone();
            let presence_slot = presence_slot.clone();
            let identity =
                ClaimedPrincipal::Agent { workspace: "w".into(), implementation: "i".into(), specifier: spec.into() }
                    .resolve(|| "x".into());
            async move {
                let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
                let request = OpenRequest {
                    identity: identity?,
                    authority: SessionAuthority::Claimed,
                    resume_session_id: None,
                    outbound: tx,
                    remote_addr: String::new(),
                    acl_exempt: false,
                    profiles: Vec::new(),
                };
                let opened = ask(&presence, "presence", ASK_TIMEOUT, |r| PresenceMsg::Open(Box::new(request), r))
                    .await?
                    .map_err(|e| e.to_string())?;
                let outbox = Outbox::new(rx, opened.session.identity.key.clone(), opened.generation, presence_slot);
                Ok::<_, Box<dyn std::error::Error>>((opened, outbox))
            }
        };
        let (a, _a_out) = open("a").await?;
        let send = |n: u32| {
            let message = Incoming {
                source_topic: "ag::w::i::a".into(),
                payload: Arc::new(n.to_string().into_bytes()),
                message_type: 0,
                workspace: "w".into(),
            };
            let route = super::super::topics::Route::Identity("ag::w::i::b".into());
            presence.cast(PresenceMsg::Route { route, message, from: a.connection.clone() }).map_err(|e| e.to_string())
        };
        async fn messages(outbox: &mut Outbox, n: usize) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
            let mut got = Vec::new();
            while got.len() < n {
                match tokio::time::timeout(Duration::from_secs(10), outbox.recv()).await? {
                    Some(Outbound::Kept(m)) => got.push(String::from_utf8_lossy(&m.payload).parse::<u32>()?),
                    Some(_) => {}
                    None => return Err("the session ended".into()),
                }
            }
            Ok(got)
        }
        let sessions = || ask(&presence, "presence", ASK_TIMEOUT, PresenceMsg::Count);
        let wait_sessions = |n: usize| async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while sessions().await? != n {
                assert!(tokio::time::Instant::now() < deadline, "sessions never became {n}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, Box<dyn std::error::Error>>(())
        };

        // Live: 0..10 are in b's channel when its stream ends (the client closed it); 10..15 are
        // routed before the node noticed (its connection actor still runs).
        let (b, mut b_out) = open("b").await?;
        for n in 0..10 {
            send(n)?;
        }
        assert_eq!(ask(&presence, "presence", ASK_TIMEOUT, PresenceMsg::Count).await?, 2);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = messages(&mut b_out, 2).await?;
        assert_eq!(first, vec![0, 1], "written to the client before the stream ended");
        drop(b_out);
        for n in 10..15 {
            send(n)?;
        }
        let _ = b.connection.cast(ConnectionMsg::Closed);
        wait_sessions(1).await?;
        let (b, mut b_out) = open("b").await?;
        assert_eq!(messages(&mut b_out, 13).await?, (2..15).collect::<Vec<_>>(), "each once, in order");
        assert!(tokio::time::timeout(Duration::from_millis(300), b_out.recv()).await.is_err(), "nothing twice");

        // During a replay: the client reads 5 of 300 queued, then its stream ends.
        drop(b_out);
        let _ = b.connection.cast(ConnectionMsg::Closed);
        wait_sessions(1).await?;
        for n in 100..400 {
            send(n)?;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while db.reader().aether_message_totals(0, i64::MAX).await?.first().map(|t| t.1) != Some(300) {
            assert!(tokio::time::Instant::now() < deadline, "the backlog was never stored");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (b, mut b_out) = open("b").await?;
        assert_eq!(messages(&mut b_out, 5).await?, (100..105).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(b_out);
        let _ = b.connection.cast(ConnectionMsg::Closed);
        wait_sessions(1).await?;
        let (_b, mut b_out) = open("b").await?;
        assert_eq!(messages(&mut b_out, 295).await?, (105..400).collect::<Vec<_>>(), "each once, in order");
        assert!(tokio::time::timeout(Duration::from_millis(300), b_out.recv()).await.is_err(), "nothing twice");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !db.reader().aether_message_totals(0, i64::MAX).await?.is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "delivered rows are deleted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        presence.stop_and_wait(None, Some(Duration::from_secs(5))).await?;
        storage_actor.drain_and_wait(Some(Duration::from_secs(5))).await?;
        Ok(())
    }

    #[test]
    fn tally_counts_per_identity_in_order() {
        let rows = vec![queued("x", msg(1), 0), queued("y", msg(22), 0), queued("x", msg(333), 0)];
        assert_eq!(tally(&rows), vec![("x".into(), 2, 4), ("y".into(), 1, 2)]);
    }
}
