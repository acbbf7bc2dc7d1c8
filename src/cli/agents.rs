//! Agent and target commands: `targets`, `register`, `ensure-registered`, `agents`, `heartbeat`,
//! `unregister`, `target-health`, `target-start`, `target-stop`; and the state file that keeps
//! this agent's id between runs.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::client::{CliError, Client, Output};
use super::{HeartbeatArgs, RegisterArgs, StateArgs, TargetArg, TargetsArgs};
use super::{field_str, parse_object};

/// `--state-file` when none is given: `~/.aethrolink/agent.json`.
pub(super) fn default_state_file() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".aethrolink").join("agent.json"),
        None => PathBuf::from(".aethrolink-agent.json"),
    }
}

/// This agent's id: `--agent-id`, else the state file's, else none.
pub(super) fn read_agent_id(state: &StateArgs) -> Option<String> {
    if let Some(id) = state.agent_id.clone().filter(|s| !s.is_empty()) {
        return Some(id);
    }
    let text = std::fs::read_to_string(&state.state_file).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("agent_id").and_then(Value::as_str).map(str::to_owned)
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
        println!("{v}");
    } else {
        for t in v.get("targets").and_then(Value::as_array).into_iter().flatten() {
            let caps: Vec<&str> = t
                .get("capabilities")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!(
                "{:<24} {:<10} {:<10} {}",
                field_str(t, "target_id"),
                field_str(t, "adapter"),
                field_str(t, "source"),
                caps.join(",")
            );
        }
    }
    Ok(())
}

pub(super) async fn register(client: &Client, out: Output, a: &RegisterArgs) -> Result<(), CliError> {
    register_as(client, out, a, None).await
}

pub(super) async fn ensure_registered(client: &Client, out: Output, a: &RegisterArgs) -> Result<(), CliError> {
    // Keep the stored id: re-register under it if the node lost it.
    let stored = read_agent_id(&a.state);
    if let Some(id) = &stored
        && let Ok(v) = client.get(&format!("/v1/agents/{id}")).await
    {
        out.print(&v, format!("agent {id} is registered ({})", field_str(&v, "status")));
        return Ok(());
    }
    register_as(client, out, a, stored).await
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
    out.print(&v, format!("agent {agent_id} registered (state file {})", a.state.state_file.display()));
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
        );
        match a.every {
            Some(every) => tokio::time::sleep(every).await,
            None => return Ok(()),
        }
    }
}

pub(super) async fn unregister(client: &Client, out: Output, state: StateArgs) -> Result<(), CliError> {
    let id = stored_agent_id(&state)?;
    let v = client.post(&format!("/v1/agents/{id}/unregister"), &json!({})).await?;
    out.print(&v, format!("agent {id} is offline"));
    Ok(())
}

pub(super) async fn agents(client: &Client, out: Output) -> Result<(), CliError> {
    let v = client.get("/v1/agents").await?;
    if out.json {
        println!("{v}");
    } else {
        for a in v.get("agents").and_then(Value::as_array).into_iter().flatten() {
            println!(
                "{:<28} {:<20} {:<8} {:<10} lease until {}",
                field_str(a, "agent_id"),
                field_str(a, "display_name"),
                field_str(a, "status"),
                field_str(a, "adapter"),
                field_str(a, "lease_expires_at")
            );
        }
    }
    Ok(())
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
            "{} {} (healthy: {}, pid: {})",
            field_str(&v, "target_id"),
            field_str(&v, "state"),
            v["healthy"],
            process_id(&v)
        ),
    );
    Ok(())
}

pub(super) async fn target_start(client: &Client, out: Output, t: TargetArg) -> Result<(), CliError> {
    let v = client.post(&format!("/v1/targets/{}/start", t.target_agent_id), &target_body(&t)?).await?;
    out.print(&v, format!("{} started (pid {})", t.target_agent_id, process_id(&v)));
    Ok(())
}

pub(super) async fn target_stop(client: &Client, out: Output, t: TargetArg) -> Result<(), CliError> {
    let v = client.post(&format!("/v1/targets/{}/stop", t.target_agent_id), &target_body(&t)?).await?;
    out.print(&v, format!("{} stopped", t.target_agent_id));
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
    fn process_id_or_dash() {
        assert_eq!(process_id(&json!({"process_id": 42})), "42");
        assert_eq!(process_id(&json!({})), "-");
    }
}
