//! PSP callbacks (`/v1/webhooks/psp/{stripe,adyen}`): public routes whose raw body and
//! headers go to the payment service untouched, because the PSP's signature covers the exact
//! bytes. The payment service verifies and de-duplicates them; the gateway only forwards.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use platform::Problem;
use rpc::payment::v1::payment_service_client::PaymentServiceClient;
use rpc::payment::v1::{Provider, PspCallback};
use serde::Serialize;
use tonic::transport::Channel;

use super::error::from_status;

type Payments = PaymentServiceClient<Channel>;

pub fn router(payments: Payments) -> Router {
    Router::new()
        .route("/v1/webhooks/psp/stripe", post(stripe))
        .route("/v1/webhooks/psp/adyen", post(adyen))
        .with_state(payments)
}

#[derive(Debug, Serialize)]
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

async fn stripe(
    State(p): State<Payments>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Received>, Problem> {
    forward(p, Provider::Stripe, headers, body).await
}

async fn adyen(
    State(p): State<Payments>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Received>, Problem> {
    forward(p, Provider::Adyen, headers, body).await
}
