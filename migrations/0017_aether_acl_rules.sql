-- The Aether gateway's access rules (docs/gateway.md, "Admin"; decided by actors/src/aether/acl.rs):
-- one rule per principal and resource (a re-grant changes its level), '*' for any principal of a
-- type or every resource of a type. access_level is upstream's 0/10/20/30/40/50 (0: an explicit
-- deny). Times are unix seconds; expires_at 0: never. Written only by the storage actor.
CREATE TABLE aether_acl_rules (
    rule_id TEXT PRIMARY KEY NOT NULL,
    principal_type TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    access_level INTEGER NOT NULL,
    granted_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    UNIQUE (principal_type, principal_id, resource_type, resource_id)
);
