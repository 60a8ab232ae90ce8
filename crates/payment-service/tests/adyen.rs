//! The Adyen connector against the sandbox's Adyen face: stored cards of the tenant's own,
//! payments authorised or refused, manual capture and refunds acknowledged and settled by
//! HMAC-signed notifications.

mod common;

use common::{env, until};
use ids::{PaymentIntentId, TenantId};
use payment_service::actions::Create;
use payment_service::domain::intent::{CaptureMethod, Status};
use payment_service::domain::provider::Provider;
use payment_service::error::PaymentError;
use payment_service::settings::SANDBOX_API_KEY;
use payment_service::store::intents::{self, IntentRow};
use payment_service::store::refunds::{self, RefundStatus};

const KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";

fn tenant() -> TenantId {
    TenantId::parse("ten_adyen").unwrap()
}

fn create(amount: i64, method: &ids::PaymentMethodId, capture: CaptureMethod) -> Create {
    Create {
        tenant: tenant(),
        invoice: None,
        amount_minor: amount,
        currency: "EUR".into(),
        method: Some(method.clone()),
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

#[tokio::test]
async fn adyen_payments_settle_through_signed_notifications() {
    let e = env(
        &[
            ("ADYEN_API_KEY", SANDBOX_API_KEY),
            ("ADYEN_API_BASE", "SANDBOX_URL/adyen/v71"),
            ("ADYEN_MERCHANT_ACCOUNT", "SandboxMerchant"),
            ("ADYEN_HMAC_KEYS", KEY),
        ],
        true,
    )
    .await;
    let attach = |token: String| {
        let engine = e.engine.clone();
        async move {
            engine
                .attach(&tenant(), Provider::Adyen, &token, false)
                .await
        }
    };
    // Another shopper's stored card is not the tenant's to attach.
    let other = attach("ten_other:pm_card_visa".into()).await;
    assert!(
        matches!(
            other,
            Err(PaymentError::Invalid {
                field: "psp_token",
                ..
            })
        ),
        "{other:?}"
    );
    let visa = attach(format!("{}:pm_card_visa", tenant())).await.unwrap();
    assert_eq!((visa.brand.as_str(), visa.last4.as_str()), ("visa", "4242"));

    // Authorised (captured automatically): succeeded; the AUTHORISATION notice changes nothing.
    let paid = e
        .engine
        .create(create(5000, &visa.id, CaptureMethod::Automatic))
        .await
        .unwrap();
    assert_eq!(paid.status, Status::Succeeded);
    until("the AUTHORISATION notification", || async {
        (e.callbacks_seen().await >= 1).then_some(())
    })
    .await;
    assert_eq!(intent(&e, &paid.id).await.status, Status::Succeeded);
    assert_eq!(
        e.published("payment.intent.succeeded", paid.id.as_str())
            .await,
        1
    );

    // A refund is acknowledged, and settled by the REFUND notification.
    let refund = e
        .engine
        .refund(None, &paid.id, 300, "", None)
        .await
        .unwrap();
    // Acknowledged (pending), unless the notification already settled it.
    assert!(
        matches!(
            refund.status,
            RefundStatus::Pending | RefundStatus::Succeeded
        ),
        "{:?}",
        refund.status
    );
    until("the REFUND notification", || async {
        let mut conn = e.pool.acquire().await.unwrap();
        let rows = refunds::list(&mut conn, &paid.id).await.unwrap();
        (rows[0].status == RefundStatus::Succeeded).then_some(())
    })
    .await;
    assert_eq!(intent(&e, &paid.id).await.amount_refunded, 300);
    assert_eq!(e.published("payment.refunded", paid.id.as_str()).await, 1);

    // Manual capture: authorised, captured on request, settled by the CAPTURE notification.
    let held = e
        .engine
        .create(create(700, &visa.id, CaptureMethod::Manual))
        .await
        .unwrap();
    assert_eq!(held.status, Status::RequiresCapture);
    let capturing = e.engine.capture(None, &held.id, 0).await.unwrap();
    // Adyen acknowledges; its notification may settle it before the acknowledgement is
    // applied.
    assert!(
        matches!(capturing.status, Status::Processing | Status::Succeeded),
        "{:?}",
        capturing.status
    );
    let captured = until("the CAPTURE notification", || async {
        let r = intent(&e, &held.id).await;
        (r.status == Status::Succeeded).then_some(r)
    })
    .await;
    assert_eq!(captured.amount_received, 700);

    // Refused, with Adyen's reason (the answer's and the notification's alike).
    let poor = attach(format!(
        "{}:pm_card_chargeDeclinedInsufficientFunds",
        tenant()
    ))
    .await
    .unwrap();
    let refused = e
        .engine
        .create(create(900, &poor.id, CaptureMethod::Automatic))
        .await
        .unwrap();
    assert_eq!(refused.status, Status::RequiresPaymentMethod);
    assert_eq!(
        refused.last_failure_code.as_deref(),
        Some("not_enough_balance")
    );
    e.stop().await;
}
