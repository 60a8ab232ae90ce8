//! Plan definitions: prices (from `pricing`) and features, validated as a whole.

use std::collections::BTreeSet;

use pricing::{ChargeKind, Currency, Decimal, Interval, Price};
use serde::{Deserialize, Serialize};

use super::{Invalid, key};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Use beyond the limit is denied.
    Hard,
    /// Use beyond the limit is allowed and flagged.
    Soft,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeatureValue {
    Boolean {
        enabled: bool,
    },
    /// A cap on a metric's usage per billing period, tenant-wide.
    Limit {
        metric: String,
        limit: Decimal,
        kind: LimitKind,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    pub key: String,
    pub value: FeatureValue,
}

/// Everything an edit can change; a version is an immutable `PlanDef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanDef {
    pub name: String,
    pub currency: Currency,
    pub interval: Interval,
    pub trial_days: u32,
    pub fixed_seats: bool,
    /// `(per_sec, burst)` of the tenant-wide API rate limit; `None` = the gateway's default.
    pub rate_limit: Option<(u32, u32)>,
    pub prices: Vec<Price>,
    pub features: Vec<Feature>,
    pub archived: bool,
}

pub const MAX_PRICES: usize = 50;
pub const MAX_FEATURES: usize = 200;
pub const MAX_TRIAL_DAYS: u32 = 730;

impl PlanDef {
    pub fn validate(&self) -> Result<(), Invalid> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(Invalid::new(
                "name",
                "1 to 200 characters, no control characters",
            ));
        }
        if self.trial_days > MAX_TRIAL_DAYS {
            return Err(Invalid::new(
                "trial_days",
                format!("at most {MAX_TRIAL_DAYS}"),
            ));
        }
        if let Some((per_sec, burst)) = self.rate_limit {
            for (field, v) in [("rate_limit.per_sec", per_sec), ("rate_limit.burst", burst)] {
                if !(1..=1_000_000).contains(&v) {
                    return Err(Invalid::new(field, format!("1 to 1000000 (got {v})")));
                }
            }
        }
        if self.prices.len() > MAX_PRICES {
            return Err(Invalid::new("prices", format!("at most {MAX_PRICES}")));
        }
        if self.features.len() > MAX_FEATURES {
            return Err(Invalid::new("features", format!("at most {MAX_FEATURES}")));
        }
        let mut ids = BTreeSet::new();
        for p in &self.prices {
            key("prices.id", &p.id)?;
            if !ids.insert(p.id.as_str()) {
                return Err(Invalid::new(
                    "prices.id",
                    format!("{:?} appears twice", p.id),
                ));
            }
            if let Some(m) = &p.metric {
                key("prices.metric", m)?;
            }
            p.validate()?;
        }
        let mut keys = BTreeSet::new();
        for f in &self.features {
            key("features.key", &f.key)?;
            if !keys.insert(f.key.as_str()) {
                return Err(Invalid::new(
                    "features.key",
                    format!("{:?} appears twice", f.key),
                ));
            }
            if let FeatureValue::Limit { metric, limit, .. } = &f.value {
                key("features.limit.metric", metric)?;
                if limit.is_sign_negative() {
                    return Err(Invalid::new("features.limit.limit", "must not be negative"));
                }
            }
        }
        Ok(())
    }

    /// The metrics this plan counts (metered prices and metered limits); usage of any other
    /// metric is rejected for its subscribers.
    pub fn metrics(&self) -> BTreeSet<String> {
        let priced = self.prices.iter().filter_map(|p| p.metric.clone());
        let limited = self.features.iter().filter_map(|f| match &f.value {
            FeatureValue::Limit { metric, .. } => Some(metric.clone()),
            FeatureValue::Boolean { .. } => None,
        });
        priced.chain(limited).collect()
    }

    pub fn feature(&self, key: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.key == key)
    }

    /// A period's recurring charges (flat and seat prices) at `seats`, in minor units: what a
    /// plan change prorates.
    pub fn recurring_minor(&self, seats: u32) -> Result<i64, pricing::PricingError> {
        let mut total: i64 = 0;
        for p in &self.prices {
            let q = match p.kind {
                ChargeKind::Flat => Decimal::ONE,
                ChargeKind::Seat => Decimal::from(seats),
                ChargeKind::Metered => continue,
            };
            total = total
                .checked_add(p.charge(q)?.amount_minor)
                .ok_or(pricing::PricingError::Overflow)?;
        }
        Ok(total)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pricing::PriceModel;

    pub fn sample() -> PlanDef {
        PlanDef {
            name: "Pro".into(),
            currency: Currency::USD,
            interval: Interval::Month,
            trial_days: 14,
            fixed_seats: false,
            rate_limit: Some((100, 200)),
            prices: vec![
                Price {
                    id: "base".into(),
                    kind: ChargeKind::Flat,
                    metric: None,
                    model: PriceModel::Flat {
                        amount: Decimal::from(4900),
                    },
                    included_quantity: Decimal::ZERO,
                    minimum_amount_minor: None,
                    billing: None,
                },
                Price {
                    id: "seats".into(),
                    kind: ChargeKind::Seat,
                    metric: None,
                    model: PriceModel::PerUnit {
                        unit_amount: Decimal::from(1000),
                    },
                    included_quantity: Decimal::from(3),
                    minimum_amount_minor: None,
                    billing: None,
                },
                Price {
                    id: "calls".into(),
                    kind: ChargeKind::Metered,
                    metric: Some("api_calls".into()),
                    model: PriceModel::PerUnit {
                        unit_amount: Decimal::new(1, 1),
                    },
                    included_quantity: Decimal::ZERO,
                    minimum_amount_minor: None,
                    billing: None,
                },
            ],
            features: vec![
                Feature {
                    key: "sso".into(),
                    value: FeatureValue::Boolean { enabled: true },
                },
                Feature {
                    key: "storage".into(),
                    value: FeatureValue::Limit {
                        metric: "storage_gb".into(),
                        limit: Decimal::from(100),
                        kind: LimitKind::Soft,
                    },
                },
            ],
            archived: false,
        }
    }

    #[test]
    fn metrics_and_recurring() {
        let p = sample();
        p.validate().unwrap();
        assert_eq!(
            p.metrics().into_iter().collect::<Vec<_>>(),
            ["api_calls", "storage_gb"]
        );
        // 49.00 base + (5 − 3 included) × 10.00.
        assert_eq!(p.recurring_minor(5).unwrap(), 4900 + 2000);
        assert_eq!(p.recurring_minor(0).unwrap(), 4900);
    }

    #[test]
    fn invalid_plans_name_the_field() {
        type Edit = Box<dyn Fn(&mut PlanDef)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|p| p.name = " ".into()), "name"),
            (Box::new(|p| p.trial_days = 10_000), "trial_days"),
            (
                Box::new(|p| p.rate_limit = Some((0, 10))),
                "rate_limit.per_sec",
            ),
            (
                Box::new(|p| p.rate_limit = Some((10, 0))),
                "rate_limit.burst",
            ),
            (Box::new(|p| p.prices[1].id = "base".into()), "prices.id"),
            (Box::new(|p| p.prices[0].id = "Base!".into()), "prices.id"),
            (
                Box::new(|p| p.prices[2].metric = Some("API calls".into())),
                "prices.metric",
            ),
            (
                Box::new(|p| p.features[1].key = "sso".into()),
                "features.key",
            ),
            (
                Box::new(|p| p.prices[1].included_quantity = Decimal::from(-1)),
                "included_quantity",
            ),
        ];
        for (edit, field) in cases {
            let mut p = sample();
            edit(&mut p);
            assert_eq!(p.validate().unwrap_err().field, field);
        }
    }
}
