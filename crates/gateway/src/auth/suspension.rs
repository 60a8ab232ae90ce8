//! What a suspended tenant may still do: read. Its users (tokens) and API keys keep every
//! `GET`/`HEAD` their permissions allow — the subscription, usage, invoices, payments — so
//! the customer can see what it owes; every other method answers 403 `tenant_suspended`.
//! Its SCIM token is refused outright by the user service (provisioning only writes). The
//! operator (`platform_admin`) is never held back: it reactivates tenants.
//!
//! The status comes from the user service (`GetTenant`, the tenant cache there answers from
//! memory) and is remembered for `API_KEY_CACHE_SECS`, so a suspension takes effect within
//! that; nothing is remembered when the user service cannot answer (503, fail closed).

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use platform::Problem;
use platform::grpc::Channel;
use rpc::user::v1::user_service_client::UserServiceClient;
use rpc::user::v1::{GetTenantRequest, TenantStatus};

use super::Identity;
use crate::expiring::Expiring;

#[derive(Clone)]
pub struct Suspensions {
    users: UserServiceClient<Channel>,
    /// tenant id → suspended
    cache: Expiring<bool>,
    ttl: Duration,
}

impl Suspensions {
    pub fn new(users: UserServiceClient<Channel>, ttl: Duration) -> Self {
        Suspensions {
            users,
            cache: Expiring::new(10_000),
            ttl,
        }
    }

    /// Lets `identity` send a `method` request, or answers why not.
    pub async fn check(&self, identity: &Identity, method: &Method) -> Result<(), Response> {
        if matches!(*method, Method::GET | Method::HEAD) || identity.is_platform_admin() {
            return Ok(());
        }
        if self.suspended(identity).await? {
            return Err(Problem::new(StatusCode::FORBIDDEN, "tenant_suspended")
                .with_detail("the tenant is suspended: it can read its data but change nothing until it is reactivated")
                .into_response());
        }
        Ok(())
    }

    async fn suspended(&self, identity: &Identity) -> Result<bool, Response> {
        let now = Instant::now();
        if let Some(suspended) = self.cache.get(&identity.tenant_id, now) {
            return Ok(suspended);
        }
        let mut req = tonic::Request::new(GetTenantRequest {
            tenant_id: identity.tenant_id.clone(),
        });
        identity.apply(&mut req);
        let suspended = match self.users.clone().get_tenant(req).await {
            Ok(t) => t.into_inner().status() == TenantStatus::Suspended,
            // No such tenant: nothing to protect; the service called next answers 404.
            Err(s) if s.code() == tonic::Code::NotFound => false,
            Err(s) => {
                tracing::warn!(status = %s, "tenant status unavailable");
                return Err(
                    Problem::unavailable("cannot check the tenant's status right now")
                        .into_response(),
                );
            }
        };
        self.cache
            .insert(&identity.tenant_id, suspended, now + self.ttl, now);
        Ok(suspended)
    }
}
