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
