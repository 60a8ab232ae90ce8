//! E-mail and SMS text per event, from the templates in `templates/` (compiled in, so what is
//! reviewed in the repository is what is sent). A template file is a `Subject:` line, then
//! `---`, the plain-text body, `---`, the HTML body. `{{name}}` is replaced by a value; in
//! HTML the value is escaped. A name without a value is an error, caught by the tests over
//! every template, never a blank in a customer's inbox.
//!
//! SMS carries the subject alone: one short line.

use std::collections::BTreeMap;

/// Template names and their files.
const FILES: &[(&str, &str)] = &[
    (
        "invoice_ready",
        include_str!("../../templates/invoice_ready.tmpl"),
    ),
    (
        "invoice_paid",
        include_str!("../../templates/invoice_paid.tmpl"),
    ),
    (
        "payment_failed",
        include_str!("../../templates/payment_failed.tmpl"),
    ),
    (
        "dunning_exhausted",
        include_str!("../../templates/dunning_exhausted.tmpl"),
    ),
    (
        "subscription_changed",
        include_str!("../../templates/subscription_changed.tmpl"),
    ),
    (
        "tenant_suspended",
        include_str!("../../templates/tenant_suspended.tmpl"),
    ),
    (
        "tenant_reactivated",
        include_str!("../../templates/tenant_reactivated.tmpl"),
    ),
    (
        "endpoint_disabled",
        include_str!("../../templates/endpoint_disabled.tmpl"),
    ),
];

/// The template an event type is told by e-mail and SMS with; `None`: webhooks only.
pub fn for_event(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "invoice.ready" => "invoice_ready",
        "invoice.paid" => "invoice_paid",
        "payment.intent.failed" => "payment_failed",
        "payment.dunning.exhausted" => "dunning_exhausted",
        "tenant.suspended" => "tenant_suspended",
        "tenant.reactivated" => "tenant_reactivated",
        super::topics::ENDPOINT_DISABLED => "endpoint_disabled",
        t if event_types::TYPES
            .iter()
            .any(|(n, k, _)| *n == t && *k == event_types::Kind::SubscriptionChanged) =>
        {
            "subscription_changed"
        }
        _ => return None,
    })
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("no template {0:?}")]
    Unknown(String),
    #[error("template {0}: not Subject, ---, text, ---, HTML")]
    Shape(&'static str),
    #[error("template {0}: no value for {{{{{1}}}}}")]
    Missing(&'static str, String),
}

/// Renders template `name` with `vars`.
pub fn render(name: &str, vars: &BTreeMap<&str, String>) -> Result<Rendered, TemplateError> {
    let (name, file) = FILES
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| TemplateError::Unknown(name.to_string()))?;
    let mut parts = file.splitn(3, "\n---\n");
    let (Some(head), Some(text), Some(html)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(TemplateError::Shape(name));
    };
    let subject = head
        .strip_prefix("Subject:")
        .ok_or(TemplateError::Shape(name))?
        .trim();
    Ok(Rendered {
        subject: fill(name, subject, vars, false)?,
        text: fill(name, text.trim_start(), vars, false)?,
        html: fill(name, html.trim_start(), vars, true)?,
    })
}

fn fill(
    name: &'static str,
    template: &str,
    vars: &BTreeMap<&str, String>,
    html: bool,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Shape(name))?;
        let key = after[..end].trim();
        let value = vars
            .get(key)
            .ok_or_else(|| TemplateError::Missing(name, key.to_string()))?;
        if html {
            escape_into(&mut out, value);
        } else {
            out.push_str(value);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The values every template may use; events add their own.
pub const COMMON: &[&str] = &["tenant_name", "event_type"];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name any template uses, with a value.
    fn all_vars() -> BTreeMap<&'static str, String> {
        [
            "tenant_name",
            "event_type",
            "number",
            "amount",
            "due_date",
            "paid_date",
            "failure",
            "next_retry",
            "retries",
            "change",
            "plan",
            "seats",
            "period_end",
            "url",
            "reason",
        ]
        .into_iter()
        .map(|k| (k, format!("<{k}>")))
        .collect()
    }

    #[test]
    fn every_template_renders_and_escapes_html() {
        for (name, _) in FILES {
            let r = render(name, &all_vars()).unwrap_or_else(|e| panic!("{e}"));
            assert!(!r.subject.is_empty() && !r.subject.contains('\n'), "{name}");
            assert!(!r.text.contains("{{") && !r.html.contains("{{"), "{name}");
            assert!(r.html.contains("&lt;tenant_name&gt;"), "{name}: escaped");
            assert!(!r.html.contains("<tenant_name>"), "{name}");
            assert!(
                r.text.contains("<tenant_name>"),
                "{name}: text is not escaped"
            );
        }
    }

    #[test]
    fn a_missing_value_is_an_error() {
        let mut v = all_vars();
        v.remove("number");
        assert_eq!(
            render("invoice_ready", &v),
            Err(TemplateError::Missing("invoice_ready", "number".into()))
        );
    }

    #[test]
    fn the_events_told_by_mail() {
        for t in ["invoice.ready", "invoice.paid", "payment.intent.failed"] {
            assert!(for_event(t).is_some(), "{t}");
        }
        assert_eq!(
            for_event("subscription.canceled"),
            Some("subscription_changed")
        );
        assert_eq!(for_event("user.created"), None);
    }
}
