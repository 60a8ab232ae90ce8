//! Subscription states.
//!
//! ```text
//! trialing ──trial ends──▶ active ◀──payment recovered── past_due
//!     │                      │  ▲                            │
//!     │                      │  └──tenant reactivated── suspended ◀──tenant suspended / dunning
//!     └──────cancel──────────┴──────────cancel──────────▶ canceled (final)
//! ```
//! `past_due` keeps access (a grace state while dunning runs); `suspended` and `canceled`
//! deny every entitlement.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubStatus {
    Trialing,
    Active,
    PastDue,
    Suspended,
    Canceled,
}

impl SubStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubStatus::Trialing => "trialing",
            SubStatus::Active => "active",
            SubStatus::PastDue => "past_due",
            SubStatus::Suspended => "suspended",
            SubStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<SubStatus> {
        [
            SubStatus::Trialing,
            SubStatus::Active,
            SubStatus::PastDue,
            SubStatus::Suspended,
            SubStatus::Canceled,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Whether usage and plan changes are still accepted.
    pub fn is_live(self) -> bool {
        !matches!(self, SubStatus::Canceled)
    }

    /// The state after the tenant is suspended (`true`) or reactivated (`false`); `None` when
    /// nothing changes.
    pub fn on_tenant_suspension(self, suspended: bool) -> Option<SubStatus> {
        match (self, suspended) {
            (SubStatus::Canceled, _) => None,
            (SubStatus::Suspended, true) => None,
            (_, true) => Some(SubStatus::Suspended),
            (SubStatus::Suspended, false) => Some(SubStatus::Active),
            (_, false) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspension_transitions() {
        use SubStatus::*;
        assert_eq!(Active.on_tenant_suspension(true), Some(Suspended));
        assert_eq!(PastDue.on_tenant_suspension(true), Some(Suspended));
        assert_eq!(Suspended.on_tenant_suspension(true), None);
        assert_eq!(Suspended.on_tenant_suspension(false), Some(Active));
        assert_eq!(Canceled.on_tenant_suspension(true), None);
        assert_eq!(Canceled.on_tenant_suspension(false), None);
        assert_eq!(Trialing.on_tenant_suspension(false), None);
        for s in [Trialing, Active, PastDue, Suspended, Canceled] {
            assert_eq!(SubStatus::parse(s.as_str()), Some(s));
        }
    }
}
