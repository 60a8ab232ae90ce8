//! SCIM 2.0 filter expressions (RFC 7644 §3.4.2.2): a real parser and an evaluator over a
//! resource's JSON representation.
//!
//! Grammar (case-insensitive keywords and attribute names):
//!
//! ```text
//! filter    = or
//! or        = and *("or" and)
//! and       = unary *("and" unary)
//! unary     = "not" "(" filter ")" / "(" filter ")" / valuepath / attrexp
//! valuepath = attrpath "[" filter "]"
//! attrexp   = attrpath "pr" / attrpath op value
//! op        = eq / ne / co / sw / ew / gt / lt / ge / le
//! value     = JSON string / number / true / false / null
//! attrpath  = [schema-urn ":"] name ["." subname]
//! ```
//!
//! Limits keep hostile input cheap: at most 4 KiB of text and 32 levels of nesting.

use std::cmp::Ordering;

use serde_json::Value;

/// A parse error, reported with the byte offset where it was noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub at: usize,
    pub message: String,
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid filter at position {}: {}",
            self.at, self.message
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Lt,
    Ge,
    Le,
}

/// `name` or `name.sub`, lower-cased, schema URN stripped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub name: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Present(AttrPath),
    Compare(AttrPath, Op, Value),
    /// `emails[type eq "work"]`: some element of the multi-valued attribute matches
    /// (`emails[type eq "work"].value eq "x"` is parsed as the bracket's filter `and` the
    /// comparison of the element's `value`).
    ValuePath(AttrPath, Box<Filter>),
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// `.value` right after `]`.
    Sub(String),
}

fn err(at: usize, message: impl Into<String>) -> FilterError {
    FilterError {
        at,
        message: message.into(),
    }
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push((i, Tok::LParen));
                i += 1;
            }
            b')' => {
                out.push((i, Tok::RParen));
                i += 1;
            }
            b'[' => {
                out.push((i, Tok::LBracket));
                i += 1;
            }
            b']' => {
                out.push((i, Tok::RBracket));
                i += 1;
                // `emails[type eq "work"].value`: the sub-attribute after a value filter.
                if bytes.get(i) == Some(&b'.') {
                    let start = i;
                    i += 1;
                    while i < bytes.len()
                        && (bytes[i].is_ascii_alphanumeric()
                            || matches!(bytes[i], b'_' | b'-' | b'$'))
                    {
                        i += 1;
                    }
                    if i == start + 1 {
                        return Err(err(start, "expected a sub-attribute after '].'"));
                    }
                    out.push((start, Tok::Sub(s[start + 1..i].to_ascii_lowercase())));
                }
            }
            b'"' => {
                // A JSON string: find the closing quote, honouring escapes, then let serde
                // decode the escapes exactly as JSON defines them.
                let start = i;
                i += 1;
                let mut escaped = false;
                while i < bytes.len() {
                    match (escaped, bytes[i]) {
                        (true, _) => escaped = false,
                        (false, b'\\') => escaped = true,
                        (false, b'"') => break,
                        _ => {}
                    }
                    i += 1;
                }
                if i >= bytes.len() {
                    return Err(err(start, "unterminated string"));
                }
                let decoded: String = serde_json::from_str(&s[start..=i])
                    .map_err(|_| err(start, "invalid string escape"))?;
                out.push((start, Tok::Str(decoded)));
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let n: f64 = s[start..i]
                    .parse()
                    .map_err(|_| err(start, "invalid number"))?;
                if !n.is_finite() {
                    return Err(err(start, "number out of range"));
                }
                out.push((start, Tok::Num(n)));
            }
            c if c.is_ascii_alphabetic() || c == b'$' || c == b'_' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || matches!(bytes[i], b'.' | b':' | b'_' | b'-' | b'$'))
                {
                    i += 1;
                }
                out.push((start, Tok::Word(s[start..i].to_string())));
            }
            _ => {
                return Err(err(
                    i,
                    format!(
                        "unexpected character {:?}",
                        s[i..].chars().next().unwrap_or('?')
                    ),
                ));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(a, _)| *a).unwrap_or(self.end)
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn expect(&mut self, t: Tok, what: &str) -> Result<(), FilterError> {
        if self.peek() == Some(&t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(err(self.at(), format!("expected {what}")))
        }
    }

    fn nest(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(self.at(), "filter nested too deeply"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        self.nest()?;
        let f = if self.keyword("not")
            && matches!(self.toks.get(self.pos + 1), Some((_, Tok::LParen)))
        {
            self.pos += 2;
            let inner = self.or()?;
            self.expect(Tok::RParen, "')'")?;
            Filter::Not(Box::new(inner))
        } else if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(Tok::RParen, "')'")?;
            inner
        } else {
            let path = self.attr_path()?;
            if self.peek() == Some(&Tok::LBracket) {
                self.pos += 1;
                let inner = self.or()?;
                self.expect(Tok::RBracket, "']'")?;
                // `emails[type eq "work"].value eq "x"`: some element matches the filter in
                // brackets and its `value` the comparison (RFC 7644 §3.4.2.2).
                let inner = match self.peek().cloned() {
                    Some(Tok::Sub(sub)) => {
                        self.pos += 1;
                        let on_element = self.attr_exp(AttrPath {
                            name: sub,
                            sub: None,
                        })?;
                        Filter::And(Box::new(inner), Box::new(on_element))
                    }
                    _ => inner,
                };
                Filter::ValuePath(path, Box::new(inner))
            } else {
                self.attr_exp(path)?
            }
        };
        self.depth -= 1;
        Ok(f)
    }

    fn attr_path(&mut self) -> Result<AttrPath, FilterError> {
        let at = self.at();
        let Some(Tok::Word(w)) = self.peek().cloned() else {
            return Err(err(at, "expected an attribute name"));
        };
        self.pos += 1;
        parse_attr_path(&w).ok_or_else(|| err(at, format!("invalid attribute path {w:?}")))
    }

    fn attr_exp(&mut self, path: AttrPath) -> Result<Filter, FilterError> {
        let at = self.at();
        let Some(Tok::Word(op)) = self.peek().cloned() else {
            return Err(err(
                at,
                "expected an operator (eq, ne, co, sw, ew, gt, lt, ge, le, pr)",
            ));
        };
        self.pos += 1;
        let op = match op.to_ascii_lowercase().as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "lt" => Op::Lt,
            "ge" => Op::Ge,
            "le" => Op::Le,
            other => return Err(err(at, format!("unknown operator {other:?}"))),
        };
        let at = self.at();
        let value = match self.peek().cloned() {
            Some(Tok::Str(s)) => Value::String(s),
            Some(Tok::Num(n)) => serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| err(at, "invalid number"))?,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
            _ => {
                return Err(err(
                    at,
                    "expected a value (string, number, true, false or null)",
                ));
            }
        };
        self.pos += 1;
        Ok(Filter::Compare(path, op, value))
    }
}

/// `urn:...:User:userName` → `username`; `name.givenName` → (`name`, `givenname`).
fn parse_attr_path(w: &str) -> Option<AttrPath> {
    let local = if w.to_ascii_lowercase().starts_with("urn:") {
        w.rsplit(':').next()?
    } else {
        w
    };
    let mut parts = local.split('.');
    let name = parts.next()?.to_ascii_lowercase();
    let sub = parts.next().map(str::to_ascii_lowercase);
    if parts.next().is_some() || name.is_empty() || sub.as_deref() == Some("") {
        return None;
    }
    let ok = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
    };
    if !ok(&name) || !sub.as_deref().is_none_or(ok) {
        return None;
    }
    Some(AttrPath { name, sub })
}

/// Parses a filter.
pub fn parse(s: &str) -> Result<Filter, FilterError> {
    if s.len() > MAX_LEN {
        return Err(err(MAX_LEN, "filter longer than 4096 bytes"));
    }
    let toks = lex(s)?;
    if toks.is_empty() {
        return Err(err(0, "empty filter"));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: s.len(),
        depth: 0,
    };
    let f = p.or()?;
    if p.pos != p.toks.len() {
        return Err(err(p.at(), "unexpected text after the filter"));
    }
    Ok(f)
}

/// Looks up an attribute case-insensitively.
fn get<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The values an attribute path reaches (multi-valued attributes fan out; a bare multi-valued
/// complex attribute compares on its `value` sub-attribute, as RFC 7644 says).
fn values<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let Some(top) = get(resource, &path.name) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match top {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    items
        .into_iter()
        .filter_map(|v| match (&path.sub, v) {
            (Some(sub), v) => get(v, sub),
            (None, Value::Object(_)) => get(v, "value"),
            (None, v) => Some(v),
        })
        .collect()
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Strings compare case-insensitively (caseExact is false for the attributes we expose);
/// timestamps are RFC 3339 strings in UTC, so they order correctly as strings.
fn compare(actual: &Value, op: Op, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            let (a, e) = (a.to_lowercase(), e.to_lowercase());
            match op {
                Op::Eq => a == e,
                Op::Ne => a != e,
                Op::Co => a.contains(&e),
                Op::Sw => a.starts_with(&e),
                Op::Ew => a.ends_with(&e),
                Op::Gt => a > e,
                Op::Lt => a < e,
                Op::Ge => a >= e,
                Op::Le => a <= e,
            }
        }
        (Value::Number(a), Value::Number(e)) => {
            let ord = a.as_f64().partial_cmp(&e.as_f64());
            match op {
                Op::Eq => ord == Some(Ordering::Equal),
                Op::Ne => ord != Some(Ordering::Equal),
                Op::Gt => ord == Some(Ordering::Greater),
                Op::Lt => ord == Some(Ordering::Less),
                Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                _ => false,
            }
        }
        (Value::Bool(a), Value::Bool(e)) => match op {
            Op::Eq => a == e,
            Op::Ne => a != e,
            _ => false,
        },
        (a, Value::Null) => match op {
            Op::Eq => !present(a),
            Op::Ne => present(a),
            _ => false,
        },
        _ => op == Op::Ne,
    }
}

impl Filter {
    /// Does `resource` (a SCIM resource as JSON) match?
    pub fn matches(&self, resource: &Value) -> bool {
        match self {
            Filter::Present(p) => values(resource, p).into_iter().any(present),
            Filter::Compare(p, op, v) => {
                let vals = values(resource, p);
                if vals.is_empty() {
                    // An absent attribute "ne" anything, and "eq null".
                    return matches!(op, Op::Ne) && !v.is_null() || (*op == Op::Eq && v.is_null());
                }
                match op {
                    // ne: no value equals.
                    Op::Ne => !vals.iter().any(|a| compare(a, Op::Eq, v)),
                    _ => vals.iter().any(|a| compare(a, *op, v)),
                }
            }
            Filter::ValuePath(p, inner) => match get(resource, &p.name) {
                Some(Value::Array(items)) => items.iter().any(|item| inner.matches(item)),
                Some(item @ Value::Object(_)) => inner.matches(item),
                _ => false,
            },
            Filter::Not(f) => !f.matches(resource),
            Filter::And(a, b) => a.matches(resource) && b.matches(resource),
            Filter::Or(a, b) => a.matches(resource) || b.matches(resource),
        }
    }
}

#[cfg(test)]
mod tests;
