-- Idempotency keys of task creation (issue "durable task semantics"): a key is claimed in the same
-- transaction as the task it created, per caller scope (an HTTP principal, or a relaying origin
-- node). `request_hash` (SHA-256 of the canonical request) tells a replay from a misuse; a claim
-- older than the retention window may be taken over by a new request.
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    task_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
