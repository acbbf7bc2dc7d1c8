//! Access rules of the Aether gateway (`acl_op`) and the decision they make. Pure: the rules
//! are stored by the storage actor (`aether_acl_rules`), read by the service layer, and decided
//! here, so every decision can be explained by naming the rule that made it.
//!
//! A rule grants a principal (`principal_type` + `principal_id`, or `*` for any principal of the
//! type) an access level on a resource (`resource_type` + `resource_id`, or `*`). Deciding
//! `principal → resource` walks a specificity ladder and the first tier with a matching rule
//! decides (its highest level; a level-0 rule is an explicit deny that outranks wildcards):
//!
//! 1. this principal, this resource;
//! 2. any principal of the type (`*`), this resource;
//! 3. this principal, every resource of the type (`*`);
//! 4. any principal, every resource.
//!
//! With no matching rule: a resource no rule names (neither it nor `*` of its type) is open, as
//! the node was before rules existed; once a rule names it, what no rule allows is denied.

/// Access levels (upstream's numbers).
pub const NONE: i32 = 0;
pub const READ: i32 = 10;
pub const READWRITE: i32 = 20;
pub const MANAGE: i32 = 30;
pub const ADMIN: i32 = 40;
pub const SUPERADMIN: i32 = 50;

/// A level's name (`READ`, …); unknown numbers read as their value.
pub fn level_name(level: i32) -> String {
    match level {
        NONE => "NONE".into(),
        READ => "READ".into(),
        READWRITE => "READWRITE".into(),
        MANAGE => "MANAGE".into(),
        ADMIN => "ADMIN".into(),
        SUPERADMIN => "SUPERADMIN".into(),
        n => n.to_string(),
    }
}

/// The level the gateway requires to connect into (or switch to) a workspace.
pub const WORKSPACE_CONNECT_LEVEL: i32 = READWRITE;

pub use crate::model::acl_rule::Rule;

/// Who is asking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    pub principal_type: String,
    pub principal_id: String,
}

/// What is asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub resource_type: String,
    pub resource_id: String,
}

/// How a decision was made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Explanation {
    pub allowed: bool,
    pub effective_level: i32,
    /// The rule that decided (`None`: no rule matched).
    pub rule: Option<Rule>,
    /// No rule matched: the resource is open (no rule names it) or denied by default.
    pub fallback_applied: bool,
    /// One sentence naming the rule or the default.
    pub reason: String,
}

/// The principal an identity is to the rules: its type (`agent`, `task`, `user`, …) and id —
/// `impl::spec` for agents, tasks, services, bridges and orchestrators (the workspace is the
/// resource), the user id for users, the identity string for the rest. Pure.
pub fn principal_of(identity: &super::identity::Identity) -> Principal {
    use super::identity::PrincipalKind as K;
    let principal_type = match identity.kind {
        K::Agent => "agent",
        K::UniqueTask | K::PooledTask => "task",
        K::User => "user",
        K::Orchestrator => "orchestrator",
        K::WorkflowEngine => "workflow_engine",
        K::MetricsBridge => "metrics_bridge",
        K::Bridge => "bridge",
        K::Service => "service",
    };
    let principal_id = match (identity.kind, &identity.implementation, &identity.specifier) {
        (K::User, _, _) => identity.user_id().unwrap_or_default().to_owned(),
        (_, Some(implementation), Some(specifier)) => format!("{implementation}::{specifier}"),
        _ => identity.key.clone(),
    };
    Principal { principal_type: principal_type.into(), principal_id }
}

/// A workspace as a resource.
pub fn workspace(workspace_id: &str) -> Resource {
    Resource { resource_type: "workspace".into(), resource_id: workspace_id.into() }
}

/// Checks a grant's fields; the error names the field. Pure.
pub fn check_rule(rule: &Rule) -> Result<(), String> {
    for (name, value) in [
        ("principal_type", &rule.principal_type),
        ("principal_id", &rule.principal_id),
        ("resource_type", &rule.resource_type),
        ("resource_id", &rule.resource_id),
    ] {
        if value.trim().is_empty() {
            return Err(format!("{name}: required (use '*' for any)"));
        }
        if value.len() > 512 {
            return Err(format!("{name}: at most 512 bytes"));
        }
    }
    if !(NONE..=SUPERADMIN).contains(&rule.access_level) || rule.access_level % 10 != 0 {
        return Err(format!(
            "access_level: one of 0, 10, 20, 30, 40, 50 (NONE … SUPERADMIN), not {}",
            rule.access_level
        ));
    }
    if rule.reason.len() > 1024 {
        return Err("reason: at most 1024 bytes".into());
    }
    Ok(())
}

/// Decides whether `principal` has `required` on `resource` under `rules` at `now` (unix s).
pub fn decide(rules: &[Rule], principal: &Principal, resource: &Resource, required: i32, now: i64) -> Explanation {
    let live: Vec<&Rule> = rules
        .iter()
        .filter(|r| {
            r.live_at(now) && r.principal_type == principal.principal_type && r.resource_type == resource.resource_type
        })
        .collect();
    let tiers: [(bool, bool); 4] = [(true, true), (false, true), (true, false), (false, false)];
    for (exact_principal, exact_resource) in tiers {
        let matching = live.iter().filter(|r| {
            let p = if exact_principal { r.principal_id == principal.principal_id } else { r.principal_id == "*" };
            let q = if exact_resource { r.resource_id == resource.resource_id } else { r.resource_id == "*" };
            p && q
        });
        // A deny in the tier wins over its grants; else its highest grant decides.
        let decider =
            matching.clone().find(|r| r.access_level == NONE).or_else(|| matching.max_by_key(|r| r.access_level));
        if let Some(rule) = decider {
            let allowed = rule.access_level >= required && rule.access_level > NONE;
            let reason = format!(
                "rule {} grants {} {} on {} {}: {} (needs {})",
                rule.rule_id,
                rule.principal_type,
                rule.principal_id,
                rule.resource_type,
                rule.resource_id,
                level_name(rule.access_level),
                level_name(required)
            );
            return Explanation {
                allowed,
                effective_level: rule.access_level,
                rule: Some((*rule).clone()),
                fallback_applied: false,
                reason,
            };
        }
    }
    let named = rules.iter().any(|r| {
        r.live_at(now)
            && r.resource_type == resource.resource_type
            && (r.resource_id == resource.resource_id || r.resource_id == "*")
    });
    if named {
        Explanation {
            allowed: false,
            effective_level: NONE,
            rule: None,
            fallback_applied: true,
            reason: format!(
                "no rule grants {} {} access to {} {}, which has rules: denied by default",
                principal.principal_type, principal.principal_id, resource.resource_type, resource.resource_id
            ),
        }
    } else {
        Explanation {
            allowed: true,
            effective_level: SUPERADMIN,
            rule: None,
            fallback_applied: true,
            reason: format!("no rule names {} {}: open", resource.resource_type, resource.resource_id),
        }
    }
}

/// Which rules a listing shows (empty fields: any).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleFilter {
    pub principal_type: String,
    pub principal_id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub limit: u32,
    pub offset: u32,
}

impl RuleFilter {
    pub fn matches(&self, r: &Rule) -> bool {
        let eq = |want: &str, have: &str| want.is_empty() || want == have;
        eq(&self.principal_type, &r.principal_type)
            && eq(&self.principal_id, &r.principal_id)
            && eq(&self.resource_type, &r.resource_type)
            && eq(&self.resource_id, &r.resource_id)
    }

    /// All four named: the composite key of one rule (revoke by filter).
    pub fn is_key(&self) -> bool {
        [&self.principal_type, &self.principal_id, &self.resource_type, &self.resource_id].iter().all(|s| !s.is_empty())
    }
}

/// An `acl_op` (correlated first-in first-out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclOp {
    List(RuleFilter),
    Get {
        rule_id: String,
    },
    /// Grants (or re-grants: one rule per principal and resource) a level.
    Grant(Rule),
    /// Removes the rule `rule_id`.
    RevokeById {
        rule_id: String,
    },
    /// Removes the rule with this composite key.
    RevokeByKey(RuleFilter),
    Explain {
        principal: Principal,
        resource: Resource,
        required: i32,
    },
    /// Groups, roles, fallback policies, audit, cleanup: named for the answer.
    Unserved(String),
}

/// The answer to an `acl_op`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclReply {
    pub success: bool,
    pub error: String,
    pub message: String,
    pub rule: Option<Rule>,
    pub rules: Vec<Rule>,
    pub total_rules: u32,
    pub explanation: Option<(Principal, Explanation)>,
}

impl AclReply {
    pub fn refused(error: String) -> Self {
        AclReply { success: false, error, ..AclReply::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, principal: &str, resource: &str, level: i32) -> Rule {
        Rule {
            rule_id: id.into(),
            principal_type: "agent".into(),
            principal_id: principal.into(),
            resource_type: "workspace".into(),
            resource_id: resource.into(),
            access_level: level,
            ..Rule::default()
        }
    }

    fn agent(id: &str) -> Principal {
        Principal { principal_type: "agent".into(), principal_id: id.into() }
    }

    fn ws(id: &str) -> Resource {
        Resource { resource_type: "workspace".into(), resource_id: id.into() }
    }

    #[test]
    fn a_resource_no_rule_names_is_open_and_one_with_rules_denies_by_default() {
        let open = decide(&[], &agent("a"), &ws("w"), READWRITE, 0);
        assert!(open.allowed && open.fallback_applied && open.rule.is_none(), "{open:?}");
        let rules = [rule("r1", "b", "w", READWRITE)];
        let denied = decide(&rules, &agent("a"), &ws("w"), READWRITE, 0);
        assert!(!denied.allowed && denied.fallback_applied, "{denied:?}");
        assert!(denied.reason.contains("denied by default"), "{}", denied.reason);
        assert!(decide(&rules, &agent("a"), &ws("other"), READWRITE, 0).allowed, "another workspace stays open");
    }

    #[test]
    fn the_most_specific_rule_decides_and_is_named() {
        let rules = [
            rule("any-any", "*", "*", ADMIN),
            rule("any-w", "*", "w", READ),
            rule("a-w", "a", "w", READWRITE),
            rule("deny-b", "b", "w", NONE),
        ];
        let a = decide(&rules, &agent("a"), &ws("w"), READWRITE, 0);
        assert!(a.allowed && a.rule.as_ref().map(|r| r.rule_id.as_str()) == Some("a-w"), "{a:?}");
        assert!(a.reason.contains("a-w"), "{}", a.reason);
        let c = decide(&rules, &agent("c"), &ws("w"), READWRITE, 0);
        assert!(!c.allowed && c.effective_level == READ, "the wildcard on w outranks the wildcard on *: {c:?}");
        let b = decide(&rules, &agent("b"), &ws("w"), READ, 0);
        assert!(!b.allowed && b.rule.as_ref().map(|r| r.rule_id.as_str()) == Some("deny-b"), "{b:?}");
        let elsewhere = decide(&rules, &agent("c"), &ws("x"), ADMIN, 0);
        assert!(elsewhere.allowed && elsewhere.rule.as_ref().map(|r| r.rule_id.as_str()) == Some("any-any"));
    }

    #[test]
    fn expired_rules_do_not_count() {
        let rules = [Rule { expires_at: 100, ..rule("r", "a", "w", READWRITE) }];
        assert!(decide(&rules, &agent("a"), &ws("w"), READWRITE, 50).allowed);
        let later = decide(&rules, &agent("a"), &ws("w"), READWRITE, 150);
        assert!(later.allowed && later.fallback_applied, "expired: as if there were no rule: {later:?}");
    }

    #[test]
    fn grants_are_checked_naming_the_field() {
        assert_eq!(check_rule(&rule("r", "a", "w", READ)), Ok(()));
        assert!(check_rule(&rule("r", "", "w", READ)).err().unwrap_or_default().starts_with("principal_id"));
        assert!(check_rule(&rule("r", "a", "w", 15)).err().unwrap_or_default().starts_with("access_level"));
    }
}
