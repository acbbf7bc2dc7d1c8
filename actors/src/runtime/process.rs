//! Child processes of runtimes: spawned in their own process group with the target's `env` and an
//! absolute `cwd`; stderr is logged (tagged with the target) and its last lines kept for errors;
//! stopping signals the whole group (SIGTERM, then SIGKILL after a grace period), so agents that
//! spawn helpers (`npx`, `uv`, shells) leave nothing behind.
//!
//! No orphans, even when the node dies without stopping them (`kill -9`, OOM, a crash):
//! * the agent gets `SIGKILL` from the kernel when the node dies (`PR_SET_PDEATHSIG`, set between
//!   fork and exec; see [`SPAWNER`] for why the fork happens on one dedicated thread);
//! * what the agent started itself (its grandchildren) is in its process group but has no
//!   parent-death signal, so each group gets a [`GroupKeeper`]: a `/bin/sh` inside the group,
//!   blocked reading a pipe only the node writes to. When the node dies the kernel closes the
//!   pipe, and the keeper `SIGKILL`s its whole group (itself included). While it lives it also
//!   pins the group id, so the keeper can never hit a recycled group.
//! * the start-up sweep (`runtime::leftovers`) kills what a previous run recorded and left, as
//!   the safety net.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
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
    #[error("no tokio runtime to register the child with")]
    NoRuntime,
    #[error("the spawner thread stopped while starting '{program}'")]
    SpawnerGone { program: String },
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
    /// Kills the group if the node dies; `None` if it could not be started (logged).
    pub keeper: Option<GroupKeeper>,
}

/// The keeper of a process group (see the module docs): `/bin/sh` inside the group, waiting for
/// end-of-file on a pipe whose only writer is this handle. Dropping the handle, or the node dying,
/// makes it `SIGKILL` the group. Hold it until the group has been stopped the graceful way
/// ([`kill_group`]), then drop it.
#[derive(Debug)]
pub struct GroupKeeper {
    /// The write end of the keeper's stdin; never written, only closed.
    _pipe: ChildStdin,
}

/// What the keeper runs: block until the node's end of the pipe closes, then kill the group.
const KEEPER_SCRIPT: &str = "read -r _; kill -s KILL 0";

/// Starts the keeper of group `pgid` (which must exist: a group that already emptied is gone).
pub fn spawn_keeper(pgid: i32) -> Result<GroupKeeper, SpawnError> {
    let program = "/bin/sh";
    let mut child = Command::new(program)
        .args(["-c", KEEPER_SCRIPT])
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(pgid)
        // Not kill_on_drop: the handle is dropped right away; tokio reaps the keeper when it exits.
        .spawn()
        .map_err(|source| SpawnError::Io { program: program.into(), source })?;
    let pipe = child.stdin.take().ok_or(SpawnError::NoPipe("keeper stdin"))?;
    Ok(GroupKeeper { _pipe: pipe })
}

/// A fork to run on the spawner thread.
type SpawnJob = Box<dyn FnOnce() + Send>;

/// The thread every agent is forked from. `PR_SET_PDEATHSIG` fires when the *thread* that forked
/// the child exits, not when its process does. Tokio's worker threads live as long as the
/// runtime, except that a worker entering `block_in_place` hands its core to a new thread and may
/// later retire as an idle blocking-pool thread (10 s keep-alive) — which would `SIGKILL` every
/// agent it had forked. This thread never exits before the process, so "the parent died" means
/// "the node died". `None` if it could not be started (then children are forked in place).
static SPAWNER: OnceLock<Option<Sender<SpawnJob>>> = OnceLock::new();

fn spawner() -> Option<&'static Sender<SpawnJob>> {
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
            let started = std::thread::Builder::new().name("alink-spawner".into()).spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            });
            match started {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the spawner thread; agents are forked from worker threads");
                    None
                }
            }
        })
        .as_ref()
}

/// Spawns `command` on the spawner thread (registered with the caller's tokio runtime) and waits
/// for the fork (milliseconds, as a spawn in place would take).
fn spawn_on_spawner(mut command: Command, program: &str) -> Result<Child, SpawnError> {
    let io = |source| SpawnError::Io { program: program.to_owned(), source };
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| SpawnError::NoRuntime)?;
    let (tx, rx): (SyncSender<std::io::Result<Child>>, _) = std::sync::mpsc::sync_channel(1);
    let job: SpawnJob = Box::new(move || {
        let _entered = runtime.enter();
        let _ = tx.send(command.spawn());
    });
    // Without the thread (it could not start), the fork happens here.
    let in_place = match spawner() {
        Some(thread) => thread.send(job).err().map(|unsent| unsent.0),
        None => Some(job),
    };
    if let Some(job) = in_place {
        job();
    }
    rx.recv().map_err(|_| SpawnError::SpawnerGone { program: program.to_owned() })?.map_err(io)
}

/// Makes the child get `SIGKILL` when the node dies (Linux `PR_SET_PDEATHSIG`). If the node died
/// between fork and `prctl`, the child is already an orphan: it fails to start instead.
// The one unsafe block of the workspace: `pre_exec` is unsafe because its closure runs in the
// forked child of a multi-threaded process, where only async-signal-safe calls are allowed.
#[allow(unsafe_code)]
fn die_with_the_node(command: &mut Command) {
    let node = nix::unistd::getpid();
    // SAFETY: the closure makes two syscalls (prctl, getppid) and builds an io::Error from an
    // errno: no allocation, no locks, nothing that is not async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != node {
                return Err(Errno::ESRCH.into());
            }
            Ok(())
        });
    }
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

/// Spawns `cmd` in a new process group that dies with the node (parent-death signal, keeper);
/// stderr lines go to the log tagged with `target_id`.
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
    die_with_the_node(&mut command);
    let mut child = spawn_on_spawner(command, program)?;
    let pid = child.id().unwrap_or(0);
    let pgid = i32::try_from(pid).unwrap_or(0);
    let keeper = match spawn_keeper(pgid) {
        Ok(k) => Some(k),
        Err(e) => {
            // The agent itself still dies with the node (parent-death signal); its helpers may not.
            tracing::warn!(actor_kind = "runtime", target_id = %target_id, pid, error = %e, "cannot start the process group's keeper");
            None
        }
    };
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
    Ok(Spawned { child, pid, pgid, stdin, stdout, stderr_tail: tail, stderr_done, keeper })
}

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    /// The executable's name, at most 15 bytes (kept by zombies, unlike the command line).
    pub comm: String,
    /// Exited but not reaped (`Z`) or dead (`X`): nothing of it runs any more.
    pub exited: bool,
    pub pgrp: i32,
}

impl ProcStat {
    /// Parses `pid (comm) state ppid pgrp …`; `comm` may contain spaces and parentheses.
    pub fn parse(stat: &str) -> Option<ProcStat> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let pid = stat.get(..open)?.trim().parse().ok()?;
        let comm = stat.get(open + 1..close)?.to_owned();
        let mut fields = stat.get(close + 1..)?.split_whitespace();
        let state = fields.next()?;
        let pgrp = fields.nth(1)?.parse().ok()?;
        Some(ProcStat { pid, comm, exited: state == "Z" || state == "X", pgrp })
    }

    /// Reads `/proc/<pid>/stat` (`None` if there is no such process).
    pub fn read(pid: i32) -> Option<ProcStat> {
        ProcStat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }
}

/// Every process `/proc` lists (those that vanish while it is read are skipped).
pub fn processes() -> impl Iterator<Item = ProcStat> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter_map(ProcStat::read)
}

/// The command line of `pid` (empty for a zombie or a kernel thread, `None` if it is gone).
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

/// Whether a process group still has a live (non-zombie) member. Zombies are skipped: orphaned
/// grandchildren are reaped by PID 1, which in some containers never happens.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 0 || killpg(Pid::from_raw(pgid), None).is_err() {
        return false;
    }
    if std::fs::metadata("/proc/self/stat").is_err() {
        return true;
    }
    processes().any(|p| p.pgrp == pgid && !p.exited)
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

    /// An agent that starts two helpers of its own and waits for them.
    fn shell_with_two_children() -> LaunchCommand {
        LaunchCommand {
            argv: vec!["sh".into(), "-c".into(), "sleep 30 & sleep 30 & wait".into()],
            env: BTreeMap::new(),
            cwd: absolute_dir(None),
        }
    }

    #[test]
    fn proc_stat_lines_parse() {
        let stat = |pid, comm: &str, exited, pgrp| Some(ProcStat { pid, comm: comm.into(), exited, pgrp });
        let cases: [(&str, Option<ProcStat>); 6] = [
            ("123 (python3) S 1 123 123 0 -1 4194560", stat(123, "python3", false, 123)),
            ("7 (a) (b) c) Z 1 5 5 0", stat(7, "a) (b) c", true, 5)),
            ("8 (sleep) X 1 9 9", stat(8, "sleep", true, 9)),
            ("9 (my agent) R 2 40 40", stat(9, "my agent", false, 40)),
            ("9 (x) S 1", None),
            ("garbage", None),
        ];
        for (line, want) in cases {
            assert_eq!(ProcStat::parse(line), want, "{line}");
        }
    }

    #[tokio::test]
    async fn dropping_the_keeper_kills_the_group_at_once() -> Result<(), Box<dyn std::error::Error>> {
        let cmd = shell_with_two_children();
        let mut spawned = spawn(&cmd, "t")?;
        let keeper = spawned.keeper.take().ok_or("no keeper")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let keeper_in_group = processes()
            .filter(|p| p.pgrp == spawned.pgid && p.pid != spawned.pgid)
            .any(|p| cmdline(p.pid).is_some_and(|c| c.iter().any(|a| a == KEEPER_SCRIPT)));
        assert!(keeper_in_group, "the keeper runs inside the group");
        drop(keeper);
        for _ in 0..50 {
            if !group_alive(spawned.pgid) {
                let _ = spawned.child.wait().await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("the group survived its keeper's pipe closing".into())
    }

    #[tokio::test]
    async fn group_kill_reaches_grandchildren() -> Result<(), Box<dyn std::error::Error>> {
        let cmd = shell_with_two_children();
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
