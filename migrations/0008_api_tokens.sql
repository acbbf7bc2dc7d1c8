-- API tokens (issue "Safe to run"): one store for the HTTP API's bearer tokens and the Aether
-- gateway's API keys. Only the HMAC-SHA256 of a token's secret is kept (under a key derived from
-- the node's secret key, which is not in the database); `scopes_json` is a JSON array of scope
-- names. A revoked token keeps its row (listings show it), and is refused for good.
CREATE TABLE api_tokens (
    token_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scopes_json TEXT NOT NULL,
    secret_hmac TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
