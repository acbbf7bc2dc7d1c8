//! What the stdio ACP session and the HTTP session share beyond their [`SessionQueue`]: how a
//! task hears from its session, cancel of queued work, the freshness of persisted session
//! bindings, and the end of a turn whose runtime went away.

use std::time::Duration;

use ractor::ActorRef;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::acp::AcpMsg;
use super::queue::{SessionQueue, Turn};
use crate::model::FailureReason;
use crate::port::{AdapterEvent, Dispatch};

/// A persisted session binding older than this is not reused (agents and the reference HTTP
/// server forget sessions after an hour).
pub const BINDING_FRESH: Duration = Duration::from_secs(3600);

/// Sends a task its runtime events (nothing if there are none).
pub fn emit(d: &Dispatch, events: Vec<AdapterEvent>) {
    d.report(events);
}

/// Cancels a task still waiting in a session's queue (its turn ends there); `false` if it is not
/// there.
pub fn cancel_queued<T: Turn<Work = Dispatch>>(
    work: &mut SessionQueue<T>,
    task_id: &str,
    runtime: &ActorRef<AcpMsg>,
) -> bool {
    let Some((d, event)) = work.cancel_waiting(task_id) else { return false };
    emit(&d, vec![event]);
    let _ = runtime.cast(AcpMsg::TurnEnded { task_id: d.task_id });
    true
}

/// Whether a binding last used at `last` (RFC 3339) may still be continued at `now`.
pub fn binding_is_fresh(last: &str, now: OffsetDateTime) -> bool {
    OffsetDateTime::parse(last, &Rfc3339)
        .map(|t| (now - t).whole_seconds() < BINDING_FRESH.as_secs() as i64)
        .unwrap_or(false)
}

/// How a running turn ends when its runtime went away (`reason`): cancelled if a cancel was
/// asked for, else failed `runtime_exited`.
pub fn runtime_gone(cancel_requested: bool, reason: &str) -> AdapterEvent {
    if cancel_requested {
        AdapterEvent::Cancelled { message: "Cancelled; the runtime stopped".into() }
    } else {
        AdapterEvent::Failed {
            reason: FailureReason::RuntimeExited,
            detail: Some(reason.to_owned()),
            message: "Runtime exited during the task".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_fresh_for_an_hour() {
        let now = OffsetDateTime::parse("2026-04-24T08:00:00.000000000Z", &Rfc3339).ok();
        let Some(now) = now else { panic!("bad test time") };
        let cases = [
            ("2026-04-24T07:30:00.000000000Z", true),
            ("2026-04-24T07:00:00.500000000Z", true),
            ("2026-04-24T07:00:00.000000000Z", false),
            ("2026-04-23T08:00:00.000000000Z", false),
            ("not a time", false),
        ];
        for (last, fresh) in cases {
            assert_eq!(binding_is_fresh(last, now), fresh, "{last}");
        }
    }

    #[test]
    fn a_gone_runtime_ends_the_turn() {
        assert_eq!(
            runtime_gone(true, "x"),
            AdapterEvent::Cancelled { message: "Cancelled; the runtime stopped".into() }
        );
        assert!(
            matches!(runtime_gone(false, "exit 1"), AdapterEvent::Failed { reason, detail: Some(d), .. } if reason == "runtime_exited" && d == "exit 1")
        );
    }
}
