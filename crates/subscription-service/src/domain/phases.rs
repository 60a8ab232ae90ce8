//! Which plan version was in force when: the phases a billing period splits into at plan
//! changes.

use chrono::{DateTime, Utc};
use pricing::Period;

/// A plan version: plan id and version.
pub type PlanKey = (ids::PlanId, u32);

/// A recorded move from one plan version to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanChange {
    pub from: PlanKey,
    pub to: PlanKey,
    pub at: DateTime<Utc>,
}

/// One plan version over `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub plan: PlanKey,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The plan versions in force over `period`, in order and without gaps, from the subscription's
/// `current` plan and its `changes` in time order. Only changes after the period's start
/// matter, and of those at or after its end only the first (its `from` is the plan the period
/// ended on); a change at the very start of the period opens no phase of the plan it left.
pub fn plan_phases(period: &Period, current: PlanKey, changes: &[PlanChange]) -> Vec<Phase> {
    let mut phases = Vec::new();
    let mut start = period.start;
    for c in changes {
        if c.at >= period.end {
            phases.push(Phase {
                plan: c.from.clone(),
                start,
                end: period.end,
            });
            return phases;
        }
        // Two changes at one instant (or one at the start) leave no time to the plan between.
        if c.at > start {
            phases.push(Phase {
                plan: c.from.clone(),
                start,
                end: c.at,
            });
            start = c.at;
        }
    }
    phases.push(Phase {
        plan: current,
        start,
        end: period.end,
    });
    phases
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 4, d, 0, 0, 0).unwrap()
    }

    fn key(id: &str, v: u32) -> PlanKey {
        (ids::PlanId::parse(id).unwrap(), v)
    }

    fn change(from: &str, to: &str, d: u32) -> PlanChange {
        PlanChange {
            from: key(from, 1),
            to: key(to, 1),
            at: day(d),
        }
    }

    /// (plan, first day, last day) of each phase.
    fn shape(p: &[Phase]) -> Vec<(&str, u32, u32)> {
        use chrono::Datelike;
        p.iter()
            .map(|p| (p.plan.0.as_str(), p.start.day(), p.end.day()))
            .collect()
    }

    #[test]
    fn phases_split_the_period_at_changes() {
        let april = Period::new(day(1), day(29)).unwrap();
        // No change: the current plan over the whole period.
        assert_eq!(
            shape(&plan_phases(&april, key("b", 1), &[])),
            [("b", 1, 29)]
        );
        // One change inside.
        assert_eq!(
            shape(&plan_phases(&april, key("b", 1), &[change("a", "b", 10)])),
            [("a", 1, 10), ("b", 10, 29)]
        );
        // Two inside, then one after the period: the period ended on that one's `from`.
        assert_eq!(
            shape(&plan_phases(
                &april,
                key("d", 1),
                &[
                    change("a", "b", 5),
                    change("b", "c", 20),
                    change("c", "d", 29)
                ]
            )),
            [("a", 1, 5), ("b", 5, 20), ("c", 20, 29)]
        );
        // Only changes after the period: one phase of the plan it was on.
        assert_eq!(
            shape(&plan_phases(&april, key("c", 1), &[change("a", "c", 29)])),
            [("a", 1, 29)]
        );
        // A change at the start, and two at one instant, leave no empty phase.
        assert_eq!(
            shape(&plan_phases(
                &april,
                key("c", 1),
                &[
                    change("z", "a", 1),
                    change("a", "b", 9),
                    change("b", "c", 9)
                ]
            )),
            [("a", 1, 9), ("c", 9, 29)]
        );
    }
}
