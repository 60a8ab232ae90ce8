//! The entitlement decision: given the subscription, the plan's feature and the period's usage,
//! may the tenant (or one of its users) use the feature now?
//!
//! Order of checks: no subscription → suspended/canceled → a known-deactivated user → feature
//! not in the plan → boolean or limit. Limits are tenant-wide per billing period: a hard limit
//! allows use while `used < limit`; a soft limit always allows and says when it is exceeded.
//! `past_due` and `trialing` keep access. A user the service has not heard of yet (events lag)
//! is not denied; only a user known to be deactivated is.

use pricing::Decimal;
use serde::{Deserialize, Serialize};

use super::plan::{Feature, FeatureValue, LimitKind};
use super::status::SubStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    pub limit: Option<Decimal>,
    pub used: Decimal,
    pub remaining: Option<Decimal>,
    pub reason: &'static str,
}

impl Decision {
    fn deny(reason: &'static str) -> Decision {
        Decision {
            allowed: false,
            limit: None,
            used: Decimal::ZERO,
            remaining: None,
            reason,
        }
    }
}

pub struct Facts<'a> {
    pub status: Option<SubStatus>,
    pub feature: Option<&'a Feature>,
    /// Tenant-wide usage of the limit's metric in the current period.
    pub used: Decimal,
    /// `Some(false)` when the asked-about user is known and deactivated.
    pub user_active: Option<bool>,
}

pub fn decide(f: Facts<'_>) -> Decision {
    match f.status {
        None => return Decision::deny("no_subscription"),
        Some(SubStatus::Suspended) => return Decision::deny("subscription_suspended"),
        Some(SubStatus::Canceled) => return Decision::deny("subscription_canceled"),
        Some(_) => {}
    }
    if f.user_active == Some(false) {
        return Decision::deny("user_inactive");
    }
    let Some(feature) = f.feature else {
        return Decision::deny("not_in_plan");
    };
    match &feature.value {
        FeatureValue::Boolean { enabled: true } => Decision {
            allowed: true,
            reason: "ok",
            ..Decision::deny("ok")
        },
        FeatureValue::Boolean { enabled: false } => Decision::deny("not_in_plan"),
        FeatureValue::Limit { limit, kind, .. } => {
            let remaining = (*limit - f.used).max(Decimal::ZERO);
            let within = f.used < *limit;
            let (allowed, reason) = match (kind, within) {
                (_, true) => (true, "ok"),
                (LimitKind::Hard, false) => (false, "limit_reached"),
                (LimitKind::Soft, false) => (true, "soft_limit_exceeded"),
            };
            Decision {
                allowed,
                limit: Some(*limit),
                used: f.used,
                remaining: Some(remaining),
                reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(kind: LimitKind) -> Feature {
        Feature {
            key: "calls".into(),
            value: FeatureValue::Limit {
                metric: "api_calls".into(),
                limit: Decimal::from(100),
                kind,
            },
        }
    }

    fn facts(f: &Feature, used: i64) -> Facts<'_> {
        Facts {
            status: Some(SubStatus::Active),
            feature: Some(f),
            used: Decimal::from(used),
            user_active: None,
        }
    }

    #[test]
    fn hard_limit_denies_at_the_limit() {
        let f = limit(LimitKind::Hard);
        let d = decide(facts(&f, 99));
        assert!(d.allowed);
        assert_eq!(d.remaining, Some(Decimal::ONE));
        let d = decide(facts(&f, 100));
        assert_eq!((d.allowed, d.reason), (false, "limit_reached"));
        assert_eq!(d.remaining, Some(Decimal::ZERO));
    }

    #[test]
    fn soft_limit_allows_and_flags() {
        let f = limit(LimitKind::Soft);
        let d = decide(facts(&f, 150));
        assert_eq!((d.allowed, d.reason), (true, "soft_limit_exceeded"));
        assert_eq!(d.used, Decimal::from(150));
    }

    #[test]
    fn status_and_user_come_first() {
        let f = limit(LimitKind::Soft);
        for (status, reason) in [
            (None, "no_subscription"),
            (Some(SubStatus::Suspended), "subscription_suspended"),
            (Some(SubStatus::Canceled), "subscription_canceled"),
        ] {
            let d = decide(Facts {
                status,
                ..facts(&f, 0)
            });
            assert_eq!((d.allowed, d.reason), (false, reason));
        }
        for status in [SubStatus::PastDue, SubStatus::Trialing] {
            assert!(
                decide(Facts {
                    status: Some(status),
                    ..facts(&f, 0)
                })
                .allowed
            );
        }
        let d = decide(Facts {
            user_active: Some(false),
            ..facts(&f, 0)
        });
        assert_eq!(d.reason, "user_inactive");
        let d = decide(Facts {
            feature: None,
            ..facts(&f, 0)
        });
        assert_eq!(d.reason, "not_in_plan");
        let off = Feature {
            key: "sso".into(),
            value: FeatureValue::Boolean { enabled: false },
        };
        assert!(!decide(facts(&off, 0)).allowed);
    }
}
