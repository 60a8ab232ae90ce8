//! Lock-free throughput counting: a total, and a sliding window of per-second buckets.
//!
//! Each bucket packs (second, count) into one `AtomicU64`, so a bucket rolls over to a new
//! second and counts in a single compare-and-swap: no lock, and no count lost between a
//! reset and an add. The window rate is what an autoscaler wants ("how fast now"); the overall
//! rate is what a run result reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const SECOND_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;
/// Marks a bucket never written (a second ~194 days in would alias it; harmless).
const EMPTY: u64 = SECOND_MASK;

/// A point-in-time reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThroughputSnapshot {
    pub total: u64,
    pub elapsed: Duration,
    /// Operations per second since the tracker started.
    pub overall_per_sec: f64,
    /// Operations per second over the sliding window (or the time elapsed, if shorter).
    pub window_per_sec: f64,
}

/// Counts operations from any number of threads.
#[derive(Debug)]
pub struct ThroughputTracker {
    start: Instant,
    total: AtomicU64,
    buckets: Box<[AtomicU64]>,
}

impl ThroughputTracker {
    /// A tracker with a 10-second window, starting now.
    pub fn new() -> Self {
        Self::with_window(Duration::from_secs(10), Instant::now())
    }

    /// A tracker whose window is `window` (whole seconds, at least 1), starting at `start`.
    pub fn with_window(window: Duration, start: Instant) -> Self {
        let n = window.as_secs().max(1) as usize;
        ThroughputTracker {
            start,
            total: AtomicU64::new(0),
            buckets: (0..n).map(|_| AtomicU64::new(pack(EMPTY, 0))).collect(),
        }
    }

    pub fn record(&self, n: u64) {
        self.record_at(n, Instant::now());
    }

    /// Records `n` operations at `now` (injectable for tests).
    pub fn record_at(&self, n: u64, now: Instant) {
        self.total.fetch_add(n, Ordering::Relaxed);
        let sec = self.second(now);
        let bucket = &self.buckets[(sec % self.buckets.len() as u64) as usize];
        let mut cur = bucket.load(Ordering::Relaxed);
        loop {
            let (s, c) = unpack(cur);
            let next = if s == sec & SECOND_MASK {
                pack(s, (c + n).min(COUNT_MASK))
            } else {
                pack(sec, n.min(COUNT_MASK))
            };
            match bucket.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> ThroughputSnapshot {
        self.snapshot_at(Instant::now())
    }

    /// The reading at `now` (injectable for tests).
    pub fn snapshot_at(&self, now: Instant) -> ThroughputSnapshot {
        let elapsed = now.saturating_duration_since(self.start);
        let total = self.total();
        let secs = elapsed.as_secs_f64();
        let overall_per_sec = if secs > 0.0 { total as f64 / secs } else { 0.0 };
        let sec = self.second(now);
        let n = self.buckets.len() as u64;
        let oldest = sec.saturating_sub(n - 1);
        let in_window: u64 = self
            .buckets
            .iter()
            .map(|b| unpack(b.load(Ordering::Acquire)))
            .filter(|(s, _)| *s != EMPTY && (oldest..=sec).any(|w| w & SECOND_MASK == *s))
            .map(|(_, c)| c)
            .sum();
        // The window is n-1 whole seconds plus the current partial one, or everything so far
        // when the tracker is younger than the window.
        let covered = if secs < n as f64 {
            secs
        } else {
            (n - 1) as f64 + secs.fract()
        };
        let window_per_sec = if covered > 0.0 {
            in_window as f64 / covered
        } else {
            0.0
        };
        ThroughputSnapshot {
            total,
            elapsed,
            overall_per_sec,
            window_per_sec,
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs()
    }
}

impl Default for ThroughputTracker {
    fn default() -> Self {
        Self::new()
    }
}

fn pack(sec: u64, count: u64) -> u64 {
    ((sec & SECOND_MASK) << COUNT_BITS) | (count & COUNT_MASK)
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> COUNT_BITS, v & COUNT_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_records_are_all_counted() {
        let t = Arc::new(ThroughputTracker::new());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        t.record(1);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(t.total(), 800_000);
    }

    #[test]
    fn window_forgets_old_seconds_and_overall_does_not() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let t = ThroughputTracker::with_window(Duration::from_secs(5), start);
        // 1000 ops in each of the first 10 seconds, then silence.
        for s in 0..10 {
            t.record_at(1000, at(s * 1000 + 500));
        }
        let r = t.snapshot_at(at(9_999));
        assert_eq!(r.total, 10_000);
        assert!((r.overall_per_sec - 1000.0).abs() < 1.0, "{r:?}");
        // The window holds seconds 5..=9: 5000 ops over ~5 s.
        assert!((r.window_per_sec - 1000.0).abs() < 10.0, "{r:?}");
        // Ten seconds later the window is empty; overall halves.
        let r = t.snapshot_at(at(19_999));
        assert_eq!(r.window_per_sec, 0.0);
        assert!((r.overall_per_sec - 500.0).abs() < 1.0, "{r:?}");
    }

    #[test]
    fn buckets_roll_over_without_losing_counts() {
        let start = Instant::now();
        let t = ThroughputTracker::with_window(Duration::from_secs(2), start);
        t.record_at(5, start);
        t.record_at(7, start + Duration::from_secs(2)); // same bucket index, new second
        t.record_at(1, start + Duration::from_millis(2_500));
        let r = t.snapshot_at(start + Duration::from_millis(2_999));
        assert_eq!(r.total, 13);
        // Seconds 1 and 2 are in the window; second 0's 5 ops are not.
        assert!((r.window_per_sec - 8.0 / 1.999).abs() < 0.01, "{r:?}");
    }
}
