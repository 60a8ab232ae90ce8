//! Rows to and from `saas.notification.v1` messages.

use std::collections::HashMap;

use ids::DeliveryId;
use platform::grpc::timestamp;
use rpc::notification::v1 as pb;

use crate::store::endpoints::EndpointRow;
use crate::store::messages::{AttemptRow, DeliveryRow, MessageRow};
use crate::store::recipients::RecipientRow;
use crate::store::{Channel, DeliveryStatus, EndpointStatus};

pub fn channel_pb(c: Channel) -> pb::Channel {
    match c {
        Channel::Email => pb::Channel::Email,
        Channel::Sms => pb::Channel::Sms,
        Channel::Webhook => pb::Channel::Webhook,
    }
}

pub fn recipient_pb(r: RecipientRow) -> pb::Recipient {
    pb::Recipient {
        id: r.id.to_string(),
        tenant_id: r.tenant_id.to_string(),
        channel: channel_pb(r.channel) as i32,
        address: r.address,
        event_types: r.event_types,
        created_at: Some(timestamp(r.created_at)),
    }
}

pub fn endpoint_pb(e: EndpointRow) -> pb::WebhookEndpoint {
    pb::WebhookEndpoint {
        id: e.id.to_string(),
        tenant_id: e.tenant_id.to_string(),
        url: e.url,
        description: e.description,
        event_types: e.event_types,
        enabled: e.status == EndpointStatus::Enabled,
        disabled_reason: e.disabled_reason.unwrap_or_default(),
        failing_since: e.failing_since.map(timestamp),
        created_at: Some(timestamp(e.created_at)),
        previous_secret_expires_at: e
            .previous_expires_at
            .filter(|t| *t > chrono::Utc::now())
            .map(timestamp),
    }
}

fn status_pb(s: DeliveryStatus) -> pb::DeliveryStatus {
    match s {
        DeliveryStatus::Pending => pb::DeliveryStatus::Pending,
        DeliveryStatus::Delivered => pb::DeliveryStatus::Delivered,
        DeliveryStatus::Failed => pb::DeliveryStatus::Failed,
    }
}

fn attempt_pb(a: AttemptRow) -> pb::Attempt {
    pb::Attempt {
        number: a.number as u32,
        at: Some(timestamp(a.at)),
        response_code: a.response_code.map(|c| c as u32),
        latency_ms: a.latency_ms as u32,
        response: a.response,
    }
}

/// A message with its deliveries, and their attempts when given.
pub fn message_pb(
    m: MessageRow,
    deliveries: Vec<DeliveryRow>,
    attempts: &mut HashMap<DeliveryId, Vec<AttemptRow>>,
) -> pb::Message {
    pb::Message {
        id: m.id.to_string(),
        tenant_id: m.tenant_id.to_string(),
        event_id: m.event_id,
        event_type: m.event_type,
        body: m.body,
        created_at: Some(timestamp(m.created_at)),
        deliveries: deliveries
            .into_iter()
            .map(|d| pb::Delivery {
                attempts: attempts
                    .remove(&d.id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(attempt_pb)
                    .collect(),
                id: d.id.to_string(),
                channel: channel_pb(d.channel) as i32,
                target: d.target,
                status: status_pb(d.status) as i32,
                next_attempt_at: d.next_attempt_at.map(timestamp),
                last_error: d.last_error.unwrap_or_default(),
            })
            .collect(),
    }
}
