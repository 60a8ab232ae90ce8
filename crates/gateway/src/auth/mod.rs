//! Who is calling, and may they do this?
//!
//! [`Authenticator`] turns `Authorization: Bearer ...` into an [`Identity`]: a JWT (see
//! [`jwt`]) or, for `sk_...` secrets, an API key verified by the user service and cached for
//! a few seconds. [`permissions`] holds the one table from route to required permission; the
//! [`authorize`] check applies both before any handler runs.

pub mod jwks;
pub mod jwt;
pub mod permissions;
pub mod suspension;

use std::sync::Arc;
use std::time::{Duration, Instant};

use authz::{Permission, Role};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::Problem;
use platform::grpc::Channel;
use rpc::user::v1::VerifyApiKeyRequest;
use rpc::user::v1::user_service_client::UserServiceClient;

use crate::auth::jwt::{AuthError, JwtVerifier};
use crate::expiring::Expiring;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub tenant_id: String,
    pub subject: String,
    pub roles: Vec<Role>,
    /// API keys carry explicit scopes instead of roles.
    pub scopes: Vec<Permission>,
    pub request_id: Option<String>,
}

impl Identity {
    pub fn allows(&self, p: Permission) -> bool {
        authz::allowed(&self.roles, p) || self.scopes.contains(&p)
    }

    pub fn is_platform_admin(&self) -> bool {
        self.roles.contains(&Role::PlatformAdmin)
    }

    /// May this caller see `tenant_id` at all? Foreign tenants answer 404, not 403, so ids
    /// of other tenants cannot be probed.
    pub fn check_tenant(&self, tenant_id: &str) -> Result<(), Problem> {
        if self.is_platform_admin() || self.tenant_id == tenant_id {
            Ok(())
        } else {
            Err(Problem::not_found("tenant"))
        }
    }

    /// Writes the identity metadata forwarded to the services into `req`.
    pub fn apply<T>(&self, req: &mut tonic::Request<T>) {
        platform::grpc::write_identity(
            req.metadata_mut(),
            &self.tenant_id,
            &self.subject,
            &comma_list(self.roles.iter().map(|r| r.as_str())),
            &comma_list(self.scopes.iter().map(|p| p.as_str())),
            self.request_id.as_deref(),
        );
    }
}

/// `a,b,c` without an intermediate `Vec` (this runs for every forwarded request).
fn comma_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, name) in names.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
    }
    out
}

/// Verifies bearer credentials.
#[derive(Clone)]
pub struct Authenticator {
    jwt: JwtVerifier,
    users: UserServiceClient<Channel>,
    /// Verified keys, and (`None`) secrets the user service did not know: a junk key sent in
    /// a loop costs one lookup per `cache_ttl`, not one per request.
    cache: Expiring<Option<Identity>>,
    cache_ttl: Duration,
    jwks_kick: Option<Arc<tokio::sync::Notify>>,
    /// The only tenant whose tokens may carry `platform_admin`.
    operator_tenant: Arc<str>,
    suspensions: suspension::Suspensions,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("jwt", &self.jwt)
            .finish()
    }
}

fn unauthorized(e: &AuthError) -> Response {
    let mut resp = Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated")
        .with_detail(e.to_string())
        .into_response();
    let challenge = format!(
        "Bearer realm=\"saas-platform\", error=\"invalid_token\", error_description=\"{}\"",
        e.to_string().replace('"', "'")
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

impl Authenticator {
    pub fn new(jwt: JwtVerifier, users: Channel, cache_ttl: Duration) -> Self {
        let users = UserServiceClient::new(users);
        Authenticator {
            jwt,
            suspensions: suspension::Suspensions::new(users.clone(), cache_ttl),
            users,
            cache: Expiring::new(10_000),
            cache_ttl,
            jwks_kick: None,
            operator_tenant: crate::config::DEFAULT_OPERATOR_TENANT.into(),
        }
    }

    /// `platform_admin` counts only in tokens of this tenant (`tid`); elsewhere it is ignored,
    /// so an identity provider that lets a tenant's admins edit their own role claims cannot
    /// make one of them the platform's operator.
    pub fn with_operator_tenant(mut self, tenant: &str) -> Self {
        self.operator_tenant = tenant.into();
        self
    }

    /// Lets an unknown key id wake the JWKS refresher (key rotation at the identity provider).
    pub fn with_jwks_kicker(mut self, kick: Arc<tokio::sync::Notify>) -> Self {
        self.jwks_kick = Some(kick);
        self
    }

    pub fn jwt(&self) -> &JwtVerifier {
        &self.jwt
    }

    /// The identity behind an `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, Response> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized(&AuthError::Missing))?;
        if token.starts_with("sk_") {
            return self.api_key(token).await;
        }
        let claims = self.jwt.verify(token).map_err(|e| {
            if e == AuthError::UnknownKey
                && let Some(kick) = &self.jwks_kick
            {
                kick.notify_one();
            }
            unauthorized(&e)
        })?;
        let operator = claims.tid == *self.operator_tenant;
        Ok(Identity {
            tenant_id: claims.tid.clone(),
            subject: claims.sub.clone(),
            roles: claims
                .roles
                .iter()
                .filter_map(|r| Role::parse(r))
                .filter(|r| *r != Role::PlatformAdmin || operator)
                .collect(),
            scopes: Vec::new(),
            request_id: None,
        })
    }

    async fn api_key(&self, secret: &str) -> Result<Identity, Response> {
        let now = Instant::now();
        if let Some(known) = self.cache.get(secret, now) {
            return known.ok_or_else(|| unauthorized(&AuthError::BadSignature));
        }
        let mut users = self.users.clone();
        let found = match users
            .verify_api_key(VerifyApiKeyRequest {
                secret: secret.to_string(),
            })
            .await
        {
            Ok(resp) => {
                let p = resp.into_inner();
                Some(Identity {
                    tenant_id: p.tenant_id,
                    subject: p.subject,
                    roles: Vec::new(),
                    scopes: p
                        .scopes
                        .iter()
                        .filter_map(|s| Permission::parse(s))
                        .collect(),
                    request_id: None,
                })
            }
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => {
                tracing::warn!(status = %s, "API key verification unavailable");
                return Err(
                    Problem::unavailable("cannot verify API keys right now").into_response()
                );
            }
        };
        self.cache
            .insert(secret, found.clone(), now + self.cache_ttl, now);
        found.ok_or_else(|| unauthorized(&AuthError::BadSignature))
    }
}

/// Authenticates every route in the permission table and checks its permission and, for
/// writes, that the caller's tenant is not suspended; public routes pass through. Puts the [`Identity`] in the request extensions, or answers 401/403.
pub async fn authorize(auth: &Authenticator, req: &mut Request) -> Result<(), Response> {
    let Some(path) = req.extensions().get::<MatchedPath>() else {
        return Ok(()); // unmatched: the fallback answers 404
    };
    let required = match permissions::required(req.method(), path.as_str()) {
        permissions::Access::Requires(p) => p,
        permissions::Access::Public => return Ok(()),
        permissions::Access::Unlisted => {
            tracing::error!(method = %req.method(), route = path.as_str(), "route missing from auth/permissions.rs; refused");
            return Err(Problem::not_found("route").into_response());
        }
    };
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut identity = auth.authenticate(header.as_deref()).await?;
    if !identity.allows(required) {
        return Err(Problem::new(StatusCode::FORBIDDEN, "forbidden")
            .with_detail(format!("this requires the {required} permission"))
            .into_response());
    }
    auth.suspensions.check(&identity, req.method()).await?;
    identity.request_id = req
        .headers()
        .get(platform::app::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    tracing::Span::current().record("tenant", identity.tenant_id.as_str());
    req.extensions_mut().insert(identity);
    Ok(())
}
