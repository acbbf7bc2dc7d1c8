//! Task commands: `call`, `task-get`, `task-events`, `task-list`, `task-resume`, `task-cancel`.

use serde_json::{Value, json};

use super::agents::read_agent_id;
use super::client::{CliError, Client, Output};
use super::follow::{follow_events, format_event, wait_for_task};
use super::{CallArgs, TaskCancelArgs, TaskEventsArgs, TaskIdArg, TaskListArgs, TaskResumeArgs};
use super::{field_str, parse_object, payload};

pub(super) async fn call(client: &Client, out: Output, a: CallArgs) -> Result<(), CliError> {
    let mut body = json!({
        "sender": read_agent_id(&a.state).unwrap_or_else(|| "local".into()),
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
    );
    if !a.wait {
        return Ok(());
    }
    wait_for_task(client, out, task_id).await
}

pub(super) async fn get(client: &Client, out: Output, a: TaskIdArg) -> Result<(), CliError> {
    let t = client.get(&format!("/v1/tasks/{}", a.task_id)).await?;
    out.print(&t, format_task(&t));
    Ok(())
}

pub(super) async fn events(client: &Client, out: Output, a: TaskEventsArgs) -> Result<(), CliError> {
    if a.follow {
        // Streams until the task ends; how it ended does not change the exit code.
        follow_events(client, out, &a.task_id, a.after).await?;
    } else {
        let v = client.get_json(&format!("/v1/tasks/{}/events?after={}", a.task_id, a.after)).await?;
        for e in v.get("events").and_then(Value::as_array).into_iter().flatten() {
            out.print(e, format_event(e));
        }
    }
    Ok(())
}

pub(super) async fn list(client: &Client, out: Output, a: TaskListArgs) -> Result<(), CliError> {
    let mut query = Vec::new();
    for (k, v) in [
        ("status", a.status),
        ("target", a.target),
        ("conversation_id", a.conversation_id),
        ("sender", a.sender),
        ("cursor", a.cursor),
        ("limit", a.limit.map(|l| l.to_string())),
    ] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    let v = client.get_query("/v1/tasks", &query).await?;
    if out.json {
        println!("{v}");
    } else {
        for t in v.get("tasks").and_then(Value::as_array).into_iter().flatten() {
            println!(
                "{}  {:<15} {:<20} {}",
                field_str(t, "task_id"),
                field_str(t, "status"),
                field_str(t, "resolved_agent_id"),
                field_str(t, "intent")
            );
        }
        if let Some(c) = v.get("next_cursor").and_then(Value::as_str) {
            println!("(more: --cursor {c})");
        }
    }
    Ok(())
}

pub(super) async fn resume(client: &Client, out: Output, a: TaskResumeArgs) -> Result<(), CliError> {
    let payload = payload(&a.text, &a.payload_json)?.unwrap_or_else(|| json!({}));
    let v = client.post(&format!("/v1/tasks/{}/resume", a.task_id), &json!({ "payload": payload })).await?;
    out.print(&v, format!("task {} resume accepted (status {})", a.task_id, field_str(&v, "status")));
    Ok(())
}

pub(super) async fn cancel(client: &Client, out: Output, a: TaskCancelArgs) -> Result<(), CliError> {
    let body = a.reason.as_ref().map_or_else(|| json!({}), |r| json!({ "reason": r }));
    let v = client.post(&format!("/v1/tasks/{}/cancel", a.task_id), &body).await?;
    out.print(&v, format!("task {} cancel requested (status {})", a.task_id, field_str(&v, "status")));
    Ok(())
}

/// The task view, readable.
fn format_task(t: &Value) -> String {
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
    if let Some(id) = t.get("result_artifact_id").and_then(Value::as_str) {
        out.push_str(&format!("\n  result:       /v1/artifacts/{id}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_view_shows_the_error_and_result_only_when_present() {
        let plain = format_task(&json!({"task_id": "t1", "status": "running"}));
        assert!(plain.starts_with("task t1\n  status:       running\n"), "{plain}");
        assert!(!plain.contains("last_error") && !plain.contains("result:"), "{plain}");
        let ended = format_task(&json!({
            "task_id": "t2",
            "status": "failed",
            "last_error": {"reason": "timeout", "detail": "no result after 5 ms"},
            "result_artifact_id": "a1",
        }));
        assert!(ended.contains("\n  last_error:   timeout no result after 5 ms"), "{ended}");
        assert!(ended.ends_with("\n  result:       /v1/artifacts/a1"), "{ended}");
    }
}
