//! The typed values services pass around and store as text.
//!
//! * **Ids**: [`TenantId`], [`UserId`], [`SubscriptionId`], [`RunId`], … Each is a newtype
//!   over `String` that can only be built by [`generate`](UserId::generate) or a checking
//!   `parse`, binds and decodes with sqlx as `text` (and `text[]`), and (de)serializes as a
//!   plain string. A transport parses what a caller sent once; everything below it (domain,
//!   store, events) takes the type, so an id of one kind cannot be passed as another.
//! * **States**: [`text_enum!`] declares an enum stored as one of a fixed set of strings
//!   (`'active'`, `'suspended'`, …), for status columns.
//!
//! Grammar. A generated id is its prefix plus a UUIDv7 in simple form (`usr_0190…`): ids
//! sort by creation time, so cursor paging can use `ORDER BY id`, and a pasted id says
//! what it is. Two kinds are wider because people choose them: a [`TenantId`] may also be
//! an operator-chosen name (the platform operator's tenant, `ten_platform`, is configured),
//! and a [`PlanId`] is a key the operator picks (`pro`, `team-2026`).

mod enums;
mod id;

pub use id::{
    ApiKeyId, DeliveryId, EndpointId, GroupId, InvalidId, InvoiceId, MessageId, PaymentIntentId,
    PaymentMethodId, PlanId, RecipientId, RefundId, RunId, ScimTokenId, SubscriptionId, TaxRateId,
    TenantId, UserId, is_key,
};

#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use sqlx;
}
