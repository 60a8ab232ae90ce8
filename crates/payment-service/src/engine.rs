//! The operations that talk to a PSP. Each is three steps, so that no transaction is held
//! open across a network call and no crash loses track of money:
//!
//! 1. in a transaction, check the request against the intent's state and record the attempt
//!    (with the idempotency key every try of it will carry, and a `retry_at` lease: should
//!    this process die before step 3, the [`worker`](crate::worker) asks the PSP again);
//! 2. call the PSP (through the limiter, retrying only what the key makes safe);
//! 3. in a transaction, [`settle`](crate::settle::settle) the answer. A lost answer leaves
//!    the attempt pending; it is asked again later with the same key, so it never charges twice.

use std::sync::Arc;

use chrono::Utc;
use ids::{PaymentIntentId, PaymentMethodId, TenantId};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;

use crate::domain::intent::Outcome;
use crate::domain::provider::Provider;
use crate::error::PaymentError;
use crate::psp::{Answer, Charge, Connectors, Psp, PspError};
use crate::settings::Settings;
use crate::settle::settle;
use crate::store::intents::{self, AttemptRow, IntentRow};
use crate::store::methods::{self, MethodRow};

type Result<T, E = PaymentError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct Engine {
    pub pool: PgPool,
    pub psps: Connectors,
    pub settings: Arc<Settings>,
    /// Wakes the worker (an intent to confirm was created).
    pub wake: Arc<Notify>,
}

/// An attempt ready to be sent: what step 1 recorded.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub intent: IntentRow,
    pub attempt: AttemptRow,
    pub token: String,
}

impl Engine {
    /// Attaches a PSP token after asking the PSP what it is.
    pub async fn attach(
        &self,
        tenant: &TenantId,
        provider: Provider,
        token: &str,
        make_default: bool,
    ) -> Result<MethodRow> {
        if token.is_empty() || token.len() > 255 || token.chars().any(char::is_control) {
            return Err(PaymentError::invalid(
                "psp_token",
                "a PSP token of at most 255 printable characters",
            ));
        }
        // An Adyen stored card belongs to a shopper: ours are the tenants, and a tenant may
        // only attach its own.
        if provider == Provider::Adyen
            && token.split_once(':').map(|(shopper, _)| shopper) != Some(tenant.as_str())
        {
            return Err(PaymentError::invalid(
                "psp_token",
                "an Adyen token is <tenant id>:<storedPaymentMethodId>, the tenant's own",
            ));
        }
        let psp = self.psps.get(provider)?;
        let details = self
            .psps
            .call(psp.describe(token))
            .await
            .map_err(|e| match e {
                PspError::Refused { message, .. } => PaymentError::invalid(
                    "psp_token",
                    format!("the PSP does not know this token: {message}"),
                ),
                other => PaymentError::Psp(other),
            })?;
        let mut tx = self.pool.begin().await?;
        let row = methods::attach(&mut tx, tenant, provider, token, &details, make_default).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Step 1 of a confirmation: the attempt is recorded and the intent is `processing`.
    /// `None` when `client_key` names an attempt made before (a replayed request).
    pub async fn begin(
        &self,
        tx: &mut PgConnection,
        intent: &mut IntentRow,
        method: Option<MethodRow>,
        client_key: Option<&str>,
    ) -> Result<Option<Outgoing>> {
        if let Some(key) = client_key
            && intents::attempt_by_client_key(tx, &intent.id, key)
                .await?
                .is_some()
        {
            return Ok(None);
        }
        let method = match method {
            Some(m) => Some(m),
            None => match &intent.payment_method_id {
                Some(id) => methods::get(tx, &intent.tenant_id, id)
                    .await?
                    .filter(|m| m.detached_at.is_none()),
                None => None,
            },
        };
        let to = intent.status.confirm(method.is_some())?;
        let method = method.expect("confirm() requires a method");
        let number = intents::last_attempt(tx, &intent.id)
            .await?
            .map_or(1, |a| a.number + 1);
        // Another PSP than the last attempt's: its intent is not the old one's.
        let psp_intent = intent
            .psp_intent_id
            .clone()
            .filter(|_| intent.provider == Some(method.provider));
        let mut attempt = intents::open_attempt(
            tx,
            &intent.id,
            number,
            &method.id,
            method.provider,
            client_key,
            psp_intent.as_deref(),
        )
        .await?;
        attempt.retry_at = Some(Utc::now() + lease(&self.settings));
        intents::save_attempt(tx, &attempt).await?;
        intent.status = to;
        intent.payment_method_id = Some(method.id.clone());
        intent.psp_intent_id = psp_intent;
        intent.provider = Some(method.provider);
        intent.next_action_url = None;
        *intent = intents::save(tx, intent).await?;
        Ok(Some(Outgoing {
            intent: intent.clone(),
            attempt,
            token: method.psp_token,
        }))
    }

    /// Step 2: the PSP call.
    pub async fn send(&self, o: &Outgoing) -> std::result::Result<Answer, PspError> {
        let psp = self.psps.get(o.attempt.provider)?;
        let charge = Charge {
            intent_id: o.intent.id.as_str(),
            // As the attempt first sent it: a re-ask repeats the same request under its key.
            psp_intent_id: o.attempt.psp_intent_id.as_deref(),
            amount_minor: o.intent.amount_minor,
            currency: &o.intent.currency,
            method_token: &o.token,
            capture: o.intent.capture_method,
            off_session: o.intent.off_session,
            idempotency_key: &o.attempt.psp_idempotency_key,
        };
        self.psps.call(psp.charge(&charge)).await
    }

    /// Step 3: the answer (or its absence) applied.
    pub async fn finish(
        &self,
        o: &Outgoing,
        answer: std::result::Result<Answer, PspError>,
    ) -> Result<IntentRow> {
        let mut tx = self.pool.begin().await?;
        let mut intent = intents::get(&mut tx, &o.intent.id, None, true)
            .await?
            .ok_or(PaymentError::NotFound("payment intent"))?;
        let mut attempt = intents::last_attempt(&mut tx, &intent.id)
            .await?
            .filter(|a| a.number == o.attempt.number)
            .ok_or(PaymentError::NotFound("attempt"))?;
        let answer = match answer {
            Ok(a) => a,
            Err(PspError::Unknown(why)) => {
                // The lease set in step 1 stands: the worker asks again with the same key.
                tracing::warn!(intent = %intent.id, attempt = attempt.number, %why,
                    "no answer from the PSP; will ask again");
                metrics::counter!("payment_answers_lost_total").increment(1);
                tx.commit().await?;
                return Ok(intent);
            }
            Err(PspError::Refused { code, message }) => Answer {
                failure_code: Some(code),
                failure_message: Some(message),
                ..Answer::new(Outcome::Error)
            },
            Err(e @ PspError::NotConfigured(_)) => Answer {
                failure_code: Some("provider_not_configured".into()),
                failure_message: Some(e.to_string()),
                ..Answer::new(Outcome::Error)
            },
        };
        settle(
            &mut tx,
            &self.settings.dunning,
            &mut intent,
            &mut attempt,
            &answer,
            Utc::now(),
        )
        .await?;
        tx.commit().await?;
        Ok(intent)
    }

    /// Confirms an intent (a customer's request, or a retry): steps 1–3.
    pub async fn confirm(
        &self,
        tenant: Option<&TenantId>,
        id: &PaymentIntentId,
        method: Option<&PaymentMethodId>,
        client_key: Option<&str>,
    ) -> Result<IntentRow> {
        let mut tx = self.pool.begin().await?;
        let mut intent = intents::get(&mut tx, id, tenant, true)
            .await?
            .ok_or(PaymentError::NotFound("payment intent"))?;
        let method = match method {
            Some(m) => Some(
                methods::get(&mut tx, &intent.tenant_id, m)
                    .await?
                    .filter(|m| m.detached_at.is_none())
                    .ok_or(PaymentError::NotFound("payment method"))?,
            ),
            // An invoice's intent is paid with the tenant's default at the time, like a
            // dunning retry: a card made default since the failure is the one tried.
            None if intent.off_session => methods::default_of(&mut tx, &intent.tenant_id).await?,
            None => None,
        };
        let Some(out) = self.begin(&mut tx, &mut intent, method, client_key).await? else {
            return Ok(intent);
        };
        tx.commit().await?;
        let answer = self.send(&out).await;
        self.finish(&out, answer).await
    }
}

/// How long an attempt may go unanswered before it is asked again.
pub fn lease(s: &Settings) -> chrono::Duration {
    chrono::Duration::from_std(s.reconcile_after).unwrap_or(chrono::Duration::seconds(60))
}
