//! The command line: top-level flags, the commands and their arguments (clap derive). Every
//! command and flag has a help line (a unit test and `tests/cli_polish.rs` check it).

use std::path::PathBuf;
use std::time::Duration;

use aethrolink_actors::model::TaskStatus;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// `--server` when neither the flag nor `ALINK_SERVER` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7777";

/// What `alink-cli --help` prints after the commands: the exit codes every command shares.
const EXIT_CODES: &str = "\
Exit codes:
  0  success (a waited-for task completed; `task-wait --until S`: the task reached S)
  1  error (HTTP error, node unreachable, bad input), or a waited-for task failed or was cancelled
  2  usage error (unknown flag, missing argument)
  3  a waited-for task is awaiting input (the task-resume commands that answer it are printed)
  4  `task-wait --until S`: the task ended in another status before reaching S
  5  a follower lost the node for longer than --reconnect-for (the task's outcome is unknown)";

/// Top-level arguments.
#[derive(Debug, Parser)]
#[command(name = "alink-cli", version, about = "Command-line client of an AethroLink node", after_help = EXIT_CODES)]
pub struct Cli {
    /// Node base URL.
    #[arg(long, global = true, env = "ALINK_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Print raw JSON responses instead of readable text.
    #[arg(long, global = true)]
    pub json: bool,
    /// API token sent as `Authorization: Bearer` (default: the node's local admin token file
    /// when `--server` is a node on this machine).
    #[arg(long, global = true, env = "ALINK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where the local admin token files are (default `$XDG_STATE_HOME/aethrolink`, else
    /// `~/.local/state/aethrolink`).
    #[arg(long, global = true, env = "ALINK_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a task to a target (or route it by intent).
    Call(CallArgs),
    /// Show a task (with its result inline once it completed).
    TaskGet(TaskIdArg),
    /// Print a task's events (`--follow` streams until the task ends).
    TaskEvents(TaskEventsArgs),
    /// Wait until a task ends, awaits input, or reaches `--until STATUS`.
    TaskWait(TaskWaitArgs),
    /// List tasks.
    TaskList(TaskListArgs),
    /// Cancel or retry many tasks, by id or by the listing filters (`--dry-run` only counts).
    TaskBulk(TaskBulkArgs),
    /// Answer a task that is awaiting input.
    TaskResume(TaskResumeArgs),
    /// Cancel a task.
    TaskCancel(TaskCancelArgs),
    /// List targets (local, then peers'; `--refresh` syncs every peer first).
    Targets(TargetsArgs),
    /// Register (or update) a static peer node.
    PeerAdd(PeerAddArgs),
    /// List peers.
    PeerList,
    /// Sync a peer's targets now.
    PeerSync(PeerIdArg),
    /// Register an agent (a target other agents can call) and save its id in the state file.
    Register(RegisterArgs),
    /// Register unless this agent is already known (by the stored id, else by display name).
    EnsureRegistered(RegisterArgs),
    /// Renew this agent's presence lease (`--every 30s` keeps renewing until interrupted).
    Heartbeat(HeartbeatArgs),
    /// Mark this agent offline.
    Unregister(StateArgs),
    /// List registered agents.
    Agents,
    /// A target's runtime health.
    TargetHealth(TargetArg),
    /// Start a target's runtime.
    TargetStart(TargetStartArgs),
    /// Stop a target's runtime.
    TargetStop(TargetArg),
    /// Pause dispatching to a target: queued tasks wait, running ones finish.
    TargetPause(TargetIdArg),
    /// Resume dispatching to a paused target.
    TargetResume(TargetIdArg),
    /// Create a thread between two agents.
    ThreadCreate(ThreadCreateArgs),
    /// Inspect a thread (state, turns, continuity, who continues next).
    ThreadGet(ThreadIdArg),
    /// Send the next turn of a thread.
    ThreadContinue(ThreadContinueArgs),
    /// A thread's turns.
    ThreadTurns(ThreadIdArg),
    /// List threads.
    Threads(ThreadsArgs),
    /// Make an API token (admin); it is printed once.
    TokenCreate(TokenCreateArgs),
    /// List API tokens (admin; never their secrets).
    TokenList,
    /// Revoke an API token (admin).
    TokenRevoke(TokenIdArg),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// Who or what will hold the token.
    #[arg(long)]
    pub name: String,
    /// A scope: tasks:read, tasks:write, agents:register or admin (repeatable).
    #[arg(long = "scope", required = true)]
    pub scopes: Vec<String>,
    /// Lifetime (Go duration, e.g. 720h); default: it does not expire.
    #[arg(long, value_parser = crate::duration::parse_duration)]
    pub expires_in: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct TokenIdArg {
    /// The token's id (from token-create or token-list).
    #[arg(long)]
    pub token_id: String,
}

#[derive(Debug, Args)]
pub struct TargetsArgs {
    /// Sync every peer before listing.
    #[arg(long)]
    pub refresh: bool,
}

#[derive(Debug, Args)]
pub struct PeerAddArgs {
    /// The peer's id (letters, digits, '-', '_', '.', ':').
    #[arg(long)]
    pub peer_id: String,
    /// A name for people.
    #[arg(long)]
    pub display_name: Option<String>,
    /// The peer node's base URL (http or https).
    #[arg(long)]
    pub base_url: String,
    /// What the peer offers, comma-separated.
    #[arg(long)]
    pub capabilities: Option<String>,
    /// The peer's public key (base64url ed25519) to pin now (else pinned at the first sync).
    #[arg(long)]
    pub public_key: Option<String>,
    /// Replace an already pinned key with --public-key (re-pinning is explicit).
    #[arg(long, requires = "public_key")]
    pub replace_key: bool,
}

#[derive(Debug, Args)]
pub struct PeerIdArg {
    /// The peer's id.
    #[arg(long)]
    pub peer_id: String,
}

#[derive(Debug, Args)]
pub struct HeartbeatArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// How long the renewed lease lasts, in seconds.
    #[arg(long, default_value_t = 300)]
    pub lease_ttl_seconds: i64,
    /// Keep renewing at this interval (Go duration, e.g. 30s) until interrupted.
    #[arg(long, value_parser = crate::duration::parse_duration)]
    pub every: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct TargetIdArg {
    /// The target's id.
    #[arg(long = "target-agent-id", alias = "target-id")]
    pub target_agent_id: String,
}

#[derive(Debug, Args)]
pub struct TargetArg {
    /// The target's id.
    #[arg(long = "target-agent-id", alias = "target-id")]
    pub target_agent_id: String,
    /// Runtime options as a JSON object (selects the subcontext).
    #[arg(long)]
    pub runtime_options_json: Option<String>,
}

#[derive(Debug, Args)]
pub struct TargetStartArgs {
    #[command(flatten)]
    pub target: TargetArg,
    /// Clear a crash-loop pause (see `paused_until` in target-health) and launch now.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ThreadCreateArgs {
    /// One participant (a target or agent id).
    #[arg(long)]
    pub agent_a_id: String,
    /// The other participant.
    #[arg(long)]
    pub agent_b_id: String,
    /// A key naming the pair's continuity (default `<agent-a>:<agent-b>`).
    #[arg(long)]
    pub continuity_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct ThreadIdArg {
    /// The thread's id.
    #[arg(long)]
    pub thread_id: String,
}

#[derive(Debug, Args)]
pub struct ThreadContinueArgs {
    /// The thread's id.
    #[arg(long)]
    pub thread_id: String,
    /// Who sends this turn (default: whoever's turn it is).
    #[arg(long)]
    pub sender: Option<String>,
    /// Who receives this turn (default: the other participant).
    #[arg(long)]
    pub target_agent_id: Option<String>,
    /// What is asked (must be one of the receiver's capabilities).
    #[arg(long)]
    pub intent: Option<String>,
    /// Payload `{"text": …}`.
    #[arg(long, conflicts_with = "payload_json")]
    pub text: Option<String>,
    /// Payload as a JSON object.
    #[arg(long)]
    pub payload_json: Option<String>,
    /// The turn's conversation id (default: the thread's).
    #[arg(long)]
    pub conversation_id: Option<String>,
    /// Keep handing the thread back and forth, up to --max-turns turns in all.
    #[arg(long)]
    pub auto_continue: bool,
    /// With --auto-continue: the most turns in all.
    #[arg(long)]
    pub max_turns: Option<u32>,
    /// With --auto-continue: stop when a turn awaits input.
    #[arg(long)]
    pub stop_on_awaiting_input: bool,
    /// With --auto-continue: stop when a turn fails or is cancelled.
    #[arg(long)]
    pub stop_on_terminal_error: bool,
    /// With --auto-continue: stop when the same agent would act twice in a row.
    #[arg(long)]
    pub stop_on_same_actor_repeat: bool,
    /// Follow the turn's events; exit 0 if it completes, 3 if it awaits input, else 1.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub follow: FollowArgs,
}

#[derive(Debug, Args)]
pub struct ThreadsArgs {
    /// Only threads this agent takes part in.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only threads in this state (active, interrupted).
    #[arg(long)]
    pub status: Option<String>,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// File holding this agent's id (`{"agent_id": …}`); `register` writes it.
    #[arg(long, default_value_os_t = super::agents::default_state_file())]
    pub state_file: PathBuf,
    /// This agent's id (overrides the state file).
    #[arg(long)]
    pub agent_id: Option<String>,
}

/// How a follower rides out a node restart (`call --wait`, `task-events --follow`, `task-wait`,
/// `thread-continue --wait`).
#[derive(Debug, Clone, Copy, Args)]
pub struct FollowArgs {
    /// When the node's event stream drops before the task's outcome (a node restart), keep
    /// reconnecting (with Last-Event-ID) this long, then exit 5 (Go duration, e.g. 60s, 5m).
    #[arg(long, value_parser = crate::duration::parse_duration, default_value = "60s")]
    pub reconnect_for: Duration,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Target agent id; omit to route by intent.
    #[arg(long)]
    pub target_agent_id: Option<String>,
    /// What is asked (must be one of the target's capabilities).
    #[arg(long)]
    pub intent: String,
    /// Payload `{"text": …}`.
    #[arg(long, conflicts_with = "payload_json")]
    pub text: Option<String>,
    /// Payload as a JSON object.
    #[arg(long)]
    pub payload_json: Option<String>,
    /// Runtime options as a JSON object.
    #[arg(long)]
    pub runtime_options_json: Option<String>,
    /// Tasks of one conversation share the target's session (default: a new conversation).
    #[arg(long)]
    pub conversation_id: Option<String>,
    /// Fail the task if it has no result after this many milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Dispatch order on a busy session: low, normal (default) or high.
    #[arg(long)]
    pub priority: Option<String>,
    /// Retry failed attempts: a retry_policy JSON object, e.g. '{"max_attempts":3}'.
    #[arg(long)]
    pub retry_json: Option<String>,
    /// Bounds on each attempt: a deadlines JSON object, e.g. '{"heartbeat_timeout_ms":30000}'.
    #[arg(long)]
    pub deadlines_json: Option<String>,
    /// Renew the sender's presence lease before sending (when it is a registered agent).
    #[arg(long)]
    pub heartbeat: bool,
    /// Stream the task's events; exit 0 if it completes, 3 if it awaits input (printing the
    /// task-resume commands), else 1.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub follow: FollowArgs,
}

#[derive(Debug, Args)]
pub struct TaskIdArg {
    /// The task's id.
    #[arg(long)]
    pub task_id: String,
}

#[derive(Debug, Args)]
pub struct TaskEventsArgs {
    /// The task's id.
    #[arg(long)]
    pub task_id: String,
    /// Keep streaming live events until the task ends.
    #[arg(long)]
    pub follow: bool,
    /// Only events after this seq.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    #[command(flatten)]
    pub reconnect: FollowArgs,
}

/// A task status as `--until` takes it.
fn parse_status(text: &str) -> Result<TaskStatus, String> {
    text.parse().map_err(|_| {
        let all: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("'{text}' is not a task status; expected one of {}", all.join(", "))
    })
}

#[derive(Debug, Args)]
pub struct TaskWaitArgs {
    /// The task's id.
    #[arg(long)]
    pub task_id: String,
    /// Wait until the task has this status (or ends): exit 0 if it does, 4 if it ends otherwise.
    /// Without it: exit 0 if the task completes, 3 if it awaits input, 1 if it fails or is cancelled.
    #[arg(long, value_parser = parse_status, value_name = "STATUS")]
    pub until: Option<TaskStatus>,
    #[command(flatten)]
    pub follow: FollowArgs,
}

#[derive(Debug, Args)]
pub struct TaskListArgs {
    #[command(flatten)]
    pub filter: TaskFilterArgs,
    /// Continue a listing from the `next_cursor` of the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Page size (1–500, default 50).
    #[arg(long)]
    pub limit: Option<u32>,
}

/// What a bulk action does to each task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BulkActionArg {
    /// Cancel each task (as task-cancel).
    Cancel,
    /// Start a new attempt of each failed or cancelled task now.
    Retry,
}

#[derive(Debug, Args)]
pub struct TaskBulkArgs {
    /// `cancel` or `retry`.
    #[arg(value_enum)]
    pub action: BulkActionArg,
    /// A task to act on (repeatable); instead of the filter flags.
    #[arg(long = "id", value_name = "TASK_ID")]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: TaskFilterArgs,
    /// Only count and list the tasks it would act on.
    #[arg(long)]
    pub dry_run: bool,
    /// Recorded with each cancel or retry.
    #[arg(long)]
    pub reason: Option<String>,
}

/// The listing filters (`task-list`, `task-bulk`).
#[derive(Debug, Args)]
pub struct TaskFilterArgs {
    /// Only tasks in one of these statuses (comma-separated: created, running, awaiting_input,
    /// completed, failed, …).
    #[arg(long)]
    pub status: Option<String>,
    /// Only tasks sent to this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Only tasks with this intent.
    #[arg(long)]
    pub intent: Option<String>,
    /// Only tasks of this conversation.
    #[arg(long)]
    pub conversation_id: Option<String>,
    /// Only tasks of this thread.
    #[arg(long)]
    pub thread_id: Option<String>,
    /// Only tasks from this sender.
    #[arg(long)]
    pub sender: Option<String>,
    /// Only tasks whose metadata.correlation_id is this.
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// Only tasks with a scheduled retry.
    #[arg(long)]
    pub retrying: bool,
    /// Only non-terminal tasks without progress for --stuck-after-ms (default 10 min).
    #[arg(long)]
    pub stuck: bool,
    /// The bound of --stuck, in milliseconds.
    #[arg(long)]
    pub stuck_after_ms: Option<u64>,
    /// Only tasks created after this RFC 3339 instant.
    #[arg(long)]
    pub created_after: Option<String>,
    /// Only tasks created before this RFC 3339 instant.
    #[arg(long)]
    pub created_before: Option<String>,
    /// Only tasks last changed after this RFC 3339 instant.
    #[arg(long)]
    pub updated_after: Option<String>,
    /// Only tasks last changed before this RFC 3339 instant.
    #[arg(long)]
    pub updated_before: Option<String>,
    /// Only tasks whose last event mentions this text (case-insensitive).
    #[arg(long = "text", alias = "q")]
    pub text: Option<String>,
}

/// How to answer a permission request by kind (the agent's offered option of that kind is picked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Decision {
    /// Allow once (else always).
    #[value(name = "allow")]
    Allow,
    /// Allow always (else once).
    #[value(name = "allow_always")]
    AllowAlways,
    /// Reject once (else always).
    #[value(name = "reject")]
    Reject,
    /// Reject always (else once).
    #[value(name = "reject_always")]
    RejectAlways,
}

impl Decision {
    /// The wire spelling of `decision` in a resume body.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::AllowAlways => "allow_always",
            Decision::Reject => "reject",
            Decision::RejectAlways => "reject_always",
        }
    }
}

#[derive(Debug, Args)]
pub struct TaskResumeArgs {
    /// The task's id.
    #[arg(long)]
    pub task_id: String,
    /// Resume payload `{"text": …}`.
    #[arg(long, conflicts_with = "payload_json")]
    pub text: Option<String>,
    /// Resume payload as a JSON object.
    #[arg(long)]
    pub payload_json: Option<String>,
    /// Answer a permission request by kind.
    #[arg(long, value_enum, conflicts_with = "option_id")]
    pub decision: Option<Decision>,
    /// Answer a permission request with this offered option (its `optionId`).
    #[arg(long)]
    pub option_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct TaskCancelArgs {
    /// The task's id.
    #[arg(long)]
    pub task_id: String,
    /// Why (recorded on the cancel events).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// A name for people (`ensure-registered` also finds an agent by it).
    #[arg(long)]
    pub display_name: String,
    /// How the node reaches the agent.
    #[arg(long, default_value = "local_managed")]
    pub transport_kind: String,
    /// The agent's URL (for HTTP agents).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The adapter that runs its tasks (loopback, acp, acp_http); none: listed, not dispatchable.
    #[arg(long)]
    pub adapter: Option<String>,
    /// The agent family's protocol dialect (acp: acp, hermes, openclaw, goose; acp_http: acp, polling).
    #[arg(long)]
    pub dialect: Option<String>,
    /// A URL the node polls to know the agent is up.
    #[arg(long)]
    pub healthcheck: Option<String>,
    /// `managed` (the node launches it) or `external`.
    #[arg(long, default_value = "managed")]
    pub launch_mode: String,
    /// Launch command, split on whitespace.
    #[arg(long)]
    pub launch_command: Option<String>,
    /// `k=v,k2=v2`; values parse as JSON when they can, else stay strings.
    #[arg(long)]
    pub defaults: Option<String>,
    /// Comma-separated capabilities.
    #[arg(long)]
    pub capabilities: Option<String>,
    /// Stored with the registration (contract field; not used by this node).
    #[arg(long)]
    pub sticky_mode: Option<String>,
    /// How long the presence lease lasts without a heartbeat, in seconds.
    #[arg(long, default_value_t = 300)]
    pub lease_ttl_seconds: i64,
    /// Take over a target of the same id defined in the node's registry file.
    #[arg(long)]
    pub replace: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_command_and_flag_has_help() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        for cmd in cli.get_subcommands() {
            if cmd.get_about().is_none() {
                missing.push(cmd.get_name().to_owned());
            }
            for arg in cmd.get_arguments().filter(|a| a.get_help().is_none()) {
                missing.push(format!("{} --{}", cmd.get_name(), arg.get_id()));
            }
        }
        assert!(missing.is_empty(), "without help: {missing:?}");
    }

    #[test]
    fn until_takes_a_task_status() {
        assert_eq!(parse_status("awaiting_input"), Ok(TaskStatus::AwaitingInput));
        let err = parse_status("done").err().unwrap_or_default();
        assert!(err.contains("expected one of created,") && err.contains("cancelled"), "{err}");
    }

    #[test]
    fn decisions_use_the_wire_spelling() {
        for d in Decision::value_variants() {
            let name = d.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
            assert_eq!(name, d.as_str());
        }
    }
}
