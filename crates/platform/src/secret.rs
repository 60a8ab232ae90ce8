//! Values that must never reach a log line: `Debug` and `Display` print a placeholder, and
//! the value is read only through [`Secret::expose`], which is easy to find in review.

use std::fmt;

/// A secret setting (signing key, PSP API key, password).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"<redacted>\")")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `url` with the password of its user-info (`scheme://user:password@host`) replaced, for
/// printing connection strings.
pub fn redact_url(url: &str) -> String {
    // A list of servers (`NATS_URL` of a cluster) has a password in each.
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let user_info = &rest[..at];
    let user = user_info.split(':').next().unwrap_or("");
    let shown = if user_info.contains(':') {
        format!("{user}:<redacted>")
    } else if user.is_empty() {
        String::new()
    } else {
        // A bare user-info part may itself be a token (`redis://token@host`).
        "<redacted>".to_string()
    };
    format!("{}{shown}{}", &url[..scheme_end], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2-hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-hunter2");
    }

    #[test]
    fn urls_lose_their_passwords_only() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/saas?sslmode=require"),
            "postgres://app:<redacted>@db:5432/saas?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://postgres@localhost:5432/saas_user"),
            "postgres://<redacted>@localhost:5432/saas_user"
        );
        assert_eq!(
            redact_url("redis://localhost:6379"),
            "redis://localhost:6379"
        );
        assert_eq!(
            redact_url("redis://:pw@r:6379/0"),
            "redis://:<redacted>@r:6379/0"
        );
        assert_eq!(redact_url("nats://h:4222/a@b"), "nats://h:4222/a@b");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
