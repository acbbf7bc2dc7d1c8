//! A bad registry file stops the node before it touches storage: it exits non-zero, naming the
//! file (as the operator gave it), the line and the field on stderr, and creates no database.

mod common;

use std::process::Command;

use common::{Node, NodeOpts, Result};

/// Starts a node on `registry` (written to `bad.yaml` in a fresh dir, given by relative path from
/// that dir); returns its exit success, its stderr and whether anything but the registry file
/// was left in the dir.
fn start_with_registry(registry: &str) -> Result<(bool, String, Vec<String>)> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("configs"))?;
    std::fs::write(dir.path().join("configs/bad.yaml"), registry)?;
    let out = Command::new(common::node_bin())
        .args(["--port", "0", "--aether-port", "0", "--database", "sqlite://./node.db", "--artifact-dir", "artifacts"])
        .args(["--registry", "configs/bad.yaml"])
        .current_dir(dir.path())
        .output()?;
    let mut left: Vec<String> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name != "configs")
        .collect();
    left.sort();
    Ok((out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned(), left))
}

#[test]
fn a_bad_registry_file_stops_the_node_naming_file_line_and_field() -> Result {
    let cases = [
        (
            "targets:\n  echo:\n    adapter: loopback\n  chat:\n    adapter: acp\n    launch:\n      command: []\n",
            "registry file configs/bad.yaml: line 7, targets.chat.launch.command: launch.command is required",
        ),
        (
            "targets:\n  a:\n    adapter: loopback\n  a:\n    adapter: loopback\n",
            "registry file configs/bad.yaml: line 4, targets.a: duplicate target id 'a' (first defined on line 2)",
        ),
        ("- echo\n", "registry file configs/bad.yaml: line 1, (top level): invalid type: sequence"),
        (
            "targets:\n  h:\n    adapter: acp_http\n    endpoint: localhost:9\n",
            "registry file configs/bad.yaml: line 4, targets.h.endpoint: endpoint 'localhost:9'",
        ),
    ];
    for (registry, want) in cases {
        let (ok, stderr, left) = start_with_registry(registry)?;
        assert!(!ok, "started on:\n{registry}");
        assert!(stderr.contains(want), "stderr lacks {want:?}:\n{stderr}");
        assert_eq!(left, Vec::<String>::new(), "files created by a refused start ({want})");
    }
    Ok(())
}

#[tokio::test]
async fn the_shipped_registry_file_loads() -> Result {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/registry.yaml"))?;
    let node = Node::start_with(NodeOpts { registry: Some(shipped), ..NodeOpts::default() })?;
    let (status, targets) = node.get("/v1/targets").await?;
    assert_eq!(status, 200);
    let ids: Vec<&str> =
        targets["targets"].as_array().ok_or("targets")?.iter().filter_map(|t| t["target_id"].as_str()).collect();
    assert_eq!(ids, ["assistant", "echo"]);
    Ok(())
}
