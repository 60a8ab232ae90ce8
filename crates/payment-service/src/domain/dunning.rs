//! Dunning schedules: after an automatic payment fails, retries at fixed offsets from the
//! first failure (default 1, 3, 5 and 7 days), each at the same hour of the day, until one
//! succeeds or the last fails (exhausted). The schedule is a setting; the clock is the
//! caller's, so tests move time instead of waiting.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Retry offsets from the first failure, increasing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(Vec<Duration>);

impl Schedule {
    /// Parses `"1d,3d,5d,7d"`: each offset a number with `d`, `h`, `m` or `s`.
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let mut out = Vec::new();
        for part in s.split(',') {
            let d = platform::config::duration(part)?;
            if out.last().is_some_and(|last| *last >= d) || d.is_zero() {
                return Err("offsets must be positive and increasing".into());
            }
            out.push(d);
        }
        if out.len() > 20 {
            return Err("at most 20 retries".into());
        }
        Ok(Schedule(out))
    }

    pub fn retries(&self) -> usize {
        self.0.len()
    }

    /// When retry `n` (0-based) is due for dunning that started at `started`; `None` after
    /// the last.
    pub fn due(&self, started: DateTime<Utc>, n: usize) -> Option<DateTime<Utc>> {
        self.0
            .get(n)
            .map(|d| started + chrono::Duration::from_std(*d).expect("offsets are bounded"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_and_its_steps() {
        let s = Schedule::parse("1d,3d,5d,7d").unwrap();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(s.retries(), 4);
        assert_eq!(s.due(t0, 0), Some(t0 + chrono::Duration::days(1)));
        assert_eq!(s.due(t0, 3), Some(t0 + chrono::Duration::days(7)));
        assert_eq!(s.due(t0, 4), None);
        assert_eq!(
            Schedule::parse("2s, 4s").unwrap().due(t0, 1),
            Some(t0 + chrono::Duration::seconds(4))
        );
        for bad in ["", "1", "1w", "3d,1d", "0s", "1d,1d"] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
    }
}
