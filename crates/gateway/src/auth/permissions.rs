//! The one table from route to required permission, and the list of public routes. It fails
//! closed: a route in neither answers 404 to everyone (and logs an error), so forgetting to
//! list a new route cannot make it public. The e2e tests check every route of the OpenAPI
//! document is listed exactly once.

use authz::Permission as P;
use axum::http::Method;

/// (method, matched path, permission)
pub const ROUTES: &[(&str, &str, P)] = &[
    ("POST", "/v1/tenants", P::TenantsWrite),
    ("GET", "/v1/tenants", P::TenantsWrite),
    ("GET", "/v1/tenants/{tenant_id}", P::TenantsRead),
    ("PATCH", "/v1/tenants/{tenant_id}", P::TenantsWrite),
    ("POST", "/v1/tenants/{tenant_id}/suspend", P::TenantsWrite),
    (
        "POST",
        "/v1/tenants/{tenant_id}/reactivate",
        P::TenantsWrite,
    ),
    ("POST", "/v1/tenants/{tenant_id}/users", P::UsersWrite),
    ("GET", "/v1/tenants/{tenant_id}/users", P::UsersRead),
    (
        "GET",
        "/v1/tenants/{tenant_id}/users/{user_id}",
        P::UsersRead,
    ),
    (
        "PATCH",
        "/v1/tenants/{tenant_id}/users/{user_id}",
        P::UsersWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/users/{user_id}/deactivate",
        P::UsersWrite,
    ),
    (
        "PUT",
        "/v1/tenants/{tenant_id}/users/{user_id}/roles",
        P::RolesWrite,
    ),
    ("GET", "/v1/tenants/{tenant_id}/roles", P::UsersRead),
    ("POST", "/v1/tenants/{tenant_id}/api_keys", P::ApiKeysWrite),
    ("GET", "/v1/tenants/{tenant_id}/api_keys", P::ApiKeysWrite),
    (
        "DELETE",
        "/v1/tenants/{tenant_id}/api_keys/{key_id}",
        P::ApiKeysWrite,
    ),
    ("POST", "/v1/tenants/{tenant_id}/scim_tokens", P::UsersWrite),
    (
        "DELETE",
        "/v1/tenants/{tenant_id}/scim_tokens/{token_id}",
        P::UsersWrite,
    ),
    ("POST", "/v1/plans", P::PlansWrite),
    ("GET", "/v1/plans", P::PlansRead),
    ("GET", "/v1/plans/{plan_id}", P::PlansRead),
    ("PUT", "/v1/plans/{plan_id}", P::PlansWrite),
    ("POST", "/v1/usage", P::UsageWrite),
    ("POST", "/v1/billing/runs", P::BillingRun),
    ("GET", "/v1/billing/runs", P::BillingRead),
    ("GET", "/v1/billing/runs/{run_id}", P::BillingRead),
    ("GET", "/v1/tenants/{tenant_id}/invoices", P::InvoicesRead),
    (
        "GET",
        "/v1/tenants/{tenant_id}/invoices/{invoice_id}",
        P::InvoicesRead,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/invoices/{invoice_id}/pdf",
        P::InvoicesRead,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/invoices/{invoice_id}/finalize",
        P::InvoicesWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/invoices/{invoice_id}/void",
        P::InvoicesWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/invoices/{invoice_id}/mark_uncollectible",
        P::InvoicesWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/invoices/{invoice_id}/mark_paid",
        P::InvoicesWrite,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/billing_profile",
        P::InvoicesRead,
    ),
    (
        "PUT",
        "/v1/tenants/{tenant_id}/billing_profile",
        P::InvoicesWrite,
    ),
    ("POST", "/v1/tax_rates", P::InvoicesWrite),
    ("GET", "/v1/tax_rates", P::InvoicesRead),
    (
        "POST",
        "/v1/tax_rates/{tax_rate_id}/archive",
        P::InvoicesWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/payment_methods",
        P::PaymentsWrite,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/payment_methods",
        P::PaymentsRead,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/payment_methods/{payment_method_id}/default",
        P::PaymentsWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/payment_methods/{payment_method_id}/detach",
        P::PaymentsWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/payment_intents",
        P::PaymentsWrite,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/payment_intents",
        P::PaymentsRead,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/payment_intents/{payment_intent_id}",
        P::PaymentsRead,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/payment_intents/{payment_intent_id}/confirm",
        P::PaymentsWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/payment_intents/{payment_intent_id}/capture",
        P::PaymentsWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/payment_intents/{payment_intent_id}/cancel",
        P::PaymentsWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/payment_intents/{payment_intent_id}/refunds",
        P::PaymentsWrite,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/payment_intents/{payment_intent_id}/refunds",
        P::PaymentsRead,
    ),
    ("GET", "/v1/tenants/{tenant_id}/dunning", P::PaymentsRead),
    (
        "POST",
        "/v1/tenants/{tenant_id}/notification_recipients",
        P::NotificationsWrite,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/notification_recipients",
        P::NotificationsRead,
    ),
    (
        "PATCH",
        "/v1/tenants/{tenant_id}/notification_recipients/{recipient_id}",
        P::NotificationsWrite,
    ),
    (
        "DELETE",
        "/v1/tenants/{tenant_id}/notification_recipients/{recipient_id}",
        P::NotificationsWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/webhook_endpoints",
        P::NotificationsWrite,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/webhook_endpoints",
        P::NotificationsRead,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/webhook_endpoints/{endpoint_id}",
        P::NotificationsRead,
    ),
    (
        "PATCH",
        "/v1/tenants/{tenant_id}/webhook_endpoints/{endpoint_id}",
        P::NotificationsWrite,
    ),
    (
        "DELETE",
        "/v1/tenants/{tenant_id}/webhook_endpoints/{endpoint_id}",
        P::NotificationsWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/webhook_endpoints/{endpoint_id}/rotate_secret",
        P::NotificationsWrite,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/messages",
        P::NotificationsRead,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/messages/{message_id}",
        P::NotificationsRead,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/messages/{message_id}/replay",
        P::NotificationsWrite,
    ),
    ("GET", "/v1/tenants/{tenant_id}/usage", P::UsageRead),
    (
        "GET",
        "/v1/tenants/{tenant_id}/entitlements/{feature}",
        P::EntitlementsRead,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/subscription",
        P::SubscriptionsWrite,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/subscription",
        P::SubscriptionsRead,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/subscription/change_plan",
        P::SubscriptionsWrite,
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/subscription/cancel",
        P::SubscriptionsWrite,
    ),
    (
        "GET",
        "/v1/tenants/{tenant_id}/subscription/seats",
        P::SubscriptionsRead,
    ),
];

/// Public routes under `/v1` (the OpenAPI document lists them without security).
pub const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/v1/status"),
    // PSP callbacks authenticate by the PSP's signature, checked by the payment service.
    ("POST", "/v1/webhooks/psp/stripe"),
    ("POST", "/v1/webhooks/psp/adyen"),
];

/// Routes outside `/v1` that authenticate on their own or need no identity: the API
/// description, and SCIM (its bearer token is checked by the user service).
const OWN_AUTH: &[&str] = &["/openapi.json", "/scim/v2/{*rest}"];

/// What a matched route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Requires(P),
    /// In no list: nobody may call it.
    Unlisted,
}

pub fn required(method: &Method, path: &str) -> Access {
    if let Some((_, _, perm)) = ROUTES
        .iter()
        .find(|(m, p, _)| *p == path && *m == method.as_str())
    {
        return Access::Requires(*perm);
    }
    let public = PUBLIC
        .iter()
        .any(|(m, p)| *p == path && *m == method.as_str())
        || OWN_AUTH.contains(&path);
    if public {
        Access::Public
    } else {
        Access::Unlisted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_routes_are_closed() {
        assert_eq!(
            required(&Method::GET, "/v1/tenants/{tenant_id}"),
            Access::Requires(P::TenantsRead)
        );
        assert_eq!(required(&Method::GET, "/v1/status"), Access::Public);
        assert_eq!(required(&Method::PUT, "/scim/v2/{*rest}"), Access::Public);
        assert_eq!(required(&Method::POST, "/v1/status"), Access::Unlisted);
        assert_eq!(required(&Method::GET, "/v1/new_route"), Access::Unlisted);
    }
}
