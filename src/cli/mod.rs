//! `alink-cli`: a thin HTTP client of the node. Command names and flags follow the Go CLI where
//! they overlap (contract §4); output is readable by default (tables with a header for lists
//! such as `targets`), raw JSON — the response body as the Go CLI prints it — with `--json`.
//! Notes for the person at the terminal (the sender in use, where `register` saved the id, a
//! lost node) go to stderr; a closed stdout (`| head`) ends the command quietly with exit 0.
//!
//! * `args` — the command line (clap), with the exit codes in `--help`.
//! * `client` — errors and their exit codes, the HTTP client bound to `--server`, output.
//! * `tasks`, `agents`, `peers`, `threads`, `tokens` — the commands, by group (`tokens` also
//!   finds the local admin token the CLI uses by default).
//! * `follow` — following a task's events and waiting for its outcome, shared by every command
//!   that streams or waits (`task-events --follow`, `call --wait`, `thread-continue --wait`,
//!   `task-wait`), reconnecting across a node restart.

mod agents;
mod args;
mod client;
mod follow;
mod peers;
mod tasks;
mod threads;
mod tokens;

use serde_json::{Map, Value, json};

pub use agents::parse_defaults;
pub use args::{
    BulkActionArg, CallArgs, Cli, Command, DEFAULT_SERVER, Decision, FollowArgs, HeartbeatArgs, PeerAddArgs, PeerIdArg,
    RegisterArgs, StateArgs, TargetArg, TargetIdArg, TargetStartArgs, TargetsArgs, TaskBulkArgs, TaskCancelArgs,
    TaskEventsArgs, TaskFilterArgs, TaskIdArg, TaskListArgs, TaskResumeArgs, TaskWaitArgs, ThreadContinueArgs,
    ThreadCreateArgs, ThreadIdArg, ThreadsArgs, TokenCreateArgs, TokenIdArg,
};
pub use client::CliError;
pub use follow::format_event;
pub use threads::format_inspection;

use client::{Client, Output};

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let token = match cli.token.clone().filter(|t| !t.trim().is_empty()) {
        Some(t) => Some(t),
        None => tokens::local_token(&cli.server, cli.state_dir.as_deref())?,
    };
    let client = Client::new(&cli.server, token.as_deref())?;
    let out = Output { json: cli.json };
    let client = &client;
    match cli.command {
        Command::Call(a) => tasks::call(client, out, a).await,
        Command::TaskGet(a) => tasks::get(client, out, a).await,
        Command::TaskEvents(a) => tasks::events(client, out, a).await,
        Command::TaskWait(a) => tasks::wait(client, out, a).await,
        Command::TaskList(a) => tasks::list(client, out, a).await,
        Command::TaskBulk(a) => tasks::bulk(client, out, a).await,
        Command::TaskResume(a) => tasks::resume(client, out, a).await,
        Command::TaskCancel(a) => tasks::cancel(client, out, a).await,
        Command::Targets(a) => agents::targets(client, out, a).await,
        Command::PeerAdd(a) => peers::add(client, out, a).await,
        Command::PeerList => peers::list(client, out).await,
        Command::PeerSync(a) => peers::sync(client, out, a).await,
        Command::Register(a) => agents::register(client, out, &a).await,
        Command::EnsureRegistered(a) => agents::ensure_registered(client, out, &a).await,
        Command::Heartbeat(a) => agents::heartbeat(client, out, a).await,
        Command::Unregister(st) => agents::unregister(client, out, st).await,
        Command::Agents => agents::agents(client, out).await,
        Command::TargetHealth(t) => agents::target_health(client, out, t).await,
        Command::TargetStart(t) => agents::target_start(client, out, t).await,
        Command::TargetStop(t) => agents::target_stop(client, out, t).await,
        Command::TargetPause(t) => agents::target_pause(client, out, t, true).await,
        Command::TargetResume(t) => agents::target_pause(client, out, t, false).await,
        Command::ThreadCreate(a) => threads::create(client, out, a).await,
        Command::ThreadGet(a) => threads::get(client, out, a).await,
        Command::ThreadContinue(a) => threads::continue_turn(client, out, a).await,
        Command::ThreadTurns(a) => threads::turns(client, out, a).await,
        Command::Threads(a) => threads::list(client, out, a).await,
        Command::TokenCreate(a) => tokens::create(client, out, a).await,
        Command::TokenList => tokens::list(client, out).await,
        Command::TokenRevoke(a) => tokens::revoke(client, out, a).await,
    }
}

/// The string at `key` of a JSON object, or `""` (readable output shows missing fields as blank).
fn field_str<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The JSON object a `flag` holds.
fn parse_object(flag: &str, text: &str) -> Result<Map<String, Value>, CliError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CliError::Usage(format!("{flag} must be a JSON object"))),
        Err(e) => Err(CliError::Usage(format!("{flag} is not valid JSON: {e}"))),
    }
}

/// The payload of `--text` (`{"text": …}`) or `--payload-json`, if either is given.
fn payload(text: &Option<String>, payload_json: &Option<String>) -> Result<Option<Value>, CliError> {
    Ok(match (text, payload_json) {
        (Some(t), _) => Some(json!({ "text": t })),
        (None, Some(p)) => Some(Value::Object(parse_object("--payload-json", p)?)),
        (None, None) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_from_text_or_json_object() {
        let cases: [(Option<&str>, Option<&str>, Option<Value>); 4] = [
            (Some("hi"), None, Some(json!({"text": "hi"}))),
            (None, Some(r#"{"mode":"fail"}"#), Some(json!({"mode": "fail"}))),
            (Some("hi"), Some(r#"{"mode":"fail"}"#), Some(json!({"text": "hi"}))),
            (None, None, None),
        ];
        for (text, json_text, want) in cases {
            let got = payload(&text.map(str::to_owned), &json_text.map(str::to_owned)).ok().flatten();
            assert_eq!(got, want, "--text {text:?} --payload-json {json_text:?}");
        }
        for bad in ["[1]", "{"] {
            assert!(matches!(payload(&None, &Some(bad.to_owned())), Err(CliError::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn field_str_is_blank_when_missing_or_not_a_string() {
        let v = json!({"a": "x", "n": 1});
        assert_eq!((field_str(&v, "a"), field_str(&v, "n"), field_str(&v, "z")), ("x", "", ""));
    }
}
