//! Events in: every tenant-scoped event of the platform (`user.*`, `tenant.*`,
//! `subscription.*`, `invoice.*`, `credit_note.*`, `payment.*`) becomes at most one message
//! to its tenant, with a delivery to each enabled endpoint and each recipient whose filters
//! take it. The inbox (platform) and the message's unique `(tenant, event)` make a
//! redelivered event send nothing twice.
//!
//! Who gets e-mail: the tenant's e-mail recipients whose filters match, and for
//! `invoice.ready` also the invoice's billing address. E-mail and SMS go out only for events
//! that have a template ([`templates::for_event`]); webhooks carry every event.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use event_types::Payload;
use ids::TenantId;
use platform::events::{CloudEvent, EventHandler, HandlerError};
use sqlx::PgConnection;
use tokio::sync::Notify;

use crate::domain::templates::{self, Rendered};
use crate::domain::topics;
use crate::error::NotifyError;
use crate::store::messages::{self, NewMessage};
use crate::store::{Channel, EndpointStatus, endpoints, recipients, tenants};

/// One event as the tenant is told of it.
#[derive(Debug, Clone)]
pub struct Telling<'a> {
    pub tenant: &'a TenantId,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub time: DateTime<Utc>,
    pub data: &'a serde_json::Value,
    /// Values for the e-mail/SMS template (the tenant's name is added).
    pub vars: BTreeMap<&'static str, String>,
    /// An address that hears of this event whatever the recipients say (an invoice's
    /// billing e-mail).
    pub also_email: Option<String>,
    /// The invoice whose PDF an e-mail attaches.
    pub attachment: Option<String>,
}

/// The webhook body, per Standard Webhooks: `type`, `timestamp`, `data`.
pub fn body(event_type: &str, time: DateTime<Utc>, data: &serde_json::Value) -> String {
    serde_json::json!({
        "type": event_type,
        "timestamp": time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": data,
    })
    .to_string()
}

/// Writes the message and its deliveries; `false` when nobody hears of it or it was told
/// already.
pub async fn tell(tx: &mut PgConnection, t: Telling<'_>) -> Result<bool, NotifyError> {
    let mut targets: Vec<(Channel, String)> = endpoints::list(tx, t.tenant)
        .await?
        .into_iter()
        .filter(|e| {
            e.status == EndpointStatus::Enabled && topics::matches(&e.event_types, t.event_type)
        })
        .map(|e| (Channel::Webhook, e.id.to_string()))
        .collect();
    let template = templates::for_event(t.event_type);
    if template.is_some() {
        for r in recipients::list(tx, t.tenant).await? {
            if topics::matches(&r.event_types, t.event_type) {
                targets.push((r.channel, r.address));
            }
        }
        if let Some(addr) = &t.also_email
            && !targets
                .iter()
                .any(|(c, a)| *c == Channel::Email && a.eq_ignore_ascii_case(addr))
        {
            targets.push((Channel::Email, addr.clone()));
        }
    }
    if targets.is_empty() {
        return Ok(false);
    }
    let mail: Option<Rendered> = match template {
        Some(name) if targets.iter().any(|(c, _)| *c != Channel::Webhook) => {
            let mut vars = t.vars;
            vars.insert("tenant_name", tenants::name_of(tx, t.tenant).await?);
            vars.insert("event_type", t.event_type.to_string());
            match templates::render(name, &vars) {
                Ok(r) => Some(r),
                // A template this event cannot fill is our bug: the webhooks still go out,
                // the e-mail and SMS do not (never a blank in a customer's inbox).
                Err(e) => {
                    tracing::error!(error = %e, event_type = t.event_type, "template not rendered; e-mail and SMS skipped");
                    targets.retain(|(c, _)| *c == Channel::Webhook);
                    None
                }
            }
        }
        _ => None,
    };
    if targets.is_empty() {
        return Ok(false);
    }
    let body = body(t.event_type, t.time, t.data);
    let m = NewMessage {
        tenant: t.tenant,
        event_id: t.event_id,
        event_type: t.event_type,
        body: &body,
        mail: mail.as_ref(),
        attachment: t.attachment.as_deref(),
    };
    Ok(messages::insert(tx, &m, &targets).await?.is_some())
}

/// Consumes every stream's tenant-scoped events.
#[derive(Debug, Clone)]
pub struct Fanout {
    pub wake: Arc<Notify>,
}

impl EventHandler for Fanout {
    async fn handle(&self, tx: &mut PgConnection, event: &CloudEvent) -> Result<(), HandlerError> {
        if !topics::notifiable().any(|t| t == event.event_type) {
            return Ok(());
        }
        let payload = Payload::decode(&event.event_type, &event.data)
            .map_err(|e| HandlerError::Permanent(format!("{}: {e}", event.event_type)))?;
        if let Payload::TenantCreated(c) = &payload {
            tenants::upsert(tx, &c.tenant_id, &c.name)
                .await
                .map_err(NotifyError::from)?;
        }
        let Some(about) = about(&event.event_type, &payload) else {
            return Ok(());
        };
        let told = tell(
            tx,
            Telling {
                tenant: &about.tenant,
                event_id: &event.id.to_string(),
                event_type: &event.event_type,
                time: event.time,
                data: &event.data,
                vars: about.vars,
                also_email: about.also_email,
                attachment: about.attachment,
            },
        )
        .await?;
        if told {
            metrics::counter!("notification_messages_total", "event_type" => event.event_type.clone())
                .increment(1);
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// What an event says for its tenant's notification.
struct About {
    tenant: TenantId,
    vars: BTreeMap<&'static str, String>,
    also_email: Option<String>,
    attachment: Option<String>,
}

fn money(minor: i64, currency: &str) -> String {
    match pricing::Currency::parse(currency) {
        Ok(c) => format!(
            "{currency} {}",
            pricing::Money::new(minor, c).to_major_string()
        ),
        Err(_) => format!("{minor} {currency} (minor units)"),
    }
}

fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// How a subscription event reads after "your subscription".
fn change(event_type: &str, s: &event_types::SubscriptionChanged) -> String {
    match event_type {
        "subscription.created" => "has started".into(),
        "subscription.plan_changed" => format!("moved to plan {}", s.plan_id),
        "subscription.seats_changed" => match s.previous_seats {
            Some(before) => format!("went from {before} to {} seats", s.seats),
            None => format!("has {} seats now", s.seats),
        },
        "subscription.cancel_scheduled" => "ends with its current period".into(),
        "subscription.canceled" => "has ended".into(),
        "subscription.suspended" => "is suspended".into(),
        "subscription.reactivated" => "is active again".into(),
        "subscription.past_due" => "is past due".into(),
        "subscription.trial_ended" => "has ended its trial".into(),
        "subscription.renewed" => "has renewed".into(),
        _ => format!("is {}", s.status.replace('_', " ")),
    }
}

fn about(event_type: &str, p: &Payload) -> Option<About> {
    let mut vars = BTreeMap::new();
    let (mut also_email, mut attachment) = (None, None);
    let tenant = match p {
        Payload::UserChanged(u) => u.tenant_id.clone(),
        Payload::TenantCreated(t) => t.tenant_id.clone(),
        Payload::TenantStatusChanged(t) => t.tenant_id.clone(),
        Payload::SubscriptionChanged(s) => {
            vars.insert("plan", s.plan_id.to_string());
            vars.insert("seats", s.seats.to_string());
            vars.insert("period_end", date(s.period_end));
            vars.insert("change", change(event_type, s));
            s.tenant_id.clone()
        }
        Payload::InvoiceCreated(i) => i.invoice.tenant_id.clone(),
        Payload::InvoiceReady(i) => {
            vars.insert("number", i.number.clone());
            vars.insert("amount", money(i.amount_due_minor, &i.invoice.currency));
            vars.insert("due_date", date(i.due_at));
            also_email = i.billing_email.clone().filter(|e| !e.is_empty());
            attachment = i.pdf_key.as_ref().map(|_| i.invoice.invoice_id.to_string());
            i.invoice.tenant_id.clone()
        }
        Payload::CreditNoteCreated(c) => c.invoice.tenant_id.clone(),
        Payload::InvoicePaid(i) => {
            vars.insert("number", i.number.clone());
            vars.insert("amount", money(i.amount_paid_minor, &i.invoice.currency));
            vars.insert("paid_date", date(i.paid_at));
            i.invoice.tenant_id.clone()
        }
        Payload::InvoiceVoided(i) => i.invoice.tenant_id.clone(),
        Payload::PaymentSucceeded(x) => x.tenant_id.clone(),
        Payload::PaymentFailed(f) => {
            vars.insert("amount", money(f.amount_minor, &f.currency));
            let why = if f.failure_message.is_empty() {
                &f.failure_code
            } else {
                &f.failure_message
            };
            vars.insert("failure", why.clone());
            vars.insert(
                "next_retry",
                match f.next_retry_at {
                    Some(t) => format!("We will try again on {}.", date(t)),
                    None => "We will not try again automatically.".into(),
                },
            );
            f.tenant_id.clone()
        }
        Payload::PaymentRefunded(r) => r.tenant_id.clone(),
        Payload::DunningExhausted(d) => {
            vars.insert("retries", d.retries.to_string());
            d.tenant_id.clone()
        }
        Payload::RunRequested(_) | Payload::RunCompleted(_) | Payload::RunFailed(_) => return None,
    };
    Some(About {
        tenant,
        vars,
        also_email,
        attachment,
    })
}
