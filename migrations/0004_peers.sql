-- Static peers and the targets each exported at its last successful sync (contract §9.3).
CREATE TABLE peers (
    peer_id           TEXT PRIMARY KEY,
    display_name      TEXT NOT NULL,
    base_url          TEXT NOT NULL,
    status            TEXT NOT NULL,
    capabilities_json TEXT NOT NULL,
    metadata_json     TEXT NOT NULL,
    -- Why the last sync failed; NULL after a successful one.
    last_error        TEXT,
    registered_at     TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    last_seen_at      TEXT NOT NULL
);
CREATE INDEX idx_peers_status ON peers(status);

CREATE TABLE peer_targets (
    peer_id           TEXT NOT NULL REFERENCES peers(peer_id) ON DELETE CASCADE,
    target_id         TEXT NOT NULL,
    display_name      TEXT NOT NULL,
    capabilities_json TEXT NOT NULL,
    defaults_json     TEXT NOT NULL,
    metadata_json     TEXT NOT NULL,
    status            TEXT NOT NULL,
    synced_at         TEXT NOT NULL,
    PRIMARY KEY (peer_id, target_id)
);
CREATE INDEX idx_peer_targets_target ON peer_targets(target_id);
