//! Retry policies, deadlines and a task's attempt bookkeeping: what a client may ask for, how it
//! is checked, and the backoff schedule. Pure: the task actor decides with these and does the IO.

use serde::{Deserialize, Serialize};

use super::FailureReason;

/// Most attempts a policy may allow (a typo like `10000` would otherwise retry for days).
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// Longest delay between attempts a policy may ask for (one day).
pub const MAX_DELAY_LIMIT_MS: u64 = 24 * 3600 * 1000;
/// Longest deadline accepted (30 days).
pub const MAX_DEADLINE_MS: u64 = 30 * 24 * 3600 * 1000;

/// Delay before the first retry when a policy names none.
const DEFAULT_INITIAL_DELAY_MS: u64 = 1000;
/// Longest delay when a policy names none.
const DEFAULT_MAX_DELAY_MS: u64 = 60_000;

string_enum!(
    /// How the delay grows between attempts.
    Backoff {
        Fixed => "fixed",
        Exponential => "exponential",
    }
);

/// A resolved retry policy (every field set), stored with the task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Delay before the first retry; exponential backoff doubles it per attempt.
    pub initial_delay_ms: u64,
    /// Upper bound of any delay.
    pub max_delay_ms: u64,
    /// Each delay is drawn uniformly from [delay/2, delay] ("equal jitter"), so many tasks
    /// failing together do not retry together.
    pub jitter: bool,
    /// Failure reasons (`last_error.reason` spellings) that are retried; empty = every reason
    /// but the permanent ones ([`RetryPolicy::retries`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
}

/// `retry_policy` as a client sends it: each field defaults on its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<String>>,
}

impl RetryPolicyRequest {
    /// The effective policy, or what is wrong with the request (the message names the field).
    pub fn resolve(self) -> Result<RetryPolicy, String> {
        let max_attempts = self.max_attempts.unwrap_or(3);
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
            return Err(format!("retry_policy.max_attempts must be 1 to {MAX_ATTEMPTS_LIMIT}, got {max_attempts}"));
        }
        let initial_delay_ms = self.initial_delay_ms.unwrap_or(DEFAULT_INITIAL_DELAY_MS);
        let max_delay_ms = self.max_delay_ms.unwrap_or(DEFAULT_MAX_DELAY_MS.max(initial_delay_ms));
        for (name, v) in [("initial_delay_ms", initial_delay_ms), ("max_delay_ms", max_delay_ms)] {
            if v > MAX_DELAY_LIMIT_MS {
                return Err(format!("retry_policy.{name} must be at most {MAX_DELAY_LIMIT_MS}, got {v}"));
            }
        }
        if max_delay_ms < initial_delay_ms {
            return Err(format!(
                "retry_policy.max_delay_ms ({max_delay_ms}) must not be less than initial_delay_ms ({initial_delay_ms})"
            ));
        }
        let retry_on = self.retry_on.unwrap_or_default();
        if let Some(bad) = retry_on.iter().find(|r| r.trim().is_empty()) {
            return Err(format!("retry_policy.retry_on holds an empty reason ('{bad}')"));
        }
        Ok(RetryPolicy {
            max_attempts,
            backoff: self.backoff.unwrap_or(Backoff::Exponential),
            initial_delay_ms,
            max_delay_ms,
            jitter: self.jitter.unwrap_or(false),
            retry_on,
        })
    }
}

/// Why a failed attempt is not retried (the task then fails for good).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoRetry {
    /// The task has no policy, or its policy allows one attempt.
    NoPolicy,
    /// Every allowed attempt has run.
    Exhausted { max_attempts: u32 },
    /// The reason is not one the policy retries.
    NotRetryable,
    /// A cancel was requested: cancel wins over a retry.
    Cancelled,
}

impl RetryPolicy {
    /// Whether a failure with `reason` is retried. With no `retry_on`, every reason is, except
    /// the permanent ones: a kind this node does not run, a task actor that kept crashing (a
    /// retry would crash it again).
    pub fn retries(&self, reason: &FailureReason) -> bool {
        if self.retry_on.is_empty() {
            return !matches!(reason, FailureReason::AdapterMissing | FailureReason::Crashed);
        }
        self.retry_on.iter().any(|r| r == reason.as_str())
    }

    /// The delay before attempt `failed_attempt + 1`. `random` is any u64 (used only with
    /// jitter), so the schedule is testable.
    pub fn delay_ms(&self, failed_attempt: u32, random: u64) -> u64 {
        let base = match self.backoff {
            Backoff::Fixed => self.initial_delay_ms,
            Backoff::Exponential => {
                let doublings = failed_attempt.saturating_sub(1).min(40);
                self.initial_delay_ms.saturating_mul(1u64 << doublings)
            }
        };
        let delay = base.min(self.max_delay_ms);
        if self.jitter && delay > 1 {
            let half = delay / 2;
            half + random % (delay - half + 1)
        } else {
            delay
        }
    }

    /// Whether attempt `failed_attempt` (1-based), failed with `reason`, is retried: the delay,
    /// or why not.
    pub fn decide(
        policy: Option<&RetryPolicy>,
        failed_attempt: u32,
        reason: &FailureReason,
        cancel_requested: bool,
        random: u64,
    ) -> Result<u64, NoRetry> {
        let Some(policy) = policy.filter(|p| p.max_attempts > 1) else { return Err(NoRetry::NoPolicy) };
        if cancel_requested {
            return Err(NoRetry::Cancelled);
        }
        if failed_attempt >= policy.max_attempts {
            return Err(NoRetry::Exhausted { max_attempts: policy.max_attempts });
        }
        if !policy.retries(reason) {
            return Err(NoRetry::NotRetryable);
        }
        Ok(policy.delay_ms(failed_attempt, random))
    }
}

/// Bounds on a task's attempt, each failing the attempt with its own reason when it elapses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    /// From when the attempt is scheduled (creation, or its retry coming due) until the agent
    /// starts it: bounds waiting for a launch, a paused target, a busy session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_to_start_ms: Option<u64>,
    /// From when the agent starts the attempt until it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_to_close_ms: Option<u64>,
    /// Longest silence (no progress event) of a started attempt; not counted while the task
    /// awaits input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_ms: Option<u64>,
}

impl Deadlines {
    /// No deadline set.
    pub fn is_empty(&self) -> bool {
        *self == Deadlines::default()
    }

    /// Checks each bound: greater than 0 and at most [`MAX_DEADLINE_MS`].
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("schedule_to_start_ms", self.schedule_to_start_ms),
            ("start_to_close_ms", self.start_to_close_ms),
            ("heartbeat_timeout_ms", self.heartbeat_timeout_ms),
        ];
        for (name, value) in fields {
            match value {
                Some(0) => return Err(format!("deadlines.{name} must be greater than 0")),
                Some(v) if v > MAX_DEADLINE_MS => {
                    return Err(format!("deadlines.{name} must be at most {MAX_DEADLINE_MS}, got {v}"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Which deadline elapsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadlineKind {
    ScheduleToStart,
    StartToClose,
    Heartbeat,
}

impl DeadlineKind {
    /// The failure reason the attempt ends with.
    pub fn reason(self) -> FailureReason {
        match self {
            DeadlineKind::ScheduleToStart => FailureReason::ScheduleToStartTimeout,
            DeadlineKind::StartToClose => FailureReason::StartToCloseTimeout,
            DeadlineKind::Heartbeat => FailureReason::HeartbeatTimeout,
        }
    }

    /// The field that set it.
    pub fn field(self) -> &'static str {
        match self {
            DeadlineKind::ScheduleToStart => "schedule_to_start_ms",
            DeadlineKind::StartToClose => "start_to_close_ms",
            DeadlineKind::Heartbeat => "heartbeat_timeout_ms",
        }
    }
}

fn one() -> u32 {
    1
}

/// A task's attempts: which one runs, how many are allowed, when the next is due, and the
/// policy and deadlines that govern them. Flattened into the task record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempts {
    /// 1-based number of the current (or last) attempt.
    #[serde(default = "one")]
    pub attempt: u32,
    /// Attempts allowed in all (1 without a retry policy).
    #[serde(default = "one")]
    pub max_attempts: u32,
    /// When the scheduled retry is due; set only while the task waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Deadlines::is_empty")]
    pub deadlines: Deadlines,
    /// When the current attempt was scheduled (creation, or its retry's due time): the start of
    /// `schedule_to_start_ms`, kept so a restart re-arms it with what is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_scheduled_at: Option<String>,
    /// When the agent started the current attempt: the start of `start_to_close_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_started_at: Option<String>,
}

impl Default for Attempts {
    fn default() -> Self {
        Attempts {
            attempt: 1,
            max_attempts: 1,
            next_retry_at: None,
            retry_policy: None,
            deadlines: Deadlines::default(),
            attempt_scheduled_at: None,
            attempt_started_at: None,
        }
    }
}

impl Attempts {
    /// The first attempt of a task created at `now` under `policy` and `deadlines`.
    pub fn first(policy: Option<RetryPolicy>, deadlines: Deadlines, now: &str) -> Self {
        Attempts {
            max_attempts: policy.as_ref().map_or(1, |p| p.max_attempts),
            retry_policy: policy,
            deadlines,
            attempt_scheduled_at: Some(now.to_owned()),
            ..Attempts::default()
        }
    }
}

/// Milliseconds left of a bound of `bound_ms` that started at `since` (RFC 3339), at `now`
/// (0 once elapsed; the full bound if `since` is unreadable).
pub fn remaining_ms(since: Option<&str>, bound_ms: u64, now: time::OffsetDateTime) -> u64 {
    let Some(start) =
        since.and_then(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
    else {
        return bound_ms;
    };
    let elapsed = (now - start).whole_milliseconds().max(0) as u64;
    bound_ms.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, initial: u64, max: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            backoff,
            initial_delay_ms: initial,
            max_delay_ms: max,
            jitter: false,
            retry_on: Vec::new(),
        }
    }

    #[test]
    fn backoff_schedules() {
        let exp = policy(Backoff::Exponential, 100, 1000);
        let delays: Vec<u64> = (1..=6).map(|a| exp.delay_ms(a, 0)).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        let fixed = policy(Backoff::Fixed, 250, 1000);
        assert!((1..=6).all(|a| fixed.delay_ms(a, 7) == 250));
        // A huge attempt number saturates instead of overflowing.
        assert_eq!(exp.delay_ms(u32::MAX, 0), 1000);
        let zero = policy(Backoff::Exponential, 0, 0);
        assert_eq!(zero.delay_ms(3, 9), 0);
    }

    #[test]
    fn jitter_stays_within_half_to_full_delay() {
        let p = RetryPolicy { jitter: true, ..policy(Backoff::Exponential, 1000, 60_000) };
        for random in [0u64, 1, 499, 500, 501, 12_345, u64::MAX] {
            let d = p.delay_ms(2, random);
            assert!((1000..=2000).contains(&d), "{random} -> {d}");
        }
        assert_eq!(p.delay_ms(2, 0), 1000);
        assert_eq!(p.delay_ms(2, 1000), 2000);
    }

    #[test]
    fn decisions() {
        let p = policy(Backoff::Fixed, 10, 10);
        let reason = FailureReason::RuntimeExited;
        assert_eq!(RetryPolicy::decide(None, 1, &reason, false, 0), Err(NoRetry::NoPolicy));
        let single = RetryPolicy { max_attempts: 1, ..p.clone() };
        assert_eq!(RetryPolicy::decide(Some(&single), 1, &reason, false, 0), Err(NoRetry::NoPolicy));
        assert_eq!(RetryPolicy::decide(Some(&p), 1, &reason, false, 0), Ok(10));
        assert_eq!(RetryPolicy::decide(Some(&p), 4, &reason, false, 0), Ok(10));
        assert_eq!(RetryPolicy::decide(Some(&p), 5, &reason, false, 0), Err(NoRetry::Exhausted { max_attempts: 5 }));
        assert_eq!(RetryPolicy::decide(Some(&p), 1, &reason, true, 0), Err(NoRetry::Cancelled));
        for permanent in [FailureReason::AdapterMissing, FailureReason::Crashed] {
            assert_eq!(RetryPolicy::decide(Some(&p), 1, &permanent, false, 0), Err(NoRetry::NotRetryable));
        }
        let only = RetryPolicy { retry_on: vec!["boom".into(), "timeout".into()], ..p };
        assert!(only.retries(&FailureReason::from("boom")));
        assert!(only.retries(&FailureReason::Timeout));
        assert!(!only.retries(&FailureReason::RuntimeExited));
    }

    #[test]
    fn requests_resolve_with_defaults_and_name_what_is_wrong() {
        let p = RetryPolicyRequest::default().resolve().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (p.max_attempts, p.backoff, p.initial_delay_ms, p.max_delay_ms),
            (3, Backoff::Exponential, 1000, 60_000)
        );
        let big_initial = RetryPolicyRequest { initial_delay_ms: Some(120_000), ..Default::default() };
        assert_eq!(big_initial.resolve().map(|p| p.max_delay_ms), Ok(120_000));
        let cases: Vec<(RetryPolicyRequest, &str)> = vec![
            (RetryPolicyRequest { max_attempts: Some(0), ..Default::default() }, "max_attempts"),
            (RetryPolicyRequest { max_attempts: Some(101), ..Default::default() }, "max_attempts"),
            (
                RetryPolicyRequest { initial_delay_ms: Some(10), max_delay_ms: Some(5), ..Default::default() },
                "max_delay_ms",
            ),
            (RetryPolicyRequest { max_delay_ms: Some(MAX_DELAY_LIMIT_MS + 1), ..Default::default() }, "max_delay_ms"),
            (RetryPolicyRequest { retry_on: Some(vec![" ".into()]), ..Default::default() }, "retry_on"),
        ];
        for (req, field) in cases {
            let err = req.clone().resolve().err().unwrap_or_default();
            assert!(err.contains(field), "{req:?}: {err}");
        }
    }

    #[test]
    fn deadlines_are_checked() {
        assert!(Deadlines::default().check().is_ok());
        let zero = Deadlines { heartbeat_timeout_ms: Some(0), ..Default::default() };
        assert!(zero.check().err().unwrap_or_default().contains("heartbeat_timeout_ms"));
        let huge = Deadlines { start_to_close_ms: Some(MAX_DEADLINE_MS + 1), ..Default::default() };
        assert!(huge.check().err().unwrap_or_default().contains("start_to_close_ms"));
    }

    #[test]
    fn remaining_time_of_a_bound() {
        let now = time::OffsetDateTime::now_utc();
        let earlier = crate::clock::format_rfc3339(now - time::Duration::milliseconds(300));
        let left = remaining_ms(Some(&earlier), 1000, now);
        assert!((690..=710).contains(&left), "{left}");
        assert_eq!(remaining_ms(Some(&earlier), 100, now), 0);
        assert_eq!(remaining_ms(None, 100, now), 100);
        assert_eq!(remaining_ms(Some("garbage"), 100, now), 100);
    }
}
