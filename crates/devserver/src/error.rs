//! The error of every operation, shared by REST and gRPC so both wires answer alike.

use crate::store::StoreError;

/// Why an operation failed. Messages never carry a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The object does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// Resource kind, e.g. `Session`.
        kind: &'static str,
        /// The requested ID.
        id: String,
    },
    /// The request is malformed or fails validation (→ 400 / `INVALID_ARGUMENT`).
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this (→ 403 / `PERMISSION_DENIED`).
    #[error("{0}")]
    Forbidden(String),
    /// The object is not in a state that allows the operation (→ 409 / `FAILED_PRECONDITION`).
    #[error("{0}")]
    Conflict(String),
    /// A watcher fell too far behind the bounded event buffer and was cut off.
    #[error("watch fell behind the event buffer; list again and re-open the watch")]
    Lagged,
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// Storage failed (→ 500 / `INTERNAL`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    /// A validation error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError::Invalid(msg.into())
    }

    /// A not-found error.
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        ApiError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let msg = e.to_string();
        match e {
            ApiError::NotFound { .. } => tonic::Status::not_found(msg),
            ApiError::Invalid(_) => tonic::Status::invalid_argument(msg),
            ApiError::Forbidden(_) => tonic::Status::permission_denied(msg),
            ApiError::Conflict(_) => tonic::Status::failed_precondition(msg),
            ApiError::Lagged => tonic::Status::aborted(msg),
            ApiError::ShuttingDown => tonic::Status::unavailable(msg),
            ApiError::Store(err) => {
                tracing::error!(error = %err, "storage failure");
                tonic::Status::internal("internal storage error")
            }
        }
    }
}
