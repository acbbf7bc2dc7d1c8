-- Text search of `GET /v1/tasks?q=` (issue 16): the text of each task's last event (its message
-- and data, the first 4 KiB), in an FTS5 trigram index, so a substring search reads the index
-- instead of every task's last event. Contentless (the text lives in `task_events`); its rowid is
-- the task row's. Kept by the storage writer in the transaction that appends the events.
CREATE VIRTUAL TABLE task_text USING fts5(text, tokenize = 'trigram', content = '', contentless_delete = 1);

INSERT INTO task_text (rowid, text)
SELECT t.rowid, substr(coalesce(e.message, '') || ' ' || coalesce(e.data_json, ''), 1, 4096)
FROM tasks t JOIN task_events e ON e.task_id = t.task_id AND e.seq = t.last_seq;
