//! Following a task's events, and waiting for its outcome. Every command that streams or waits
//! (`task-events --follow`, `call --wait`, `thread-continue --wait`, `task-wait`) goes through
//! [`Follower`], so they print the same events, stop by the same rules ([`stop_at`]), print the
//! same terminal summary, and ride out a node restart the same way: a stream that closes before
//! the task's outcome means the node went away, so the follower reconnects with `Last-Event-ID`
//! (backing off, for `--reconnect-for`), says "node restarted" when it is back, and never makes
//! an outcome up.

use std::time::{Duration, Instant};

use aethrolink_actors::model::TaskStatus;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;

use super::args::DEFAULT_SERVER;
use super::client::{CliError, Client, Output, StreamFrom, line, note};
use super::{FollowArgs, field_str};

/// One readable line per event.
pub fn format_event(e: &Value) -> String {
    let seq = e.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let mut line =
        format!("#{seq:<3} {:<24} {:<15} {}", field_str(e, "kind"), field_str(e, "state"), field_str(e, "message"));
    if let Some(data) = e.get("data").filter(|d| d.as_object().is_some_and(|m| !m.is_empty())) {
        line.push_str(&format!("  {data}"));
    }
    line.trim_end().to_owned()
}

/// The task status an event leaves its task in, if it names a known one.
fn state_of(e: &Value) -> Option<TaskStatus> {
    field_str(e, "state").parse().ok()
}

/// What a follower waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WaitFor {
    /// The task's end (`task-events --follow`): awaiting input is one more event to print.
    End,
    /// The task's outcome for whoever waits on it (`call --wait`, `task-wait`): its end, or
    /// awaiting input (someone has to answer before anything else happens).
    Outcome,
    /// `task-wait --until S`: status S, or the end.
    Status(TaskStatus),
}

/// Why a follower stopped at an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The task is terminal.
    Ended,
    /// The task awaits input.
    AwaitingInput,
    /// The task reached the `--until` status.
    Reached,
}

/// Whether an event leaving the task in `state` stops a follower waiting for `wait`. Pure.
pub(super) fn stop_at(wait: WaitFor, state: Option<TaskStatus>) -> Option<Stop> {
    let state = state?;
    match wait {
        WaitFor::Status(wanted) if state == wanted => Some(Stop::Reached),
        _ if state.is_terminal() => Some(Stop::Ended),
        WaitFor::Outcome if state == TaskStatus::AwaitingInput => Some(Stop::AwaitingInput),
        _ => None,
    }
}

/// Shortest wait between reconnection attempts (the first one).
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// Longest wait between reconnection attempts.
const MAX_RETRY: Duration = Duration::from_secs(2);
/// A reopened stream that stays up this long means the node is back, even with no new event.
const BACK_AFTER: Duration = Duration::from_secs(5);

/// How long to wait before reconnection attempt `attempt` (0-based) when the stream was lost
/// `elapsed` ago, or `None` once `limit` is spent: doubling from 200 ms to 2 s, never past the
/// limit. Pure.
fn retry_delay(limit: Duration, attempt: u32, elapsed: Duration) -> Option<Duration> {
    let left = limit.checked_sub(elapsed).filter(|d| !d.is_zero())?;
    let backoff = FIRST_RETRY.saturating_mul(2u32.saturating_pow(attempt.min(16))).min(MAX_RETRY);
    Some(backoff.min(left))
}

/// Where a follower is in the task's stream.
#[derive(Debug, Default)]
struct Position {
    /// The last event's seq (a reconnection asks for what comes after it).
    seq: u64,
    /// The last event's state, for the message when the node is lost.
    state: String,
}

/// A stretch of time without the task's stream.
struct Outage {
    /// When the stream was lost.
    since: Instant,
    /// Reconnection attempts so far (for the backoff).
    attempts: u32,
    /// Whether "node restarted" was said (once per outage).
    announced: bool,
}

/// The event a follower stopped at, and why.
pub(super) struct Stopped {
    pub(super) event: Value,
    pub(super) why: Stop,
}

/// Follows one task's event stream.
pub(super) struct Follower<'a> {
    pub(super) client: &'a Client,
    pub(super) out: Output,
    pub(super) task_id: &'a str,
    pub(super) follow: FollowArgs,
    /// Print every event (`task-wait` prints only the one it stops at).
    pub(super) print_events: bool,
}

impl Follower<'_> {
    /// Streams the task's events after `after` (which left the task in `state`, if known) until
    /// one stops the wait, reconnecting across node restarts.
    pub(super) async fn run(&self, after: u64, state: &str, wait: WaitFor) -> Result<Stopped, CliError> {
        let mut pos = Position { seq: after, state: state.to_owned() };
        let mut from = StreamFrom::After(after);
        let mut outage: Option<Outage> = None;
        let mut was_up = false;
        loop {
            match self.client.open_event_stream(self.task_id, from).await {
                Ok(resp) => {
                    if let Some(o) = outage.as_mut().filter(|o| !o.announced) {
                        note(format_args!("node restarted; following task {} again after #{}", self.task_id, pos.seq));
                        o.announced = true;
                    }
                    was_up = true;
                    let opened = Instant::now();
                    let seq_before = pos.seq;
                    if let Some(stopped) = self.read(resp, wait, &mut pos).await? {
                        return Ok(stopped);
                    }
                    if pos.seq > seq_before || opened.elapsed() >= BACK_AFTER {
                        outage = None;
                    }
                }
                // Only a stream that was up can be lost: a node that never answered is an error.
                Err(e) if e.is_transient() && was_up => {}
                Err(e) => return Err(e),
            }
            // The stream is gone and the task has no outcome yet: the node stopped.
            let o = outage.get_or_insert_with(|| {
                note(format_args!(
                    "the node's event stream for task {} closed after #{} without an outcome (node stopped?); \
                     reconnecting for up to {}s",
                    self.task_id,
                    pos.seq,
                    self.follow.reconnect_for.as_secs()
                ));
                Outage { since: Instant::now(), attempts: 0, announced: false }
            });
            let Some(delay) = retry_delay(self.follow.reconnect_for, o.attempts, o.since.elapsed()) else {
                return Err(CliError::NodeLost {
                    server: self.client.server().to_owned(),
                    task_id: self.task_id.to_owned(),
                    waited: o.since.elapsed(),
                    last_seq: pos.seq,
                    status: if pos.state.is_empty() { "unknown".into() } else { pos.state.clone() },
                });
            };
            o.attempts += 1;
            tokio::time::sleep(delay).await;
            from = StreamFrom::LastEventId(pos.seq);
        }
    }

    /// Reads one opened stream: `Some` when an event stops the wait, `None` when the stream
    /// ends (or breaks) first.
    async fn read(
        &self,
        resp: reqwest::Response,
        wait: WaitFor,
        pos: &mut Position,
    ) -> Result<Option<Stopped>, CliError> {
        let mut stream = resp.bytes_stream().eventsource();
        while let Some(item) = stream.next().await {
            let Ok(event) = item else { return Ok(None) };
            if event.event != "task.event" {
                continue;
            }
            let value: Value =
                serde_json::from_str(&event.data).map_err(|e| CliError::Stream(format!("bad event data: {e}")))?;
            let seq = value.get("seq").and_then(Value::as_u64).unwrap_or(0);
            if seq <= pos.seq {
                continue; // already seen before a reconnection
            }
            if self.print_events {
                self.out.print(&value, format_event(&value))?;
            }
            *pos = Position { seq, state: field_str(&value, "state").to_owned() };
            match stop_at(wait, state_of(&value)) {
                // `task.resume_requested` leaves the state `awaiting_input` while the answer is on
                // its way: only the request itself (still unanswered) stops the follower.
                Some(Stop::AwaitingInput)
                    if field_str(&value, "kind") != "task.awaiting_input" || !self.still_awaiting().await => {}
                Some(why) => return Ok(Some(Stopped { event: value, why })),
                None => {}
            }
        }
        Ok(None)
    }

    /// Whether the task still awaits input (a replayed `task.awaiting_input` may be old news
    /// when someone else already answered it); unknown counts as yes.
    async fn still_awaiting(&self) -> bool {
        match self.client.get(&format!("/v1/tasks/{}", self.task_id)).await {
            Ok(t) => field_str(&t, "status") == TaskStatus::AwaitingInput.as_str(),
            Err(_) => true,
        }
    }
}

/// How a waited-for task ended, read from its terminal event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// It completed; `result_line` is what readable output prints after the events (none when
    /// the event carries no result).
    Completed { result_line: Option<String> },
    /// It ended any other way, or the stream closed without any event.
    DidNotComplete {
        /// The last event's state (`failed`, `cancelled`, …), or `without a terminal event`.
        status: String,
        /// `: <message of the last event>` (for a failure it names the reason), or empty.
        detail: String,
    },
}

/// The [`Ending`] of a task whose stream ended with `last` (pure: no IO).
fn ending(last: Option<&Value>) -> Ending {
    let status = last.map(|e| field_str(e, "state")).unwrap_or_default();
    if status == "completed" {
        let result_line = last.and_then(|e| e.pointer("/data/result")).map(|result| format!("result: {result}"));
        return Ending::Completed { result_line };
    }
    let detail = last.map(|e| format!(": {}", field_str(e, "message"))).filter(|d| d != ": ").unwrap_or_default();
    let status = if status.is_empty() { "without a terminal event".to_owned() } else { status.to_owned() };
    Ending::DidNotComplete { status, detail }
}

/// A word safe to paste into a POSIX shell (quoted when it needs to be).
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The `alink-cli task-resume …` commands that answer a task's `task.awaiting_input` event:
/// for a permission request, `--decision` for each kind of option offered and `--option-id`
/// for each option; otherwise a `--text` answer. `server` is added when it is not the default.
/// Pure.
pub(super) fn resume_commands(server: &str, task_id: &str, event: &Value) -> Vec<String> {
    let mut base = "alink-cli".to_owned();
    if server != DEFAULT_SERVER {
        base.push_str(&format!(" --server {}", shell_word(server)));
    }
    base.push_str(&format!(" task-resume --task-id {}", shell_word(task_id)));
    let options: Vec<&Value> = match event.pointer("/data/options") {
        Some(Value::Array(options)) if field_str(&event["data"], "request") == "permission" => options.iter().collect(),
        _ => Vec::new(),
    };
    if options.is_empty() {
        return vec![format!("{base} --text '<answer>'")];
    }
    let kinds: Vec<&str> = options.iter().map(|o| field_str(o, "kind")).collect();
    let mut commands = Vec::new();
    for (decision, prefix) in [("allow", "allow_"), ("reject", "reject_")] {
        if kinds.iter().any(|k| k.starts_with(prefix)) {
            commands.push(format!("{base} --decision {decision}"));
        }
    }
    for id in options.iter().map(|o| field_str(o, "optionId")).filter(|id| !id.is_empty()) {
        commands.push(format!("{base} --option-id {}", shell_word(id)));
    }
    commands
}

/// What a waiting command reports once its follower stopped: the result line of a completed
/// task (readable output only) and success, else the error saying how it stopped.
pub(super) fn report_outcome(client: &Client, out: Output, task_id: &str, stopped: &Stopped) -> Result<(), CliError> {
    if stopped.why == Stop::AwaitingInput {
        let e = &stopped.event;
        let prompt =
            e.pointer("/data/prompt").and_then(Value::as_str).or_else(|| e.get("message").and_then(Value::as_str));
        return Err(CliError::AwaitingInput {
            task_id: task_id.to_owned(),
            prompt: prompt.filter(|p| !p.is_empty()).map(str::to_owned),
            commands: resume_commands(client.server(), task_id, e),
        });
    }
    match ending(Some(&stopped.event)) {
        Ending::Completed { result_line } => match result_line {
            Some(result) if !out.json => line(result),
            _ => Ok(()),
        },
        Ending::DidNotComplete { status, detail } => {
            Err(CliError::TaskDidNotComplete { task_id: task_id.to_owned(), status, detail })
        }
    }
}

/// Follows a task from its first event until it ends or awaits input, printing every event,
/// then reports the outcome (`call --wait`, `thread-continue --wait`).
pub(super) async fn wait_for_task(
    client: &Client,
    out: Output,
    task_id: &str,
    follow: FollowArgs,
) -> Result<(), CliError> {
    let follower = Follower { client, out, task_id, follow, print_events: true };
    let stopped = follower.run(0, "", WaitFor::Outcome).await?;
    report_outcome(client, out, task_id, &stopped)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn events_format_on_one_line() {
        let line =
            format_event(&json!({"seq": 3, "kind": "runtime.ready", "state": "ready", "message": "Runtime ready"}));
        assert!(line.starts_with("#3"));
        assert!(line.contains("runtime.ready") && line.contains("Runtime ready"));
    }

    #[test]
    fn event_data_is_appended_only_when_not_empty() {
        let bare = format_event(&json!({"seq": 1, "kind": "task.created", "state": "created", "data": {}}));
        assert_eq!(bare, format!("#1   {:<24} created", "task.created"));
        let with = format_event(&json!({"seq": 12, "kind": "task.running", "state": "running", "data": {"step": 1}}));
        assert!(with.ends_with(r#"running           {"step":1}"#), "{with}");
    }

    fn did_not_complete(status: &str, detail: &str) -> Ending {
        Ending::DidNotComplete { status: status.to_owned(), detail: detail.to_owned() }
    }

    #[test]
    fn ending_of_the_last_event() {
        let failed = json!({"state": "failed", "message": "Loopback failed: nope", "data": {"reason": "nope"}});
        let cases = [
            (
                Some(json!({"state": "completed", "data": {"result": {"text": "hi"}}})),
                Ending::Completed { result_line: Some(r#"result: {"text":"hi"}"#.to_owned()) },
            ),
            (Some(json!({"state": "completed", "message": "done"})), Ending::Completed { result_line: None }),
            (Some(failed), did_not_complete("failed", ": Loopback failed: nope")),
            (Some(json!({"state": "cancelled", "message": ""})), did_not_complete("cancelled", "")),
            (Some(json!({"state": "cancelled"})), did_not_complete("cancelled", "")),
            (Some(json!({"message": "odd"})), did_not_complete("without a terminal event", ": odd")),
            (None, did_not_complete("without a terminal event", "")),
        ];
        for (last, want) in cases {
            assert_eq!(ending(last.as_ref()), want, "last event {last:?}");
        }
    }

    #[test]
    fn a_failed_ending_reads_as_one_error_line() {
        let Ending::DidNotComplete { status, detail } =
            ending(Some(&json!({"state": "failed", "message": "Loopback failed: boom"})))
        else {
            panic!("a failed task did not complete");
        };
        let e = CliError::TaskDidNotComplete { task_id: "t1".into(), status, detail };
        assert_eq!(e.to_string(), "task t1 ended failed: Loopback failed: boom");
    }

    #[test]
    fn what_stops_a_follower() {
        use TaskStatus::*;
        let cases = [
            (WaitFor::End, Some(Running), None),
            (WaitFor::End, Some(AwaitingInput), None),
            (WaitFor::End, Some(Failed), Some(Stop::Ended)),
            (WaitFor::End, None, None),
            (WaitFor::Outcome, Some(Running), None),
            (WaitFor::Outcome, Some(AwaitingInput), Some(Stop::AwaitingInput)),
            (WaitFor::Outcome, Some(Completed), Some(Stop::Ended)),
            (WaitFor::Outcome, Some(Cancelled), Some(Stop::Ended)),
            (WaitFor::Status(Running), Some(Dispatching), None),
            (WaitFor::Status(Running), Some(Running), Some(Stop::Reached)),
            (WaitFor::Status(Running), Some(AwaitingInput), None),
            (WaitFor::Status(Running), Some(Failed), Some(Stop::Ended)),
            (WaitFor::Status(Completed), Some(Completed), Some(Stop::Reached)),
            (WaitFor::Status(Completed), Some(Cancelled), Some(Stop::Ended)),
            (WaitFor::Status(AwaitingInput), Some(AwaitingInput), Some(Stop::Reached)),
        ];
        for (wait, state, want) in cases {
            assert_eq!(stop_at(wait, state), want, "{wait:?} at {state:?}");
        }
    }

    #[test]
    fn reconnection_backs_off_within_the_limit() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let cases = [
            (s(60), 0, s(0), Some(ms(200))),
            (s(60), 1, s(1), Some(ms(400))),
            (s(60), 3, s(2), Some(ms(1600))),
            (s(60), 4, s(3), Some(s(2))),
            (s(60), 40, s(30), Some(s(2))),
            (s(60), 5, ms(59_500), Some(ms(500))),
            (s(60), 5, s(60), None),
            (s(60), 5, s(61), None),
            (s(0), 0, s(0), None),
        ];
        for (limit, attempt, elapsed, want) in cases {
            assert_eq!(
                retry_delay(limit, attempt, elapsed),
                want,
                "limit {limit:?} attempt {attempt} after {elapsed:?}"
            );
        }
    }

    #[test]
    fn resume_commands_answer_what_was_asked() {
        let permission = json!({"kind": "task.awaiting_input", "data": {"request": "permission", "options": [
            {"optionId": "allow-once", "kind": "allow_once"}, {"optionId": "deny", "kind": "reject_once"}]}});
        let base = "alink-cli task-resume --task-id T1";
        assert_eq!(
            resume_commands(DEFAULT_SERVER, "T1", &permission),
            vec![
                format!("{base} --decision allow"),
                format!("{base} --decision reject"),
                format!("{base} --option-id allow-once"),
                format!("{base} --option-id deny"),
            ]
        );
        let only_allow =
            json!({"data": {"request": "permission", "options": [{"optionId": "a b", "kind": "allow_always"}]}});
        assert_eq!(
            resume_commands(DEFAULT_SERVER, "T1", &only_allow),
            vec![format!("{base} --decision allow"), format!("{base} --option-id 'a b'")]
        );
        let free = json!({"data": {"prompt": "approve?"}});
        assert_eq!(resume_commands(DEFAULT_SERVER, "T1", &free), vec![format!("{base} --text '<answer>'")]);
        assert_eq!(
            resume_commands("http://127.0.0.1:9000", "T1", &free),
            vec!["alink-cli --server http://127.0.0.1:9000 task-resume --task-id T1 --text '<answer>'".to_owned()]
        );
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        let cases = [("abc-1", "abc-1"), ("a b", "'a b'"), ("it's", r"'it'\''s'"), ("", "''"), ("$x", "'$x'")];
        for (word, want) in cases {
            assert_eq!(shell_word(word), want);
        }
    }
}
