use super::*;
use jsonwebtoken::{EncodingKey, Header, encode};

const JWKS: &str = include_str!("../../../tests/fixtures/jwks.json");
const RSA1: &[u8] = include_bytes!("../../../tests/fixtures/rsa-1.pem");
const RSA1_PUB: &[u8] = include_bytes!("../../../tests/fixtures/rsa-1.pub.pem");
const EC1: &[u8] = include_bytes!("../../../tests/fixtures/ec-1.pem");
const SECRET: &[u8] = b"test-secret-of-sufficient-length-000";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims() -> Claims {
    Claims {
        sub: "u_1".into(),
        tid: "t_1".into(),
        roles: vec!["admin".into()],
        exp: now() + 600,
        nbf: Some(now() - 5),
        iat: Some(now()),
        iss: "saas-platform-dev".into(),
        aud: "saas-platform".into(),
    }
}

fn verifier() -> JwtVerifier {
    let v = JwtVerifier::new(
        JwtSettings {
            issuer: "saas-platform-dev".into(),
            audience: "saas-platform".into(),
            leeway_secs: 30,
        },
        Some(SECRET),
    );
    assert_eq!(v.set_jwks(JWKS).unwrap(), 3);
    v
}

fn hs(c: &Claims) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        c,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn signed(alg: Algorithm, kid: &str, pem: &[u8], c: &Claims) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
        _ => EncodingKey::from_secret(pem),
    };
    encode(&h, c, &key).unwrap()
}

#[test]
fn accepts_valid_tokens_of_each_algorithm() {
    let v = verifier();
    assert_eq!(*v.verify(&hs(&claims())).unwrap(), claims());
    assert_eq!(
        v.verify(&signed(Algorithm::RS256, "rsa-1", RSA1, &claims()))
            .unwrap()
            .tid,
        "t_1"
    );
    assert_eq!(
        v.verify(&signed(Algorithm::ES256, "ec-1", EC1, &claims()))
            .unwrap()
            .sub,
        "u_1"
    );
}

#[test]
fn rejects_time_issuer_and_audience_violations() {
    let v = verifier();
    let mut c = claims();
    c.exp = now() - 120;
    assert_eq!(v.verify(&hs(&c)), Err(AuthError::Expired));
    let mut c = claims();
    c.exp = now() - 10; // inside the 30 s leeway
    assert!(v.verify(&hs(&c)).is_ok());
    let mut c = claims();
    c.nbf = Some(now() + 120);
    assert_eq!(v.verify(&hs(&c)), Err(AuthError::NotYetValid));
    let mut c = claims();
    c.iss = "someone-else".into();
    assert_eq!(v.verify(&hs(&c)), Err(AuthError::WrongIssuer));
    let mut c = claims();
    c.aud = "another-api".into();
    assert_eq!(v.verify(&hs(&c)), Err(AuthError::WrongAudience));
    let mut c = claims();
    for bad in ["", " ", "a,b", "ten ü"] {
        c.tid = bad.into();
        assert!(
            matches!(v.verify(&hs(&c)), Err(AuthError::BadClaims(m)) if m.starts_with("tid")),
            "{bad:?}"
        );
    }
}

#[test]
fn rejects_tampering_none_and_algorithm_confusion() {
    let v = verifier();
    // Tampered payload: swap in another tenant, keep the signature.
    let token = hs(&claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut other = claims();
    other.tid = "t_2".into();
    let forged = hs(&other);
    parts[1] = forged.split('.').nth(1).unwrap();
    assert_eq!(v.verify(&parts.join(".")), Err(AuthError::BadSignature));

    // alg: none, no signature.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64.encode(serde_json::to_vec(&claims()).unwrap());
    assert_eq!(
        v.verify(&format!("{header}.{payload}.")),
        Err(AuthError::Malformed)
    );

    // HS256 "signed" with the RSA public key, pointing at the RSA key id.
    let confused = signed(Algorithm::HS256, "rsa-1", RSA1_PUB, &claims());
    assert!(matches!(
        v.verify(&confused),
        Err(AuthError::AlgorithmNotAllowed(_))
    ));
    // ... and without a kid, the HS secret does not match.
    let t = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(RSA1_PUB),
    )
    .unwrap();
    assert_eq!(v.verify(&t), Err(AuthError::BadSignature));
    // RS256 header on the EC key.
    let t = signed(Algorithm::RS256, "ec-1", RSA1, &claims());
    assert!(matches!(
        v.verify(&t),
        Err(AuthError::AlgorithmNotAllowed(_))
    ));

    assert_eq!(v.verify("not.a.jwt"), Err(AuthError::Malformed));
    assert_eq!(v.verify(""), Err(AuthError::Malformed));
}

#[test]
fn unknown_and_rotated_keys_are_refused() {
    let v = verifier();
    let t = signed(Algorithm::RS256, "rsa-9", RSA1, &claims());
    assert_eq!(v.verify(&t), Err(AuthError::UnknownKey));

    let rsa1 = signed(Algorithm::RS256, "rsa-1", RSA1, &claims());
    assert!(v.verify(&rsa1).is_ok());
    assert!(
        v.verify(&rsa1).is_ok(),
        "answered from the remembered tokens"
    );
    assert_eq!(v.remembered(), 1);
    // Rotate: publish a JWKS without rsa-1; the remembered verification goes with it.
    let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] != "rsa-1");
    v.set_jwks(&set.to_string()).unwrap();
    assert_eq!(v.verify(&rsa1), Err(AuthError::UnknownKey));
}

#[test]
fn a_remembered_token_still_expires() {
    let v = JwtVerifier::new(
        JwtSettings {
            issuer: "saas-platform-dev".into(),
            audience: "saas-platform".into(),
            leeway_secs: 0,
        },
        Some(SECRET),
    );
    let mut c = claims();
    c.exp = now() + 1;
    let t = hs(&c);
    assert!(v.verify(&t).is_ok());
    assert_eq!(v.remembered(), 1);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(v.verify(&t), Err(AuthError::Expired));

    // Not yet valid is re-checked the same way (here: still in the future).
    let mut c = claims();
    c.nbf = Some(now() + 3600);
    let early = hs(&c);
    assert_eq!(v.verify(&early), Err(AuthError::NotYetValid));
    assert_eq!(v.remembered(), 1, "refused tokens are not remembered");
}

#[test]
fn remembered_tokens_are_bounded() {
    let v = verifier();
    for i in 0..=MAX_VERIFIED {
        let mut c = claims();
        c.sub = format!("u_{i}");
        assert!(v.verify(&hs(&c)).is_ok());
        assert!(v.remembered() <= MAX_VERIFIED);
    }
    assert!(v.remembered() >= 1);
}

#[test]
fn skips_keys_it_cannot_use_and_loads_the_rest() {
    let v = verifier();
    let mut doc: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    let keys = doc["keys"].as_array_mut().unwrap();
    let mut enc = keys[0].clone();
    enc["kid"] = "enc-1".into();
    enc["use"] = "enc".into();
    keys.push(enc);
    keys.push(serde_json::json!({"kty": "ML-DSA", "kid": "pq-1", "pub": "AAAA"}));
    keys.push(serde_json::json!({"kty": "OKP", "crv": "Ed448", "kid": "ed-1", "x": "AAAA"}));
    keys.push(serde_json::json!({"kty": "oct", "kid": "sym-1", "k": "c2VjcmV0"}));
    assert_eq!(v.set_jwks(&doc.to_string()).unwrap(), 3);
    assert!(v.set_jwks(r#"{"keys":[]}"#).is_err());
    assert!(
        v.verify(&hs(&claims())).is_ok(),
        "a refused document leaves the keys as they were"
    );
}

#[test]
fn refuses_unpinnable_jwks() {
    let v = verifier();
    assert!(
        v.set_jwks(r#"{"keys":[{"kty":"oct","kid":"x","k":"c2VjcmV0"}]}"#)
            .is_err(),
        "no usable key"
    );
    assert!(
        v.set_jwks(r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#)
            .is_err(),
        "no kid"
    );
    assert!(v.set_jwks("not json").is_err());
}
