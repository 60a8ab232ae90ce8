//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): a secret is `whsec_`
//! followed by base64 of at least 24 random bytes; a message is signed as
//! `v1,` + base64(HMAC-SHA256(secret bytes, "<webhook-id>.<webhook-timestamp>.<body>")). While
//! a secret rotates, the message carries one signature per active secret, space-separated in
//! `webhook-signature`, so a receiver holding either verifies it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A signing secret, as its `whsec_…` text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A secret that is not `whsec_` + base64 of enough bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a webhook secret (whsec_ + base64 of 24 to 64 bytes)")]
pub struct BadSecret;

impl Secret {
    /// A fresh secret of 32 random bytes.
    pub fn generate() -> Secret {
        let mut key = Vec::with_capacity(32);
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Secret(key)
    }

    pub fn parse(text: &str) -> Result<Secret, BadSecret> {
        let b64 = text.strip_prefix("whsec_").ok_or(BadSecret)?;
        let key = STANDARD.decode(b64).map_err(|_| BadSecret)?;
        if (24..=64).contains(&key.len()) {
            Ok(Secret(key))
        } else {
            Err(BadSecret)
        }
    }

    /// `whsec_…`, the form shown to the tenant once and stored.
    pub fn expose(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        m.update(id.as_bytes());
        m.update(b".");
        m.update(timestamp.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        m
    }

    /// This secret's `v1,<base64>` signature of a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let sig = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(sig))
    }
}

/// The `webhook-signature` value: one signature per active secret.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any `v1` signature in `header` is `secret`'s (what a receiver does).
pub fn verify(secret: &Secret, header: &str, id: &str, timestamp: i64, body: &[u8]) -> bool {
    header.split(' ').any(|part| {
        part.strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|sig| secret.mac(id, timestamp, body).verify_slice(&sig).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let s = Secret::generate();
        assert_eq!(Secret::parse(&s.expose()), Ok(s.clone()));
        assert!(format!("{s:?}").contains("redacted"));
        for bad in ["", "whsec_", "sk_abc", "whsec_!!!!", "whsec_c2hvcnQ="] {
            assert_eq!(Secret::parse(bad), Err(BadSecret), "{bad}");
        }
    }

    #[test]
    fn rotation_signs_with_both_and_either_verifies() {
        let (old, new) = (Secret::generate(), Secret::generate());
        let header = signature_header(&[old.clone(), new.clone()], "msg_1", 1_700_000_000, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        for s in [&old, &new] {
            assert!(verify(s, &header, "msg_1", 1_700_000_000, b"{}"));
        }
        assert!(!verify(&old, &header, "msg_1", 1_700_000_001, b"{}"));
        assert!(!verify(&old, &header, "msg_2", 1_700_000_000, b"{}"));
        assert!(!verify(
            &Secret::generate(),
            &header,
            "msg_1",
            1_700_000_000,
            b"{}"
        ));
    }
}
