//! The channels: signed webhooks over HTTP ([`webhook`]), e-mail through lettre ([`email`]),
//! SMS through a provider's HTTP API or a file ([`sms`]). Each makes one attempt and says what
//! came of it; the [`sender`](crate::sender) decides what happens next.

pub mod email;
pub mod sms;
pub mod webhook;

use std::time::Duration;

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Delivered,
    /// The endpoint answered `410 Gone`: it is disabled.
    Gone,
    /// Refused for good (a permanent SMTP or provider refusal, an address not allowed).
    Refused,
    /// Try again, not before this long when the receiver asked (`Retry-After`).
    Retry(Option<Duration>),
}

/// One attempt, for the delivery log.
#[derive(Debug, Clone)]
pub struct Attempted {
    pub answer: Answer,
    /// HTTP status or SMTP reply code; `None` when nothing answered.
    pub code: Option<u16>,
    /// The start of what came back, or why nothing did.
    pub response: String,
    pub latency: Duration,
}

/// At most this much of an answer is kept.
pub const SNIPPET: usize = 1024;

/// `text` cut to [`SNIPPET`] bytes on a character boundary.
pub fn snippet(text: &str) -> String {
    let mut end = text.len().min(SNIPPET);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}
