//! The one error type of the service layer: a kind every binding maps to its own status space
//! (HTTP status, gRPC code, node-protocol error frame) in one table, a message naming what was
//! wrong, and extra fields a binding may show beside the message.

use serde_json::Value;

use crate::error::{AskError, StorageError};
use crate::intake::IntakeError;
use crate::model::JsonObject;
use crate::registry::{RegistryError, RouteError};
use crate::runtime::RuntimeError;
use crate::task::TaskError;

/// What kind of failure, from the caller's point of view: what it can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or names an impossible value (fix the request).
    Invalid,
    /// The thing asked for does not exist.
    NotFound,
    /// The request conflicts with the current state (e.g. resume of a task that is not waiting,
    /// an ambiguous route, shadowing a file target).
    Conflict,
    /// Well-formed but cannot be carried out as asked (e.g. a target without the capability).
    Unprocessable,
    /// The node cannot serve it now (a core service restarting, storage trouble): retry.
    Unavailable,
    /// Who is asking is not known.
    Unauthenticated,
    /// Who is asking may not do this.
    Forbidden,
    /// A bug or an unexpected state on our side.
    Internal,
}

impl ErrorKind {
    /// Stable lower-case name (logs, error frames of non-HTTP bindings).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unprocessable => "unprocessable",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A refused or failed service call.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub kind: ErrorKind,
    /// Names what was wrong; never a server path or an OS error for a client mistake.
    pub message: String,
    /// Fields shown beside the message (e.g. the task's current `status` on a conflict).
    pub fields: JsonObject,
    /// The cause on the node's side (a path, an OS or database error), for the log only: a
    /// binding logs it under an error id ([`ServiceError::log_detail`]) and shows the caller the
    /// stable `message` and the id, never this.
    /// (Boxed `str`: keeps the error small, it is on every `Result` of the service layer.)
    pub detail: Option<Box<str>>,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ServiceError { kind, message: message.into(), fields: JsonObject::new(), detail: None }
    }

    /// A failure on the node's side: `message` (stable, no paths or OS errors) is what the
    /// caller sees, `detail` goes to the log.
    pub fn hidden(kind: ErrorKind, message: impl Into<String>, detail: impl Into<String>) -> Self {
        ServiceError { detail: Some(detail.into().into_boxed_str()), ..Self::new(kind, message) }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Logs a hidden cause (and any internal error) under a new error id and returns the id, for
    /// the caller to quote; `None` for an error with nothing hidden (a client mistake).
    pub fn log_detail(&self) -> Option<String> {
        if self.detail.is_none() && self.kind != ErrorKind::Internal {
            return None;
        }
        let error_id = crate::ids::new_id();
        tracing::error!(
            error_id = %error_id, kind = self.kind.as_str(), message = %self.message,
            detail = self.detail.as_deref().unwrap_or(""), "request failed on the node's side"
        );
        Some(error_id)
    }

    /// Adds a field beside the message.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }
}

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        // Storage trouble is ours, never the client's: unavailable, so clients retry. Its text
        // (database paths, OS errors) goes to the log only.
        ServiceError::hidden(ErrorKind::Unavailable, "the node's storage failed; retry shortly", e.to_string())
    }
}

impl From<AskError> for ServiceError {
    fn from(e: AskError) -> Self {
        tracing::warn!(error = %e, "core did not answer a request");
        ServiceError::unavailable(e.to_string())
    }
}

impl From<RouteError> for ServiceError {
    fn from(e: RouteError) -> Self {
        let kind = match e {
            RouteError::TargetNotFound(_) | RouteError::NoRoute(_) | RouteError::NotDispatchable { .. } => {
                ErrorKind::NotFound
            }
            RouteError::CannotSatisfy { .. } => ErrorKind::Unprocessable,
            RouteError::Conflict { .. } | RouteError::PeerConflict { .. } => ErrorKind::Conflict,
        };
        ServiceError::new(kind, e.to_string())
    }
}

impl From<TaskError> for ServiceError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotAwaitable(r) => ServiceError::conflict(r.to_string()),
            TaskError::Storage(s) => s.into(),
            TaskError::Ask(a) => a.into(),
            TaskError::Artifact(m) => {
                ServiceError::hidden(ErrorKind::Unavailable, "the node could not store an artifact; retry shortly", m)
            }
            TaskError::Spawn(m) => {
                ServiceError::hidden(ErrorKind::Unavailable, "the node could not start the task; retry shortly", m)
            }
            TaskError::BadResume(m) => ServiceError::invalid(m),
            TaskError::NotRetryable(status) => {
                ServiceError::conflict(TaskError::NotRetryable(status).to_string()).with("status", status.as_str())
            }
            e @ TaskError::TargetGone(_) => ServiceError::conflict(e.to_string()),
        }
    }
}

impl From<IntakeError> for ServiceError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::Invalid(m) => ServiceError::invalid(m),
            IntakeError::Route(r) => r.into(),
            e @ IntakeError::ThreadNotFound(_) => ServiceError::not_found(e.to_string()),
            e @ IntakeError::Participants(_) => ServiceError::unprocessable(e.to_string()),
            e @ IntakeError::IdempotencyMismatch(_) => ServiceError::unprocessable(e.to_string()),
            IntakeError::Task(t) => t.into(),
            IntakeError::Ask(a) => a.into(),
            IntakeError::Storage(s) => s.into(),
        }
    }
}

impl From<RegistryError> for ServiceError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(m) => ServiceError::invalid(m),
            e @ RegistryError::Conflict(_) => ServiceError::conflict(e.to_string()),
            e @ RegistryError::NotFound(_) => ServiceError::not_found(e.to_string()),
            RegistryError::Storage(e) => e.into(),
            RegistryError::Ask(e) => e.into(),
        }
    }
}

impl From<RuntimeError> for ServiceError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::AdapterMissing(_) => ServiceError::invalid(e.to_string()),
            RuntimeError::LaunchFailed(_) | RuntimeError::Unavailable(_) | RuntimeError::Paused(_) => {
                ServiceError::unavailable(e.to_string())
            }
        }
    }
}
