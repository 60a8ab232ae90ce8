//! One total order for multi-row locks.
//!
//! Deadlock needs a cycle: T1 holds A and waits for B while T2 holds B and waits for A. If
//! every transaction takes its locks in one global order, no cycle can form. The order here:
//! by tenant, and within a tenant the tenant's own row first, then its users ascending, each
//! key once.
//!
//! Two ways to lock, two orders to respect:
//! - rows (`SELECT ... FOR UPDATE`): lock in [`LockKey`] order ([`canonical_lock_keys`]);
//! - advisory locks (`pg_advisory_xact_lock(bigint)`): lock in ascending *id* order
//!   ([`advisory_lock_ids`]). Ids are hashes, so their order differs from the keys' order; and
//!   two keys could share an id, so the ids themselves must be what is sorted and de-duplicated.
//!   CockroachDB has no advisory locks: use the row form there.

/// A lockable key: a tenant's summary row (`user: None`) or one of its users' rows.
///
/// The derived order compares the tenant first and puts `None` (the tenant row) before any
/// user, which is exactly the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockKey {
    pub tenant: String,
    pub user: Option<String>,
}

impl LockKey {
    pub fn tenant(tenant: impl AsRef<str>) -> Self {
        LockKey {
            tenant: tenant.as_ref().to_string(),
            user: None,
        }
    }

    pub fn user(tenant: impl AsRef<str>, user: impl AsRef<str>) -> Self {
        LockKey {
            tenant: tenant.as_ref().to_string(),
            user: Some(user.as_ref().to_string()),
        }
    }

    /// A stable 64-bit id for `pg_advisory_xact_lock`: FNV-1a over a namespaced encoding, so it
    /// is the same in every process and Rust version (std's hasher is not), and a tenant key
    /// never encodes like a user key.
    pub fn advisory_id(&self) -> i64 {
        let mut h = Fnv1a::new();
        match &self.user {
            None => {
                h.write(b"tenant\0");
                h.write(self.tenant.as_bytes());
            }
            Some(user) => {
                h.write(b"user\0");
                h.write(self.tenant.as_bytes());
                h.write(b"\0");
                h.write(user.as_bytes());
            }
        }
        // Reinterpret the bits: Postgres takes a signed bigint.
        h.finish() as i64
    }
}

struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The keys to lock for work on `tenant` touching `users`, in canonical order: the tenant row
/// first, then the users sorted and de-duplicated.
pub fn canonical_lock_keys<T, U, I>(tenant: T, users: I) -> Vec<LockKey>
where
    T: AsRef<str>,
    U: AsRef<str>,
    I: IntoIterator<Item = U>,
{
    let mut keys = vec![LockKey::tenant(&tenant)];
    keys.extend(users.into_iter().map(|u| LockKey::user(&tenant, u)));
    sort_canonical(&mut keys);
    keys
}

/// Sorts any set of keys (possibly of several tenants) into canonical order, removing
/// duplicates.
pub fn sort_canonical(keys: &mut Vec<LockKey>) {
    keys.sort_unstable();
    keys.dedup();
}

/// The advisory-lock ids for `keys`, ascending and de-duplicated: the order to call
/// `pg_advisory_xact_lock` in.
pub fn advisory_lock_ids<'a>(keys: impl IntoIterator<Item = &'a LockKey>) -> Vec<i64> {
    let mut ids: Vec<i64> = keys.into_iter().map(LockKey::advisory_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tenant_row_comes_first_then_sorted_unique_users() {
        let keys = canonical_lock_keys("concurflow", ["u3", "u1", "u3", "u2"]);
        let users: Vec<_> = keys.iter().map(|k| k.user.as_deref()).collect();
        assert_eq!(users, [None, Some("u1"), Some("u2"), Some("u3")]);
        assert!(keys.iter().all(|k| k.tenant == "concurflow"));
    }

    #[test]
    fn advisory_ids_are_stable_and_namespaced() {
        // Pinned values: changing the hash would let old and new replicas lock different ids.
        assert_eq!(
            LockKey::tenant("concurflow").advisory_id(),
            LockKey::tenant("concurflow").advisory_id()
        );
        assert_eq!(LockKey::tenant("").advisory_id(), fnv(b"tenant\0") as i64);
        assert_eq!(
            LockKey::user("t", "u").advisory_id(),
            fnv(b"user\0t\0u") as i64
        );
        assert_ne!(
            LockKey::tenant("a").advisory_id(),
            LockKey::user("a", "").advisory_id()
        );
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(
            LockKey::user("ab", "c").advisory_id(),
            LockKey::user("a", "bc").advisory_id()
        );
    }

    /// Reference FNV-1a 64, byte by byte as the spec states it.
    fn fnv(bytes: &[u8]) -> u64 {
        let mut h: u64 = 14695981039346656037;
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(1099511628211);
        }
        h
    }

    #[test]
    fn fnv_matches_published_test_vector() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
        let mut h = Fnv1a::new();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }

    proptest! {
        #[test]
        fn order_is_independent_of_input_order(
            tenant in "[a-z]{1,6}",
            users in proptest::collection::vec("[a-z0-9]{0,4}", 0..40),
            seed in any::<u64>(),
        ) {
            let a = canonical_lock_keys(&tenant, &users);
            // Same keys, shuffled and with duplicates added.
            let mut shuffled = users.clone();
            shuffled.extend(users.iter().take(5).cloned());
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let b = canonical_lock_keys(&tenant, &shuffled);
            prop_assert_eq!(&a, &b);
            // Strictly increasing: a total order with no duplicates, tenant row first.
            prop_assert!(a.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(a[0].user.as_ref(), None);
            let ids = advisory_lock_ids(&a);
            prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(ids, advisory_lock_ids(&b));
        }

        #[test]
        fn sort_canonical_is_a_total_order_across_tenants(
            keys in proptest::collection::vec(("[a-c]{1,2}", proptest::option::of("[a-c]{0,2}")), 0..40)
        ) {
            let mut ks: Vec<LockKey> = keys.iter().map(|(t, u)| LockKey { tenant: t.clone(), user: u.clone() }).collect();
            let mut rev = ks.clone();
            rev.reverse();
            sort_canonical(&mut ks);
            sort_canonical(&mut rev);
            prop_assert_eq!(&ks, &rev);
            prop_assert!(ks.windows(2).all(|w| w[0] < w[1]));
            // Each tenant's own row precedes its users.
            for (i, k) in ks.iter().enumerate() {
                if k.user.is_none() {
                    prop_assert!(ks[..i].iter().all(|p| p.tenant != k.tenant));
                }
            }
        }
    }
}
