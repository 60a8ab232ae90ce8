//! When a delivery is tried again, and what an answer means. The schedule (each delay counted
//! from the attempt before) is 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; each delay after the
//! first gets up to 10% of jitter (derived from the message id, so a replica computes the same
//! time, and endpoints that failed together do not all come back at once). `Retry-After` on a
//! 429/502/503/504 is honoured when it asks for longer.

use std::time::Duration;

/// Delays before attempt 1, 2, … 8 (`WEBHOOK_RETRY_SCHEDULE` may set others).
pub const SCHEDULE: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The delays before each attempt of a round; the first is immediate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(Vec<Duration>);

impl Default for Schedule {
    fn default() -> Self {
        Schedule(SCHEDULE.to_vec())
    }
}

impl Schedule {
    /// Parses `"0s,5s,5m,30m,2h,5h,10h,10h"`: the delay before each attempt, the first 0.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let delays = text
            .split(',')
            .map(platform::config::duration)
            .collect::<Result<Vec<_>, _>>()?;
        match delays.first() {
            Some(first) if first.is_zero() => {}
            _ => return Err("the first attempt is immediate: start with 0s".into()),
        }
        if delays.len() > 20 {
            return Err("at most 20 attempts".into());
        }
        Ok(Schedule(delays))
    }

    pub fn attempts(&self) -> usize {
        self.0.len()
    }

    /// The delay before attempt `next` (1-based; attempt 1 is immediate), or `None` once the
    /// schedule is spent. `asked` is a `Retry-After` that outlasts the schedule's delay.
    pub fn delay(
        &self,
        message_id: &str,
        next: usize,
        asked: Option<Duration>,
    ) -> Option<Duration> {
        let base = *self.0.get(next.checked_sub(1)?)?;
        let jitter = if base.is_zero() {
            Duration::ZERO
        } else {
            // FNV-1a of the id and attempt: stable, spread.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in message_id.bytes().chain(next.to_le_bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            base.mul_f64((h % 1000) as f64 / 10_000.0)
        };
        Some((base + jitter).max(asked.unwrap_or_default()))
    }
}

/// What an endpoint's answer means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// `410 Gone`: the endpoint is disabled; nothing more is sent to it.
    Gone,
    /// Try again after at least this long (`Retry-After`, when it was given and honoured).
    Retry(Option<Duration>),
}

/// An HTTP answer (`None`: no answer — timeout, refused connection) and its `Retry-After`.
pub fn verdict(status: Option<u16>, retry_after: Option<&str>) -> Verdict {
    match status {
        Some(200..=299) => Verdict::Delivered,
        Some(410) => Verdict::Gone,
        Some(429 | 502 | 503 | 504) => Verdict::Retry(retry_after.and_then(parse_retry_after)),
        _ => Verdict::Retry(None),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from webhook receivers and read as
/// absent); capped at a day.
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_mean_what_the_spec_says() {
        assert_eq!(verdict(Some(204), None), Verdict::Delivered);
        assert_eq!(verdict(Some(410), None), Verdict::Gone);
        assert_eq!(
            verdict(Some(503), Some("120")),
            Verdict::Retry(Some(Duration::from_secs(120)))
        );
        // Retry-After only where the spec honours it.
        assert_eq!(verdict(Some(500), Some("120")), Verdict::Retry(None));
        assert_eq!(verdict(Some(404), None), Verdict::Retry(None));
        assert_eq!(verdict(None, None), Verdict::Retry(None));
        assert_eq!(verdict(Some(429), Some("soon")), Verdict::Retry(None));
    }

    #[test]
    fn the_schedule_with_bounded_stable_jitter() {
        let s = Schedule::default();
        assert_eq!(s.delay("msg_1", 1, None), Some(Duration::ZERO));
        for (n, base) in SCHEDULE.iter().enumerate().skip(1) {
            let d = s.delay("msg_1", n + 1, None).unwrap();
            assert!(
                d >= *base && d <= base.mul_f64(1.1),
                "attempt {}: {d:?}",
                n + 1
            );
            assert_eq!(s.delay("msg_1", n + 1, None), Some(d), "stable");
        }
        assert_eq!(s.delay("msg_1", 9, None), None);
        assert_eq!(s.delay("msg_1", 0, None), None);
        // Two messages failing together come back apart.
        assert_ne!(s.delay("msg_1", 4, None), s.delay("msg_2", 4, None));
        // A longer Retry-After wins; a shorter one does not shorten the schedule.
        let hour = Duration::from_secs(3600);
        assert_eq!(s.delay("msg_1", 2, Some(hour)), Some(hour));
        assert!(s.delay("msg_1", 3, Some(Duration::from_secs(1))).unwrap() >= SCHEDULE[2]);
    }

    #[test]
    fn schedules_from_settings() {
        assert_eq!(
            Schedule::parse("0s,5s,5m,30m,2h,5h,10h,10h"),
            Ok(Schedule::default())
        );
        assert_eq!(Schedule::parse("0s,1s").unwrap().attempts(), 2);
        assert!(Schedule::parse("5s,1m").is_err(), "the first is immediate");
        assert!(Schedule::parse("0s,soon").is_err());
    }
}
