//! Pure billing rules: how usage records fold into per-(tenant, user, metric) totals.

pub mod aggregate;
pub mod charges;

ids::text_enum! {
    /// What a charge line bills. `minimum` tops a line up to its price's minimum;
    /// `adjustment` is a correction run's difference to what was billed before.
    pub enum LineKind {
        Flat = "flat",
        Seat = "seat",
        Usage = "usage",
        Minimum = "minimum",
        Adjustment = "adjustment",
    }
}

ids::text_enum! {
    /// A billing run's state: `queued → running → completed | failed | exceeded_deadline`; a
    /// run whose worker died goes from `running` back to `queued`.
    pub enum RunStatus {
        Queued = "queued",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        ExceededDeadline = "exceeded_deadline",
    }
}
