//! Bearer JWT verification with pinned algorithms.
//!
//! Each key carries the one algorithm it may verify: the HS256 shared secret (local
//! development) verifies only HS256; keys from a JWKS verify only their own RS256 or ES256.
//! A token whose header asks for anything else is rejected before any signature check, which
//! closes the classic holes: `alg: none`, and an HS256 token "signed" with an RSA public key.
//! `iss`, `aud`, `exp` and `nbf` are checked with a small leeway.
//!
//! Verified tokens are remembered by their exact text: a client sends the same token with
//! every request until it expires, and verifying one (base64, the header and claims parsed
//! twice by jsonwebtoken, an HMAC or RSA check) was the costliest step of the gateway's edge.
//! Signature, issuer, audience and claims are properties of the text and the key, so a hit
//! only re-checks `exp` and `nbf` against the clock. Replacing the JWKS forgets everything
//! (a retired key must stop working at once), and the memory is bounded by
//! [`MAX_VERIFIED`] tokens.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};

/// The claims the platform reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Tenant id.
    pub tid: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    pub iss: String,
    pub aud: String,
}

/// Why a token was refused. The message is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token signed with an unknown key id")]
    UnknownKey,
    #[error("algorithm {0} is not allowed for this key")]
    AlgorithmNotAllowed(String),
    #[error("invalid signature")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("invalid claims: {0}")]
    BadClaims(String),
}

/// A key, the single algorithm it verifies, and the checks its tokens get — built once, not
/// per request.
struct PinnedKey {
    alg: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl PinnedKey {
    fn new(alg: Algorithm, key: DecodingKey, settings: &JwtSettings) -> Arc<Self> {
        let mut validation = Validation::new(alg);
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Arc::new(PinnedKey {
            alg,
            key,
            validation,
        })
    }
}

/// How many verified tokens are remembered; when full, expired ones are dropped, and if that
/// frees nothing, all of them (only validly signed tokens ever get in).
pub const MAX_VERIFIED: usize = 10_000;

/// What the verifier trusts and checks.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub leeway_secs: u64,
}

/// Verifies bearer tokens against an HS256 secret and/or a JWKS.
#[derive(Clone)]
pub struct JwtVerifier {
    settings: JwtSettings,
    hs256: Option<Arc<PinnedKey>>,
    jwks: Arc<RwLock<HashMap<String, Arc<PinnedKey>>>>,
    verified: Arc<RwLock<HashMap<Box<str>, Arc<Claims>>>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<String> = self
            .jwks
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .field("hs256", &self.hs256.is_some())
            .field("kids", &kids)
            .finish()
    }
}

/// A JWKS document could not be used.
#[derive(Debug, thiserror::Error)]
#[error("JWKS: {0}")]
pub struct JwksError(pub String);

impl JwtVerifier {
    pub fn new(settings: JwtSettings, hs256_secret: Option<&[u8]>) -> Self {
        JwtVerifier {
            hs256: hs256_secret
                .map(|s| PinnedKey::new(Algorithm::HS256, DecodingKey::from_secret(s), &settings)),
            settings,
            jwks: Arc::new(RwLock::new(HashMap::new())),
            verified: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// Replaces the JWKS keys (key rotation: publish the new key, then retire the old one).
    /// Only signing keys with a `kid` that are RSA (RS256) or EC P-256 (ES256) are used;
    /// others — encryption keys, other types, keys this library cannot read — are skipped
    /// with a warning, so one exotic key at the identity provider does not block rotation.
    /// A document that is not a JWKS, or has no usable key, changes nothing.
    pub fn set_jwks(&self, json: &str) -> Result<usize, JwksError> {
        #[derive(serde::Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let set: RawSet = serde_json::from_str(json).map_err(|e| JwksError(e.to_string()))?;
        let mut keys = HashMap::new();
        let mut skipped = Vec::new();
        for raw in set.keys {
            match self.usable_key(raw) {
                Ok((kid, key)) => {
                    keys.insert(kid, key);
                }
                Err(why) => skipped.push(why),
            }
        }
        if !skipped.is_empty() {
            tracing::warn!(skipped = ?skipped, "JWKS: keys skipped");
        }
        if keys.is_empty() {
            return Err(JwksError(format!(
                "no usable key (RS256 or ES256 with a kid): {}",
                skipped.join("; ")
            )));
        }
        let n = keys.len();
        *self.jwks.write().unwrap_or_else(|p| p.into_inner()) = keys;
        self.verified
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(n)
    }

    /// One JWKS entry as a pinned key, or why it is not used.
    fn usable_key(&self, raw: serde_json::Value) -> Result<(String, Arc<PinnedKey>), String> {
        let kid = raw
            .get("kid")
            .and_then(|k| k.as_str())
            .map(str::to_string)
            .ok_or_else(|| "a key has no kid".to_string())?;
        if raw.get("use").and_then(|u| u.as_str()) == Some("enc") {
            return Err(format!("key {kid}: an encryption key"));
        }
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(raw).map_err(|e| format!("key {kid}: {e}"))?;
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => return Err(format!("key {kid}: only RS256 and ES256 keys are used")),
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("key {kid}: {e}"))?;
        Ok((kid, PinnedKey::new(alg, key, &self.settings)))
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, AuthError> {
        let known = self
            .verified
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        if let Some(claims) = known {
            self.check_times(&claims)?;
            return Ok(claims);
        }
        let claims = Arc::new(self.verify_text(token)?);
        self.remember(token, &claims);
        Ok(claims)
    }

    /// The time checks jsonwebtoken makes, for a token verified earlier: `exp` has not passed
    /// and `nbf` has come, each give or take the leeway.
    fn check_times(&self, claims: &Claims) -> Result<(), AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        let leeway = self.settings.leeway_secs;
        if claims.exp < now.saturating_sub(leeway) {
            return Err(AuthError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + leeway) {
            return Err(AuthError::NotYetValid);
        }
        Ok(())
    }

    fn remember(&self, token: &str, claims: &Arc<Claims>) {
        let mut verified = self.verified.write().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= MAX_VERIFIED {
            verified.retain(|_, c| self.check_times(c).is_ok());
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
        }
        verified.insert(token.into(), Arc::clone(claims));
    }

    /// How many verified tokens are remembered (for tests and the curious).
    pub fn remembered(&self) -> usize {
        self.verified.read().map(|m| m.len()).unwrap_or(0)
    }

    /// The full check: header, pinned key and algorithm, signature, claims.
    fn verify_text(&self, token: &str) -> Result<Claims, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        let pinned = match &header.kid {
            Some(kid) => self
                .jwks
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(kid)
                .cloned()
                .ok_or(AuthError::UnknownKey)?,
            None => self.hs256.clone().ok_or(AuthError::UnknownKey)?,
        };
        if header.alg != pinned.alg {
            return Err(AuthError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
        }
        let data = decode::<Claims>(token, &pinned.key, &pinned.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => AuthError::Expired,
                K::ImmatureSignature => AuthError::NotYetValid,
                K::InvalidIssuer => AuthError::WrongIssuer,
                K::InvalidAudience => AuthError::WrongAudience,
                K::InvalidSignature => AuthError::BadSignature,
                K::InvalidAlgorithm => AuthError::AlgorithmNotAllowed(format!("{:?}", header.alg)),
                K::MissingRequiredClaim(c) => AuthError::BadClaims(format!("missing {c}")),
                K::Json(_) | K::InvalidClaimFormat(_) => {
                    AuthError::BadClaims("claims do not match the expected shape".into())
                }
                _ => AuthError::Malformed,
            }
        })?;
        let claims = data.claims;
        // The tenant travels on in gRPC metadata; services accept only well-formed ids.
        if ids::TenantId::parse(&claims.tid).is_err() {
            return Err(AuthError::BadClaims(
                "tid is not a tenant id (1 to 64 printable ASCII characters, no comma)".into(),
            ));
        }
        if claims.sub.trim().is_empty() {
            return Err(AuthError::BadClaims("sub is empty".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests;
