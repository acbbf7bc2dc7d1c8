//! ACP dialects as data: how each runtime family is launched, keyed and named. Pure; one
//! adapter implementation serves all of them (contract §8.3).

use serde_json::{Value, json};

use crate::model::{JsonObject, TargetSpec};

/// A family of ACP agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Any ACP agent.
    Acp,
    /// Hermes Agent (`hermes acp`): `runtime_options.executor` picks `launch.commands[executor]`.
    Hermes,
    /// OpenClaw's `openclaw acp` bridge: `runtime_options.session_key` names the gateway session.
    OpenClaw,
    /// Goose (`goose acp`): `runtime_options.profile`.
    Goose,
}

/// What a task contributes to its sticky key.
#[derive(Clone, Debug, Default)]
pub struct StickyInput<'a> {
    pub thread_id: Option<&'a str>,
    pub conversation_id: Option<&'a str>,
    pub task_id: &'a str,
}

fn opt_str<'a>(options: &'a JsonObject, key: &str) -> Option<&'a str> {
    options.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

impl Dialect {
    /// The dialect of a target (`dialect`, default `acp`).
    pub fn of(spec: &TargetSpec) -> Result<Dialect, String> {
        match spec.dialect.as_deref().unwrap_or("acp") {
            "acp" | "" => Ok(Dialect::Acp),
            "hermes" => Ok(Dialect::Hermes),
            "openclaw" => Ok(Dialect::OpenClaw),
            "goose" => Ok(Dialect::Goose),
            other => Err(format!(
                "unsupported acp dialect for target {}: {other} (expected acp, hermes, openclaw or goose)",
                spec.target_id
            )),
        }
    }

    /// Human name used in event messages.
    pub fn display(self) -> &'static str {
        match self {
            Dialect::Acp => "ACP agent",
            Dialect::Hermes => "Hermes",
            Dialect::OpenClaw => "OpenClaw",
            Dialect::Goose => "Goose",
        }
    }

    /// Whether the agent's structured events (notifications with `params.event = {kind, message,
    /// data}`) are task events (contract §8.3: OpenClaw only; the other families ignore them).
    pub fn structured_events(self) -> bool {
        self == Dialect::OpenClaw
    }

    /// `remote.binding` and `session_bindings.adapter`.
    pub fn binding(self) -> &'static str {
        match self {
            Dialect::Acp => "acp_stdio",
            Dialect::Hermes => "hermes_acp",
            Dialect::OpenClaw => "acp_client_stdio",
            Dialect::Goose => "goose_acp",
        }
    }

    /// The option that selects a runtime process, and its default.
    fn scope(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Dialect::Acp => None,
            Dialect::Hermes => Some(("executor", "aethrolink-agent", "executor")),
            Dialect::OpenClaw => Some(("session_key", "main", "session")),
            Dialect::Goose => Some(("profile", "default", "profile")),
        }
    }

    /// Identity of the runtime process among a target's processes.
    pub fn subcontext(self, options: &JsonObject) -> String {
        match self.scope() {
            None => "default".to_owned(),
            Some((key, default, prefix)) => format!("{prefix}:{}", opt_str(options, key).unwrap_or(default)),
        }
    }

    /// argv of the runtime process.
    pub fn command(self, spec: &TargetSpec, options: &JsonObject) -> Result<Vec<String>, String> {
        if self == Dialect::Hermes && !spec.launch.commands.is_empty() {
            let executor = opt_str(options, "executor").unwrap_or("aethrolink-agent");
            return spec.launch.commands.get(executor).cloned().ok_or_else(|| {
                format!(
                    "missing hermes command for executor {executor} (launch.commands has: {})",
                    spec.launch.commands.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            });
        }
        if spec.launch.command.is_empty() {
            return Err(format!("missing launch command for target {}", spec.target_id));
        }
        Ok(spec.launch.command.clone())
    }

    /// Which session a task uses: thread id, then `runtime_options.session_key`, then the
    /// conversation id, then the task id (OpenClaw: thread id, then the session key).
    pub fn sticky_key(self, options: &JsonObject, task: &StickyInput<'_>) -> String {
        // A thread's turns share the thread id itself as their sticky key (contract §10, every
        // ACP dialect): all turns to one target within a thread reuse one remote session, and
        // inspection lists the bindings whose sticky key is the thread id.
        if let Some(t) = task.thread_id.filter(|s| !s.is_empty()) {
            return t.to_owned();
        }
        if let Some(k) = opt_str(options, "session_key") {
            return format!("session:{k}");
        }
        if self == Dialect::OpenClaw {
            return "session:main".to_owned();
        }
        match task.conversation_id.filter(|s| !s.is_empty()) {
            Some(c) => format!("conversation:{c}"),
            None => format!("task:{}", task.task_id),
        }
    }

    /// `_meta` for `session/new` (OpenClaw binds the ACP session to a gateway session key).
    pub fn new_session_meta(self, options: &JsonObject, sticky: &str) -> Option<Value> {
        match self {
            Dialect::OpenClaw => {
                let key = opt_str(options, "session_key")
                    .map(str::to_owned)
                    .unwrap_or_else(|| sticky.trim_start_matches("session:").to_owned());
                Some(json!({ "sessionKey": key }))
            }
            _ => None,
        }
    }

    /// Data of the "accepted" running event.
    pub fn accepted_data(self, options: &JsonObject, sticky: &str, session_id: &str) -> Value {
        match self.scope() {
            Some((key, default, _)) => {
                json!({ key: opt_str(options, key).unwrap_or(default), "session_id": session_id, "sticky_key": sticky })
            }
            None => json!({ "session_id": session_id, "sticky_key": sticky }),
        }
    }
}

/// The text sent as the prompt: `payload.text`, else `payload.prompt`, else the payload as JSON.
pub fn prompt_text(payload: &Value) -> String {
    for key in ["text", "prompt"] {
        if let Some(s) = payload.get(key).and_then(Value::as_str) {
            return s.to_owned();
        }
    }
    payload.to_string()
}

/// Picks the permission option a resume payload asks for: `option_id` (must be offered), or
/// `decision` (`allow`, `allow_always`, `reject`, `reject_always`) matched by option *kind*, since
/// option ids differ per agent. `options` are the agent's `PermissionOption`s as JSON.
pub fn choose_option(options: &[Value], payload: &JsonObject) -> Result<String, String> {
    let ids: Vec<&str> = options.iter().filter_map(|o| o.get("optionId").and_then(Value::as_str)).collect();
    if let Some(id) = payload.get("option_id") {
        let id = id.as_str().ok_or("option_id must be a string")?;
        return if ids.contains(&id) {
            Ok(id.to_owned())
        } else {
            Err(format!("option_id '{id}' is not offered; options: {}", ids.join(", ")))
        };
    }
    let decision = payload.get("decision").and_then(Value::as_str).ok_or_else(|| {
        format!(
            "resume needs \"option_id\" (one of: {}) or \"decision\" (allow, allow_always, reject, reject_always)",
            ids.join(", ")
        )
    })?;
    let preference: &[&str] = match decision {
        "allow" => &["allow_once", "allow_always"],
        "allow_always" => &["allow_always", "allow_once"],
        "reject" => &["reject_once", "reject_always"],
        "reject_always" => &["reject_always", "reject_once"],
        other => return Err(format!("decision '{other}' is not one of allow, allow_always, reject, reject_always")),
    };
    for kind in preference {
        if let Some(id) = options
            .iter()
            .find(|o| o.get("kind").and_then(Value::as_str) == Some(kind))
            .and_then(|o| o.get("optionId").and_then(Value::as_str))
        {
            return Ok(id.to_owned());
        }
    }
    Err(format!("the agent offered no option for decision '{decision}'; options: {}", ids.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LaunchSpec;

    fn spec(dialect: Option<&str>) -> TargetSpec {
        TargetSpec {
            dialect: dialect.map(str::to_owned),
            launch: LaunchSpec { command: vec!["agent".into()], ..LaunchSpec::default() },
            ..TargetSpec::new("t", "acp")
        }
    }

    fn obj(v: Value) -> JsonObject {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn dialects_resolve_and_key() {
        assert_eq!(Dialect::of(&spec(None)), Ok(Dialect::Acp));
        assert!(Dialect::of(&spec(Some("zed"))).is_err());
        let h = Dialect::Hermes;
        assert_eq!(h.subcontext(&obj(json!({"executor": "coder"}))), "executor:coder");
        assert_eq!(h.subcontext(&JsonObject::new()), "executor:aethrolink-agent");
        assert_eq!(Dialect::OpenClaw.subcontext(&obj(json!({"session_key": "design"}))), "session:design");
        assert_eq!(Dialect::Acp.subcontext(&obj(json!({"session_key": "x"}))), "default");
        let structured: Vec<bool> =
            [Dialect::Acp, Dialect::Hermes, Dialect::OpenClaw, Dialect::Goose].map(Dialect::structured_events).into();
        assert_eq!(structured, [false, false, true, false]);
        let mut s = spec(Some("hermes"));
        s.launch.commands.insert("coder".into(), vec!["hermes".into(), "-p".into(), "coder".into(), "acp".into()]);
        assert_eq!(h.command(&s, &obj(json!({"executor": "coder"}))).map(|c| c.len()), Ok(4));
        assert!(h.command(&s, &obj(json!({"executor": "nope"}))).is_err());
    }

    #[test]
    fn sticky_key_precedence() {
        let task = StickyInput { thread_id: Some("th"), conversation_id: Some("c"), task_id: "t" };
        assert_eq!(Dialect::Acp.sticky_key(&obj(json!({"session_key": "k"})), &task), "th");
        let task = StickyInput { thread_id: None, conversation_id: Some("c"), task_id: "t" };
        assert_eq!(Dialect::Acp.sticky_key(&obj(json!({"session_key": "k"})), &task), "session:k");
        assert_eq!(Dialect::Acp.sticky_key(&JsonObject::new(), &task), "conversation:c");
        assert_eq!(Dialect::OpenClaw.sticky_key(&JsonObject::new(), &task), "session:main");
        let task = StickyInput { thread_id: None, conversation_id: None, task_id: "t" };
        assert_eq!(Dialect::Goose.sticky_key(&JsonObject::new(), &task), "task:t");
        assert_eq!(
            Dialect::OpenClaw.new_session_meta(&JsonObject::new(), "session:main"),
            Some(json!({"sessionKey": "main"}))
        );
    }

    #[test]
    fn prompt_text_fallbacks() {
        assert_eq!(prompt_text(&json!({"text": "hi", "prompt": "p"})), "hi");
        assert_eq!(prompt_text(&json!({"prompt": "p"})), "p");
        assert_eq!(prompt_text(&json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn options_chosen_by_kind_or_id() {
        let options = vec![
            json!({"optionId": "allow-once", "name": "Allow", "kind": "allow_once"}),
            json!({"optionId": "deny", "name": "Deny", "kind": "reject_once"}),
        ];
        assert_eq!(choose_option(&options, &obj(json!({"decision": "allow"}))), Ok("allow-once".into()));
        assert_eq!(
            choose_option(&options, &obj(json!({"decision": "allow_always"}))),
            Ok("allow-once".into()),
            "falls back to the other allow kind"
        );
        assert_eq!(choose_option(&options, &obj(json!({"decision": "reject_always"}))), Ok("deny".into()));
        assert_eq!(choose_option(&options, &obj(json!({"option_id": "deny"}))), Ok("deny".into()));
        assert!(choose_option(&options, &obj(json!({"option_id": "nope"}))).is_err());
        assert!(choose_option(&options, &obj(json!({"decision": "maybe"}))).is_err());
        assert!(choose_option(&options, &JsonObject::new()).is_err());
        assert!(choose_option(&options[1..], &obj(json!({"decision": "allow"}))).is_err());
    }
}
