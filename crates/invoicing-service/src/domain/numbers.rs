//! Invoice numbers: a configured format (`INVOICE_NUMBER_FORMAT`, default `INV-{year}-{seq:6}`)
//! rendered with the year of issue and that year's next sequence number. Sequences are per
//! year and gapless; allocating them is the store's job (inside the finalizing transaction).
//!
//! Format: literal text (letters, digits, `-`, `_`, `/`, `.`), `{year}` (four digits) and
//! exactly one `{seq}` or `{seq:N}` (zero-padded to N digits, 1 to 12; wider numbers are not
//! cut).

/// A parsed number format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberFormat(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Year,
    Seq { width: usize },
}

/// Why a format is not valid; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invoice number format {format:?}: {message}")]
pub struct FormatError {
    pub format: String,
    pub message: String,
}

pub const DEFAULT_FORMAT: &str = "INV-{year}-{seq:6}";

impl NumberFormat {
    pub fn parse(format: &str) -> Result<NumberFormat, FormatError> {
        let bad = |message: &str| FormatError {
            format: format.to_string(),
            message: message.to_string(),
        };
        if format.len() > 64 {
            return Err(bad("longer than 64 characters"));
        }
        let mut pieces = Vec::new();
        let mut rest = format;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').ok_or_else(|| bad("a '{' is not closed"))?;
                let piece = match &after[..end] {
                    "year" => Piece::Year,
                    "seq" => Piece::Seq { width: 1 },
                    p => match p.strip_prefix("seq:").map(str::parse::<usize>) {
                        Some(Ok(width @ 1..=12)) => Piece::Seq { width },
                        _ => {
                            return Err(bad(
                                "placeholders are {year}, {seq} and {seq:N}, N 1 to 12",
                            ));
                        }
                    },
                };
                pieces.push(piece);
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let text = &rest[..end];
                if !text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_/.".contains(c))
                {
                    return Err(bad("text may hold letters, digits, '-', '_', '/' and '.'"));
                }
                pieces.push(Piece::Text(text.to_string()));
                rest = &rest[end..];
            }
        }
        if pieces
            .iter()
            .filter(|p| matches!(p, Piece::Seq { .. }))
            .count()
            != 1
        {
            return Err(bad("it needs exactly one {seq} or {seq:N}"));
        }
        Ok(NumberFormat(pieces))
    }

    /// The number of the `seq`-th invoice (1-based) issued in `year`.
    pub fn render(&self, year: i32, seq: u64) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Year => format!("{year:04}"),
                Piece::Seq { width } => format!("{seq:0width$}"),
            })
            .collect()
    }
}

impl Default for NumberFormat {
    fn default() -> Self {
        NumberFormat::parse(DEFAULT_FORMAT).expect("the default format is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_configured_shape() {
        let f = NumberFormat::default();
        assert_eq!(f.render(2026, 123), "INV-2026-000123");
        assert_eq!(f.render(2026, 1_234_567), "INV-2026-1234567", "never cut");
        let f = NumberFormat::parse("{year}/{seq}").unwrap();
        assert_eq!(f.render(2027, 5), "2027/5");
        let f = NumberFormat::parse("ACME.{seq:3}").unwrap();
        assert_eq!(f.render(2026, 7), "ACME.007");
    }

    #[test]
    fn bad_formats_say_what_is_wrong() {
        for (format, needle) in [
            ("INV-{year}", "exactly one {seq}"),
            ("{seq}{seq}", "exactly one {seq}"),
            ("INV-{seq:0}", "placeholders"),
            ("INV-{seq:13}", "placeholders"),
            ("INV-{month}-{seq}", "placeholders"),
            ("INV {seq}", "text may hold"),
            ("INV-{seq", "not closed"),
            ("<script>{seq}", "text may hold"),
        ] {
            let e = NumberFormat::parse(format).unwrap_err();
            assert!(e.to_string().contains(needle), "{format}: {e}");
        }
        assert!(NumberFormat::parse(&format!("{}{{seq}}", "A".repeat(64))).is_err());
    }
}
