//! The notification service's errors and their one mapping to gRPC status. Internals
//! (database, events) are logged and answered as a bare INTERNAL.

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("missing caller identity")]
    Unauthenticated,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub type Result<T, E = NotifyError> = std::result::Result<T, E>;

impl NotifyError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        NotifyError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

platform::refusals_into!(NotifyError);

impl From<NotifyError> for tonic::Status {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            NotifyError::Invalid { field, reason } => platform::grpc::invalid(field, &reason),
            NotifyError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            NotifyError::Conflict(m) => tonic::Status::already_exists(m),
            NotifyError::Forbidden(m) => tonic::Status::permission_denied(m),
            NotifyError::Unauthenticated => tonic::Status::unauthenticated(e.to_string()),
            NotifyError::Db(ref d) => platform::grpc::db_status(d),
        }
    }
}

impl From<NotifyError> for platform::events::HandlerError {
    fn from(e: NotifyError) -> Self {
        use platform::events::HandlerError;
        match e {
            NotifyError::Db(_) => HandlerError::Transient(e.to_string()),
            other => HandlerError::Permanent(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internals_never_reach_the_caller() {
        let s = tonic::Status::from(NotifyError::Db(sqlx::Error::Protocol(
            "relation \"deliveries\" does not exist".into(),
        )));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert_eq!(s.message(), "internal error");
    }
}
