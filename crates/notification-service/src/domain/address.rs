//! Which e-mail addresses and phone numbers a recipient may have. E-mail addresses are
//! checked by lettre's parser (what the SMTP transport will accept); phone numbers are E.164:
//! `+`, a country code and at most 15 digits in all, no spaces.

use std::str::FromStr;

/// An address checked for its channel, trimmed.
pub fn email(text: &str) -> Result<String, &'static str> {
    let t = text.trim();
    if t.len() > 254 {
        return Err("at most 254 characters");
    }
    lettre::Address::from_str(t)
        .map(|_| t.to_string())
        .map_err(|_| "an e-mail address such as billing@example.com")
}

pub fn phone(text: &str) -> Result<String, &'static str> {
    let t = text.trim();
    let digits = t.strip_prefix('+').unwrap_or_default();
    if (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
    {
        Ok(t.to_string())
    } else {
        Err("a phone number in E.164 form, such as +4930123456")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        assert_eq!(email(" ops@example.com "), Ok("ops@example.com".into()));
        for bad in ["", "ops", "ops@", "a@b@c", "ops@example.com\r\nBcc: x@y.z"] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert_eq!(phone("+4930123456"), Ok("+4930123456".into()));
        for bad in [
            "4930123456",
            "+49 30 123456",
            "+0123456789",
            "+1234",
            "+49301234567890123",
        ] {
            assert!(phone(bad).is_err(), "{bad:?}");
        }
    }
}
