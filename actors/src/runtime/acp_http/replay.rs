//! Re-attaching to a remote run after a node restart: the run's whole event history rebuilds
//! what the node knew of it (text, ids, status), and only where the run stands *now* is
//! reported, so nothing the task already recorded is reported twice. Pure.

use serde_json::{Value, json};

use crate::model::JsonObject;
use crate::runtime::http::{RunOutcome, RunTracker};

/// Where a re-attached run stands, as the task must be told.
#[derive(Clone, Debug, PartialEq)]
pub enum Replayed {
    /// Still paused where the task already waits: nothing to report.
    StillAwaiting,
    /// It paused or ended while the node was down: report that.
    Now(RunOutcome),
    /// The task waited for input, but the run was resumed meanwhile and is running.
    ResumedMeanwhile,
    /// It is running: say the node follows it again.
    Running { data: JsonObject },
}

/// Rebuilds `run` (which holds what the task recorded: ids, and `status: awaiting` if it was
/// paused) from the run's event history and says where the run stands.
pub fn replay(run: &mut RunTracker, events: &[Value]) -> Replayed {
    let was_awaiting = run.awaiting();
    run.status = None;
    let mut last_state = None;
    for event in events {
        for outcome in run.apply(event) {
            match outcome {
                RunOutcome::Awaiting { .. }
                | RunOutcome::Completed { .. }
                | RunOutcome::Failed { .. }
                | RunOutcome::Cancelled => last_state = Some(outcome),
                // `run.in-progress` after a pause: the run was resumed.
                RunOutcome::Progress { .. } if !run.awaiting() => last_state = None,
                _ => {}
            }
        }
    }
    match last_state {
        Some(RunOutcome::Awaiting { .. }) if was_awaiting => Replayed::StillAwaiting,
        Some(now) => Replayed::Now(now),
        None if was_awaiting => Replayed::ResumedMeanwhile,
        None => Replayed::Running {
            data: [("run_id".to_owned(), json!(run.run_id)), ("events".to_owned(), json!(events.len()))]
                .into_iter()
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, status: &str) -> Value {
        json!({"type": kind, "run": {"run_id": "r1", "session_id": "s1", "status": status, "output": []}})
    }

    fn text(s: &str) -> Value {
        json!({"type": "message.part", "part": {"content": s, "content_type": "text/plain"}})
    }

    fn tracker(awaiting: bool) -> RunTracker {
        RunTracker {
            run_id: Some("r1".into()),
            session_id: Some("s1".into()),
            status: awaiting.then(|| "awaiting".to_owned()),
            ..RunTracker::default()
        }
    }

    #[test]
    fn history_says_where_the_run_stands() {
        let created = ev("run.created", "created");
        let progress = ev("run.in-progress", "in-progress");
        let awaiting = ev("run.awaiting", "awaiting");
        let completed = json!({"type": "run.completed", "run": {"run_id": "r1", "session_id": "s1", "status": "completed",
            "output": [{"role": "agent", "parts": [{"content": "Hello world"}]}]}});
        let failed = json!({"type": "run.failed", "run": {"run_id": "r1", "status": "failed", "error": {"code": "boom", "message": "it broke"}}});
        type Check = fn(&Replayed) -> bool;
        let cases: Vec<(&str, bool, Vec<Value>, Check)> = vec![
            (
                "running run is followed again",
                false,
                vec![created.clone(), progress.clone(), text("Hel")],
                |r| matches!(r, Replayed::Running { data } if data["run_id"] == "r1" && data["events"] == 3),
            ),
            (
                "finished while down reports its end with the whole text",
                false,
                vec![created.clone(), progress.clone(), text("Hello"), text(" world"), completed.clone()],
                |r| matches!(r, Replayed::Now(RunOutcome::Completed { result }) if result["text"] == "Hello world"),
            ),
            (
                "failed while down",
                false,
                vec![created.clone(), failed],
                |r| matches!(r, Replayed::Now(RunOutcome::Failed { code, .. }) if code == "boom"),
            ),
            ("paused while down is reported", false, vec![created.clone(), progress.clone(), awaiting.clone()], |r| {
                matches!(r, Replayed::Now(RunOutcome::Awaiting { .. }))
            }),
            ("still paused where the task waits: nothing", true, vec![created.clone(), awaiting.clone()], |r| {
                *r == Replayed::StillAwaiting
            }),
            ("resumed meanwhile", true, vec![created.clone(), awaiting.clone(), progress.clone()], |r| {
                *r == Replayed::ResumedMeanwhile
            }),
            ("resumed and finished meanwhile", true, vec![created, awaiting, progress, completed], |r| {
                matches!(r, Replayed::Now(RunOutcome::Completed { .. }))
            }),
        ];
        for (name, was_awaiting, events, check) in cases {
            let mut run = tracker(was_awaiting);
            let got = replay(&mut run, &events);
            assert!(check(&got), "{name}: {got:?}");
            assert_eq!(run.events_seen, events.len(), "{name}: the next re-sync starts after the history");
        }
    }

    #[test]
    fn replayed_text_is_kept_for_the_result() {
        let mut run = tracker(false);
        replay(&mut run, &[ev("run.created", "created"), text("a"), text("b")]);
        assert_eq!(run.text, "ab");
    }
}
