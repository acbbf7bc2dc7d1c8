//! An Aether access rule as stored and decided (`aether::acl` decides; the storage actor keeps
//! them in `aether_acl_rules`). Here, below both, so that storage does not depend on the
//! gateway's core.

/// A rule as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub rule_id: String,
    pub principal_type: String,
    /// The principal's id (`impl::spec` for an agent, task, service, bridge or orchestrator;
    /// the user id for a user; see `aether::acl::principal_of`), or `*`.
    pub principal_id: String,
    pub resource_type: String,
    /// The resource's id (a workspace id, …), or `*`.
    pub resource_id: String,
    pub access_level: i32,
    pub granted_by: String,
    pub reason: String,
    /// Unix seconds.
    pub granted_at: i64,
    /// Unix seconds; 0: it does not expire.
    pub expires_at: i64,
}

impl Rule {
    /// Whether it still counts at `now` (unix s).
    pub fn live_at(&self, now: i64) -> bool {
        self.expires_at == 0 || self.expires_at > now
    }
}
