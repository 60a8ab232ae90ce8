//! Pure billing rules: how usage records fold into per-(tenant, user, metric) totals.

pub mod aggregate;
pub mod charges;

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
