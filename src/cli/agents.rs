//! Agent and target commands: `targets`, `register`, `ensure-registered`, `agents`, `heartbeat`,
//! `unregister`, `target-health`, `target-start`, `target-stop`; and the state file that keeps
//! this agent's id between runs.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::client::{CliError, Client, Output, line, note};
use super::{HeartbeatArgs, RegisterArgs, StateArgs, TargetArg, TargetIdArg, TargetStartArgs, TargetsArgs};
use super::{field_str, parse_object};

/// `--state-file` when none is given: `~/.aethrolink/agent.json`.
pub(super) fn default_state_file() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".aethrolink").join("agent.json"),
        None => PathBuf::from(".aethrolink-agent.json"),
    }
}

/// Where this agent's id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SenderSource {
    /// `--agent-id`.
    Flag,
    /// The state file `register` wrote.
    StateFile,
}

/// This agent's id and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sender {
    pub(super) id: String,
    pub(super) from: SenderSource,
}

/// This agent: `--agent-id`, else the state file's, else none.
pub(super) fn resolve_sender(state: &StateArgs) -> Option<Sender> {
    if let Some(id) = state.agent_id.clone().filter(|s| !s.is_empty()) {
        return Some(Sender { id, from: SenderSource::Flag });
    }
    let text = std::fs::read_to_string(&state.state_file).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let id = v.get("agent_id").and_then(Value::as_str).filter(|id| !id.is_empty())?;
    Some(Sender { id: id.to_owned(), from: SenderSource::StateFile })
}

/// This agent's id: `--agent-id`, else the state file's, else none.
pub(super) fn read_agent_id(state: &StateArgs) -> Option<String> {
    resolve_sender(state).map(|s| s.id)
}

fn write_agent_id(path: &Path, id: &str) -> Result<(), CliError> {
    let err = |message: String| CliError::State { path: path.display().to_string(), message };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
    }
    std::fs::write(path, format!("{}\n", json!({ "agent_id": id }))).map_err(|e| err(e.to_string()))
}

fn stored_agent_id(state: &StateArgs) -> Result<String, CliError> {
    read_agent_id(state).ok_or_else(|| CliError::Usage("no agent id: pass --agent-id or register first".into()))
}

/// `k=v,k2=v2` → object; values that parse as JSON are kept typed (`n=3` → 3).
pub fn parse_defaults(text: &str) -> Result<Map<String, Value>, CliError> {
    let mut out = Map::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--defaults entry '{pair}' is not key=value")))?;
        let value = serde_json::from_str(v.trim()).unwrap_or_else(|_| Value::String(v.trim().to_owned()));
        out.insert(k.trim().to_owned(), value);
    }
    Ok(out)
}

pub(super) async fn targets(client: &Client, out: Output, a: TargetsArgs) -> Result<(), CliError> {
    let v = if a.refresh { client.get("/v1/targets?refresh=true").await? } else { client.get("/v1/targets").await? };
    if out.json {
        return line(&v);
    }
    for row in targets_table(&v) {
        line(row)?;
    }
    for note in paused_notes(&v) {
        line(note)?;
    }
    Ok(())
}

/// Below the table: one line per runtime whose launches a crash loop paused.
fn paused_notes(v: &Value) -> Vec<String> {
    let mut notes = Vec::new();
    for t in v.get("targets").and_then(Value::as_array).into_iter().flatten() {
        for r in t.get("runtimes").and_then(Value::as_array).into_iter().flatten() {
            if r.get("paused_until").is_some() {
                notes.push(format!("{}: {}", field_str(t, "target_id"), pause_note(r).trim_start_matches("; ")));
            }
        }
    }
    notes
}

/// The `targets` table: a header, then one row per target with its live state, the pids of its
/// runtimes and the tasks in flight on them (`-` when it runs no process). Columns are as wide
/// as their widest cell. Pure.
fn targets_table(v: &Value) -> Vec<String> {
    let header = ["TARGET", "ADAPTER", "SOURCE", "STATE", "PID", "IN-FLIGHT", "CAPABILITIES"].map(str::to_owned);
    let mut rows = vec![header];
    for t in v.get("targets").and_then(Value::as_array).into_iter().flatten() {
        let runtimes: Vec<&Value> = t.get("runtimes").and_then(Value::as_array).into_iter().flatten().collect();
        let (pids, in_flight) = if runtimes.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            let pids: Vec<String> = runtimes.iter().map(|r| process_id(r)).collect();
            let in_flight: u64 = runtimes.iter().filter_map(|r| r.get("tasks_in_flight").and_then(Value::as_u64)).sum();
            (pids.join(","), in_flight.to_string())
        };
        let source = match field_str(t, "source") {
            "peer" => format!("peer:{}", field_str(t, "owner")),
            other => other.to_owned(),
        };
        let caps: Vec<&str> =
            t.get("capabilities").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let paused = runtimes.iter().any(|r| r.get("paused_until").is_some());
        rows.push([
            field_str(t, "target_id").to_owned(),
            field_str(t, "adapter").to_owned(),
            source,
            if paused { "paused".to_owned() } else { field_str(t, "state").to_owned() },
            pids,
            in_flight,
            caps.join(","),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

pub(super) async fn register(client: &Client, out: Output, a: &RegisterArgs) -> Result<(), CliError> {
    register_as(client, out, a, None).await
}

/// Registers unless this agent is already known: the stored (or `--agent-id`) id when the node
/// knows it under this display name, else the one agent registered under this display name (a
/// lost or other state file); a stored id the node lost is registered again as it was.
pub(super) async fn ensure_registered(client: &Client, out: Output, a: &RegisterArgs) -> Result<(), CliError> {
    let stored = read_agent_id(&a.state);
    let mut lost = None;
    if let Some(id) = &stored {
        match client.get(&format!("/v1/agents/{id}")).await {
            // An explicit --agent-id is this agent whatever its name.
            Ok(v) if a.state.agent_id.is_some() || field_str(&v, "display_name") == a.display_name => {
                return out.print(&v, format!("agent {id} is registered ({})", field_str(&v, "status")));
            }
            // Another agent's id (the state file of another name): not this one.
            Ok(_) => {}
            // The node lost it: it was this agent, keep its id.
            Err(_) => lost = Some(id.clone()),
        }
    }
    if a.state.agent_id.is_none() {
        let agents = client.get("/v1/agents").await?;
        match agents_named(&agents, &a.display_name).as_slice() {
            [] => {}
            [id] => {
                note(format_args!("agent {id} is registered as '{}'; registering under its id", a.display_name));
                return register_as(client, out, a, Some(id.clone())).await;
            }
            ids => {
                return Err(CliError::Usage(format!(
                    "several agents are named '{}': {}; pass --agent-id",
                    a.display_name,
                    ids.join(", ")
                )));
            }
        }
    }
    register_as(client, out, a, lost).await
}

/// The ids of the agents of a `GET /v1/agents` answer whose display name is `name`. Pure.
fn agents_named(v: &Value, name: &str) -> Vec<String> {
    v.get("agents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|a| field_str(a, "display_name") == name)
        .map(|a| field_str(a, "agent_id").to_owned())
        .collect()
}

/// Registers the agent (under `--agent-id`, else `keep_id`, else a new id) and stores its id.
async fn register_as(client: &Client, out: Output, a: &RegisterArgs, keep_id: Option<String>) -> Result<(), CliError> {
    let mut body = json!({
        "display_name": a.display_name,
        "transport_kind": a.transport_kind,
        "launch": { "mode": a.launch_mode },
        "lease_ttl_seconds": a.lease_ttl_seconds,
    });
    if let Some(id) = a.state.agent_id.clone().or(keep_id) {
        body["agent_id"] = json!(id);
    }
    for (k, v) in [
        ("endpoint", &a.endpoint),
        ("adapter", &a.adapter),
        ("dialect", &a.dialect),
        ("healthcheck", &a.healthcheck),
        ("sticky_mode", &a.sticky_mode),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    if let Some(cmd) = &a.launch_command {
        body["launch"]["command"] = json!(cmd.split_whitespace().collect::<Vec<_>>());
    }
    if let Some(d) = &a.defaults {
        body["defaults"] = Value::Object(parse_defaults(d)?);
    }
    if let Some(c) = &a.capabilities {
        body["capabilities"] = json!(c.split(',').map(str::trim).filter(|c| !c.is_empty()).collect::<Vec<_>>());
    }
    if a.replace {
        body["replace"] = json!(true);
    }
    let v = client.post("/v1/agents/register", &body).await?;
    let agent_id = v.pointer("/agent/agent_id").and_then(Value::as_str).unwrap_or("");
    write_agent_id(&a.state.state_file, agent_id)?;
    note(format_args!(
        "saved agent id {agent_id} to {}; `alink-cli call` now sends as this agent (--agent-id overrides)",
        a.state.state_file.display()
    ));
    out.print(&v, format!("agent {agent_id} registered (state file {})", a.state.state_file.display()))?;
    Ok(())
}

pub(super) async fn heartbeat(client: &Client, out: Output, a: HeartbeatArgs) -> Result<(), CliError> {
    let id = stored_agent_id(&a.state)?;
    loop {
        let v = client
            .post(&format!("/v1/agents/{id}/heartbeat"), &json!({ "lease_ttl_seconds": a.lease_ttl_seconds }))
            .await?;
        out.print(
            &v,
            format!(
                "agent {id} lease until {}",
                v.pointer("/agent/lease_expires_at").and_then(Value::as_str).unwrap_or("")
            ),
        )?;
        match a.every {
            Some(every) => tokio::time::sleep(every).await,
            None => return Ok(()),
        }
    }
}

pub(super) async fn unregister(client: &Client, out: Output, state: StateArgs) -> Result<(), CliError> {
    let id = stored_agent_id(&state)?;
    let v = client.post(&format!("/v1/agents/{id}/unregister"), &json!({})).await?;
    out.print(&v, format!("agent {id} is offline"))?;
    Ok(())
}

pub(super) async fn agents(client: &Client, out: Output) -> Result<(), CliError> {
    let v = client.get("/v1/agents").await?;
    if out.json {
        line(&v)?;
    } else {
        for a in v.get("agents").and_then(Value::as_array).into_iter().flatten() {
            line(format_args!(
                "{:<28} {:<20} {:<8} {:<10} lease until {}",
                field_str(a, "agent_id"),
                field_str(a, "display_name"),
                field_str(a, "status"),
                field_str(a, "adapter"),
                field_str(a, "lease_expires_at")
            ))?;
        }
    }
    Ok(())
}

/// `; launches paused until T; last exit: exit status 1 at T` for a runtime's health (empty
/// when neither is known).
fn pause_note(h: &Value) -> String {
    let mut note = String::new();
    if let Some(until) = h.get("paused_until").and_then(Value::as_str) {
        note.push_str(&format!("; launches paused until {until} (target-start --force launches now)"));
    }
    if let Some(exit) = h.get("last_exit") {
        note.push_str(&format!("; last exit: {} at {}", field_str(exit, "status"), field_str(exit, "at")));
    }
    note
}

/// A runtime's process id, or `-` when it has none.
fn process_id(v: &Value) -> String {
    v.get("process_id").map(Value::to_string).unwrap_or_else(|| "-".into())
}

pub(super) async fn target_health(client: &Client, out: Output, t: TargetArg) -> Result<(), CliError> {
    let v = client.get(&format!("/v1/targets/{}/health", t.target_agent_id)).await?;
    out.print(
        &v,
        format!(
            "{} {} (healthy: {}, pid: {}){}",
            field_str(&v, "target_id"),
            field_str(&v, "state"),
            v["healthy"],
            process_id(&v),
            pause_note(&v)
        ),
    )?;
    Ok(())
}

pub(super) async fn target_start(client: &Client, out: Output, a: TargetStartArgs) -> Result<(), CliError> {
    let t = a.target;
    let mut body = target_body(&t)?;
    if a.force
        && let Some(b) = body.as_object_mut()
    {
        b.insert("force".into(), Value::Bool(true));
    }
    let v = client.post(&format!("/v1/targets/{}/start", t.target_agent_id), &body).await?;
    out.print(&v, format!("{} started (pid {})", t.target_agent_id, process_id(&v)))?;
    Ok(())
}

pub(super) async fn target_stop(client: &Client, out: Output, t: TargetArg) -> Result<(), CliError> {
    let v = client.post(&format!("/v1/targets/{}/stop", t.target_agent_id), &target_body(&t)?).await?;
    out.print(&v, format!("{} stopped", t.target_agent_id))?;
    Ok(())
}

/// `target-pause` / `target-resume`.
pub(super) async fn target_pause(client: &Client, out: Output, t: TargetIdArg, pause: bool) -> Result<(), CliError> {
    let verb = if pause { "pause" } else { "resume" };
    let v = client.post(&format!("/v1/targets/{}/{verb}", t.target_agent_id), &json!({})).await?;
    let said = if pause {
        format!("{} paused: queued tasks wait, running ones finish (target-resume dispatches again)", t.target_agent_id)
    } else {
        format!("{} resumed", t.target_agent_id)
    };
    out.print(&v, said)?;
    Ok(())
}

/// The body of target start/stop: `{runtime_options}` when given.
fn target_body(t: &TargetArg) -> Result<Value, CliError> {
    Ok(match &t.runtime_options_json {
        Some(o) => json!({ "runtime_options": Value::Object(parse_object("--runtime-options-json", o)?) }),
        None => json!({}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_values_parse_as_json_when_they_can() {
        let d = parse_defaults("executor=coder, n=3, flag=true,obj={\"a\":1}").unwrap_or_default();
        assert_eq!(Value::Object(d), json!({"executor": "coder", "n": 3, "flag": true, "obj": {"a": 1}}));
        assert!(parse_defaults("novalue").is_err());
    }

    #[test]
    fn a_paused_runtime_is_marked_and_explained_below_the_table() {
        let v = json!({"targets": [
            {"target_id": "fake", "adapter": "acp", "source": "file", "state": "down", "capabilities": ["chat"],
             "runtimes": [{"tasks_in_flight": 0, "paused_until": "2026-12-02T05:01:12Z",
                           "last_exit": {"status": "exit status 1", "exit_code": 1, "at": "2026-12-02T05:00:12Z"}}]},
        ]});
        assert_eq!(targets_table(&v)[1], "fake    acp      file    paused  -    0          chat");
        assert_eq!(
            paused_notes(&v),
            vec![
                "fake: launches paused until 2026-12-02T05:01:12Z (target-start --force launches now); \
                 last exit: exit status 1 at 2026-12-02T05:00:12Z"
            ]
        );
    }

    #[test]
    fn targets_table_has_a_header_state_pids_and_in_flight() {
        let v = json!({"targets": [
            {"target_id": "assistant", "adapter": "acp", "source": "file", "state": "up", "capabilities": ["chat"],
             "runtimes": [{"process_id": 41, "tasks_in_flight": 1}, {"process_id": 42, "tasks_in_flight": 2}]},
            {"target_id": "echo", "adapter": "loopback", "source": "file", "state": "up", "runtimes": [],
             "capabilities": ["demo.echo", "chat"]},
            {"target_id": "far", "adapter": "peer", "source": "peer", "owner": "node-b", "state": "down"},
        ]});
        assert_eq!(
            targets_table(&v),
            vec![
                "TARGET     ADAPTER   SOURCE       STATE  PID    IN-FLIGHT  CAPABILITIES",
                "assistant  acp       file         up     41,42  3          chat",
                "echo       loopback  file         up     -      -          demo.echo,chat",
                "far        peer      peer:node-b  down   -      -",
            ]
        );
        assert_eq!(targets_table(&json!({"targets": []})).len(), 1, "a header even when empty");
    }

    #[test]
    fn agents_are_found_by_display_name() {
        let v = json!({"agents": [
            {"agent_id": "a1", "display_name": "Me"},
            {"agent_id": "a2", "display_name": "Other"},
            {"agent_id": "a3", "display_name": "Me"},
        ]});
        let cases = [("Me", vec!["a1", "a3"]), ("Other", vec!["a2"]), ("me", vec![]), ("Nobody", vec![])];
        for (name, want) in cases {
            assert_eq!(agents_named(&v, name), want, "{name}");
        }
    }

    #[test]
    fn process_id_or_dash() {
        assert_eq!(process_id(&json!({"process_id": 42})), "42");
        assert_eq!(process_id(&json!({})), "-");
    }
}
