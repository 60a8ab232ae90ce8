//! API-key and SCIM-token secrets: 256 random bits, shown once, stored as SHA-256.
//!
//! A slow password hash buys nothing for secrets this long (no dictionary to attack), and a
//! fast hash lets the gateway verify a key with one indexed lookup.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new secret with a recognisable prefix (`sk_`, `scim_`).
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// What is shown to identify a key later: the prefix and the first characters.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_prefixed_and_hash_stably() {
        let a = generate("sk_");
        let b = generate("sk_");
        assert_ne!(a, b);
        assert!(a.starts_with("sk_") && a.len() == 3 + 43);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(display_prefix(&a).len(), 10);
    }
}
