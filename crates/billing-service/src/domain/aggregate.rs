//! Folding usage records into totals. Workers fold their batches independently and the
//! partial totals merge by addition, so the order records arrive in does not matter.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;

/// A usage record as billing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub tenant_id: String,
    pub user_id: String,
    pub metric: String,
    pub quantity: Decimal,
}

/// Records and quantity of one (user, metric) or one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Total {
    pub records: i64,
    pub quantity: Decimal,
}

impl Total {
    pub fn add(&mut self, other: Total) {
        self.records += other.records;
        self.quantity += other.quantity;
    }
}

/// One tenant's part of a batch: per (user, metric) totals, keys sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantDelta {
    pub tenant_id: String,
    pub users: BTreeMap<(String, String), Total>,
}

impl TenantDelta {
    /// The tenant row's share: the sum over its users.
    pub fn total(&self) -> Total {
        let mut t = Total::default();
        for v in self.users.values() {
            t.add(*v);
        }
        t
    }

    /// The distinct users, ascending.
    pub fn user_ids(&self) -> impl Iterator<Item = &str> {
        let mut last: Option<&str> = None;
        self.users.keys().filter_map(move |(u, _)| {
            let fresh = last != Some(u.as_str());
            last = Some(u.as_str());
            fresh.then_some(u.as_str())
        })
    }
}

/// Folds `records` into one delta per tenant, tenants ascending. Keys are borrowed while
/// folding and copied once per distinct key, not once per record.
pub fn fold<'a>(records: impl IntoIterator<Item = &'a Usage>) -> Vec<TenantDelta> {
    let mut sums: HashMap<(&str, &str, &str), Total> = HashMap::new();
    for r in records {
        let t = sums
            .entry((r.tenant_id.as_str(), r.user_id.as_str(), r.metric.as_str()))
            .or_default();
        t.records += 1;
        t.quantity += r.quantity;
    }
    let mut by_tenant: BTreeMap<&str, BTreeMap<(String, String), Total>> = BTreeMap::new();
    for ((tenant, user, metric), total) in sums {
        by_tenant
            .entry(tenant)
            .or_default()
            .insert((user.to_string(), metric.to_string()), total);
    }
    by_tenant
        .into_iter()
        .map(|(tenant, users)| TenantDelta {
            tenant_id: tenant.to_string(),
            users,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(t: &str, user: &str, m: &str, q: i64) -> Usage {
        Usage {
            tenant_id: t.into(),
            user_id: user.into(),
            metric: m.into(),
            quantity: Decimal::from(q),
        }
    }

    #[test]
    fn folds_per_tenant_user_metric_in_key_order() {
        let rs = [
            u("b", "u2", "calls", 1),
            u("a", "u2", "calls", 2),
            u("a", "u1", "calls", 3),
            u("a", "u2", "calls", 4),
            u("a", "u2", "gb", 5),
        ];
        let d = fold(&rs);
        assert_eq!(
            d.iter().map(|t| t.tenant_id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let a = &d[0];
        assert_eq!(
            a.users[&("u2".into(), "calls".into())],
            Total {
                records: 2,
                quantity: Decimal::from(6)
            }
        );
        assert_eq!(a.user_ids().collect::<Vec<_>>(), ["u1", "u2"]);
        assert_eq!(
            a.total(),
            Total {
                records: 4,
                quantity: Decimal::from(14)
            }
        );
    }
}
