//! Pure rules of the identity domain: ids, validation, secrets. No I/O.

pub mod grants;
pub mod ids;
pub mod scim;
pub mod secrets;
pub mod validate;
