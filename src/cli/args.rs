//! The command line: top-level flags, the commands and their arguments (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Top-level arguments.
#[derive(Debug, Parser)]
#[command(name = "alink-cli", version, about = "Command-line client of an AethroLink node")]
pub struct Cli {
    /// Node base URL.
    #[arg(long, global = true, env = "ALINK_SERVER", default_value = "http://127.0.0.1:7777")]
    pub server: String,
    /// Print raw JSON responses instead of readable text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a task to a target (or route it by intent).
    Call(CallArgs),
    /// Show a task.
    TaskGet(TaskIdArg),
    /// Print a task's events (`--follow` streams until the task ends).
    TaskEvents(TaskEventsArgs),
    /// List tasks.
    TaskList(TaskListArgs),
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
    /// Register an agent (a target other agents can call).
    Register(RegisterArgs),
    /// Register unless the stored agent id is still known; keeps the stored id.
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
    TargetStart(TargetArg),
    /// Stop a target's runtime.
    TargetStop(TargetArg),
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
}

#[derive(Debug, Args)]
pub struct TargetsArgs {
    /// Sync every peer before listing.
    #[arg(long)]
    pub refresh: bool,
}

#[derive(Debug, Args)]
pub struct PeerAddArgs {
    #[arg(long)]
    pub peer_id: String,
    #[arg(long)]
    pub display_name: Option<String>,
    /// The peer node's base URL (http or https).
    #[arg(long)]
    pub base_url: String,
    /// Comma-separated.
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
    #[arg(long)]
    pub peer_id: String,
}

#[derive(Debug, Args)]
pub struct HeartbeatArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[arg(long, default_value_t = 300)]
    pub lease_ttl_seconds: i64,
    /// Keep renewing at this interval (Go duration, e.g. 30s) until interrupted.
    #[arg(long, value_parser = crate::duration::parse_duration)]
    pub every: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct TargetArg {
    #[arg(long = "target-agent-id", alias = "target-id")]
    pub target_agent_id: String,
    /// Runtime options as a JSON object (selects the subcontext).
    #[arg(long)]
    pub runtime_options_json: Option<String>,
}

#[derive(Debug, Args)]
pub struct ThreadCreateArgs {
    #[arg(long)]
    pub agent_a_id: String,
    #[arg(long)]
    pub agent_b_id: String,
    #[arg(long)]
    pub continuity_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct ThreadIdArg {
    #[arg(long)]
    pub thread_id: String,
}

#[derive(Debug, Args)]
pub struct ThreadContinueArgs {
    #[arg(long)]
    pub thread_id: String,
    #[arg(long)]
    pub sender: Option<String>,
    #[arg(long)]
    pub target_agent_id: Option<String>,
    #[arg(long)]
    pub intent: Option<String>,
    #[arg(long, conflicts_with = "payload_json")]
    pub text: Option<String>,
    #[arg(long)]
    pub payload_json: Option<String>,
    #[arg(long)]
    pub conversation_id: Option<String>,
    /// Keep handing the thread back and forth, up to --max-turns turns in all.
    #[arg(long)]
    pub auto_continue: bool,
    #[arg(long)]
    pub max_turns: Option<u32>,
    #[arg(long)]
    pub stop_on_awaiting_input: bool,
    #[arg(long)]
    pub stop_on_terminal_error: bool,
    #[arg(long)]
    pub stop_on_same_actor_repeat: bool,
    /// Follow the turn's events and exit non-zero unless it completes.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct ThreadsArgs {
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long)]
    pub status: Option<String>,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// File holding this agent's id (`{"agent_id": …}`).
    #[arg(long, default_value_os_t = super::agents::default_state_file())]
    pub state_file: PathBuf,
    /// This agent's id (overrides the state file).
    #[arg(long)]
    pub agent_id: Option<String>,
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
    #[arg(long)]
    pub conversation_id: Option<String>,
    /// Fail the task if it has no result after this many milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Stream the task's events and exit non-zero unless it completes.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct TaskIdArg {
    #[arg(long)]
    pub task_id: String,
}

#[derive(Debug, Args)]
pub struct TaskEventsArgs {
    #[arg(long)]
    pub task_id: String,
    /// Keep streaming live events until the task ends.
    #[arg(long)]
    pub follow: bool,
    /// Only events after this seq.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
}

#[derive(Debug, Args)]
pub struct TaskListArgs {
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long)]
    pub conversation_id: Option<String>,
    #[arg(long)]
    pub sender: Option<String>,
    #[arg(long)]
    pub cursor: Option<String>,
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct TaskResumeArgs {
    #[arg(long)]
    pub task_id: String,
    /// Resume payload `{"text": …}`.
    #[arg(long, conflicts_with = "payload_json")]
    pub text: Option<String>,
    /// Resume payload as a JSON object.
    #[arg(long)]
    pub payload_json: Option<String>,
}

#[derive(Debug, Args)]
pub struct TaskCancelArgs {
    #[arg(long)]
    pub task_id: String,
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[arg(long)]
    pub display_name: String,
    #[arg(long, default_value = "local_managed")]
    pub transport_kind: String,
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub adapter: Option<String>,
    #[arg(long)]
    pub dialect: Option<String>,
    #[arg(long)]
    pub healthcheck: Option<String>,
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
    #[arg(long)]
    pub sticky_mode: Option<String>,
    #[arg(long, default_value_t = 300)]
    pub lease_ttl_seconds: i64,
    /// Take over a target of the same id defined in the node's registry file.
    #[arg(long)]
    pub replace: bool,
}
