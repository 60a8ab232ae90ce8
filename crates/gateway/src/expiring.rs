//! Answers of other services remembered for a while (API keys, tenant status, plan quotas):
//! a map whose entries expire, bounded so that a flood of new keys (junk API keys, made-up
//! tenants) cannot grow it — when full, expired entries go first, and if none has, all do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone)]
pub struct Expiring<V> {
    map: Arc<Mutex<HashMap<String, (V, Instant)>>>,
    max: usize,
}

impl<V: Clone> Expiring<V> {
    pub fn new(max: usize) -> Self {
        Expiring {
            map: Arc::new(Mutex::new(HashMap::new())),
            max,
        }
    }

    /// The value under `key` if it has not expired by `now`.
    pub fn get(&self, key: &str, now: Instant) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.clone())
    }

    /// Remembers `value` under `key` until `until`.
    pub fn insert(&self, key: &str, value: V, until: Instant, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max {
            map.retain(|_, (_, u)| *u > now);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(key.to_string(), (value, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_expire_and_the_map_stays_bounded() {
        let m = Expiring::new(3);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        m.insert("a", 1, later, t0);
        assert_eq!(m.get("a", t0), Some(1));
        assert_eq!(m.get("a", later), None, "expired at its deadline");
        m.insert("zero", 2, t0, t0);
        assert_eq!(m.get("zero", t0), None, "a zero lifetime remembers nothing");
        m.insert("b", 3, later, t0);
        m.insert("c", 4, later, t0);
        // Full: the expired `zero` goes, the live ones stay.
        assert_eq!(m.get("a", t0), Some(1));
        m.insert("d", 5, later, t0);
        assert!(m.map.lock().unwrap().len() <= 3);
        assert_eq!(m.get("d", t0), Some(5));
    }
}
