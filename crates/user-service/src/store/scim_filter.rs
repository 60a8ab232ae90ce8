//! SCIM filters (RFC 7644 §3.4.2.2) over users and groups as SQL, so a filtered list reads
//! only the matching page however big the tenant.
//!
//! The SQL means exactly what `domain::scim::filter` (the reference evaluator) means over a
//! resource's SCIM JSON: an attribute the JSON leaves out is *absent* — it `ne`
//! anything but `null` and `eq null` — strings compare case-insensitively (Postgres' `lower`
//! in the database's locale), ordering compares them byte by byte (`COLLATE "C"`), and a
//! comparison of different types is false except `ne`. A test on what every resource has
//! alike (`schemas`, `meta.resourceType`) is decided here; a multi-valued attribute (a group's members) matches when any value does.
//! `tests/it/scim.rs` checks the two agree over sets of users, groups and filters.
//!
//! Values travel as bind parameters; only column names and fixed SQL are written in.

use serde_json::{Value, json};

use crate::domain::scim::filter::{AttrPath, Filter, Op};

/// A `WHERE` condition over `users u` or `scim_groups g`, and the text parameters it binds,
/// `$first` onwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlFilter {
    pub sql: String,
    pub params: Vec<String>,
}

/// A list's condition and parameters: the filter's, or all rows.
pub fn condition(filter: Option<&SqlFilter>) -> (&str, &[String]) {
    filter.map_or(("TRUE", &[]), |f| (f.sql.as_str(), f.params.as_slice()))
}

/// How many of the tenant's rows in `from` (`users u` or `scim_groups g`, the alias being the
/// table's first letter) match `filter`, whose parameters start at `$2`.
pub async fn count(
    pool: &sqlx::PgPool,
    from: &str,
    tenant_id: &ids::TenantId,
    filter: Option<&SqlFilter>,
) -> Result<i64, sqlx::Error> {
    let alias = &from[from.len() - 1..];
    let (cond, params) = condition(filter);
    let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {from} WHERE {alias}.tenant_id = $1 AND {cond}"
    )))
    .bind(tenant_id);
    for p in params {
        q = q.bind(p);
    }
    q.fetch_one(pool).await
}

/// `filter` over the users table; `base` is the SCIM base URL (`meta.location`).
pub fn users(filter: &Filter, base: &str, first: usize) -> SqlFilter {
    build(filter, Ctx::User, base, first)
}

/// `filter` over the groups table (`scim_groups g`).
pub fn groups(filter: &Filter, base: &str, first: usize) -> SqlFilter {
    build(filter, Ctx::Group, base, first)
}

fn build(filter: &Filter, ctx: Ctx, base: &str, first: usize) -> SqlFilter {
    let mut b = Builder {
        params: Vec::new(),
        first,
        base,
    };
    let sql = b.filter(filter, ctx);
    SqlFilter {
        sql,
        params: b.params,
    }
}

/// Where an attribute path is looked up: a resource, or inside one of its complex
/// attributes (a `valuePath`'s brackets), or in something that has no attributes (a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    User,
    Email,
    Name,
    UserMeta,
    Group,
    Member,
    GroupMeta,
    Nothing,
}

/// What a path reaches.
enum Field {
    /// A text column expression; `in_json` says when the resource's JSON has the attribute
    /// (`pr` also needs it non-empty).
    Text {
        expr: String,
        in_json: String,
    },
    Bool {
        expr: String,
        in_json: String,
    },
    /// A value every resource has alike.
    Const(Value),
    /// One value per group member (`field`, in the member's context): any may match.
    Members(Box<Field>),
    Absent,
}

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const HAS_EMAIL: &str = "u.email <> ''";
const HAS_NAME: &str = "(u.given_name <> '' OR u.family_name <> '')";
const MEMBERS: &str = "scim_group_members m WHERE m.group_id = g.id";

fn text(expr: &str, in_json: &str) -> Field {
    Field::Text {
        expr: expr.into(),
        in_json: in_json.into(),
    }
}

fn boolean(expr: &str, in_json: &str) -> Field {
    Field::Bool {
        expr: expr.into(),
        in_json: in_json.into(),
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

    /// `base/<kind>/` || `id`, as `meta.location` and a member's `$ref` are built.
    fn location(&mut self, kind: &str, id: &str) -> Field {
        let base = self.param(format!("{}/{kind}/", self.base));
        text(&format!("({base} || {id})"), "TRUE")
    }

    fn field(&mut self, ctx: Ctx, path: &AttrPath) -> Field {
        let sub = path.sub.as_deref();
        match (ctx, path.name.as_str(), sub) {
            (Ctx::User, "id", None) => text("u.id", "TRUE"),
            (Ctx::User, "username", None) => text("u.user_name", "TRUE"),
            (Ctx::User, "externalid", None) => text("u.external_id", "u.external_id IS NOT NULL"),
            (Ctx::User, "displayname", None) => text("u.display_name", "u.display_name <> ''"),
            (Ctx::User, "active", None) => boolean("u.status = 'active'", "u.active_assigned"),
            (Ctx::User, "schemas", None) => Field::Const(json!([USER_SCHEMA])),
            // A bare multi-valued complex attribute compares on its `value`.
            (Ctx::User, "emails", None | Some("value")) => text("u.email", HAS_EMAIL),
            (Ctx::User, "emails", Some("type")) => text("u.email_type", HAS_EMAIL),
            (Ctx::User, "emails", Some("primary")) => boolean("u.email_primary", HAS_EMAIL),
            (Ctx::User, "name", Some(s)) => self.field(Ctx::Name, &leaf(s)),
            (Ctx::User, "meta", Some(s)) => self.field(Ctx::UserMeta, &leaf(s)),
            (Ctx::Email, "value", None) => text("u.email", "TRUE"),
            (Ctx::Email, "type", None) => text("u.email_type", "TRUE"),
            (Ctx::Email, "primary", None) => boolean("u.email_primary", "TRUE"),
            (Ctx::Name, "givenname", None) => text("u.given_name", "u.given_name <> ''"),
            (Ctx::Name, "familyname", None) => text("u.family_name", "u.family_name <> ''"),
            (Ctx::UserMeta, "resourcetype", None) => Field::Const(json!("User")),
            (Ctx::UserMeta, "created", None) => timestamp("u.created_at"),
            (Ctx::UserMeta, "lastmodified", None) => timestamp("u.updated_at"),
            (Ctx::UserMeta, "location", None) => self.location("Users", "u.id"),
            (Ctx::UserMeta, "version", None) => text("('W/\"' || u.version || '\"')", "TRUE"),
            (Ctx::Group, "id", None) => text("g.id", "TRUE"),
            (Ctx::Group, "displayname", None) => text("g.display_name", "TRUE"),
            (Ctx::Group, "externalid", None) => text("g.external_id", "g.external_id IS NOT NULL"),
            (Ctx::Group, "schemas", None) => Field::Const(json!([GROUP_SCHEMA])),
            (Ctx::Group, "members", None) => Field::Members(Box::new(text("m.user_id", "TRUE"))),
            (Ctx::Group, "members", Some(s)) => {
                Field::Members(Box::new(self.field(Ctx::Member, &leaf(s))))
            }
            (Ctx::Group, "meta", Some(s)) => self.field(Ctx::GroupMeta, &leaf(s)),
            (Ctx::Member, "value", None) => text("m.user_id", "TRUE"),
            (Ctx::Member, "$ref", None) => self.location("Users", "m.user_id"),
            (Ctx::Member, "type", None) => Field::Const(json!("User")),
            (Ctx::GroupMeta, "resourcetype", None) => Field::Const(json!("Group")),
            (Ctx::GroupMeta, "created", None) => timestamp("g.created_at"),
            (Ctx::GroupMeta, "lastmodified", None) => timestamp("g.updated_at"),
            (Ctx::GroupMeta, "location", None) => self.location("Groups", "g.id"),
            (Ctx::GroupMeta, "version", None) => text("('W/\"' || g.version || '\"')", "TRUE"),
            _ => Field::Absent,
        }
    }

    fn filter(&mut self, f: &Filter, ctx: Ctx) -> String {
        match f {
            Filter::Present(p) => {
                let field = self.field(ctx, p);
                present(field)
            }
            Filter::Compare(p, op, v) => {
                let field = self.field(ctx, p);
                self.compare(field, *op, v)
            }
            Filter::ValuePath(p, inner) => match (ctx, p.name.as_str(), &p.sub) {
                (Ctx::User, "emails", None) => {
                    format!("({HAS_EMAIL} AND {})", self.filter(inner, Ctx::Email))
                }
                (Ctx::User, "name", None) => {
                    format!("({HAS_NAME} AND {})", self.filter(inner, Ctx::Name))
                }
                (Ctx::User, "meta", None) => self.filter(inner, Ctx::UserMeta),
                (Ctx::Group, "members", None) => {
                    format!(
                        "EXISTS (SELECT 1 FROM {MEMBERS} AND {})",
                        self.filter(inner, Ctx::Member)
                    )
                }
                (Ctx::Group, "meta", None) => self.filter(inner, Ctx::GroupMeta),
                // `schemas` holds one string, which has no attributes.
                (Ctx::User | Ctx::Group, "schemas", None) => self.filter(inner, Ctx::Nothing),
                _ => "FALSE".into(),
            },
            Filter::Not(inner) => not(self.filter(inner, ctx)),
            Filter::And(a, b) => {
                format!("({} AND {})", self.filter(a, ctx), self.filter(b, ctx))
            }
            Filter::Or(a, b) => format!("({} OR {})", self.filter(a, ctx), self.filter(b, ctx)),
        }
    }

    /// `ne` is the negation of `eq` in every case (an absent attribute `ne` anything but
    /// null; a multi-valued one `ne` a value when none of its values equals it).
    fn compare(&mut self, field: Field, op: Op, v: &Value) -> String {
        if op == Op::Ne {
            return not(self.compare(field, Op::Eq, v));
        }
        match (field, v) {
            (Field::Absent, v) => sql_bool(op == Op::Eq && v.is_null()),
            (Field::Const(c), v) => constant(Filter::Compare(leaf("x"), op, v.clone()), c),
            (Field::Members(inner), Value::Null) if op == Op::Eq => {
                format!(
                    "(NOT EXISTS (SELECT 1 FROM {MEMBERS} AND {}))",
                    present(*inner)
                )
            }
            (Field::Members(inner), v) => {
                let cond = self.compare(*inner, op, v);
                format!("EXISTS (SELECT 1 FROM {MEMBERS} AND {cond})")
            }
            (field @ (Field::Text { .. } | Field::Bool { .. }), Value::Null) if op == Op::Eq => {
                format!("(NOT {})", present(field))
            }
            (Field::Text { expr, in_json }, Value::String(s)) => {
                let lhs = format!("lower({expr})");
                let cond = match op {
                    Op::Co | Op::Sw | Op::Ew => {
                        let (pre, post) = match op {
                            Op::Co => ("'%' || ", " || '%'"),
                            Op::Sw => ("", " || '%'"),
                            _ => ("'%' || ", ""),
                        };
                        let rhs = self.param(escape_like(s));
                        format!("{lhs} LIKE {pre}lower({rhs}){post}")
                    }
                    Op::Eq => format!("{lhs} = lower({})", self.param(s.clone())),
                    _ => {
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
                format!("({in_json} AND {cond})")
            }
            (Field::Bool { expr, in_json }, Value::Bool(b)) if op == Op::Eq => {
                format!("({in_json} AND ({expr}) = {b})")
            }
            // Different types, or an order on booleans or null: never true.
            _ => "FALSE".into(),
        }
    }
}

/// `pr`: the attribute is in the JSON with a value that is not empty.
fn present(field: Field) -> String {
    match field {
        Field::Text { expr, in_json } => format!("({in_json} AND {expr} <> '')"),
        Field::Bool { in_json, .. } => format!("({in_json})"),
        Field::Const(c) => constant(Filter::Present(leaf("x")), c),
        Field::Members(inner) => {
            format!("EXISTS (SELECT 1 FROM {MEMBERS} AND {})", present(*inner))
        }
        Field::Absent => "FALSE".into(),
    }
}

fn leaf(name: &str) -> AttrPath {
    AttrPath {
        name: name.to_string(),
        sub: None,
    }
}

/// A test on a value every resource has alike, decided by the evaluator itself.
fn constant(test: Filter, value: Value) -> String {
    sql_bool(test.matches(&json!({ "x": value })))
}

/// `NOT cond`, with a constant folded.
fn not(cond: String) -> String {
    match cond.as_str() {
        "TRUE" => "FALSE".into(),
        "FALSE" => "TRUE".into(),
        _ => format!("(NOT {cond})"),
    }
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
