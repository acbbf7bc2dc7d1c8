//! The README works verbatim: its shell snippets run, in order, against a live node started the
//! way the README starts it (the real `alink-node` from the repository root on its default
//! registry, `configs/registry.yaml`), with the built `alink-cli` on `PATH` in place of
//! `cargo install`, and `HOME` a temp dir (so the local admin token file, the CLI's agent state
//! file and the node's database are the test's own).
//!
//! Every ```sh block of the README is preceded by a marker: `<!-- readme-setup -->` (the two
//! commands and the install, not run here) or `<!-- readme-test: NAME -->` (run with
//! `bash -euo pipefail`; NAME selects the output checked below). The only rewrite is the node's
//! address: `localhost:7777` in a snippet becomes the test node's `127.0.0.1:<port>`, and
//! `ALINK_SERVER` points `alink-cli` at it.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{NodeOpts, Result, cli_bin, node_bin};
use serde_json::json;

const README: &str = include_str!("../README.md");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// One README snippet: its marker name (`None`: setup, not run) and its text.
struct Snippet {
    name: Option<String>,
    line: usize,
    text: String,
}

/// The ```sh blocks of `readme`, each with its marker; a block without one is an error.
fn snippets(readme: &str) -> std::result::Result<Vec<Snippet>, String> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```sh" {
            i += 1;
            continue;
        }
        let marker = if i > 0 { lines[i - 1].trim() } else { "" };
        let name = if marker == "<!-- readme-setup -->" {
            None
        } else if let Some(name) = marker.strip_prefix("<!-- readme-test:").and_then(|m| m.strip_suffix("-->")) {
            Some(name.trim().to_owned())
        } else {
            return Err(format!(
                "README.md line {}: a ```sh block without a `<!-- readme-test: NAME -->` or `<!-- readme-setup -->` marker",
                i + 1
            ));
        };
        let start = i + 1;
        let end = (start..lines.len()).find(|&j| lines[j].trim_end() == "```").ok_or("unclosed ```sh block")?;
        out.push(Snippet { name, line: start, text: lines[start..end].join("\n") + "\n" });
        i = end + 1;
    }
    Ok(out)
}

/// What each run snippet's output (stdout and stderr together) must contain.
fn expected(name: &str) -> &'static [&'static str] {
    match name {
        "curl" => &[
            r#""target_id":"assistant""#,
            r#""target_id":"echo""#,
            "task.completed",
            r#""result_artifact_id""#,
            "awaiting_input",
        ],
        "acp" => &[r#"result: {"text":"hello""#, "runtime.launching", "runtime.ready"],
        "cli" => &["TARGET", "assistant", "Loopback accepted the task", "cancel requested", "task.cancelled"],
        "await" => &["is awaiting input (approve?)", "task-resume --task-id", "resume accepted", "allowed"],
        "agents" => &["registered (state file", r#"result: {"text":"hi""#, "helper", "lease until", "agents:register"],
        "threads" => {
            &["assistant → echo", r#""sender":"echo""#, "auto-handoff: 3 of 3 turns", "#3 assistant → echo  completed"]
        }
        _ => &[],
    }
}

/// The node as the README starts it, from the repository root, on port 0 and a temp database.
struct ReadmeNode {
    child: Option<Child>,
    port: u16,
    stderr: PathBuf,
}

impl ReadmeNode {
    fn start(home: &Path) -> Result<ReadmeNode> {
        let stderr = home.join("node.log");
        let mut cmd = Command::new(node_bin());
        cmd.args(["--port", "0", "--aether-port", "0"])
            .arg("--database")
            .arg(format!("sqlite://{}", home.join("aethrolink.db").display()))
            .arg("--artifact-dir")
            .arg(home.join("artifacts"))
            .current_dir(REPO)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?);
        clean_env(&mut cmd, home);
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut node = ReadmeNode { child: Some(child), port: 0, stderr };
        let line = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| format!("no address; {}", node.log()))?;
        node.port = line
            .trim()
            .strip_prefix("alink-node listening on http://127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("unexpected first line {line:?}; {}", node.log()))?;
        Ok(node)
    }

    fn log(&self) -> String {
        format!("node stderr:\n{}", std::fs::read_to_string(&self.stderr).unwrap_or_default())
    }

    /// SIGTERM, and the exit code.
    fn stop(&mut self) -> Result<Option<i32>> {
        let child = self.child.as_mut().ok_or("already stopped")?;
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status.code());
            }
            if started.elapsed() > Duration::from_secs(15) {
                return Err("node did not exit within 15 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ReadmeNode {
    fn drop(&mut self) {
        // A failed test: kill -9 (the agents die with the node: parent-death signal, keeper).
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh user's environment: `HOME` = `home`, no `ALINK_*` or `XDG_STATE_HOME` of the caller.
fn clean_env(cmd: &mut Command, home: &Path) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("ALINK_") || key == "XDG_STATE_HOME" || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", home);
}

/// Runs `script` under `bash -euo pipefail`: (exit code, stdout + stderr).
fn run_bash(script: &str, home: &Path, server: &str) -> Result<(Option<i32>, String)> {
    let cli_dir = Path::new(cli_bin()).parent().ok_or("cli dir")?;
    let path = format!("{}:{}", cli_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out_path = home.join("snippet.out");
    let out = std::fs::File::create(&out_path)?;
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script])
        .current_dir(REPO)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Its own process group, so a snippet that hangs is killed with everything it started.
        .process_group(0);
    clean_env(&mut cmd, home);
    cmd.env("PATH", path).env("ALINK_SERVER", server);
    let mut child = cmd.spawn()?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if started.elapsed() > Duration::from_secs(20) {
            Command::new("kill").arg("-KILL").arg(format!("-{}", child.id())).status()?;
            child.wait()?;
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut text = String::new();
    std::fs::File::open(&out_path)?.read_to_string(&mut text)?;
    Ok((status, text))
}

#[test]
fn every_sh_block_of_the_readme_is_marked_and_the_setup_comes_first() -> Result {
    let all = snippets(README)?;
    let setup: Vec<&str> = all.iter().filter(|s| s.name.is_none()).map(|s| s.text.trim()).collect();
    assert_eq!(
        setup,
        ["cargo run --release --bin alink-node", "cargo test --workspace", "cargo install --locked --path ."],
        "the two commands, then the install"
    );
    let first_run = all.iter().position(|s| s.name.is_some()).ok_or("no snippet to run")?;
    assert!(all[first_run..].iter().all(|s| s.name.is_some()), "every snippet after the setup is run");
    let before_install = &README[..README.find("cargo install --locked --path .").ok_or("install")?];
    assert!(!before_install.contains("alink-cli "), "alink-cli is used before the line that installs it");
    for s in &all[first_run..] {
        let name = s.name.as_deref().unwrap_or("");
        assert!(!expected(name).is_empty(), "README.md line {}: no expectations for snippet {name:?}", s.line);
    }
    Ok(())
}

#[test]
fn the_readme_snippets_run_against_a_live_node() -> Result {
    let started = Instant::now();
    let home = tempfile::tempdir()?;
    let mut node = ReadmeNode::start(home.path())?;
    let server = format!("http://127.0.0.1:{}", node.port);
    let address = format!("127.0.0.1:{}", node.port);
    for s in snippets(README)? {
        let Some(name) = s.name else { continue };
        assert!(
            !s.text.replace("localhost:7777", "").contains("7777"),
            "README.md line {}: the node's address is written other than `localhost:7777`",
            s.line
        );
        let script = s.text.replace("localhost:7777", &address);
        let (code, out) = run_bash(&script, home.path(), &server)?;
        assert_eq!(
            code,
            Some(0),
            "README.md line {} ({name}) failed:\n{script}\n--- output:\n{out}\n{}",
            s.line,
            node.log()
        );
        for want in expected(&name) {
            assert!(out.contains(want), "README.md line {} ({name}): output lacks {want:?}:\n{out}", s.line);
        }
    }
    // The local admin token where the README says, which the CLI used on its own.
    let token = home.path().join(format!(".local/state/aethrolink/tokens/loopback-{}.token", node.port));
    assert!(token.is_file(), "no local admin token at {}", token.display());
    assert_eq!(node.stop()?, Some(0), "{}", node.log());
    assert!(started.elapsed() < Duration::from_secs(20), "the README run took {:?}", started.elapsed());
    Ok(())
}

/// The README's restart statement: an ACP (stdio) task in flight when the node stops fails
/// `interrupted` at the next start (its agent process died with the node).
#[tokio::test]
async fn an_acp_task_in_flight_at_a_restart_fails_interrupted() -> Result {
    let agent = format!("{REPO}/tests/agents/fake_acp_agent.py");
    let registry = format!(
        "targets:\n  assistant:\n    adapter: acp\n    launch:\n      command: [python3, {agent}]\n    capabilities: [chat]\n"
    );
    let opts = NodeOpts { registry: Some(registry), ..NodeOpts::default() };
    let mut node = common::Node::start_with(opts.clone())?;
    let task = node.create_with(json!({"intent": "chat", "payload": {"text": "!permission"}})).await?;
    node.wait_status(&task, "awaiting_input").await?;
    let (code, _) = node.stop()?;
    assert_eq!(code, Some(0));
    let node = common::Node::start_in(&node.dir.clone(), opts)?;
    let t = node.task(&task).await?;
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["last_error"]["reason"], "interrupted", "{t}");
    Ok(())
}
