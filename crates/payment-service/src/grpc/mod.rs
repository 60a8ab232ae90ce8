//! `saas.payment.v1.PaymentService`: transport only. Every call is scoped by the verified
//! caller's tenant (another tenant's intent answers NOT_FOUND). A tenant manages its payment
//! methods and confirms its own intents; what moves money otherwise — creating an ad-hoc
//! intent, capturing, canceling, refunding — is the operator's. PSP callbacks carry no caller:
//! their signature is their authentication.

mod wire;

use std::collections::HashMap;

use ids::{InvoiceId, PaymentIntentId, PaymentMethodId};
use platform::grpc::Caller;
use platform::paging;
use rpc::common::v1::PageResponse;
use rpc::payment::v1 as pb;
use rpc::payment::v1::payment_service_server::PaymentService;
use tonic::{Request, Response, Status};

use crate::actions::Create;
use crate::callbacks::Callbacks;
use crate::engine::Engine;
use crate::error::PaymentError;
use crate::store::{dunning as dunning_store, intents, methods, refunds};

pub use wire::intent_pb;

#[derive(Debug, Clone)]
pub struct PaymentApi {
    pub engine: Engine,
    pub callbacks: Callbacks,
}

type Reply<T> = Result<Response<T>, Status>;
type Result<T, E = PaymentError> = std::result::Result<T, E>;

fn intent_id(s: &str) -> Result<PaymentIntentId> {
    PaymentIntentId::parse(s).map_err(|_| PaymentError::NotFound("payment intent"))
}

fn method_id(s: &str) -> Result<PaymentMethodId> {
    PaymentMethodId::parse(s).map_err(|_| PaymentError::NotFound("payment method"))
}

fn key(s: String) -> Option<String> {
    wire::some(s)
}

impl PaymentApi {
    async fn intent(
        &self,
        id: &PaymentIntentId,
        tenant: Option<&ids::TenantId>,
    ) -> Result<pb::PaymentIntent> {
        let mut conn = self.engine.pool.acquire().await?;
        let row = intents::get(&mut conn, id, tenant, false)
            .await?
            .ok_or(PaymentError::NotFound("payment intent"))?;
        let attempts = intents::attempts(&mut conn, std::slice::from_ref(id)).await?;
        let dunning = dunning_store::get(&mut conn, id, false).await?;
        Ok(intent_pb(row, attempts, dunning.as_ref()))
    }

    async fn attach(
        &self,
        c: &Caller,
        r: pb::AttachPaymentMethodRequest,
    ) -> Result<pb::PaymentMethod> {
        let tenant = c.scope(&r.tenant_id)?;
        let provider = wire::provider(r.provider())
            .ok_or_else(|| PaymentError::invalid("provider", "stripe, adyen or sandbox"))?;
        let row = self
            .engine
            .attach(&tenant, provider, r.psp_token.trim(), r.make_default)
            .await?;
        Ok(wire::method_pb(row))
    }

    async fn method_action(
        &self,
        c: &Caller,
        r: pb::PaymentMethodRequest,
        detach: bool,
    ) -> Result<pb::PaymentMethod> {
        let tenant = c.scope(&r.tenant_id)?;
        let id = method_id(&r.payment_method_id)?;
        let mut tx = self.engine.pool.begin().await?;
        let row = if detach {
            methods::detach(&mut tx, &tenant, &id).await?
        } else {
            methods::set_default(&mut tx, &tenant, &id).await?
        }
        .ok_or(PaymentError::NotFound("payment method"))?;
        tx.commit().await?;
        Ok(wire::method_pb(row))
    }

    async fn create(
        &self,
        c: &Caller,
        r: pb::CreatePaymentIntentRequest,
    ) -> Result<pb::PaymentIntent> {
        c.require(authz::Role::PlatformAdmin)?;
        let tenant = c.scope(&r.tenant_id)?;
        let capture = wire::capture(r.capture_method());
        let amount = r
            .amount
            .ok_or_else(|| PaymentError::invalid("amount", "required"))?;
        let invoice = match key(r.invoice_id) {
            Some(i) => Some(
                InvoiceId::parse(&i)
                    .map_err(|_| PaymentError::invalid("invoice_id", "not an invoice id"))?,
            ),
            None => None,
        };
        let method = match key(r.payment_method_id) {
            Some(m) => Some(method_id(&m)?),
            None => None,
        };
        let row = self
            .engine
            .create(Create {
                tenant,
                invoice,
                amount_minor: amount.amount_cents,
                currency: amount.currency,
                method,
                capture,
                confirm: r.confirm,
                idempotency_key: key(r.idempotency_key),
            })
            .await?;
        self.intent(&row.id, None).await
    }

    async fn list(
        &self,
        c: &Caller,
        r: pb::ListPaymentIntentsRequest,
    ) -> Result<pb::ListPaymentIntentsResponse> {
        let tenant = c.scope(&r.tenant_id)?;
        let invoice = match r.invoice_id.filter(|i| !i.is_empty()) {
            Some(i) => match InvoiceId::parse(&i) {
                Ok(i) => Some(i),
                // No intent belongs to an id that is not an invoice's.
                Err(_) => return Ok(pb::ListPaymentIntentsResponse::default()),
            },
            None => None,
        };
        let page = r.page.unwrap_or_default();
        let limit = paging::limit(page.limit);
        let before = paging::after(&page.cursor)?;
        let mut conn = self.engine.pool.acquire().await?;
        let rows = intents::list(
            &mut conn,
            &tenant,
            invoice.as_ref(),
            before.as_deref(),
            limit,
        )
        .await?;
        let page = paging::page(rows, limit, |r| r.id.to_string());
        let ids: Vec<PaymentIntentId> = page.rows.iter().map(|r| r.id.clone()).collect();
        let mut attempts: HashMap<PaymentIntentId, Vec<intents::AttemptRow>> = HashMap::new();
        for a in intents::attempts(&mut conn, &ids).await? {
            attempts.entry(a.intent_id.clone()).or_default().push(a);
        }
        let dunning: HashMap<PaymentIntentId, dunning_store::DunningRow> =
            dunning_store::of_intents(&mut conn, &ids)
                .await?
                .into_iter()
                .map(|d| (d.intent_id.clone(), d))
                .collect();
        let intents = page
            .rows
            .into_iter()
            .map(|r| {
                let a = attempts.remove(&r.id).unwrap_or_default();
                let d = dunning.get(&r.id);
                intent_pb(r, a, d)
            })
            .collect();
        Ok(pb::ListPaymentIntentsResponse {
            intents,
            page: Some(PageResponse {
                next_cursor: page.next_cursor,
                has_more: page.has_more,
            }),
        })
    }

    async fn confirm(
        &self,
        c: &Caller,
        r: pb::ConfirmPaymentIntentRequest,
    ) -> Result<pb::PaymentIntent> {
        let tenant = c.scope(&r.tenant_id)?;
        let id = intent_id(&r.payment_intent_id)?;
        let method = match key(r.payment_method_id) {
            Some(m) => Some(method_id(&m)?),
            None => None,
        };
        let client_key = key(r.idempotency_key);
        if client_key
            .as_ref()
            .is_some_and(|k| k.len() > 255 || k.chars().any(char::is_control))
        {
            return Err(PaymentError::invalid(
                "idempotency_key",
                "at most 255 printable characters",
            ));
        }
        self.engine
            .confirm(Some(&tenant), &id, method.as_ref(), client_key.as_deref())
            .await?;
        self.intent(&id, Some(&tenant)).await
    }

    async fn operator_action(
        &self,
        c: &Caller,
        tenant_id: &str,
        intent: &str,
        capture: Option<i64>,
    ) -> Result<pb::PaymentIntent> {
        c.require(authz::Role::PlatformAdmin)?;
        let tenant = c.scope(tenant_id)?;
        let id = intent_id(intent)?;
        match capture {
            Some(amount) => self.engine.capture(Some(&tenant), &id, amount).await?,
            None => self.engine.cancel(Some(&tenant), &id).await?,
        };
        self.intent(&id, Some(&tenant)).await
    }

    async fn refund(&self, c: &Caller, r: pb::CreateRefundRequest) -> Result<pb::Refund> {
        c.require(authz::Role::PlatformAdmin)?;
        let tenant = c.scope(&r.tenant_id)?;
        let id = intent_id(&r.payment_intent_id)?;
        let row = self
            .engine
            .refund(
                Some(&tenant),
                &id,
                r.amount,
                r.reason.trim(),
                key(r.idempotency_key),
            )
            .await?;
        Ok(wire::refund_pb(row))
    }

    async fn refunds(
        &self,
        c: &Caller,
        r: pb::ListRefundsRequest,
    ) -> Result<pb::ListRefundsResponse> {
        let tenant = c.scope(&r.tenant_id)?;
        let id = intent_id(&r.payment_intent_id)?;
        let mut conn = self.engine.pool.acquire().await?;
        intents::get(&mut conn, &id, Some(&tenant), false)
            .await?
            .ok_or(PaymentError::NotFound("payment intent"))?;
        let rows = refunds::list(&mut conn, &id).await?;
        Ok(pb::ListRefundsResponse {
            refunds: rows.into_iter().map(wire::refund_pb).collect(),
        })
    }

    async fn dunning(&self, c: &Caller, r: pb::GetDunningStateRequest) -> Result<pb::DunningState> {
        let tenant = c.scope(&r.tenant_id)?;
        let mut conn = self.engine.pool.acquire().await?;
        let rows = dunning_store::of_tenant(&mut conn, &tenant).await?;
        use dunning_store::DunningStatus as D;
        let status = if rows.iter().any(|d| d.status == D::Exhausted) {
            pb::DunningStatus::Exhausted
        } else if rows.iter().any(|d| d.status == D::Active) {
            pb::DunningStatus::Active
        } else {
            pb::DunningStatus::None
        };
        let planned = &self.engine.settings.dunning;
        Ok(pb::DunningState {
            tenant_id: tenant.to_string(),
            status: status as i32,
            schedules: rows
                .into_iter()
                .map(|d| wire::schedule_pb(d, planned))
                .collect(),
        })
    }
}

/// Runs `f` with the verified caller and maps its error once.
async fn with_caller<T, R, F>(req: Request<T>, f: F) -> Reply<R>
where
    F: AsyncFnOnce(Caller, T) -> Result<R>,
{
    let caller = Caller::of(&req).map_err(PaymentError::from)?;
    let out = f(caller, req.into_inner()).await?;
    Ok(Response::new(out))
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn attach_payment_method(
        &self,
        req: Request<pb::AttachPaymentMethodRequest>,
    ) -> Reply<pb::PaymentMethod> {
        with_caller(req, async |c, r| self.attach(&c, r).await).await
    }

    async fn list_payment_methods(
        &self,
        req: Request<pb::ListPaymentMethodsRequest>,
    ) -> Reply<pb::ListPaymentMethodsResponse> {
        with_caller(req, async |c, r| {
            let tenant = c.scope(&r.tenant_id)?;
            let mut conn = self.engine.pool.acquire().await?;
            let rows = methods::list(&mut conn, &tenant).await?;
            Ok(pb::ListPaymentMethodsResponse {
                methods: rows.into_iter().map(wire::method_pb).collect(),
            })
        })
        .await
    }

    async fn set_default_payment_method(
        &self,
        req: Request<pb::PaymentMethodRequest>,
    ) -> Reply<pb::PaymentMethod> {
        with_caller(req, async |c, r| self.method_action(&c, r, false).await).await
    }

    async fn detach_payment_method(
        &self,
        req: Request<pb::PaymentMethodRequest>,
    ) -> Reply<pb::PaymentMethod> {
        with_caller(req, async |c, r| self.method_action(&c, r, true).await).await
    }

    async fn create_payment_intent(
        &self,
        req: Request<pb::CreatePaymentIntentRequest>,
    ) -> Reply<pb::PaymentIntent> {
        with_caller(req, async |c, r| self.create(&c, r).await).await
    }

    async fn get_payment_intent(
        &self,
        req: Request<pb::PaymentIntentRequest>,
    ) -> Reply<pb::PaymentIntent> {
        with_caller(req, async |c, r| {
            let tenant = c.scope(&r.tenant_id)?;
            self.intent(&intent_id(&r.payment_intent_id)?, Some(&tenant))
                .await
        })
        .await
    }

    async fn list_payment_intents(
        &self,
        req: Request<pb::ListPaymentIntentsRequest>,
    ) -> Reply<pb::ListPaymentIntentsResponse> {
        with_caller(req, async |c, r| self.list(&c, r).await).await
    }

    async fn confirm_payment_intent(
        &self,
        req: Request<pb::ConfirmPaymentIntentRequest>,
    ) -> Reply<pb::PaymentIntent> {
        with_caller(req, async |c, r| self.confirm(&c, r).await).await
    }

    async fn capture_payment_intent(
        &self,
        req: Request<pb::CapturePaymentIntentRequest>,
    ) -> Reply<pb::PaymentIntent> {
        with_caller(req, async |c, r| {
            self.operator_action(
                &c,
                &r.tenant_id,
                &r.payment_intent_id,
                Some(r.amount_to_capture),
            )
            .await
        })
        .await
    }

    async fn cancel_payment_intent(
        &self,
        req: Request<pb::PaymentIntentRequest>,
    ) -> Reply<pb::PaymentIntent> {
        with_caller(req, async |c, r| {
            self.operator_action(&c, &r.tenant_id, &r.payment_intent_id, None)
                .await
        })
        .await
    }

    async fn create_refund(&self, req: Request<pb::CreateRefundRequest>) -> Reply<pb::Refund> {
        with_caller(req, async |c, r| self.refund(&c, r).await).await
    }

    async fn list_refunds(
        &self,
        req: Request<pb::ListRefundsRequest>,
    ) -> Reply<pb::ListRefundsResponse> {
        with_caller(req, async |c, r| self.refunds(&c, r).await).await
    }

    async fn handle_psp_callback(
        &self,
        req: Request<pb::PspCallback>,
    ) -> Reply<pb::PspCallbackResult> {
        let r = req.into_inner();
        let handled = match r.provider() {
            pb::Provider::Stripe | pb::Provider::Sandbox => {
                self.callbacks.stripe(&r.body, &r.headers).await
            }
            pb::Provider::Adyen => self.callbacks.adyen(&r.body).await,
            pb::Provider::Unspecified => Err(PaymentError::invalid("provider", "required")),
        }
        .map_err(|e| {
            if matches!(e, PaymentError::BadSignature(_)) {
                metrics::counter!("payment_callbacks_refused_total").increment(1);
                tracing::warn!(error = %e, "PSP callback refused");
            }
            e
        })?;
        Ok(Response::new(pb::PspCallbackResult {
            processed: handled.processed,
            event_id: handled.event_id,
        }))
    }

    async fn get_dunning_state(
        &self,
        req: Request<pb::GetDunningStateRequest>,
    ) -> Reply<pb::DunningState> {
        with_caller(req, async |c, r| self.dunning(&c, r).await).await
    }
}
