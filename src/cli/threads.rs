//! Thread commands: `thread-create`, `thread-get`, `thread-continue`, `thread-turns`, `threads`.

use serde_json::{Value, json};

use super::client::{CliError, Client, Output, line};
use super::follow::wait_for_task;
use super::{ThreadContinueArgs, ThreadCreateArgs, ThreadIdArg, ThreadsArgs};
use super::{field_str, payload};

pub(super) async fn create(client: &Client, out: Output, a: ThreadCreateArgs) -> Result<(), CliError> {
    let mut body = json!({ "agent_a_id": a.agent_a_id, "agent_b_id": a.agent_b_id });
    if let Some(k) = &a.continuity_key {
        body["continuity_key"] = json!(k);
    }
    let v = client.post("/v1/threads", &body).await?;
    out.print(
        &v,
        format!(
            "thread {} created ({} ↔ {})",
            v.pointer("/thread/thread_id").and_then(Value::as_str).unwrap_or(""),
            a.agent_a_id,
            a.agent_b_id
        ),
    )?;
    Ok(())
}

pub(super) async fn get(client: &Client, out: Output, a: ThreadIdArg) -> Result<(), CliError> {
    let v = client.get(&format!("/v1/threads/{}/inspect", a.thread_id)).await?;
    out.print(&v, format_inspection(&v))?;
    Ok(())
}

pub(super) async fn turns(client: &Client, out: Output, a: ThreadIdArg) -> Result<(), CliError> {
    let v = client.get(&format!("/v1/threads/{}/turns", a.thread_id)).await?;
    if out.json {
        line(&v)?;
    } else {
        for t in v.get("turns").and_then(Value::as_array).into_iter().flatten() {
            line(format_args!(
                "#{:<3} {} → {}  {:<15} task {}",
                t["turn_index"],
                field_str(t, "sender_agent_id"),
                field_str(t, "target_agent_id"),
                field_str(t, "status"),
                field_str(t, "task_id")
            ))?;
        }
    }
    Ok(())
}

pub(super) async fn list(client: &Client, out: Output, a: ThreadsArgs) -> Result<(), CliError> {
    let mut query = Vec::new();
    for (k, v) in [("agent", a.agent), ("status", a.status)] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    let v = client.get_query("/v1/threads", &query).await?;
    if out.json {
        line(&v)?;
    } else {
        for t in v.get("threads").and_then(Value::as_array).into_iter().flatten() {
            line(format_args!(
                "{}  {} ↔ {}  {:<12} last task {}",
                field_str(t, "thread_id"),
                field_str(t, "agent_a_id"),
                field_str(t, "agent_b_id"),
                field_str(t, "status"),
                field_str(t, "last_task_id")
            ))?;
        }
    }
    Ok(())
}

pub(super) async fn continue_turn(client: &Client, out: Output, a: ThreadContinueArgs) -> Result<(), CliError> {
    let mut body = json!({});
    for (k, v) in [
        ("sender", &a.sender),
        ("target_agent_id", &a.target_agent_id),
        ("intent", &a.intent),
        ("conversation_id", &a.conversation_id),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    if let Some(p) = payload(&a.text, &a.payload_json)? {
        body["payload"] = p;
    }
    if a.auto_continue {
        body["auto_continue"] = json!(true);
    }
    if let Some(m) = a.max_turns {
        body["max_turns"] = json!(m);
    }
    for (k, on) in [
        ("stop_on_awaiting_input", a.stop_on_awaiting_input),
        ("stop_on_terminal_error", a.stop_on_terminal_error),
        ("stop_on_same_actor_repeat", a.stop_on_same_actor_repeat),
    ] {
        if on {
            body[k] = json!(true);
        }
    }
    let v = client.post(&format!("/v1/threads/{}/continue", a.thread_id), &body).await?;
    let task = v.get("task").cloned().unwrap_or(Value::Null);
    let task_id = field_str(&task, "task_id");
    out.print(
        &v,
        format!(
            "turn task {task_id}: {} → {} (status {})",
            field_str(&task, "sender"),
            field_str(&task, "resolved_agent_id"),
            field_str(&task, "status")
        ),
    )?;
    if !a.wait {
        return Ok(());
    }
    wait_for_task(client, out, task_id, a.follow).await
}

/// The inspection view, readable.
pub fn format_inspection(v: &Value) -> String {
    let t = &v["thread"];
    let mut out = format!(
        "thread {}  {} ↔ {}  status {}\n  next: {} → {} (reuses remote session: {})",
        field_str(t, "thread_id"),
        field_str(t, "agent_a_id"),
        field_str(t, "agent_b_id"),
        field_str(t, "status"),
        v.pointer("/next_continue/sender_agent_id").and_then(Value::as_str).unwrap_or(""),
        v.pointer("/next_continue/target_agent_id").and_then(Value::as_str).unwrap_or(""),
        v.pointer("/next_continue/will_reuse_remote_session").and_then(Value::as_bool).unwrap_or(false),
    );
    if let Some(r) = v.get("interruption_reason").and_then(Value::as_str) {
        out.push_str(&format!("\n  interruption: {r}"));
    }
    if let Some(h) = t.get("handoff") {
        out.push_str(&format!(
            "\n  auto-handoff: {} of {} turns{}",
            h["turns_done"],
            h["max_turns"],
            h.get("stopped_reason").and_then(Value::as_str).map(|r| format!(", stopped: {r}")).unwrap_or_default()
        ));
    }
    for turn in v.get("turns").and_then(Value::as_array).into_iter().flatten() {
        out.push_str(&format!(
            "\n  #{:<3} {} → {}  {}",
            turn["turn_index"],
            field_str(turn, "sender_agent_id"),
            field_str(turn, "target_agent_id"),
            field_str(turn, "status")
        ));
    }
    for c in v.get("continuity").and_then(Value::as_array).into_iter().flatten() {
        out.push_str(&format!(
            "\n  {}: last session {}",
            field_str(c, "agent_id"),
            c.get("last_remote_session_id").and_then(Value::as_str).unwrap_or("-")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspection_view_lists_next_handoff_turns_and_continuity() {
        // `turn_index` is printed as a JSON value, whose `Display` ignores the `{:<3}` width.
        let view = format_inspection(&json!({
            "thread": {
                "thread_id": "th1", "agent_a_id": "la", "agent_b_id": "lb", "status": "active",
                "handoff": {"turns_done": 2, "max_turns": 3, "stopped_reason": "max_turns reached"},
            },
            "next_continue": {"sender_agent_id": "lb", "target_agent_id": "la", "will_reuse_remote_session": true},
            "turns": [{"turn_index": 1, "sender_agent_id": "la", "target_agent_id": "lb", "status": "completed"}],
            "continuity": [{"agent_id": "lb", "last_remote_session_id": "s1"}, {"agent_id": "la"}],
        }));
        assert_eq!(
            view,
            "thread th1  la ↔ lb  status active\n  next: lb → la (reuses remote session: true)\n  \
             auto-handoff: 2 of 3 turns, stopped: max_turns reached\n  #1 la → lb  completed\n  \
             lb: last session s1\n  la: last session -"
        );
    }
}
