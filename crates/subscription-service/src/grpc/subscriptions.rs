//! Subscriptions: create, read, change plan, cancel, seat history. The changes themselves
//! are the service layer's (`service::subscriptions`).

use platform::grpc::Caller;
use rpc::subscription::v1 as pb;

use crate::convert::{segment_pb, sub_pb};
use crate::error::SubError;
use crate::service::NewSubscription;
use crate::store::{seats, subscriptions};

use super::{MAX_SEATS, SubscriptionApi, plan_id, scoped_tenant};

impl SubscriptionApi {
    pub(super) async fn create_subscription_inner(
        &self,
        c: &Caller,
        r: pb::CreateSubscriptionRequest,
    ) -> Result<pb::Subscription, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let plan = plan_id("plan_id", &r.plan_id)?;
        if r.seats.is_some_and(|s| s > MAX_SEATS) {
            return Err(SubError::invalid("seats", format!("at most {MAX_SEATS}")));
        }
        let row = self
            .inner
            .subscribe(NewSubscription {
                tenant,
                plan,
                seats: r.seats,
                trial_days: r.trial_days,
            })
            .await?;
        Ok(sub_pb(&row))
    }

    pub(super) async fn get_subscription_inner(
        &self,
        c: &Caller,
        r: pb::GetSubscriptionRequest,
    ) -> Result<pb::Subscription, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let mut conn = self.inner.pool.acquire().await?;
        let row = subscriptions::get(&mut conn, &tenant, false)
            .await?
            .ok_or(SubError::NotFound("subscription"))?;
        Ok(sub_pb(&row))
    }

    pub(super) async fn change_plan_inner(
        &self,
        c: &Caller,
        r: pb::ChangePlanRequest,
    ) -> Result<pb::Subscription, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let to = plan_id("plan_id", &r.plan_id)?;
        let row = self.inner.change_plan(&tenant, &to, r.plan_version).await?;
        Ok(sub_pb(&row))
    }

    pub(super) async fn cancel_inner(
        &self,
        c: &Caller,
        r: pb::CancelSubscriptionRequest,
    ) -> Result<pb::Subscription, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let row = self.inner.cancel(&tenant, r.immediately).await?;
        Ok(sub_pb(&row))
    }

    pub(super) async fn seat_history_inner(
        &self,
        c: &Caller,
        r: pb::GetSubscriptionRequest,
    ) -> Result<pb::ListSeatHistoryResponse, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let mut conn = self.inner.pool.acquire().await?;
        subscriptions::get(&mut conn, &tenant, false)
            .await?
            .ok_or(SubError::NotFound("subscription"))?;
        let segments = seats::history(&mut conn, &tenant, None, None).await?;
        Ok(pb::ListSeatHistoryResponse {
            segments: segments.iter().map(segment_pb).collect(),
        })
    }
}
