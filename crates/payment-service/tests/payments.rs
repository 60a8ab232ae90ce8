//! Payment intents against a real Postgres and the sandbox PSP as a separate HTTP server:
//! each state transition, callbacks that repeat or overtake answers, an answer lost after the
//! PSP charged, refunds.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{SANDBOX_SECRET, env, until};
use ids::{PaymentIntentId, PaymentMethodId, TenantId};
use payment_service::actions::Create;
use payment_service::domain::intent::{CaptureMethod, Outcome, Status};
use payment_service::domain::provider::Provider;
use payment_service::domain::signature::stripe_sign;
use payment_service::error::PaymentError;
use payment_service::store::intents::{self, IntentRow};
use payment_service::store::methods::MethodRow;
use payment_service::store::refunds::RefundStatus;

fn tenant() -> TenantId {
    TenantId::parse("ten_payments").unwrap()
}

async fn attach(e: &common::Env, token: &str, default: bool) -> MethodRow {
    e.engine
        .attach(&tenant(), Provider::Sandbox, token, default)
        .await
        .unwrap()
}

fn create(amount: i64, method: Option<&PaymentMethodId>, capture: CaptureMethod) -> Create {
    Create {
        tenant: tenant(),
        invoice: None,
        amount_minor: amount,
        currency: "EUR".into(),
        method: method.cloned(),
        capture,
        confirm: true,
        idempotency_key: None,
    }
}

async fn intent(e: &common::Env, id: &PaymentIntentId) -> IntentRow {
    let mut conn = e.pool.acquire().await.unwrap();
    intents::get(&mut conn, id, None, false)
        .await
        .unwrap()
        .unwrap()
}

async fn attempts(e: &common::Env, id: &PaymentIntentId) -> Vec<intents::AttemptRow> {
    let mut conn = e.pool.acquire().await.unwrap();
    intents::attempts(&mut conn, std::slice::from_ref(id))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_decline_then_another_card_pays_once() {
    let e = env(&[], true).await;
    let poor = attach(&e, "pm_card_chargeDeclinedInsufficientFunds", false).await;
    assert!(poor.is_default, "the first method becomes the default");
    assert_eq!((poor.brand.as_str(), poor.last4.as_str()), ("visa", "9995"));

    let i = e
        .engine
        .create(create(5831, None, CaptureMethod::Automatic))
        .await
        .unwrap();
    assert_eq!(i.status, Status::RequiresPaymentMethod);
    assert_eq!(i.last_failure_code.as_deref(), Some("insufficient_funds"));

    let visa = attach(&e, "pm_card_visa", false).await;
    let paid = e
        .engine
        .confirm(Some(&tenant()), &i.id, Some(&visa.id), Some("confirm-1"))
        .await
        .unwrap();
    assert_eq!(paid.status, Status::Succeeded);
    assert_eq!(paid.amount_received, 5831);
    assert_eq!(paid.last_failure_code, None);

    // The same request again answers the same attempt; another one is refused.
    let again = e
        .engine
        .confirm(Some(&tenant()), &i.id, Some(&visa.id), Some("confirm-1"))
        .await
        .unwrap();
    assert_eq!(again.status, Status::Succeeded);
    let refused = e
        .engine
        .confirm(Some(&tenant()), &i.id, Some(&visa.id), Some("confirm-2"))
        .await;
    assert!(
        matches!(refused, Err(PaymentError::FailedPrecondition(_))),
        "{refused:?}"
    );
    let tries = attempts(&e, &i.id).await;
    assert_eq!(
        tries.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [Outcome::Declined, Outcome::Succeeded]
    );
    assert_eq!(tries[0].failure_code.as_deref(), Some("insufficient_funds"));

    // The sandbox's callbacks (the decline, the success) arrive after the answers and
    // change nothing.
    until("both callbacks", || async {
        (e.callbacks_seen().await >= 2).then_some(())
    })
    .await;
    assert_eq!(intent(&e, &i.id).await.status, Status::Succeeded);
    assert_eq!(
        e.published("payment.intent.succeeded", i.id.as_str()).await,
        1
    );
    assert_eq!(e.published("payment.intent.failed", i.id.as_str()).await, 1);
    let pi = paid.psp_intent_id.unwrap();
    assert_eq!(e.sandbox.charges().get(&pi), Some(&1));
    e.stop().await;
}

#[tokio::test]
async fn three_d_secure_waits_for_the_customer() {
    let e = env(&[], true).await;
    attach(&e, "pm_card_threeDSecureRequired", true).await;
    let i = e
        .engine
        .create(create(1000, None, CaptureMethod::Automatic))
        .await
        .unwrap();
    assert_eq!(i.status, Status::RequiresAction);
    let url = i.next_action_url.clone().unwrap();
    assert!(url.contains("/sandbox/3ds/"), "{url}");
    assert!(
        e.sandbox
            .authenticate(i.psp_intent_id.as_deref().unwrap(), true)
            .await
    );
    let done = until("the success callback", || async {
        let r = intent(&e, &i.id).await;
        (r.status == Status::Succeeded).then_some(r)
    })
    .await;
    assert_eq!(done.amount_received, 1000);
    assert_eq!(done.next_action_url, None);
    assert_eq!(
        e.published("payment.intent.succeeded", i.id.as_str()).await,
        1
    );
    e.stop().await;
}

#[tokio::test]
async fn manual_capture_then_partial_and_full_refunds() {
    let e = env(&[], true).await;
    attach(&e, "pm_card_visa", true).await;
    let i = e
        .engine
        .create(create(1000, None, CaptureMethod::Manual))
        .await
        .unwrap();
    assert_eq!(i.status, Status::RequiresCapture);
    assert_eq!(i.amount_capturable, 1000);
    assert!(matches!(
        e.engine.capture(Some(&tenant()), &i.id, 1001).await,
        Err(PaymentError::Invalid {
            field: "amount_to_capture",
            ..
        })
    ));
    let captured = e.engine.capture(Some(&tenant()), &i.id, 600).await.unwrap();
    assert_eq!(captured.status, Status::Succeeded);
    assert_eq!(captured.amount_received, 600);
    assert_eq!(captured.amount_capturable, 0);

    let first = e
        .engine
        .refund(Some(&tenant()), &i.id, 200, "goodwill", Some("r-1".into()))
        .await
        .unwrap();
    assert_eq!(first.status, RefundStatus::Succeeded);
    let replay = e
        .engine
        .refund(Some(&tenant()), &i.id, 200, "goodwill", Some("r-1".into()))
        .await
        .unwrap();
    assert_eq!(replay.id, first.id, "the same key is the same refund");
    let rest = e
        .engine
        .refund(Some(&tenant()), &i.id, 0, "", None)
        .await
        .unwrap();
    assert_eq!(rest.amount_minor, 400);
    assert!(matches!(
        e.engine.refund(Some(&tenant()), &i.id, 1, "", None).await,
        Err(PaymentError::Invalid {
            field: "amount",
            ..
        })
    ));
    until("the refund callbacks", || async {
        (e.callbacks_seen().await >= 4).then_some(())
    })
    .await;
    let after = intent(&e, &i.id).await;
    assert_eq!(after.amount_refunded, 600);
    assert_eq!(e.published("payment.refunded", i.id.as_str()).await, 2);
    e.stop().await;
}

#[tokio::test]
async fn cancel_releases_an_authorization_and_is_final() {
    let e = env(&[], false).await;
    attach(&e, "pm_card_visa", true).await;
    let i = e
        .engine
        .create(create(700, None, CaptureMethod::Manual))
        .await
        .unwrap();
    let canceled = e.engine.cancel(Some(&tenant()), &i.id).await.unwrap();
    assert_eq!(canceled.status, Status::Canceled);
    assert_eq!(canceled.amount_capturable, 0);
    let again = e.engine.cancel(Some(&tenant()), &i.id).await.unwrap();
    assert_eq!(again.status, Status::Canceled);
    assert!(matches!(
        e.engine.capture(Some(&tenant()), &i.id, 0).await,
        Err(PaymentError::FailedPrecondition(_))
    ));
    // Another tenant's intent is not found.
    let other = TenantId::parse("ten_other").unwrap();
    assert!(matches!(
        e.engine.cancel(Some(&other), &i.id).await,
        Err(PaymentError::NotFound(_))
    ));
    e.stop().await;
}

#[tokio::test]
async fn an_answer_lost_after_the_charge_never_charges_twice() {
    // The client gives up after 200 ms; the sandbox charges at once and answers after 1.5 s.
    let e = env(
        &[
            ("PSP_TIMEOUT_MS", "200"),
            ("PSP_RETRIES", "0"),
            ("PAYMENT_RECONCILE_SECS", "1"),
        ],
        false,
    )
    .await;
    attach(&e, "pm_card_visa", true).await;
    e.sandbox.hold(Duration::from_millis(1500), 1);
    let i = e
        .engine
        .create(create(4200, None, CaptureMethod::Automatic))
        .await
        .unwrap();
    assert_eq!(i.status, Status::Processing, "the answer was lost");
    let lost = attempts(&e, &i.id).await;
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].outcome, Outcome::Pending);
    assert_eq!(
        e.sandbox.charges().values().sum::<u32>(),
        1,
        "the PSP did charge"
    );
    // Something (a `payment_intent.created` callback, say) taught the intent a PSP id
    // meanwhile: the re-ask must still repeat the request first sent under the key.
    sqlx::query("UPDATE payment_intents SET psp_intent_id = 'pi_seen_elsewhere' WHERE id = $1")
        .bind(&i.id)
        .execute(&e.pool)
        .await
        .unwrap();

    // The clock re-asks with the same key until the PSP's first answer comes back.
    let done = until("the re-asked answer", || async {
        e.worker
            .tick(Utc::now() + chrono::Duration::hours(1))
            .await
            .unwrap();
        let r = intent(&e, &i.id).await;
        (r.status == Status::Succeeded).then_some(r)
    })
    .await;
    assert_eq!(done.amount_received, 4200);
    assert!(
        done.psp_intent_id
            .as_deref()
            .is_some_and(|pi| pi.starts_with("pi_sbx")),
        "{:?}",
        done.psp_intent_id
    );
    let tries = attempts(&e, &i.id).await;
    assert_eq!(tries.len(), 1, "one attempt, asked more than once");
    assert!(tries[0].tries >= 2);
    assert_eq!(e.sandbox.charges().values().sum::<u32>(), 1, "one charge");
    assert_eq!(
        e.published("payment.intent.succeeded", i.id.as_str()).await,
        1
    );
    e.stop().await;
}

/// A Stripe-shaped callback about `i`, signed with the sandbox's secret at `t`.
fn callback(i: &IntentRow, charge: &str, kind: &str, status: &str, t: i64) -> (Vec<u8>, String) {
    let body = serde_json::json!({
        "id": format!("evt_test_{kind}_{t}"), "object": "event", "type": kind, "created": t,
        "data": {"object": {
            "id": i.psp_intent_id, "object": "payment_intent", "status": status,
            "latest_charge": charge,
            "last_payment_error": if status == "requires_payment_method" {
                serde_json::json!({"code": "card_declined", "decline_code": "generic_decline"})
            } else { serde_json::Value::Null },
        }},
    })
    .to_string()
    .into_bytes();
    let sig = stripe_sign(SANDBOX_SECRET, t, &body);
    (body, sig)
}

fn headers(sig: &str) -> std::collections::HashMap<String, String> {
    [("stripe-signature".to_string(), sig.to_string())].into()
}

#[tokio::test]
async fn callbacks_are_verified_applied_once_and_never_move_an_intent_back() {
    let e = env(&[], false).await;
    attach(&e, "pm_card_visa", true).await;
    let i = e
        .engine
        .create(create(900, None, CaptureMethod::Automatic))
        .await
        .unwrap();
    assert_eq!(i.status, Status::Succeeded);
    let charge = attempts(&e, &i.id).await[0].psp_reference.clone().unwrap();
    let now = Utc::now().timestamp();

    // A decline arriving after the success changes nothing; its replay is not even applied.
    let (body, sig) = callback(
        &i,
        &charge,
        "payment_intent.payment_failed",
        "requires_payment_method",
        now,
    );
    let first = e.callbacks.stripe(&body, &headers(&sig)).await.unwrap();
    assert!(first.processed);
    let replay = e.callbacks.stripe(&body, &headers(&sig)).await.unwrap();
    assert!(!replay.processed);
    assert_eq!(intent(&e, &i.id).await.status, Status::Succeeded);
    assert_eq!(e.published("payment.intent.failed", i.id.as_str()).await, 0);

    // Forged, stale, unsigned, and signed with a secret we do not hold: refused, unrecorded.
    let seen = e.callbacks_seen().await;
    let mut forged = body.clone();
    forged.extend_from_slice(b" ");
    let (stale_body, stale_sig) = callback(
        &i,
        &charge,
        "payment_intent.canceled",
        "canceled",
        now - 301,
    );
    let foreign = stripe_sign("whsec_not_ours", now, &body);
    for (b, h) in [
        (forged, headers(&sig)),
        (stale_body, headers(&stale_sig)),
        (body.clone(), Default::default()),
        (body.clone(), headers(&foreign)),
    ] {
        let r = e.callbacks.stripe(&b, &h).await;
        assert!(matches!(r, Err(PaymentError::BadSignature(_))), "{r:?}");
    }
    assert_eq!(e.callbacks_seen().await, seen);
    e.stop().await;
}

#[tokio::test]
async fn a_callback_signed_for_the_sandbox_cannot_touch_a_stripe_payment() {
    // "Stripe" here is the sandbox too (it speaks Stripe's API), with a secret of its own.
    let stripe_secret = "whsec_stripe_endpoint";
    let e = env(
        &[
            ("STRIPE_API_KEY", payment_service::settings::SANDBOX_API_KEY),
            ("STRIPE_API_BASE", "SANDBOX_URL"),
            ("STRIPE_WEBHOOK_SECRETS", stripe_secret),
        ],
        false,
    )
    .await;
    e.engine
        .attach(&tenant(), Provider::Stripe, "pm_card_visa", true)
        .await
        .unwrap();
    let i = e
        .engine
        .create(create(800, None, CaptureMethod::Manual))
        .await
        .unwrap();
    assert_eq!(i.status, Status::RequiresCapture);
    assert_eq!(i.provider, Some(Provider::Stripe));
    let charge = attempts(&e, &i.id).await[0].psp_reference.clone().unwrap();
    let now = Utc::now().timestamp();
    // Signed with the sandbox's secret: verified, recorded, and ignored.
    let (body, sig) = callback(&i, &charge, "payment_intent.canceled", "canceled", now);
    let r = e.callbacks.stripe(&body, &headers(&sig)).await.unwrap();
    assert!(r.processed);
    assert_eq!(intent(&e, &i.id).await.status, Status::RequiresCapture);
    // The same news signed with Stripe's endpoint secret is believed.
    let mut body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    body["id"] = "evt_from_stripe".into();
    let body = body.to_string().into_bytes();
    let sig = stripe_sign(stripe_secret, now, &body);
    e.callbacks.stripe(&body, &headers(&sig)).await.unwrap();
    assert_eq!(intent(&e, &i.id).await.status, Status::Canceled);
    e.stop().await;
}

#[tokio::test]
async fn intents_start_where_stripe_says_and_idempotency_keys_bind_their_request() {
    let e = env(&[], false).await;
    // No method at all: requires_payment_method, and confirming it has nothing to charge.
    let bare = e
        .engine
        .create(Create {
            confirm: false,
            ..create(100, None, CaptureMethod::Automatic)
        })
        .await
        .unwrap();
    assert_eq!(bare.status, Status::RequiresPaymentMethod);
    assert!(matches!(
        e.engine
            .confirm(Some(&tenant()), &bare.id, None, None)
            .await,
        Err(PaymentError::FailedPrecondition(_))
    ));
    // With a method and no confirmation: requires_confirmation; then confirmed.
    attach(&e, "pm_card_visa", true).await;
    let keyed = Create {
        confirm: false,
        idempotency_key: Some("order-1".into()),
        ..create(2500, None, CaptureMethod::Automatic)
    };
    let first = e.engine.create(keyed.clone()).await.unwrap();
    assert_eq!(first.status, Status::RequiresConfirmation);
    let again = e.engine.create(keyed.clone()).await.unwrap();
    assert_eq!(
        again.id, first.id,
        "the same key and request: the same intent"
    );
    let other = e
        .engine
        .create(Create {
            amount_minor: 2600,
            ..keyed
        })
        .await;
    assert!(matches!(other, Err(PaymentError::Conflict(_))), "{other:?}");
    let paid = e
        .engine
        .confirm(Some(&tenant()), &first.id, None, None)
        .await
        .unwrap();
    assert_eq!(paid.status, Status::Succeeded);
    // Bad amounts and currencies name their field.
    for (amount, currency, field) in [
        (0, "EUR", "amount.amount_cents"),
        (-5, "EUR", "amount.amount_cents"),
        (100, "eur", "amount.currency"),
    ] {
        let r = e
            .engine
            .create(Create {
                amount_minor: amount,
                currency: currency.into(),
                ..create(1, None, CaptureMethod::Automatic)
            })
            .await;
        assert!(
            matches!(&r, Err(PaymentError::Invalid { field: f, .. }) if *f == field),
            "{r:?}"
        );
    }
    e.stop().await;
}
