//! Creating intents, capturing, canceling and refunding: the [`Engine`]'s other operations,
//! each in the same three steps as a confirmation (check and record, call, settle).

use chrono::Utc;
use ids::{InvoiceId, PaymentIntentId, PaymentMethodId, TenantId};
use platform::events::enqueue;
use sha2::{Digest, Sha256};

use crate::domain::intent::{CaptureMethod, Outcome};
use crate::domain::money;
use crate::engine::Engine;
use crate::error::PaymentError;
use crate::events::{self, end_dunning};
use crate::psp::{Psp, PspError};
use crate::settle::settle;
use crate::store::dunning::DunningStatus;
use crate::store::intents::{self, IntentRow, NewIntent};
use crate::store::methods;
use crate::store::refunds::{self, RefundRow, RefundStatus};

type Result<T, E = PaymentError> = std::result::Result<T, E>;

/// A request to create an intent.
#[derive(Debug, Clone)]
pub struct Create {
    pub tenant: TenantId,
    pub invoice: Option<InvoiceId>,
    pub amount_minor: i64,
    pub currency: String,
    pub method: Option<PaymentMethodId>,
    pub capture: CaptureMethod,
    pub confirm: bool,
    pub idempotency_key: Option<String>,
}

impl Create {
    /// What an idempotency key is bound to: the same key with another body is refused.
    fn digest(&self) -> String {
        let text = format!(
            "{}|{}|{}|{}|{}|{}|{}",
            self.tenant,
            self.invoice.as_ref().map_or("", |i| i.as_str()),
            self.amount_minor,
            self.currency,
            self.method.as_ref().map_or("", |m| m.as_str()),
            self.capture,
            self.confirm
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

fn check_key(field: &'static str, key: &Option<String>) -> Result<()> {
    match key {
        Some(k) if k.len() > 255 || k.chars().any(char::is_control) => Err(PaymentError::invalid(
            field,
            "at most 255 printable characters",
        )),
        _ => Ok(()),
    }
}

impl Engine {
    pub async fn create(&self, c: Create) -> Result<IntentRow> {
        money::check_amount("amount.amount_cents", c.amount_minor)?;
        money::check_currency("amount.currency", &c.currency)?;
        check_key("idempotency_key", &c.idempotency_key)?;
        let digest = c.digest();
        let mut tx = self.pool.begin().await?;
        if let Some(key) = &c.idempotency_key
            && let Some(found) = intents::by_key(&mut tx, &c.tenant, key).await?
        {
            return if found.request_digest.as_deref() == Some(digest.as_str()) {
                Ok(found)
            } else {
                Err(PaymentError::Conflict(
                    "this idempotency key was used with another request".into(),
                ))
            };
        }
        let method = match &c.method {
            Some(id) => Some(
                methods::get(&mut tx, &c.tenant, id)
                    .await?
                    .filter(|m| m.detached_at.is_none())
                    .ok_or(PaymentError::NotFound("payment method"))?,
            ),
            None => methods::default_of(&mut tx, &c.tenant).await?,
        };
        let row = intents::insert(
            &mut tx,
            &NewIntent {
                tenant: &c.tenant,
                invoice: c.invoice.as_ref(),
                amount_minor: c.amount_minor,
                currency: &c.currency,
                capture: c.capture,
                off_session: false,
                method: method.as_ref().map(|m| (&m.id, m.provider)),
                idempotency_key: c.idempotency_key.as_deref(),
                request_digest: Some(&digest),
            },
        )
        .await?;
        let Some(mut row) = row else {
            // The same key raced in, or the invoice has a live intent already.
            return Err(PaymentError::Conflict(
                "the invoice already has an open payment intent, or the key was just used".into(),
            ));
        };
        if !c.confirm {
            tx.commit().await?;
            return Ok(row);
        }
        let Some(out) = self.begin(&mut tx, &mut row, method, None).await? else {
            tx.commit().await?;
            return Ok(row);
        };
        tx.commit().await?;
        let answer = self.send(&out).await;
        self.finish(&out, answer).await
    }

    /// Captures `requested` (0: all) of an authorized intent.
    pub async fn capture(
        &self,
        tenant: Option<&TenantId>,
        id: &PaymentIntentId,
        requested: i64,
    ) -> Result<IntentRow> {
        let mut tx = self.pool.begin().await?;
        let mut intent = intents::get(&mut tx, id, tenant, true)
            .await?
            .ok_or(PaymentError::NotFound("payment intent"))?;
        let attempt = intents::last_attempt(&mut tx, id).await?;
        // A capture whose answer was lost is `processing` with an authorized attempt: asking
        // again (same key) is safe.
        let retry = intent.status == crate::domain::intent::Status::Processing
            && attempt
                .as_ref()
                .is_some_and(|a| a.outcome == Outcome::Authorized);
        if !retry {
            let amount = money::capturable(intent.amount_capturable, requested)?;
            intent.status = intent.status.capture()?;
            intent.amount_capturable = amount;
            intent = intents::save(&mut tx, &intent).await?;
        }
        let mut attempt = attempt.ok_or(PaymentError::NotFound("attempt"))?;
        tx.commit().await?;
        let psp = self.psps.get(attempt.provider)?;
        let answer = self
            .psps
            .call(psp.capture(
                intent.psp_intent_id.as_deref().unwrap_or_default(),
                attempt.psp_reference.as_deref().unwrap_or_default(),
                intent.amount_capturable,
                &intent.currency,
                &format!("{}-capture", intent.id),
            ))
            .await;
        let mut tx = self.pool.begin().await?;
        let mut intent = intents::get(&mut tx, id, None, true)
            .await?
            .ok_or(PaymentError::NotFound("payment intent"))?;
        match answer {
            Ok(a) => {
                settle(
                    &mut tx,
                    &self.settings.dunning,
                    &mut intent,
                    &mut attempt,
                    &a,
                    Utc::now(),
                )
                .await?
            }
            Err(PspError::Refused { code, message }) => {
                // Nothing captured: the authorization still stands.
                intent.status = crate::domain::intent::Status::RequiresCapture;
                intent.last_failure_code = Some(code);
                intent.last_failure_message = Some(message);
                intent = intents::save(&mut tx, &intent).await?;
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(intent)
    }

    /// Cancels an intent that has not moved money (releasing an authorization at the PSP).
    pub async fn cancel(
        &self,
        tenant: Option<&TenantId>,
        id: &PaymentIntentId,
    ) -> Result<IntentRow> {
        let mut conn = self.pool.acquire().await?;
        let intent = intents::get(&mut conn, id, tenant, false)
            .await?
            .ok_or(PaymentError::NotFound("payment intent"))?;
        if intent.status.cancel()?.is_none() {
            return Ok(intent);
        }
        let attempt = intents::last_attempt(&mut conn, id).await?;
        drop(conn);
        // The PSP first: an authorization released there cannot be captured by anyone.
        if let (Some(provider), Some(a)) = (intent.provider, &attempt) {
            let reference = a.psp_reference.as_deref().unwrap_or_default();
            let pi = intent.psp_intent_id.as_deref().unwrap_or_default();
            if !pi.is_empty() || !reference.is_empty() {
                let psp = self.psps.get(provider)?;
                let key = format!("{}-cancel", intent.id);
                self.psps.call(psp.cancel(pi, reference, &key)).await?;
            }
        }
        let mut tx = self.pool.begin().await?;
        let mut intent = intents::get(&mut tx, id, None, true)
            .await?
            .ok_or(PaymentError::NotFound("payment intent"))?;
        if let Some(to) = intent.status.cancel()? {
            intent.status = to;
            intent.amount_capturable = 0;
            intent.next_action_url = None;
            intent = intents::save(&mut tx, &intent).await?;
            end_dunning(&mut tx, &intent, DunningStatus::Recovered).await?;
        }
        tx.commit().await?;
        Ok(intent)
    }

    /// Refunds `requested` (0: what is left) of a succeeded payment.
    pub async fn refund(
        &self,
        tenant: Option<&TenantId>,
        id: &PaymentIntentId,
        requested: i64,
        reason: &str,
        key: Option<String>,
    ) -> Result<RefundRow> {
        check_key("idempotency_key", &key)?;
        if reason.chars().count() > 500 || reason.chars().any(char::is_control) {
            return Err(PaymentError::invalid(
                "reason",
                "at most 500 printable characters",
            ));
        }
        let mut tx = self.pool.begin().await?;
        let intent = intents::get(&mut tx, id, tenant, true)
            .await?
            .ok_or(PaymentError::NotFound("payment intent"))?;
        if let Some(k) = &key
            && let Some(found) = refunds::by_key(&mut tx, id, k).await?
        {
            return if found.amount_minor == requested || requested == 0 {
                Ok(found)
            } else {
                Err(PaymentError::Conflict(
                    "this idempotency key was used with another amount".into(),
                ))
            };
        }
        if intent.status != crate::domain::intent::Status::Succeeded {
            return Err(PaymentError::FailedPrecondition(format!(
                "a payment intent that is {} cannot be refunded",
                intent.status
            )));
        }
        let committed = refunds::committed(&mut tx, id).await?;
        let amount = money::refundable(intent.amount_received, committed, requested)?;
        let refund = refunds::insert(
            &mut tx,
            &intent.tenant_id,
            id,
            amount,
            &intent.currency,
            reason,
            key.as_deref(),
        )
        .await?
        .ok_or_else(|| PaymentError::Conflict("this idempotency key was just used".into()))?;
        tx.commit().await?;
        let attempt = {
            let mut conn = self.pool.acquire().await?;
            intents::last_attempt(&mut conn, id).await?
        };
        let provider = intent.provider.ok_or(PaymentError::NotFound("attempt"))?;
        let psp = self.psps.get(provider)?;
        let answer = self
            .psps
            .call(
                psp.refund(
                    intent.psp_intent_id.as_deref().unwrap_or_default(),
                    attempt
                        .as_ref()
                        .and_then(|a| a.psp_reference.as_deref())
                        .unwrap_or_default(),
                    amount,
                    &intent.currency,
                    refund.psp_idempotency_key.as_str(),
                ),
            )
            .await;
        let mut tx = self.pool.begin().await?;
        let refund = match answer {
            Ok(a) => {
                let status = match a.succeeded {
                    Some(true) => RefundStatus::Succeeded,
                    Some(false) => RefundStatus::Failed,
                    None => RefundStatus::Pending,
                };
                settle_refund(
                    &mut tx,
                    &refund,
                    status,
                    Some(&a.psp_reference),
                    a.failure_code.as_deref(),
                )
                .await?
            }
            Err(PspError::Refused { code, .. }) => {
                settle_refund(&mut tx, &refund, RefundStatus::Failed, None, Some(&code)).await?
            }
            // Unknown: stays pending; the PSP's callback settles it.
            Err(_) => refund,
        };
        tx.commit().await?;
        Ok(refund)
    }
}

/// Moves a refund to `status` once; a success adds to the intent's refunded amount and
/// publishes `payment.refunded`.
pub async fn settle_refund(
    tx: &mut sqlx::PgConnection,
    refund: &RefundRow,
    status: RefundStatus,
    reference: Option<&str>,
    failure_code: Option<&str>,
) -> Result<RefundRow> {
    let current = refunds::lock_by_id(tx, &refund.id).await?;
    if current.status != RefundStatus::Pending || status == RefundStatus::Pending {
        if status == RefundStatus::Pending && reference.is_some() && current.psp_reference.is_none()
        {
            return Ok(
                refunds::settle(tx, &refund.id, RefundStatus::Pending, reference, None).await?,
            );
        }
        return Ok(current);
    }
    let row = refunds::settle(tx, &refund.id, status, reference, failure_code).await?;
    if status == RefundStatus::Succeeded {
        let mut intent = intents::get(tx, &row.intent_id, None, true)
            .await?
            .ok_or(PaymentError::NotFound("payment intent"))?;
        intent.amount_refunded += row.amount_minor;
        let intent = intents::save(tx, &intent).await?;
        enqueue(tx, &events::refunded(&intent, &row)).await?;
    }
    Ok(row)
}
