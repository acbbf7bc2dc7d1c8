//! The one restart policy every supervisor uses: exponential backoff with jitter, a maximum
//! number of restarts within a sliding window, then escalation to the parent.
//!
//! [`RestartTracker`] is pure (time and randomness are passed in) so it is unit tested without IO.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Restart limits and backoff of one kind of child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Most restarts allowed within `window`; one more failure escalates.
    pub max_restarts: u32,
    /// The sliding window over which restarts are counted.
    pub window: Duration,
    /// Backoff before the first restart; doubles with each restart in the window.
    pub base_backoff: Duration,
    /// Cap on the backoff.
    pub max_backoff: Duration,
}

impl RestartPolicy {
    /// Core services (storage, registry, runtime supervisor, task supervisor, SSE hub).
    pub const SERVICE: RestartPolicy = RestartPolicy {
        max_restarts: 5,
        window: Duration::from_secs(30),
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(2),
    };

    /// Task actors and runtimes: more tolerant, since one bad task must not take the tree down.
    pub const WORKER: RestartPolicy = RestartPolicy {
        max_restarts: 3,
        window: Duration::from_secs(60),
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(5),
    };
}

/// What a supervisor does after a child failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart after `backoff`; this is restart number `attempt` within the window.
    Restart { attempt: u32, backoff: Duration },
    /// Too many failures in the window: give up on the child and escalate.
    Escalate { failures: u32 },
}

/// Failure history of one child.
#[derive(Clone, Debug)]
pub struct RestartTracker {
    /// The limits applied.
    policy: RestartPolicy,
    /// When each failure inside the window happened, oldest first.
    failures: VecDeque<Instant>,
}

impl RestartTracker {
    /// A child with no failures.
    pub fn new(policy: RestartPolicy) -> Self {
        RestartTracker { policy, failures: VecDeque::new() }
    }

    /// Records a failure at `now` and decides. `jitter` in `[0, 1)` spreads the backoff over
    /// `[backoff/2, backoff)` so many children failing together don't restart in lockstep.
    pub fn on_failure(&mut self, now: Instant, jitter: f64) -> RestartDecision {
        while let Some(first) = self.failures.front() {
            if now.duration_since(*first) > self.policy.window {
                self.failures.pop_front();
            } else {
                break;
            }
        }
        self.failures.push_back(now);
        let attempt = u32::try_from(self.failures.len()).unwrap_or(u32::MAX);
        if attempt > self.policy.max_restarts {
            return RestartDecision::Escalate { failures: attempt };
        }
        let exp = attempt.saturating_sub(1).min(20);
        let raw = self.policy.base_backoff.saturating_mul(1u32 << exp).min(self.policy.max_backoff);
        let factor = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
        RestartDecision::Restart { attempt, backoff: raw.mul_f64(factor) }
    }
}

/// A jitter sample for [`RestartTracker::on_failure`].
pub fn jitter() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RestartPolicy = RestartPolicy {
        max_restarts: 3,
        window: Duration::from_secs(10),
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(250),
    };

    #[test]
    fn backoff_doubles_caps_and_escalates() {
        let t0 = Instant::now();
        let mut tr = RestartTracker::new(P);
        let d = |tr: &mut RestartTracker, s| tr.on_failure(t0 + Duration::from_secs(s), 0.999_999);
        assert!(
            matches!(d(&mut tr, 0), RestartDecision::Restart { attempt: 1, backoff } if backoff > Duration::from_millis(99))
        );
        assert!(
            matches!(d(&mut tr, 1), RestartDecision::Restart { attempt: 2, backoff } if backoff > Duration::from_millis(199))
        );
        assert!(
            matches!(d(&mut tr, 2), RestartDecision::Restart { attempt: 3, backoff } if backoff <= Duration::from_millis(250))
        );
        assert_eq!(d(&mut tr, 3), RestartDecision::Escalate { failures: 4 });
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let t0 = Instant::now();
        let mut tr = RestartTracker::new(P);
        for s in [0, 1, 2] {
            let _ = tr.on_failure(t0 + Duration::from_secs(s), 0.0);
        }
        assert!(matches!(
            tr.on_failure(t0 + Duration::from_secs(30), 0.0),
            RestartDecision::Restart { attempt: 1, .. }
        ));
    }

    #[test]
    fn jitter_halves_at_most() {
        let mut tr = RestartTracker::new(P);
        let RestartDecision::Restart { backoff, .. } = tr.on_failure(Instant::now(), 0.0) else {
            panic!("expected restart");
        };
        assert_eq!(backoff, Duration::from_millis(50));
    }
}
