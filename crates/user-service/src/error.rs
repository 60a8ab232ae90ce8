//! The user service's errors and their one mapping to gRPC status.

use crate::domain::validate::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("missing caller identity")]
    Unauthenticated,
    #[error("not implemented yet: {0}")]
    Unimplemented(&'static str),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("events: {0}")]
    Events(#[from] platform::events::EventError),
}

impl From<Invalid> for UserError {
    fn from(i: Invalid) -> Self {
        UserError::Invalid {
            field: i.field,
            reason: i.reason,
        }
    }
}

impl From<platform::grpc::MissingIdentity> for UserError {
    fn from(_: platform::grpc::MissingIdentity) -> Self {
        UserError::Unauthenticated
    }
}

impl From<platform::grpc::Foreign> for UserError {
    fn from(_: platform::grpc::Foreign) -> Self {
        UserError::NotFound("tenant")
    }
}

impl From<platform::grpc::Lacks> for UserError {
    fn from(e: platform::grpc::Lacks) -> Self {
        UserError::Forbidden(e.to_string())
    }
}

impl From<platform::paging::BadCursor> for UserError {
    fn from(_: platform::paging::BadCursor) -> Self {
        UserError::Invalid {
            field: "cursor",
            reason: "not a cursor this API issued".into(),
        }
    }
}

impl From<crate::domain::grants::Escalation> for UserError {
    fn from(e: crate::domain::grants::Escalation) -> Self {
        UserError::Forbidden(e.to_string())
    }
}

impl From<UserError> for tonic::Status {
    fn from(e: UserError) -> Self {
        match e {
            UserError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            UserError::Invalid { field, reason } => {
                platform::grpc::invalid_field(field, format!("{field}: {reason}"))
            }
            UserError::Conflict(m) => tonic::Status::already_exists(m),
            UserError::Forbidden(m) => tonic::Status::permission_denied(m),
            UserError::Unauthenticated => tonic::Status::unauthenticated(e.to_string()),
            UserError::Unimplemented(what) => tonic::Status::unimplemented(what),
            // Class 22 (data exception: bad encoding, out-of-range value) is bad input that got
            // past validation; say so rather than answer an internal error.
            UserError::Db(sqlx::Error::Database(ref d))
                if d.code().is_some_and(|c| c.starts_with("22")) =>
            {
                tracing::warn!(error = %e, "data exception from input");
                tonic::Status::invalid_argument("a value in the request cannot be stored")
            }
            UserError::Db(_) | UserError::Events(_) => {
                tracing::error!(error = %e, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
