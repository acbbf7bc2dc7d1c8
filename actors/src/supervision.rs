//! Helpers every actor shares: bounded requests between actors, the actor directory slots, and
//! the structured log lines of supervision events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorCell, ActorRef, Message, RpcReplyPort};

use crate::error::AskError;

/// Default budget for a request to another actor. Requests never wait without a bound.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a request to `actor` and waits at most `timeout` for the answer.
pub async fn ask<M, R>(
    actor: &ActorRef<M>,
    name: &'static str,
    timeout: Duration,
    build: impl FnOnce(RpcReplyPort<R>) -> M,
) -> Result<R, AskError>
where
    M: Message,
    R: Send + 'static,
{
    match actor.call(build, Some(timeout)).await {
        Ok(CallResult::Success(r)) => Ok(r),
        Ok(CallResult::Timeout) => Err(AskError::Timeout(name, timeout)),
        Ok(CallResult::SenderError) => Err(AskError::Dropped(name)),
        Err(_) => Err(AskError::Unavailable(name)),
    }
}

/// The current incarnation of a long-lived actor. Supervisors replace the reference when they
/// restart the actor, so holders of the slot always reach the live one.
pub struct Slot<M: Message> {
    /// `None` while the actor is down (between a failure and its restart).
    current: RwLock<Option<ActorRef<M>>>,
    /// Name used in errors and logs.
    name: &'static str,
    /// How many incarnations were installed: the first start plus every restart (the node's
    /// supervision view reports restarts from it).
    installs: AtomicU64,
}

impl<M: Message> Slot<M> {
    /// An empty slot.
    pub fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Slot { current: RwLock::new(None), name, installs: AtomicU64::new(0) })
    }

    /// The live actor, if any.
    pub fn get(&self) -> Result<ActorRef<M>, AskError> {
        let guard = match self.current.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        guard.clone().ok_or(AskError::Unavailable(self.name))
    }

    /// Installs (or clears) the live actor.
    pub fn set(&self, actor: Option<ActorRef<M>>) {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if actor.is_some() {
            self.installs.fetch_add(1, Ordering::Relaxed);
        }
        *guard = actor;
    }

    /// How often the actor was restarted: incarnations installed after the first.
    pub fn restarts(&self) -> u64 {
        self.installs.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// Sends a message without waiting.
    pub fn cast(&self, msg: M) -> Result<(), AskError> {
        self.get()?.cast(msg).map_err(|_| AskError::Unavailable(self.name))
    }

    /// Sends a request and waits at most `timeout`.
    pub async fn ask<R: Send + 'static>(
        &self,
        timeout: Duration,
        build: impl FnOnce(RpcReplyPort<R>) -> M,
    ) -> Result<R, AskError> {
        let actor = self.get()?;
        ask(&actor, self.name, timeout, build).await
    }

    /// The slot's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// The display name of an actor for logs.
pub fn actor_label(cell: &ActorCell) -> String {
    cell.get_name().unwrap_or_else(|| format!("{}", cell.get_id()))
}

/// A one-way port typed by what is said, not by who listens: a lower layer notifies a higher one
/// (a task actor tells the thread coordinator a turn settled) without importing it. The root,
/// which knows both, builds it.
pub struct Notify<T>(Arc<dyn Fn(T) + Send + Sync>);

impl<T> Clone for Notify<T> {
    fn clone(&self) -> Self {
        Notify(self.0.clone())
    }
}

impl<T> Notify<T> {
    /// A port that hands each notification to `deliver` (which must not block).
    pub fn new(deliver: impl Fn(T) + Send + Sync + 'static) -> Self {
        Notify(Arc::new(deliver))
    }

    /// A port nobody listens to (tests, tools).
    pub fn discard() -> Self {
        Notify(Arc::new(|_| {}))
    }

    /// Says `what`; delivery is best effort (a listener that is down misses it).
    pub fn send(&self, what: T) {
        (self.0)(what)
    }
}

/// Casts `msg` to the live incarnation in `slot`, ignoring a slot that is empty right now: for
/// notifications whose loss the receiver recovers from (it re-reads durable state on start).
pub fn cast_or_drop<M: Message>(slot: &Slot<M>, msg: M) {
    if let Err(e) = slot.cast(msg) {
        tracing::debug!(error = %e, "notification dropped");
    }
}
