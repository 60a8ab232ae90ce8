//! Cursor pagination, the same for every list call: `limit` 1..=100 (default 20), and an
//! opaque cursor — the key of the last row returned, base64url-encoded — that the next call
//! passes back to continue after it. Services ask the store for `limit + 1` rows; the extra
//! one only says whether there is more.

use base64::Engine;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// The page size for an asked `limit` (0: the default; capped at [`MAX_LIMIT`]).
pub fn limit(asked: u32) -> i64 {
    match asked {
        0 => DEFAULT_LIMIT,
        n => i64::from(n).min(MAX_LIMIT),
    }
}

/// A cursor we did not issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cursor: not a cursor this API issued")]
pub struct BadCursor;

/// The key to continue after: `None` for the first page.
pub fn after(cursor: &str) -> Result<Option<String>, BadCursor> {
    if cursor.is_empty() {
        return Ok(None);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|k| !k.is_empty() && k.len() <= 128 && !k.chars().any(char::is_control))
        .map(Some)
        .ok_or(BadCursor)
}

/// One page of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub has_more: bool,
    /// Empty on the last page.
    pub next_cursor: String,
}

/// Cuts the `limit + 1` rows a store returned to a page; `key` names a row for the cursor.
pub fn page<T>(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Page<T> {
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let next_cursor = match rows.last() {
        Some(last) if has_more => {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key(last))
        }
        _ => String::new(),
    };
    Page {
        rows,
        has_more,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_continue_after_their_last_key() {
        assert_eq!((limit(0), limit(7), limit(1000)), (20, 7, 100));
        let p = page(vec!["a", "b", "c"], 2, |s| s.to_string());
        assert_eq!(p.rows, ["a", "b"]);
        assert!(p.has_more);
        assert_eq!(after(&p.next_cursor), Ok(Some("b".to_string())));
        let last = page(vec!["c"], 2, |s| s.to_string());
        assert_eq!((last.has_more, last.next_cursor.as_str()), (false, ""));
        assert_eq!(after(""), Ok(None));
        assert_eq!(after("%%%"), Err(BadCursor));
        assert_eq!(after("AA"), Err(BadCursor), "a NUL key");
    }
}
