//! The committed Aether schema (`proto/aether_v1.fds`) is exactly the descriptor the pinned
//! Python SDK `scitrera-aether-client==0.2.3` ships: re-dumped from the SDK's venv and compared
//! byte for byte. Skips (saying so) when the venv is absent; `.ci/run` creates it and sets
//! `ALINK_AETHER_SDK_PYTHON`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The SDK venv's python: `ALINK_AETHER_SDK_PYTHON`, else `target/aether-sdk-venv/bin/python`.
fn sdk_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ALINK_AETHER_SDK_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/aether-sdk-venv/bin/python");
    local.exists().then_some(local)
}

#[test]
fn committed_descriptor_matches_the_pinned_sdk() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(python) = sdk_python() else {
        assert!(std::env::var("CI").is_err(), "CI must provide the Aether SDK venv (see .ci/run)");
        eprintln!(
            "SKIPPED: no Aether SDK venv (set ALINK_AETHER_SDK_PYTHON or run scripts/regen-aether-fds.sh, which \
             creates target/aether-sdk-venv)"
        );
        return Ok(());
    };
    let version = Command::new(&python)
        .args(["-c", "import importlib.metadata as m; print(m.version('scitrera-aether-client'))"])
        .output()?;
    assert!(version.status.success(), "the SDK is not installed for {}", python.display());
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), "0.2.3", "the venv must hold the pinned SDK");
    let dir = tempfile::tempdir()?;
    let fresh = dir.path().join("aether.fds");
    let status = Command::new(&python).arg(root.join("scripts/dump-aether-fds.py")).arg(&fresh).status()?;
    assert!(status.success(), "dump-aether-fds.py failed");
    let committed = std::fs::read(root.join("proto/aether_v1.fds"))?;
    let dumped = std::fs::read(&fresh)?;
    assert!(
        committed == dumped,
        "proto/aether_v1.fds ({} bytes) differs from the descriptor of scitrera-aether-client==0.2.3 ({} bytes): run \
         scripts/regen-aether-fds.sh",
        committed.len(),
        dumped.len()
    );
    Ok(())
}
