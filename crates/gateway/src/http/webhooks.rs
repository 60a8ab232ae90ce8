//! PSP callbacks (`/v1/webhooks/psp/{stripe,adyen}`): public routes whose raw body and
//! headers go to the payment service untouched, because the PSP's signature covers the exact
//! bytes. The payment service verifies and de-duplicates them; the gateway only forwards.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use platform::Problem;
use platform::grpc::Channel;
use rpc::payment::v1::payment_service_client::PaymentServiceClient;
use rpc::payment::v1::{Provider, PspCallback};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::from_status;
use super::openapi::CallbackErrors;

type Payments = PaymentServiceClient<Channel>;

pub fn router(payments: Payments) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(stripe))
        .routes(routes!(adyen))
        .with_state(payments)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Received {
    received: bool,
    /// False when the event was seen before (still a 200, so the PSP stops retrying).
    processed: bool,
}

async fn forward(
    mut payments: Payments,
    provider: Provider,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Received>, Problem> {
    let headers = headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect();
    let r = payments
        .handle_psp_callback(PspCallback {
            provider: provider as i32,
            body: body.to_vec(),
            headers,
        })
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(Received {
        received: true,
        processed: r.processed,
    }))
}

/// Stripe webhook: raw body and `Stripe-Signature` forwarded to the payment service.
#[utoipa::path(post, path = "/v1/webhooks/psp/stripe", tag = "webhooks", request_body(content = String, content_type = "application/json"), responses((status = 200, body = Received), CallbackErrors))]
async fn stripe(
    State(p): State<Payments>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Received>, Problem> {
    forward(p, Provider::Stripe, headers, body).await
}

/// Adyen notification: raw body forwarded to the payment service (the HMAC of every item is
/// checked there). Answers `[accepted]`, the body Adyen expects.
#[utoipa::path(post, path = "/v1/webhooks/psp/adyen", tag = "webhooks", request_body(content = String, content_type = "application/json"), responses((status = 200, description = "accepted", content_type = "text/plain", body = String), CallbackErrors))]
async fn adyen(
    State(p): State<Payments>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<&'static str, Problem> {
    let _ = forward(p, Provider::Adyen, headers, body).await?;
    Ok("[accepted]")
}
