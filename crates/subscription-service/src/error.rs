//! The subscription service's errors and their one mapping to gRPC status.

use crate::domain::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum SubError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("missing caller identity")]
    Unauthenticated,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("events: {0}")]
    Events(#[from] platform::events::EventError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The service is shutting down (its usage writers have stopped): try again.
    #[error("{0}")]
    Unavailable(&'static str),
}

impl From<crate::store::copy_binary::CopyError> for SubError {
    fn from(e: crate::store::copy_binary::CopyError) -> Self {
        SubError::Corrupt(e.to_string())
    }
}

impl From<platform::grpc::Refused> for SubError {
    fn from(r: platform::grpc::Refused) -> Self {
        match r {
            platform::grpc::Refused::MissingIdentity => SubError::Unauthenticated,
            platform::grpc::Refused::Foreign => SubError::NotFound("subscription"),
            platform::grpc::Refused::Lacks(_) => SubError::Forbidden("platform_admin only"),
        }
    }
}

impl From<platform::paging::BadCursor> for SubError {
    fn from(_: platform::paging::BadCursor) -> Self {
        SubError::invalid("cursor", "not a cursor this API issued")
    }
}

impl From<Invalid> for SubError {
    fn from(i: Invalid) -> Self {
        SubError::Invalid {
            field: i.field,
            reason: i.reason,
        }
    }
}

impl SubError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        SubError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<SubError> for tonic::Status {
    fn from(e: SubError) -> Self {
        match e {
            SubError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            SubError::Invalid { field, reason } => platform::grpc::invalid(field, &reason),
            SubError::Conflict(m) => tonic::Status::already_exists(m),
            SubError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            SubError::Forbidden(m) => tonic::Status::permission_denied(m),
            SubError::Unauthenticated => tonic::Status::unauthenticated(e.to_string()),
            SubError::Db(ref d) => platform::grpc::db_status(d),
            SubError::Events(ref ev) => platform::grpc::events_status(ev),
            SubError::Corrupt(_) => platform::grpc::internal(&e),
            SubError::Unavailable(m) => tonic::Status::unavailable(m),
        }
    }
}
