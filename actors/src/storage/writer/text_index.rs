//! The search index of `GET /v1/tasks?q=`, kept off the write path.
//!
//! Replacing a task's FTS5 trigram row in every task write's transaction cost about half of the
//! writer's CPU (the delete of the old row merges index segments). Instead each commit hands the
//! texts it made durable to a [`TextBacklog`]: a task written several times before the next pass
//! is indexed once, with its last text. A pass runs in its own transaction [`INDEX_DELAY`] after
//! the first text queued, at once when the backlog holds [`BACKLOG_MAX`] tasks, when a search asks
//! for it (`StorageMsg::SyncTextIndex`, so a search sees every write acknowledged before it), and
//! when the actor stops. Each pass records how far the index reaches ([`THROUGH_KEY`]: the highest
//! event rowid it covers), so after a crash the actor re-indexes, when it starts, the tasks with
//! events past that mark ([`recover`]).

use std::collections::HashMap;
use std::time::Duration;

use sqlx::SqliteConnection;

use super::tasks;
use crate::error::StorageError;

/// How long a text may wait for its pass while nothing asks for it.
pub(super) const INDEX_DELAY: Duration = Duration::from_millis(1000);

/// Tasks the backlog holds before a pass runs at once (bounds its memory: ≤ 4 KiB a task).
pub(super) const BACKLOG_MAX: usize = 5_000;

/// `node_meta` key: the highest `task_events` rowid whose task text is indexed.
const THROUGH_KEY: &str = "task_text_through";

/// What the actor does after texts were queued. Pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// A pass is already due (scheduled) or nothing is queued.
    Wait,
    /// Schedule a pass in [`INDEX_DELAY`].
    Schedule,
    /// The backlog is full: index now.
    IndexNow,
}

/// Texts of tasks committed since the last pass. Pure: no IO, unit-tested on its own.
#[derive(Debug, Default)]
pub(super) struct TextBacklog {
    /// Task id → its last durable text not yet indexed (a later commit's text replaces it).
    texts: HashMap<String, String>,
    /// A timed pass is in the mailbox or on its timer; don't schedule another.
    scheduled: bool,
}

impl TextBacklog {
    /// Queues the texts of one commit (later commits come later: their text wins).
    pub(super) fn add(&mut self, texts: Vec<(String, String)>) -> Next {
        self.texts.extend(texts);
        if self.texts.len() >= BACKLOG_MAX {
            Next::IndexNow
        } else if self.texts.is_empty() || self.scheduled {
            Next::Wait
        } else {
            self.scheduled = true;
            Next::Schedule
        }
    }

    /// Puts back the texts of a pass that failed, behind any newer text of the same task.
    pub(super) fn restore(&mut self, texts: Vec<(String, String)>) -> Next {
        for (task_id, text) in texts {
            self.texts.entry(task_id).or_insert(text);
        }
        self.add(Vec::new())
    }

    /// The scheduled pass is running now.
    pub(super) fn timer_fired(&mut self) {
        self.scheduled = false;
    }

    /// Everything queued, for a pass.
    pub(super) fn take(&mut self) -> Vec<(String, String)> {
        self.texts.drain().collect()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}

/// Indexes `texts` and moves the mark to the newest event, in one transaction. Every committed
/// event's text is in `texts` or was indexed before (the backlog takes each commit's texts right
/// after it, and a pass takes the whole backlog), so the mark covers all of them.
pub(super) async fn index(conn: &mut SqliteConnection, texts: &[(String, String)]) -> Result<(), StorageError> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let written = async {
        tasks::index_texts(conn, texts).await?;
        mark_through_newest(conn).await
    }
    .await;
    match written {
        Ok(()) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(())
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

/// Re-indexes the tasks with events past the mark (texts a crash kept from their pass), from
/// their stored last event, and moves the mark. Returns how many tasks it indexed.
pub(super) async fn recover(conn: &mut SqliteConnection) -> Result<u64, StorageError> {
    let through: Option<String> = sqlx::query_scalar("SELECT value FROM node_meta WHERE key = ?1")
        .bind(THROUGH_KEY)
        .fetch_optional(&mut *conn)
        .await?;
    // No mark: index everything (the migration sets one, so this is a database it never saw).
    let through = through.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    // The same text as `tasks::searchable_text`, computed in SQL (as migration 0013 does).
    let written = async {
        // Removals first, then inserts (see `tasks::index_texts`).
        sqlx::query(
            "DELETE FROM task_text WHERE rowid IN \
             (SELECT rowid FROM tasks WHERE task_id IN (SELECT task_id FROM task_events WHERE rowid > ?1))",
        )
        .bind(through)
        .execute(&mut *conn)
        .await?;
        let indexed = sqlx::query(
            "INSERT INTO task_text (rowid, text) \
             SELECT t.rowid, substr(coalesce(e.message, '') || ' ' || coalesce(e.data_json, ''), 1, 4096) \
             FROM tasks t JOIN task_events e ON e.task_id = t.task_id AND e.seq = t.last_seq \
             WHERE t.task_id IN (SELECT task_id FROM task_events WHERE rowid > ?1) ORDER BY t.rowid",
        )
        .bind(through)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        mark_through_newest(conn).await?;
        Ok::<_, StorageError>(indexed)
    }
    .await;
    match written {
        Ok(indexed) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(indexed)
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

async fn mark_through_newest(conn: &mut SqliteConnection) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO node_meta (key, value) SELECT ?1, CAST(coalesce(max(rowid), 0) AS TEXT) FROM task_events \
         WHERE true ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )
    .bind(THROUGH_KEY)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn a_backlog_schedules_one_pass_and_keeps_each_tasks_last_text() {
        let mut backlog = TextBacklog::default();
        assert_eq!(backlog.add(Vec::new()), Next::Wait, "nothing queued, nothing to schedule");
        assert_eq!(backlog.add(texts(&[("a", "created")])), Next::Schedule);
        assert_eq!(backlog.add(texts(&[("a", "running"), ("b", "created")])), Next::Wait, "already scheduled");
        let mut taken = backlog.take();
        taken.sort();
        assert_eq!(taken, texts(&[("a", "running"), ("b", "created")]));
        assert!(backlog.is_empty());
        // Until the timer fired, new texts ride on the pass already scheduled.
        assert_eq!(backlog.add(texts(&[("c", "x")])), Next::Wait);
        backlog.timer_fired();
        assert_eq!(backlog.add(texts(&[("d", "x")])), Next::Schedule);
    }

    #[test]
    fn a_full_backlog_is_indexed_at_once() {
        let mut backlog = TextBacklog::default();
        let many: Vec<_> = (0..BACKLOG_MAX - 1).map(|i| (format!("t{i}"), String::new())).collect();
        assert_eq!(backlog.add(many), Next::Schedule);
        assert_eq!(backlog.add(texts(&[("t0", "again")])), Next::Wait, "a task queued again takes no room");
        assert_eq!(backlog.add(texts(&[("last", "x")])), Next::IndexNow);
    }

    #[test]
    fn a_failed_pass_puts_its_texts_back_behind_newer_ones() {
        let mut backlog = TextBacklog::default();
        backlog.add(texts(&[("a", "old"), ("b", "old")]));
        let failed = backlog.take();
        backlog.timer_fired();
        backlog.add(texts(&[("a", "new")]));
        backlog.restore(failed);
        let mut left = backlog.take();
        left.sort();
        assert_eq!(left, texts(&[("a", "new"), ("b", "old")]));
    }
}
