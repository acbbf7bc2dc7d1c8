//! Child processes of runtimes: spawned in their own process group with the target's `env` and an
//! absolute `cwd`; stderr is logged (tagged with the target) and its last lines kept for errors;
//! stopping signals the whole group (SIGTERM, then SIGKILL after a grace period), so agents that
//! spawn helpers (`npx`, `uv`, shells) leave nothing behind.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Lines of stderr kept for error messages.
pub const STDERR_TAIL_LINES: usize = 20;
/// Grace between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// The last lines a child wrote to stderr.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: String) {
        let mut q = match self.0.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        if q.len() == STDERR_TAIL_LINES {
            q.pop_front();
        }
        q.push_back(line);
    }

    /// The tail joined with newlines (empty if the child wrote nothing).
    pub fn text(&self) -> String {
        let q = match self.0.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        q.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// What to run. Built from the target's launch spec by the dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchCommand {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("launch command is empty")]
    EmptyCommand,
    #[error("cannot start '{program}': {source}")]
    Io { program: String, source: std::io::Error },
    #[error("child has no {0} pipe")]
    NoPipe(&'static str),
}

/// A spawned child with its pipes.
pub struct Spawned {
    pub child: Child,
    pub pid: u32,
    /// Process group id (= pid: the child leads its own group).
    pub pgid: i32,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub stderr_tail: StderrTail,
    /// Completes when stderr closed (so the tail is complete).
    pub stderr_done: tokio::task::JoinHandle<()>,
}

/// Logs a child's stdout lines (HTTP servers log there) and keeps them in `tail` with stderr,
/// so a failed launch can say what the server printed.
pub fn log_stdout(stdout: ChildStdout, tail: StderrTail, target_id: &str, pid: u32) {
    let target = target_id.to_owned();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(actor_kind = "runtime", target_id = %target, pid, stdout = %line, "agent stdout");
            tail.push(line);
        }
    });
}

/// Resolves a working directory to an absolute path (relative to the node's own directory).
pub fn absolute_dir(dir: Option<&str>) -> PathBuf {
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    match dir {
        Some(d) if Path::new(d).is_absolute() => PathBuf::from(d),
        Some(d) => base.join(d),
        None => base,
    }
}

/// Spawns `cmd` in a new process group; stderr lines go to the log tagged with `target_id`.
pub fn spawn(cmd: &LaunchCommand, target_id: &str) -> Result<Spawned, SpawnError> {
    let (program, args) = cmd.argv.split_first().ok_or(SpawnError::EmptyCommand)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(&cmd.env)
        .current_dir(&cmd.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| SpawnError::Io { program: program.clone(), source })?;
    let pid = child.id().unwrap_or(0);
    let stdin = child.stdin.take().ok_or(SpawnError::NoPipe("stdin"))?;
    let stdout = child.stdout.take().ok_or(SpawnError::NoPipe("stdout"))?;
    let stderr = child.stderr.take().ok_or(SpawnError::NoPipe("stderr"))?;
    let tail = StderrTail::default();
    let (tail_w, target) = (tail.clone(), target_id.to_owned());
    let stderr_done = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(actor_kind = "runtime", target_id = %target, pid, stderr = %line, "agent stderr");
            tail_w.push(line);
        }
    });
    Ok(Spawned { child, pid, pgid: i32::try_from(pid).unwrap_or(0), stdin, stdout, stderr_tail: tail, stderr_done })
}

/// Whether a process group still has a live (non-zombie) member. Zombies are skipped: orphaned
/// grandchildren are reaped by PID 1, which in some containers never happens.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 0 || killpg(Pid::from_raw(pgid), None).is_err() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return true };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        // "pid (comm) state ppid pgrp ..." — comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return false };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        pgrp == Some(pgid) && state != "Z" && state != "X"
    })
}

/// Sends `signal` to a process group (ignoring "no such group").
pub fn signal_group(pgid: i32, signal: Signal) {
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// SIGTERM to the group, then SIGKILL after `grace` if anything is left. Waits at most
/// `grace` + a little.
pub async fn kill_group(pgid: i32, grace: Duration) {
    if !group_alive(pgid) {
        return;
    }
    signal_group(pgid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if !group_alive(pgid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal_group(pgid, Signal::SIGKILL);
}

/// Describes an exit status for logs and task errors.
pub fn describe_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "exited".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dirs_become_absolute() {
        assert!(absolute_dir(Some("sub")).is_absolute());
        assert_eq!(absolute_dir(Some("/tmp")), PathBuf::from("/tmp"));
        assert!(absolute_dir(None).is_absolute());
    }

    #[tokio::test]
    async fn group_kill_reaches_grandchildren() -> Result<(), Box<dyn std::error::Error>> {
        let cmd = LaunchCommand {
            argv: vec!["sh".into(), "-c".into(), "sleep 30 & sleep 30 & wait".into()],
            env: BTreeMap::new(),
            cwd: absolute_dir(None),
        };
        let mut spawned = spawn(&cmd, "t")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(group_alive(spawned.pgid));
        kill_group(spawned.pgid, Duration::from_millis(500)).await;
        let _ = spawned.child.wait().await;
        for _ in 0..50 {
            if !group_alive(spawned.pgid) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("process group survived".into())
    }
}
