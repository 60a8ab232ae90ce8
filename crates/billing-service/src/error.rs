//! The billing service's errors and their one mapping to gRPC status. Internals (database,
//! events) are logged and answered as a bare INTERNAL: their text never reaches a caller.

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    FailedPrecondition(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("missing caller identity")]
    Unauthenticated,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("events: {0}")]
    Events(#[from] platform::events::EventError),
}

impl BillingError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        BillingError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

platform::refusals_into!(BillingError);

impl From<BillingError> for tonic::Status {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            BillingError::Invalid { field, reason } => platform::grpc::invalid(field, &reason),
            BillingError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            BillingError::Forbidden(m) => tonic::Status::permission_denied(m),
            BillingError::Unauthenticated => tonic::Status::unauthenticated(e.to_string()),
            BillingError::Db(ref d) => platform::grpc::db_status(d),
            BillingError::Events(ref ev) => platform::grpc::events_status(ev),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internals_never_reach_the_caller() {
        let s = tonic::Status::from(BillingError::Db(sqlx::Error::Protocol(
            "relation \"billing_runs\" does not exist".into(),
        )));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert_eq!(s.message(), "internal error");
        let s = tonic::Status::from(BillingError::invalid("period.end", "must be after"));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), "period.end: must be after");
    }
}
