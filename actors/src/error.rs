//! Error types shared across the core, classified by what the caller can do about them.

use std::time::Duration;

/// A storage failure.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StorageError {
    /// The database refused this write (constraint): retrying the same write will not help.
    #[error("storage rejected the write: {0}")]
    Rejected(String),
    /// The database could not be reached or failed; the write may be retried.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored row could not be decoded.
    #[error("corrupt stored row: {0}")]
    Corrupt(String),
}

impl StorageError {
    /// Classifies a sqlx error: constraint violations are the caller's fault, the rest is ours.
    pub fn from_sqlx(err: &sqlx::Error) -> Self {
        match err {
            sqlx::Error::Database(db) if !matches!(db.kind(), sqlx::error::ErrorKind::Other) => {
                StorageError::Rejected(db.message().to_owned())
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
                StorageError::Corrupt(err.to_string())
            }
            other => StorageError::Unavailable(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        StorageError::from_sqlx(&err)
    }
}

/// A request to another actor that did not get an answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AskError {
    /// The actor is not running (stopped, or being restarted).
    #[error("{0} is not running")]
    Unavailable(&'static str),
    /// The actor did not answer within the budget.
    #[error("{0} did not answer within {1:?}")]
    Timeout(&'static str, Duration),
    /// The actor dropped the request without answering (it stopped while handling it).
    #[error("{0} stopped before answering")]
    Dropped(&'static str),
}
