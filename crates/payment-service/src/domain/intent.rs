//! A payment intent's life, as Stripe models it:
//!
//! ```text
//! requires_payment_method ──method──▶ requires_confirmation ──confirm──▶ processing
//!        ▲                                                                 │
//!        └────────── declined / error ◀──────────┬─────────────────────────┤
//!                                    requires_action ◀── 3-D Secure ───────┤
//!                                                      requires_capture ◀──┤ (manual capture)
//!                                                           │ capture      ▼
//!                                                           └────────▶ succeeded
//! any state before processing or succeeded ──cancel──▶ canceled
//! ```
//!
//! Only a PSP answer moves an intent out of `processing`. Answers come twice (the call's
//! response, then a callback) and out of order, so [`Status::answered`] applies an answer only
//! when it is news: it concerns the current attempt and is further along than what that
//! attempt already reported ([`Outcome::rank`]). `succeeded` and `canceled` are final.

ids::text_enum! {
    pub enum Status {
        RequiresPaymentMethod = "requires_payment_method",
        RequiresConfirmation = "requires_confirmation",
        RequiresAction = "requires_action",
        Processing = "processing",
        RequiresCapture = "requires_capture",
        Succeeded = "succeeded",
        Canceled = "canceled",
    }
}

ids::text_enum! {
    pub enum CaptureMethod {
        Automatic = "automatic",
        Manual = "manual",
    }
}

ids::text_enum! {
    /// What the PSP said about one attempt.
    pub enum Outcome {
        /// Sent; no answer yet, or the answer was lost.
        Pending = "pending",
        RequiresAction = "requires_action",
        Authorized = "authorized",
        Succeeded = "succeeded",
        Declined = "declined",
        /// The PSP refused the request itself; nothing was charged.
        Error = "error",
    }
}

impl Outcome {
    /// How far along an attempt is; an answer of a lower or equal rank is old news. Money
    /// that moved outranks a failure: a success reported after a decline of the same attempt
    /// is believed.
    pub fn rank(self) -> u8 {
        match self {
            Outcome::Pending => 0,
            Outcome::RequiresAction => 1,
            Outcome::Authorized => 2,
            Outcome::Declined | Outcome::Error => 3,
            Outcome::Succeeded => 4,
        }
    }

    /// Whether the attempt is over.
    pub fn is_final(self) -> bool {
        self.rank() >= 3
    }
}

/// A request the intent's status does not allow; the message says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a payment intent that is {from} cannot be {action}")]
pub struct TransitionError {
    pub from: Status,
    pub action: &'static str,
}

impl Status {
    /// `succeeded` and `canceled` never change again.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Canceled)
    }

    /// Where an intent starts: with a method it waits for confirmation.
    pub fn initial(has_method: bool) -> Status {
        if has_method {
            Status::RequiresConfirmation
        } else {
            Status::RequiresPaymentMethod
        }
    }

    /// A new attempt starts (`processing`). After a decline a new method (or the same, when
    /// dunning retries it) is tried by confirming again.
    pub fn confirm(self, has_method: bool) -> Result<Status, TransitionError> {
        match self {
            Status::RequiresConfirmation | Status::RequiresPaymentMethod if has_method => {
                Ok(Status::Processing)
            }
            from => Err(TransitionError {
                from,
                action: if has_method {
                    "confirmed"
                } else {
                    "confirmed without a payment method"
                },
            }),
        }
    }

    /// Capture of an authorized amount starts.
    pub fn capture(self) -> Result<Status, TransitionError> {
        match self {
            Status::RequiresCapture => Ok(Status::Processing),
            from => Err(TransitionError {
                from,
                action: "captured",
            }),
        }
    }

    /// Cancel; `None` when already canceled (a repeat changes nothing).
    pub fn cancel(self) -> Result<Option<Status>, TransitionError> {
        match self {
            Status::Canceled => Ok(None),
            Status::RequiresPaymentMethod
            | Status::RequiresConfirmation
            | Status::RequiresAction
            | Status::RequiresCapture => Ok(Some(Status::Canceled)),
            from => Err(TransitionError {
                from,
                action: "canceled",
            }),
        }
    }

    /// The status after the PSP answered the current attempt with `outcome`, given what the
    /// attempt had reported before (`previous`). `None`: the answer is old news or comes
    /// too late (a final intent), and changes nothing.
    pub fn answered(
        self,
        previous: Outcome,
        outcome: Outcome,
        capture: CaptureMethod,
    ) -> Option<Status> {
        if self.is_final() || outcome.rank() <= previous.rank() {
            return None;
        }
        Some(match outcome {
            Outcome::Pending => return None,
            Outcome::RequiresAction => Status::RequiresAction,
            Outcome::Authorized if capture == CaptureMethod::Manual => Status::RequiresCapture,
            Outcome::Authorized | Outcome::Succeeded => Status::Succeeded,
            Outcome::Declined | Outcome::Error => Status::RequiresPaymentMethod,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CaptureMethod::{Automatic, Manual};
    use Status as S;

    #[test]
    fn a_payment_goes_through_confirmation_to_success() {
        let s = S::initial(true);
        assert_eq!(s, S::RequiresConfirmation);
        let s = s.confirm(true).unwrap();
        assert_eq!(s, S::Processing);
        assert_eq!(
            s.answered(Outcome::Pending, Outcome::Succeeded, Automatic),
            Some(S::Succeeded)
        );
    }

    #[test]
    fn a_decline_returns_to_requires_payment_method_and_may_be_retried() {
        let s = S::Processing
            .answered(Outcome::Pending, Outcome::Declined, Automatic)
            .unwrap();
        assert_eq!(s, S::RequiresPaymentMethod);
        assert_eq!(s.confirm(true), Ok(S::Processing));
        assert!(S::initial(false).confirm(false).is_err());
    }

    #[test]
    fn three_d_secure_then_success() {
        let s = S::Processing
            .answered(Outcome::Pending, Outcome::RequiresAction, Automatic)
            .unwrap();
        assert_eq!(s, S::RequiresAction);
        assert_eq!(
            s.answered(Outcome::RequiresAction, Outcome::Succeeded, Automatic),
            Some(S::Succeeded)
        );
    }

    #[test]
    fn manual_capture_waits_in_requires_capture() {
        let s = S::Processing
            .answered(Outcome::Pending, Outcome::Authorized, Manual)
            .unwrap();
        assert_eq!(s, S::RequiresCapture);
        let s = s.capture().unwrap();
        assert_eq!(
            s.answered(Outcome::Authorized, Outcome::Succeeded, Manual),
            Some(S::Succeeded)
        );
        assert!(S::Succeeded.capture().is_err());
    }

    #[test]
    fn old_or_late_answers_change_nothing() {
        // The callback repeats what the response said.
        assert_eq!(
            S::Succeeded.answered(Outcome::Pending, Outcome::Succeeded, Automatic),
            None
        );
        // A late "requires_action" after the attempt already succeeded.
        assert_eq!(
            S::Processing.answered(Outcome::Succeeded, Outcome::RequiresAction, Automatic),
            None
        );
        // A decline after a cancel.
        assert_eq!(
            S::Canceled.answered(Outcome::Pending, Outcome::Declined, Automatic),
            None
        );
        assert_eq!(
            S::Processing.answered(Outcome::Pending, Outcome::Pending, Automatic),
            None
        );
    }

    #[test]
    fn cancel_only_before_money_moves() {
        for s in [
            S::RequiresPaymentMethod,
            S::RequiresConfirmation,
            S::RequiresAction,
            S::RequiresCapture,
        ] {
            assert_eq!(s.cancel(), Ok(Some(S::Canceled)), "{s}");
        }
        assert_eq!(S::Canceled.cancel(), Ok(None));
        for s in [S::Processing, S::Succeeded] {
            assert!(s.cancel().is_err(), "{s}");
        }
    }

    #[test]
    fn a_success_outranks_a_failure_of_the_same_attempt() {
        assert_eq!(
            S::RequiresPaymentMethod.answered(Outcome::Declined, Outcome::Succeeded, Automatic),
            Some(S::Succeeded)
        );
        assert_eq!(
            S::Succeeded.answered(Outcome::Succeeded, Outcome::Declined, Automatic),
            None
        );
    }

    #[test]
    fn final_states_never_change() {
        for s in [S::Succeeded, S::Canceled] {
            for o in Outcome::ALL {
                assert_eq!(s.answered(Outcome::Pending, *o, Automatic), None);
            }
            assert!(s.confirm(true).is_err());
        }
    }
}
