-- Indexes whose column leads a wider index (migration 0010, for listing): every query they served
-- uses the wider one, and each cost a b-tree update on every status change of every task.
DROP INDEX IF EXISTS idx_tasks_conversation;
DROP INDEX IF EXISTS idx_tasks_status;
DROP INDEX IF EXISTS idx_tasks_thread;
