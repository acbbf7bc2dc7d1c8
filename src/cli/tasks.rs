//! Task commands: `call`, `task-get`, `task-events`, `task-wait`, `task-list`, `task-resume`,
//! `task-cancel`.

use aethrolink_actors::model::TaskStatus;
use serde_json::{Value, json};

use super::agents::{Sender, SenderSource, resolve_sender};
use super::client::{CliError, Client, Output, line, note};
use super::follow::{Follower, Stop, Stopped, WaitFor, format_event, report_outcome, stop_at, wait_for_task};
use super::{
    BulkActionArg, CallArgs, TaskBulkArgs, TaskCancelArgs, TaskEventsArgs, TaskFilterArgs, TaskIdArg, TaskListArgs,
    TaskResumeArgs, TaskWaitArgs,
};
use super::{field_str, parse_object, payload};

pub(super) async fn call(client: &Client, out: Output, a: CallArgs) -> Result<(), CliError> {
    let sender = resolve_sender(&a.state);
    if let Some(Sender { id, from: SenderSource::StateFile }) = &sender {
        // Registering wrote a state file; say so, since every later call is sent as that agent.
        note(format_args!("sending as agent {id} (from {}; --agent-id overrides)", a.state.state_file.display()));
    }
    if a.heartbeat
        && let Some(s) = &sender
    {
        client.post(&format!("/v1/agents/{}/heartbeat", s.id), &json!({})).await?;
    }
    let mut body = json!({
        "sender": sender.map_or_else(|| "local".into(), |s| s.id),
        "intent": a.intent,
        "payload": payload(&a.text, &a.payload_json)?.unwrap_or_else(|| json!({})),
    });
    if let Some(t) = &a.target_agent_id {
        body["target_agent_id"] = json!(t);
    }
    if let Some(c) = &a.conversation_id {
        body["conversation_id"] = json!(c);
    }
    if let Some(o) = &a.runtime_options_json {
        body["runtime_options"] = Value::Object(parse_object("--runtime-options-json", o)?);
    }
    if let Some(ms) = a.timeout_ms {
        body["delivery"] = json!({ "timeout_ms": ms });
    }
    if let Some(p) = &a.priority {
        body["priority"] = json!(p);
    }
    if let Some(r) = &a.retry_json {
        body["retry_policy"] = Value::Object(parse_object("--retry-json", r)?);
    }
    if let Some(d) = &a.deadlines_json {
        body["deadlines"] = Value::Object(parse_object("--deadlines-json", d)?);
    }
    let created = client.post("/v1/tasks", &body).await?;
    let task = created.get("task").cloned().unwrap_or(Value::Null);
    let task_id = field_str(&task, "task_id");
    out.print(
        &created,
        format!(
            "task {task_id} accepted (target {}, status {})",
            field_str(&task, "resolved_agent_id"),
            field_str(&task, "status")
        ),
    )?;
    if !a.wait {
        return Ok(());
    }
    wait_for_task(client, out, task_id, a.follow).await
}

pub(super) async fn get(client: &Client, out: Output, a: TaskIdArg) -> Result<(), CliError> {
    let t = client.get(&format!("/v1/tasks/{}", a.task_id)).await?;
    if out.json {
        return line(&t);
    }
    // A completed task's result is shown inline; if it cannot be read, its address is.
    let result = match t.get("result_artifact_id").and_then(Value::as_str) {
        Some(id) if field_str(&t, "status") == TaskStatus::Completed.as_str() => {
            client.get(&format!("/v1/artifacts/{id}")).await.ok()
        }
        _ => None,
    };
    line(format_task(&t, result.as_ref()))
}

pub(super) async fn events(client: &Client, out: Output, a: TaskEventsArgs) -> Result<(), CliError> {
    if a.follow {
        // Streams until the task ends; how it ended does not change the exit code.
        let follower = Follower { client, out, task_id: &a.task_id, follow: a.reconnect, print_events: true };
        follower.run(a.after, "", WaitFor::End).await?;
    } else {
        let v = client.get_json(&format!("/v1/tasks/{}/events?after={}", a.task_id, a.after)).await?;
        for e in v.get("events").and_then(Value::as_array).into_iter().flatten() {
            out.print(e, format_event(e))?;
        }
    }
    Ok(())
}

/// `task-wait`: from where the task is now (the last stored event) to the first event that
/// stops the wait; prints that event, then exits by the rule of `--until` (or of `call --wait`).
pub(super) async fn wait(client: &Client, out: Output, a: TaskWaitArgs) -> Result<(), CliError> {
    let history = client.get_json(&format!("/v1/tasks/{}/events", a.task_id)).await?;
    let last = history.get("events").and_then(Value::as_array).and_then(|events| events.last()).cloned();
    let wait_for = a.until.map_or(WaitFor::Outcome, WaitFor::Status);
    let now = last.as_ref().and_then(|e| {
        let state = field_str(e, "state").parse().ok();
        match stop_at(wait_for, state) {
            // The last event is an answer on its way (`task.resume_requested` keeps the state
            // `awaiting_input`): follow until the runtime takes it, as the follower does.
            Some(Stop::AwaitingInput) if field_str(e, "kind") != "task.awaiting_input" => None,
            why => why.map(|why| Stopped { event: e.clone(), why }),
        }
    });
    let stopped = match now {
        Some(stopped) => stopped,
        None => {
            let after = last.as_ref().and_then(|e| e.get("seq")).and_then(Value::as_u64).unwrap_or(0);
            let state = last.as_ref().map(|e| field_str(e, "state")).unwrap_or_default();
            let follower = Follower { client, out, task_id: &a.task_id, follow: a.follow, print_events: false };
            follower.run(after, state, wait_for).await?
        }
    };
    out.print(&stopped.event, format_event(&stopped.event))?;
    match (a.until, stopped.why) {
        (Some(_), Stop::Reached) => Ok(()),
        (Some(wanted), _) => Err(CliError::StatusNotReached {
            task_id: a.task_id.clone(),
            wanted: wanted.to_string(),
            status: field_str(&stopped.event, "state").to_owned(),
            detail: Some(field_str(&stopped.event, "message"))
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default(),
        }),
        (None, _) => report_outcome(client, out, &a.task_id, &stopped),
    }
}

/// The listing filters set, as (query parameter, value).
fn filter_params(f: TaskFilterArgs) -> Vec<(&'static str, String)> {
    let flag = |on: bool| on.then(|| "true".to_owned());
    [
        ("status", f.status),
        ("target", f.target),
        ("intent", f.intent),
        ("conversation_id", f.conversation_id),
        ("thread_id", f.thread_id),
        ("sender", f.sender),
        ("correlation_id", f.correlation_id),
        ("retrying", flag(f.retrying)),
        ("stuck", flag(f.stuck)),
        ("stuck_after_ms", f.stuck_after_ms.map(|ms| ms.to_string())),
        ("created_after", f.created_after),
        ("created_before", f.created_before),
        ("updated_after", f.updated_after),
        ("updated_before", f.updated_before),
        ("q", f.text),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect()
}

pub(super) async fn bulk(client: &Client, out: Output, a: TaskBulkArgs) -> Result<(), CliError> {
    let action = match a.action {
        BulkActionArg::Cancel => "cancel",
        BulkActionArg::Retry => "retry",
    };
    let mut body = json!({ "action": action, "dry_run": a.dry_run });
    let filter = filter_params(a.filter);
    if !a.ids.is_empty() {
        body["ids"] = json!(a.ids);
    }
    if !filter.is_empty() || a.ids.is_empty() {
        // The node refuses an empty filter with a message saying why.
        let mut f = serde_json::Map::new();
        for (k, v) in filter {
            let value = match k {
                "retrying" | "stuck" => json!(true),
                "stuck_after_ms" => v.parse::<u64>().map_or(json!(v), |n| json!(n)),
                _ => json!(v),
            };
            f.insert(k.to_owned(), value);
        }
        body["filter"] = Value::Object(f);
    }
    if let Some(r) = a.reason {
        body["reason"] = json!(r);
    }
    let v = client.post("/v1/tasks/bulk", &body).await?;
    let count = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut text = if a.dry_run {
        format!("{} tasks match (dry run: nothing changed)", count("matched"))
    } else {
        format!("{action}: {} matched, {} applied, {} failed", count("matched"), count("applied"), count("failed"))
    };
    if v.get("truncated").and_then(Value::as_bool) == Some(true) {
        text.push_str(" (more matched than one request acts on; run it again)");
    }
    for id in v.get("task_ids").and_then(Value::as_array).into_iter().flatten().filter(|_| a.dry_run) {
        text.push_str(&format!("\n  {}", id.as_str().unwrap_or_default()));
    }
    for f in v.get("failures").and_then(Value::as_array).into_iter().flatten() {
        text.push_str(&format!("\n  {}: {}", field_str(f, "task_id"), field_str(f, "error")));
    }
    out.print(&v, text)
}

pub(super) async fn list(client: &Client, out: Output, a: TaskListArgs) -> Result<(), CliError> {
    let mut query = filter_params(a.filter);
    for (k, v) in [("cursor", a.cursor), ("limit", a.limit.map(|l| l.to_string()))] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    let v = client.get_query("/v1/tasks", &query).await?;
    if out.json {
        line(&v)?;
    } else {
        let tasks: Vec<&Value> = v.get("tasks").and_then(Value::as_array).into_iter().flatten().collect();
        if !tasks.is_empty() {
            line(format_args!(
                "{:<26}  {:<15} {:<8} {:<20} {:<20} UPDATED",
                "TASK", "STATUS", "PRIORITY", "TARGET", "INTENT"
            ))?;
        }
        for t in tasks {
            line(format_args!(
                "{:<26}  {:<15} {:<8} {:<20} {:<20} {}",
                field_str(t, "task_id"),
                field_str(t, "status"),
                field_str(t, "priority"),
                field_str(t, "resolved_agent_id"),
                field_str(t, "intent"),
                field_str(t, "updated_at")
            ))?;
        }
        if let Some(c) = v.get("next_cursor").and_then(Value::as_str) {
            line(format_args!("(more: --cursor {c})"))?;
        }
    }
    Ok(())
}

pub(super) async fn resume(client: &Client, out: Output, a: TaskResumeArgs) -> Result<(), CliError> {
    let payload = payload(&a.text, &a.payload_json)?.unwrap_or_else(|| json!({}));
    let v = client.post(&format!("/v1/tasks/{}/resume", a.task_id), &resume_body(payload, &a)).await?;
    out.print(&v, format!("task {} resume accepted (status {})", a.task_id, field_str(&v, "status")))?;
    Ok(())
}

pub(super) async fn cancel(client: &Client, out: Output, a: TaskCancelArgs) -> Result<(), CliError> {
    let body = a.reason.as_ref().map_or_else(|| json!({}), |r| json!({ "reason": r }));
    let v = client.post(&format!("/v1/tasks/{}/cancel", a.task_id), &body).await?;
    out.print(&v, format!("task {} cancel requested (status {})", a.task_id, field_str(&v, "status")))?;
    Ok(())
}

/// The body of `POST /v1/tasks/{id}/resume`: the payload, and the permission answer
/// (`decision` or `option_id`) when one is given. Pure.
fn resume_body(payload: Value, a: &TaskResumeArgs) -> Value {
    let mut body = json!({ "payload": payload });
    if let Some(d) = a.decision {
        body["decision"] = json!(d.as_str());
    }
    if let Some(id) = &a.option_id {
        body["option_id"] = json!(id);
    }
    body
}

/// The task view, readable; `result` is the completed task's result, read from its artifact.
fn format_task(t: &Value, result: Option<&Value>) -> String {
    let mut out = format!(
        "task {}\n  status:       {}\n  intent:       {}\n  target:       {}\n  sender:       {}\n  conversation: {}\n  created_at:   {}\n  updated_at:   {}",
        field_str(t, "task_id"),
        field_str(t, "status"),
        field_str(t, "intent"),
        field_str(t, "resolved_agent_id"),
        field_str(t, "sender"),
        field_str(t, "conversation_id"),
        field_str(t, "created_at"),
        field_str(t, "updated_at"),
    );
    if let Some(err) = t.get("last_error") {
        out.push_str(&format!("\n  last_error:   {} {}", field_str(err, "reason"), field_str(err, "detail")));
    }
    match (t.get("result_artifact_id").and_then(Value::as_str), result) {
        (Some(id), Some(result)) => {
            out.push_str(&format!("\n  result:       {result}\n  artifact:     /v1/artifacts/{id}"));
        }
        (Some(id), None) => out.push_str(&format!("\n  result:       /v1/artifacts/{id}")),
        (None, _) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_view_shows_the_error_and_result_only_when_present() {
        let plain = format_task(&json!({"task_id": "t1", "status": "running"}), None);
        assert!(plain.starts_with("task t1\n  status:       running\n"), "{plain}");
        assert!(!plain.contains("last_error") && !plain.contains("result:"), "{plain}");
        let ended = format_task(
            &json!({
                "task_id": "t2",
                "status": "failed",
                "last_error": {"reason": "timeout", "detail": "no result after 5 ms"},
                "result_artifact_id": "a1",
            }),
            None,
        );
        assert!(ended.contains("\n  last_error:   timeout no result after 5 ms"), "{ended}");
        assert!(ended.ends_with("\n  result:       /v1/artifacts/a1"), "{ended}");
        let done = format_task(
            &json!({"task_id": "t3", "status": "completed", "result_artifact_id": "a2"}),
            Some(&json!({"text": "hi"})),
        );
        assert!(done.ends_with("\n  result:       {\"text\":\"hi\"}\n  artifact:     /v1/artifacts/a2"), "{done}");
    }

    #[test]
    fn resume_body_carries_the_permission_answer() {
        use super::super::args::Decision;
        let args = |decision: Option<Decision>, option_id: Option<&str>| TaskResumeArgs {
            task_id: "t".into(),
            text: None,
            payload_json: None,
            decision,
            option_id: option_id.map(str::to_owned),
        };
        let cases = [
            (args(None, None), json!({"payload": {}})),
            (args(Some(Decision::Allow), None), json!({"payload": {}, "decision": "allow"})),
            (args(Some(Decision::RejectAlways), None), json!({"payload": {}, "decision": "reject_always"})),
            (args(None, Some("deny")), json!({"payload": {}, "option_id": "deny"})),
        ];
        for (a, want) in cases {
            assert_eq!(resume_body(json!({}), &a), want, "{a:?}");
        }
    }
}
