//! The storage actor: the only writer to SQLite.
//!
//! Group commit: a `Write` is queued; the first write into an empty queue casts `Flush` to self,
//! which lands behind every write already in the mailbox, so one transaction absorbs everything
//! that arrived while the previous commit was in flight — batches grow with load, no timer.
//! Each write is acknowledged only after its transaction committed. A batch that fails on a
//! constraint is retried write by write, so one bad write never fails its neighbours. The text
//! search index is kept behind the writes, in passes of its own (`text_index`).
//!
//! This file holds the actor and the dispatch: `WritePlan` groups a batch by statement and
//! `write_all` runs it. Each table group's SQL lives in its own submodule (`tasks`, `agents`,
//! `threads`, `runtime`, `node`); a new table is a new submodule, a [`WriteOp`] variant and its
//! arm in `WritePlan::new` (and in `write_in_order` when it is written as it arrived).

mod aether;
mod agents;
mod node;
mod peers;
mod runtime;
mod script;
mod tasks;
mod text_index;
mod threads;
mod tokens;

use std::collections::HashMap;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};

pub use aether::{
    AclWrite, AetherAgentRecord, AgentWrite, AppliedSlot, QueuedMessage, WorkspaceRecord, WorkspaceWrite,
};
pub use runtime::{LaunchRecord, SessionBindingRecord};
pub use tasks::NewTurn;

use super::Db;
use crate::artifacts::NewArtifact;
use crate::error::StorageError;
use crate::model::{AgentRecord, TaskEvent, TaskRecord};
use crate::telemetry;

/// Rows per multi-row statement, well below SQLite's 32,766 bound-parameter limit.
const ROWS_PER_STATEMENT: usize = 500;

/// One durable write.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Upserts a task row and appends its events (and the artifacts they reference), atomically.
    /// A thread-bound task's turn mirrors the task's status in the same transaction; `new_turn`
    /// inserts the turn (index allocated inside the transaction) when the task is created.
    Task {
        task: Box<TaskRecord>,
        /// Seq of the last event (after this write).
        last_seq: u64,
        events: Vec<TaskEvent>,
        artifacts: Vec<NewArtifact>,
        new_turn: Option<NewTurn>,
        /// The idempotency key the task's creation claims (refused if another task holds it).
        claim: Option<Box<IdempotencyClaim>>,
    },
    /// Inserts a thread.
    ThreadCreate(Box<crate::model::ThreadRecord>),
    /// Sets a thread's status and interruption reason.
    ThreadState { thread_id: String, status: crate::model::ThreadStatus, interruption_reason: Option<String> },
    /// Records a thread's auto-handoff plan and progress.
    ThreadHandoff { thread_id: String, handoff: serde_json::Value },
    /// Inserts or replaces a registered agent (all but `registered_at` on update).
    Agent(Box<AgentRecord>),
    /// Sets a node-level key (node id, …).
    NodeMeta { key: String, value: String },
    /// A runtime process was spawned: its launch history row and its lease (pid, process group).
    LaunchStarted(Box<LaunchRecord>),
    /// A launch ended (`ready`, `failed`, `exited`, `stopped`); the lease is released on anything
    /// but `ready`.
    LaunchEnded {
        launch_id: String,
        status: String,
        exit_code: Option<i32>,
        error: Option<String>,
        release_lease: bool,
    },
    /// Leases of process groups killed at start-up (left by a previous run).
    ReleaseLeases(Vec<String>),
    /// Upserts a session binding (keeps `created_at`).
    SessionBinding(Box<SessionBindingRecord>),
    /// Upserts a peer (keeps `registered_at`); `targets`, when given, replaces its cached targets
    /// in the same transaction (a sync's outcome).
    Peer { peer: Box<crate::model::PeerRecord>, targets: Option<Vec<crate::model::PeerTargetRecord>> },
    /// Inserts an API token (its HMAC) and, in the same transaction, revokes `revokes` (a local
    /// admin token replacing its predecessor).
    TokenCreate { token: Box<crate::tokens::TokenRecord>, revokes: Vec<String> },
    /// Revokes API tokens.
    TokenRevoke { token_ids: Vec<String>, at: crate::clock::Timestamp },
    /// Pauses dispatching to a target (`pause`: when, by whom) or resumes it (`None`).
    TargetPause { target_id: String, pause: Option<(String, String)> },
    /// An Aether KV row set (`value`) or deleted (`None`); times in unix ms.
    AetherKv { namespace: String, key: String, value: Option<Vec<u8>>, expires_at: Option<i64>, now: i64 },
    /// An atomic update of an Aether KV row (counters, conditional writes), its outcome left
    /// in `outcome` for the caller to read after the commit. `ttl_ms` applies to a fresh row.
    AetherKvUpdate {
        namespace: String,
        key: String,
        update: crate::model::kv_update::KvUpdate,
        ttl_ms: Option<i64>,
        now: i64,
        outcome: crate::model::kv_update::OutcomeSlot,
    },
    /// An Aether checkpoint saved (`Some((data, saved_at unix s))`) or deleted (`None`).
    AetherCheckpoint { identity: String, key: String, save: Option<(Vec<u8>, i64)>, expires_at: Option<i64> },
    /// Aether messages kept for identities that are not connected, in publish order (one
    /// multi-row INSERT per chunk; the presence actor batches them, so one write carries many).
    AetherEnqueue(Vec<QueuedMessage>),
    /// An Aether workspace record created, updated or deleted; `applied` says whether it was
    /// (a create of an existing id, an update or delete of a missing one, is not).
    AetherWorkspace { write: aether::WorkspaceWrite, applied: aether::AppliedSlot },
    /// An Aether agent registration made, changed or removed; `applied` says whether it was.
    AetherAgent { write: aether::AgentWrite, applied: aether::AppliedSlot },
    /// An Aether access rule granted, re-granted or removed; `applied` says whether it was.
    AetherAcl { write: aether::AclWrite, applied: aether::AppliedSlot },
    /// Messages a closing stream was handed but never wrote: back at the front of their queues.
    AetherEnqueueFront(Vec<QueuedMessage>),
    /// An identity's queued messages `from_seq..=upto_seq` were handed to its session: deleted.
    AetherDelivered { identity: String, from_seq: i64, upto_seq: i64 },
    /// Queued messages created before `before_ms` (unix ms) are past the retention: deleted.
    AetherExpire { before_ms: i64 },
}

impl WriteOp {
    /// What kind of write this is (for logs).
    pub fn name(&self) -> &'static str {
        match self {
            WriteOp::Task { .. } => "task",
            WriteOp::ThreadCreate(_) => "thread",
            WriteOp::ThreadState { .. } => "thread state",
            WriteOp::ThreadHandoff { .. } => "thread handoff",
            WriteOp::Agent(_) => "agent",
            WriteOp::NodeMeta { .. } => "node meta",
            WriteOp::LaunchStarted(_) => "launch started",
            WriteOp::LaunchEnded { .. } => "launch ended",
            WriteOp::ReleaseLeases(_) => "lease release",
            WriteOp::SessionBinding(_) => "session binding",
            WriteOp::Peer { .. } => "peer",
            WriteOp::TokenCreate { .. } => "token",
            WriteOp::TokenRevoke { .. } => "token revoke",
            WriteOp::TargetPause { .. } => "target pause",
            WriteOp::AetherKv { .. } => "aether kv",
            WriteOp::AetherKvUpdate { .. } => "aether kv update",
            WriteOp::AetherCheckpoint { .. } => "aether checkpoint",
            WriteOp::AetherEnqueue(_) => "aether enqueue",
            WriteOp::AetherEnqueueFront(_) => "aether enqueue front",
            WriteOp::AetherWorkspace { .. } => "aether workspace",
            WriteOp::AetherAgent { .. } => "aether agent",
            WriteOp::AetherAcl { .. } => "aether acl",
            WriteOp::AetherDelivered { .. } => "aether delivered",
            WriteOp::AetherExpire { .. } => "aether expire",
        }
    }
}

/// Counters for benchmarks and diagnostics.
#[derive(Clone, Copy, Debug, Default)]
pub struct StorageStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes acknowledged.
    pub writes: u64,
    /// Largest batch committed in one transaction.
    pub max_batch: usize,
    /// Passes of the text search index (each indexes every task written since the one before).
    pub text_passes: u64,
}

/// Messages of the storage actor.
pub enum StorageMsg {
    /// Make `op` durable; the reply comes after COMMIT.
    Write(WriteOp, RpcReplyPort<Result<(), StorageError>>),
    /// Commit everything queued (sent to self).
    Flush,
    /// Index the texts committed since the last pass (sent to self, on a timer).
    IndexTexts,
    /// Index every text committed so far, then reply: a search sent after the reply sees every
    /// write acknowledged before this message.
    SyncTextIndex(RpcReplyPort<Result<(), StorageError>>),
    /// Report counters.
    Stats(RpcReplyPort<StorageStats>),
}

/// Arguments: the open database.
pub struct StorageArgs {
    pub db: Db,
}

/// State of the storage actor.
pub struct StorageState {
    /// The database's writer connection, the only one this actor uses.
    writer: WriterConn,
    /// Writes waiting for the next commit, in arrival order.
    pending: Vec<(WriteOp, RpcReplyPort<Result<(), StorageError>>)>,
    /// A `Flush` is already in the mailbox; don't queue another.
    flush_scheduled: bool,
    /// Texts of committed task writes the search index does not have yet: indexed in passes
    /// off the write path, coalesced per task.
    texts: text_index::TextBacklog,
    /// Counters.
    stats: StorageStats,
}

/// The storage actor's connection. A file database's is held from the first write on: taking
/// it from the pool for each transaction cost a round trip through the pool (41–72 µs per
/// commit on the write path). An in-memory database's is the readers' too, so it is taken per
/// transaction and given back.
struct WriterConn {
    /// The writer pool (one connection).
    pool: SqlitePool,
    /// The held connection; `None` until the first write, and again after the database failed
    /// (the next write takes a fresh one).
    held: Option<PoolConnection<Sqlite>>,
    /// Whether to hold it: false when readers share the pool.
    hold: bool,
}

impl WriterConn {
    fn of(db: &Db) -> Self {
        WriterConn { pool: db.writer.clone(), held: None, hold: !db.shared_writer }
    }

    /// The connection for one transaction.
    async fn lease(&mut self) -> Result<Lease<'_>, StorageError> {
        if !self.hold {
            return Ok(Lease::Pooled(self.pool.acquire().await?));
        }
        let conn = match &mut self.held {
            Some(conn) => conn,
            slot @ None => slot.insert(self.pool.acquire().await?),
        };
        Ok(Lease::Held(conn))
    }

    /// Gives the held connection back after `result` said the database failed.
    fn check<T>(&mut self, result: &Result<T, StorageError>) {
        if matches!(result, Err(StorageError::Unavailable(_))) {
            self.held = None;
        }
    }
}

/// A connection for one transaction: the held one, or one from the pool.
enum Lease<'a> {
    Held(&'a mut PoolConnection<Sqlite>),
    Pooled(PoolConnection<Sqlite>),
}

impl std::ops::Deref for Lease<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        match self {
            Lease::Held(conn) => conn,
            Lease::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            Lease::Held(conn) => conn,
            Lease::Pooled(conn) => conn,
        }
    }
}

/// The storage actor.
pub struct StorageActor;

impl Actor for StorageActor {
    type Msg = StorageMsg;
    type State = StorageState;
    type Arguments = StorageArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<StorageMsg>,
        args: StorageArgs,
    ) -> Result<StorageState, ActorProcessingErr> {
        // Texts a crash (of the node or of this actor) kept from their pass are indexed again
        // from the stored events. A failure leaves the mark where it is, for the next start.
        let mut writer = WriterConn::of(&args.db);
        let recovered = match writer.lease().await {
            Ok(mut conn) => text_index::recover(&mut conn).await,
            Err(e) => Err(e),
        };
        writer.check(&recovered);
        match recovered {
            Ok(0) => {}
            Ok(tasks) => tracing::info!(actor_kind = "storage", tasks, "text search index caught up"),
            Err(e) => tracing::warn!(actor_kind = "storage", error = %e, "text search index not caught up"),
        }
        Ok(StorageState {
            writer,
            pending: Vec::new(),
            flush_scheduled: false,
            texts: text_index::TextBacklog::default(),
            stats: StorageStats::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<StorageMsg>,
        msg: StorageMsg,
        state: &mut StorageState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StorageMsg::Write(op, reply) => {
                state.pending.push((op, reply));
                if !state.flush_scheduled {
                    state.flush_scheduled = true;
                    myself.cast(StorageMsg::Flush)?;
                }
            }
            StorageMsg::Flush => {
                state.flush_scheduled = false;
                let batch = std::mem::take(&mut state.pending);
                if batch.is_empty() {
                    return Ok(());
                }
                let next = flush(state, batch).await?;
                schedule_index(&myself, state, next).await?;
            }
            StorageMsg::IndexTexts => {
                state.texts.timer_fired();
                if let Err(e) = index_backlog(&myself, state).await {
                    tracing::warn!(actor_kind = "storage", error = %e, "text search index pass failed; retrying");
                    escalate_if_unavailable(e)?;
                }
            }
            StorageMsg::SyncTextIndex(reply) => {
                let result = index_backlog(&myself, state).await;
                let _ = reply.send(result.clone());
                if let Err(e) = result {
                    escalate_if_unavailable(e)?;
                }
            }
            StorageMsg::Stats(reply) => {
                let _ = reply.send(state.stats);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<StorageMsg>,
        state: &mut StorageState,
    ) -> Result<(), ActorProcessingErr> {
        // A graceful stop (drain) processed every queued message already; anything still pending
        // is committed here so no acknowledged-later write is lost, and the search index catches
        // up (else the next start does it).
        let batch = std::mem::take(&mut state.pending);
        if !batch.is_empty() {
            flush(state, batch).await?;
        }
        if let Err(e) = index_backlog(&myself, state).await {
            tracing::warn!(actor_kind = "storage", error = %e, "text search index left for the next start");
        }
        // Back to the pool now: closing the database (the WAL checkpoint) waits for it.
        state.writer.held = None;
        Ok(())
    }
}

/// Acts on what queuing texts asked for: a timed pass, or one now.
async fn schedule_index(
    myself: &ActorRef<StorageMsg>,
    state: &mut StorageState,
    next: text_index::Next,
) -> Result<(), ActorProcessingErr> {
    match next {
        text_index::Next::Wait => Ok(()),
        text_index::Next::Schedule => {
            myself.send_after(text_index::INDEX_DELAY, || StorageMsg::IndexTexts);
            Ok(())
        }
        text_index::Next::IndexNow => match index_backlog(myself, state).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(actor_kind = "storage", error = %e, "text search index pass failed; retrying");
                escalate_if_unavailable(e)
            }
        },
    }
}

/// One pass of the text search index over the whole backlog. A failed pass puts its texts back
/// and schedules another.
async fn index_backlog(myself: &ActorRef<StorageMsg>, state: &mut StorageState) -> Result<(), StorageError> {
    if state.texts.is_empty() {
        return Ok(());
    }
    let texts = state.texts.take();
    let indexed = match state.writer.lease().await {
        Ok(mut conn) => text_index::index(&mut conn, &texts).await,
        Err(e) => Err(e),
    };
    state.writer.check(&indexed);
    match indexed {
        Ok(()) => {
            state.stats.text_passes += 1;
            Ok(())
        }
        Err(e) => {
            if state.texts.restore(texts) == text_index::Next::Schedule {
                myself.send_after(text_index::INDEX_DELAY, || StorageMsg::IndexTexts);
            }
            Err(e)
        }
    }
}

/// Commits a batch; on failure retries each write alone. Returns `Err` (failing the actor, so its
/// supervisor restarts it) only when the database itself is unavailable; else what the texts
/// it committed ask of the search index.
async fn flush(
    state: &mut StorageState,
    batch: Vec<(WriteOp, RpcReplyPort<Result<(), StorageError>>)>,
) -> Result<text_index::Next, ActorProcessingErr> {
    let (ops, replies): (Vec<WriteOp>, Vec<_>) = batch.into_iter().unzip();
    let started = std::time::Instant::now();
    match commit(&mut state.writer, &ops).await {
        Ok(texts) => {
            metrics::counter!(telemetry::STORAGE_COMMITS).increment(1);
            metrics::histogram!(telemetry::STORAGE_COMMIT_DURATION).record(started.elapsed().as_secs_f64());
            metrics::histogram!(telemetry::STORAGE_BATCH_SIZE).record(ops.len() as f64);
            state.stats.commits += 1;
            state.stats.writes += ops.len() as u64;
            state.stats.max_batch = state.stats.max_batch.max(ops.len());
            for reply in replies {
                let _ = reply.send(Ok(()));
            }
            Ok(state.texts.add(texts))
        }
        Err(err) if ops.len() == 1 => {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
            escalate_if_unavailable(err).map(|()| text_index::Next::Wait)
        }
        Err(batch_err) => {
            tracing::warn!(actor_kind = "storage", error = %batch_err, writes = ops.len(), "batch commit failed; retrying writes one by one");
            let (mut unavailable, mut next) = (None, text_index::Next::Wait);
            for (op, reply) in ops.into_iter().zip(replies) {
                let result = match commit(&mut state.writer, std::slice::from_ref(&op)).await {
                    Ok(texts) => {
                        state.stats.commits += 1;
                        state.stats.writes += 1;
                        match state.texts.add(texts) {
                            text_index::Next::Wait => {}
                            asked => next = asked,
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                if let Err(StorageError::Unavailable(_)) = &result {
                    unavailable = result.clone().err();
                }
                let _ = reply.send(result);
            }
            unavailable.map_or(Ok(()), escalate_if_unavailable).map(|()| next)
        }
    }
}

fn escalate_if_unavailable(err: StorageError) -> Result<(), ActorProcessingErr> {
    match err {
        StorageError::Unavailable(_) => Err(Box::new(err)),
        _ => Ok(()),
    }
}

/// Writes `ops` in one transaction (a task-only batch as one script, see `script`); returns
/// the searchable texts it made durable (the search index takes them after the commit).
async fn commit(writer: &mut WriterConn, ops: &[WriteOp]) -> Result<Vec<(String, String)>, StorageError> {
    let plan = WritePlan::new(ops);
    let written = match writer.lease().await {
        Ok(mut conn) if script::fits(&plan) => script::run(&mut conn, &plan).await,
        Ok(mut conn) => statement_by_statement(&mut conn, &plan).await,
        Err(e) => Err(e),
    };
    writer.check(&written);
    written.map(|()| tasks::last_texts(&plan.events))
}

/// Writes `plan` in one `BEGIN IMMEDIATE … COMMIT`, a round trip per statement.
async fn statement_by_statement(conn: &mut SqliteConnection, plan: &WritePlan<'_>) -> Result<(), StorageError> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let written = match write_all(conn, plan).await {
        Ok(()) => sqlx::query("COMMIT").execute(&mut *conn).await.map(drop).map_err(StorageError::from),
        Err(e) => Err(e),
    };
    if written.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    written
}

/// One transaction's writes grouped by statement, in the order [`write_all`] executes them.
///
/// Pure: built from the batch without IO, so the grouping is unit-tested on its own.
#[derive(Debug, Default)]
struct WritePlan<'a> {
    /// Thread and runtime writes, as they arrived, first: a turn written later in this
    /// transaction may belong to a thread created in it, and these writes depend on each other's
    /// order (a launch ends after it started).
    in_order: Vec<&'a WriteOp>,
    /// Artifacts of every task write, before the task rows and events that reference them.
    artifacts: Vec<&'a NewArtifact>,
    /// One row per task, the last write's, at the first write's position: every task write
    /// carries the whole row, so the last one wins.
    tasks: Vec<(&'a TaskRecord, u64)>,
    /// Events of every task write, as they arrived (a task's seqs ascend).
    events: Vec<&'a TaskEvent>,
    /// Every write of a thread-bound task, as it arrived: each opens or mirrors its turn with its
    /// own row, so none is deduplicated.
    turns: Vec<TurnWrite<'a>>,
    /// Idempotency keys claimed by task creations, with the task that claims each.
    claims: Vec<(&'a str, &'a IdempotencyClaim)>,
    /// Agent upserts, as they arrived.
    agents: Vec<&'a AgentRecord>,
    /// Node-level keys, as they arrived (a later value for a key overwrites an earlier one).
    node_meta: Vec<(&'a str, &'a str)>,
}

/// An idempotency key claimed by a task's creation, in the creation's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// Whose key it is (a principal, a relaying origin node): keys of different callers never meet.
    pub scope: String,
    pub key: String,
    /// SHA-256 of the canonical request, to tell a replay from another request under the key.
    pub request_hash: String,
    /// A claim older than this (the retention window) is taken over; a newer one refuses the write.
    pub reclaim_before: String,
}

/// A thread-bound task write: the turn it opens (`new_turn`) or mirrors.
#[derive(Debug)]
struct TurnWrite<'a> {
    task: &'a TaskRecord,
    thread_id: &'a str,
    new_turn: Option<&'a NewTurn>,
    /// The events this write appends for the task (a relayed turn reads its remote ids there).
    events: &'a [TaskEvent],
}

impl<'a> WritePlan<'a> {
    fn new(ops: &'a [WriteOp]) -> Self {
        let mut plan = WritePlan::default();
        let mut task_index: HashMap<&str, usize> = HashMap::new();
        for op in ops {
            match op {
                WriteOp::Task { task, last_seq, events, artifacts, new_turn, claim } => {
                    if let Some(claim) = claim {
                        plan.claims.push((task.task_id.as_str(), &**claim));
                    }
                    match task_index.get(task.task_id.as_str()) {
                        Some(&i) => plan.tasks[i] = (task, *last_seq),
                        None => {
                            task_index.insert(task.task_id.as_str(), plan.tasks.len());
                            plan.tasks.push((task, *last_seq));
                        }
                    }
                    plan.events.extend(events.iter());
                    plan.artifacts.extend(artifacts.iter());
                    if let Some(thread_id) = &task.thread_id {
                        plan.turns.push(TurnWrite { task, thread_id, new_turn: new_turn.as_ref(), events });
                    }
                }
                WriteOp::Agent(agent) => plan.agents.push(agent),
                WriteOp::NodeMeta { key, value } => plan.node_meta.push((key, value)),
                WriteOp::ThreadCreate(_)
                | WriteOp::ThreadState { .. }
                | WriteOp::ThreadHandoff { .. }
                | WriteOp::LaunchStarted(_)
                | WriteOp::LaunchEnded { .. }
                | WriteOp::ReleaseLeases(_)
                | WriteOp::SessionBinding(_)
                | WriteOp::Peer { .. }
                | WriteOp::TokenCreate { .. }
                | WriteOp::TokenRevoke { .. }
                | WriteOp::TargetPause { .. }
                | WriteOp::AetherKv { .. }
                | WriteOp::AetherKvUpdate { .. }
                | WriteOp::AetherCheckpoint { .. }
                | WriteOp::AetherEnqueue(_)
                | WriteOp::AetherEnqueueFront(_)
                | WriteOp::AetherWorkspace { .. }
                | WriteOp::AetherAgent { .. }
                | WriteOp::AetherAcl { .. }
                | WriteOp::AetherDelivered { .. }
                | WriteOp::AetherExpire { .. } => plan.in_order.push(op),
            }
        }
        plan
    }
}

/// Writes `plan` on `conn`, inside the caller's transaction.
async fn write_all(conn: &mut SqliteConnection, plan: &WritePlan<'_>) -> Result<(), StorageError> {
    for &op in &plan.in_order {
        write_in_order(conn, op).await?;
    }
    for chunk in plan.artifacts.chunks(ROWS_PER_STATEMENT) {
        tasks::insert_artifacts(conn, chunk).await?;
    }
    for chunk in plan.tasks.chunks(ROWS_PER_STATEMENT) {
        tasks::upsert_tasks(conn, chunk).await?;
    }
    for chunk in plan.events.chunks(ROWS_PER_STATEMENT) {
        tasks::insert_events(conn, chunk).await?;
    }
    for chunk in plan.claims.chunks(ROWS_PER_STATEMENT) {
        tasks::claim_idempotency_keys(conn, chunk).await?;
    }
    for turn in &plan.turns {
        tasks::write_turn(conn, turn.task, turn.thread_id, turn.new_turn, turn.events).await?;
    }
    for &agent in &plan.agents {
        agents::upsert(conn, agent).await?;
    }
    for &(key, value) in &plan.node_meta {
        node::set_meta(conn, key, value).await?;
    }
    Ok(())
}

/// One write of [`WritePlan::in_order`].
async fn write_in_order(conn: &mut SqliteConnection, op: &WriteOp) -> Result<(), StorageError> {
    match op {
        WriteOp::ThreadCreate(t) => threads::insert(conn, t).await,
        WriteOp::ThreadState { thread_id, status, interruption_reason } => {
            threads::set_state(conn, thread_id, *status, interruption_reason.as_deref()).await
        }
        WriteOp::ThreadHandoff { thread_id, handoff } => threads::set_handoff(conn, thread_id, handoff).await,
        WriteOp::LaunchStarted(l) => runtime::launch_started(conn, l).await,
        WriteOp::LaunchEnded { launch_id, status, exit_code, error, release_lease } => {
            runtime::launch_ended(conn, launch_id, status, *exit_code, error.as_deref(), *release_lease).await
        }
        WriteOp::ReleaseLeases(ids) => runtime::release_leases(conn, ids).await,
        WriteOp::SessionBinding(b) => runtime::upsert_session_binding(conn, b).await,
        WriteOp::Peer { peer, targets } => {
            peers::upsert(conn, peer).await?;
            match targets {
                Some(targets) => peers::replace_targets(conn, &peer.peer_id, targets).await,
                None => Ok(()),
            }
        }
        WriteOp::TokenCreate { token, revokes } => {
            tokens::revoke(conn, revokes, &token.created_at).await?;
            tokens::insert(conn, token).await
        }
        WriteOp::TokenRevoke { token_ids, at } => tokens::revoke(conn, token_ids, at).await,
        WriteOp::TargetPause { target_id, pause } => runtime::set_target_pause(conn, target_id, pause.as_ref()).await,
        WriteOp::AetherKv { namespace, key, value, expires_at, now } => match value {
            Some(value) => aether::kv_put(conn, namespace, key, value, *expires_at, *now).await,
            None => aether::kv_delete(conn, namespace, key).await,
        },
        WriteOp::AetherKvUpdate { namespace, key, update, ttl_ms, now, outcome } => {
            aether::kv_update(conn, namespace, key, update, *ttl_ms, *now, outcome).await
        }
        WriteOp::AetherCheckpoint { identity, key, save, expires_at } => match save {
            Some((data, saved_at)) => aether::checkpoint_save(conn, identity, key, data, *saved_at, *expires_at).await,
            None => aether::checkpoint_delete(conn, identity, key).await,
        },
        WriteOp::AetherEnqueue(rows) => {
            let rows: Vec<&QueuedMessage> = rows.iter().collect();
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                aether::enqueue(conn, chunk).await?;
            }
            Ok(())
        }
        WriteOp::AetherWorkspace { write, applied } => aether::workspace(conn, write, applied).await,
        WriteOp::AetherAgent { write, applied } => aether::agent(conn, write, applied).await,
        WriteOp::AetherAcl { write, applied } => aether::acl(conn, write, applied).await,
        WriteOp::AetherEnqueueFront(rows) => {
            let rows: Vec<&QueuedMessage> = rows.iter().collect();
            aether::enqueue_front(conn, &rows).await
        }
        WriteOp::AetherDelivered { identity, from_seq, upto_seq } => {
            aether::delivered(conn, identity, *from_seq, *upto_seq).await
        }
        WriteOp::AetherExpire { before_ms } => aether::expire(conn, *before_ms).await,
        // Grouped into multi-row statements by the plan, never written one by one here.
        WriteOp::Task { .. } | WriteOp::Agent(_) | WriteOp::NodeMeta { .. } => Ok(()),
    }
}

/// A value as JSON text for a `*_json` column.
fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}
#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use ractor::Actor;

    use super::*;
    use crate::model::{DeliveryPolicy, EventKind, EventSource, JsonObject, TaskStatus};
    use crate::storage::DatabaseLocation;
    use crate::supervision::ask;

    pub(super) fn task(id: &str) -> TaskRecord {
        TaskRecord {
            task_id: id.into(),
            thread_id: None,
            conversation_id: "c".into(),
            sender: "s".into(),
            intent: "i".into(),
            requested_agent_id: None,
            resolved_agent_id: Some("t".into()),
            runtime_options: JsonObject::new(),
            payload_artifact_id: None,
            status: TaskStatus::Created,
            remote: None,
            last_error: None,
            result_artifact_id: None,
            delivery: DeliveryPolicy::default(),
            metadata: JsonObject::new(),
            priority: Default::default(),
            attempts: Default::default(),
            created_at: "2026-01-01T00:00:00.000000000Z".into(),
            updated_at: "2026-01-01T00:00:00.000000000Z".into(),
        }
    }

    pub(super) fn event(task_id: &str, seq: u64) -> TaskEvent {
        TaskEvent {
            event_id: crate::ids::new_id(),
            task_id: task_id.into(),
            seq,
            kind: EventKind::TaskCreated,
            state: TaskStatus::Created,
            source: EventSource::Core,
            message: None,
            data: JsonObject::new(),
            created_at: "2026-01-01T00:00:00.000000000Z".into(),
        }
    }

    fn task_write(id: &str, last_seq: u64, thread: Option<&str>, opens_turn: bool) -> WriteOp {
        let mut row = task(id);
        row.thread_id = thread.map(str::to_owned);
        WriteOp::Task {
            task: Box::new(row),
            last_seq,
            events: vec![event(id, last_seq)],
            artifacts: vec![],
            new_turn: opens_turn.then(|| NewTurn {
                sender_agent_id: "a".into(),
                target_agent_id: "b".into(),
                remote_peer_id: None,
            }),
            claim: None,
        }
    }

    pub(super) fn artifact(id: &str) -> NewArtifact {
        NewArtifact {
            meta: crate::model::ArtifactMeta {
                artifact_id: id.into(),
                media_type: "text/plain".into(),
                size_bytes: 1,
                sha256: "00".into(),
                created_at: "2026-01-01T00:00:00.000000000Z".into(),
            },
            body: crate::artifacts::ArtifactBody::Inline(b"x".to_vec()),
        }
    }

    /// What a plan holds, by id, for comparison.
    #[derive(Debug, Default, PartialEq)]
    struct Planned {
        in_order: Vec<&'static str>,
        artifacts: Vec<String>,
        tasks: Vec<(String, u64)>,
        events: Vec<(String, u64)>,
        turns: Vec<(String, bool)>,
        node_meta: Vec<(String, String)>,
    }

    fn planned(ops: &[WriteOp]) -> Planned {
        let plan = WritePlan::new(ops);
        assert!(plan.agents.is_empty());
        Planned {
            in_order: plan.in_order.iter().map(|op| op.name()).collect(),
            artifacts: plan.artifacts.iter().map(|a| a.meta.artifact_id.clone()).collect(),
            tasks: plan.tasks.iter().map(|(t, seq)| (t.task_id.clone(), *seq)).collect(),
            events: plan.events.iter().map(|e| (e.task_id.clone(), e.seq)).collect(),
            turns: plan.turns.iter().map(|t| (t.task.task_id.clone(), t.new_turn.is_some())).collect(),
            node_meta: plan.node_meta.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    fn owned<const N: usize>(pairs: [(&str, u64); N]) -> Vec<(String, u64)> {
        pairs.iter().map(|(id, seq)| ((*id).to_owned(), *seq)).collect()
    }

    #[test]
    fn a_batch_is_grouped_by_statement() {
        let mut with_artifacts = task_write("c", 1, None, false);
        if let WriteOp::Task { artifacts, .. } = &mut with_artifacts {
            *artifacts = vec![artifact("x"), artifact("y")];
        }
        let cases: Vec<(&str, Vec<WriteOp>, Planned)> = vec![
            ("empty batch", vec![], Planned::default()),
            (
                "a task written twice keeps one row, the last, where it first appeared; events and turns of both",
                vec![
                    task_write("a", 1, Some("t"), true),
                    task_write("b", 1, None, false),
                    task_write("a", 2, Some("t"), false),
                ],
                Planned {
                    tasks: owned([("a", 2), ("b", 1)]),
                    events: owned([("a", 1), ("b", 1), ("a", 2)]),
                    turns: vec![("a".into(), true), ("a".into(), false)],
                    ..Planned::default()
                },
            ),
            (
                "thread and runtime writes keep arrival order; node keys keep every value",
                vec![
                    WriteOp::LaunchEnded {
                        launch_id: "l".into(),
                        status: "exited".into(),
                        exit_code: Some(0),
                        error: None,
                        release_lease: true,
                    },
                    WriteOp::NodeMeta { key: "k".into(), value: "1".into() },
                    WriteOp::ThreadState {
                        thread_id: "t".into(),
                        status: crate::model::ThreadStatus::Active,
                        interruption_reason: None,
                    },
                    with_artifacts,
                    WriteOp::ReleaseLeases(vec!["l".into()]),
                    WriteOp::NodeMeta { key: "k".into(), value: "2".into() },
                ],
                Planned {
                    in_order: vec!["launch ended", "thread state", "lease release"],
                    artifacts: vec!["x".into(), "y".into()],
                    tasks: owned([("c", 1)]),
                    events: owned([("c", 1)]),
                    node_meta: vec![("k".into(), "1".into()), ("k".into(), "2".into())],
                    ..Planned::default()
                },
            ),
        ];
        for (name, ops, expected) in cases {
            assert_eq!(planned(&ops), expected, "{name}");
        }
    }

    #[test]
    fn multi_row_statements_bind_every_column_of_every_row_within_sqlites_limit() {
        const SQLITE_MAX_VARIABLES: usize = 32_766;
        let (t, e, a) = (task("a"), event("a", 1), artifact("x"));
        let q = QueuedMessage {
            identity: "ag::w::i::s".into(),
            source_topic: "ag::w::i::t".into(),
            message_type: 1,
            workspace: "w".into(),
            payload: std::sync::Arc::new(vec![1]),
            created_at: 0,
        };

        let statements = [
            ("artifacts", tasks::insert_artifacts_statement(&[&a, &a, &a]).sql()),
            ("tasks", tasks::upsert_tasks_statement(&[(&t, 1), (&t, 2), (&t, 3)]).sql()),
            ("events", tasks::insert_events_statement(&[&e, &e, &e]).sql()),
            ("aether messages", aether::enqueue_statement(&[&q, &q, &q]).sql()),
        ];
        for (name, sql) in statements {
            let sql = sql.as_str();
            let columns = sql.split_once('(').and_then(|(_, rest)| rest.split_once(')')).map(|(list, _)| list);
            let columns = columns.map_or(0, |list| list.split(',').count());
            assert!(columns > 0, "{name}: {sql}");
            assert_eq!(sql.matches("(?").count(), 3, "{name}: one tuple per row: {sql}");
            assert_eq!(sql.matches('?').count(), 3 * columns, "{name}: one bind per column: {sql}");
            assert!(ROWS_PER_STATEMENT * columns <= SQLITE_MAX_VARIABLES, "{name}: a full chunk fits");
        }
    }

    #[tokio::test]
    async fn aether_messages_are_queued_paged_delivered_and_expired() -> Result<(), Box<dyn std::error::Error>> {
        let db = Db::open(&DatabaseLocation::Memory).await?;
        let (storage, _) = Actor::spawn(None, StorageActor, StorageArgs { db: db.clone() }).await?;
        let row = |identity: &str, n: u8, created_at: i64| QueuedMessage {
            identity: identity.into(),
            source_topic: "ag::w::i::a".into(),
            message_type: 1,
            workspace: "w".into(),
            payload: std::sync::Arc::new(vec![n; usize::from(n)]),
            created_at,
        };
        let batch = (1..=5).map(|n| row("ag::w::i::b", n, 1_000)).chain([row("ag::w::i::c", 9, 10)]).collect();
        let write = |op: WriteOp| ask(&storage, "storage", Duration::from_secs(10), |r| StorageMsg::Write(op, r));
        write(WriteOp::AetherEnqueue(batch)).await?.map_err(|e| e.to_string())?;
        let reader = db.reader();
        let page = reader.aether_messages_page("ag::w::i::b", 0, 0, 3).await?;
        assert_eq!(page.iter().map(|m| m.payload.len()).collect::<Vec<_>>(), vec![1, 2, 3], "publish order");
        assert!(page.windows(2).all(|w| w[0].seq < w[1].seq));
        let mut totals = reader.aether_message_totals(0, i64::MAX).await?;
        totals.sort();
        assert_eq!(totals, vec![("ag::w::i::b".into(), 5, 15), ("ag::w::i::c".into(), 1, 9)]);
        // Returned by a closing stream after the page was read: at the front, in their order.
        write(WriteOp::AetherEnqueueFront(vec![row("ag::w::i::b", 7, 1_000), row("ag::w::i::b", 8, 1_000)]))
            .await?
            .map_err(|e| e.to_string())?;
        // Handed: the page's seqs are deleted, not the rows put in front of it meanwhile.
        let handed =
            WriteOp::AetherDelivered { identity: "ag::w::i::b".into(), from_seq: page[0].seq, upto_seq: page[2].seq };
        write(handed).await?.map_err(|e| e.to_string())?;
        let rest = reader.aether_messages_page("ag::w::i::b", i64::MIN, 0, 10).await?;
        assert_eq!(rest.iter().map(|m| m.payload.len()).collect::<Vec<_>>(), vec![7, 8, 4, 5]);
        // A second return goes in front of the first.
        write(WriteOp::AetherEnqueueFront(vec![row("ag::w::i::b", 6, 1_000)])).await?.map_err(|e| e.to_string())?;
        let rest = reader.aether_messages_page("ag::w::i::b", i64::MIN, 0, 10).await?;
        assert_eq!(rest.iter().map(|m| m.payload.len()).collect::<Vec<_>>(), vec![6, 7, 8, 4, 5]);
        let (first, last) = (rest[0].seq, rest[2].seq);
        let handed = WriteOp::AetherDelivered { identity: "ag::w::i::b".into(), from_seq: first, upto_seq: last };
        write(handed).await?.map_err(|e| e.to_string())?;
        let rest = reader.aether_messages_page("ag::w::i::b", i64::MIN, 0, 10).await?;
        assert_eq!(rest.iter().map(|m| m.payload.len()).collect::<Vec<_>>(), vec![4, 5]);
        // Past the retention: invisible to replay, then swept.
        assert!(reader.aether_messages_page("ag::w::i::c", 0, 100, 10).await?.is_empty());
        assert_eq!(reader.aether_message_totals(0, 100).await?, vec![("ag::w::i::c".into(), 1, 9)]);
        write(WriteOp::AetherExpire { before_ms: 100 }).await?.map_err(|e| e.to_string())?;
        assert!(reader.aether_messages_page("ag::w::i::c", 0, 0, 10).await?.is_empty());
        assert_eq!(reader.aether_messages_page("ag::w::i::b", 0, 0, 10).await?.len(), 2);
        storage.drain_and_wait(Some(Duration::from_secs(5))).await?;
        Ok(())
    }

    #[tokio::test]
    async fn aether_agents_are_registered_again_keeping_their_first_time() -> Result<(), Box<dyn std::error::Error>> {
        let db = Db::open(&DatabaseLocation::Memory).await?;
        let (storage, _) = Actor::spawn(None, StorageActor, StorageArgs { db: db.clone() }).await?;
        let write = |w: AgentWrite| write_applied(&storage, |applied| WriteOp::AetherAgent { write: w, applied });
        let bot = AetherAgentRecord {
            implementation: "acme/bot".into(),
            orchestrator_profile: "local".into(),
            launch_params: [("profile".to_owned(), "local".to_owned())].into(),
            extensions: vec!["urn:x".into()],
            registered_at: 1_000,
            updated_at: 1_000,
            ..AetherAgentRecord::default()
        };
        assert!(write(AgentWrite::Register(bot.clone())).await?);
        let again =
            AetherAgentRecord { description: "v2".into(), registered_at: 5_000, updated_at: 5_000, ..bot.clone() };
        assert!(write(AgentWrite::Register(again)).await?);
        let all = db.reader().aether_agents().await?;
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].description.as_str(), all[0].registered_at, all[0].updated_at), ("v2", 1_000, 5_000));
        assert_eq!(all[0].extensions, vec!["urn:x".to_owned()]);
        let stranger = AetherAgentRecord { implementation: "nobody".into(), ..bot.clone() };
        assert!(!write(AgentWrite::Update(stranger)).await?, "an update of an unregistered one is not applied");
        assert!(write(AgentWrite::Delete("acme/bot".into())).await?);
        assert!(!write(AgentWrite::Delete("acme/bot".into())).await?);
        assert!(db.reader().aether_agents().await?.is_empty());
        storage.drain_and_wait(Some(Duration::from_secs(5))).await?;
        Ok(())
    }

    /// A conditional write through the storage actor, and whether it was applied.
    async fn write_applied(
        storage: &ActorRef<StorageMsg>,
        op: impl FnOnce(AppliedSlot) -> WriteOp,
    ) -> Result<bool, Box<dyn std::error::Error>> {
        let applied = AppliedSlot::default();
        let op = op(applied.clone());
        ask(storage, "storage", Duration::from_secs(10), |r| StorageMsg::Write(op, r))
            .await?
            .map_err(|e| e.to_string())?;
        Ok(applied.applied())
    }

    #[tokio::test]
    async fn aether_acl_rules_are_one_per_principal_and_resource() -> Result<(), Box<dyn std::error::Error>> {
        let db = Db::open(&DatabaseLocation::Memory).await?;
        let (storage, _) = Actor::spawn(None, StorageActor, StorageArgs { db: db.clone() }).await?;
        let write = |w: AclWrite| write_applied(&storage, |applied| WriteOp::AetherAcl { write: w, applied });
        let rule = crate::model::acl_rule::Rule {
            rule_id: "r1".into(),
            principal_type: "agent".into(),
            principal_id: "i::s".into(),
            resource_type: "workspace".into(),
            resource_id: "w".into(),
            access_level: 20,
            granted_at: 10,
            ..Default::default()
        };
        assert!(write(AclWrite::Grant(rule.clone())).await?);
        let regrant =
            crate::model::acl_rule::Rule { rule_id: "r2".into(), access_level: 10, granted_at: 20, ..rule.clone() };
        assert!(write(AclWrite::Grant(regrant)).await?);
        let all = db.reader().aether_acl_rules().await?;
        assert_eq!(all.len(), 1, "one rule per principal and resource");
        assert_eq!((all[0].rule_id.as_str(), all[0].access_level, all[0].granted_at), ("r1", 10, 20));
        assert!(!write(AclWrite::Delete { rule_id: "r2".into() }).await?);
        assert!(write(AclWrite::Delete { rule_id: "r1".into() }).await?);
        assert!(db.reader().aether_acl_rules().await?.is_empty());
        storage.drain_and_wait(Some(Duration::from_secs(5))).await?;
        Ok(())
    }

    #[tokio::test]
    async fn aether_workspaces_are_created_once_updated_and_deleted() -> Result<(), Box<dyn std::error::Error>> {
        let db = Db::open(&DatabaseLocation::Memory).await?;
        let (storage, _) = Actor::spawn(None, StorageActor, StorageArgs { db: db.clone() }).await?;
        let write =
            |w: WorkspaceWrite| write_applied(&storage, |applied| WriteOp::AetherWorkspace { write: w, applied });
        let ws = WorkspaceRecord {
            workspace_id: "ws-1".into(),
            display_name: "One".into(),
            metadata: [("team".to_owned(), "ops".to_owned())].into(),
            created_at: 1_000,
            updated_at: 1_000,
            ..WorkspaceRecord::default()
        };
        assert!(write(WorkspaceWrite::Create(ws.clone())).await?);
        assert!(!write(WorkspaceWrite::Create(WorkspaceRecord { display_name: "Two".into(), ..ws.clone() })).await?);
        let renamed =
            WorkspaceRecord { display_name: "Renamed".into(), created_at: 0, updated_at: 2_000, ..ws.clone() };
        assert!(write(WorkspaceWrite::Update(renamed)).await?);
        let missing = WorkspaceRecord { workspace_id: "nope".into(), ..ws.clone() };
        assert!(!write(WorkspaceWrite::Update(missing)).await?);
        let all = db.reader().aether_workspaces().await?;
        let ids: Vec<&str> = all.iter().map(|w| w.workspace_id.as_str()).collect();
        assert_eq!(ids, ["default", "ws-1"], "the seeded default, then ours");
        assert_eq!((all[1].display_name.as_str(), all[1].created_at, all[1].updated_at), ("Renamed", 1_000, 2_000));
        assert_eq!(all[1].metadata.get("team").map(String::as_str), Some("ops"));
        assert!(write(WorkspaceWrite::Delete("ws-1".into())).await?);
        assert!(!write(WorkspaceWrite::Delete("ws-1".into())).await?);
        assert_eq!(db.reader().aether_workspaces().await?.len(), 1);
        storage.drain_and_wait(Some(Duration::from_secs(5))).await?;
        Ok(())
    }

    /// Task ids whose indexed text contains `needle`, straight from the index.
    async fn indexed(db: &Db, needle: &str) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT t.task_id FROM task_text x JOIN tasks t ON t.rowid = x.rowid WHERE task_text MATCH ?1 ORDER BY 1",
        )
        .bind(format!("\"{needle}\""))
        .fetch_all(&db.reader)
        .await
    }

    fn said(id: &str, seq: u64, message: &str) -> WriteOp {
        let mut e = event(id, seq);
        e.message = Some(message.into());
        WriteOp::Task {
            task: Box::new(task(id)),
            last_seq: seq,
            events: vec![e],
            artifacts: vec![],
            new_turn: None,
            claim: None,
        }
    }

    #[tokio::test]
    async fn the_text_index_follows_the_writes_in_passes_and_catches_up_after_a_crash()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = Db::open(&DatabaseLocation::File(dir.path().join("t.db").display().to_string())).await?;
        let (storage, _) = Actor::spawn(None, StorageActor, StorageArgs { db: db.clone() }).await?;
        let write = |op| ask(&storage, "storage", Duration::from_secs(10), |r| StorageMsg::Write(op, r));
        write(said("a", 1, "alpha first")).await?.map_err(|e| e.to_string())?;
        write(said("a", 2, "alpha second")).await?.map_err(|e| e.to_string())?;
        write(said("b", 1, "beta first")).await?.map_err(|e| e.to_string())?;
        // A search's sync indexes every acknowledged write, each task with its last text.
        ask(&storage, "storage", Duration::from_secs(10), StorageMsg::SyncTextIndex)
            .await?
            .map_err(|e| e.to_string())?;
        assert_eq!(indexed(&db, "second").await?, vec!["a"]);
        assert!(indexed(&db, "alpha first").await?.is_empty(), "a's earlier text was replaced");
        assert_eq!(indexed(&db, "beta").await?, vec!["b"]);
        // Left alone, the timed pass indexes a write without anyone asking.
        write(said("c", 1, "gamma")).await?.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while indexed(&db, "gamma").await?.is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the timed pass never ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let passes = ask(&storage, "storage", Duration::from_secs(10), StorageMsg::Stats).await?.text_passes;
        assert!(passes >= 2, "one pass asked for, one timed: {passes}");
        // A crash before the pass: the actor is killed with texts in its backlog.
        write(said("a", 3, "alpha third")).await?.map_err(|e| e.to_string())?;
        write(said("d", 1, "delta")).await?.map_err(|e| e.to_string())?;
        storage.kill();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while storage.get_status() != ractor::ActorStatus::Stopped {
            assert!(tokio::time::Instant::now() < deadline, "the killed actor never stopped");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(indexed(&db, "delta").await?.is_empty(), "the crash kept delta from its pass");
        // The next start indexes what the crash kept back, from the stored events.
        let (storage, _) = Actor::spawn(None, StorageActor, StorageArgs { db: db.clone() }).await?;
        assert_eq!(indexed(&db, "delta").await?, vec!["d"]);
        assert_eq!(indexed(&db, "third").await?, vec!["a"]);
        assert_eq!(indexed(&db, "gamma").await?, vec!["c"], "untouched tasks keep their text");
        // A graceful stop indexes its backlog.
        let write = |op| ask(&storage, "storage", Duration::from_secs(10), |r| StorageMsg::Write(op, r));
        write(said("e", 1, "epsilon")).await?.map_err(|e| e.to_string())?;
        storage.drain_and_wait(Some(Duration::from_secs(5))).await?;
        assert_eq!(indexed(&db, "epsilon").await?, vec!["e"]);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_group_committed_and_a_bad_one_fails_alone() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let db = Db::open(&DatabaseLocation::File(dir.path().join("t.db").display().to_string())).await?;
        let (storage, _) = Actor::spawn(None, StorageActor, StorageArgs { db: db.clone() }).await?;
        let mut writes = Vec::new();
        for i in 0..200 {
            let storage = storage.clone();
            writes.push(tokio::spawn(async move {
                let id = format!("task-{i}");
                let op = WriteOp::Task {
                    task: Box::new(task(&id)),
                    last_seq: 1,
                    events: vec![event(&id, 1)],
                    artifacts: vec![],
                    new_turn: None,
                    claim: None,
                };
                ask(&storage, "storage", Duration::from_secs(10), |r| StorageMsg::Write(op, r)).await
            }));
        }
        for w in writes {
            w.await??.map_err(|e| e.to_string())?;
        }
        // A duplicate (task_id, seq) is a constraint violation: it fails alone, its neighbour in
        // the same batch still commits.
        let dup = WriteOp::Task {
            task: Box::new(task("task-0")),
            last_seq: 1,
            events: vec![event("task-0", 1)],
            artifacts: vec![],
            new_turn: None,
            claim: None,
        };
        let ok_neighbour = WriteOp::NodeMeta { key: "k".into(), value: "v".into() };
        let (r1, r2) = tokio::join!(
            ask(&storage, "storage", Duration::from_secs(10), |r| StorageMsg::Write(dup, r)),
            ask(&storage, "storage", Duration::from_secs(10), |r| StorageMsg::Write(ok_neighbour, r)),
        );
        assert!(matches!(r1?, Err(StorageError::Rejected(_))));
        r2?.map_err(|e| e.to_string())?;
        let stats = ask(&storage, "storage", Duration::from_secs(10), StorageMsg::Stats).await?;
        assert!(stats.max_batch > 1, "concurrent writes share commits: {stats:?}");
        assert!(stats.commits < 202, "fewer commits than writes: {stats:?}");
        let reader = db.reader();
        assert_eq!(reader.events("task-199", 0, 10).await?.len(), 1);
        assert_eq!(reader.node_meta("k").await?.as_deref(), Some("v"));
        assert_eq!(reader.task("task-7").await?.map(|t| t.last_seq), Some(1));
        storage.drain_and_wait(Some(Duration::from_secs(5))).await?;
        Ok(())
    }
}
