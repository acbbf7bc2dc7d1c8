-- ACP session bindings: which remote session a (target, subcontext, sticky key) uses, so a
-- restarted runtime can `session/load` it when the agent supports that.
CREATE TABLE session_bindings (
    target_id         TEXT NOT NULL,
    subcontext_key    TEXT NOT NULL,
    sticky_key        TEXT NOT NULL,
    adapter           TEXT NOT NULL,
    remote_session_id TEXT NOT NULL,
    metadata_json     TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    last_used_at      TEXT NOT NULL,
    last_activity_at  TEXT NOT NULL,
    PRIMARY KEY (target_id, subcontext_key, sticky_key)
);
CREATE INDEX idx_session_bindings_target ON session_bindings(target_id, subcontext_key);
