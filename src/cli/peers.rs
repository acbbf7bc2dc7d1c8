//! Peer commands: `peer-add`, `peer-list`, `peer-sync` (contract §4).

use serde_json::{Map, Value, json};

use super::client::{CliError, Client, Output};
use super::field_str;
use super::{PeerAddArgs, PeerIdArg};

/// One readable line per peer: id, status, base URL, last sync error.
fn peer_line(p: &Value) -> String {
    format!(
        "{:<24} {:<8} {:<32} {}",
        field_str(p, "peer_id"),
        field_str(p, "status"),
        field_str(p, "base_url"),
        field_str(p, "last_error")
    )
}

pub(super) async fn add(client: &Client, out: Output, a: PeerAddArgs) -> Result<(), CliError> {
    let mut body = Map::new();
    body.insert("peer_id".into(), json!(a.peer_id));
    body.insert("base_url".into(), json!(a.base_url));
    if let Some(name) = a.display_name.filter(|n| !n.is_empty()) {
        body.insert("display_name".into(), json!(name));
    }
    if let Some(caps) = a.capabilities {
        let caps: Vec<&str> = caps.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
        body.insert("capabilities".into(), json!(caps));
    }
    if let Some(key) = a.public_key.filter(|k| !k.is_empty()) {
        body.insert("public_key".into(), json!(key));
    }
    if a.replace_key {
        body.insert("replace_key".into(), json!(true));
    }
    let v = client.post("/v1/peers", &Value::Object(body)).await?;
    let line = peer_line(&v);
    out.print(&v, line)?;
    Ok(())
}

pub(super) async fn list(client: &Client, out: Output) -> Result<(), CliError> {
    let v = client.get("/v1/peers").await?;
    let lines: Vec<String> = v.get("peers").and_then(Value::as_array).into_iter().flatten().map(peer_line).collect();
    out.print(&v, lines.join("\n"))?;
    Ok(())
}

pub(super) async fn sync(client: &Client, out: Output, a: PeerIdArg) -> Result<(), CliError> {
    let v = client.post(&format!("/v1/peers/{}/sync", a.peer_id), &json!({})).await?;
    let mut lines = vec![peer_line(v.get("peer").unwrap_or(&Value::Null))];
    for t in v.get("targets").and_then(Value::as_array).into_iter().flatten() {
        lines.push(format!("  {}", field_str(t, "target_id")));
    }
    out.print(&v, lines.join("\n"))?;
    Ok(())
}
