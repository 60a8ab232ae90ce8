//! SCIM 2.0 (RFC 7643/7644) domain logic: filters, resources and PATCH. No I/O.

pub mod filter;
