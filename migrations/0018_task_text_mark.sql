-- The text search index (0013) is kept by the storage writer in passes behind the task writes
-- instead of in each write's transaction. Each pass records here the highest `task_events` rowid
-- it covers; on start the writer re-indexes the tasks with events past it (texts a crash kept
-- from their pass). Until now the index was kept in the writes' own transactions: it covers
-- every event there is.
INSERT OR REPLACE INTO node_meta (key, value)
SELECT 'task_text_through', CAST(coalesce(max(rowid), 0) AS TEXT) FROM task_events;
