//! Storage: the storage actor (the only writer to SQLite) and the read side.
//!
//! SQLite runs in WAL mode with `synchronous=FULL` and a busy timeout. Writes go through
//! [`writer::StorageActor`], which group-commits concurrent writes into one transaction and
//! acknowledges each only after `COMMIT`. Reads go through [`reader::StoreReader`] on a separate
//! pool (WAL lets them run beside the writer). An in-memory database has one connection, shared.

pub mod lock;
pub mod reader;
pub mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use reader::node::NODE_ID_IN_USE;
pub use reader::{IdempotencyHolder, StoreReader, StoredMessage, TaskFilter, TaskPage};
pub use writer::{
    AclWrite, AetherAgentRecord, AgentWrite, AppliedSlot, IdempotencyClaim, LaunchRecord, NewTurn, QueuedMessage,
    SessionBindingRecord, StorageActor, StorageArgs, StorageMsg, StorageStats, WorkspaceRecord, WorkspaceWrite,
    WriteOp,
};

use crate::error::StorageError;
use crate::supervision::{ASK_TIMEOUT, Slot};

/// Makes `op` durable without waiting for it: bookkeeping (launch history, session bindings,
/// thread progress) whose loss is logged but never blocks the actor that produced it.
pub fn write_in_background(storage: &Arc<Slot<StorageMsg>>, op: WriteOp) {
    let (storage, what) = (storage.clone(), op.name());
    tokio::spawn(async move {
        match storage.ask(ASK_TIMEOUT, |r| StorageMsg::Write(op, r)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, what, "background write failed"),
            Err(e) => tracing::warn!(error = %e, what, "background write failed"),
        }
    });
}

/// Where the database lives, after normalising the `--database` flag (contract §5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// `sqlite::memory:` or `:memory:`.
    Memory,
    /// A file path.
    File(String),
}

impl DatabaseLocation {
    /// `sqlite::memory:`/`:memory:` → memory; `sqlite://X` → `X`; anything else is a path.
    pub fn parse(url: &str) -> Self {
        match url {
            "sqlite::memory:" | ":memory:" | "sqlite://:memory:" => DatabaseLocation::Memory,
            _ => {
                let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
                DatabaseLocation::File(path.to_owned())
            }
        }
    }
}

/// The open database: the writer's pool (one connection) and the readers' pool.
#[derive(Clone, Debug)]
pub struct Db {
    /// One connection, used only by the storage actor (and by readers for an in-memory database).
    pub(crate) writer: SqlitePool,
    /// Read-only traffic.
    pub(crate) reader: SqlitePool,
    /// Whether readers use the writer's connection (an in-memory database): the storage actor
    /// must then give it back after each transaction.
    pub(crate) shared_writer: bool,
}

impl Db {
    /// Opens (creating if needed) and migrates the database.
    pub async fn open(location: &DatabaseLocation) -> Result<Db, StorageError> {
        let base = match location {
            DatabaseLocation::Memory => SqliteConnectOptions::from_str("sqlite::memory:")?,
            DatabaseLocation::File(path) => {
                if let Some(parent) = std::path::Path::new(path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| StorageError::Unavailable(format!("{}: {e}", parent.display())))?;
                }
                SqliteConnectOptions::new().filename(path).create_if_missing(true).journal_mode(SqliteJournalMode::Wal)
            }
        };
        let options = base.synchronous(SqliteSynchronous::Full).busy_timeout(Duration::from_secs(5)).foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // An in-memory database dies with its connection: never let the pool recycle it.
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("../migrations")
            .run(&writer)
            .await
            .map_err(|e| StorageError::Unavailable(format!("migrations failed: {e}")))?;
        let reader = match location {
            DatabaseLocation::Memory => writer.clone(),
            DatabaseLocation::File(_) => {
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options.read_only(true))
                    .await?
            }
        };
        Ok(Db { writer, reader, shared_writer: *location == DatabaseLocation::Memory })
    }

    /// A reader over this database.
    pub fn reader(&self) -> StoreReader {
        StoreReader::new(self.reader.clone())
    }

    /// Checkpoints the WAL and closes both pools (called once, after the storage actor drained).
    pub async fn close(&self) {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.writer).await;
        self.reader.close().await;
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use ractor::Actor;

    use super::*;

    #[test]
    fn database_flag_normalisation() {
        assert_eq!(DatabaseLocation::parse("sqlite::memory:"), DatabaseLocation::Memory);
        assert_eq!(DatabaseLocation::parse(":memory:"), DatabaseLocation::Memory);
        assert_eq!(DatabaseLocation::parse("sqlite://./a.db"), DatabaseLocation::File("./a.db".into()));
        assert_eq!(DatabaseLocation::parse("sqlite:///abs/a.db"), DatabaseLocation::File("/abs/a.db".into()));
        assert_eq!(DatabaseLocation::parse("plain.db"), DatabaseLocation::File("plain.db".into()));
    }

    #[tokio::test]
    async fn a_background_write_commits_without_its_caller_waiting() -> Result<(), Box<dyn std::error::Error>> {
        let db = Db::open(&DatabaseLocation::Memory).await?;
        let (actor, _) = Actor::spawn(None, StorageActor, StorageArgs { db: db.clone() }).await?;
        let storage = Slot::new("storage");
        storage.set(Some(actor.clone()));
        write_in_background(&storage, WriteOp::NodeMeta { key: "k".into(), value: "v".into() });
        let reader = db.reader();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while reader.node_meta("k").await?.is_none() {
            assert!(tokio::time::Instant::now() < deadline, "the background write never committed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // With the actor down the write is dropped with a warning; the caller is not affected.
        storage.set(None);
        write_in_background(&storage, WriteOp::NodeMeta { key: "k".into(), value: "w".into() });
        actor.drain_and_wait(Some(Duration::from_secs(5))).await?;
        Ok(())
    }
}
