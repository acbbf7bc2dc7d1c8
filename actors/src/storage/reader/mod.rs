//! The read side of storage: queries on the readers' pool. Never writes.
//!
//! [`StoreReader`]'s queries are grouped by table, one submodule each (`tasks`, `agents`,
//! `threads`, `runtime`, `node`), like the writer's; the column decoders shared by all are here.

mod aether;
mod agents;
pub mod node;
mod peers;
mod runtime;
mod tasks;
mod threads;
mod tokens;

use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

pub use aether::{StoredCheckpoint, StoredMessage};
pub use runtime::{LaunchRow, OpenLease, TargetPause};
pub use tasks::{IdempotencyHolder, StoredTask, TaskCursor, TaskFilter, TaskPage};

use crate::error::StorageError;

/// Largest page of tasks or events one query returns.
pub const MAX_PAGE: u32 = 500;

/// Read access to the database.
#[derive(Clone, Debug)]
pub struct StoreReader {
    pool: SqlitePool,
}

impl StoreReader {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        StoreReader { pool }
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

fn json_col<T: DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<T, StorageError> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StorageError::Corrupt(format!("{col}: {e}")))
}

fn opt_json_col<T: DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<Option<T>, StorageError> {
    let text: Option<String> = row.try_get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| StorageError::Corrupt(format!("{col}: {e}")))).transpose()
}

fn parse_col<T: std::str::FromStr>(row: &SqliteRow, col: &str) -> Result<T, StorageError>
where
    T::Err: std::fmt::Display,
{
    let text: String = row.try_get(col)?;
    text.parse().map_err(|e: T::Err| StorageError::Corrupt(format!("{col}: {e}")))
}

/// A nullable enum column (`NULL` → `None`).
fn opt_parse_col<T: std::str::FromStr>(row: &SqliteRow, col: &str) -> Result<Option<T>, StorageError>
where
    T::Err: std::fmt::Display,
{
    let text: Option<String> = row.try_get(col)?;
    text.map(|t| t.parse().map_err(|e: T::Err| StorageError::Corrupt(format!("{col}: {e}")))).transpose()
}
