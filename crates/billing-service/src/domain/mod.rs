//! Pure billing rules: how usage records fold into per-(tenant, user, metric) totals.

pub mod aggregate;
pub mod charges;
