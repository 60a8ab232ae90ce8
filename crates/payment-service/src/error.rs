//! The payment service's errors and their one mapping to gRPC status. Internals (database,
//! events) are logged and answered as a bare INTERNAL: their text never reaches a caller, and
//! neither does a PSP's raw error text beyond its code and message.

use crate::domain::intent::TransitionError;
use crate::domain::money::Invalid;
use crate::domain::signature::SignatureError;
use crate::psp::PspError;

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    FailedPrecondition(String),
    /// An idempotency key reused with another request.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("missing caller identity")]
    Unauthenticated,
    /// A callback whose signature does not verify.
    #[error("callback refused: {0}")]
    BadSignature(#[from] SignatureError),
    #[error(transparent)]
    Psp(#[from] PspError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("events: {0}")]
    Events(#[from] platform::events::EventError),
}

impl PaymentError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        PaymentError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<Invalid> for PaymentError {
    fn from(e: Invalid) -> Self {
        PaymentError::Invalid {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<TransitionError> for PaymentError {
    fn from(e: TransitionError) -> Self {
        PaymentError::FailedPrecondition(e.to_string())
    }
}

platform::refusals_into!(PaymentError);

impl From<PaymentError> for tonic::Status {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            PaymentError::Invalid { field, reason } => platform::grpc::invalid(field, &reason),
            PaymentError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            PaymentError::Conflict(m) => tonic::Status::already_exists(m),
            PaymentError::Forbidden(m) => tonic::Status::permission_denied(m),
            PaymentError::Unauthenticated => tonic::Status::unauthenticated(e.to_string()),
            PaymentError::BadSignature(_) => tonic::Status::unauthenticated(e.to_string()),
            PaymentError::Psp(PspError::Refused { .. }) => {
                tonic::Status::failed_precondition(e.to_string())
            }
            PaymentError::Psp(PspError::NotConfigured(_)) => {
                tonic::Status::failed_precondition(e.to_string())
            }
            PaymentError::Psp(PspError::Unknown(_)) => {
                tracing::warn!(error = %e, "PSP unavailable");
                tonic::Status::unavailable("the payment provider did not answer; retry shortly")
            }
            PaymentError::Db(ref d) => platform::grpc::db_status(d),
            PaymentError::Events(ref ev) => platform::grpc::events_status(ev),
        }
    }
}

impl From<PaymentError> for platform::events::HandlerError {
    fn from(e: PaymentError) -> Self {
        use platform::events::HandlerError;
        match e {
            PaymentError::Db(_) | PaymentError::Events(_) | PaymentError::Psp(_) => {
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
        let s = tonic::Status::from(PaymentError::Db(sqlx::Error::Protocol(
            "relation \"payment_intents\" does not exist".into(),
        )));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert_eq!(s.message(), "internal error");
        let s = tonic::Status::from(PaymentError::from(SignatureError::Mismatch));
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
    }
}
