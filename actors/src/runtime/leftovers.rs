//! The start-up sweep's decision: is a process group that a previous run recorded (an open
//! `runtime_leases` row) still that run's, so that it must be killed? Only recorded groups are
//! ever looked at, and one is killed only on evidence that it is still ours: a pid (and so a
//! group id) is recycled once the group is gone, and the sweep must never hit a stranger.
//!
//! A node killed with SIGKILL leaves its group leader killed by the parent-death signal: that
//! leader is then a zombie (when nothing reaps orphans, as in some containers) or gone, and its
//! command line is empty — yet its helpers may run on. So the evidence is, in order: the leader
//! runs the recorded program; the zombie leader's name is the recorded program's; a live member
//! of the group runs the recorded program. [`judge`] is pure; [`GroupView::of`] reads `/proc`.

use std::path::Path;

use super::process::{self, ProcStat};

/// What `/proc` shows of a recorded group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    /// The recorded leader (its pid is the group id).
    pub leader: Leader,
    /// The command lines of the group's live members other than the leader.
    pub members: Vec<Vec<String>>,
}

/// The state of a group's leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leader {
    /// Runs, in the group, with this command line.
    Running(Vec<String>),
    /// Exited, not reaped: only its name (`comm`, at most 15 bytes) is left.
    Zombie { comm: String },
    /// No such process in the group.
    Gone,
}

/// Why a group is taken to be the previous run's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    LeaderRunsRecorded,
    ZombieLeaderNamedAsRecorded,
    MemberRunsRecorded,
}

/// Why a recorded group is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    /// Nothing of it runs any more.
    NothingRuns,
    /// Its leader runs something else: the pid was recycled.
    LeaderRunsSomethingElse,
    /// Its leader is gone and no member runs the recorded program: it cannot be told ours.
    NothingMatches,
}

/// The sweep's decision for one recorded group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Kill(Evidence),
    Leave(LeaveReason),
}

/// Decides for a group recorded with `command` (the argv it was started with).
pub fn judge(command: &[String], view: &GroupView) -> Verdict {
    match &view.leader {
        Leader::Running(cmdline) if runs(command, cmdline) => Verdict::Kill(Evidence::LeaderRunsRecorded),
        Leader::Running(_) => Verdict::Leave(LeaveReason::LeaderRunsSomethingElse),
        _ if view.members.is_empty() => Verdict::Leave(LeaveReason::NothingRuns),
        Leader::Zombie { comm } if named(command, comm) => Verdict::Kill(Evidence::ZombieLeaderNamedAsRecorded),
        _ if view.members.iter().any(|m| runs(command, m)) => Verdict::Kill(Evidence::MemberRunsRecorded),
        _ => Verdict::Leave(LeaveReason::NothingMatches),
    }
}

/// The file name of the recorded program (`/usr/bin/python3` → `python3`).
fn program_name(command: &[String]) -> Option<&str> {
    let name = Path::new(command.first()?).file_name()?.to_str()?;
    (!name.is_empty()).then_some(name)
}

/// Whether a command line runs the recorded program: one of its words names it (the program
/// itself, or the script an interpreter runs, as with `#!` scripts such as `npx`).
fn runs(command: &[String], cmdline: &[String]) -> bool {
    let Some(name) = program_name(command) else { return false };
    cmdline.iter().any(|arg| Path::new(arg).file_name().and_then(|f| f.to_str()) == Some(name))
}

/// Whether a zombie's `comm` is the recorded program's name (the kernel keeps 15 bytes of it).
fn named(command: &[String], comm: &str) -> bool {
    const COMM_MAX: usize = 15;
    let Some(name) = program_name(command) else { return false };
    let kept = name.as_bytes().get(..COMM_MAX).unwrap_or(name.as_bytes());
    !comm.is_empty() && comm.as_bytes() == kept
}

impl GroupView {
    /// Reads group `pgid` from `/proc`.
    pub fn of(pgid: i32) -> GroupView {
        let leader = match ProcStat::read(pgid) {
            Some(p) if p.pgrp == pgid && p.exited => Leader::Zombie { comm: p.comm },
            Some(p) if p.pgrp == pgid => Leader::Running(process::cmdline(pgid).unwrap_or_default()),
            _ => Leader::Gone,
        };
        let members = process::processes()
            .filter(|p| p.pgrp == pgid && p.pid != pgid && !p.exited)
            .map(|p| process::cmdline(p.pid).unwrap_or_default())
            .collect();
        GroupView { leader, members }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &str) -> Vec<String> {
        words.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn judges_recorded_groups() {
        use Evidence::*;
        use LeaveReason::*;
        let running = |c: &str| Leader::Running(argv(c));
        let zombie = |c: &str| Leader::Zombie { comm: c.into() };
        let long = "/opt/agents/acp_http_server_launcher --port 1";
        // (recorded command, leader, members, verdict)
        let cases: [(&str, Leader, &[&str], Verdict); 14] = [
            ("python3 agent.py", running("python3 agent.py"), &[], Verdict::Kill(LeaderRunsRecorded)),
            ("python3 agent.py", running("/usr/bin/python3 agent.py"), &[], Verdict::Kill(LeaderRunsRecorded)),
            ("/usr/bin/npx pkg", running("node /usr/lib/npx pkg"), &[], Verdict::Kill(LeaderRunsRecorded)),
            (
                "python3 agent.py",
                running("nginx: worker"),
                &["python3 agent.py"],
                Verdict::Leave(LeaderRunsSomethingElse),
            ),
            // "sh" is not "bash", nor "ssh".
            ("sh -c x", running("bash -c x"), &[], Verdict::Leave(LeaderRunsSomethingElse)),
            ("sh -c x", running("ssh host"), &[], Verdict::Leave(LeaderRunsSomethingElse)),
            // A zombie leader (killed with the node) whose helpers run on.
            ("python3 agent.py", zombie("python3"), &["sleep 300"], Verdict::Kill(ZombieLeaderNamedAsRecorded)),
            (long, zombie("acp_http_server"), &["sleep 300"], Verdict::Kill(ZombieLeaderNamedAsRecorded)),
            ("sh -c x", zombie("python3"), &["sh -c x"], Verdict::Kill(MemberRunsRecorded)),
            ("sh -c x", zombie("python3"), &["sleep 300"], Verdict::Leave(NothingMatches)),
            ("python3 agent.py", Leader::Gone, &["python3 agent.py --child"], Verdict::Kill(MemberRunsRecorded)),
            ("python3 agent.py", Leader::Gone, &["sleep 300"], Verdict::Leave(NothingMatches)),
            ("python3 agent.py", zombie("python3"), &[], Verdict::Leave(NothingRuns)),
            ("python3 agent.py", zombie("python3x"), &["sleep 300"], Verdict::Leave(NothingMatches)),
        ];
        for (command, leader, members, want) in cases {
            let view = GroupView { leader: leader.clone(), members: members.iter().map(|m| argv(m)).collect() };
            assert_eq!(judge(&argv(command), &view), want, "{command} / {leader:?} / {members:?}");
        }
        let nobody = GroupView { leader: Leader::Gone, members: vec![] };
        assert_eq!(judge(&argv("python3 a"), &nobody), Verdict::Leave(NothingRuns));
        assert_eq!(
            judge(&[], &GroupView { leader: running("x"), members: vec![] }),
            Verdict::Leave(LeaderRunsSomethingElse)
        );
    }

    /// A real group whose leader exited unreaped (a zombie, empty command line) while its child
    /// runs on: the sweep sees it and kills the group.
    #[tokio::test]
    async fn a_group_with_a_zombie_leader_is_seen_and_killed() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::process::CommandExt as _;
        // Not waited on until the end: the leader stays a zombie.
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & exit 0"])
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .spawn()?;
        let pgid = i32::try_from(leader.id())?;
        let mut view = GroupView::of(pgid);
        for _ in 0..100 {
            // (The forked child shows the shell's command line until it has exec'd `sleep`.)
            if matches!(view.leader, Leader::Zombie { .. }) && view.members == vec![argv("sleep 30")] {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            view = GroupView::of(pgid);
        }
        assert_eq!(view.leader, Leader::Zombie { comm: "sh".into() });
        assert_eq!(view.members, vec![argv("sleep 30")]);
        assert_eq!(process::cmdline(pgid), Some(vec![]), "a zombie has an empty command line");
        assert_eq!(judge(&argv("sh -c x"), &view), Verdict::Kill(Evidence::ZombieLeaderNamedAsRecorded));
        assert_eq!(judge(&argv("python3 a"), &view), Verdict::Leave(LeaveReason::NothingMatches));
        assert!(process::group_alive(pgid));
        process::kill_group(pgid, std::time::Duration::from_millis(500)).await;
        assert!(!process::group_alive(pgid), "the group's live member was killed");
        leader.wait()?;
        Ok(())
    }
}
