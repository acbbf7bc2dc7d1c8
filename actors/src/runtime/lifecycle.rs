//! The life of one runtime process (a stdio agent or an HTTP server) as a pure state machine:
//! down → launching → ready → stopping / crashed, the acquisitions waiting for a launch, the
//! dispatches waiting for the process to come back, crash handling (relaunch with backoff, a
//! crash loop pauses launches), idle stop and launch failure. Each input returns the
//! [`Effect`]s the runtime actor carries out; the actor does all IO (spawning, signals,
//! storage, replies) and feeds the outcomes back. Waiters are named by [`WaiterId`]; the actor
//! keeps their reply ports.

use std::time::Duration;

use tokio::time::Instant;

use super::queue::Queued;
use super::{LaunchPhase, RuntimeError};
use crate::model::RuntimeState;
use crate::restart::{RestartDecision, RestartPolicy, RestartTracker};

/// An acquisition waiting for the runtime (the actor maps it to its reply port).
pub type WaiterId = u64;

/// Shortest idle check interval.
const MIN_IDLE_CHECK: Duration = Duration::from_millis(50);

/// Where the process is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No process (never started, crashed, stopped, or failed to launch).
    Down,
    /// Started, not ready yet; the pid once spawned (none for an external server).
    Launching { pid: Option<u32> },
    /// Ready for tasks.
    Ready,
    /// Being killed after a stop; acquisitions wait for it to be gone.
    Stopping,
}

impl Phase {
    /// `state` of the runtime's health (`GET /v1/targets`).
    pub fn health_state(self) -> RuntimeState {
        match self {
            Phase::Down | Phase::Stopping => RuntimeState::Down,
            Phase::Launching { .. } => RuntimeState::Launching,
            Phase::Ready => RuntimeState::Up,
        }
    }
}

/// How a process ended, as launch history records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndStatus {
    /// It never became ready.
    Failed,
    /// It exited on its own after being ready.
    Exited,
    /// It was stopped (API, idle, shutdown).
    Stopped,
}

impl EndStatus {
    /// `launch_history.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndStatus::Failed => "failed",
            EndStatus::Exited => "exited",
            EndStatus::Stopped => "stopped",
        }
    }
}

/// What happens to the process group when the process is taken down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// Kill it in the background (it exited or failed; helpers may linger).
    Background,
    /// Kill it in the background and report [`ProcessLifecycle::killed`] with this generation
    /// when it is gone (a stop: acquisitions wait for it).
    Report { generation: u64 },
}

/// Why a launch failed before the process was ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaunchFailure {
    /// `initialize` answered with an error (stdio).
    Initialize(String),
    /// The health check gave up (HTTP).
    Unhealthy(String),
    /// Nothing answered within the launch timeout.
    Deadline,
    /// `initialize` was not answered within `initialize_timeout_ms` (stdio): the process is
    /// killed and relaunched once; a second timeout fails the launch.
    InitializeTimeout,
}

/// What the runtime actor must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect<D> {
    /// Tell a waiting task where the launch stands.
    Tell { waiter: WaiterId, phase: LaunchPhase },
    /// Answer these waiters with a handle to the ready runtime (`ready_ms`: how long the launch
    /// took, for a launch).
    Grant { waiters: Vec<WaiterId>, ready_ms: Option<f64> },
    /// Answer these waiters with an error, and fail these dispatches with it.
    Refuse { waiters: Vec<WaiterId>, dispatches: Vec<D>, error: RuntimeError },
    /// Start the process of incarnation `generation` (spawn, then `initialize` or the health
    /// check, and arm the launch deadline and, if set, the `initialize` bound); report
    /// [`ProcessLifecycle::spawned`] or [`ProcessLifecycle::spawn_failed`].
    Launch { generation: u64, initialize_timeout: Option<Duration> },
    /// Cast a relaunch for `generation` after `after` (crash backoff).
    RelaunchIn { generation: u64, after: Duration },
    /// Hand these dispatches to their sessions (the runtime is ready).
    Route(Vec<D>),
    /// Record the process's end (launch history, lease release) with `reason` (empty: none),
    /// tell every session the runtime is gone, and kill the process group as `kill` says.
    TakeDown { status: EndStatus, reason: String, exit_code: Option<i32>, kill: Kill },
    /// The process became ready: record it.
    Recorded,
    /// Cast an idle check for `generation` after `after`.
    IdleCheckIn { generation: u64, after: Duration },
    /// A crash will be followed by a relaunch on demand (logged).
    Restarting { attempt: u32, backoff: Duration },
    /// Too many crashes within the window: launches are paused (logged).
    CrashLoop { failures: u32 },
    /// A stop finished: answer the stop requests.
    Stopped,
}

/// How a process ended, as its exit watcher saw it.
#[derive(Clone, Copy, Debug)]
pub struct ProcessExit<'a> {
    /// Exit status in words (`exit status 1`, `killed by signal 9`).
    pub status: &'a str,
    pub exit_code: Option<i32>,
    /// Its last stderr lines.
    pub tail: &'a str,
}

/// What does not change over a runtime's life.
#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// For messages.
    pub target_id: String,
    /// A launch starts a process (stdio agents, managed HTTP servers); an external HTTP server
    /// is only health-checked, so waiting tasks get no launch phases.
    pub spawns: bool,
    /// A stdio target with `launch.mode: external`: the node cannot reach it, acquisitions fail.
    pub unreachable_external: bool,
    /// `launch.mode: managed`: a crash with work in flight relaunches without waiting for a task.
    pub eager_relaunch: bool,
    /// Bound on a launch (for messages; the actor arms the deadline).
    pub launch_timeout: Duration,
    /// `launch.idle_timeout_ms`.
    pub idle_timeout: Option<Duration>,
}

/// The life of one runtime process. Pure: time and jitter are inputs.
#[derive(Debug)]
pub struct ProcessLifecycle<D> {
    config: LifecycleConfig,
    /// Where the process is.
    phase: Phase,
    /// Incarnation of the process; reports about older ones are stale.
    generation: u64,
    /// A process exists (spawned, not taken down): its exit is news.
    has_process: bool,
    /// Acquisitions waiting for the launch in progress (one launch serves them all).
    waiters: Vec<WaiterId>,
    /// Dispatches waiting for the runtime to come back (re-queued after a crash).
    requeued: Vec<D>,
    /// Crash history of the process.
    restarts: RestartTracker,
    /// No launch before this instant (crash backoff).
    launch_not_before: Option<Instant>,
    /// Too many crashes: acquisitions fail until this instant.
    blocked_until: Option<Instant>,
    /// Last time work started or ended (idle stop).
    last_activity: Instant,
    /// `initialize_timeout_ms` of the latest acquisition that set it: bounds each `initialize`
    /// of the next launches (none: only the launch timeout does).
    initialize_timeout: Option<Duration>,
    /// The launch in progress is the one relaunch after an `initialize` timeout: a second
    /// timeout fails it.
    relaunched_after_timeout: bool,
}

impl<D: Queued> ProcessLifecycle<D> {
    /// A runtime that is down.
    pub fn new(config: LifecycleConfig, now: Instant) -> Self {
        ProcessLifecycle {
            config,
            phase: Phase::Down,
            generation: 0,
            has_process: false,
            waiters: Vec::new(),
            requeued: Vec::new(),
            restarts: RestartTracker::new(RestartPolicy::WORKER),
            launch_not_before: None,
            blocked_until: None,
            last_activity: now,
            initialize_timeout: None,
            relaunched_after_timeout: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Launches are paused after a crash loop until this instant (none: not paused).
    pub fn blocked_until(&self) -> Option<Instant> {
        self.blocked_until
    }

    /// A forced start: forgets a crash-loop pause and the crash history; `true` if launches
    /// were paused.
    pub fn clear_pause(&mut self) -> bool {
        let was = self.blocked_until.take().is_some();
        if was {
            self.restarts = RestartTracker::new(RestartPolicy::WORKER);
            self.launch_not_before = None;
        }
        was
    }

    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Work started or ended (idle stop counts from here).
    pub fn touch(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// A task (or the API) wants the runtime; `initialize_timeout`: its `initialize_timeout_ms`
    /// (kept for the next launches when set).
    pub fn acquire(
        &mut self,
        now: Instant,
        waiter: WaiterId,
        launch_if_down: bool,
        initialize_timeout: Option<Duration>,
    ) -> Vec<Effect<D>> {
        if initialize_timeout.is_some() {
            self.initialize_timeout = initialize_timeout;
        }
        let refuse = |error| vec![Effect::Refuse { waiters: vec![waiter], dispatches: Vec::new(), error }];
        let down = matches!(self.phase, Phase::Down | Phase::Stopping);
        match self.phase {
            Phase::Ready => return vec![Effect::Grant { waiters: vec![waiter], ready_ms: None }],
            _ if down && self.config.unreachable_external => {
                return refuse(RuntimeError::Unavailable(format!(
                    "target {} is launch.mode external and its runtime is not connected (an ACP agent is reached through a process the node launches)",
                    self.config.target_id
                )));
            }
            _ if down && !launch_if_down => {
                return refuse(RuntimeError::Unavailable("launch_if_down=false and the runtime is not running".into()));
            }
            _ if down && self.blocked_until.is_some_and(|t| t > now) => {
                return refuse(RuntimeError::Unavailable(format!(
                    "runtime of {} is crash-looping (exited repeatedly); launches paused",
                    self.config.target_id
                )));
            }
            _ => {}
        }
        let mut out = Vec::new();
        if self.config.spawns {
            out.push(Effect::Tell { waiter, phase: LaunchPhase::PendingLaunch });
            if let Phase::Launching { pid: Some(pid) } = self.phase {
                out.push(Effect::Tell { waiter, phase: LaunchPhase::Launching { pid } });
            }
        }
        self.waiters.push(waiter);
        out.extend(self.ensure_launch(now));
        out
    }

    /// A task's dispatch: routed if the runtime is ready, else kept until it is (launching it).
    pub fn submit(&mut self, now: Instant, d: D) -> Vec<Effect<D>> {
        if self.phase == Phase::Ready {
            self.last_activity = now;
            return vec![Effect::Route(vec![d])];
        }
        self.requeued.push(d);
        self.ensure_launch(now)
    }

    /// Dispatches a dying session had not started.
    pub fn requeue(&mut self, now: Instant, dispatches: Vec<D>) -> Vec<Effect<D>> {
        if dispatches.is_empty() {
            return Vec::new();
        }
        self.requeued.extend(dispatches);
        if self.phase == Phase::Ready {
            self.last_activity = now;
            return vec![Effect::Route(std::mem::take(&mut self.requeued))];
        }
        self.ensure_launch(now)
    }

    /// Takes back a kept dispatch that was cancelled before the runtime came back.
    pub fn cancel_requeued(&mut self, task_id: &str) -> Option<D> {
        let pos = self.requeued.iter().position(|d| d.task_id() == task_id)?;
        Some(self.requeued.remove(pos))
    }

    /// Launches now, after the crash backoff, or not at all (not down).
    fn ensure_launch(&mut self, now: Instant) -> Vec<Effect<D>> {
        if self.phase != Phase::Down {
            return Vec::new();
        }
        if let Some(until) = self.launch_not_before.filter(|t| *t > now) {
            return vec![Effect::RelaunchIn { generation: self.generation, after: until - now }];
        }
        self.launch()
    }

    fn launch(&mut self) -> Vec<Effect<D>> {
        self.generation += 1;
        self.phase = Phase::Launching { pid: None };
        vec![Effect::Launch { generation: self.generation, initialize_timeout: self.initialize_timeout }]
    }

    /// The process of the launch in progress was spawned.
    pub fn spawned(&mut self, pid: u32) -> Vec<Effect<D>> {
        self.phase = Phase::Launching { pid: Some(pid) };
        self.has_process = true;
        let phase = LaunchPhase::Launching { pid };
        self.waiters.iter().map(|&waiter| Effect::Tell { waiter, phase }).collect()
    }

    /// The process could not be started at all.
    pub fn spawn_failed(&mut self, detail: String) -> Vec<Effect<D>> {
        self.phase = Phase::Down;
        vec![self.refuse_all(RuntimeError::LaunchFailed(detail))]
    }

    /// The launch of `generation` became ready (`initialize` answered, health check 2xx).
    pub fn ready(&mut self, now: Instant, generation: u64, ready_ms: Option<f64>) -> Vec<Effect<D>> {
        if !self.launching(generation) {
            return Vec::new();
        }
        self.phase = Phase::Ready;
        self.relaunched_after_timeout = false;
        self.last_activity = now;
        let mut out = vec![Effect::Recorded, Effect::Grant { waiters: std::mem::take(&mut self.waiters), ready_ms }];
        if !self.requeued.is_empty() {
            out.push(Effect::Route(std::mem::take(&mut self.requeued)));
        }
        out.extend(self.idle_check());
        out
    }

    /// The launch of `generation` failed; `tail`: the process's last output lines.
    pub fn launch_failed(&mut self, generation: u64, failure: LaunchFailure, tail: &str) -> Vec<Effect<D>> {
        if !self.launching(generation) {
            return Vec::new();
        }
        let ms = self.config.launch_timeout.as_millis();
        let detail = match failure {
            LaunchFailure::Initialize(e) => format!("initialize failed: {e}{}", suffix("stderr", tail)),
            LaunchFailure::Unhealthy(e) => format!("runtime not healthy within {ms} ms: {e}{}", suffix("output", tail)),
            LaunchFailure::Deadline => {
                format!("runtime did not answer initialize within {ms} ms{}", suffix("stderr", tail))
            }
            LaunchFailure::InitializeTimeout => {
                let init_ms = self.initialize_timeout.map_or(0, |t| t.as_millis());
                if !self.relaunched_after_timeout {
                    // Killed and launched once more for the same waiters and kept work.
                    let reason = format!(
                        "runtime did not answer initialize within {init_ms} ms (initialize_timeout_ms); relaunching once"
                    );
                    let take_down = self.take_down(EndStatus::Failed, reason, None, Kill::Background);
                    self.relaunched_after_timeout = true;
                    let mut out = vec![take_down];
                    out.extend(self.launch());
                    return out;
                }
                format!(
                    "runtime did not answer initialize within {init_ms} ms (initialize_timeout_ms), twice: killed and relaunched once{}",
                    suffix("stderr", tail)
                )
            }
        };
        self.fail_launch(detail, None)
    }

    fn fail_launch(&mut self, detail: String, exit_code: Option<i32>) -> Vec<Effect<D>> {
        let take_down = self.take_down(EndStatus::Failed, detail.clone(), exit_code, Kill::Background);
        vec![take_down, self.refuse_all(RuntimeError::LaunchFailed(detail))]
    }

    /// The process of `generation` exited; `in_flight`: tasks its sessions held; `jitter`
    /// spreads the relaunch backoff.
    pub fn exited(
        &mut self,
        now: Instant,
        generation: u64,
        exit: &ProcessExit<'_>,
        in_flight: usize,
        jitter: f64,
    ) -> Vec<Effect<D>> {
        if generation != self.generation || !self.has_process {
            return Vec::new();
        }
        let ProcessExit { status, exit_code, tail } = *exit;
        if matches!(self.phase, Phase::Launching { .. }) {
            let detail = format!("runtime exited before answering initialize ({status}){}", suffix("stderr", tail));
            return self.fail_launch(detail, exit_code);
        }
        let has_work = in_flight > 0 || !self.waiters.is_empty();
        let reason = format!("runtime exited unexpectedly ({status})");
        let mut out = vec![self.take_down(EndStatus::Exited, reason, exit_code, Kill::Background)];
        match self.restarts.on_failure(now, jitter) {
            RestartDecision::Restart { attempt, backoff } => {
                out.push(Effect::Restarting { attempt, backoff });
                self.launch_not_before = Some(now + backoff);
                if (self.config.eager_relaunch && has_work) || !self.requeued.is_empty() {
                    out.extend(self.ensure_launch(now));
                }
            }
            RestartDecision::Escalate { failures } => {
                out.push(Effect::CrashLoop { failures });
                self.blocked_until = Some(now + RestartPolicy::WORKER.window);
                out.push(self.refuse_all(RuntimeError::Unavailable(format!(
                    "runtime exited {failures} times within {:?}",
                    RestartPolicy::WORKER.window
                ))));
            }
        }
        out
    }

    /// The crash backoff of `generation` passed: launch if anything waits.
    pub fn relaunch(&mut self, generation: u64) -> Vec<Effect<D>> {
        if generation != self.generation
            || self.phase != Phase::Down
            || (self.waiters.is_empty() && self.requeued.is_empty())
        {
            return Vec::new();
        }
        self.launch_not_before = None;
        self.launch()
    }

    /// Stop the runtime (API, idle, shutdown): a process is killed in the background and
    /// [`Effect::Stopped`] comes once it is gone; an external server is only forgotten.
    pub fn stop(&mut self, reason: &str) -> Vec<Effect<D>> {
        let reason = format!("runtime stopped: {reason}");
        match self.phase {
            Phase::Stopping => Vec::new(),
            _ if self.has_process => {
                let kill = Kill::Report { generation: self.generation };
                let take_down = self.take_down(EndStatus::Stopped, reason.clone(), None, kill);
                self.phase = Phase::Stopping;
                vec![take_down, self.refuse_all(RuntimeError::Unavailable(reason))]
            }
            Phase::Down => vec![Effect::Stopped],
            // Not our process: forget it; the next task health-checks it again.
            _ => {
                let take_down = self.take_down(EndStatus::Stopped, reason.clone(), None, Kill::Background);
                vec![take_down, self.refuse_all(RuntimeError::Unavailable(reason)), Effect::Stopped]
            }
        }
    }

    /// The stopped process of `generation` is gone: down, and launch again if tasks wait.
    pub fn killed(&mut self, now: Instant, generation: u64) -> Vec<Effect<D>> {
        if self.phase != Phase::Stopping || generation != self.generation {
            return Vec::new();
        }
        self.phase = Phase::Down;
        let mut out = vec![Effect::Stopped];
        if !self.waiters.is_empty() || !self.requeued.is_empty() {
            out.extend(self.ensure_launch(now));
        }
        out
    }

    /// The idle check of `generation`; `in_flight`: tasks the sessions hold.
    pub fn idle_tick(&mut self, now: Instant, generation: u64, in_flight: usize) -> Vec<Effect<D>> {
        if generation != self.generation || self.phase != Phase::Ready {
            return Vec::new();
        }
        let Some(limit) = self.config.idle_timeout else { return Vec::new() };
        if in_flight == 0 && now.saturating_duration_since(self.last_activity) >= limit {
            return self.stop(&format!("idle for {} ms", limit.as_millis()));
        }
        self.idle_check()
    }

    /// The node shuts down: everything ends now (the actor kills the group itself).
    pub fn shutdown(&mut self) -> Vec<Effect<D>> {
        let take_down = self.take_down(EndStatus::Stopped, "node shutting down".into(), None, Kill::Background);
        vec![take_down, self.refuse_all(RuntimeError::Unavailable("node shutting down".into()))]
    }

    fn launching(&self, generation: u64) -> bool {
        generation == self.generation && matches!(self.phase, Phase::Launching { .. })
    }

    fn take_down(&mut self, status: EndStatus, reason: String, exit_code: Option<i32>, kill: Kill) -> Effect<D> {
        self.phase = Phase::Down;
        self.has_process = false;
        Effect::TakeDown { status, reason, exit_code, kill }
    }

    fn refuse_all(&mut self, error: RuntimeError) -> Effect<D> {
        // Whatever launch sequence there was ended with it.
        self.relaunched_after_timeout = false;
        Effect::Refuse {
            waiters: std::mem::take(&mut self.waiters),
            dispatches: std::mem::take(&mut self.requeued),
            error,
        }
    }

    fn idle_check(&self) -> Vec<Effect<D>> {
        match self.config.idle_timeout {
            Some(limit) => vec![Effect::IdleCheckIn { generation: self.generation, after: limit.max(MIN_IDLE_CHECK) }],
            None => Vec::new(),
        }
    }
}

/// `"; {what}: {tail}"`, or nothing for an empty tail.
fn suffix(what: &str, tail: &str) -> String {
    if tail.is_empty() { String::new() } else { format!("; {what}: {tail}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    type L = ProcessLifecycle<&'static str>;
    type E = Effect<&'static str>;

    fn config() -> LifecycleConfig {
        LifecycleConfig {
            target_id: "t".into(),
            spawns: true,
            unreachable_external: false,
            eager_relaunch: false,
            launch_timeout: Duration::from_secs(60),
            idle_timeout: None,
        }
    }

    /// One input to the lifecycle (times are ms after the start).
    #[derive(Clone, Debug)]
    enum In {
        Acquire(u64, WaiterId, bool),
        /// At, waiter, `initialize_timeout_ms`.
        AcquireInit(u64, WaiterId, u64),
        Submit(u64, &'static str),
        Requeue(u64, Vec<&'static str>),
        Spawned(u32),
        SpawnFailed,
        Ready(u64, u64),
        LaunchFailed(u64, LaunchFailure),
        /// At, generation, in-flight tasks.
        Exited(u64, u64, usize),
        Relaunch(u64),
        Stop,
        Killed(u64, u64),
        Idle(u64, u64, usize),
    }

    fn step(l: &mut L, t0: Instant, input: In) -> Vec<E> {
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        match input {
            In::Acquire(ms, w, launch) => l.acquire(at(ms), w, launch, None),
            In::AcquireInit(ms, w, init) => l.acquire(at(ms), w, true, Some(Duration::from_millis(init))),
            In::Submit(ms, d) => l.submit(at(ms), d),
            In::Requeue(ms, ds) => l.requeue(at(ms), ds),
            In::Spawned(pid) => l.spawned(pid),
            In::SpawnFailed => l.spawn_failed("no such file".into()),
            In::Ready(ms, g) => l.ready(at(ms), g, Some(5.0)),
            In::LaunchFailed(g, f) => l.launch_failed(g, f, "boom"),
            In::Exited(ms, g, in_flight) => {
                let exit = ProcessExit { status: "exit status 1", exit_code: Some(1), tail: "" };
                l.exited(at(ms), g, &exit, in_flight, 1.0)
            }
            In::Relaunch(g) => l.relaunch(g),
            In::Stop => l.stop("requested"),
            In::Killed(ms, g) => l.killed(at(ms), g),
            In::Idle(ms, g, in_flight) => l.idle_tick(at(ms), g, in_flight),
        }
    }

    fn unavailable(msg: &str) -> RuntimeError {
        RuntimeError::Unavailable(msg.into())
    }

    fn take_down(status: EndStatus, reason: &str, exit_code: Option<i32>, kill: Kill) -> E {
        Effect::TakeDown { status, reason: reason.into(), exit_code, kill }
    }

    /// Each case: configuration change, inputs, the effects of the LAST input, the phase after.
    #[test]
    fn transitions() {
        use In::*;
        let grant = |w: Vec<WaiterId>, ms| Effect::Grant { waiters: w, ready_ms: ms };
        let tell = |waiter, phase| Effect::Tell { waiter, phase };
        let launching = |pid| LaunchPhase::Launching { pid };
        let backoff = RestartPolicy::WORKER.base_backoff;
        type Case = (&'static str, fn(&mut LifecycleConfig), Vec<In>, Vec<E>, Phase);
        let cases: Vec<Case> = vec![
            (
                "first acquisition launches and announces",
                |_| {},
                vec![Acquire(0, 1, true)],
                vec![tell(1, LaunchPhase::PendingLaunch), Effect::Launch { generation: 1, initialize_timeout: None }],
                Phase::Launching { pid: None },
            ),
            (
                "a second acquisition shares the launch and learns the pid",
                |_| {},
                vec![Acquire(0, 1, true), Spawned(42), Acquire(1, 2, true)],
                vec![tell(2, LaunchPhase::PendingLaunch), tell(2, launching(42))],
                Phase::Launching { pid: Some(42) },
            ),
            (
                "spawn tells every waiter the pid",
                |_| {},
                vec![Acquire(0, 1, true), Acquire(0, 2, true), Spawned(42)],
                vec![tell(1, launching(42)), tell(2, launching(42))],
                Phase::Launching { pid: Some(42) },
            ),
            (
                "an external server is not announced",
                |c| c.spawns = false,
                vec![Acquire(0, 1, true)],
                vec![Effect::Launch { generation: 1, initialize_timeout: None }],
                Phase::Launching { pid: None },
            ),
            (
                "ready grants every waiter, routes kept work, arms the idle check",
                |c| c.idle_timeout = Some(Duration::from_millis(10)),
                vec![Acquire(0, 1, true), Submit(0, "d1"), Spawned(42), Ready(5, 1)],
                vec![
                    Effect::Recorded,
                    grant(vec![1], Some(5.0)),
                    Effect::Route(vec!["d1"]),
                    Effect::IdleCheckIn { generation: 1, after: Duration::from_millis(50) },
                ],
                Phase::Ready,
            ),
            (
                "ready runtime grants at once",
                |_| {},
                vec![Acquire(0, 1, true), Spawned(1), Ready(1, 1), Acquire(2, 2, false)],
                vec![grant(vec![2], None)],
                Phase::Ready,
            ),
            (
                "ready runtime routes at once",
                |_| {},
                vec![Acquire(0, 1, true), Spawned(1), Ready(1, 1), Submit(2, "d")],
                vec![Effect::Route(vec!["d"])],
                Phase::Ready,
            ),
            (
                "stale ready is ignored",
                |_| {},
                vec![Acquire(0, 1, true), Ready(1, 7)],
                vec![],
                Phase::Launching { pid: None },
            ),
            (
                "launch_if_down=false on a down runtime",
                |_| {},
                vec![Acquire(0, 1, false)],
                vec![Effect::Refuse {
                    waiters: vec![1],
                    dispatches: vec![],
                    error: unavailable("launch_if_down=false and the runtime is not running"),
                }],
                Phase::Down,
            ),
            (
                "an external stdio target is unreachable",
                |c| c.unreachable_external = true,
                vec![Acquire(0, 1, true)],
                vec![Effect::Refuse {
                    waiters: vec![1],
                    dispatches: vec![],
                    error: unavailable(
                        "target t is launch.mode external and its runtime is not connected (an ACP agent is reached through a process the node launches)",
                    ),
                }],
                Phase::Down,
            ),
            (
                "spawn failure refuses waiters and kept work",
                |_| {},
                vec![Submit(0, "d1"), Acquire(0, 1, true), SpawnFailed],
                vec![Effect::Refuse {
                    waiters: vec![1],
                    dispatches: vec!["d1"],
                    error: RuntimeError::LaunchFailed("no such file".into()),
                }],
                Phase::Down,
            ),
            (
                "launch deadline takes the process down with its stderr",
                |_| {},
                vec![Acquire(0, 1, true), Spawned(9), LaunchFailed(1, LaunchFailure::Deadline)],
                vec![
                    take_down(
                        EndStatus::Failed,
                        "runtime did not answer initialize within 60000 ms; stderr: boom",
                        None,
                        Kill::Background,
                    ),
                    Effect::Refuse {
                        waiters: vec![1],
                        dispatches: vec![],
                        error: RuntimeError::LaunchFailed(
                            "runtime did not answer initialize within 60000 ms; stderr: boom".into(),
                        ),
                    },
                ],
                Phase::Down,
            ),
            (
                "an acquisition's initialize timeout bounds the launch",
                |_| {},
                vec![AcquireInit(0, 1, 300)],
                vec![
                    tell(1, LaunchPhase::PendingLaunch),
                    Effect::Launch { generation: 1, initialize_timeout: Some(Duration::from_millis(300)) },
                ],
                Phase::Launching { pid: None },
            ),
            (
                "a first initialize timeout kills the process and relaunches once for the same waiters",
                |_| {},
                vec![AcquireInit(0, 1, 300), Submit(0, "d1"), Spawned(9), LaunchFailed(1, LaunchFailure::InitializeTimeout)],
                vec![
                    take_down(
                        EndStatus::Failed,
                        "runtime did not answer initialize within 300 ms (initialize_timeout_ms); relaunching once",
                        None,
                        Kill::Background,
                    ),
                    Effect::Launch { generation: 2, initialize_timeout: Some(Duration::from_millis(300)) },
                ],
                Phase::Launching { pid: None },
            ),
            (
                "the relaunch tells the waiters its pid and grants them with the kept work",
                |_| {},
                vec![
                    AcquireInit(0, 1, 300),
                    Submit(0, "d1"),
                    Spawned(9),
                    LaunchFailed(1, LaunchFailure::InitializeTimeout),
                    Spawned(10),
                    Ready(700, 2),
                ],
                vec![Effect::Recorded, grant(vec![1], Some(5.0)), Effect::Route(vec!["d1"])],
                Phase::Ready,
            ),
            (
                "a stale initialize timeout of the first process is ignored",
                |_| {},
                vec![
                    AcquireInit(0, 1, 300),
                    Spawned(9),
                    LaunchFailed(1, LaunchFailure::InitializeTimeout),
                    Spawned(10),
                    LaunchFailed(1, LaunchFailure::InitializeTimeout),
                ],
                vec![],
                Phase::Launching { pid: Some(10) },
            ),
            (
                "a second initialize timeout fails the launch naming the timeout",
                |_| {},
                vec![
                    AcquireInit(0, 1, 300),
                    Submit(0, "d1"),
                    Spawned(9),
                    LaunchFailed(1, LaunchFailure::InitializeTimeout),
                    Spawned(10),
                    LaunchFailed(2, LaunchFailure::InitializeTimeout),
                ],
                vec![
                    take_down(
                        EndStatus::Failed,
                        "runtime did not answer initialize within 300 ms (initialize_timeout_ms), twice: killed and relaunched once; stderr: boom",
                        None,
                        Kill::Background,
                    ),
                    Effect::Refuse {
                        waiters: vec![1],
                        dispatches: vec!["d1"],
                        error: RuntimeError::LaunchFailed(
                            "runtime did not answer initialize within 300 ms (initialize_timeout_ms), twice: killed and relaunched once; stderr: boom".into(),
                        ),
                    },
                ],
                Phase::Down,
            ),
            (
                "after a failed relaunch the next launch again gets one relaunch",
                |_| {},
                vec![
                    AcquireInit(0, 1, 300),
                    Spawned(9),
                    LaunchFailed(1, LaunchFailure::InitializeTimeout),
                    Spawned(10),
                    LaunchFailed(2, LaunchFailure::InitializeTimeout),
                    Acquire(1000, 2, true),
                    Spawned(11),
                    LaunchFailed(3, LaunchFailure::InitializeTimeout),
                ],
                vec![
                    take_down(
                        EndStatus::Failed,
                        "runtime did not answer initialize within 300 ms (initialize_timeout_ms); relaunching once",
                        None,
                        Kill::Background,
                    ),
                    Effect::Launch { generation: 4, initialize_timeout: Some(Duration::from_millis(300)) },
                ],
                Phase::Launching { pid: None },
            ),
            (
                "after a ready relaunch, a later launch again gets one relaunch",
                |_| {},
                vec![
                    AcquireInit(0, 1, 300),
                    Spawned(9),
                    LaunchFailed(1, LaunchFailure::InitializeTimeout),
                    Spawned(10),
                    Ready(700, 2),
                    Stop,
                    Killed(800, 2),
                    Acquire(900, 2, true),
                    Spawned(11),
                    LaunchFailed(3, LaunchFailure::InitializeTimeout),
                ],
                vec![
                    take_down(
                        EndStatus::Failed,
                        "runtime did not answer initialize within 300 ms (initialize_timeout_ms); relaunching once",
                        None,
                        Kill::Background,
                    ),
                    Effect::Launch { generation: 4, initialize_timeout: Some(Duration::from_millis(300)) },
                ],
                Phase::Launching { pid: None },
            ),
            (
                "unhealthy server fails the launch with its output",
                |_| {},
                vec![Acquire(0, 1, true), LaunchFailed(1, LaunchFailure::Unhealthy("HTTP 503".into()))],
                vec![
                    take_down(
                        EndStatus::Failed,
                        "runtime not healthy within 60000 ms: HTTP 503; output: boom",
                        None,
                        Kill::Background,
                    ),
                    Effect::Refuse {
                        waiters: vec![1],
                        dispatches: vec![],
                        error: RuntimeError::LaunchFailed(
                            "runtime not healthy within 60000 ms: HTTP 503; output: boom".into(),
                        ),
                    },
                ],
                Phase::Down,
            ),
            (
                "exit before initialize fails the launch with the exit status",
                |_| {},
                vec![Acquire(0, 1, true), Spawned(9), Exited(1, 1, 0)],
                vec![
                    take_down(
                        EndStatus::Failed,
                        "runtime exited before answering initialize (exit status 1)",
                        Some(1),
                        Kill::Background,
                    ),
                    Effect::Refuse {
                        waiters: vec![1],
                        dispatches: vec![],
                        error: RuntimeError::LaunchFailed(
                            "runtime exited before answering initialize (exit status 1)".into(),
                        ),
                    },
                ],
                Phase::Down,
            ),
            (
                "a crash with nothing kept relaunches on demand",
                |_| {},
                vec![Acquire(0, 1, true), Spawned(9), Ready(1, 1), Exited(2, 1, 1)],
                vec![
                    take_down(
                        EndStatus::Exited,
                        "runtime exited unexpectedly (exit status 1)",
                        Some(1),
                        Kill::Background,
                    ),
                    Effect::Restarting { attempt: 1, backoff },
                ],
                Phase::Down,
            ),
            (
                "a managed crash with work in flight relaunches after the backoff",
                |c| c.eager_relaunch = true,
                vec![Acquire(0, 1, true), Spawned(9), Ready(1, 1), Exited(2, 1, 1)],
                vec![
                    take_down(
                        EndStatus::Exited,
                        "runtime exited unexpectedly (exit status 1)",
                        Some(1),
                        Kill::Background,
                    ),
                    Effect::Restarting { attempt: 1, backoff },
                    Effect::RelaunchIn { generation: 1, after: backoff },
                ],
                Phase::Down,
            ),
            (
                "re-queued work waits for the backoff, then the relaunch runs it",
                |_| {},
                vec![
                    Acquire(0, 1, true),
                    Spawned(9),
                    Ready(1, 1),
                    Exited(2, 1, 1),
                    Requeue(3, vec!["d2"]),
                    Relaunch(1),
                ],
                vec![Effect::Launch { generation: 2, initialize_timeout: None }],
                Phase::Launching { pid: None },
            ),
            (
                "relaunch with nothing waiting does nothing",
                |_| {},
                vec![Acquire(0, 1, true), Spawned(9), Ready(1, 1), Exited(2, 1, 0), Relaunch(1)],
                vec![],
                Phase::Down,
            ),
            (
                "a stale exit is ignored",
                |_| {},
                vec![Acquire(0, 1, true), Spawned(9), Ready(1, 1), Exited(2, 5, 0)],
                vec![],
                Phase::Ready,
            ),
            (
                "a crash loop pauses launches",
                |_| {},
                vec![
                    Acquire(0, 1, true),
                    Spawned(1),
                    Ready(1, 1),
                    Exited(2, 1, 0),
                    Acquire(1000, 2, true),
                    Spawned(2),
                    Ready(1001, 2),
                    Exited(1002, 2, 0),
                    Acquire(5000, 3, true),
                    Spawned(3),
                    Ready(5001, 3),
                    Exited(5002, 3, 0),
                    Acquire(9000, 4, true),
                    Spawned(4),
                    Ready(9001, 4),
                    Exited(9002, 4, 0),
                ],
                vec![
                    take_down(
                        EndStatus::Exited,
                        "runtime exited unexpectedly (exit status 1)",
                        Some(1),
                        Kill::Background,
                    ),
                    Effect::CrashLoop { failures: 4 },
                    Effect::Refuse {
                        waiters: vec![],
                        dispatches: vec![],
                        error: unavailable("runtime exited 4 times within 60s"),
                    },
                ],
                Phase::Down,
            ),
            (
                "while paused, acquisitions fail",
                |_| {},
                vec![
                    Acquire(0, 1, true),
                    Spawned(1),
                    Ready(1, 1),
                    Exited(2, 1, 0),
                    Acquire(1000, 2, true),
                    Spawned(2),
                    Ready(1001, 2),
                    Exited(1002, 2, 0),
                    Acquire(5000, 3, true),
                    Spawned(3),
                    Ready(5001, 3),
                    Exited(5002, 3, 0),
                    Acquire(9000, 4, true),
                    Spawned(4),
                    Ready(9001, 4),
                    Exited(9002, 4, 0),
                    Acquire(10000, 5, true),
                ],
                vec![Effect::Refuse {
                    waiters: vec![5],
                    dispatches: vec![],
                    error: unavailable("runtime of t is crash-looping (exited repeatedly); launches paused"),
                }],
                Phase::Down,
            ),
            (
                "stop kills in the background and refuses waiters",
                |_| {},
                vec![Acquire(0, 1, true), Spawned(9), Stop],
                vec![
                    take_down(EndStatus::Stopped, "runtime stopped: requested", None, Kill::Report { generation: 1 }),
                    Effect::Refuse {
                        waiters: vec![1],
                        dispatches: vec![],
                        error: unavailable("runtime stopped: requested"),
                    },
                ],
                Phase::Stopping,
            ),
            (
                "acquisitions during a stop wait for it, then launch",
                |_| {},
                vec![Acquire(0, 1, true), Spawned(9), Ready(1, 1), Stop, Acquire(2, 2, true), Killed(3, 1)],
                vec![Effect::Stopped, Effect::Launch { generation: 2, initialize_timeout: None }],
                Phase::Launching { pid: None },
            ),
            (
                "a stale kill report is ignored",
                |_| {},
                vec![Acquire(0, 1, true), Spawned(9), Stop, Killed(3, 7)],
                vec![],
                Phase::Stopping,
            ),
            ("stop of a down runtime answers at once", |_| {}, vec![Stop], vec![Effect::Stopped], Phase::Down),
            (
                "stop of an external server forgets it",
                |c| c.spawns = false,
                vec![Acquire(0, 1, true), Ready(1, 1), Stop],
                vec![
                    take_down(EndStatus::Stopped, "runtime stopped: requested", None, Kill::Background),
                    Effect::Refuse {
                        waiters: vec![],
                        dispatches: vec![],
                        error: unavailable("runtime stopped: requested"),
                    },
                    Effect::Stopped,
                ],
                Phase::Down,
            ),
            (
                "idle with nothing in flight stops",
                |c| c.idle_timeout = Some(Duration::from_millis(100)),
                vec![Acquire(0, 1, true), Spawned(9), Ready(0, 1), Idle(150, 1, 0)],
                vec![
                    take_down(
                        EndStatus::Stopped,
                        "runtime stopped: idle for 100 ms",
                        None,
                        Kill::Report { generation: 1 },
                    ),
                    Effect::Refuse {
                        waiters: vec![],
                        dispatches: vec![],
                        error: unavailable("runtime stopped: idle for 100 ms"),
                    },
                ],
                Phase::Stopping,
            ),
            (
                "busy or recently active is checked again later",
                |c| c.idle_timeout = Some(Duration::from_millis(100)),
                vec![Acquire(0, 1, true), Spawned(9), Ready(0, 1), Idle(150, 1, 1)],
                vec![Effect::IdleCheckIn { generation: 1, after: Duration::from_millis(100) }],
                Phase::Ready,
            ),
        ];
        for (name, tweak, inputs, want, phase) in cases {
            let mut c = config();
            tweak(&mut c);
            let t0 = Instant::now();
            let mut l = L::new(c, t0);
            let mut last = Vec::new();
            for input in inputs {
                last = step(&mut l, t0, input);
            }
            assert_eq!(last, want, "{name}");
            assert_eq!(l.phase(), phase, "{name}");
        }
    }

    #[test]
    fn cancelled_kept_work_is_handed_back() {
        let mut l = L::new(config(), Instant::now());
        let now = Instant::now();
        l.submit(now, "d1");
        l.submit(now, "d2");
        assert_eq!(l.cancel_requeued("d1"), Some("d1"));
        assert_eq!(l.cancel_requeued("d1"), None);
        assert_eq!(
            l.spawn_failed("x".into()),
            vec![Effect::Refuse {
                waiters: vec![],
                dispatches: vec!["d2"],
                error: RuntimeError::LaunchFailed("x".into())
            }]
        );
    }
}
