//! Token commands (`token-create`, `token-list`, `token-revoke`) and the local admin token the
//! CLI sends by default to a node on this machine ([`crate::local_token`]).

use std::path::Path;

use serde_json::{Value, json};

use super::client::{CliError, Client, Output};
use super::field_str;
use super::{TokenCreateArgs, TokenIdArg};

/// The local admin token of the node at `server`, if `server` is on this machine and the node
/// wrote one. A file others could read is not used (a note says so).
pub(super) fn local_token(server: &str, state_dir: Option<&Path>) -> Result<Option<String>, CliError> {
    let Ok(url) = reqwest::Url::parse(server) else {
        return Err(CliError::Usage(format!("--server '{server}' is not a URL (e.g. http://127.0.0.1:7777)")));
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else { return Ok(None) };
    let Some(key) = crate::local_token::address_key_of_server(host, port) else { return Ok(None) };
    let Ok(dir) = crate::local_token::state_dir(state_dir) else { return Ok(None) };
    match crate::local_token::read_token(&crate::local_token::token_path(&dir, &key)) {
        Ok(token) => Ok(token),
        Err(e) => {
            eprintln!("note: not using the local admin token: {e}");
            Ok(None)
        }
    }
}

/// One readable line per token: id, state, scopes, name, expiry.
fn token_line(t: &Value) -> String {
    let scopes: Vec<&str> =
        t.get("scopes").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let expires = t.get("expires_at").and_then(Value::as_str).unwrap_or("never");
    format!(
        "{:<26}  {:<8} {:<32} {:<28} expires {expires}",
        field_str(t, "token_id"),
        field_str(t, "state"),
        scopes.join(","),
        field_str(t, "name")
    )
}

pub(super) async fn create(client: &Client, out: Output, a: TokenCreateArgs) -> Result<(), CliError> {
    let mut body = json!({ "name": a.name, "scopes": a.scopes });
    if let Some(ttl) = a.expires_in {
        body["expires_in_seconds"] = json!(ttl.as_secs().max(1));
    }
    let v = client.post("/v1/tokens", &body).await?;
    let readable = format!(
        "{}\n{}\n(the token is shown only now: store it; send it as --token or ALINK_TOKEN)",
        field_str(&v, "token"),
        token_line(&v)
    );
    out.print(&v, readable)
}

pub(super) async fn list(client: &Client, out: Output) -> Result<(), CliError> {
    let v = client.get("/v1/tokens").await?;
    let mut lines = vec![format!("{:<26}  {:<8} {:<32} {:<28} EXPIRY", "TOKEN ID", "STATE", "SCOPES", "NAME")];
    lines.extend(v.get("tokens").and_then(Value::as_array).into_iter().flatten().map(token_line));
    out.print(&v, lines.join("\n"))
}

pub(super) async fn revoke(client: &Client, out: Output, a: TokenIdArg) -> Result<(), CliError> {
    let v = client.post(&format!("/v1/tokens/{}/revoke", a.token_id.trim()), &json!({})).await?;
    let line = token_line(&v);
    out.print(&v, line)
}
