//! Node identity (black box): the key pair made at first start, the id bound to it, what
//! `/v1/node/identity` and `/v1/node/health` publish, and refusals of a bad key file.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Node, NodeOpts, Result};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn key_file(dir: &Path) -> PathBuf {
    dir.join("node.db.node-key")
}

async fn identity(node: &Node) -> Result<Value> {
    let (status, v) = node.get("/v1/node/identity").await?;
    assert_eq!(status, 200, "{v}");
    Ok(v)
}

/// `node-` + the first 26 lowercase base32 (RFC 4648) characters of SHA-256(raw key), computed
/// here independently of the node's code.
fn derived_id(public_key_b64url: &str) -> Result<String> {
    let raw = URL_SAFE_NO_PAD.decode(public_key_b64url)?;
    let hash = Sha256::digest(&raw);
    let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
    let bits: Vec<bool> = hash.iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1)).collect();
    let id: String = bits
        .chunks(5)
        .take(26)
        .map(|c| char::from(alphabet[c.iter().fold(0usize, |acc, &bit| acc << 1 | usize::from(bit))]))
        .collect();
    Ok(format!("node-{id}"))
}

/// Runs the node on `dir` expecting it to refuse to start; returns its stderr.
fn refused_start(dir: &Path) -> Result<String> {
    let mut child = Command::new(common::node_bin())
        .arg("--port")
        .arg("0")
        .args(["--aether-port", "0"])
        .arg("--database")
        .arg(format!("sqlite://{}", dir.join("node.db").display()))
        .arg("--artifact-dir")
        .arg(dir.join("artifacts"))
        .arg("--registry")
        .arg(dir.join("registry.yaml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    for _ in 0..300 {
        if child.try_wait()?.is_some() {
            let out = child.wait_with_output()?;
            assert!(!out.status.success(), "the node must refuse to start");
            assert!(out.stdout.is_empty(), "it must not listen: {}", String::from_utf8_lossy(&out.stdout));
            return Ok(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    Err("the node did not exit".into())
}

#[tokio::test]
async fn identity_is_published_bound_to_a_derived_id_and_stable_across_a_restart() -> Result {
    let mut node = Node::start()?;
    let dir = node.dir.clone();
    let first = identity(&node).await?;
    assert_eq!(first["public_key"]["alg"], "ed25519", "{first}");
    let key = first["public_key"]["key"].as_str().ok_or("key")?.to_owned();
    assert_eq!(URL_SAFE_NO_PAD.decode(&key)?.len(), 32, "base64url without padding of 32 bytes");
    assert!(!key.contains('='));
    // A fresh database: the id is derived from the key.
    assert_eq!(first["node_id"], derived_id(&key)?.as_str(), "{first}");
    // key_id is the RFC 7638 thumbprint of the key.
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{key}"}}"#);
    assert_eq!(first["key_id"], URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes())).as_str());
    assert!(first["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{first}");
    let mode = std::fs::metadata(key_file(&dir))?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is the owner's only");

    // Health keeps its fields and adds the key.
    let (status, health) = node.get("/v1/node/health").await?;
    assert_eq!(status, 200);
    assert_eq!(health["node_id"], first["node_id"]);
    assert_eq!(health["ok"], true);
    assert_eq!(health["protocol"], "aethrolink.node.v1");
    assert!(health["checked_at"].is_string());
    assert_eq!(health["public_key"], first["public_key"]);
    assert_eq!(health["key_id"], first["key_id"]);
    let text = first.to_string() + &health.to_string();
    assert!(!text.contains(&dir.display().to_string()), "no path in HTTP bodies");

    let (code, _) = node.stop()?;
    assert_eq!(code, Some(0));
    let node = Node::start_in(&dir, NodeOpts::default())?;
    assert_eq!(identity(&node).await?, first, "same id, same key, same created_at after a restart");
    Ok(())
}

#[tokio::test]
async fn a_node_id_from_before_the_key_is_kept() -> Result {
    // A database made by the build before node keys: node_meta holds a ULID-style node id and no
    // key id, and there is no key file.
    let mut node = Node::start()?;
    let dir = node.dir.clone();
    node.stop()?;
    let legacy = "node-01kbfz3e6m8r2j4w5x7y9a0bcd";
    let url = format!("sqlite://{}", dir.join("node.db").display());
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await?;
    sqlx::query("UPDATE node_meta SET value = ? WHERE key = 'node_id'").bind(legacy).execute(&mut db).await?;
    sqlx::query("DELETE FROM node_meta WHERE key = 'node_key_id'").execute(&mut db).await?;
    sqlx::Connection::close(db).await?;
    std::fs::remove_file(key_file(&dir))?;

    let mut node = Node::start_in(&dir, NodeOpts::default())?;
    let doc = identity(&node).await?;
    assert_eq!(doc["node_id"], legacy, "the existing id is kept and bound to the new key: {doc}");
    assert!(key_file(&dir).exists(), "a key was made");
    node.stop()?;
    let node = Node::start_in(&dir, NodeOpts::default())?;
    assert_eq!(identity(&node).await?, doc);
    Ok(())
}

#[tokio::test]
async fn a_node_id_flag_is_published_with_the_key() -> Result {
    let opts = NodeOpts { extra_args: vec!["--node-id".into(), "node-a".into()], ..NodeOpts::default() };
    let node = Node::start_with(opts)?;
    let doc = identity(&node).await?;
    assert_eq!(doc["node_id"], "node-a");
    assert_eq!(doc["public_key"]["alg"], "ed25519");
    let (_, health) = node.get("/v1/node/health").await?;
    assert_eq!(health["node_id"], "node-a");
    assert_eq!(health["key_id"], doc["key_id"]);
    Ok(())
}

#[tokio::test]
async fn an_in_memory_node_has_a_key_too() -> Result {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(common::node_bin())
        .args(["--port", "0", "--aether-port", "0", "--database", "sqlite::memory:", "--artifact-dir"])
        .arg(dir.path().join("artifacts"))
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("stdout")?;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await??;
    let base = line.trim().strip_prefix("alink-node listening on ").ok_or("address line")?.to_owned();
    let doc: Value = reqwest::get(format!("{base}/v1/node/identity")).await?.json().await?;
    let _ = child.kill();
    let _ = child.wait();
    let key = doc["public_key"]["key"].as_str().ok_or("key")?;
    assert_eq!(doc["node_id"], derived_id(key)?.as_str());
    assert_eq!(
        std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("node-key"))
            .count(),
        0,
        "no key file for a memory database"
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_key_file_refuses_the_start_naming_the_file() -> Result {
    let mut node = Node::start()?;
    let dir = node.dir.clone();
    node.stop()?;
    let path = key_file(&dir);
    let good = std::fs::read_to_string(&path)?;

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    let stderr = refused_start(&dir)?;
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("0644") && stderr.contains("chmod 600"), "{stderr}");

    std::fs::write(&path, "not a key")?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let stderr = refused_start(&dir)?;
    assert!(stderr.contains(&path.display().to_string()) && stderr.contains("not a node key document"), "{stderr}");

    std::fs::remove_file(&path)?;
    let stderr = refused_start(&dir)?;
    assert!(stderr.contains(&path.display().to_string()) && stderr.contains("missing"), "{stderr}");

    // Restored, the node starts again with its identity.
    std::fs::write(&path, good)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let node = Node::start_in(&dir, NodeOpts::default())?;
    identity(&node).await?;
    Ok(())
}
