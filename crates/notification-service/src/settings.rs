//! Settings only the notification service reads, beside the shared `ServiceConfig`.

use std::time::Duration;

use platform::Secret;
use platform::config::{ConfigError, duration, num_var};

use crate::domain::retry::Schedule;

/// Variables only the notification service reads: name, default, meaning (the README lists
/// them).
pub const ENV_VARS: &[(&str, &str, &str)] = &[
    (
        "EMAIL_TRANSPORT",
        "maildir:var/mail",
        "where e-mail goes: maildir:<dir> (RFC 5322 files, no mail server needed) or an SMTP URL: smtp://[user:password@]host[:port][?tls=required|opportunistic], smtps://… for implicit TLS",
    ),
    (
        "EMAIL_FROM",
        "Billing <billing@localhost>",
        "the From of every e-mail",
    ),
    (
        "SMS_TRANSPORT",
        "file:var/sms.log",
        "where SMS go: file:<path> (one JSON line each) or the base URL of a Twilio-style API",
    ),
    (
        "SMS_ACCOUNT_SID",
        "(unset)",
        "the provider account (Twilio: AC…), also the user of HTTP basic auth",
    ),
    ("SMS_AUTH_TOKEN", "(unset)", "the provider's auth token"),
    ("SMS_FROM", "(unset)", "the sending number, E.164"),
    (
        "WEBHOOK_ALLOW_PRIVATE",
        "false",
        "let webhook endpoints be http:// and reach loopback and private addresses (local development only)",
    ),
    (
        "WEBHOOK_TIMEOUT_MS",
        "15000",
        "how long an endpoint may take to answer",
    ),
    (
        "WEBHOOK_RETRY_SCHEDULE",
        "0s,5s,5m,30m,2h,5h,10h,10h",
        "the delay before each attempt of a delivery (d, h, m, s); each gets up to 10% jitter",
    ),
    (
        "WEBHOOK_DISABLE_AFTER",
        "5d",
        "an endpoint failing every attempt for this long is disabled and its tenant told",
    ),
    (
        "WEBHOOK_SECRET_OVERLAP",
        "24h",
        "how long the previous secret keeps signing beside the new one after a rotation",
    ),
    (
        "NOTIFY_MAX_IN_FLIGHT",
        "64",
        "deliveries (webhooks, e-mails, SMS) in flight at once",
    ),
    (
        "WEBHOOK_PER_ENDPOINT",
        "4",
        "deliveries in flight to one endpoint at once, so one slow endpoint cannot hold them all",
    ),
    (
        "NOTIFY_CLOCK_MS",
        "1000",
        "how often the service looks for deliveries due (new ones wake it at once)",
    ),
];

/// Where e-mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailTransport {
    Maildir(String),
    /// An SMTP URL as lettre reads it (it may carry a password).
    Smtp(Secret),
}

/// Where SMS go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsTransport {
    File(String),
    /// The base URL of a Twilio-style API.
    Http(String),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub email: EmailTransport,
    pub email_from: String,
    pub sms: SmsTransport,
    pub sms_account: String,
    pub sms_token: Secret,
    pub sms_from: String,
    pub allow_private: bool,
    pub timeout: Duration,
    pub schedule: Schedule,
    pub disable_after: Duration,
    pub secret_overlap: Duration,
    pub max_in_flight: usize,
    pub per_endpoint: usize,
    pub clock: Duration,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &'static str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let bad = ConfigError::new;
        let email = match get("EMAIL_TRANSPORT") {
            None => EmailTransport::Maildir("var/mail".into()),
            Some(v) => match v.strip_prefix("maildir:") {
                Some(dir) if !dir.is_empty() => EmailTransport::Maildir(dir.into()),
                _ if v.starts_with("smtp://") || v.starts_with("smtps://") => {
                    EmailTransport::Smtp(Secret::new(v))
                }
                _ => {
                    // Never echo the value: an SMTP URL may hold a password.
                    return Err(bad(
                        "EMAIL_TRANSPORT",
                        "(hidden)",
                        "maildir:<dir>, smtp://… or smtps://…",
                    ));
                }
            },
        };
        let email_from = get("EMAIL_FROM").unwrap_or_else(|| "Billing <billing@localhost>".into());
        if email_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(bad("EMAIL_FROM", &email_from, "a mailbox: Name <address>"));
        }
        let sms = match get("SMS_TRANSPORT") {
            None => SmsTransport::File("var/sms.log".into()),
            Some(v) => match v.strip_prefix("file:") {
                Some(path) if !path.is_empty() => SmsTransport::File(path.into()),
                _ if v.starts_with("http://") || v.starts_with("https://") => {
                    SmsTransport::Http(v.trim_end_matches('/').to_string())
                }
                _ => return Err(bad("SMS_TRANSPORT", &v, "file:<path> or an http(s) URL")),
            },
        };
        let allow_private = match get("WEBHOOK_ALLOW_PRIVATE").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(v) => return Err(bad("WEBHOOK_ALLOW_PRIVATE", v, "true or false")),
        };
        let schedule_text = get("WEBHOOK_RETRY_SCHEDULE");
        let schedule = match &schedule_text {
            None => Schedule::default(),
            Some(t) => Schedule::parse(t).map_err(|e| bad("WEBHOOK_RETRY_SCHEDULE", t, &e))?,
        };
        let dur = |var: &'static str, default: &str| -> Result<Duration, ConfigError> {
            let text = get(var).unwrap_or_else(|| default.into());
            duration(&text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| bad(var, &text, "a positive duration such as 5d, 24h or 30m"))
        };
        Ok(Settings {
            email,
            email_from,
            sms,
            sms_account: get("SMS_ACCOUNT_SID").unwrap_or_default(),
            sms_token: Secret::new(get("SMS_AUTH_TOKEN").unwrap_or_default()),
            sms_from: get("SMS_FROM").unwrap_or_default(),
            allow_private,
            timeout: Duration::from_millis(
                num_var(&get, "WEBHOOK_TIMEOUT_MS", 15_000, 50, 120_000)?.into(),
            ),
            schedule,
            disable_after: dur("WEBHOOK_DISABLE_AFTER", "5d")?,
            secret_overlap: dur("WEBHOOK_SECRET_OVERLAP", "24h")?,
            max_in_flight: num_var(&get, "NOTIFY_MAX_IN_FLIGHT", 64, 1, 4096)? as usize,
            per_endpoint: num_var(&get, "WEBHOOK_PER_ENDPOINT", 4, 1, 256)? as usize,
            clock: Duration::from_millis(
                num_var(&get, "NOTIFY_CLOCK_MS", 1000, 10, 60_000)?.into(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_the_variable() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(s.email, EmailTransport::Maildir("var/mail".into()));
        assert_eq!(s.sms, SmsTransport::File("var/sms.log".into()));
        assert!(!s.allow_private);
        assert_eq!(s.schedule, Schedule::default());
        assert_eq!(s.disable_after, Duration::from_secs(5 * 86_400));
        for (var, value) in [
            ("EMAIL_TRANSPORT", "sendmail"),
            ("EMAIL_FROM", "not a mailbox"),
            ("SMS_TRANSPORT", "pigeon"),
            ("WEBHOOK_ALLOW_PRIVATE", "yes"),
            ("WEBHOOK_RETRY_SCHEDULE", "5s,1m"),
            ("WEBHOOK_DISABLE_AFTER", "0s"),
            ("WEBHOOK_PER_ENDPOINT", "0"),
        ] {
            let e = Settings::from_lookup(|k| (k == var).then(|| value.to_string())).unwrap_err();
            assert_eq!(e.var, var);
        }
        let e = Settings::from_lookup(|k| {
            (k == "EMAIL_TRANSPORT").then(|| "smtq://u:hunter2@mail".to_string())
        })
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
