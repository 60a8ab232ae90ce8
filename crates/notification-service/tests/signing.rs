//! Our Standard Webhooks signatures against one made by the independent `standardwebhooks`
//! library (`fixtures/standard_webhooks.json`, made by `fixtures/make_webhook_fixture.py`).

use notification_service::domain::signing::{Secret, signature_header, verify};

#[test]
fn our_signature_is_the_libraries_and_theirs_verifies_here() {
    let f: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/standard_webhooks.json")).unwrap();
    let secret = Secret::parse(f["secret"].as_str().unwrap()).unwrap();
    let id = f["msg_id"].as_str().unwrap();
    let t = f["timestamp"].as_i64().unwrap();
    let body = f["payload"].as_str().unwrap().as_bytes();
    let theirs = f["signature"].as_str().unwrap();
    assert_eq!(secret.sign(id, t, body), theirs);
    assert!(verify(&secret, theirs, id, t, body));
    // Beside a second secret (rotation), theirs is still one of the signatures sent.
    let header = signature_header(&[Secret::generate(), secret.clone()], id, t, body);
    assert!(header.split(' ').any(|s| s == theirs));
    let mut changed = body.to_vec();
    changed[3] ^= 1;
    assert!(!verify(&secret, theirs, id, t, &changed));
}
