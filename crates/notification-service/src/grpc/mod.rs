//! `saas.notification.v1.NotificationService`: transport only. Every call is scoped by the
//! verified caller's tenant (another tenant's recipient, endpoint or message answers
//! NOT_FOUND). The gateway's permission table says who may read and who may change.

mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use ids::{DeliveryId, EndpointId, MessageId, RecipientId, TenantId};
use platform::grpc::Caller;
use platform::paging;
use rpc::common::v1::PageResponse;
use rpc::notification::v1 as pb;
use rpc::notification::v1::notification_service_server::NotificationService;
use sqlx::PgPool;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::domain::{address, signing, ssrf, topics};
use crate::error::{NotifyError, Result};
use crate::settings::Settings;
use crate::store::endpoints::{self, NewEndpoint};
use crate::store::messages::{self, AttemptRow};
use crate::store::{Channel, EndpointStatus, deliveries, recipients};

/// A tenant keeps at most this many endpoints and recipients.
pub const MAX_ENDPOINTS: i64 = 20;
pub const MAX_RECIPIENTS: usize = 100;

#[derive(Debug, Clone)]
pub struct NotificationApi {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub wake: Arc<Notify>,
}

type Reply<T> = std::result::Result<Response<T>, Status>;

fn recipient_id(s: &str) -> Result<RecipientId> {
    RecipientId::parse(s).map_err(|_| NotifyError::NotFound("recipient"))
}

fn endpoint_id(s: &str) -> Result<EndpointId> {
    EndpointId::parse(s).map_err(|_| NotifyError::NotFound("webhook endpoint"))
}

fn message_id(s: &str) -> Result<MessageId> {
    MessageId::parse(s).map_err(|_| NotifyError::NotFound("message"))
}

fn filters(f: &[String]) -> Result<Vec<String>> {
    topics::check_filters(f).map_err(|e| NotifyError::invalid("event_types", e))
}

fn description(d: &str) -> Result<String> {
    let d = d.trim();
    if d.chars().count() > 500 || d.chars().any(char::is_control) {
        return Err(NotifyError::invalid(
            "description",
            "at most 500 printable characters",
        ));
    }
    Ok(d.to_string())
}

impl NotificationApi {
    fn url(&self, url: &str) -> Result<String> {
        let url = url.trim();
        ssrf::check_url(url, self.settings.allow_private)
            .map_err(|e| NotifyError::invalid("url", e.to_string()))?;
        Ok(url.to_string())
    }

    async fn endpoint(&self, tenant: &TenantId, id: &str) -> Result<endpoints::EndpointRow> {
        let mut conn = self.pool.acquire().await?;
        endpoints::get(&mut conn, Some(tenant), &endpoint_id(id)?, false)
            .await?
            .ok_or(NotifyError::NotFound("webhook endpoint"))
    }

    async fn create_recipient(
        &self,
        c: &Caller,
        r: pb::CreateRecipientRequest,
    ) -> Result<pb::Recipient> {
        let tenant = c.scope(&r.tenant_id)?;
        let (channel, address) = match r.channel() {
            pb::Channel::Email => (Channel::Email, address::email(&r.address)),
            pb::Channel::Sms => (Channel::Sms, address::phone(&r.address)),
            _ => return Err(NotifyError::invalid("channel", "email or sms")),
        };
        let address = address.map_err(|e| NotifyError::invalid("address", e))?;
        let event_types = filters(&r.event_types)?;
        let mut tx = self.pool.begin().await?;
        if recipients::list(&mut tx, &tenant).await?.len() >= MAX_RECIPIENTS {
            return Err(NotifyError::FailedPrecondition(format!(
                "a tenant has at most {MAX_RECIPIENTS} recipients"
            )));
        }
        let row = recipients::insert(&mut tx, &tenant, channel, &address, &event_types)
            .await?
            .ok_or_else(|| NotifyError::Conflict(format!("{address} is a recipient already")))?;
        tx.commit().await?;
        Ok(wire::recipient_pb(row))
    }

    async fn create_endpoint(
        &self,
        c: &Caller,
        r: pb::CreateWebhookEndpointRequest,
    ) -> Result<pb::WebhookEndpointWithSecret> {
        let tenant = c.scope(&r.tenant_id)?;
        let url = self.url(&r.url)?;
        let event_types = filters(&r.event_types)?;
        let description = description(&r.description)?;
        let secret = signing::Secret::generate().expose();
        let mut tx = self.pool.begin().await?;
        // Serializes creations of one tenant, so the limit holds under concurrency.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('notification-endpoints:' || $1))")
            .bind(&tenant)
            .execute(&mut *tx)
            .await?;
        if endpoints::count(&mut tx, &tenant).await? >= MAX_ENDPOINTS {
            return Err(NotifyError::FailedPrecondition(format!(
                "a tenant has at most {MAX_ENDPOINTS} webhook endpoints"
            )));
        }
        let row = endpoints::insert(
            &mut tx,
            &NewEndpoint {
                tenant: &tenant,
                url: &url,
                description: &description,
                event_types: &event_types,
                secret: &secret,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(pb::WebhookEndpointWithSecret {
            endpoint: Some(wire::endpoint_pb(row)),
            secret,
        })
    }

    async fn update_endpoint(
        &self,
        c: &Caller,
        r: pb::UpdateWebhookEndpointRequest,
    ) -> Result<pb::WebhookEndpoint> {
        let tenant = c.scope(&r.tenant_id)?;
        let id = endpoint_id(&r.endpoint_id)?;
        let url = r.url.as_deref().map(|u| self.url(u)).transpose()?;
        let event_types = r
            .set_event_types
            .then(|| filters(&r.event_types))
            .transpose()?;
        let description = r.description.as_deref().map(description).transpose()?;
        let mut tx = self.pool.begin().await?;
        let mut row = endpoints::get(&mut tx, Some(&tenant), &id, true)
            .await?
            .ok_or(NotifyError::NotFound("webhook endpoint"))?;
        if let Some(url) = url {
            row.url = url;
        }
        if let Some(f) = event_types {
            row.event_types = f;
        }
        if let Some(d) = description {
            row.description = d;
        }
        match r.enabled {
            Some(true) if row.status == EndpointStatus::Disabled => {
                row.status = EndpointStatus::Enabled;
                row.disabled_reason = None;
                row.failing_since = None;
            }
            Some(false) if row.status == EndpointStatus::Enabled => {
                let saved = endpoints::save(&mut tx, &row).await?;
                crate::sender::disable(&mut tx, &saved, "manual", Utc::now()).await?;
                let row = endpoints::get(&mut tx, Some(&tenant), &id, false)
                    .await?
                    .ok_or(NotifyError::NotFound("webhook endpoint"))?;
                tx.commit().await?;
                return Ok(wire::endpoint_pb(row));
            }
            _ => {}
        }
        let row = endpoints::save(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(wire::endpoint_pb(row))
    }

    async fn rotate(
        &self,
        c: &Caller,
        r: pb::WebhookEndpointRef,
    ) -> Result<pb::WebhookEndpointWithSecret> {
        let tenant = c.scope(&r.tenant_id)?;
        let id = endpoint_id(&r.endpoint_id)?;
        let mut tx = self.pool.begin().await?;
        let mut row = endpoints::get(&mut tx, Some(&tenant), &id, true)
            .await?
            .ok_or(NotifyError::NotFound("webhook endpoint"))?;
        let secret = signing::Secret::generate().expose();
        let overlap = chrono::Duration::from_std(self.settings.secret_overlap).unwrap_or_default();
        row.previous_secret = Some(std::mem::replace(&mut row.secret, secret.clone()));
        row.previous_expires_at = Some(Utc::now() + overlap);
        let row = endpoints::save(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(pb::WebhookEndpointWithSecret {
            endpoint: Some(wire::endpoint_pb(row)),
            secret,
        })
    }

    async fn message(&self, tenant: &TenantId, id: &str) -> Result<pb::Message> {
        let mut conn = self.pool.acquire().await?;
        let m = messages::get(&mut conn, Some(tenant), &message_id(id)?)
            .await?
            .ok_or(NotifyError::NotFound("message"))?;
        let ds = messages::deliveries(&mut conn, std::slice::from_ref(&m.id)).await?;
        let ids: Vec<DeliveryId> = ds.iter().map(|d| d.id.clone()).collect();
        let mut attempts: HashMap<DeliveryId, Vec<AttemptRow>> = HashMap::new();
        for a in messages::attempts(&mut conn, &ids).await? {
            attempts.entry(a.delivery_id.clone()).or_default().push(a);
        }
        Ok(wire::message_pb(m, ds, &mut attempts))
    }

    async fn list_messages(
        &self,
        c: &Caller,
        r: pb::ListMessagesRequest,
    ) -> Result<pb::ListMessagesResponse> {
        let tenant = c.scope(&r.tenant_id)?;
        let page = r.page.unwrap_or_default();
        let limit = paging::limit(page.limit);
        let before = paging::after(&page.cursor)?;
        let event_type = Some(r.event_type.trim()).filter(|t| !t.is_empty());
        let mut conn = self.pool.acquire().await?;
        let rows = messages::list(&mut conn, &tenant, event_type, before.as_deref(), limit).await?;
        let page = paging::page(rows, limit, |m| m.id.to_string());
        let ids: Vec<MessageId> = page.rows.iter().map(|m| m.id.clone()).collect();
        let mut by_message: HashMap<MessageId, Vec<messages::DeliveryRow>> = HashMap::new();
        for d in messages::deliveries(&mut conn, &ids).await? {
            by_message.entry(d.message_id.clone()).or_default().push(d);
        }
        let mut no_attempts = HashMap::new();
        Ok(pb::ListMessagesResponse {
            messages: page
                .rows
                .into_iter()
                .map(|m| {
                    let ds = by_message.remove(&m.id).unwrap_or_default();
                    wire::message_pb(m, ds, &mut no_attempts)
                })
                .collect(),
            page: Some(PageResponse {
                next_cursor: page.next_cursor,
                has_more: page.has_more,
            }),
        })
    }

    async fn replay(&self, c: &Caller, r: pb::ReplayMessageRequest) -> Result<pb::Message> {
        let tenant = c.scope(&r.tenant_id)?;
        let id = message_id(&r.message_id)?;
        let mut tx = self.pool.begin().await?;
        let m = messages::get(&mut tx, Some(&tenant), &id)
            .await?
            .ok_or(NotifyError::NotFound("message"))?;
        let enabled: Vec<String> = endpoints::list(&mut tx, &tenant)
            .await?
            .into_iter()
            .filter(|e| e.status == EndpointStatus::Enabled)
            .map(|e| e.id.to_string())
            .collect();
        let sent_to: Vec<String> = messages::deliveries(&mut tx, std::slice::from_ref(&m.id))
            .await?
            .into_iter()
            .filter(|d| d.channel == Channel::Webhook)
            .map(|d| d.target)
            .collect();
        let targets: Vec<String> = if r.endpoint_id.is_empty() {
            sent_to
                .into_iter()
                .filter(|t| enabled.contains(t))
                .collect()
        } else {
            let e = endpoint_id(&r.endpoint_id)?.to_string();
            if !sent_to.contains(&e) {
                return Err(NotifyError::FailedPrecondition(
                    "the message was never sent to this endpoint".into(),
                ));
            }
            if !enabled.contains(&e) {
                return Err(NotifyError::FailedPrecondition(
                    "the endpoint is disabled; enable it first".into(),
                ));
            }
            vec![e]
        };
        if targets.is_empty() {
            return Err(NotifyError::FailedPrecondition(
                "none of the endpoints this message went to is enabled".into(),
            ));
        }
        deliveries::replay(&mut tx, &m.id, &targets).await?;
        tx.commit().await?;
        self.wake.notify_one();
        self.message(&tenant, &r.message_id).await
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn create_recipient(
        &self,
        req: Request<pb::CreateRecipientRequest>,
    ) -> Reply<pb::Recipient> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        Ok(Response::new(
            self.create_recipient(&c, req.into_inner()).await?,
        ))
    }

    async fn list_recipients(
        &self,
        req: Request<pb::TenantRequest>,
    ) -> Reply<pb::ListRecipientsResponse> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        let tenant = c
            .scope(&req.get_ref().tenant_id)
            .map_err(NotifyError::from)?;
        let mut conn = self.pool.acquire().await.map_err(NotifyError::from)?;
        let rows = recipients::list(&mut conn, &tenant)
            .await
            .map_err(NotifyError::from)?;
        Ok(Response::new(pb::ListRecipientsResponse {
            recipients: rows.into_iter().map(wire::recipient_pb).collect(),
        }))
    }

    async fn update_recipient(
        &self,
        req: Request<pb::UpdateRecipientRequest>,
    ) -> Reply<pb::Recipient> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        let r = req.into_inner();
        let run = async {
            let tenant = c.scope(&r.tenant_id)?;
            let id = recipient_id(&r.recipient_id)?;
            let f = filters(&r.event_types)?;
            let mut conn = self.pool.acquire().await?;
            recipients::set_event_types(&mut conn, &tenant, &id, &f)
                .await?
                .ok_or(NotifyError::NotFound("recipient"))
        };
        Ok(Response::new(wire::recipient_pb(run.await?)))
    }

    async fn delete_recipient(&self, req: Request<pb::RecipientRef>) -> Reply<pb::Recipient> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        let r = req.into_inner();
        let run = async {
            let tenant = c.scope(&r.tenant_id)?;
            let id = recipient_id(&r.recipient_id)?;
            let mut conn = self.pool.acquire().await?;
            recipients::delete(&mut conn, &tenant, &id)
                .await?
                .ok_or(NotifyError::NotFound("recipient"))
        };
        Ok(Response::new(wire::recipient_pb(run.await?)))
    }

    async fn create_webhook_endpoint(
        &self,
        req: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Reply<pb::WebhookEndpointWithSecret> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        Ok(Response::new(
            self.create_endpoint(&c, req.into_inner()).await?,
        ))
    }

    async fn list_webhook_endpoints(
        &self,
        req: Request<pb::TenantRequest>,
    ) -> Reply<pb::ListWebhookEndpointsResponse> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        let tenant = c
            .scope(&req.get_ref().tenant_id)
            .map_err(NotifyError::from)?;
        let mut conn = self.pool.acquire().await.map_err(NotifyError::from)?;
        let rows = endpoints::list(&mut conn, &tenant)
            .await
            .map_err(NotifyError::from)?;
        Ok(Response::new(pb::ListWebhookEndpointsResponse {
            endpoints: rows.into_iter().map(wire::endpoint_pb).collect(),
        }))
    }

    async fn get_webhook_endpoint(
        &self,
        req: Request<pb::WebhookEndpointRef>,
    ) -> Reply<pb::WebhookEndpoint> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        let r = req.get_ref();
        let tenant = c.scope(&r.tenant_id).map_err(NotifyError::from)?;
        Ok(Response::new(wire::endpoint_pb(
            self.endpoint(&tenant, &r.endpoint_id).await?,
        )))
    }

    async fn update_webhook_endpoint(
        &self,
        req: Request<pb::UpdateWebhookEndpointRequest>,
    ) -> Reply<pb::WebhookEndpoint> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        Ok(Response::new(
            self.update_endpoint(&c, req.into_inner()).await?,
        ))
    }

    async fn delete_webhook_endpoint(
        &self,
        req: Request<pb::WebhookEndpointRef>,
    ) -> Reply<pb::WebhookEndpoint> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        let r = req.into_inner();
        let run = async {
            let tenant = c.scope(&r.tenant_id)?;
            let id = endpoint_id(&r.endpoint_id)?;
            let mut tx = self.pool.begin().await?;
            let row = endpoints::delete(&mut tx, &tenant, &id)
                .await?
                .ok_or(NotifyError::NotFound("webhook endpoint"))?;
            deliveries::fail_pending(&mut tx, &id, "endpoint deleted").await?;
            tx.commit().await?;
            Ok::<_, NotifyError>(row)
        };
        Ok(Response::new(wire::endpoint_pb(run.await?)))
    }

    async fn rotate_webhook_secret(
        &self,
        req: Request<pb::WebhookEndpointRef>,
    ) -> Reply<pb::WebhookEndpointWithSecret> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        Ok(Response::new(self.rotate(&c, req.into_inner()).await?))
    }

    async fn list_messages(
        &self,
        req: Request<pb::ListMessagesRequest>,
    ) -> Reply<pb::ListMessagesResponse> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        Ok(Response::new(
            self.list_messages(&c, req.into_inner()).await?,
        ))
    }

    async fn get_message(&self, req: Request<pb::MessageRef>) -> Reply<pb::Message> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        let r = req.get_ref();
        let tenant = c.scope(&r.tenant_id).map_err(NotifyError::from)?;
        Ok(Response::new(self.message(&tenant, &r.message_id).await?))
    }

    async fn replay_message(&self, req: Request<pb::ReplayMessageRequest>) -> Reply<pb::Message> {
        let c = Caller::of(&req).map_err(NotifyError::from)?;
        Ok(Response::new(self.replay(&c, req.into_inner()).await?))
    }
}
