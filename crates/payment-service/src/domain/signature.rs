//! PSP callback signatures, checked before anything in a callback is believed.
//!
//! * **Stripe**: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, where each `v1` is
//!   HMAC-SHA256 over `"<t>.<raw body>"` keyed with the endpoint secret (`whsec_…`, used as
//!   bytes). Any `v1` matching any configured secret passes (Stripe sends one per live secret
//!   while a secret rolls); `t` must be within the tolerance of now, so a captured callback
//!   cannot be replayed later.
//! * **Adyen**: every notification item carries `additionalData.hmacSignature`, base64 of
//!   HMAC-SHA256 over `pspReference:originalReference:merchantAccountCode:merchantReference:
//!   value:currency:eventCode:success`, keyed with the hex-decoded HMAC key. Each item is
//!   checked: one forged item refuses the whole batch.
//!
//! Comparisons are constant-time (`Mac::verify_slice`).

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a callback is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature")]
    Missing,
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
    #[error("signature timestamp outside the {0} s tolerance")]
    Stale(i64),
    #[error("signature does not match")]
    Mismatch,
    #[error("item {0}'s signature does not match")]
    ItemMismatch(usize),
}

fn mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// The `Stripe-Signature` value for `body` signed at `t` with `secret`.
pub fn stripe_sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut m = mac(secret.as_bytes());
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("t={t},v1={}", hex::encode(m.finalize().into_bytes()))
}

/// Checks a `Stripe-Signature` header against `secrets` at `now` (unix seconds).
pub fn stripe_verify(
    secrets: &[&str],
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("expected key=value pairs"))?;
        match k {
            "t" if t.is_none() => {
                t = Some(
                    v.parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t is not a unix time"))?,
                )
            }
            "t" => return Err(SignatureError::Malformed("more than one t")),
            // A malformed v1 cannot match; skip it rather than refuse the others.
            "v1" => v1.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed("no t"))?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed("no v1 signature"));
    }
    if (now - t).abs() > tolerance_secs {
        return Err(SignatureError::Stale(tolerance_secs));
    }
    for secret in secrets {
        let mut m = mac(secret.as_bytes());
        m.update(t.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        for sig in &v1 {
            if m.clone().verify_slice(sig).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

/// An Adyen notification item's signed fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AdyenSigned {
    pub psp_reference: String,
    pub original_reference: String,
    pub merchant_account_code: String,
    pub merchant_reference: String,
    pub amount: AdyenAmount,
    pub event_code: String,
    /// `"true"` or `"false"`, as a string.
    pub success: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AdyenAmount {
    pub value: i64,
    pub currency: String,
}

impl AdyenSigned {
    fn signing_string(&self) -> String {
        [
            self.psp_reference.as_str(),
            &self.original_reference,
            &self.merchant_account_code,
            &self.merchant_reference,
            &self.amount.value.to_string(),
            &self.amount.currency,
            &self.event_code,
            &self.success,
        ]
        .join(":")
    }
}

fn adyen_key(hex_key: &str) -> Result<Vec<u8>, SignatureError> {
    hex::decode(hex_key).map_err(|_| SignatureError::Malformed("the HMAC key is not hex"))
}

/// The `hmacSignature` of one item.
pub fn adyen_sign(hex_key: &str, item: &AdyenSigned) -> Result<String, SignatureError> {
    let mut m = mac(&adyen_key(hex_key)?);
    m.update(item.signing_string().as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes()))
}

/// Checks one item's `hmacSignature` (`index` names it in the error) against `keys`.
pub fn adyen_verify(
    keys: &[&str],
    item: &AdyenSigned,
    signature: Option<&str>,
    index: usize,
) -> Result<(), SignatureError> {
    let sig = signature.ok_or(SignatureError::Missing)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .map_err(|_| SignatureError::ItemMismatch(index))?;
    let text = item.signing_string();
    for key in keys {
        let mut m = mac(&adyen_key(key)?);
        m.update(text.as_bytes());
        if m.verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::ItemMismatch(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";

    #[test]
    fn stripe_signatures_round_trip_and_refuse_tampering() {
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
        let header = stripe_sign(SECRET, 1_700_000_000, body);
        assert_eq!(
            stripe_verify(&[SECRET], Some(&header), body, 1_700_000_100, 300),
            Ok(())
        );
        let forged = br#"{"id":"evt_1","type":"payment_intent.succeeded" }"#;
        assert_eq!(
            stripe_verify(&[SECRET], Some(&header), forged, 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            stripe_verify(&["whsec_other"], Some(&header), body, 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            stripe_verify(&[SECRET], Some(&header), body, 1_700_000_301, 300),
            Err(SignatureError::Stale(300))
        );
        assert_eq!(
            stripe_verify(&[SECRET], None, body, 1_700_000_000, 300),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn stripe_rotation_accepts_any_v1_and_any_secret() {
        let body = b"{}";
        let good = stripe_sign(SECRET, 1_700_000_000, body);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=1700000000,v1={},v1={v1},v0=abc", "00".repeat(32));
        assert_eq!(
            stripe_verify(
                &["whsec_old", SECRET],
                Some(&header),
                body,
                1_700_000_000,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn stripe_malformed_headers_are_refused() {
        for h in ["", "t=abc,v1=00", "v1=00", "t=1700000000", "t=1,t=2,v1=00"] {
            assert!(
                matches!(
                    stripe_verify(&[SECRET], Some(h), b"", 1_700_000_000, 300),
                    Err(SignatureError::Malformed(_))
                ),
                "{h:?}"
            );
        }
    }

    #[test]
    fn adyen_items_round_trip_and_a_changed_field_fails() {
        let key = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
        let mut item = AdyenSigned {
            psp_reference: "7914073381342284".into(),
            merchant_account_code: "TestMerchant".into(),
            merchant_reference: "pay_1".into(),
            amount: AdyenAmount {
                value: 1130,
                currency: "EUR".into(),
            },
            event_code: "AUTHORISATION".into(),
            success: "true".into(),
            ..AdyenSigned::default()
        };
        let sig = adyen_sign(key, &item).unwrap();
        assert_eq!(adyen_verify(&[key], &item, Some(&sig), 0), Ok(()));
        item.amount.value = 1;
        assert_eq!(
            adyen_verify(&[key], &item, Some(&sig), 1),
            Err(SignatureError::ItemMismatch(1))
        );
    }
}
