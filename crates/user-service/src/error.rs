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

platform::refusals_into!(UserError);

impl From<crate::domain::grants::Escalation> for UserError {
    fn from(e: crate::domain::grants::Escalation) -> Self {
        UserError::Forbidden(e.to_string())
    }
}

impl From<UserError> for tonic::Status {
    fn from(e: UserError) -> Self {
        match e {
            UserError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            UserError::Invalid { field, reason } => platform::grpc::invalid(field, &reason),
            UserError::Conflict(m) => tonic::Status::already_exists(m),
            UserError::Forbidden(m) => tonic::Status::permission_denied(m),
            UserError::Unauthenticated => tonic::Status::unauthenticated(e.to_string()),
            UserError::Unimplemented(what) => tonic::Status::unimplemented(what),
            UserError::Db(ref d) => platform::grpc::db_status(d),
            UserError::Events(ref ev) => platform::grpc::events_status(ev),
        }
    }
}
