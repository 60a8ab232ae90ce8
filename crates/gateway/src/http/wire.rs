//! JSON shapes of the public API and their conversion from the gRPC messages.

use serde::Serialize;

use crate::auth::Identity;

/// A gRPC request carrying the caller's identity.
pub fn call<T>(id: &Identity, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    id.apply(&mut req);
    req
}

/// An RFC 3339 instant from a request, or a 400 problem naming `field`.
pub fn instant(field: &str, v: &str) -> Result<prost_types::Timestamp, platform::Problem> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| platform::grpc::timestamp(t.to_utc()))
        .map_err(|_| {
            platform::Problem::bad_request(format!("{field} must be an RFC 3339 time"))
                .with_field(field, "RFC 3339, e.g. 2026-11-01T00:00:00Z")
        })
}

/// RFC 3339 with millisecond precision, UTC.
pub fn time(t: Option<prost_types::Timestamp>) -> Option<String> {
    let t = t?;
    chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A page of a list: Stripe-style `data` + `has_more`, with an opaque `next_cursor`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    pub fn new(data: Vec<T>, page: Option<rpc::common::v1::PageResponse>) -> Self {
        let page = page.unwrap_or_default();
        List {
            data,
            has_more: page.has_more,
            next_cursor: (!page.next_cursor.is_empty()).then_some(page.next_cursor),
        }
    }
}
