//! Authentication against the real binary (issue "Safe to run", item 3): the safe default on
//! loopback (anonymous callers may not register a target that spawns a process, nor mint
//! tokens), the local admin token file, token scopes, expiry and revocation, tokens stored only
//! as HMACs and kept across restarts, `--require-auth`, the admin key, and the CLI's
//! `--token` / default local token / `token-*` commands.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use common::{Node, NodeOpts, Result, cli_bin};
use serde_json::{Value, json};

/// The secret part of a token (`alink_<26-char id>_<secret>`).
fn secret_of(token: &str) -> &str {
    token.get("alink_".len() + 27..).unwrap_or(token)
}

/// The safe default: no Go-compatibility mode.
fn secure(extra: &[&str]) -> NodeOpts {
    NodeOpts {
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        anonymous_register: false,
        ..NodeOpts::default()
    }
}

/// The node's port (from its base URL).
fn port(node: &Node) -> Result<u16> {
    Ok(node.base.rsplit(':').next().ok_or("no port")?.trim_end_matches('/').parse()?)
}

/// The local admin token the node wrote for its user.
fn local_token(node: &Node) -> Result<String> {
    let path = node.dir.join("state/tokens").join(format!("loopback-{}.token", port(node)?));
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} must be private", path.display());
    Ok(std::fs::read_to_string(&path)?.trim().to_owned())
}

/// `(status, body, www-authenticate)` of a request with `token`.
async fn call(
    node: &Node,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value, Option<String>)> {
    let mut req = node.http.request(method, node.url(path)).timeout(Duration::from_secs(20));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text)), challenge))
}

async fn get(node: &Node, path: &str, token: Option<&str>) -> Result<(u16, Value, Option<String>)> {
    call(node, reqwest::Method::GET, path, token, None).await
}

async fn post(node: &Node, path: &str, token: Option<&str>, body: Value) -> Result<(u16, Value, Option<String>)> {
    call(node, reqwest::Method::POST, path, token, Some(body)).await
}

/// A registration whose target spawns a process.
fn spawning(id: &str) -> Value {
    json!({
        "agent_id": id, "display_name": id, "transport_kind": "stdio", "adapter": "acp",
        "launch": {"command": ["sh", "-c", "touch pwned"]}, "capabilities": ["x.spawn"]
    })
}

async fn mint(node: &Node, admin: &str, name: &str, scopes: &[&str]) -> Result<(String, String)> {
    let (status, v, _) = post(node, "/v1/tokens", Some(admin), json!({"name": name, "scopes": scopes})).await?;
    assert_eq!(status, 201, "{v}");
    let token = v["token"].as_str().ok_or("no token")?.to_owned();
    Ok((token, v["token_id"].as_str().ok_or("no token_id")?.to_owned()))
}

#[tokio::test]
async fn anonymous_loopback_callers_may_not_register_what_spawns_a_process_nor_mint_tokens() -> Result {
    let node = Node::start_with(secure(&[]))?;
    // A page's no-cors POST cannot send JSON; a local process can, and still may not do this.
    let (status, v, _) = post(&node, "/v1/agents/register", None, spawning("evil")).await?;
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("agents:register"), "{v}");
    for env_only in [json!({"env": {"LD_PRELOAD": "/tmp/x.so"}}), json!({"cwd": "/tmp"})] {
        let reg = json!({"agent_id": "sneaky", "transport_kind": "stdio", "adapter": "loopback", "launch": env_only});
        let (status, v, _) = post(&node, "/v1/agents/register", None, reg).await?;
        assert_eq!(status, 403, "{v}");
    }
    // Taking over a registry-file target needs the right too.
    let takeover = json!({"agent_id": "echo", "transport_kind": "http", "adapter": "loopback", "replace": true});
    assert_eq!(post(&node, "/v1/agents/register", None, takeover).await?.0, 403);
    let (_, agents, _) = get(&node, "/v1/agents", None).await?;
    assert!(!agents.to_string().contains("evil") && !agents.to_string().contains("sneaky"), "{agents}");
    assert!(!node.dir.join("pwned").exists());
    // What spawns nothing stays open (Go clients register HTTP agents like this).
    let plain = json!({"agent_id": "plain", "display_name": "plain", "transport_kind": "http", "adapter": "loopback"});
    let (status, v, _) = post(&node, "/v1/agents/register", None, plain).await?;
    assert_eq!(status, 202, "{v}");
    // Tasks, target control and reads work anonymously as before.
    let task = node.create(json!({"text": "hi"})).await?;
    node.wait_status(&task, "completed").await?;
    // Tokens are for administrators only.
    let (status, v, _) = post(&node, "/v1/tokens", None, json!({"name": "me", "scopes": ["admin"]})).await?;
    assert_eq!(status, 403, "{v}");
    assert_eq!(get(&node, "/v1/tokens", None).await?.0, 403);
    Ok(())
}

#[tokio::test]
async fn token_scopes_allow_what_they_name_and_nothing_more() -> Result {
    let node = Node::start_with(secure(&[]))?;
    let admin = local_token(&node)?;
    let (reader, _) = mint(&node, &admin, "dashboard", &["tasks:read"]).await?;
    let (writer, _) = mint(&node, &admin, "ci", &["tasks:write"]).await?;
    let (registrar, _) = mint(&node, &admin, "launcher", &["agents:register"]).await?;
    let create = json!({"target_agent_id": "echo", "intent": "demo.echo", "payload": {"text": "x"}});

    assert_eq!(get(&node, "/v1/tasks", Some(&reader)).await?.0, 200);
    let (status, v, _) = post(&node, "/v1/tasks", Some(&reader), create.clone()).await?;
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("tasks:write"), "{v}");

    let (status, v, _) = post(&node, "/v1/tasks", Some(&writer), create.clone()).await?;
    assert_eq!(status, 202, "{v}");
    assert_eq!(post(&node, "/v1/agents/register", Some(&writer), spawning("w")).await?.0, 403);
    assert_eq!(post(&node, "/v1/targets/echo/stop", Some(&writer), json!({})).await?.0, 403);
    assert_eq!(get(&node, "/v1/tokens", Some(&writer)).await?.0, 403);

    let (status, v, _) = post(&node, "/v1/agents/register", Some(&registrar), spawning("launched")).await?;
    assert_eq!(status, 202, "{v}");
    assert_eq!(post(&node, "/v1/tasks", Some(&registrar), create.clone()).await?.0, 403);

    // The admin token does everything, including minting.
    assert_eq!(post(&node, "/v1/agents/register", Some(&admin), spawning("by-admin")).await?.0, 202);
    let (status, v, _) = get(&node, "/v1/tokens", Some(&admin)).await?;
    assert_eq!(status, 200);
    let listed = v["tokens"].as_array().ok_or("no tokens")?;
    assert!(
        listed
            .iter()
            .any(|t| t["name"] == "dashboard" && t["state"] == "active" && t["scopes"] == json!(["tasks:read"]))
    );
    // Listings never show a secret or its HMAC.
    let text = v.to_string();
    for secret in [&reader, &writer, &registrar, &admin] {
        assert!(!text.contains(secret_of(secret)), "a listing shows a secret: {text}");
    }
    assert!(!text.contains("hmac"), "{text}");

    // Bad input names the field.
    let (status, v, _) =
        post(&node, "/v1/tokens", Some(&admin), json!({"name": "x", "scopes": ["tasks:delete"]})).await?;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("tasks:delete"), "{v}");
    assert_eq!(post(&node, "/v1/tokens", Some(&admin), json!({"name": "x", "scopes": []})).await?.0, 400);
    assert_eq!(post(&node, "/v1/tokens", Some(&admin), json!({"name": " ", "scopes": ["admin"]})).await?.0, 400);
    Ok(())
}

#[tokio::test]
async fn bad_expired_and_revoked_tokens_are_refused_401_with_a_challenge() -> Result {
    let node = Node::start_with(secure(&[]))?;
    let admin = local_token(&node)?;
    for bad in ["alink_01jabcdefghjkmnpqrstvwxyz0_nope", "garbage"] {
        let (status, v, challenge) = get(&node, "/v1/tasks", Some(bad)).await?;
        assert_eq!(status, 401, "{v}");
        assert!(challenge.is_some_and(|c| c.starts_with("Bearer")));
        assert!(v["error"].is_string(), "{v}");
    }
    // A token that is not Bearer-shaped is refused, not ignored.
    let resp = node.http.get(node.url("/v1/tasks")).header("authorization", "Basic dXNlcjpwYXNz").send().await?;
    assert_eq!(resp.status().as_u16(), 401);

    let (status, v, _) = post(
        &node,
        "/v1/tokens",
        Some(&admin),
        json!({"name": "brief", "scopes": ["tasks:read"], "expires_in_seconds": 1}),
    )
    .await?;
    assert_eq!(status, 201, "{v}");
    let brief = v["token"].as_str().ok_or("no token")?.to_owned();
    assert!(v["expires_at"].is_string(), "{v}");
    assert_eq!(get(&node, "/v1/tasks", Some(&brief)).await?.0, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get(&node, "/v1/tasks", Some(&brief)).await?.0, 401);

    let (revocable, id) = mint(&node, &admin, "leaked", &["tasks:read"]).await?;
    assert_eq!(get(&node, "/v1/tasks", Some(&revocable)).await?.0, 200);
    let (status, v, _) = post(&node, &format!("/v1/tokens/{id}/revoke"), Some(&admin), json!({})).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "revoked");
    assert_eq!(get(&node, "/v1/tasks", Some(&revocable)).await?.0, 401);
    assert_eq!(post(&node, "/v1/tokens/01jabcdefghjkmnpqrstvwxyz0/revoke", Some(&admin), json!({})).await?.0, 404);
    let (_, list, _) = get(&node, "/v1/tokens", Some(&admin)).await?;
    let states: Vec<(&str, &str)> = list["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (t["name"].as_str().unwrap_or(""), t["state"].as_str().unwrap_or("")))
        .collect();
    assert!(states.contains(&("brief", "expired")) && states.contains(&("leaked", "revoked")), "{states:?}");
    Ok(())
}

#[tokio::test]
async fn tokens_are_stored_as_hmacs_and_survive_a_restart_and_the_local_file_is_kept() -> Result {
    let dir = tempfile::tempdir()?.keep();
    let port = common::free_port()?;
    let opts = secure(&["--port", &port.to_string()]);
    let mut node = Node::start_in(&dir, opts.clone())?;
    let admin = local_token(&node)?;
    let (reader, _) = mint(&node, &admin, "kept", &["tasks:read"]).await?;
    node.stop()?;
    // Neither secret is in the database file.
    let db = std::fs::read(dir.join("node.db"))?;
    for secret in [&reader, &admin] {
        let tail = secret_of(secret).as_bytes();
        assert!(tail.len() >= 40);
        assert!(!db.windows(tail.len()).any(|w| w == tail), "a token secret is stored in the database");
    }
    let node = Node::start_in(&dir, opts)?;
    assert_eq!(local_token(&node)?, admin, "the same node on the same address keeps its local token");
    assert_eq!(get(&node, "/v1/tasks", Some(&reader)).await?.0, 200);
    assert_eq!(get(&node, "/v1/tokens", Some(&admin)).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn require_auth_refuses_anonymous_callers_but_not_health_probes() -> Result {
    let node = Node::start_with(secure(&["--require-auth"]))?;
    let (status, v, challenge) = get(&node, "/v1/tasks", None).await?;
    assert_eq!(status, 401, "{v}");
    assert!(challenge.is_some());
    assert_eq!(post(&node, "/v1/tasks", None, json!({"target_agent_id": "echo", "payload": {}})).await?.0, 401);
    assert_eq!(get(&node, "/metrics", None).await?.0, 401);
    assert_eq!(get(&node, "/healthz", None).await?.0, 200);
    let admin = local_token(&node)?;
    assert_eq!(get(&node, "/v1/tasks", Some(&admin)).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn the_admin_key_is_the_operator_and_a_shared_key_file_refuses_the_start() -> Result {
    let key = "an-operator-secret-of-some-length";
    let node = Node::start_with(secure(&["--admin-key", key]))?;
    let (token, _) = mint(&node, key, "from-admin-key", &["tasks:read"]).await?;
    assert_eq!(get(&node, "/v1/tasks", Some(&token)).await?.0, 200);
    assert_eq!(get(&node, "/v1/tasks", Some("an-operator-secret-of-some-lengtH")).await?.0, 401);

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("admin.key");
    std::fs::write(&file, format!("{key}\n"))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
    let out = std::process::Command::new(common::node_bin())
        .args(["--port", "0", "--aether-port", "0", "--database", "sqlite::memory:", "--admin-key-file"])
        .arg(&file)
        .current_dir(dir.path())
        .env("ALINK_STATE_DIR", dir.path().join("state"))
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--admin-key-file") && stderr.contains("chmod 600"), "{stderr}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
    let node = Node::start_with(secure(&["--admin-key-file", &file.display().to_string()]))?;
    assert_eq!(get(&node, "/v1/tokens", Some(key)).await?.0, 200);
    Ok(())
}

fn cli(node: &Node, state_dir: Option<&std::path::Path>, args: &[&str]) -> Result<std::process::Output> {
    let mut cmd = std::process::Command::new(cli_bin());
    cmd.arg("--server").arg(&node.base).args(args).env("HOME", node.dir.join("home")).env_remove("ALINK_TOKEN");
    match state_dir {
        Some(dir) => cmd.env("ALINK_STATE_DIR", dir),
        None => cmd.env("ALINK_STATE_DIR", node.dir.join("elsewhere")),
    };
    Ok(cmd.output()?)
}

#[tokio::test]
async fn the_cli_uses_the_local_admin_token_by_default_and_token_when_given() -> Result {
    let node = Node::start_with(secure(&[]))?;
    let state = node.dir.join("state");
    // Another user (no access to the node's state dir) is anonymous: no tokens for them.
    let out = cli(&node, None, &["token-list"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = cli(&node, Some(&state), &["--json", "token-create", "--name", "script", "--scope", "tasks:read"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout)?;
    let token = created["token"].as_str().ok_or("no token")?.to_owned();
    let id = created["token_id"].as_str().ok_or("no id")?.to_owned();

    let out = cli(&node, Some(&state), &["token-list"])?;
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && listing.contains(&id) && listing.contains("tasks:read"), "{listing}");
    assert!(!listing.contains(secret_of(&token)), "{listing}");

    // --token overrides the default: a read token may list targets but not send a task.
    let out = cli(&node, Some(&state), &["--token", &token, "targets"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(
        &node,
        Some(&state),
        &["--token", &token, "call", "--target-agent-id", "echo", "--intent", "demo.echo", "--text", "x"],
    )?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tasks:write"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = cli(&node, Some(&state), &["token-revoke", "--token-id", &id])?;
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("revoked"));
    let out = cli(&node, Some(&state), &["--token", &token, "targets"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    Ok(())
}

#[tokio::test]
async fn off_loopback_every_request_needs_a_token() -> Result {
    let node = Node::start_with(secure(&["--host", "0.0.0.0", "--insecure-plaintext"]))?;
    let (status, v, _) = get(&node, "/v1/targets", None).await?;
    assert_eq!(status, 401, "{v}");
    let create = json!({"target_agent_id": "echo", "intent": "demo.echo", "payload": {"text": "x"}});
    assert_eq!(post(&node, "/v1/tasks", None, create.clone()).await?.0, 401);
    // The node's own user still has its local token (the node is reachable on loopback too).
    let admin = local_token(&node)?;
    let (writer, _) = mint(&node, &admin, "remote-ci", &["tasks:write"]).await?;
    assert_eq!(post(&node, "/v1/tasks", Some(&writer), create).await?.0, 202);
    assert_eq!(get(&node, "/healthz", None).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn a_peer_syncs_with_a_node_that_requires_tokens_by_signing_its_reads() -> Result {
    let dest = Node::start_with(secure(&["--host", "0.0.0.0", "--insecure-plaintext", "--accept-from-any-node"]))?;
    // Without a token or a signature, the target listing is closed; the identity documents are
    // public (a peer needs them to pin the key).
    assert_eq!(get(&dest, "/v1/targets", None).await?.0, 401);
    assert_eq!(get(&dest, "/v1/node/identity", None).await?.0, 200);
    assert_eq!(get(&dest, "/v1/node/health", None).await?.0, 200);
    let origin = Node::start_with(secure(&[]))?;
    let (status, v, _) = post(&origin, "/v1/peers", None, json!({"peer_id": "dest", "base_url": dest.base})).await?;
    assert_eq!(status, 201, "{v}");
    let (status, v, _) = post(&origin, "/v1/peers/dest/sync", None, json!({})).await?;
    assert_eq!(status, 200, "{v}");
    let targets: Vec<&str> =
        v["targets"].as_array().into_iter().flatten().filter_map(|t| t["target_id"].as_str()).collect();
    assert!(targets.contains(&"echo"), "{v}");
    Ok(())
}
