-- AethroLink schema v1.
-- Timestamps: TEXT, RFC 3339 UTC with nine fractional digits (fixed width, so text order is time
-- order). JSON columns: TEXT holding a JSON object. Empty optional strings are NULL.

CREATE TABLE node_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE artifacts (
    artifact_id   TEXT PRIMARY KEY,
    media_type    TEXT NOT NULL,
    -- Exactly one of these holds the bytes: small artifacts live inline (durable in the same
    -- commit as the task), large ones in a file under the artifact directory.
    relative_path TEXT,
    content       BLOB,
    size_bytes    INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    CHECK ((relative_path IS NULL) <> (content IS NULL))
);

CREATE TABLE tasks (
    task_id              TEXT PRIMARY KEY,
    thread_id            TEXT,
    conversation_id      TEXT NOT NULL,
    sender               TEXT NOT NULL,
    intent               TEXT NOT NULL,
    requested_agent_id   TEXT,
    resolved_agent_id    TEXT,
    runtime_options_json TEXT NOT NULL,
    payload_artifact_id  TEXT REFERENCES artifacts(artifact_id),
    status               TEXT NOT NULL,
    remote_binding       TEXT,
    remote_execution_id  TEXT,
    remote_session_id    TEXT,
    last_error_json      TEXT,
    result_artifact_id   TEXT REFERENCES artifacts(artifact_id),
    delivery_json        TEXT NOT NULL,
    metadata_json        TEXT NOT NULL,
    -- Seq of the task's last event, written in the same transaction as that event.
    last_seq             INTEGER NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE INDEX idx_tasks_conversation ON tasks(conversation_id);
CREATE INDEX idx_tasks_status ON tasks(status);
CREATE INDEX idx_tasks_target_status ON tasks(resolved_agent_id, status);
CREATE INDEX idx_tasks_thread ON tasks(thread_id);
CREATE INDEX idx_tasks_sender ON tasks(sender);

CREATE TABLE task_events (
    event_id   TEXT PRIMARY KEY,
    task_id    TEXT NOT NULL REFERENCES tasks(task_id),
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    state      TEXT NOT NULL,
    source     TEXT NOT NULL,
    message    TEXT,
    data_json  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (task_id, seq)
);

CREATE TABLE agents (
    agent_id          TEXT PRIMARY KEY,
    display_name      TEXT NOT NULL,
    transport_kind    TEXT NOT NULL,
    endpoint          TEXT,
    adapter_kind      TEXT,
    dialect           TEXT,
    healthcheck       TEXT,
    launch_json       TEXT NOT NULL,
    defaults_json     TEXT NOT NULL,
    capabilities_json TEXT NOT NULL,
    sticky_mode       TEXT,
    metadata_json     TEXT NOT NULL,
    status            TEXT NOT NULL,
    registered_at     TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    last_seen_at      TEXT NOT NULL,
    lease_expires_at  TEXT NOT NULL
);
CREATE INDEX idx_agents_status_lease ON agents(status, lease_expires_at);

CREATE TABLE runtime_leases (
    lease_id       TEXT PRIMARY KEY,
    target_id      TEXT NOT NULL,
    subcontext_key TEXT,
    process_id     TEXT,
    process_group  INTEGER,
    metadata_json  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    released_at    TEXT
);
CREATE INDEX idx_runtime_leases_target ON runtime_leases(target_id, subcontext_key, released_at);

CREATE TABLE launch_history (
    launch_id      TEXT PRIMARY KEY,
    target_id      TEXT NOT NULL,
    subcontext_key TEXT,
    command_json   TEXT NOT NULL,
    pid            INTEGER,
    process_group  INTEGER,
    status         TEXT NOT NULL,
    exit_code      INTEGER,
    error_text     TEXT,
    started_at     TEXT NOT NULL,
    ended_at       TEXT
);
CREATE INDEX idx_launch_history_target ON launch_history(target_id, started_at);
