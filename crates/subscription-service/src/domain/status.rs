//! Subscription states.
//!
//! ```text
//! trialing ──trial ends──▶ active ◀──payment recovered── past_due
//!     │                      │  ▲                            │
//!     │                      │  └──tenant reactivated── suspended ◀──tenant suspended / dunning
//!     └──────cancel──────────┴──────────cancel──────────▶ canceled (final)
//! ```
//! `past_due` keeps access (a grace state while dunning runs); `suspended` and `canceled`
//! deny every entitlement. A subscription is suspended while either hold stands — the
//! operator's (tenant suspended) or the payment's (dunning exhausted) — and active again only
//! when both are lifted.

ids::text_enum! {
    pub enum SubStatus {
        Trialing = "trialing",
        Active = "active",
        PastDue = "past_due",
        Suspended = "suspended",
        Canceled = "canceled",
    }
}

impl SubStatus {
    /// Whether usage and plan changes are still accepted.
    pub fn is_live(self) -> bool {
        !matches!(self, SubStatus::Canceled)
    }

    /// The state once the holds are `holds`; `None` when nothing changes. A held subscription
    /// is suspended; one no longer held is active again.
    pub fn with_holds(self, holds: Holds) -> Option<SubStatus> {
        match (self, holds.any()) {
            (SubStatus::Canceled, _) | (SubStatus::Suspended, true) => None,
            (_, true) => Some(SubStatus::Suspended),
            (SubStatus::Suspended, false) => Some(SubStatus::Active),
            (_, false) => None,
        }
    }

    /// The state after news of a payment (with the holds as they are after it).
    pub fn on_payment(self, news: PaymentNews, holds: Holds) -> Option<SubStatus> {
        match news {
            PaymentNews::Failed if self == SubStatus::Active => Some(SubStatus::PastDue),
            PaymentNews::Failed => None,
            PaymentNews::Exhausted => self.with_holds(holds),
            PaymentNews::Succeeded if self == SubStatus::PastDue => Some(SubStatus::Active),
            PaymentNews::Succeeded => self.with_holds(holds),
        }
    }
}

/// What keeps a subscription suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Holds {
    pub tenant: bool,
    pub payment: bool,
}

impl Holds {
    pub fn any(self) -> bool {
        self.tenant || self.payment
    }
}

/// What the payment and invoicing services report about a tenant's invoices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentNews {
    Failed,
    Exhausted,
    Succeeded,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Holds = Holds {
        tenant: false,
        payment: false,
    };
    const TENANT: Holds = Holds {
        tenant: true,
        payment: false,
    };
    const PAYMENT: Holds = Holds {
        tenant: false,
        payment: true,
    };
    const BOTH: Holds = Holds {
        tenant: true,
        payment: true,
    };

    #[test]
    fn suspension_transitions() {
        use SubStatus::*;
        assert_eq!(Active.with_holds(TENANT), Some(Suspended));
        assert_eq!(PastDue.with_holds(TENANT), Some(Suspended));
        assert_eq!(Suspended.with_holds(TENANT), None);
        assert_eq!(Suspended.with_holds(NONE), Some(Active));
        assert_eq!(Canceled.with_holds(TENANT), None);
        assert_eq!(Canceled.with_holds(NONE), None);
        assert_eq!(Trialing.with_holds(NONE), None);
        for s in [Trialing, Active, PastDue, Suspended, Canceled] {
            assert_eq!(SubStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn dunning_moves_a_subscription_and_a_payment_brings_it_back() {
        use PaymentNews::*;
        use SubStatus::*;
        assert_eq!(Active.on_payment(Failed, NONE), Some(PastDue));
        assert_eq!(PastDue.on_payment(Failed, NONE), None);
        assert_eq!(Trialing.on_payment(Failed, NONE), None);
        assert_eq!(PastDue.on_payment(Exhausted, PAYMENT), Some(Suspended));
        assert_eq!(Suspended.on_payment(Succeeded, NONE), Some(Active));
        assert_eq!(PastDue.on_payment(Succeeded, NONE), Some(Active));
        // A payment does not lift the operator's suspension.
        assert_eq!(Suspended.on_payment(Succeeded, TENANT), None);
        assert_eq!(Suspended.with_holds(BOTH), None);
        assert_eq!(Canceled.on_payment(Exhausted, PAYMENT), None);
    }
}
