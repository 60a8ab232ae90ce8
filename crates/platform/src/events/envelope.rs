//! The CloudEvents 1.0 JSON envelope every event travels in.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A CloudEvents 1.0 event with the `tenantid` extension attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    /// Unique per event; also the JetStream `Nats-Msg-Id` and the inbox key.
    pub id: Uuid,
    /// The producing service, e.g. `/services/user`.
    pub source: String,
    /// Dotted event type, e.g. `user.created`; also the NATS subject (after the prefix).
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: DateTime<Utc>,
    /// What the event is about, e.g. the user id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tenantid: Option<String>,
    pub datacontenttype: String,
    pub data: serde_json::Value,
}

impl CloudEvent {
    /// A new event with a fresh UUIDv7 id (time-ordered, so ids sort by creation).
    pub fn new(source: &str, event_type: &str, data: serde_json::Value) -> Self {
        CloudEvent {
            specversion: "1.0".into(),
            id: Uuid::now_v7(),
            source: source.into(),
            event_type: event_type.into(),
            // Postgres keeps microseconds; truncate so a stored event round-trips unchanged.
            time: Utc::now().trunc_subsecs(6),
            subject: None,
            tenantid: None,
            datacontenttype: "application/json".into(),
            data,
        }
    }

    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenantid = Some(tenant.into());
        self
    }

    /// Event types become NATS subjects, so they must be dotted lowercase tokens.
    pub fn is_valid_type(event_type: &str) -> bool {
        !event_type.is_empty()
            && event_type.split('.').all(|tok| {
                !tok.is_empty()
                    && tok
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_cloudevents_json() {
        let ev = CloudEvent::new(
            "/services/user",
            "user.created",
            serde_json::json!({"a": 1}),
        )
        .with_tenant("t_1")
        .with_subject("u_1");
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "user.created");
        assert_eq!(v["tenantid"], "t_1");
        let back: CloudEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn event_types_are_subject_safe() {
        assert!(CloudEvent::is_valid_type("billing.run.completed"));
        for bad in ["", "a..b", "a.*", "a.>", "A.b", "a b", ".a"] {
            assert!(!CloudEvent::is_valid_type(bad), "{bad}");
        }
    }
}
