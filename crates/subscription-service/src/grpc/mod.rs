//! `saas.subscription.v1.SubscriptionService`: transport only. Requests are validated into
//! domain values, stored through `store`, and converted back here; one file per resource.

use std::sync::Arc;

use ids::{PlanId, TenantId};
use platform::grpc::Caller;
use rpc::subscription::v1 as pb;
use rpc::subscription::v1::subscription_service_server::SubscriptionService;
use tonic::{Request, Response, Status};

use crate::domain::key;
use crate::error::SubError;
use crate::service::Service;

// One module per resource; each adds the `*_inner` calls of its part of the API to
// `SubscriptionApi`, and the trait impl below only converts and maps errors.
mod billing;
mod entitlements;
mod plans;
mod subscriptions;
mod usage;

pub(crate) use billing::{BillableStream, UsageStream};

/// Seats an explicit quantity may hold.
const MAX_SEATS: u32 = 1_000_000;

/// The gRPC API over the service's database.
#[derive(Debug, Clone)]
pub struct SubscriptionApi {
    inner: Arc<Service>,
}

type Reply<T> = Result<Response<T>, Status>;

fn caller<T>(req: &Request<T>) -> Result<Caller, SubError> {
    Ok(Caller::of(req)?)
}

/// The tenant a request may touch (`Caller::scope`).
fn scoped_tenant(c: &Caller, tenant_id: &str) -> Result<TenantId, SubError> {
    Ok(c.scope(tenant_id)?)
}

/// Tenant ids an operator listed (billing's filters); a malformed one is invalid input.
fn tenant_ids(ids: &[String]) -> Result<Vec<TenantId>, SubError> {
    ids.iter()
        .map(|t| TenantId::parse(t).map_err(|e| SubError::invalid("tenant_ids", e.to_string())))
        .collect()
}

fn plan_id(field: &'static str, id: &str) -> Result<PlanId, SubError> {
    key(field, id)?;
    PlanId::parse(id).map_err(|e| SubError::invalid(field, e.to_string()))
}

impl SubscriptionApi {
    pub fn new(service: Arc<Service>) -> Self {
        SubscriptionApi { inner: service }
    }
}

fn reply<T>(r: Result<T, SubError>) -> Reply<T> {
    r.map(Response::new).map_err(Into::into)
}

#[tonic::async_trait]
impl SubscriptionService for SubscriptionApi {
    async fn create_plan(&self, req: Request<pb::CreatePlanRequest>) -> Reply<pb::Plan> {
        let c = caller(&req)?;
        reply(self.create_plan_inner(&c, req.into_inner()).await)
    }

    async fn update_plan(&self, req: Request<pb::UpdatePlanRequest>) -> Reply<pb::Plan> {
        let c = caller(&req)?;
        reply(self.update_plan_inner(&c, req.into_inner()).await)
    }

    async fn get_plan(&self, req: Request<pb::GetPlanRequest>) -> Reply<pb::Plan> {
        caller(&req)?;
        reply(self.get_plan_inner(req.into_inner()).await)
    }

    async fn list_plans(&self, req: Request<pb::ListPlansRequest>) -> Reply<pb::ListPlansResponse> {
        caller(&req)?;
        reply(self.list_plans_inner(req.into_inner()).await)
    }

    async fn create_subscription(
        &self,
        req: Request<pb::CreateSubscriptionRequest>,
    ) -> Reply<pb::Subscription> {
        let c = caller(&req)?;
        reply(self.create_subscription_inner(&c, req.into_inner()).await)
    }

    async fn get_subscription(
        &self,
        req: Request<pb::GetSubscriptionRequest>,
    ) -> Reply<pb::Subscription> {
        let c = caller(&req)?;
        reply(self.get_subscription_inner(&c, req.into_inner()).await)
    }

    async fn change_plan(&self, req: Request<pb::ChangePlanRequest>) -> Reply<pb::Subscription> {
        let c = caller(&req)?;
        reply(self.change_plan_inner(&c, req.into_inner()).await)
    }

    async fn cancel_subscription(
        &self,
        req: Request<pb::CancelSubscriptionRequest>,
    ) -> Reply<pb::Subscription> {
        let c = caller(&req)?;
        reply(self.cancel_inner(&c, req.into_inner()).await)
    }

    async fn list_seat_history(
        &self,
        req: Request<pb::GetSubscriptionRequest>,
    ) -> Reply<pb::ListSeatHistoryResponse> {
        let c = caller(&req)?;
        reply(self.seat_history_inner(&c, req.into_inner()).await)
    }

    async fn ingest_usage(
        &self,
        req: Request<pb::IngestUsageRequest>,
    ) -> Reply<pb::IngestUsageResponse> {
        let c = caller(&req)?;
        reply(self.ingest_inner(&c, req.into_inner()).await)
    }

    async fn get_usage(&self, req: Request<pb::GetUsageRequest>) -> Reply<pb::GetUsageResponse> {
        let c = caller(&req)?;
        reply(self.get_usage_inner(&c, req.into_inner()).await)
    }

    async fn check_entitlement(
        &self,
        req: Request<pb::CheckEntitlementRequest>,
    ) -> Reply<pb::Entitlement> {
        let c = caller(&req)?;
        reply(self.check_inner(&c, req.into_inner()).await)
    }

    async fn get_tenant_limits(
        &self,
        req: Request<pb::GetTenantLimitsRequest>,
    ) -> Reply<pb::TenantLimits> {
        let c = caller(&req)?;
        reply(self.tenant_limits_inner(&c, req.into_inner()).await)
    }

    type StreamUsageStream = UsageStream;

    async fn stream_usage(
        &self,
        req: Request<pb::StreamUsageRequest>,
    ) -> Reply<Self::StreamUsageStream> {
        let c = caller(&req)?;
        reply(self.stream_usage_inner(&c, req.into_inner()).await)
    }

    type ListBillableSubscriptionsStream = BillableStream;

    async fn list_billable_subscriptions(
        &self,
        req: Request<pb::ListBillableSubscriptionsRequest>,
    ) -> Reply<Self::ListBillableSubscriptionsStream> {
        let c = caller(&req)?;
        reply(self.billable_inner(&c, req.into_inner()).await)
    }
}
