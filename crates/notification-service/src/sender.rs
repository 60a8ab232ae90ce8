//! The sender: leases deliveries that are due, makes one attempt each through its channel
//! ([`send`](crate::send)), and records what came of it — delivered, failed, or due again on
//! the retry schedule. Outcomes that change only their delivery go to a recorder that writes
//! them in batches; those that change an endpoint (a failure, a recovery, a 410) are written
//! with it in one transaction. Attempts run through the [`Limiter`](concurrency::Limiter)
//! (`NOTIFY_MAX_IN_FLIGHT`), and at most `WEBHOOK_PER_ENDPOINT` go to one target at once, so a
//! slow endpoint holds its own slots and no others.
//!
//! An endpoint that answers `410 Gone`, or fails every attempt for `WEBHOOK_DISABLE_AFTER`, is
//! disabled: what is pending to it fails, and its tenant is told (e-mail recipients and any
//! other endpoint that listens to `webhook.endpoint.disabled`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use ids::InvoiceId;
use platform::grpc::{Caller, Channel as GrpcChannel};
use rpc::invoicing::v1 as inv;
use rpc::invoicing::v1::invoicing_service_client::InvoicingServiceClient;
use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::domain::signing::Secret;
use crate::domain::topics;
use crate::error::NotifyError;
use crate::events::{Telling, tell};
use crate::send::email::{Mail, Mailer};
use crate::send::sms::Texter;
use crate::send::webhook::Webhooks;
use crate::send::{Answer, Attempted};
use crate::settings::Settings;
use crate::store::deliveries::{self, Leased, Outcome};
use crate::store::endpoints::{self, EndpointRow};
use crate::store::messages::{self, MessageRow};
use crate::store::{Channel, DeliveryStatus, EndpointStatus};

#[derive(Clone)]
pub struct Sender {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub webhooks: Webhooks,
    pub mailer: Mailer,
    pub texter: Texter,
    pub invoicing: InvoicingServiceClient<GrpcChannel>,
    pub limiter: concurrency::Limiter,
    pub wake: Arc<Notify>,
    /// Attempts in flight per target.
    pub in_flight: Arc<Mutex<HashMap<String, i64>>>,
    /// Outcomes that change nothing but their delivery, written in batches by the recorder.
    pub records: mpsc::Sender<Recorded>,
    /// The recorder's end, taken by [`Sender::serve`].
    pub recorder: Arc<Mutex<Option<mpsc::Receiver<Recorded>>>>,
}

/// An attempt's outcome, queued for its delivery.
pub type Recorded = (Leased, Outcome);

/// Writes queued outcomes, up to 512 a statement, until every sender is gone. An outcome
/// lost with the process leaves its lease to run out: the delivery is sent again.
async fn record_batches(pool: PgPool, mut rx: mpsc::Receiver<Recorded>) {
    let mut batch = Vec::with_capacity(512);
    while rx.recv_many(&mut batch, 512).await > 0 {
        let written = match pool.acquire().await {
            Ok(mut conn) => deliveries::record_many(&mut conn, &batch).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(n) if n < batch.len() as u64 => tracing::warn!(
                lost = batch.len() as u64 - n,
                "leases ran out before their outcomes were recorded"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, n = batch.len(), "outcomes not recorded; their leases will run out and they are sent again")
            }
        }
        batch.clear();
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl Sender {
    /// Sends until `stop`, waking on new messages and every `NOTIFY_CLOCK_MS`.
    pub async fn serve(self, stop: CancellationToken) {
        if let Some(rx) = self.recorder.lock().expect("recorder").take() {
            tokio::spawn(record_batches(self.pool.clone(), rx));
        }
        let mut counted: Option<std::time::Instant> = None;
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "leasing deliveries failed; trying again");
            }
            // The backlog for /metrics, once per clock period however often the sender wakes.
            if counted.is_none_or(|c| c.elapsed() >= self.settings.clock)
                && let Ok(mut conn) = self.pool.acquire().await
                && let Ok(n) = deliveries::pending(&mut conn).await
            {
                metrics::gauge!("notification_deliveries_pending").set(n as f64);
                counted = Some(std::time::Instant::now());
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.clock) => {}
            }
        }
    }

    /// Leases what is due and has room, and starts an attempt for each.
    pub async fn tick(&self) -> Result<usize, sqlx::Error> {
        let (busy, rooms, total) = {
            let map = self.in_flight.lock().expect("in-flight map");
            let per = self.settings.per_endpoint as i64;
            let busy: Vec<String> = map.keys().cloned().collect();
            let rooms: Vec<i64> = map.values().map(|n| (per - n).max(0)).collect();
            (busy, rooms, map.values().sum::<i64>())
        };
        let room = self.settings.max_in_flight as i64 - total;
        if room <= 0 {
            return Ok(0);
        }
        // Long enough for the attempt (and an attachment fetch) to end before another sender may
        // take the delivery over.
        let hold = self.settings.timeout * 3;
        let mut conn = self.pool.acquire().await?;
        let leased = deliveries::lease(
            &mut conn,
            room,
            self.settings.per_endpoint as i64,
            (&busy, &rooms),
            hold,
        )
        .await?;
        if leased.is_empty() {
            return Ok(0);
        }
        // What the attempts need, read once for the batch.
        let ids: Vec<ids::MessageId> = leased.iter().map(|d| d.message_id.clone()).collect();
        let messages: HashMap<ids::MessageId, Arc<MessageRow>> =
            messages::get_many(&mut conn, &ids)
                .await?
                .into_iter()
                .map(|m| (m.id.clone(), Arc::new(m)))
                .collect();
        let hooks: Vec<&str> = leased
            .iter()
            .filter(|d| d.channel == Channel::Webhook)
            .map(|d| d.target.as_str())
            .collect();
        let endpoints: HashMap<String, Arc<EndpointRow>> = endpoints::get_many(&mut conn, &hooks)
            .await?
            .into_iter()
            .map(|e| (e.id.to_string(), Arc::new(e)))
            .collect();
        drop(conn);
        let n = leased.len();
        for d in leased {
            let Some(message) = messages.get(&d.message_id).cloned() else {
                continue;
            };
            let endpoint = endpoints.get(&d.target).cloned();
            *self
                .in_flight
                .lock()
                .expect("in-flight map")
                .entry(d.target.clone())
                .or_default() += 1;
            let me = self.clone();
            self.limiter
                .spawn(async move {
                    let target = d.target.clone();
                    if let Err(e) = me.deliver(&d, &message, endpoint.as_deref()).await {
                        tracing::warn!(delivery = %d.id, error = %e, "delivery not recorded; its lease will run out and it is tried again");
                    }
                    let mut map = me.in_flight.lock().expect("in-flight map");
                    let left = map.get_mut(&target).map(|n| {
                        *n -= 1;
                        *n
                    });
                    if left.is_some_and(|n| n <= 0) {
                        map.remove(&target);
                    }
                    drop(map);
                    // Lease again once half the target's slots are free (the clock covers
                    // the rest), so a lease fetches a few deliveries rather than one.
                    if left.is_none_or(|n| n <= (me.settings.per_endpoint / 2) as i64) {
                        me.wake.notify_one();
                    }
                })
                .await;
        }
        Ok(n)
    }

    /// One attempt of `d` (of message `m`; to endpoint `e` when a webhook), recorded.
    #[tracing::instrument(name = "delivery", skip_all, fields(delivery = %d.id, message = %m.id, channel = d.channel.as_str(), attempt = d.attempts + 1))]
    async fn deliver(
        &self,
        d: &Leased,
        m: &MessageRow,
        e: Option<&EndpointRow>,
    ) -> Result<(), NotifyError> {
        let attempted = match d.channel {
            Channel::Webhook => {
                let e = match e {
                    Some(e) if e.status == EndpointStatus::Enabled => e,
                    other => {
                        let why = if other.is_some() {
                            "endpoint disabled"
                        } else {
                            "endpoint deleted"
                        };
                        let mut conn = self.pool.acquire().await?;
                        deliveries::abandon(&mut conn, d, why).await?;
                        return Ok(());
                    }
                };
                let now = Utc::now();
                let secrets: Vec<Secret> = e
                    .signing_secrets(now)
                    .into_iter()
                    .filter_map(|s| Secret::parse(s).ok())
                    .collect();
                self.webhooks
                    .send(&e.url, m.id.as_str(), now.timestamp(), &m.body, &secrets)
                    .await
            }
            Channel::Email => self.email(d, m).await,
            Channel::Sms => {
                let text = m.subject.clone().unwrap_or_default();
                self.texter.send(d.id.as_str(), &d.target, &text).await
            }
        };
        self.record(d, m, e, attempted).await
    }

    async fn email(&self, d: &Leased, m: &MessageRow) -> Attempted {
        let attachment = match &m.attachment {
            None => None,
            Some(invoice) => match self.pdf(&m.tenant_id, invoice).await {
                Ok(pdf) => Some(pdf),
                Err(why) => {
                    return Attempted {
                        answer: Answer::Retry(None),
                        code: None,
                        response: format!("the invoice PDF could not be fetched: {why}"),
                        latency: Duration::ZERO,
                    };
                }
            },
        };
        self.mailer
            .send(Mail {
                id: d.id.as_str(),
                to: &d.target,
                subject: m.subject.as_deref().unwrap_or_default(),
                text: m.text_body.as_deref().unwrap_or_default(),
                html: m.html_body.as_deref().unwrap_or_default(),
                attachment,
            })
            .await
    }

    /// The invoice's PDF from the invoicing service, with its file name.
    async fn pdf(
        &self,
        tenant: &ids::TenantId,
        invoice: &str,
    ) -> Result<(String, Vec<u8>), String> {
        let invoice = InvoiceId::parse(invoice).map_err(|e| e.to_string())?;
        let mut req = tonic::Request::new(inv::GetInvoiceRequest {
            tenant_id: tenant.to_string(),
            invoice_id: invoice.to_string(),
        });
        Caller::service("notification-service", None).apply(&mut req);
        let mut stream = self
            .invoicing
            .clone()
            .get_invoice_pdf(req)
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend(chunk.map_err(|s| s.message().to_string())?.data);
        }
        Ok((format!("{invoice}.pdf"), bytes))
    }

    /// Records the attempt, and what it means for the delivery and its endpoint.
    async fn record(
        &self,
        d: &Leased,
        m: &MessageRow,
        endpoint: Option<&EndpointRow>,
        a: Attempted,
    ) -> Result<(), NotifyError> {
        let now = Utc::now();
        let (status, next, error) = match &a.answer {
            Answer::Delivered => (DeliveryStatus::Delivered, None, None),
            Answer::Gone => (
                DeliveryStatus::Failed,
                None,
                Some("the endpoint answered 410 Gone".to_string()),
            ),
            Answer::Refused => (DeliveryStatus::Failed, None, Some(a.response.clone())),
            Answer::Retry(asked) => {
                // This was attempt `tries + 1` of the round; the next is `tries + 2`.
                let next_try = d.tries as usize + 2;
                match self
                    .settings
                    .schedule
                    .delay(m.id.as_str(), next_try, *asked)
                {
                    Some(delay) => (
                        DeliveryStatus::Pending,
                        Some(now + chrono::Duration::from_std(delay).unwrap_or_default()),
                        Some(a.response.clone()),
                    ),
                    None => (
                        DeliveryStatus::Failed,
                        None,
                        Some(format!("retries spent; last: {}", a.response)),
                    ),
                }
            }
        };
        let outcome = Outcome {
            response_code: a.code.map(i32::from),
            latency_ms: a.latency.as_millis().min(i32::MAX as u128) as i32,
            response: a.response.clone(),
            status,
            next,
            error,
        };
        // An attempt that changes its endpoint's record (any failure, a recovery, a 410) is
        // recorded with it in one transaction; otherwise the one statement is enough.
        let endpoint = endpoint
            .filter(|e| !(matches!(a.answer, Answer::Delivered) && e.failing_since.is_none()));
        if endpoint.is_none() {
            self.observe(d, m, status, now);
            // Only a dropped recorder refuses (the service is stopping): the lease runs out.
            let _ = self.records.send((d.clone(), outcome)).await;
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        if !deliveries::record(&mut tx, d, &outcome).await? {
            tracing::warn!(delivery = %d.id, "lease ran out before the outcome was recorded");
            return Ok(());
        }
        if let Some(e) = endpoint {
            match a.answer {
                Answer::Delivered => endpoints::succeeded(&mut tx, &e.id).await?,
                Answer::Gone => disable(&mut tx, e, "gone", now).await?,
                _ => {
                    let since = endpoints::failed(&mut tx, &e.id, now).await?;
                    let limit =
                        chrono::Duration::from_std(self.settings.disable_after).unwrap_or_default();
                    if since.is_some_and(|s| now - s >= limit) {
                        disable(&mut tx, e, "failing", now).await?;
                    }
                }
            }
        }
        tx.commit().await?;
        self.observe(d, m, status, now);
        Ok(())
    }

    /// The attempt's metrics.
    fn observe(&self, d: &Leased, m: &MessageRow, status: DeliveryStatus, now: DateTime<Utc>) {
        let outcome_label = match status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Pending => "retry",
        };
        metrics::counter!("notification_attempts_total", "channel" => d.channel.as_str(), "outcome" => outcome_label).increment(1);
        if status == DeliveryStatus::Delivered {
            let age = (now - m.created_at).to_std().unwrap_or_default();
            metrics::histogram!("notification_delivery_seconds", "channel" => d.channel.as_str())
                .record(age.as_secs_f64());
        }
    }
}

/// Disables an endpoint for `reason` ("gone", "failing" or "manual"): what is pending to it
/// fails, and unless the tenant did it, the tenant is told.
pub async fn disable(
    tx: &mut sqlx::PgConnection,
    e: &EndpointRow,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), NotifyError> {
    let Some(mut row) = endpoints::get(tx, None, &e.id, true).await? else {
        return Ok(());
    };
    if row.status == EndpointStatus::Disabled {
        return Ok(());
    }
    row.status = EndpointStatus::Disabled;
    row.disabled_reason = Some(reason.to_string());
    let row = endpoints::save(tx, &row).await?;
    deliveries::fail_pending(tx, &row.id, "endpoint disabled").await?;
    if reason == "manual" {
        return Ok(());
    }
    let why = match reason {
        "gone" => "it answered 410 Gone".to_string(),
        _ => format!(
            "every delivery has failed since {}",
            row.failing_since
                .unwrap_or(now)
                .format("%Y-%m-%d %H:%M UTC")
        ),
    };
    let data = serde_json::json!({
        "endpoint_id": row.id,
        "url": row.url,
        "reason": reason,
        "failing_since": row.failing_since,
    });
    let vars = [("url", row.url.clone()), ("reason", why)]
        .into_iter()
        .collect();
    tell(
        tx,
        Telling {
            tenant: &row.tenant_id,
            event_id: &format!("{}:disabled:{}", row.id, now.timestamp_micros()),
            event_type: topics::ENDPOINT_DISABLED,
            time: now,
            data: &data,
            vars,
            also_email: None,
            attachment: None,
        },
    )
    .await?;
    tracing::warn!(endpoint = %row.id, tenant = %row.tenant_id, reason, "webhook endpoint disabled");
    Ok(())
}
