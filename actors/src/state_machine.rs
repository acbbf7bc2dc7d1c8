//! The task state machine: a pure struct every task actor consults before appending an event.
//!
//! `created → pending_launch → launching → ready → dispatching → running ⇄ awaiting_input →
//! completed | failed | cancelled`. The rules the Go node lacked (contract §6.6, §13.2 item 4):
//!
//! * a terminal state absorbs everything — nothing is appended after it;
//! * no regression — an event may only move the task forward along the table below;
//! * no duplicate — state-entering events that do not loop (`task.created`, `task.routed`,
//!   launch events, `task.awaiting_input` while awaiting) are refused when repeated;
//! * API requests (`task.cancel_requested`, `task.resume_requested`) keep the *current* state, so
//!   they can never overwrite a newer one;
//! * `seq` is allocated here, contiguous from 1;
//! * one way back: `task.retry_scheduled` returns a live task whose attempt failed (or, by an
//!   operator's retry, a `failed` or `cancelled` one) to `created`, to be dispatched again; never
//!   a `completed` task, never one whose cancel is in flight (cancel wins). Whether a policy
//!   allows the retry is the task actor's decision ([`crate::model::RetryPolicy::decide`]).
//!
//! No IO: unit tests cover the whole table.

use crate::model::{EventKind, TaskStatus};

/// Why an event was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The task already ended; terminal states absorb everything.
    #[error("task is already {0}")]
    Terminal(TaskStatus),
    /// The event would move the task backwards or sideways.
    #[error("{kind} is not allowed in state {from}")]
    NotAllowed { kind: EventKind, from: TaskStatus },
    /// The event repeats one that may happen only once.
    #[error("duplicate {0}")]
    Duplicate(EventKind),
}

/// What a cancel request should do, given the task's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelPlan {
    /// Already terminal: answer with this status, append nothing.
    AlreadyTerminal(TaskStatus),
    /// A cancel is already in flight: answer with the current status, append nothing.
    AlreadyRequested(TaskStatus),
    /// Not yet handed to the runtime: append `cancel_requested` then `cancelled` at once.
    Immediate,
    /// The runtime has it: append `cancel_requested`, ask the runtime, wait (bounded) for it.
    ViaRuntime,
}

/// Why a resume was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResumeRejection {
    /// Resume is only valid in `awaiting_input`.
    #[error("task not awaitable: status is {0}")]
    NotAwaiting(TaskStatus),
    /// A resume was already accepted and the runtime has not answered it yet.
    #[error("task not awaitable: a resume is already in progress")]
    AlreadyResuming,
}

/// The lifecycle of one task, as its actor sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskLifecycle {
    /// Current status (the state of the last appended event).
    status: TaskStatus,
    /// Seq of the last appended event; 0 before `task.created`.
    last_seq: u64,
    /// `task.routed` happened (it may happen once).
    routed: bool,
    /// A resume was accepted and not yet answered by the runtime.
    resume_pending: bool,
    /// A cancel was accepted and the task has not ended yet.
    cancel_requested: bool,
}

impl TaskLifecycle {
    /// A task that has no events yet.
    pub fn new() -> Self {
        Self::restore(TaskStatus::Created, 0)
    }

    /// A task rehydrated from storage with its status and last seq.
    pub fn restore(status: TaskStatus, last_seq: u64) -> Self {
        TaskLifecycle { status, last_seq, routed: last_seq >= 2, resume_pending: false, cancel_requested: false }
    }

    /// Current status.
    pub fn status(&self) -> TaskStatus {
        self.status
    }

    /// Seq of the last appended event.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Whether a cancel is in flight.
    pub fn cancel_requested(&self) -> bool {
        self.cancel_requested
    }

    /// The state an event of `kind` leads to from the current state, or why it may not happen.
    pub fn check(&self, kind: EventKind) -> Result<TaskStatus, Rejection> {
        use EventKind as K;
        use TaskStatus as S;
        let from = self.status;
        let not_allowed = Err(Rejection::NotAllowed { kind, from });
        if kind == K::TaskRetryScheduled {
            let retryable = match from {
                S::Completed => false,
                S::Failed | S::Cancelled => true,
                _ => !self.cancel_requested,
            };
            return if self.last_seq >= 2 && retryable { Ok(S::Created) } else { not_allowed };
        }
        if from.is_terminal() {
            return Err(Rejection::Terminal(from));
        }
        let to = match kind {
            K::TaskCreated => {
                return if self.last_seq == 0 { Ok(S::Created) } else { Err(Rejection::Duplicate(kind)) };
            }
            K::TaskRouted => {
                return match (from, self.routed) {
                    (S::Created, false) if self.last_seq >= 1 => Ok(S::Created),
                    (S::Created, true) => Err(Rejection::Duplicate(kind)),
                    _ => not_allowed,
                };
            }
            // Requests and side notes keep the current state.
            K::TaskCancelRequested | K::ArtifactCreated | K::RuntimeHealth => {
                return if self.last_seq == 0 { not_allowed } else { Ok(from) };
            }
            K::TaskResumeRequested => {
                return if from == S::AwaitingInput { Ok(from) } else { not_allowed };
            }
            K::RuntimePendingLaunch => S::PendingLaunch,
            K::RuntimeLaunching => S::Launching,
            K::RuntimeReady => S::Ready,
            K::TaskDispatching => S::Dispatching,
            K::TaskRunning => S::Running,
            K::TaskResumed => {
                return if from == S::AwaitingInput { Ok(S::Running) } else { not_allowed };
            }
            K::TaskAwaitingInput => S::AwaitingInput,
            K::TaskCompleted => S::Completed,
            K::TaskFailed => S::Failed,
            K::TaskCancelled => S::Cancelled,
            // Decided above.
            K::TaskRetryScheduled => return not_allowed,
        };
        if self.last_seq == 0 {
            return not_allowed;
        }
        if from == to && !Self::loops(to) {
            return Err(Rejection::Duplicate(kind));
        }
        if Self::allowed(from, to) { Ok(to) } else { not_allowed }
    }

    /// Applies an event of `kind`: checks it, allocates its seq and moves the state.
    /// Returns `(seq, state after)`.
    pub fn admit(&mut self, kind: EventKind) -> Result<(u64, TaskStatus), Rejection> {
        let to = self.check(kind)?;
        self.last_seq += 1;
        self.status = to;
        match kind {
            EventKind::TaskRouted => self.routed = true,
            EventKind::TaskResumeRequested => self.resume_pending = true,
            EventKind::TaskCancelRequested => self.cancel_requested = true,
            EventKind::TaskResumed | EventKind::TaskRunning | EventKind::TaskAwaitingInput => {
                self.resume_pending = false
            }
            // A new attempt starts with nothing pending.
            EventKind::TaskRetryScheduled => {
                self.resume_pending = false;
                self.cancel_requested = false;
            }
            _ => {}
        }
        if to.is_terminal() {
            self.resume_pending = false;
        }
        Ok((self.last_seq, to))
    }

    /// The runtime refused a resume: the task stays awaiting and may be resumed again.
    pub fn resume_refused(&mut self) {
        self.resume_pending = false;
    }

    /// Decides how a cancel request is handled.
    pub fn plan_cancel(&self) -> CancelPlan {
        if self.status.is_terminal() {
            CancelPlan::AlreadyTerminal(self.status)
        } else if self.cancel_requested {
            CancelPlan::AlreadyRequested(self.status)
        } else if self.status.is_dispatched() {
            CancelPlan::ViaRuntime
        } else {
            CancelPlan::Immediate
        }
    }

    /// Checks that a resume may be accepted now.
    pub fn check_resume(&self) -> Result<(), ResumeRejection> {
        if self.status != TaskStatus::AwaitingInput {
            Err(ResumeRejection::NotAwaiting(self.status))
        } else if self.resume_pending {
            Err(ResumeRejection::AlreadyResuming)
        } else {
            Ok(())
        }
    }

    /// States that may repeat (progress streams).
    fn loops(state: TaskStatus) -> bool {
        matches!(state, TaskStatus::Dispatching | TaskStatus::Running)
    }

    /// The forward transition table.
    fn allowed(from: TaskStatus, to: TaskStatus) -> bool {
        use TaskStatus as S;
        if to.is_terminal() {
            // Any live state may end; completion needs the runtime to have had the task.
            return to != S::Completed || from.is_dispatched();
        }
        matches!(
            (from, to),
            (S::Created, S::PendingLaunch | S::Ready)
                | (S::PendingLaunch, S::Launching)
                | (S::Launching, S::Ready)
                | (S::Ready, S::Dispatching)
                | (S::Dispatching, S::Dispatching | S::Running | S::AwaitingInput)
                | (S::Running, S::Running | S::AwaitingInput)
                | (S::AwaitingInput, S::Running)
        )
    }
}

impl Default for TaskLifecycle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind as K;
    use TaskStatus as S;

    fn at(status: S) -> TaskLifecycle {
        TaskLifecycle::restore(status, 5)
    }

    fn run(kinds: &[K]) -> TaskLifecycle {
        let mut lc = TaskLifecycle::new();
        for k in kinds {
            if let Err(e) = lc.admit(*k) {
                panic!("{k} refused: {e}");
            }
        }
        lc
    }

    #[test]
    fn cold_and_warm_happy_paths_allocate_contiguous_seqs() {
        let cold = run(&[
            K::TaskCreated,
            K::TaskRouted,
            K::RuntimePendingLaunch,
            K::RuntimeLaunching,
            K::RuntimeReady,
            K::TaskDispatching,
            K::TaskDispatching,
            K::TaskRunning,
            K::TaskRunning,
            K::TaskCompleted,
        ]);
        assert_eq!((cold.status(), cold.last_seq()), (S::Completed, 10));
        let warm = run(&[K::TaskCreated, K::TaskRouted, K::RuntimeReady, K::TaskDispatching, K::TaskCompleted]);
        assert_eq!((warm.status(), warm.last_seq()), (S::Completed, 5));
    }

    #[test]
    fn terminal_states_absorb_everything_but_a_retry_of_a_failed_or_cancelled_task() {
        for terminal in [S::Completed, S::Failed, S::Cancelled] {
            for kind in K::ALL.iter().filter(|k| **k != K::TaskRetryScheduled) {
                assert_eq!(at(terminal).check(*kind), Err(Rejection::Terminal(terminal)), "{kind} after {terminal}");
            }
        }
        let retry = K::TaskRetryScheduled;
        assert_eq!(at(S::Completed).check(retry), Err(Rejection::NotAllowed { kind: retry, from: S::Completed }));
        assert_eq!(at(S::Failed).check(retry), Ok(S::Created));
        assert_eq!(at(S::Cancelled).check(retry), Ok(S::Created));
    }

    #[test]
    fn a_retry_returns_a_live_attempt_to_created_unless_a_cancel_is_in_flight() {
        let retry = K::TaskRetryScheduled;
        for from in [S::Created, S::PendingLaunch, S::Launching, S::Ready, S::Dispatching, S::Running, S::AwaitingInput]
        {
            assert_eq!(at(from).check(retry), Ok(S::Created), "{from}");
            let mut cancelling = at(from);
            let _ = cancelling.admit(K::TaskCancelRequested);
            assert_eq!(cancelling.check(retry), Err(Rejection::NotAllowed { kind: retry, from }), "{from}");
        }
        // Not before the task is created and routed.
        assert!(run(&[K::TaskCreated]).check(retry).is_err());
        // A whole retried life: fail, retry, dispatch again, complete; seqs stay contiguous and
        // the new attempt starts with no pending resume.
        let mut lc = run(&[K::TaskCreated, K::TaskRouted, K::RuntimeReady, K::TaskDispatching, K::TaskAwaitingInput]);
        let _ = lc.admit(K::TaskResumeRequested);
        assert_eq!(lc.admit(retry), Ok((7, S::Created)));
        assert_eq!(lc.check(K::TaskRouted), Err(Rejection::Duplicate(K::TaskRouted)));
        for k in [K::RuntimeReady, K::TaskDispatching, K::TaskAwaitingInput] {
            assert!(lc.admit(k).is_ok(), "{k}");
        }
        assert_eq!(lc.check_resume(), Ok(()));
        assert_eq!(lc.admit(K::TaskResumeRequested).map(|(seq, _)| seq), Ok(11));
        assert_eq!(lc.admit(K::TaskResumed), Ok((12, S::Running)));
        assert_eq!(lc.admit(K::TaskCompleted), Ok((13, S::Completed)));
        assert!(lc.check(retry).is_err());
    }

    #[test]
    fn no_regression() {
        let backwards = [
            (S::Running, K::RuntimeReady),
            (S::Running, K::TaskDispatching),
            (S::Ready, K::RuntimePendingLaunch),
            (S::Launching, K::RuntimePendingLaunch),
            (S::Dispatching, K::RuntimeLaunching),
            (S::AwaitingInput, K::TaskDispatching),
            (S::Running, K::TaskRouted),
            (S::Created, K::TaskRunning),
            (S::Created, K::TaskCompleted),
            (S::Ready, K::TaskCompleted),
            (S::Running, K::TaskResumed),
        ];
        for (from, kind) in backwards {
            assert_eq!(at(from).check(kind), Err(Rejection::NotAllowed { kind, from }), "{kind} from {from}");
        }
    }

    #[test]
    fn no_duplicates() {
        let mut lc = run(&[K::TaskCreated, K::TaskRouted]);
        assert_eq!(lc.check(K::TaskCreated), Err(Rejection::Duplicate(K::TaskCreated)));
        assert_eq!(lc.check(K::TaskRouted), Err(Rejection::Duplicate(K::TaskRouted)));
        let _ = lc.admit(K::RuntimePendingLaunch);
        assert_eq!(lc.check(K::RuntimePendingLaunch), Err(Rejection::Duplicate(K::RuntimePendingLaunch)));
        assert_eq!(at(S::AwaitingInput).check(K::TaskAwaitingInput), Err(Rejection::Duplicate(K::TaskAwaitingInput)));
        assert_eq!(at(S::Ready).check(K::RuntimeReady), Err(Rejection::Duplicate(K::RuntimeReady)));
    }

    #[test]
    fn every_pair_follows_the_table() {
        // Exhaustive: every (state, kind) either yields the documented state or a rejection,
        // and nothing ever leaves a terminal state.
        for from in S::ALL {
            for kind in K::ALL {
                if let Ok(to) = at(*from).check(*kind) {
                    if *kind == K::TaskRetryScheduled {
                        // The one way back, tested on its own.
                        assert_eq!(to, S::Created);
                        continue;
                    }
                    assert!(!from.is_terminal());
                    let rank = |s: S| S::ALL.iter().position(|x| *x == s).unwrap_or(0);
                    let back_to_running = *from == S::AwaitingInput && to == S::Running;
                    assert!(rank(to) >= rank(*from) || back_to_running, "{from} -> {to} via {kind}");
                }
            }
        }
    }

    #[test]
    fn api_requests_keep_the_current_state() {
        let mut lc = at(S::Running);
        assert_eq!(lc.admit(K::TaskCancelRequested), Ok((6, S::Running)));
        let mut lc = at(S::AwaitingInput);
        assert_eq!(lc.admit(K::TaskResumeRequested), Ok((6, S::AwaitingInput)));
        assert_eq!(lc.check_resume(), Err(ResumeRejection::AlreadyResuming));
        assert_eq!(lc.admit(K::TaskResumed), Ok((7, S::Running)));
        assert_eq!(lc.check_resume(), Err(ResumeRejection::NotAwaiting(S::Running)));
        assert_eq!(
            at(S::Running).check(K::TaskResumeRequested),
            Err(Rejection::NotAllowed { kind: K::TaskResumeRequested, from: S::Running })
        );
    }

    #[test]
    fn cancel_plans() {
        assert_eq!(at(S::Created).plan_cancel(), CancelPlan::Immediate);
        assert_eq!(at(S::Launching).plan_cancel(), CancelPlan::Immediate);
        assert_eq!(at(S::Running).plan_cancel(), CancelPlan::ViaRuntime);
        assert_eq!(at(S::AwaitingInput).plan_cancel(), CancelPlan::ViaRuntime);
        assert_eq!(at(S::Completed).plan_cancel(), CancelPlan::AlreadyTerminal(S::Completed));
        let mut lc = at(S::Running);
        let _ = lc.admit(K::TaskCancelRequested);
        assert_eq!(lc.plan_cancel(), CancelPlan::AlreadyRequested(S::Running));
    }

    #[test]
    fn nothing_before_created() {
        let lc = TaskLifecycle::new();
        assert!(lc.check(K::TaskRouted).is_err());
        assert!(lc.check(K::TaskCancelRequested).is_err());
        assert!(lc.check(K::TaskFailed).is_err());
        assert_eq!(lc.check(K::TaskCreated), Ok(S::Created));
    }
}
