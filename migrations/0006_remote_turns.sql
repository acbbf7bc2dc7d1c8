-- A relayed turn (contract §9.6 step 4, §10.4): `target_owner` is 'remote' when the turn's task
-- is relayed to a peer (NULL for local turns), with the peer and the destination's ids.
ALTER TABLE thread_turns ADD COLUMN target_owner TEXT;
ALTER TABLE thread_turns ADD COLUMN remote_peer_id TEXT;
ALTER TABLE thread_turns ADD COLUMN destination_node_id TEXT;
ALTER TABLE thread_turns ADD COLUMN destination_task_id TEXT;
ALTER TABLE thread_turns ADD COLUMN destination_thread_id TEXT;
