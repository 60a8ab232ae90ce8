//! Our callback verification against signatures made by the PSPs' own official SDKs
//! (`fixtures/psp_signatures.json`, made by `fixtures/make_psp_fixtures.py` with the PyPI
//! `stripe` and `Adyen` packages), and Adyen batches applied all-or-nothing.

mod common;

use payment_service::domain::signature::{
    AdyenSigned, SignatureError, adyen_verify, stripe_verify,
};
use payment_service::error::PaymentError;
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/psp_signatures.json")).unwrap()
}

#[test]
fn stripe_sdk_signatures_verify_and_tampering_is_caught() {
    let f = &fixture()["stripe"];
    let secret = f["secret"].as_str().unwrap();
    let t = f["timestamp"].as_i64().unwrap();
    let payload = f["payload"].as_str().unwrap().as_bytes();
    let header = f["header"].as_str().unwrap();
    assert_eq!(
        stripe_verify(&[secret], Some(header), payload, t + 10, 300),
        Ok(())
    );
    // A rolling secret: the header carries a v1 per secret; either secret alone verifies.
    let rotated = f["rotated_header"].as_str().unwrap();
    let old = f["old_secret"].as_str().unwrap();
    assert_eq!(
        stripe_verify(&[old], Some(rotated), payload, t, 300),
        Ok(())
    );
    assert_eq!(
        stripe_verify(&[secret], Some(rotated), payload, t, 300),
        Ok(())
    );
    let mut changed = payload.to_vec();
    changed[10] ^= 1;
    assert_eq!(
        stripe_verify(&[secret], Some(header), &changed, t, 300),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        stripe_verify(&[secret], Some(header), payload, t + 301, 300),
        Err(SignatureError::Stale(300))
    );
}

fn items(notification: &Value) -> Vec<(AdyenSigned, String)> {
    notification["notificationItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let item = &w["NotificationRequestItem"];
            let sig = item["additionalData"]["hmacSignature"].as_str().unwrap();
            (
                serde_json::from_value(item.clone()).unwrap(),
                sig.to_string(),
            )
        })
        .collect()
}

#[test]
fn adyen_sdk_signatures_verify_item_by_item() {
    let f = &fixture()["adyen"];
    let key = f["hmac_key"].as_str().unwrap();
    for (i, (item, sig)) in items(&f["notification"]).iter().enumerate() {
        assert_eq!(adyen_verify(&[key], item, Some(sig), i), Ok(()), "item {i}");
    }
    let forged = items(&f["forged_second_item"]);
    assert_eq!(
        adyen_verify(&[key], &forged[0].0, Some(&forged[0].1), 0),
        Ok(())
    );
    assert_eq!(
        adyen_verify(&[key], &forged[1].0, Some(&forged[1].1), 1),
        Err(SignatureError::ItemMismatch(1))
    );
}

#[tokio::test]
async fn an_adyen_batch_with_one_forged_item_is_refused_whole() {
    let f = fixture();
    let key = f["adyen"]["hmac_key"].as_str().unwrap().to_string();
    let e = common::env(&[("ADYEN_HMAC_KEYS", key.as_str())], false).await;
    let forged = f["adyen"]["forged_second_item"].to_string();
    let r = e.callbacks.adyen(forged.as_bytes()).await;
    assert!(
        matches!(
            r,
            Err(PaymentError::BadSignature(SignatureError::ItemMismatch(1)))
        ),
        "{r:?}"
    );
    assert_eq!(
        e.callbacks_seen().await,
        0,
        "not even the genuine first item"
    );
    let genuine = f["adyen"]["notification"].to_string();
    let first = e.callbacks.adyen(genuine.as_bytes()).await.unwrap();
    assert!(first.processed);
    assert_eq!(e.callbacks_seen().await, 2);
    let replay = e.callbacks.adyen(genuine.as_bytes()).await.unwrap();
    assert!(!replay.processed);
    e.stop().await;
}
