//! Pure billing rules: how usage records fold into per-(tenant, user, metric) totals, how a
//! span of a subscription prices into lines, and which parts of a period a run bills.

pub mod aggregate;
pub mod charges;
pub mod cycles;

ids::text_enum! {
    /// What a charge line bills. `minimum` tops a line up to its price's minimum;
    /// `adjustment` is a correction run's difference to what was billed before; `proration`
    /// an advance fee's true-up at the period's end.
    pub enum LineKind {
        Flat = "flat",
        Seat = "seat",
        Usage = "usage",
        Minimum = "minimum",
        Adjustment = "adjustment",
        Proration = "proration",
    }
}

ids::text_enum! {
    /// The two parts of a subscription period, each billed once: `advance` when it begins,
    /// `arrears` when it ends (ARCHITECTURE.md, "Billing cycles").
    pub enum Part {
        Advance = "advance",
        Arrears = "arrears",
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
