//! SCIM filters (RFC 7644 §3.4.2.2) over `users` as SQL, so a filtered list reads only the
//! matching page however big the tenant.
//!
//! The SQL means exactly what `domain::scim::filter` means over a user's SCIM JSON (the
//! evaluator Groups still use): an attribute the JSON leaves out is *absent* — it `ne`
//! anything but `null` and `eq null` — strings compare case-insensitively (Postgres' `lower`
//! in the database's locale), ordering compares them byte by byte (`COLLATE "C"`), and a
//! comparison of different types is false except `ne`. Attributes a user never has are
//! constants. `tests/it/scim.rs` checks the two agree over a set of users and filters.
//!
//! Values travel as bind parameters; only column names and fixed SQL are written in.

use serde_json::{Value, json};

use crate::domain::scim::filter::{AttrPath, Filter, Op};

/// A `WHERE` condition over `users u` and the text parameters it binds, `$first` onwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlFilter {
    pub sql: String,
    pub params: Vec<String>,
}

/// `filter` over the users table; `base` is the SCIM base URL (`meta.location`).
pub fn users(filter: &Filter, base: &str, first: usize) -> SqlFilter {
    let mut b = Builder {
        params: Vec::new(),
        first,
        base,
    };
    let sql = b.filter(filter, Ctx::User);
    SqlFilter {
        sql,
        params: b.params,
    }
}

/// Where an attribute path is looked up: the user, or inside one of its complex attributes
/// (a `valuePath`'s brackets), or in something that has no attributes (a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    User,
    Email,
    Name,
    Meta,
    Nothing,
}

/// What a path reaches: a column expression and the condition under which the attribute is
/// in the JSON at all, a value the same for every user, or nothing.
enum Field {
    Text { expr: String, present: String },
    Bool { expr: String, present: String },
    Const(Value),
    Absent,
}

const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const HAS_EMAIL: &str = "u.email <> ''";
const HAS_NAME: &str = "(u.given_name <> '' OR u.family_name <> '')";

fn text(expr: &str, present: &str) -> Field {
    Field::Text {
        expr: expr.into(),
        present: present.into(),
    }
}

fn timestamp(column: &str) -> Field {
    text(
        &format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"),
        "TRUE",
    )
}

struct Builder<'a> {
    params: Vec<String>,
    first: usize,
    base: &'a str,
}

impl Builder<'_> {
    fn param(&mut self, value: String) -> String {
        self.params.push(value);
        format!("${}::text", self.first + self.params.len() - 1)
    }

    fn field(&mut self, ctx: Ctx, path: &AttrPath) -> Field {
        let sub = path.sub.as_deref();
        match (ctx, path.name.as_str(), sub) {
            (Ctx::User, "id", None) => text("u.id", "TRUE"),
            (Ctx::User, "username", None) => text("u.user_name", "u.user_name <> ''"),
            (Ctx::User, "externalid", None) => {
                text("u.external_id", "u.external_id IS NOT NULL")
            }
            (Ctx::User, "displayname", None) => text("u.display_name", "u.display_name <> ''"),
            (Ctx::User, "active", None) => Field::Bool {
                expr: "u.status = 'active'".into(),
                present: "u.active_assigned".into(),
            },
            (Ctx::User, "schemas", None) => Field::Const(json!([SCHEMA])),
            // A bare multi-valued complex attribute compares on its `value`.
            (Ctx::User, "emails", None | Some("value")) => text("u.email", HAS_EMAIL),
            (Ctx::User, "emails", Some("type")) => text("u.email_type", HAS_EMAIL),
            (Ctx::User, "emails", Some("primary")) => Field::Bool {
                expr: "u.email_primary".into(),
                present: HAS_EMAIL.into(),
            },
            (Ctx::User, "name", Some(s)) => self.field(Ctx::Name, &leaf(s)),
            (Ctx::User, "meta", Some(s)) => self.field(Ctx::Meta, &leaf(s)),
            (Ctx::Email, "value", None) => text("u.email", "TRUE"),
            (Ctx::Email, "type", None) => text("u.email_type", "u.email_type <> ''"),
            (Ctx::Email, "primary", None) => Field::Bool {
                expr: "u.email_primary".into(),
                present: "TRUE".into(),
            },
            (Ctx::Name, "givenname", None) => text("u.given_name", "u.given_name <> ''"),
            (Ctx::Name, "familyname", None) => text("u.family_name", "u.family_name <> ''"),
            (Ctx::Meta, "resourcetype", None) => Field::Const(json!("User")),
            (Ctx::Meta, "created", None) => timestamp("u.created_at"),
            (Ctx::Meta, "lastmodified", None) => timestamp("u.updated_at"),
            (Ctx::Meta, "location", None) => {
                let base = self.param(format!("{}/Users/", self.base));
                text(&format!("({base} || u.id)"), "TRUE")
            }
            (Ctx::Meta, "version", None) => text("('W/\"' || u.version || '\"')", "TRUE"),
            _ => Field::Absent,
        }
    }

    fn filter(&mut self, f: &Filter, ctx: Ctx) -> String {
        match f {
            Filter::Present(p) => match self.field(ctx, p) {
                Field::Text { present, .. } | Field::Bool { present, .. } => format!("({present})"),
                Field::Const(v) => constant(f, v),
                Field::Absent => "FALSE".into(),
            },
            Filter::Compare(p, op, v) => {
                let field = self.field(ctx, p);
                self.compare(f, field, *op, v)
            }
            Filter::ValuePath(p, inner) => match (ctx, p.name.as_str(), &p.sub) {
                (Ctx::User, "emails", None) => {
                    format!("({HAS_EMAIL} AND {})", self.filter(inner, Ctx::Email))
                }
                (Ctx::User, "name", None) => {
                    format!("({HAS_NAME} AND {})", self.filter(inner, Ctx::Name))
                }
                (Ctx::User, "meta", None) => self.filter(inner, Ctx::Meta),
                // `schemas` holds one string, which has no attributes.
                (Ctx::User, "schemas", None) => self.filter(inner, Ctx::Nothing),
                _ => "FALSE".into(),
            },
            Filter::Not(inner) => format!("(NOT {})", self.filter(inner, ctx)),
            Filter::And(a, b) => {
                format!("({} AND {})", self.filter(a, ctx), self.filter(b, ctx))
            }
            Filter::Or(a, b) => format!("({} OR {})", self.filter(a, ctx), self.filter(b, ctx)),
        }
    }

    fn compare(&mut self, f: &Filter, field: Field, op: Op, v: &Value) -> String {
        let (expr, present, is_text) = match field {
            Field::Absent => {
                let absent = (op == Op::Ne && !v.is_null()) || (op == Op::Eq && v.is_null());
                return sql_bool(absent);
            }
            Field::Const(c) => return constant(f, c),
            Field::Text { expr, present } => (expr, present, true),
            Field::Bool { expr, present } => (expr, present, false),
        };
        match (v, op) {
            (Value::Null, Op::Eq) => format!("(NOT {present})"),
            (Value::Null, Op::Ne) => format!("({present})"),
            (Value::Null, _) => "FALSE".into(),
            (Value::String(s), _) if is_text => {
                let lhs = format!("lower({expr})");
                let cond = match op {
                    Op::Eq => format!("{lhs} = lower({})", self.param(s.clone())),
                    Op::Ne => {
                        let rhs = self.param(s.clone());
                        return format!("(NOT {present} OR {lhs} <> lower({rhs}))");
                    }
                    Op::Co | Op::Sw | Op::Ew => {
                        let (pre, post) = match op {
                            Op::Co => ("'%' || ", " || '%'"),
                            Op::Sw => ("", " || '%'"),
                            _ => ("'%' || ", ""),
                        };
                        let rhs = self.param(escape_like(s));
                        format!("{lhs} LIKE {pre}lower({rhs}){post}")
                    }
                    Op::Gt | Op::Ge | Op::Lt | Op::Le => {
                        let sym = match op {
                            Op::Gt => ">",
                            Op::Ge => ">=",
                            Op::Lt => "<",
                            _ => "<=",
                        };
                        let rhs = self.param(s.clone());
                        format!("{lhs} COLLATE \"C\" {sym} lower({rhs}) COLLATE \"C\"")
                    }
                };
                format!("({present} AND {cond})")
            }
            (Value::Bool(b), Op::Eq) if !is_text => format!("({present} AND ({expr}) = {b})"),
            (Value::Bool(b), Op::Ne) if !is_text => format!("(NOT {present} OR ({expr}) <> {b})"),
            // Different types never compare equal, so only `ne` holds.
            (_, op) => sql_bool(op == Op::Ne),
        }
    }
}

fn leaf(name: &str) -> AttrPath {
    AttrPath {
        name: name.to_string(),
        sub: None,
    }
}

/// A comparison on a value every user has alike, decided by the evaluator itself.
fn constant(f: &Filter, value: Value) -> String {
    let (path, rewritten) = match f {
        Filter::Present(_) => (leaf("x"), Filter::Present(leaf("x"))),
        Filter::Compare(_, op, v) => (leaf("x"), Filter::Compare(leaf("x"), *op, v.clone())),
        _ => return "FALSE".into(),
    };
    sql_bool(rewritten.matches(&json!({ path.name: value })))
}

fn sql_bool(b: bool) -> String {
    if b { "TRUE" } else { "FALSE" }.into()
}

/// `s` as a literal inside a `LIKE` pattern (the default escape is `\`).
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scim::filter::parse;

    #[test]
    fn values_are_parameters_and_never_spliced() {
        let f = parse(r#"userName eq "x' OR 1=1 --" and emails co "50%_\\""#).unwrap();
        let sql = users(&f, "https://h/scim/v2", 4);
        assert!(!sql.sql.contains("OR 1=1"), "{}", sql.sql);
        assert_eq!(sql.params, ["x' OR 1=1 --", "50\\%\\_\\\\"]);
        assert!(sql.sql.contains("$4::text") && sql.sql.contains("$5::text"));
    }

    #[test]
    fn constants_and_absent_attributes_are_decided_here() {
        let sql = |f: &str| users(&parse(f).unwrap(), "b", 1).sql;
        assert_eq!(sql(r#"meta.resourceType eq "user""#), "TRUE");
        assert_eq!(sql(r#"schemas eq "urn:x""#), "FALSE");
        assert_eq!(sql(r#"nickName ne "x""#), "TRUE");
        assert_eq!(sql("nickName eq null"), "TRUE");
        assert_eq!(sql(r#"nickName eq "x""#), "FALSE");
        assert_eq!(sql("nickName pr"), "FALSE");
    }
}
