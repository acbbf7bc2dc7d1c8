//! Following a task's events, and waiting for its outcome. Every command that streams a task
//! (`task-events --follow`) goes through [`follow_events`]; every command that waits for one
//! (`call --wait`, `thread-continue --wait`) goes through [`wait_for_task`], so they print the
//! same events, the same terminal summary and exit by the same rule (non-zero unless completed).

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;

use super::client::{CliError, Client, Output};
use super::field_str;

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

/// How a waited-for task ended, read from the last event of its stream (the stream closes after
/// the terminal event).
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

/// Streams a task's events after `after`, printing each; returns the last one.
pub(super) async fn follow_events(
    client: &Client,
    out: Output,
    task_id: &str,
    after: u64,
) -> Result<Option<Value>, CliError> {
    let resp = client.open_event_stream(task_id, after).await?;
    let mut stream = resp.bytes_stream().eventsource();
    let mut last = None;
    while let Some(item) = stream.next().await {
        let event = item.map_err(|e| CliError::Stream(e.to_string()))?;
        if event.event != "task.event" {
            continue;
        }
        let value: Value =
            serde_json::from_str(&event.data).map_err(|e| CliError::Stream(format!("bad event data: {e}")))?;
        out.print(&value, format_event(&value));
        last = Some(value);
    }
    Ok(last)
}

/// Follows a task from its first event to its end and prints the terminal summary: the result
/// line when it completed (readable output only), else an error saying how it ended.
pub(super) async fn wait_for_task(client: &Client, out: Output, task_id: &str) -> Result<(), CliError> {
    let last = follow_events(client, out, task_id, 0).await?;
    match ending(last.as_ref()) {
        Ending::Completed { result_line } => {
            if !out.json
                && let Some(line) = result_line
            {
                println!("{line}");
            }
            Ok(())
        }
        Ending::DidNotComplete { status, detail } => {
            Err(CliError::TaskDidNotComplete { task_id: task_id.to_owned(), status, detail })
        }
    }
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
}
