//! Which events a tenant hears of, and the filters recipients and endpoints choose them by.
//! A filter is an event type (`invoice.paid`) or a prefix with a star (`invoice.*`,
//! `payment.*`); an empty list means every event. Filters naming nothing that exists are
//! refused, so a typo does not silently subscribe to nothing.

/// Sent by this service itself when it disables a failing endpoint.
pub const ENDPOINT_DISABLED: &str = "webhook.endpoint.disabled";

/// Every event type a tenant may hear of: the tenant-scoped events of the platform (billing
/// runs are the operator's, not a tenant's), and this service's own.
pub fn notifiable() -> impl Iterator<Item = &'static str> {
    event_types::TYPES
        .iter()
        .map(|(t, _, _)| *t)
        .filter(|t| !t.starts_with("billing."))
        .chain([ENDPOINT_DISABLED])
}

/// At most this many filters per recipient or endpoint.
pub const MAX_FILTERS: usize = 64;

/// Checks and normalizes filters: trimmed, known, without duplicates, in the order given.
pub fn check_filters(filters: &[String]) -> Result<Vec<String>, String> {
    if filters.len() > MAX_FILTERS {
        return Err(format!("at most {MAX_FILTERS} event types"));
    }
    let mut out: Vec<String> = Vec::with_capacity(filters.len());
    for f in filters {
        let f = f.trim();
        if !notifiable().any(|t| matches_one(f, t)) {
            return Err(format!(
                "{:?} names no event; use a type such as invoice.paid or a prefix such as invoice.*",
                f.chars().take(80).collect::<String>()
            ));
        }
        if !out.iter().any(|o| o == f) {
            out.push(f.to_string());
        }
    }
    Ok(out)
}

/// Whether `event_type` passes `filters` (empty: everything passes).
pub fn matches(filters: &[String], event_type: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| matches_one(f, event_type))
}

fn matches_one(filter: &str, event_type: &str) -> bool {
    match filter.strip_suffix('*') {
        Some(prefix) => prefix.ends_with('.') && event_type.starts_with(prefix),
        None => filter == event_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_types_and_prefixes() {
        let f = vec!["invoice.*".to_string(), "payment.intent.failed".to_string()];
        assert!(matches(&f, "invoice.ready"));
        assert!(matches(&f, "payment.intent.failed"));
        assert!(!matches(&f, "payment.intent.succeeded"));
        assert!(!matches(&f, "credit_note.created"));
        assert!(matches(&[], "user.created"));
        // A prefix is a whole dotted segment.
        assert!(!matches(&["invoice*".into()], "invoice.ready"));
    }

    #[test]
    fn filters_must_name_something() {
        assert_eq!(
            check_filters(&[
                " invoice.* ".into(),
                "invoice.*".into(),
                "payment.refunded".into()
            ]),
            Ok(vec![
                "invoice.*".to_string(),
                "payment.refunded".to_string()
            ])
        );
        assert!(check_filters(&["invoice.redy".into()]).is_err());
        assert!(check_filters(&["billing.run.completed".into()]).is_err());
        assert!(check_filters(&["*".into()]).is_err());
        assert!(check_filters(&[ENDPOINT_DISABLED.into()]).is_ok());
    }
}
