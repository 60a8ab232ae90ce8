//! SQL of the `saas_notification` database, one module per table family. Every query that
//! takes a tenant is scoped by it; none of them decides anything.

pub mod deliveries;
pub mod endpoints;
pub mod messages;
pub mod recipients;
pub mod tenants;

ids::text_enum! {
    /// How a delivery travels.
    pub enum Channel { Email = "email", Sms = "sms", Webhook = "webhook" }
}

ids::text_enum! {
    pub enum DeliveryStatus { Pending = "pending", Delivered = "delivered", Failed = "failed" }
}

ids::text_enum! {
    pub enum EndpointStatus { Enabled = "enabled", Disabled = "disabled" }
}
