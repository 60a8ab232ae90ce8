//! An invoice's lifecycle: `draft → open (finalized: numbered, immutable) → paid | void |
//! uncollectible`.
//!
//! - A draft can be finalized (it becomes `open`) or voided; it cannot be paid.
//! - An open invoice can be paid, voided, or marked uncollectible.
//! - An uncollectible invoice can still be paid (money that arrives late is taken) or voided.
//! - Paid and void are final.
//! - Repeating the action that produced the current state is a no-op, not an error: a
//!   redelivered `payment.intent.succeeded` or a retried `finalize` changes nothing.

ids::text_enum! {
    /// Where an invoice is in its life.
    pub enum Status {
        Draft = "draft",
        Open = "open",
        Paid = "paid",
        Void = "void",
        Uncollectible = "uncollectible",
    }
}

ids::text_enum! {
    /// What a document is: an invoice (the buyer owes) or a credit note (the buyer is owed).
    pub enum Kind {
        Invoice = "invoice",
        CreditNote = "credit_note",
    }
}

/// What can happen to an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Finalize,
    Pay,
    Void,
    MarkUncollectible,
}

/// The outcome of an action that is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub to: Status,
    /// False when the invoice already was where the action leads (a repeat).
    pub changed: bool,
}

/// An action the invoice's status does not allow; the message says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} invoice cannot be {action}")]
pub struct TransitionError {
    pub from: Status,
    pub action: Action,
}

impl Status {
    /// Whether the invoice is numbered and immutable.
    pub fn finalized(self) -> bool {
        self != Status::Draft
    }

    pub fn apply(self, action: Action) -> Result<Transition, TransitionError> {
        use Action as A;
        use Status as S;
        let to = match (self, action) {
            (S::Draft, A::Finalize) => S::Open,
            (S::Draft | S::Open | S::Uncollectible, A::Void) => S::Void,
            (S::Open | S::Uncollectible, A::Pay) => S::Paid,
            (S::Open, A::MarkUncollectible) => S::Uncollectible,
            // Repeats of the action that led here.
            (S::Open, A::Finalize)
            | (S::Paid, A::Pay)
            | (S::Void, A::Void)
            | (S::Uncollectible, A::MarkUncollectible) => self,
            (from, action) => return Err(TransitionError { from, action }),
        };
        Ok(Transition {
            to,
            changed: to != self,
        })
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Finalize => "finalized",
            Action::Pay => "paid",
            Action::Void => "voided",
            Action::MarkUncollectible => "marked uncollectible",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status × action, written out: `Some(to)` allowed, `None` refused.
    #[test]
    fn every_transition() {
        use Action as A;
        use Status as S;
        let table = [
            (S::Draft, [Some(S::Open), None, Some(S::Void), None]),
            (
                S::Open,
                [
                    Some(S::Open),
                    Some(S::Paid),
                    Some(S::Void),
                    Some(S::Uncollectible),
                ],
            ),
            (S::Paid, [None, Some(S::Paid), None, None]),
            (S::Void, [None, None, Some(S::Void), None]),
            (
                S::Uncollectible,
                [None, Some(S::Paid), Some(S::Void), Some(S::Uncollectible)],
            ),
        ];
        let actions = [A::Finalize, A::Pay, A::Void, A::MarkUncollectible];
        for (from, outcomes) in table {
            for (action, want) in actions.into_iter().zip(outcomes) {
                let got = from.apply(action);
                let want = match want {
                    Some(to) => Ok(Transition {
                        to,
                        changed: to != from,
                    }),
                    None => Err(TransitionError { from, action }),
                };
                assert_eq!(got, want, "{from} + {action:?}");
            }
        }
        assert_eq!(
            S::Draft.apply(A::Pay).unwrap_err().to_string(),
            "a draft invoice cannot be paid"
        );
    }

    #[test]
    fn statuses_round_trip_as_text() {
        for s in [
            Status::Draft,
            Status::Open,
            Status::Paid,
            Status::Void,
            Status::Uncollectible,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(s.finalized(), s != Status::Draft);
        }
        assert_eq!(Status::parse("Open"), None);
    }
}
