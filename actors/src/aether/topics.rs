//! Message topics of the Aether gateway, pure: which topics a send may name, who may send to
//! which, and where a message goes among the connected sessions.
//!
//! Identity topics of unique principals are durable ([`durable`]): a message to one that is not
//! connected is kept and replayed when it connects (`super::queue`). Broadcasts, the pooled-task
//! and service wildcards, and a pooled task's own identity (node-made, never seen again after its
//! session) reach live sessions only.
//!
//! Group lanes (`ga::`, `tb::`, `gu::`, `uw::`, `uu::`, `pg::`) have tail semantics: they reach the
//! sessions live when the message is routed, never a later one (upstream replays some of them
//! on every connect; we do not copy that).

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
    /// Every connected user window whose current workspace is this one (`gu::ws`).
    UsersOf(String),
    /// Every window of a user (`uu::user`, `pg::us::user`), or only those whose current
    /// workspace is `workspace` (`uw::user::ws`).
    UserWindows { user: String, workspace: Option<String> },
    /// The progress lane of a workspace (`pg::ws`): its agents and the users working in it.
    ProgressOf(String),
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
    #[error("ERR_NOT_IMPLEMENTED: topics '{0}::…' are not served by this node yet (task topics come with tasks)")]
    Unserved(String),
    #[error("{}: {}", .0.as_str(), .1)]
    Metric(MetricProblem, String),
}

/// Most entries in one METRIC message.
pub const METRIC_ENTRIES_MAX: usize = 1024;
/// Most metadata keys in one METRIC message.
pub const METRIC_METADATA_MAX: usize = 64;

/// What a METRIC payload holds, as the binding decoded it from its `Metric` proto.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricShape {
    /// Each entry's name and quantity.
    pub entries: Vec<(String, f64)>,
    pub metadata_keys: usize,
}

/// Why a METRIC payload is refused (upstream's codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricProblem {
    /// Not a `Metric`, or too many entries or metadata keys.
    Invalid,
    Empty,
    /// An entry without a name, or with a quantity that is not a finite number.
    InvalidEntry,
    /// A negative quantity (a credit) needs a capability no principal has on this node yet.
    NegativeForbidden,
}

impl MetricProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricProblem::Invalid => "ERR_METRIC_INVALID",
            MetricProblem::Empty => "ERR_METRIC_EMPTY",
            MetricProblem::InvalidEntry => "ERR_METRIC_INVALID_ENTRY",
            MetricProblem::NegativeForbidden => "ERR_METRIC_NEGATIVE_FORBIDDEN",
        }
    }
}

/// Checks a METRIC message's payload (`Err(why)`: it does not decode as a `Metric`).
pub fn check_metric(shape: Result<&MetricShape, &str>) -> Result<(), SendError> {
    let refuse = |problem, why: String| Err(SendError::Metric(problem, why));
    let shape = match shape {
        Ok(shape) => shape,
        Err(why) => return refuse(MetricProblem::Invalid, format!("the payload is not a Metric: {why}")),
    };
    if shape.entries.is_empty() {
        return refuse(MetricProblem::Empty, "a metric needs at least one entry".into());
    }
    if shape.entries.len() > METRIC_ENTRIES_MAX {
        let n = shape.entries.len();
        return refuse(MetricProblem::Invalid, format!("{n} entries; at most {METRIC_ENTRIES_MAX}"));
    }
    if shape.metadata_keys > METRIC_METADATA_MAX {
        let n = shape.metadata_keys;
        return refuse(MetricProblem::Invalid, format!("{n} metadata keys; at most {METRIC_METADATA_MAX}"));
    }
    for (i, (name, qty)) in shape.entries.iter().enumerate() {
        if name.is_empty() {
            return refuse(MetricProblem::InvalidEntry, format!("entry {i} has no name"));
        }
        if !qty.is_finite() {
            return refuse(
                MetricProblem::InvalidEntry,
                format!("entry {i} ({name}) has a quantity that is not finite"),
            );
        }
        if *qty < 0.0 {
            return refuse(
                MetricProblem::NegativeForbidden,
                format!("entry {i} ({name}) is negative; credits need the metric_credit capability"),
            );
        }
    }
    Ok(())
}

impl SendError {
    /// The `ErrorResponse.code`.
    pub fn code(&self) -> &'static str {
        match self {
            SendError::InvalidTopic(_) => "ERR_INVALID_TOPIC",
            SendError::Denied(..) => "ERR_PERMISSION_DENIED",
            SendError::TooLarge(_) => "ERR_PAYLOAD_TOO_LARGE",
            SendError::Unserved(_) => "ERR_NOT_IMPLEMENTED",
            SendError::Metric(problem, _) => problem.as_str(),
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
        // `tb::ws::impl` is the pooled tasks' group: one live member gets it, like the empty-id form.
        "tb" => filled(3)
            .then(|| Route::AnyPooledTask { workspace: parts[1].to_owned(), implementation: parts[2].to_owned() })
            .ok_or_else(malformed),
        "gu" => filled(2).then(|| Route::UsersOf(parts[1].to_owned())).ok_or_else(malformed),
        "uu" => {
            filled(2).then(|| Route::UserWindows { user: parts[1].to_owned(), workspace: None }).ok_or_else(malformed)
        }
        "uw" => filled(3)
            .then(|| Route::UserWindows { user: parts[1].to_owned(), workspace: Some(parts[2].to_owned()) })
            .ok_or_else(malformed),
        "pg" if parts.len() == 3 && parts[1] == "us" && !parts[2].is_empty() => {
            Ok(Route::UserWindows { user: parts[2].to_owned(), workspace: None })
        }
        "pg" => filled(2).then(|| Route::ProgressOf(parts[1].to_owned())).ok_or_else(malformed),
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
        Route::UsersOf(ws) => candidate.kind == PrincipalKind::User && candidate.workspace.as_deref() == Some(ws),
        Route::UserWindows { user, workspace } => {
            candidate.user_id() == Some(user.as_str())
                && workspace.as_ref().is_none_or(|ws| candidate.workspace.as_ref() == Some(ws))
        }
        Route::ProgressOf(ws) => {
            matches!(candidate.kind, PrincipalKind::Agent | PrincipalKind::User)
                && candidate.workspace.as_deref() == Some(ws)
        }
    }
}

/// Whether `route` reaches every match (a broadcast) or one.
pub fn fans_out(route: &Route) -> bool {
    matches!(route, Route::AgentsOf(_) | Route::UsersOf(_) | Route::UserWindows { .. } | Route::ProgressOf(_))
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
        assert_eq!(
            route(&a, "tb::default::proc", 1),
            Ok(Route::AnyPooledTask { workspace: "default".into(), implementation: "proc".into() })
        );
        assert!(matches!(route(&a, "tk::default::t1::msg", 1), Err(SendError::Unserved(_))));
        assert_eq!(route(&a, "gu::default", 1), Ok(Route::UsersOf("default".into())));
        assert_eq!(
            route(&a, "uw::ann::default", 1),
            Ok(Route::UserWindows { user: "ann".into(), workspace: Some("default".into()) })
        );
        assert_eq!(route(&a, "pg::us::ann", 1), Ok(Route::UserWindows { user: "ann".into(), workspace: None }));
        assert_eq!(route(&a, "pg::default", 1), Ok(Route::ProgressOf("default".into())));
        assert!(matches!(route(&a, "uw::ann", 1), Err(SendError::InvalidTopic(_))));
        assert!(matches!(route(&a, "gu::", 1), Err(SendError::InvalidTopic(_))));
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
    fn metric_payloads_are_checked() {
        let shape = |entries: &[(&str, f64)], metadata_keys| MetricShape {
            entries: entries.iter().map(|(n, q)| ((*n).to_owned(), *q)).collect(),
            metadata_keys,
        };
        let code = |r: Result<(), SendError>| r.err().map(|e| e.code());
        assert_eq!(code(check_metric(Ok(&shape(&[("tokens", 3.0)], 2)))), None);
        assert_eq!(code(check_metric(Ok(&shape(&[("tokens", 0.0)], 0)))), None);
        assert_eq!(code(check_metric(Err("truncated"))), Some("ERR_METRIC_INVALID"));
        assert_eq!(code(check_metric(Ok(&shape(&[], 0)))), Some("ERR_METRIC_EMPTY"));
        assert_eq!(code(check_metric(Ok(&shape(&[("", 1.0)], 0)))), Some("ERR_METRIC_INVALID_ENTRY"));
        assert_eq!(code(check_metric(Ok(&shape(&[("x", f64::NAN)], 0)))), Some("ERR_METRIC_INVALID_ENTRY"));
        assert_eq!(code(check_metric(Ok(&shape(&[("x", f64::INFINITY)], 0)))), Some("ERR_METRIC_INVALID_ENTRY"));
        assert_eq!(code(check_metric(Ok(&shape(&[("x", -1.0)], 0)))), Some("ERR_METRIC_NEGATIVE_FORBIDDEN"));
        assert_eq!(code(check_metric(Ok(&shape(&[("x", 1.0)], 65)))), Some("ERR_METRIC_INVALID"));
        let many = vec![("x", 1.0); METRIC_ENTRIES_MAX + 1];
        assert_eq!(code(check_metric(Ok(&shape(&many, 0)))), Some("ERR_METRIC_INVALID"));
        let Err(e) = check_metric(Ok(&shape(&[("a", 1.0), ("", 1.0)], 0))) else { panic!("accepted") };
        assert!(e.to_string().starts_with("ERR_METRIC_INVALID_ENTRY: entry 1"), "{e}");
    }

    #[test]
    fn user_lanes_follow_the_current_workspace() {
        let mut ann = id(ClaimedPrincipal::User { user_id: "ann".into(), window_id: "w1".into() });
        let all = Route::UserWindows { user: "ann".into(), workspace: None };
        let in_default = Route::UserWindows { user: "ann".into(), workspace: Some("default".into()) };
        // No workspace until switch_workspace: only the user's own lanes reach her.
        assert!(matches(&all, &ann));
        assert!(!matches(&in_default, &ann));
        assert!(!matches(&Route::UsersOf("default".into()), &ann));
        ann.workspace = Some("default".into());
        assert!(matches(&in_default, &ann));
        assert!(matches(&Route::UsersOf("default".into()), &ann));
        assert!(matches(&Route::ProgressOf("default".into()), &ann));
        assert!(matches(&Route::ProgressOf("default".into()), &agent("a")));
        assert!(!matches(&Route::UsersOf("default".into()), &agent("a")));
        assert!(!matches(&Route::UserWindows { user: "bob".into(), workspace: None }, &ann));
        assert!(fans_out(&all) && fans_out(&Route::UsersOf("x".into())));
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
