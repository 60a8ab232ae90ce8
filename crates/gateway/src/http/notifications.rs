//! What a tenant is told and who hears it, forwarded to the notification service:
//! recipients, `/v1/tenants/{tenant_id}/notification_recipients` (e-mail addresses and phone
//! numbers, each with the events it wants), and messages, `/v1/tenants/{tenant_id}/messages`
//! (every event told, with each delivery and its attempts: the delivery log), which can be
//! replayed to webhook endpoints. Endpoints have a file of their own beside this one.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use platform::Problem;
use platform::grpc::Channel;
use rpc::common::v1::PageRequest;
use rpc::notification::v1 as pb;
use rpc::notification::v1::notification_service_client::NotificationServiceClient;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, ApiQuery, from_status};
use super::openapi::{BodyErrors, Errors};
use super::wire::{List, call, time};
use crate::auth::Identity;

pub type Notifications = NotificationServiceClient<Channel>;
type Result<T> = std::result::Result<T, Problem>;

pub(super) const TENANT: &str = "tenant id, e.g. ten_…";
const RECIPIENT: &str = "recipient id, e.g. rcp_…";
const MESSAGE: &str = "message id, e.g. msg_…";

pub fn router(n: Notifications) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_recipient, list_recipients))
        .routes(routes!(update_recipient, delete_recipient))
        .routes(routes!(list_messages))
        .routes(routes!(get_message))
        .routes(routes!(replay_message))
        .with_state(n)
}

fn channel_name(c: pb::Channel) -> &'static str {
    match c {
        pb::Channel::Email => "email",
        pb::Channel::Sms => "sms",
        pb::Channel::Webhook => "webhook",
        pb::Channel::Unspecified => "",
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Recipient {
    id: String,
    tenant_id: String,
    /// email or sms.
    channel: &'static str,
    address: String,
    /// Event types or prefixes (`invoice.*`); empty: every event.
    event_types: Vec<String>,
    created_at: Option<String>,
}

impl From<pb::Recipient> for Recipient {
    fn from(r: pb::Recipient) -> Self {
        Recipient {
            channel: channel_name(r.channel()),
            id: r.id,
            tenant_id: r.tenant_id,
            address: r.address,
            event_types: r.event_types,
            created_at: time(r.created_at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRecipient {
    /// email or sms.
    channel: String,
    /// An e-mail address, or a phone number in E.164 (`+4930…`).
    address: String,
    /// Event types or prefixes (`invoice.*`); empty or absent: every event that is told by
    /// e-mail and SMS.
    #[serde(default)]
    event_types: Vec<String>,
}

/// Add a recipient: an e-mail address or phone number that hears of the tenant's events.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/notification_recipients", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT)), request_body = CreateRecipient, responses((status = 200, body = Recipient), BodyErrors), security(("bearer" = [])))]
async fn create_recipient(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<CreateRecipient>,
) -> Result<Json<Recipient>> {
    id.check_tenant(&tenant_id)?;
    let channel = match body.channel.as_str() {
        "email" => pb::Channel::Email,
        "sms" => pb::Channel::Sms,
        _ => {
            return Err(
                Problem::bad_request("unknown channel").with_field("channel", "email or sms")
            );
        }
    };
    let req = pb::CreateRecipientRequest {
        tenant_id,
        channel: channel as i32,
        address: body.address,
        event_types: body.event_types,
    };
    let r = n
        .create_recipient(call(&id, req))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

/// The tenant's recipients.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/notification_recipients", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT)), responses((status = 200, body = List<Recipient>), Errors), security(("bearer" = [])))]
async fn list_recipients(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
) -> Result<Json<List<Recipient>>> {
    id.check_tenant(&tenant_id)?;
    let r = n
        .list_recipients(call(&id, pb::TenantRequest { tenant_id }))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(List::new(
        r.recipients.into_iter().map(Into::into).collect(),
        None,
    )))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRecipient {
    /// Replaces the filters; `[]`: every event.
    event_types: Vec<String>,
}

/// Change which events a recipient hears of.
#[utoipa::path(patch, path = "/v1/tenants/{tenant_id}/notification_recipients/{recipient_id}", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT), ("recipient_id" = String, Path, description = RECIPIENT)), request_body = UpdateRecipient, responses((status = 200, body = Recipient), BodyErrors), security(("bearer" = [])))]
async fn update_recipient(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, recipient_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateRecipient>,
) -> Result<Json<Recipient>> {
    id.check_tenant(&tenant_id)?;
    let req = pb::UpdateRecipientRequest {
        tenant_id,
        recipient_id,
        event_types: body.event_types,
    };
    let r = n
        .update_recipient(call(&id, req))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

/// Remove a recipient.
#[utoipa::path(delete, path = "/v1/tenants/{tenant_id}/notification_recipients/{recipient_id}", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT), ("recipient_id" = String, Path, description = RECIPIENT)), responses((status = 200, body = Recipient), Errors), security(("bearer" = [])))]
async fn delete_recipient(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, recipient_id)): Path<(String, String)>,
) -> Result<Json<Recipient>> {
    id.check_tenant(&tenant_id)?;
    let req = pb::RecipientRef {
        tenant_id,
        recipient_id,
    };
    let r = n
        .delete_recipient(call(&id, req))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    number: u32,
    at: Option<String>,
    /// HTTP status (webhooks, SMS) or SMTP reply code (e-mail); absent when nothing answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    response_code: Option<u32>,
    latency_ms: u32,
    /// The first 1,024 bytes of the answer, or why there was none.
    response: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    id: String,
    /// email, sms or webhook.
    channel: &'static str,
    /// An endpoint id, an e-mail address or a phone number.
    target: String,
    /// pending, delivered or failed.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    last_error: String,
    /// Every attempt, oldest first (only on a single message).
    attempts: Vec<Attempt>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Message {
    id: String,
    tenant_id: String,
    event_id: String,
    event_type: String,
    /// The webhook body as signed: `{"type", "timestamp", "data"}`.
    body: serde_json::Value,
    created_at: Option<String>,
    deliveries: Vec<Delivery>,
}

impl From<pb::Message> for Message {
    fn from(m: pb::Message) -> Self {
        Message {
            body: serde_json::from_str(&m.body).unwrap_or(serde_json::Value::String(m.body)),
            id: m.id,
            tenant_id: m.tenant_id,
            event_id: m.event_id,
            event_type: m.event_type,
            created_at: time(m.created_at),
            deliveries: m
                .deliveries
                .into_iter()
                .map(|d| Delivery {
                    channel: channel_name(d.channel()),
                    status: match d.status() {
                        pb::DeliveryStatus::Pending => "pending",
                        pb::DeliveryStatus::Delivered => "delivered",
                        pb::DeliveryStatus::Failed => "failed",
                        pb::DeliveryStatus::Unspecified => "",
                    },
                    id: d.id,
                    target: d.target,
                    next_attempt_at: time(d.next_attempt_at),
                    last_error: d.last_error,
                    attempts: d
                        .attempts
                        .into_iter()
                        .map(|a| Attempt {
                            number: a.number,
                            at: time(a.at),
                            response_code: a.response_code,
                            latency_ms: a.latency_ms,
                            response: a.response,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessageListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    /// Only messages of this event type.
    event_type: Option<String>,
}

/// The tenant's messages, newest first, with their deliveries.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/messages", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT), MessageListQuery), responses((status = 200, body = List<Message>), Errors), security(("bearer" = [])))]
async fn list_messages(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiQuery(q): ApiQuery<MessageListQuery>,
) -> Result<Json<List<Message>>> {
    id.check_tenant(&tenant_id)?;
    let limit = q.limit.unwrap_or(0);
    if limit > 100 {
        return Err(
            Problem::bad_request("limit must be from 1 to 100").with_field("limit", "at most 100")
        );
    }
    let req = pb::ListMessagesRequest {
        tenant_id,
        page: Some(PageRequest {
            limit,
            cursor: q.cursor.unwrap_or_default(),
        }),
        event_type: q.event_type.unwrap_or_default(),
    };
    let r = n
        .list_messages(call(&id, req))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(List::new(
        r.messages.into_iter().map(Into::into).collect(),
        r.page,
    )))
}

/// One message with every delivery and attempt: the delivery log.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/messages/{message_id}", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT), ("message_id" = String, Path, description = MESSAGE)), responses((status = 200, body = Message), Errors), security(("bearer" = [])))]
async fn get_message(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, message_id)): Path<(String, String)>,
) -> Result<Json<Message>> {
    id.check_tenant(&tenant_id)?;
    let req = pb::MessageRef {
        tenant_id,
        message_id,
    };
    let r = n.get_message(call(&id, req)).await.map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// Only to this endpoint; absent: every enabled endpoint the message went to.
    endpoint_id: Option<String>,
}

/// Send a message's webhooks again, from the start of the retry schedule.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/messages/{message_id}/replay", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT), ("message_id" = String, Path, description = MESSAGE)), request_body = Replay, responses((status = 200, body = Message), BodyErrors), security(("bearer" = [])))]
async fn replay_message(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, message_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<Replay>,
) -> Result<Json<Message>> {
    id.check_tenant(&tenant_id)?;
    let req = pb::ReplayMessageRequest {
        tenant_id,
        message_id,
        endpoint_id: body.endpoint_id.unwrap_or_default(),
    };
    let r = n
        .replay_message(call(&id, req))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}
