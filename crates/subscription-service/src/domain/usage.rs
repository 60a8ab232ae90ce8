//! Usage record validation, before any lookup: shape, sizes, time window.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use ids::TenantId;
use pricing::Decimal;

use super::is_key;

/// At most this many records per request.
pub const MAX_BATCH: usize = 10_000;
/// Records may be stamped at most this far in the future (clock skew).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);
/// Quantities beyond this are rejected (far above any real meter, far below overflow).
pub const MAX_QUANTITY: i64 = 1_000_000_000_000;

/// Why a record is refused (the wire's `RejectReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    UnknownTenant,
    UnknownMetric,
    TooOld,
    Invalid,
}

/// A record that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub tenant_id: TenantId,
    pub id: String,
    pub user_id: String,
    pub metric: String,
    pub quantity: Decimal,
    pub ts: DateTime<Utc>,
}

/// Raw fields as they arrived.
pub struct RawRecord<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub metric: &'a str,
    pub quantity: &'a str,
    pub ts: Option<DateTime<Utc>>,
}

fn printable_id(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks one record; `now - grace` is the oldest timestamp accepted.
pub fn validate(
    r: &RawRecord<'_>,
    now: DateTime<Utc>,
    grace: Duration,
) -> Result<Record, (Reject, String)> {
    let invalid = |m: String| Err((Reject::Invalid, m));
    if !printable_id(r.id, 128) {
        return invalid("id: 1 to 128 printable ASCII characters".into());
    }
    let Ok(tenant_id) = TenantId::parse(r.tenant_id) else {
        return invalid("tenant_id: 1 to 64 printable ASCII characters, no comma".into());
    };
    if !r.user_id.is_empty() && !printable_id(r.user_id, 64) {
        return invalid("user_id: up to 64 printable ASCII characters".into());
    }
    if !is_key(r.metric) {
        return invalid("metric: lower-case letters, digits, _ - . (1 to 64)".into());
    }
    let quantity = match r.quantity.trim().parse::<Decimal>() {
        Ok(q) if q.is_sign_negative() && !q.is_zero() => {
            return invalid("quantity: must not be negative".into());
        }
        Ok(q) if q > Decimal::from(MAX_QUANTITY) => {
            return invalid(format!("quantity: at most {MAX_QUANTITY}"));
        }
        Ok(q) if q.scale() > 12 => return invalid("quantity: at most 12 decimal places".into()),
        Ok(q) => q.normalize(),
        Err(_) => {
            return invalid(format!(
                "quantity: {:?} is not a decimal number",
                r.quantity
            ));
        }
    };
    let Some(ts) = r.ts else {
        return invalid("timestamp: required".into());
    };
    if ts > now + MAX_FUTURE_SKEW {
        return invalid("timestamp: more than 5 minutes in the future".into());
    }
    if ts < now - grace {
        return Err((
            Reject::TooOld,
            format!(
                "timestamp: older than the {} h grace window",
                grace.num_hours()
            ),
        ));
    }
    Ok(Record {
        tenant_id,
        id: r.id.to_string(),
        user_id: r.user_id.to_string(),
        metric: r.metric.to_string(),
        quantity,
        ts,
    })
}

/// Records as columns, each distinct tenant, user and metric id stored once: how a billing
/// run reads a period's usage (no record ids or timestamps). Record `i` is
/// `(strings[tenant[i]], strings[user[i]], strings[metric[i]], quantity[i])`.
#[derive(Debug, Default)]
pub struct Columns {
    pub strings: Vec<String>,
    pub tenant: Vec<u32>,
    pub user: Vec<u32>,
    pub metric: Vec<u32>,
    pub quantity: Vec<Decimal>,
    index: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    // Rows arrive grouped by tenant and often repeat a user or metric: the last hit of each
    // column skips the hash lookup.
    last: [Option<u32>; 3],
}

impl Columns {
    pub fn push(&mut self, tenant: &str, user: &str, metric: &str, quantity: Decimal) {
        self.push_utf8(
            tenant.as_bytes(),
            user.as_bytes(),
            metric.as_bytes(),
            quantity,
        )
        .expect("a str is UTF-8");
    }

    /// As [`Columns::push`], from raw bytes as Postgres sends them: a string is checked to be
    /// UTF-8 once, the first time the batch sees it, not on every record.
    pub fn push_utf8(
        &mut self,
        tenant: &[u8],
        user: &[u8],
        metric: &[u8],
        quantity: Decimal,
    ) -> Result<(), std::str::Utf8Error> {
        let t = self.intern(0, tenant)?;
        let u = self.intern(1, user)?;
        let m = self.intern(2, metric)?;
        self.tenant.push(t);
        self.user.push(u);
        self.metric.push(m);
        self.quantity.push(quantity);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.quantity.len()
    }

    pub fn is_empty(&self) -> bool {
        self.quantity.is_empty()
    }

    fn intern(&mut self, column: usize, s: &[u8]) -> Result<u32, std::str::Utf8Error> {
        if let Some(i) = self.last[column]
            && self.strings[i as usize].as_bytes() == s
        {
            return Ok(i);
        }
        let i = match self.index.get(s) {
            Some(&i) => i,
            None => {
                let text = std::str::from_utf8(s)?;
                let i = u32::try_from(self.strings.len())
                    .expect("a batch holds at most 8192 records, so at most 24576 strings");
                self.strings.push(text.to_string());
                self.index.insert(s.into(), i);
                i
            }
        };
        self.last[column] = Some(i);
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_strings_must_be_utf8() {
        let mut c = Columns::default();
        assert!(c.push_utf8(b"ten_1", b"", b"calls", Decimal::ONE).is_ok());
        assert!(
            c.push_utf8(b"ten_1", b"\xff\xfe", b"calls", Decimal::ONE)
                .is_err()
        );
        assert!(
            c.push_utf8(b"ten_1", "usr_ü".as_bytes(), b"calls", Decimal::ONE)
                .is_ok()
        );
        assert_eq!(c.strings, ["ten_1", "", "calls", "usr_ü"]);
    }

    #[test]
    fn columns_store_each_id_once() {
        let mut c = Columns::default();
        c.push("ten_1", "usr_1", "api_calls", Decimal::ONE);
        c.push("ten_1", "usr_2", "api_calls", Decimal::TWO);
        c.push("ten_2", "usr_1", "storage", Decimal::TEN);
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.strings,
            ["ten_1", "usr_1", "api_calls", "usr_2", "ten_2", "storage"]
        );
        let row = |i: usize| {
            (
                c.strings[c.tenant[i] as usize].as_str(),
                c.strings[c.user[i] as usize].as_str(),
                c.strings[c.metric[i] as usize].as_str(),
                c.quantity[i],
            )
        };
        assert_eq!(row(0), ("ten_1", "usr_1", "api_calls", Decimal::ONE));
        assert_eq!(row(1), ("ten_1", "usr_2", "api_calls", Decimal::TWO));
        assert_eq!(row(2), ("ten_2", "usr_1", "storage", Decimal::TEN));
    }

    fn raw<'a>(quantity: &'a str, ts: Option<DateTime<Utc>>) -> RawRecord<'a> {
        RawRecord {
            id: "evt-1",
            tenant_id: "ten_1",
            user_id: "",
            metric: "api_calls",
            quantity,
            ts,
        }
    }

    #[test]
    fn accepts_and_rejects() {
        let now = Utc::now();
        let grace = Duration::hours(72);
        let ok = validate(&raw("1.50", Some(now)), now, grace).unwrap();
        assert_eq!(ok.quantity, Decimal::new(15, 1));
        for (q, ts) in [
            ("-1", Some(now)),
            ("abc", Some(now)),
            ("1e400", Some(now)),
            ("10000000000000", Some(now)),
            ("1", None),
            ("1", Some(now + Duration::hours(1))),
        ] {
            assert_eq!(
                validate(&raw(q, ts), now, grace).unwrap_err().0,
                Reject::Invalid,
                "{q} {ts:?}"
            );
        }
        let old = validate(&raw("1", Some(now - Duration::hours(73))), now, grace);
        assert_eq!(old.unwrap_err().0, Reject::TooOld);
        let mut r = raw("1", Some(now));
        r.metric = "API Calls";
        assert!(validate(&r, now, grace).is_err());
        r.metric = "api_calls";
        r.id = "has space";
        assert!(validate(&r, now, grace).is_err());
    }
}
