-- Retries and deadlines (issue 16).
--
-- `attempt` is the 1-based number of the current (or last) attempt, `max_attempts` how many the
-- task's retry policy allows (1: none). `next_retry_at` is set only while the task waits for a
-- scheduled retry; restart recovery re-arms the timer from it. The policy and the deadlines are
-- stored as the task resolved them (request over target defaults). `attempt_scheduled_at` and
-- `attempt_started_at` are the starts of `schedule_to_start_ms` and `start_to_close_ms`, so a
-- restart re-arms them with what is left. Tasks from before this migration have one attempt.
ALTER TABLE tasks ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tasks ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tasks ADD COLUMN next_retry_at TEXT;
ALTER TABLE tasks ADD COLUMN retry_policy_json TEXT;
ALTER TABLE tasks ADD COLUMN deadlines_json TEXT;
ALTER TABLE tasks ADD COLUMN attempt_scheduled_at TEXT;
ALTER TABLE tasks ADD COLUMN attempt_started_at TEXT;

-- `GET /v1/tasks?retrying=true`: only the few rows waiting for a retry are indexed.
CREATE INDEX idx_tasks_retrying ON tasks(updated_at DESC, task_id DESC) WHERE next_retry_at IS NOT NULL;
