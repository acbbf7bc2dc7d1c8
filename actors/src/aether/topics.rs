//! Message topics of the Aether gateway, pure: which topics a send may name, who may send to
//! which, and where a message goes among the connected sessions.
//!
//! Identity topics of unique principals are durable ([`durable`]): a message to one that is not
//! connected is kept and replayed when it connects (`super::queue`). Broadcasts, the pooled-task
//! and service wildcards, and a pooled task's own identity (node-made, never seen again after its
//! session) reach live sessions only.

use super::identity::{Identity, PrincipalKind};

/// Largest message payload, in bytes.
pub const PAYLOAD_MAX: usize = 1024 * 1024;
/// Longest topic, in bytes.
pub const TOPIC_MAX: usize = 256;

/// Topic prefixes a send may name.
const PREFIXES: &[&str] =
    &["ag", "tu", "ta", "tb", "us", "uw", "uu", "ga", "gu", "pg", "tk", "event", "metric", "br", "sv"];

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The session holding this identity string.
    Identity(String),
    /// One live pooled task (`ta::ws::impl::`, empty id) of this workspace and implementation.
    AnyPooledTask { workspace: String, implementation: String },
    /// One live service of this implementation (`sv::impl`).
    AnyService { implementation: String },
    /// Every connected agent of a workspace (`ga::ws`).
    AgentsOf(String),
}

/// Why a send is refused (an uncorrelated `ErrorResponse` with this code).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("ERR_INVALID_TOPIC: {0}")]
    InvalidTopic(String),
    #[error("ERR_PERMISSION_DENIED: a {0} is not authorized to send to topic {1}")]
    Denied(&'static str, String),
    #[error("ERR_PAYLOAD_TOO_LARGE: the payload is {0} bytes; at most {PAYLOAD_MAX}")]
    TooLarge(usize),
    #[error("ERR_NOT_IMPLEMENTED: topics '{0}::…' are not served by this node")]
    Unserved(String),
}

impl SendError {
    /// The `ErrorResponse.code`.
    pub fn code(&self) -> &'static str {
        match self {
            SendError::InvalidTopic(_) => "ERR_INVALID_TOPIC",
            SendError::Denied(..) => "ERR_PERMISSION_DENIED",
            SendError::TooLarge(_) => "ERR_PAYLOAD_TOO_LARGE",
            SendError::Unserved(_) => "ERR_NOT_IMPLEMENTED",
        }
    }
}

/// Whether a `kind` principal may send to topics of `prefix` (upstream's sender matrix).
pub fn may_send(kind: PrincipalKind, prefix: &str) -> bool {
    match kind {
        PrincipalKind::User => !matches!(prefix, "event" | "metric" | "pg" | "uu"),
        PrincipalKind::Agent | PrincipalKind::UniqueTask | PrincipalKind::PooledTask => prefix != "uu",
        PrincipalKind::Orchestrator => matches!(prefix, "ag" | "tu" | "ta" | "tb"),
        PrincipalKind::MetricsBridge => false,
        PrincipalKind::WorkflowEngine | PrincipalKind::Service | PrincipalKind::Bridge => true,
    }
}

/// Checks a send from `sender` and says where it goes.
pub fn route(sender: &Identity, topic: &str, payload_len: usize) -> Result<Route, SendError> {
    if topic.is_empty() || topic.len() > TOPIC_MAX {
        return Err(SendError::InvalidTopic(format!("a topic is 1 to {TOPIC_MAX} bytes")));
    }
    let parts: Vec<&str> = topic.split("::").collect();
    let prefix = parts[0];
    if !PREFIXES.contains(&prefix) {
        return Err(SendError::InvalidTopic(format!("unknown topic prefix '{prefix}' in {topic}")));
    }
    if !may_send(sender.kind, prefix) {
        return Err(SendError::Denied(sender.kind.as_str(), topic.to_owned()));
    }
    if payload_len > PAYLOAD_MAX {
        return Err(SendError::TooLarge(payload_len));
    }
    let filled = |n: usize| parts.len() == n && parts[1..].iter().all(|p| !p.is_empty());
    let malformed = || SendError::InvalidTopic(format!("malformed topic {topic}"));
    match prefix {
        "ag" | "tu" => filled(4).then(|| Route::Identity(topic.to_owned())).ok_or_else(malformed),
        "ta" if parts.len() == 4 && !parts[1].is_empty() && !parts[2].is_empty() => {
            if parts[3].is_empty() {
                Ok(Route::AnyPooledTask { workspace: parts[1].to_owned(), implementation: parts[2].to_owned() })
            } else {
                Ok(Route::Identity(topic.to_owned()))
            }
        }
        "us" | "br" => filled(3).then(|| Route::Identity(topic.to_owned())).ok_or_else(malformed),
        "sv" if filled(3) => Ok(Route::Identity(topic.to_owned())),
        "sv" if filled(2) => Ok(Route::AnyService { implementation: parts[1].to_owned() }),
        "ga" => filled(2).then(|| Route::AgentsOf(parts[1].to_owned())).ok_or_else(malformed),
        "event" => Ok(Route::Identity("wfe::shard0".into())),
        "metric" => Ok(Route::Identity("metrics::shard0".into())),
        "ta" | "sv" => Err(malformed()),
        other => Err(SendError::Unserved(other.to_owned())),
    }
}

/// Whether messages to the identity string `key` (a [`Route::Identity`]) are kept while it is
/// not connected: agents, unique tasks, user windows, services, bridges, the workflow engine and
/// the metrics bridge. Not a pooled task's `ta::…::{id}` (it never reconnects as the same id).
pub fn durable(key: &str) -> bool {
    let prefix = key.split("::").next().unwrap_or("");
    matches!(prefix, "ag" | "tu" | "us" | "sv" | "br") || key == "wfe::shard0" || key == "metrics::shard0"
}

/// Whether a live session `candidate` is a destination of `route`.
pub fn matches(route: &Route, candidate: &Identity) -> bool {
    match route {
        Route::Identity(key) => &candidate.key == key,
        Route::AnyPooledTask { workspace, implementation } => {
            candidate.kind == PrincipalKind::PooledTask
                && candidate.workspace.as_deref() == Some(workspace)
                && candidate.implementation.as_deref() == Some(implementation)
        }
        Route::AnyService { implementation } => {
            candidate.kind == PrincipalKind::Service && candidate.implementation.as_deref() == Some(implementation)
        }
        Route::AgentsOf(ws) => candidate.kind == PrincipalKind::Agent && candidate.workspace.as_deref() == Some(ws),
    }
}

/// Whether `route` reaches every match (a broadcast) or one.
pub fn fans_out(route: &Route) -> bool {
    matches!(route, Route::AgentsOf(_))
}

#[cfg(test)]
mod tests {
    use super::super::identity::ClaimedPrincipal;
    use super::*;

    fn id(claim: ClaimedPrincipal) -> Identity {
        claim.resolve(|| "p1".into()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn agent(spec: &str) -> Identity {
        id(ClaimedPrincipal::Agent { workspace: "default".into(), implementation: "w".into(), specifier: spec.into() })
    }

    #[test]
    fn topics_route_to_identities_and_groups() {
        let a = agent("01");
        assert_eq!(route(&a, "ag::default::w::02", 5), Ok(Route::Identity("ag::default::w::02".into())));
        assert_eq!(route(&a, "ga::default", 5), Ok(Route::AgentsOf("default".into())));
        assert_eq!(
            route(&a, "ta::default::proc::", 1),
            Ok(Route::AnyPooledTask { workspace: "default".into(), implementation: "proc".into() })
        );
        assert_eq!(route(&a, "sv::search", 1), Ok(Route::AnyService { implementation: "search".into() }));
        assert_eq!(route(&a, "event::*", 1), Ok(Route::Identity("wfe::shard0".into())));
        assert!(matches!(route(&a, "ag::default::w", 1), Err(SendError::InvalidTopic(_))));
        assert!(matches!(route(&a, "orc::x::y", 1), Err(SendError::InvalidTopic(_))));
        assert!(matches!(route(&a, "", 1), Err(SendError::InvalidTopic(_))));
        assert!(matches!(route(&a, "tb::default::proc", 1), Err(SendError::Unserved(_))));
        assert_eq!(route(&a, "ag::default::w::02", PAYLOAD_MAX + 1), Err(SendError::TooLarge(PAYLOAD_MAX + 1)));
    }

    #[test]
    fn the_sender_matrix() {
        let user = id(ClaimedPrincipal::User { user_id: "u".into(), window_id: "w".into() });
        assert!(matches!(route(&user, "event::*", 1), Err(SendError::Denied("user", _))));
        assert!(route(&user, "ag::default::w::01", 1).is_ok());
        assert!(matches!(route(&agent("a"), "uu::u", 1), Err(SendError::Denied(..))));
        let orc = id(ClaimedPrincipal::Orchestrator { implementation: "o".into(), specifier: "s".into() });
        assert!(route(&orc, "ag::default::w::01", 1).is_ok());
        assert!(matches!(route(&orc, "us::u::w", 1), Err(SendError::Denied(..))));
        assert!(!may_send(PrincipalKind::MetricsBridge, "ag"));
        assert!(may_send(PrincipalKind::WorkflowEngine, "uu"));
        assert_eq!(SendError::TooLarge(9).code(), "ERR_PAYLOAD_TOO_LARGE");
    }

    #[test]
    fn routes_match_live_sessions() {
        let pooled = id(ClaimedPrincipal::Task {
            workspace: "default".into(),
            implementation: "proc".into(),
            unique_specifier: String::new(),
        });
        let any = Route::AnyPooledTask { workspace: "default".into(), implementation: "proc".into() };
        assert!(matches(&any, &pooled));
        assert!(!matches(&any, &agent("a")));
        assert!(matches(&Route::AgentsOf("default".into()), &agent("a")));
        assert!(!matches(&Route::AgentsOf("other".into()), &agent("a")));
        assert!(matches(&Route::Identity("ag::default::w::a".into()), &agent("a")));
        assert!(fans_out(&Route::AgentsOf("x".into())) && !fans_out(&any));
    }

    #[test]
    fn identity_topics_of_unique_principals_are_durable() {
        let a = agent("01");
        for topic in
            ["ag::default::w::02", "tu::default::w::x", "us::u::w", "sv::s::1", "br::b::1", "event::*", "metric::*"]
        {
            let Ok(Route::Identity(key)) = route(&a, topic, 1) else { panic!("{topic} is an identity route") };
            assert!(durable(&key), "{topic}");
        }
        let Ok(Route::Identity(pooled)) = route(&a, "ta::default::w::abc", 1) else { panic!("ta identity") };
        assert!(!durable(&pooled), "a pooled task's node-made id is live only");
    }
}
