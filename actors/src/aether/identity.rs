//! Aether principals: who a gateway client claims to be (from its `InitConnection`), checked,
//! and the identity string that is its presence lock key (`ag::{ws}::{impl}::{spec}`, …).
//! Pure: no IO, unit-tested.
//!
//! Identifier rules follow upstream's deny-list (not an allow-list): 1–128 bytes, no `::`, `*`,
//! `>`, space, control characters or DEL; `@`, `.`, `/` are fine.

use std::fmt;

/// Longest identifier component, in bytes.
pub const IDENTIFIER_MAX: usize = 128;

/// The principal a client claims in `InitConnection.client_type`, fields as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimedPrincipal {
    Agent {
        workspace: String,
        implementation: String,
        specifier: String,
    },
    /// `unique_specifier` empty: a pooled task (the server gives it an id).
    Task {
        workspace: String,
        implementation: String,
        unique_specifier: String,
    },
    User {
        user_id: String,
        window_id: String,
    },
    /// `specifier` empty: the server makes one.
    Orchestrator {
        implementation: String,
        specifier: String,
    },
    WorkflowEngine,
    MetricsBridge,
    Bridge {
        implementation: String,
        specifier: String,
    },
    Service {
        implementation: String,
        specifier: String,
        consumes_pool_tasks: bool,
    },
}

/// The kind of a principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    Agent,
    UniqueTask,
    PooledTask,
    User,
    Orchestrator,
    WorkflowEngine,
    MetricsBridge,
    Bridge,
    Service,
}

impl PrincipalKind {
    /// The wire name (logs, errors).
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Agent => "agent",
            PrincipalKind::UniqueTask => "task",
            PrincipalKind::PooledTask => "pooled task",
            PrincipalKind::User => "user",
            PrincipalKind::Orchestrator => "orchestrator",
            PrincipalKind::WorkflowEngine => "workflow engine",
            PrincipalKind::MetricsBridge => "metrics bridge",
            PrincipalKind::Bridge => "bridge",
            PrincipalKind::Service => "service",
        }
    }

    /// Agents and tasks get a `ConfigSnapshot` right after the ack (upstream's baseline config).
    pub fn receives_config(self) -> bool {
        matches!(self, PrincipalKind::Agent | PrincipalKind::UniqueTask | PrincipalKind::PooledTask)
    }
}

/// A checked principal: its kind, its identity string (the presence lock key and home topic)
/// and its workspace, when it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub kind: PrincipalKind,
    /// `ag::ws::impl::spec`, `tu::…`, `ta::ws::impl::{id}`, `us::user::window`, `orc::impl::spec`,
    /// `wfe::shard0`, `metrics::shard0`, `br::impl::spec`, `sv::impl::spec`.
    pub key: String,
    /// The workspace of agents and tasks; a user's current one, set by `switch_workspace`
    /// (none until then); the others have none.
    pub workspace: Option<String>,
    /// Implementation and specifier of agents, tasks, orchestrators, bridges and services (a
    /// pooled task's specifier is its server-made id).
    pub implementation: Option<String>,
    pub specifier: Option<String>,
}

impl Identity {
    /// A user's id (`us::{user}::{window}`); `None` for other principals.
    pub fn user_id(&self) -> Option<&str> {
        if self.kind != PrincipalKind::User {
            return None;
        }
        self.key.strip_prefix("us::").and_then(|rest| rest.split("::").next())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

/// Why a claimed principal is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct IdentityError {
    /// The `InitConnection` field at fault (`agent.workspace`, …).
    pub field: &'static str,
    pub problem: IdentifierProblem,
}

/// What is wrong with an identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierProblem {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {IDENTIFIER_MAX} bytes")]
    TooLong,
    #[error("must not contain '::'")]
    Separator,
    #[error("must not contain '*' or '>'")]
    Wildcard,
    #[error("must not contain spaces or control characters")]
    Whitespace,
}

/// Checks one identifier component against the deny-list.
pub fn check_identifier(value: &str) -> Result<(), IdentifierProblem> {
    if value.is_empty() {
        return Err(IdentifierProblem::Empty);
    }
    if value.len() > IDENTIFIER_MAX {
        return Err(IdentifierProblem::TooLong);
    }
    if value.contains("::") {
        return Err(IdentifierProblem::Separator);
    }
    if value.contains(['*', '>']) {
        return Err(IdentifierProblem::Wildcard);
    }
    if value.chars().any(|c| c == ' ' || c.is_control()) {
        return Err(IdentifierProblem::Whitespace);
    }
    Ok(())
}

fn field(name: &'static str, value: &str) -> Result<String, IdentityError> {
    check_identifier(value).map_err(|problem| IdentityError { field: name, problem })?;
    Ok(value.to_owned())
}

impl ClaimedPrincipal {
    /// Checks the claim and makes its identity. `fresh_id` gives the server-made part where
    /// the claim leaves it to the server (a pooled task's id, an orchestrator's specifier).
    pub fn resolve(&self, fresh_id: impl FnOnce() -> String) -> Result<Identity, IdentityError> {
        let identity = |kind, key: String, workspace: Option<String>, implementation, specifier| Identity {
            kind,
            key,
            workspace,
            implementation,
            specifier,
        };
        Ok(match self {
            ClaimedPrincipal::Agent { workspace, implementation, specifier } => {
                let (ws, imp, spec) = (
                    field("agent.workspace", workspace)?,
                    field("agent.implementation", implementation)?,
                    field("agent.specifier", specifier)?,
                );
                identity(PrincipalKind::Agent, format!("ag::{ws}::{imp}::{spec}"), Some(ws), Some(imp), Some(spec))
            }
            ClaimedPrincipal::Task { workspace, implementation, unique_specifier } => {
                let (ws, imp) = (field("task.workspace", workspace)?, field("task.implementation", implementation)?);
                if unique_specifier.is_empty() {
                    let id = fresh_id();
                    identity(PrincipalKind::PooledTask, format!("ta::{ws}::{imp}::{id}"), Some(ws), Some(imp), Some(id))
                } else {
                    let spec = field("task.unique_specifier", unique_specifier)?;
                    identity(
                        PrincipalKind::UniqueTask,
                        format!("tu::{ws}::{imp}::{spec}"),
                        Some(ws),
                        Some(imp),
                        Some(spec),
                    )
                }
            }
            ClaimedPrincipal::User { user_id, window_id } => {
                let (user, window) = (field("user.user_id", user_id)?, field("user.window_id", window_id)?);
                identity(PrincipalKind::User, format!("us::{user}::{window}"), None, None, None)
            }
            ClaimedPrincipal::Orchestrator { implementation, specifier } => {
                let imp = field("orchestrator.implementation", implementation)?;
                let spec = if specifier.is_empty() { fresh_id() } else { field("orchestrator.specifier", specifier)? };
                identity(PrincipalKind::Orchestrator, format!("orc::{imp}::{spec}"), None, Some(imp), Some(spec))
            }
            // Singletons: a second live one is refused like any duplicate identity.
            ClaimedPrincipal::WorkflowEngine => {
                identity(PrincipalKind::WorkflowEngine, "wfe::shard0".into(), None, None, None)
            }
            ClaimedPrincipal::MetricsBridge => {
                identity(PrincipalKind::MetricsBridge, "metrics::shard0".into(), None, None, None)
            }
            ClaimedPrincipal::Bridge { implementation, specifier } => {
                let (imp, spec) =
                    (field("bridge.implementation", implementation)?, field("bridge.specifier", specifier)?);
                identity(PrincipalKind::Bridge, format!("br::{imp}::{spec}"), None, Some(imp), Some(spec))
            }
            ClaimedPrincipal::Service { implementation, specifier, .. } => {
                let (imp, spec) =
                    (field("service.implementation", implementation)?, field("service.specifier", specifier)?);
                identity(PrincipalKind::Service, format!("sv::{imp}::{spec}"), None, Some(imp), Some(spec))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(ws: &str, imp: &str, spec: &str) -> ClaimedPrincipal {
        ClaimedPrincipal::Agent { workspace: ws.into(), implementation: imp.into(), specifier: spec.into() }
    }

    fn never() -> String {
        unreachable_id()
    }

    fn unreachable_id() -> String {
        "NOT-EXPECTED".into()
    }

    #[test]
    fn each_principal_has_its_identity_string() {
        let id = agent("default", "my-agent", "01").resolve(never).map(|i| (i.kind, i.key));
        assert_eq!(id, Ok((PrincipalKind::Agent, "ag::default::my-agent::01".to_owned())));
        let pooled = ClaimedPrincipal::Task {
            workspace: "default".into(),
            implementation: "processor".into(),
            unique_specifier: String::new(),
        };
        let id = pooled.resolve(|| "u1".into());
        assert_eq!(
            id.as_ref().map(|i| (i.kind, i.key.as_str())),
            Ok((PrincipalKind::PooledTask, "ta::default::processor::u1"))
        );
        let unique =
            ClaimedPrincipal::Task { workspace: "w".into(), implementation: "p".into(), unique_specifier: "x".into() };
        assert_eq!(unique.resolve(never).map(|i| i.key), Ok("tu::w::p::x".to_owned()));
        let user = ClaimedPrincipal::User { user_id: "alice@example.com".into(), window_id: "w1".into() };
        assert_eq!(
            user.resolve(never).map(|i| (i.key, i.workspace)),
            Ok(("us::alice@example.com::w1".to_owned(), None))
        );
        let orc = ClaimedPrincipal::Orchestrator { implementation: "local".into(), specifier: String::new() };
        assert_eq!(orc.resolve(|| "ab12cd34".into()).map(|i| i.key), Ok("orc::local::ab12cd34".to_owned()));
        assert_eq!(ClaimedPrincipal::WorkflowEngine.resolve(never).map(|i| i.key), Ok("wfe::shard0".to_owned()));
        assert_eq!(ClaimedPrincipal::MetricsBridge.resolve(never).map(|i| i.key), Ok("metrics::shard0".to_owned()));
        let sv = ClaimedPrincipal::Service {
            implementation: "search".into(),
            specifier: "a".into(),
            consumes_pool_tasks: true,
        };
        assert_eq!(
            sv.resolve(never).map(|i| (i.kind, i.key, i.workspace)),
            Ok((PrincipalKind::Service, "sv::search::a".to_owned(), None))
        );
    }

    #[test]
    fn identifiers_follow_the_deny_list() {
        assert_eq!(check_identifier("a.b/c@d-e_f"), Ok(()));
        assert_eq!(check_identifier(""), Err(IdentifierProblem::Empty));
        assert_eq!(check_identifier(&"x".repeat(129)), Err(IdentifierProblem::TooLong));
        assert_eq!(check_identifier(&"x".repeat(128)), Ok(()));
        assert_eq!(check_identifier("a::b"), Err(IdentifierProblem::Separator));
        assert_eq!(check_identifier("a:b"), Ok(()));
        assert_eq!(check_identifier("a*"), Err(IdentifierProblem::Wildcard));
        assert_eq!(check_identifier("a>b"), Err(IdentifierProblem::Wildcard));
        assert_eq!(check_identifier("a b"), Err(IdentifierProblem::Whitespace));
        assert_eq!(check_identifier("a\u{7f}"), Err(IdentifierProblem::Whitespace));
        assert_eq!(check_identifier("a\tb"), Err(IdentifierProblem::Whitespace));
    }

    #[test]
    fn a_bad_claim_names_its_field() {
        let err = agent("default", "", "01").resolve(never).err();
        assert_eq!(err, Some(IdentityError { field: "agent.implementation", problem: IdentifierProblem::Empty }));
        assert_eq!(err.map(|e| e.to_string()).as_deref(), Some("agent.implementation: must not be empty"));
        let err = agent("a::b", "x", "y").resolve(never).err().map(|e| e.field);
        assert_eq!(err, Some("agent.workspace"));
        let user = ClaimedPrincipal::User { user_id: "u".into(), window_id: String::new() };
        assert_eq!(user.resolve(never).err().map(|e| e.field), Some("user.window_id"));
    }

    #[test]
    fn only_agents_and_tasks_get_the_config_snapshot() {
        assert!(PrincipalKind::Agent.receives_config());
        assert!(PrincipalKind::PooledTask.receives_config());
        assert!(PrincipalKind::UniqueTask.receives_config());
        assert!(!PrincipalKind::User.receives_config());
        assert!(!PrincipalKind::Service.receives_config());
        assert!(!PrincipalKind::Orchestrator.receives_config());
    }
}
