//! Hostile input stops at the edge, the same way on every route: control characters and
//! over-long values in the path, the query and JSON bodies are 4xx problems before any
//! handler, service or database sees them (a NUL byte reached Postgres as a 500; a 1 MB id
//! broke the gRPC message limit).
//!
//! Rules (ARCHITECTURE.md, "Security model"):
//! - path segments and query values: no control characters, valid UTF-8 once
//!   percent-decoded, at most [`MAX_ID_BYTES`] (segments) or [`MAX_QUERY_BYTES`] (query
//!   values) → 400 `bad_path` / `bad_query`;
//! - JSON strings: no control characters other than tab, line feed and carriage return; the
//!   value of a key named `id` or `…_id`, or an element of a `…_ids` array, at most
//!   [`MAX_ID_BYTES`]; any other string at most [`MAX_STRING_BYTES`] → 422
//!   `validation_failed` naming the key.
//!
//! JSON is checked by one pass over the raw bytes ([`check_json`]) rather than by parsing
//! twice: a 10,000-record usage batch is scanned in well under a millisecond. Malformed JSON
//! is left to the parser that follows, which names the syntax error.

use axum::http::{StatusCode, Uri};
use platform::Problem;

/// Longest id (path segment, `id`/`…_id` field, `…_ids` element), in bytes.
pub const MAX_ID_BYTES: usize = 255;
/// Longest query parameter value, in bytes.
pub const MAX_QUERY_BYTES: usize = 1024;
/// Longest other JSON string, in bytes.
pub const MAX_STRING_BYTES: usize = 4096;

fn is_bad_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Checks the request target: every path segment and query key/value, percent-decoded.
pub fn check_uri(uri: &Uri) -> Result<(), Problem> {
    for segment in uri.path().split('/') {
        let decoded = percent_decode(segment)
            .ok_or_else(|| bad("bad_path", "the path is not valid UTF-8 once decoded"))?;
        if decoded.chars().any(char::is_control) {
            return Err(bad("bad_path", "the path contains a control character"));
        }
        if decoded.len() > MAX_ID_BYTES {
            return Err(bad(
                "bad_path",
                &format!("a path segment is longer than {MAX_ID_BYTES} bytes"),
            ));
        }
    }
    if let Some(query) = uri.query() {
        for pair in query.split('&') {
            let spaced = pair.replace('+', " ");
            let decoded = percent_decode(&spaced)
                .ok_or_else(|| bad("bad_query", "the query is not valid UTF-8 once decoded"))?;
            let (key, value) = decoded.split_once('=').unwrap_or((&decoded, ""));
            if decoded.chars().any(char::is_control) {
                return Err(bad(
                    "bad_query",
                    &format!("query parameter {key:?} contains a control character"),
                ));
            }
            if value.len() > MAX_QUERY_BYTES || key.len() > MAX_ID_BYTES {
                return Err(bad(
                    "bad_query",
                    &format!("query parameter {key:?} is longer than {MAX_QUERY_BYTES} bytes"),
                ));
            }
        }
    }
    Ok(())
}

fn bad(code: &str, detail: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, code).with_detail(detail)
}

/// `%XX`-decodes `s`; `None` if the result is not UTF-8. A `%` not followed by two hex
/// digits is kept as it is (the router treats it the same way). Borrowed when there is
/// nothing to decode (the common case costs no allocation).
fn percent_decode(s: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !s.contains('%') {
        return Some(std::borrow::Cow::Borrowed(s));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(std::borrow::Cow::Owned)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// What a JSON string is, by the key it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Id,
    IdList,
    Other,
}

fn classify(key: &[u8]) -> Class {
    if key == b"id" || key.ends_with(b"_id") {
        Class::Id
    } else if key.ends_with(b"_ids") {
        Class::IdList
    } else {
        Class::Other
    }
}

enum Container {
    Object { expecting_key: bool, key: Vec<u8> },
    Array { ids: bool },
}

/// Checks every string of a JSON document against the rules above; the problem names the
/// key of the offending value.
pub fn check_json(bytes: &[u8]) -> Result<(), Problem> {
    let mut stack: Vec<Container> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => stack.push(Container::Object {
                expecting_key: true,
                key: Vec::new(),
            }),
            b'[' => {
                let ids = matches!(
                    stack.last(),
                    Some(Container::Object { expecting_key: false, key }) if classify(key) == Class::IdList
                );
                stack.push(Container::Array { ids });
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(Container::Object { expecting_key, .. }) = stack.last_mut() {
                    *expecting_key = true;
                }
            }
            b'"' => {
                let (end, text) = scan_string(bytes, i + 1);
                match stack.last_mut() {
                    Some(Container::Object {
                        expecting_key: expecting_key @ true,
                        key,
                    }) => {
                        *expecting_key = false;
                        key.clear();
                        key.extend_from_slice(&bytes[i + 1..end.min(bytes.len())]);
                        if let Some(why) = text.problem(Class::Other) {
                            return Err(invalid("(a key)", why));
                        }
                    }
                    Some(Container::Object { key, .. }) => {
                        if let Some(why) = text.problem(classify(key)) {
                            return Err(invalid(&String::from_utf8_lossy(key), why));
                        }
                    }
                    Some(Container::Array { ids }) => {
                        let class = if *ids { Class::Id } else { Class::Other };
                        if let Some(why) = text.problem(class) {
                            return Err(invalid("(an array element)", why));
                        }
                    }
                    None => {
                        if let Some(why) = text.problem(Class::Other) {
                            return Err(invalid("(the body)", why));
                        }
                    }
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn invalid(field: &str, why: String) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .with_detail(format!("{field}: {why}"))
        .with_field(field, why)
}

/// What one string literal holds: its decoded length and whether a forbidden control
/// character is in it.
struct Scanned {
    len: usize,
    control: bool,
}

impl Scanned {
    fn problem(&self, class: Class) -> Option<String> {
        if self.control {
            return Some("contains a control character".into());
        }
        let max = if class == Class::Id {
            MAX_ID_BYTES
        } else {
            MAX_STRING_BYTES
        };
        (self.len > max).then(|| format!("longer than {max} bytes"))
    }
}

/// Scans the string literal starting after its opening quote at `start`: the index of its
/// closing quote (or the end of input) and what it holds.
fn scan_string(b: &[u8], start: usize) -> (usize, Scanned) {
    let mut s = Scanned {
        len: 0,
        control: false,
    };
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' => return (i, s),
            b'\\' if i + 1 < b.len() => {
                if b[i + 1] == b'u' && i + 5 < b.len() {
                    let code = std::str::from_utf8(&b[i + 2..i + 6])
                        .ok()
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .unwrap_or(0xFFFD);
                    if char::from_u32(code).is_some_and(is_bad_control) {
                        s.control = true;
                    }
                    // A surrogate half counts 2: a pair is one 4-byte character.
                    s.len += match code {
                        0..=0x7F => 1,
                        0x80..=0x7FF => 2,
                        0xD800..=0xDFFF => 2,
                        _ => 3,
                    };
                    i += 6;
                } else {
                    s.len += 1;
                    i += 2;
                }
                continue;
            }
            0x7F => s.control = true,
            // Raw C0 bytes are invalid JSON; the parser will say so.
            c if c < 0x20 => s.control = true,
            _ => {}
        }
        s.len += 1;
        i += 1;
    }
    (i, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// The rules, applied to a parsed document: an independent reference for the scanner.
    fn reference(v: &Value, class: Class) -> bool {
        match v {
            Value::String(s) => {
                let max = if class == Class::Id {
                    MAX_ID_BYTES
                } else {
                    MAX_STRING_BYTES
                };
                s.len() <= max && !s.chars().any(is_bad_control)
            }
            Value::Array(items) => {
                let inner = if class == Class::IdList {
                    Class::Id
                } else {
                    Class::Other
                };
                items.iter().all(|x| reference(x, inner))
            }
            Value::Object(map) => map.iter().all(|(k, x)| {
                !k.chars().any(is_bad_control)
                    && k.len() <= MAX_STRING_BYTES
                    && reference(x, classify(k.as_bytes()))
            }),
            _ => true,
        }
    }

    #[test]
    fn examples() {
        let ok = json!({"records": [{"id": "r1", "tenant_id": "ten_1", "metric": "a\tb\nc"}],
                        "tenant_ids": ["a", "b"], "name": "Ünïcødé \u{1F600}"});
        assert!(check_json(ok.to_string().as_bytes()).is_ok());
        let nul = json!({"name": "a\u{0}b"});
        let p = check_json(nul.to_string().as_bytes()).unwrap_err();
        assert_eq!(p.status, 422);
        assert!(p.detail.as_deref().unwrap().starts_with("name:"), "{p:?}");
        let long_id = json!({"records": [{"id": "x".repeat(256)}]});
        assert!(check_json(long_id.to_string().as_bytes()).is_err());
        let long_list = json!({"tenant_ids": ["x".repeat(256)]});
        assert!(check_json(long_list.to_string().as_bytes()).is_err());
        let long_name = json!({"name": "x".repeat(256)});
        assert!(check_json(long_name.to_string().as_bytes()).is_ok());
        // An escaped backslash before `u0000` is text, not a NUL.
        assert!(check_json(br#"{"name": "a\\u0000"}"#).is_ok());
        assert!(check_json(br#"{"name": "a\u0000"}"#).is_err());
        assert!(check_json(br#"{"name": "\u007f"}"#).is_err());
        // Garbage is the parser's business.
        assert!(check_json(b"{\"a\": [}}}]]").is_ok());
        assert!(check_json(b"\"unterminated").is_ok());
    }

    #[test]
    fn uris() {
        let ok: Uri = "/v1/billing/runs?tenant_id=ten_1&limit=10".parse().unwrap();
        assert!(check_uri(&ok).is_ok());
        for bad in [
            "/v1/billing/runs?tenant_id=%00abc",
            "/v1/tenants/%00",
            "/v1/tenants/%ff%fe",
            "/v1/tenants/a%0Ab",
        ] {
            let p = check_uri(&bad.parse().unwrap()).unwrap_err();
            assert_eq!(p.status, 400, "{bad}");
        }
        let long: Uri = format!("/v1/tenants/{}", "a".repeat(256)).parse().unwrap();
        assert_eq!(check_uri(&long).unwrap_err().code, "bad_path");
        let long_q: Uri = format!("/v1/x?cursor={}", "a".repeat(1025))
            .parse()
            .unwrap();
        assert_eq!(check_uri(&long_q).unwrap_err().code, "bad_query");
        let pct: Uri = "/v1/x?q=100%25&r=%".parse().unwrap();
        assert!(check_uri(&pct).is_ok());
    }

    fn doc() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("id".to_string()),
            Just("tenant_id".to_string()),
            Just("tenant_ids".to_string()),
            Just("name".to_string()),
            "[a-z_]{1,8}",
        ];
        let text = prop_oneof![
            "\\PC{0,20}",
            "[a-z]{250,260}",
            Just("tab\there".to_string()),
            Just("nul\u{0}here".to_string()),
            Just("del\u{7f}".to_string()),
            Just("bell\u{7}".to_string()),
            Just("quote\"back\\slash".to_string()),
            Just("\u{1F600}\u{e9}".to_string()),
        ];
        let leaf = prop_oneof![
            text.prop_map(Value::String),
            any::<i64>().prop_map(|n| json!(n)),
            Just(Value::Null),
        ];
        leaf.prop_recursive(4, 40, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_scanner_agrees_with_the_rules_on_parsed_documents(v in doc()) {
            let text = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(check_json(text.as_bytes()).is_ok(), reference(&v, Class::Other), "{}", text);
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            prop_assert_eq!(check_json(pretty.as_bytes()).is_ok(), reference(&v, Class::Other));
        }
    }
}
