//! East-west gRPC client helpers: lazily connected channels with deadlines, the identity
//! metadata the gateway forwards, and the gRPC health check.

use ids::TenantId;
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

mod channel;

pub use channel::{Channel, InvalidPeer, RecvBody};

/// Metadata keys carrying the verified caller's identity (DESIGN.md §5).
pub mod metadata {
    pub const TENANT_ID: &str = "x-tenant-id";
    pub const SUBJECT: &str = "x-subject";
    pub const ROLES: &str = "x-roles";
    /// An API key's scopes (permission names, comma-separated); empty for tokens.
    pub const SCOPES: &str = "x-scopes";
    pub const REQUEST_ID: &str = "x-request-id";
}

/// A channel to `url` that connects on first use (so a service may start before its peers)
/// and applies `timeout` as the deadline of every call.
pub fn lazy_channel(url: &str, timeout: Duration) -> Result<Channel, InvalidPeer> {
    Channel::lazy(url, timeout)
}

/// Asks a peer's gRPC health service for its overall status.
pub async fn check_health(channel: Channel) -> Result<(), String> {
    let mut client = HealthClient::new(channel);
    let resp = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?;
    match resp.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("status {}", other.as_str_name())),
    }
}

/// The verified caller, as the gateway put it in the request metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub subject: String,
    pub roles: Vec<String>,
    /// An API key's scopes (permission names); empty for tokens.
    pub scopes: Vec<String>,
    pub request_id: Option<String>,
}

/// Why a call is refused before it starts: each service maps it to its own error once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No caller identity (the call did not come through the gateway): UNAUTHENTICATED.
    #[error("missing caller identity")]
    MissingIdentity,
    /// Another tenant's (or no plausible) tenant: NOT_FOUND, so ids of other tenants cannot
    /// be probed.
    #[error("tenant not found")]
    Foreign,
    /// The caller lacks the role the call needs: PERMISSION_DENIED.
    #[error("{0} only")]
    Lacks(authz::Role),
}

/// Maps [`Refused`] and [`BadCursor`](crate::paging::BadCursor) onto a service's error enum
/// once, the same way in every service: a missing identity is `Unauthenticated`, a foreign
/// tenant `NotFound("tenant")`, a missing role `Forbidden`, a bad cursor `Invalid` on
/// `cursor`. The enum needs those four variants, shaped as the services declare them.
#[macro_export]
macro_rules! refusals_into {
    ($error:ident) => {
        impl From<$crate::grpc::Refused> for $error {
            fn from(r: $crate::grpc::Refused) -> Self {
                match r {
                    $crate::grpc::Refused::MissingIdentity => $error::Unauthenticated,
                    $crate::grpc::Refused::Foreign => $error::NotFound("tenant"),
                    $crate::grpc::Refused::Lacks(_) => $error::Forbidden(r.to_string()),
                }
            }
        }

        impl From<$crate::paging::BadCursor> for $error {
            fn from(_: $crate::paging::BadCursor) -> Self {
                $error::Invalid {
                    field: "cursor",
                    reason: "not a cursor this API issued".into(),
                }
            }
        }
    };
}

impl Caller {
    /// The verified caller of `req`.
    pub fn of<T>(req: &tonic::Request<T>) -> Result<Caller, Refused> {
        Caller::from_metadata(req.metadata()).ok_or(Refused::MissingIdentity)
    }

    /// A service acting on its own behalf as the operator (a billing run reading usage,
    /// invoicing reading a run's charges), named `service` in the callee's logs.
    pub fn service(service: &str, request_id: Option<String>) -> Caller {
        Caller {
            tenant_id: TenantId::parse("platform").expect("a valid tenant id"),
            subject: service.to_string(),
            roles: vec![authz::Role::PlatformAdmin.as_str().to_string()],
            scopes: Vec::new(),
            request_id,
        }
    }

    /// The SaaS operator (`platform_admin`), who acts across tenants.
    pub fn is_operator(&self) -> bool {
        self.has_role(authz::Role::PlatformAdmin.as_str())
    }

    /// `tenant_id`, if this caller may act on it: its own tenant, or any for the operator.
    /// The one tenant-scoping rule of every service; a malformed id is as foreign as
    /// another tenant's.
    pub fn scope(&self, tenant_id: &str) -> Result<TenantId, Refused> {
        match TenantId::parse(tenant_id) {
            Ok(t) if self.is_operator() || self.tenant_id == t => Ok(t),
            _ => Err(Refused::Foreign),
        }
    }

    /// Whether this caller may see data of `tenant`: its own, or any for the operator.
    pub fn sees(&self, tenant: &TenantId) -> bool {
        self.is_operator() || self.tenant_id == *tenant
    }

    /// Ok when the caller holds `role`.
    pub fn require(&self, role: authz::Role) -> Result<(), Refused> {
        if self.has_role(role.as_str()) {
            Ok(())
        } else {
            Err(Refused::Lacks(role))
        }
    }

    /// Reads the identity metadata; `None` when the tenant or subject is missing or malformed
    /// (a call that did not come through the gateway).
    pub fn from_metadata(md: &tonic::metadata::MetadataMap) -> Option<Caller> {
        let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        let tenant_id = TenantId::parse(&get(metadata::TENANT_ID)?).ok()?;
        let subject = get(metadata::SUBJECT).filter(|s| !s.is_empty())?;
        let list = |k: &str| -> Vec<String> {
            get(k)
                .map(|r| {
                    r.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(Caller {
            tenant_id,
            subject,
            roles: list(metadata::ROLES),
            scopes: list(metadata::SCOPES),
            request_id: get(metadata::REQUEST_ID),
        })
    }

    /// Writes this identity into outgoing request metadata.
    pub fn apply<T>(&self, req: &mut tonic::Request<T>) {
        write_identity(
            req.metadata_mut(),
            self.tenant_id.as_str(),
            &self.subject,
            &self.roles.join(","),
            &self.scopes.join(","),
            self.request_id.as_deref(),
        );
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Everything this caller may do: its roles' permissions plus an API key's scopes.
    /// Unknown names (roles of other systems) grant nothing.
    pub fn permissions(&self) -> authz::Permissions {
        let roles: Vec<authz::Role> = self
            .roles
            .iter()
            .filter_map(|r| authz::Role::parse(r))
            .collect();
        let scopes: Vec<authz::Permission> = self
            .scopes
            .iter()
            .filter_map(|p| authz::Permission::parse(p))
            .collect();
        authz::Permissions::of(&roles, &scopes)
    }
}

/// Writes a caller's identity (`roles` and `scopes` comma-separated) into outgoing request
/// metadata, as [`Caller::from_metadata`] reads it. Scopes are only sent when there are any.
pub fn write_identity(
    md: &mut tonic::metadata::MetadataMap,
    tenant_id: &str,
    subject: &str,
    roles: &str,
    scopes: &str,
    request_id: Option<&str>,
) {
    use tonic::metadata::MetadataValue;
    for (key, value) in [
        (metadata::TENANT_ID, tenant_id),
        (metadata::SUBJECT, subject),
        (metadata::ROLES, roles),
    ] {
        if let Ok(v) = MetadataValue::try_from(value) {
            md.insert(key, v);
        }
    }
    if !scopes.is_empty()
        && let Ok(v) = MetadataValue::try_from(scopes)
    {
        md.insert(metadata::SCOPES, v);
    }
    if let Some(mut rid) = request_id.and_then(|r| MetadataValue::try_from(r).ok()) {
        // New on every request: sent as a never-indexed HPACK literal, it does not push the
        // identity headers out of the connection's header table.
        rid.set_sensitive(true);
        md.insert(metadata::REQUEST_ID, rid);
    }
}

/// The metadata key naming the request field a validation error is about.
pub const FIELD_METADATA: &str = "x-error-field";

/// An INVALID_ARGUMENT status that names the offending field (the gateway turns it into a
/// problem's `errors[].field`).
pub fn invalid_field(field: &str, message: impl Into<String>) -> tonic::Status {
    let mut status = tonic::Status::invalid_argument(message.into());
    if let Ok(v) = field.parse() {
        status.metadata_mut().insert(FIELD_METADATA, v);
    }
    status
}

/// An internal failure: logged with its text, answered without it (internals never reach a
/// caller).
pub fn internal(e: &dyn std::fmt::Display) -> tonic::Status {
    tracing::error!(error = %e, "internal error");
    tonic::Status::internal("internal error")
}

/// The status for a database error. A data exception (SQLSTATE class 22: bad encoding, a
/// value out of range) is input that got past validation: INVALID_ARGUMENT. A database that
/// is away — the connection cut or refused, the server shutting down or restarting (classes
/// 08 and 57P, too many connections), no pooled connection in time — is UNAVAILABLE: retry
/// shortly (a 503 at the gateway). A connection cut during COMMIT leaves the outcome
/// unknown, so what callers retry must be idempotent (our writes are: keys, record ids).
/// Anything else is internal.
pub fn db_status(e: &sqlx::Error) -> tonic::Status {
    match e {
        sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("22")) => {
            tracing::warn!(error = %e, "data exception from input");
            tonic::Status::invalid_argument("a value in the request cannot be stored")
        }
        sqlx::Error::Database(d)
            if d.code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300") =>
        {
            unavailable(e)
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => unavailable(e),
        _ => internal(e),
    }
}

/// The status for an event error: [`db_status`] when writing the outbox hit the database,
/// internal otherwise.
pub fn events_status(e: &crate::events::EventError) -> tonic::Status {
    match e {
        crate::events::EventError::Db(d) => db_status(d),
        _ => internal(e),
    }
}

fn unavailable(e: &sqlx::Error) -> tonic::Status {
    tracing::warn!(error = %e, "database unavailable");
    tonic::Status::unavailable("the database is unavailable; retry shortly")
}

/// [`invalid_field`] with the message `field: reason`, as every service words it.
pub fn invalid(field: &str, reason: &str) -> tonic::Status {
    invalid_field(field, format!("{field}: {reason}"))
}

/// RFC 3339-ish instants on the wire.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}
