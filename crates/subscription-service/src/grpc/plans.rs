//! Plans: create, edit (a new version each time), read, list.

use ids::PlanId;
use platform::grpc::Caller;
use platform::paging;
use rpc::common::v1::PageResponse;
use rpc::subscription::v1 as pb;

use crate::convert::{self, plan_pb};
use crate::error::SubError;
use crate::store;
use crate::store::plans;

use super::{SubscriptionApi, plan_id};

impl SubscriptionApi {
    pub(super) async fn create_plan_inner(
        &self,
        c: &Caller,
        r: pb::CreatePlanRequest,
    ) -> Result<pb::Plan, SubError> {
        c.require(authz::Role::PlatformAdmin)?;
        let p = r
            .plan
            .ok_or_else(|| SubError::invalid("plan", "required"))?;
        let id = if p.id.is_empty() {
            PlanId::generate()
        } else {
            plan_id("plan.id", &p.id)?
        };
        let def = convert::plan_def(&p)?;
        def.validate()?;
        let mut conn = self.inner.pool.acquire().await?;
        let row = plans::insert(&mut conn, &id, 1, &def)
            .await
            .map_err(|e| match e {
                SubError::Db(ref d) if store::is_unique_violation(d) => SubError::Conflict(
                    "a plan with this id exists; edit it to make a new version".into(),
                ),
                e => e,
            })?;
        Ok(plan_pb(&row))
    }

    pub(super) async fn update_plan_inner(
        &self,
        c: &Caller,
        r: pb::UpdatePlanRequest,
    ) -> Result<pb::Plan, SubError> {
        c.require(authz::Role::PlatformAdmin)?;
        let id = plan_id("plan_id", &r.plan_id)?;
        let p = r
            .plan
            .ok_or_else(|| SubError::invalid("plan", "required"))?;
        let def = convert::plan_def(&p)?;
        def.validate()?;
        let mut tx = self.inner.pool.begin().await?;
        let latest = plans::latest(&mut tx, &id, true)
            .await?
            .ok_or(SubError::NotFound("plan"))?;
        if latest.def.currency != def.currency {
            return Err(SubError::invalid(
                "currency",
                "a plan's currency cannot change (subscribers are billed in it); make a new plan",
            ));
        }
        let row = plans::insert(&mut tx, &id, latest.version + 1, &def).await?;
        tx.commit().await?;
        Ok(plan_pb(&row))
    }

    pub(super) async fn get_plan_inner(&self, r: pb::GetPlanRequest) -> Result<pb::Plan, SubError> {
        let id = PlanId::parse(&r.plan_id).map_err(|_| SubError::NotFound("plan"))?;
        let mut conn = self.inner.pool.acquire().await?;
        Ok(plan_pb(
            &*self.inner.resolve_plan(&mut conn, &id, r.version).await?,
        ))
    }

    pub(super) async fn list_plans_inner(
        &self,
        r: pb::ListPlansRequest,
    ) -> Result<pb::ListPlansResponse, SubError> {
        let page = r.page.unwrap_or_default();
        let after = paging::after(&page.cursor)?;
        let limit = paging::limit(page.limit);
        let mut conn = self.inner.pool.acquire().await?;
        let rows = plans::list(&mut conn, after.as_deref(), limit, r.include_archived).await?;
        let page = paging::page(rows, limit, |p| p.id.to_string());
        Ok(pb::ListPlansResponse {
            plans: page.rows.iter().map(plan_pb).collect(),
            page: Some(PageResponse {
                next_cursor: page.next_cursor,
                has_more: page.has_more,
            }),
        })
    }
}
