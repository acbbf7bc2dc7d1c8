-- The Aether gateway's durable per-identity message queue (docs/gateway.md, "Messages").
-- A message routed to an identity topic (ag::, tu::, us::, sv::impl::spec, br::, the workflow
-- engine, the metrics bridge) whose session is not live is appended here, and replayed in seq
-- order when a session for the identity opens; a row is deleted once handed to that session.
-- seq is AUTOINCREMENT: monotonic per node and never reused (also after deletes and restarts),
-- so seq order is publish order. created_at is unix ms; rows older than the retention (24 h)
-- are invisible to replay and swept. Written only by the storage actor.
CREATE TABLE aether_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    identity TEXT NOT NULL,
    source_topic TEXT NOT NULL,
    message_type INTEGER NOT NULL,
    workspace TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX aether_messages_identity ON aether_messages (identity, seq);
CREATE INDEX aether_messages_created ON aether_messages (created_at);
