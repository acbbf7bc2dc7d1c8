//! Adapter kinds as data: which kinds exist, how each is spelled, and the catalog of kinds this
//! build runs, each with the check a target of that kind must pass. The catalog is filled in by
//! the runtime side (`runtime::adapter_catalog()`), which owns what each kind needs; discovery
//! (the registry, the config loader) only asks it. Pure; imports nothing above the model.
//!
//! Kinds that come later (a human principal, a peer node, A2A agents) get a variant here and an
//! entry in the runtime's catalog when their runtime exists. Until then a well-formed kind this
//! build does not run is [`AdapterError::NotRun`]: the registry file refuses it (a config error),
//! a registration is accepted with a warning (a peer may run it; tasks to it fail here with
//! `adapter missing`). A spelling that cannot be any kind is [`AdapterError::Malformed`].

use std::fmt;
use std::str::FromStr;

use crate::model::TargetSpec;

/// Which runtime runs a target's tasks (`TargetSpec.adapter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdapterKind {
    /// The in-process scripted runtime.
    Loopback,
    /// An Agent Client Protocol agent over the child's stdio (JSON-RPC).
    Acp,
    /// An Agent Communication Protocol HTTP server (REST runs + SSE, or the polling dialect).
    AcpHttp,
    /// Another AethroLink node (a peer's target): tasks are relayed over the node protocol.
    /// Not in the catalog of registrable kinds: peer targets come from peer sync only.
    Peer,
    /// An agent connected through the Aether gateway (`ag::{ws}::{impl}::{spec}`), or any
    /// worker of an implementation (`ag::{ws}::{impl}`): tasks become `TaskAssignment`s.
    /// Not registrable either: these targets are the gateway's sessions and agent registry.
    Aether,
}

impl AdapterKind {
    /// Every kind, in the order they are listed to users.
    pub const ALL: [AdapterKind; 5] =
        [AdapterKind::Loopback, AdapterKind::Acp, AdapterKind::AcpHttp, AdapterKind::Peer, AdapterKind::Aether];

    /// The spelling in registry files and registrations.
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Loopback => "loopback",
            AdapterKind::Acp => "acp",
            AdapterKind::AcpHttp => "acp_http",
            AdapterKind::Peer => "peer",
            AdapterKind::Aether => "aether",
        }
    }
}

impl fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A spelling that names no adapter kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("adapter '{0}' is not a known adapter kind")]
pub struct UnknownAdapter(pub String);

impl FromStr for AdapterKind {
    type Err = UnknownAdapter;

    fn from_str(s: &str) -> Result<Self, UnknownAdapter> {
        AdapterKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownAdapter(s.to_owned()))
    }
}

/// Why an adapter spelling names no kind this build runs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// A well-formed kind this build does not run (another node may).
    #[error("adapter '{adapter}' is not known; known adapters: {known}")]
    NotRun { adapter: String, known: String },
    /// Not an adapter kind name at all (a client mistake wherever it appears).
    #[error(
        "adapter '{0}' is not an adapter kind name (lower-case letters, digits and '_', starting with a letter, at most 64)"
    )]
    Malformed(String),
}

/// Whether `s` is spelled like an adapter kind (`acp`, `acp_http`, `mock_hermes`, …): the shape
/// every node's kinds share, so a kind another node runs is never mistaken for a typo. Pure.
pub fn is_kind_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The check a target of one kind must pass; the message names the field at fault.
pub type ValidateTarget = fn(&TargetSpec) -> Result<(), String>;

/// One kind this build runs, with its check.
#[derive(Clone, Copy, Debug)]
pub struct AdapterEntry {
    pub kind: AdapterKind,
    pub validate: ValidateTarget,
}

/// The kinds this build runs (a static table: cheap to copy and to ask).
#[derive(Clone, Copy, Debug)]
pub struct AdapterCatalog {
    entries: &'static [AdapterEntry],
}

impl AdapterCatalog {
    /// A catalog of these entries.
    pub const fn new(entries: &'static [AdapterEntry]) -> Self {
        AdapterCatalog { entries }
    }

    /// The entries, in listing order.
    pub fn entries(&self) -> &'static [AdapterEntry] {
        self.entries
    }

    /// The kind `adapter` names, if this build runs it; the error says whether it is a kind this
    /// build does not run (listing the kinds it runs) or no kind at all.
    pub fn kind(&self, adapter: &str) -> Result<AdapterKind, AdapterError> {
        if let Some(kind) = adapter.parse::<AdapterKind>().ok().filter(|k| self.entry(*k).is_some()) {
            return Ok(kind);
        }
        if !is_kind_name(adapter) {
            return Err(AdapterError::Malformed(adapter.to_owned()));
        }
        let known: Vec<&str> = self.entries.iter().map(|e| e.kind.as_str()).collect();
        Err(AdapterError::NotRun { adapter: adapter.to_owned(), known: known.join(", ") })
    }

    /// The entry of `kind`, if this build runs it.
    pub fn entry(&self, kind: AdapterKind) -> Option<&'static AdapterEntry> {
        self.entries.iter().find(|e| e.kind == kind)
    }

    /// Checks a target against its kind: known to this build, and what that kind needs.
    pub fn validate(&self, spec: &TargetSpec) -> Result<(), String> {
        let kind = self.kind(&spec.adapter).map_err(|e| e.to_string())?;
        match self.entry(kind) {
            Some(entry) => (entry.validate)(spec),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails(spec: &TargetSpec) -> Result<(), String> {
        Err(format!("{} is never valid", spec.target_id))
    }

    fn passes(_: &TargetSpec) -> Result<(), String> {
        Ok(())
    }

    static ENTRIES: [AdapterEntry; 2] = [
        AdapterEntry { kind: AdapterKind::Loopback, validate: passes },
        AdapterEntry { kind: AdapterKind::Acp, validate: fails },
    ];

    fn spec(adapter: &str) -> TargetSpec {
        TargetSpec::new("t", adapter)
    }

    #[test]
    fn spellings_round_trip() {
        for kind in AdapterKind::ALL {
            assert_eq!(kind.as_str().parse::<AdapterKind>(), Ok(kind));
        }
        assert_eq!("a2a".parse::<AdapterKind>(), Err(UnknownAdapter("a2a".into())));
        assert_eq!("ACP".parse::<AdapterKind>(), Err(UnknownAdapter("ACP".into())));
    }

    #[test]
    fn catalog_knows_only_its_entries_and_runs_their_checks() {
        let catalog = AdapterCatalog::new(&ENTRIES);
        let cases: [(&str, Result<(), &str>); 4] = [
            ("loopback", Ok(())),
            ("acp", Err("t is never valid")),
            ("acp_http", Err("adapter 'acp_http' is not known; known adapters: loopback, acp")),
            ("nope", Err("adapter 'nope' is not known; known adapters: loopback, acp")),
        ];
        for (adapter, want) in cases {
            assert_eq!(catalog.validate(&spec(adapter)), want.map_err(str::to_owned), "{adapter}");
        }
        assert_eq!(catalog.kind("acp"), Ok(AdapterKind::Acp));
    }

    #[test]
    fn unknown_kinds_are_told_apart_from_malformed_names() {
        let catalog = AdapterCatalog::new(&ENTRIES);
        let not_run = |a: &str| Err(AdapterError::NotRun { adapter: a.into(), known: "loopback, acp".into() });
        let cases: [(&str, Result<AdapterKind, AdapterError>); 9] = [
            ("loopback", Ok(AdapterKind::Loopback)),
            ("acp_http", not_run("acp_http")),
            ("a2a_future", not_run("a2a_future")),
            ("mock_acp_comm_http", not_run("mock_acp_comm_http")),
            ("warp-drive", Err(AdapterError::Malformed("warp-drive".into()))),
            ("ACP", Err(AdapterError::Malformed("ACP".into()))),
            ("2fast", Err(AdapterError::Malformed("2fast".into()))),
            ("a b", Err(AdapterError::Malformed("a b".into()))),
            ("", Err(AdapterError::Malformed("".into()))),
        ];
        for (adapter, want) in cases {
            assert_eq!(catalog.kind(adapter), want, "{adapter}");
        }
        assert!(!is_kind_name(&"a".repeat(65)));
    }
}
