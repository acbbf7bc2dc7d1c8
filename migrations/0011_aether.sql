-- The Aether gateway's KV store and checkpoints (docs/gateway.md).
-- KV: one row per (namespace, key); the namespace encodes the scope (`kv:global`, `kv:ws:{ws}`,
-- `kv:agent:{impl}|{spec}:…`, `kv:user:{uid}…`). Expired rows are invisible to reads and
-- replaced by writes. Times are unix milliseconds; NULL expires_at = never.
CREATE TABLE aether_kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
);

-- Checkpoints: one row per (identity string, key); saved_at in unix seconds (as the SDK reads it).
CREATE TABLE aether_checkpoints (
    identity TEXT NOT NULL,
    key TEXT NOT NULL,
    data BLOB NOT NULL,
    saved_at INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (identity, key)
);
