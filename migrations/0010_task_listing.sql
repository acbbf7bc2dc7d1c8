-- Task listing, priorities and paused targets (issue 16).
--
-- `priority` orders dispatch on a busy runtime scope (high before normal before low, creation
-- order within one): stored as its name, `normal` for every task created before this migration.
ALTER TABLE tasks ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal';

-- `GET /v1/tasks` lists newest-updated first and pages on (updated_at, task_id); each filter
-- that narrows a listing has an index that keeps that order, so a page reads only its rows.
CREATE INDEX idx_tasks_updated ON tasks(updated_at DESC, task_id DESC);
CREATE INDEX idx_tasks_status_updated ON tasks(status, updated_at DESC, task_id DESC);
CREATE INDEX idx_tasks_target_updated ON tasks(resolved_agent_id, updated_at DESC, task_id DESC);
CREATE INDEX idx_tasks_conversation_updated ON tasks(conversation_id, updated_at DESC, task_id DESC);
CREATE INDEX idx_tasks_thread_updated ON tasks(thread_id, updated_at DESC, task_id DESC);
CREATE INDEX idx_tasks_intent_updated ON tasks(intent, updated_at DESC, task_id DESC);
-- The Aether gateway's correlation id lives in the task's metadata.
CREATE INDEX idx_tasks_correlation
    ON tasks(json_extract(metadata_json, '$.correlation_id'), updated_at DESC, task_id DESC);

-- Targets whose dispatching an operator paused (`POST /v1/targets/{id}/pause`): tasks for them
-- are accepted and wait until `/resume` deletes the row. Survives restarts.
CREATE TABLE target_pauses (
    target_id TEXT PRIMARY KEY,
    paused_at TEXT NOT NULL,
    paused_by TEXT NOT NULL
);
