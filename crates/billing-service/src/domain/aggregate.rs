//! Folding usage records into totals. Workers fold their batches independently and the
//! partial totals merge by addition, so the order records arrive in does not matter.
//!
//! A run keys its totals by interned ids ([`Names`]): a batch maps its strings to ids once,
//! then folds and merges records by integer triples, and ids become names again only once,
//! for the write.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

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
    by_tenant(sums)
}

/// Totals of distinct (tenant, user, metric) names as one delta per tenant, tenants ascending.
fn by_tenant<'a>(
    totals: impl IntoIterator<Item = ((&'a str, &'a str, &'a str), Total)>,
) -> Vec<TenantDelta> {
    let mut tenants: BTreeMap<&str, BTreeMap<(String, String), Total>> = BTreeMap::new();
    for ((tenant, user, metric), total) in totals {
        tenants
            .entry(tenant)
            .or_default()
            .insert((user.to_owned(), metric.to_owned()), total);
    }
    tenants
        .into_iter()
        .map(|(tenant, users)| TenantDelta {
            tenant_id: tenant.to_string(),
            users,
        })
        .collect()
}

/// Each distinct tenant, user and metric id of a run once, as a dense integer.
#[derive(Debug, Default)]
pub struct Names {
    ids: HashMap<String, u32, foldhash::fast::RandomState>,
    names: Vec<String>,
}

impl Names {
    /// The id of `name`, assigned on first sight.
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct ids in a run");
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

/// A (tenant, user, metric) key as ids of the run's [`Names`].
pub type Key = (u32, u32, u32);

/// Per-key totals, keys as ids.
pub type KeyTotals = HashMap<Key, Total, BuildHasherDefault<KeyHasher>>;

/// Hashes a [`Key`] in a few instructions (multiply-rotate, as rustc's FxHash). Keys are ids the
/// run assigns itself, never input, so a keyed, flood-resistant hash would buy nothing here.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl KeyHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Adds `part` into `all` (the smaller map into the larger).
pub fn merge(all: &mut KeyTotals, mut part: KeyTotals) {
    if part.len() > all.len() {
        std::mem::swap(all, &mut part);
    }
    for (k, t) in part {
        all.entry(k).or_default().add(t);
    }
}

/// `totals` with names again: one delta per tenant, tenants ascending.
pub fn named(totals: KeyTotals, names: &Names) -> Vec<TenantDelta> {
    // Distinct ids are distinct names, so the named keys are distinct too.
    by_tenant(
        totals
            .into_iter()
            .map(|((t, u, m), total)| ((names.name(t), names.name(u), names.name(m)), total)),
    )
}

/// A batch of records the pipeline's workers fold.
pub trait Batch: Send + 'static {
    /// Records in the batch (for throughput and progress).
    fn records(&self) -> usize;
    /// Adds the batch's records into `totals`, their ids interned in the run's `names`.
    fn fold_into(&self, names: &Mutex<Names>, totals: &mut KeyTotals);

    /// Per-key totals of the batch alone.
    fn fold_keys(&self, names: &Mutex<Names>) -> KeyTotals {
        let mut totals = KeyTotals::default();
        self.fold_into(names, &mut totals);
        totals
    }
}

impl Batch for Vec<Usage> {
    fn records(&self) -> usize {
        self.len()
    }

    /// Folds by borrowed strings, then interns each distinct key once.
    fn fold_into(&self, names: &Mutex<Names>, totals: &mut KeyTotals) {
        let mut sums: HashMap<(&str, &str, &str), Total> = HashMap::new();
        for r in self {
            let t = sums
                .entry((r.tenant_id.as_str(), r.user_id.as_str(), r.metric.as_str()))
                .or_default();
            t.records += 1;
            t.quantity += r.quantity;
        }
        let mut names = names.lock().unwrap_or_else(|p| p.into_inner());
        for ((t, u, m), total) in sums {
            totals
                .entry((names.id(t), names.id(u), names.id(m)))
                .or_default()
                .add(total);
        }
    }
}

/// Records as columns, as the subscription service streams them: each distinct id once in
/// `strings`, record `i` as indexes `tenant[i]`, `user[i]`, `metric[i]` into it and
/// `quantity[i]`. Checked when built, so folding cannot go out of bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    strings: Vec<String>,
    tenant: Vec<u32>,
    user: Vec<u32>,
    metric: Vec<u32>,
    quantity: Vec<Decimal>,
}

impl Columns {
    pub fn new(
        strings: Vec<String>,
        tenant: Vec<u32>,
        user: Vec<u32>,
        metric: Vec<u32>,
        quantity: Vec<Decimal>,
    ) -> Result<Self, String> {
        let n = quantity.len();
        if tenant.len() != n || user.len() != n || metric.len() != n {
            return Err(format!(
                "columns of different lengths: {} tenants, {} users, {} metrics, {n} quantities",
                tenant.len(),
                user.len(),
                metric.len()
            ));
        }
        if let Some(i) = tenant
            .iter()
            .chain(&user)
            .chain(&metric)
            .find(|&&i| i as usize >= strings.len())
        {
            return Err(format!(
                "string index {i} out of range ({} strings)",
                strings.len()
            ));
        }
        Ok(Columns {
            strings,
            tenant,
            user,
            metric,
            quantity,
        })
    }
}

impl Batch for Columns {
    fn records(&self) -> usize {
        self.quantity.len()
    }

    /// Maps the batch's strings to run ids once, then sums records by id triple: no string is
    /// hashed or copied per record. A string listed twice maps to one id, so its records add.
    fn fold_into(&self, names: &Mutex<Names>, sums: &mut KeyTotals) {
        let ids: Vec<u32> = {
            let mut names = names.lock().unwrap_or_else(|p| p.into_inner());
            self.strings.iter().map(|s| names.id(s)).collect()
        };
        for (i, q) in self.quantity.iter().enumerate() {
            let key = (
                ids[self.tenant[i] as usize],
                ids[self.user[i] as usize],
                ids[self.metric[i] as usize],
            );
            let t = sums.entry(key).or_default();
            t.records += 1;
            t.quantity += *q;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `records` as columns, with every string listed twice and the copies used alternately
    /// (a sender that does not de-duplicate must still fold to the same totals).
    fn columns(records: &[Usage]) -> Columns {
        let mut strings = Vec::new();
        let mut index = |s: &str, i: usize| {
            let at = match strings.iter().position(|x| x == s) {
                Some(at) => at,
                None => {
                    strings.push(s.to_string());
                    strings.push(s.to_string());
                    strings.len() - 2
                }
            };
            (at + i % 2) as u32
        };
        let (mut t, mut u, mut m, mut q) = (vec![], vec![], vec![], vec![]);
        for (i, r) in records.iter().enumerate() {
            t.push(index(&r.tenant_id, i));
            u.push(index(&r.user_id, i));
            m.push(index(&r.metric, i));
            q.push(r.quantity);
        }
        Columns::new(strings, t, u, m, q).unwrap()
    }

    proptest! {
        #[test]
        fn columns_fold_like_records(
            rows in proptest::collection::vec((0..3u8, 0..4u8, 0..2u8, 0..1_000_000i64, 0..4u32), 0..200)
        ) {
            let records: Vec<Usage> = rows
                .iter()
                .map(|&(t, u, m, q, scale)| Usage {
                    tenant_id: format!("t{t}"),
                    user_id: if u == 0 { String::new() } else { format!("u{u}") },
                    metric: format!("m{m}"),
                    quantity: Decimal::new(q, scale),
                })
                .collect();
            let c = columns(&records);
            prop_assert_eq!(c.records(), records.len());
            // Through one run's names, in two batches each way, as the pipeline merges them.
            let names = Mutex::new(Names::default());
            let half = records.len() / 2;
            let mut all = KeyTotals::default();
            merge(&mut all, columns(&records[..half]).fold_keys(&names));
            merge(&mut all, records[half..].to_vec().fold_keys(&names));
            merge(&mut all, c.fold_keys(&names));
            let doubled: Vec<Usage> = records.iter().chain(&records).cloned().collect();
            let names = names.into_inner().unwrap();
            prop_assert_eq!(named(all, &names), fold(&doubled));
        }
    }

    #[test]
    fn columns_out_of_range_or_ragged_are_refused() {
        let s = || vec!["t".to_string(), "u".to_string()];
        let one = Decimal::ONE;
        assert!(Columns::new(s(), vec![0], vec![1], vec![2], vec![one]).is_err());
        assert!(Columns::new(s(), vec![0, 0], vec![1], vec![1], vec![one]).is_err());
        assert!(Columns::new(s(), vec![0], vec![1], vec![1], vec![]).is_err());
        assert!(Columns::new(s(), vec![0], vec![1], vec![1], vec![one]).is_ok());
    }

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
