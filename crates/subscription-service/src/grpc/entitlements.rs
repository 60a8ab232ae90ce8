//! Entitlement checks and the tenant limits the gateway sizes rate limits by.

use std::time::Instant;

use platform::grpc::Caller;
use rpc::subscription::v1 as pb;

use crate::domain::{key, optional_user};
use crate::error::SubError;
use crate::store::subscriptions;

use super::{SubscriptionApi, scoped_tenant};

impl SubscriptionApi {
    pub(super) async fn check_inner(
        &self,
        c: &Caller,
        r: pb::CheckEntitlementRequest,
    ) -> Result<pb::Entitlement, SubError> {
        let started = Instant::now();
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        key("feature", &r.feature)?;
        let user = optional_user(r.user_id.as_deref())?;
        let answer = self.check(&tenant, user, &r.feature).await?;
        metrics::histogram!("entitlement_check_seconds").record(started.elapsed().as_secs_f64());
        Ok(answer)
    }

    pub(super) async fn tenant_limits_inner(
        &self,
        c: &Caller,
        r: pb::GetTenantLimitsRequest,
    ) -> Result<pb::TenantLimits, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let mut conn = self.inner.pool.acquire().await?;
        let Some(sub) = subscriptions::get(&mut conn, &tenant, false).await? else {
            return Ok(pb::TenantLimits::default());
        };
        if !sub.status.is_live() {
            return Ok(pb::TenantLimits::default());
        }
        let plan = self
            .inner
            .plan_version(&mut conn, &sub.plan_id, sub.plan_version())
            .await?;
        Ok(pb::TenantLimits {
            rate_limit: plan
                .def
                .rate_limit
                .map(|(per_sec, burst)| pb::RateLimit { per_sec, burst }),
        })
    }
}
