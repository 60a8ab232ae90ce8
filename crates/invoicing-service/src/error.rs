//! The invoicing service's errors and their one mapping to gRPC status. Internals (database,
//! events) are logged and answered as a bare INTERNAL: their text never reaches a caller.

use crate::domain::lifecycle::TransitionError;
use crate::domain::parties::Invalid;
use crate::domain::tax::TaxError;

#[derive(Debug, thiserror::Error)]
pub enum InvoicingError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("missing caller identity")]
    Unauthenticated,
    /// A dependency (the blob store, billing) did not answer: worth retrying.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("events: {0}")]
    Events(#[from] platform::events::EventError),
}

impl InvoicingError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        InvoicingError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<Invalid> for InvoicingError {
    fn from(e: Invalid) -> Self {
        InvoicingError::Invalid {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<TransitionError> for InvoicingError {
    fn from(e: TransitionError) -> Self {
        InvoicingError::FailedPrecondition(e.to_string())
    }
}

impl From<TaxError> for InvoicingError {
    fn from(e: TaxError) -> Self {
        InvoicingError::FailedPrecondition(e.to_string())
    }
}

platform::refusals_into!(InvoicingError);

impl From<InvoicingError> for tonic::Status {
    fn from(e: InvoicingError) -> Self {
        match e {
            InvoicingError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            InvoicingError::Invalid { field, reason } => platform::grpc::invalid(field, &reason),
            InvoicingError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            InvoicingError::Forbidden(m) => tonic::Status::permission_denied(m),
            InvoicingError::Unauthenticated => tonic::Status::unauthenticated(e.to_string()),
            InvoicingError::Db(ref d) => platform::grpc::db_status(d),
            InvoicingError::Events(ref ev) => platform::grpc::events_status(ev),
            InvoicingError::Unavailable(_) => {
                tracing::warn!(error = %e, "dependency unavailable");
                tonic::Status::unavailable("a dependency is unavailable; retry shortly")
            }
        }
    }
}

impl From<InvoicingError> for platform::events::HandlerError {
    fn from(e: InvoicingError) -> Self {
        use platform::events::HandlerError;
        match e {
            InvoicingError::Db(_) | InvoicingError::Events(_) | InvoicingError::Unavailable(_) => {
                HandlerError::Transient(e.to_string())
            }
            other => HandlerError::Permanent(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internals_never_reach_the_caller() {
        let s = tonic::Status::from(InvoicingError::Db(sqlx::Error::Protocol(
            "relation \"invoices\" does not exist".into(),
        )));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert_eq!(s.message(), "internal error");
        let s = tonic::Status::from(InvoicingError::invalid("country", "two letters"));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), "country: two letters");
    }
}
