-- The Aether gateway's workspace records (docs/gateway.md, "Admin"): what an admin creates,
-- lists, updates and deletes through the SDK's AdminClient. Clients may connect to any workspace
-- name whether or not it has a record (as before); the record is its registry entry. metadata
-- is a JSON object of strings; times are unix ms. "default", the SDK's default workspace, is
-- there from the start. Written only by the storage actor.
CREATE TABLE aether_workspaces (
    workspace_id TEXT PRIMARY KEY NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

INSERT INTO aether_workspaces (workspace_id, display_name, description, tenant_id, metadata, created_at, updated_at)
VALUES ('default', 'Default', 'The SDK''s default workspace', '', '{}', 0, 0);
