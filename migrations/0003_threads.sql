-- Threads: multi-turn conversations between two agents. Each turn is a task; its status and
-- remote ids mirror the task's, written in the same transaction as the task's events.
CREATE TABLE threads (
    thread_id            TEXT PRIMARY KEY,
    agent_a_id           TEXT NOT NULL,
    agent_b_id           TEXT NOT NULL,
    status               TEXT NOT NULL,
    continuity_key       TEXT NOT NULL,
    last_task_id         TEXT,
    last_actor_agent_id  TEXT,
    last_target_agent_id TEXT,
    metadata_json        TEXT NOT NULL,
    -- Why the thread is interrupted (restart) or why auto-handoff stopped.
    interruption_reason  TEXT,
    -- Bounded auto-handoff plan and progress (JSON), NULL when none is running.
    handoff_json         TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE INDEX idx_threads_pair ON threads(agent_a_id, agent_b_id, status);

CREATE TABLE thread_turns (
    thread_id           TEXT NOT NULL REFERENCES threads(thread_id),
    turn_index          INTEGER NOT NULL,
    task_id             TEXT,
    sender_agent_id     TEXT NOT NULL,
    target_agent_id     TEXT NOT NULL,
    remote_session_id   TEXT,
    remote_execution_id TEXT,
    status              TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (thread_id, turn_index)
);
CREATE UNIQUE INDEX idx_thread_turns_task ON thread_turns(task_id);
