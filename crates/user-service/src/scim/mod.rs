//! The SCIM 2.0 endpoint (`/scim/v2/...`, forwarded by the gateway as raw HTTP): bearer-token
//! authentication per tenant, Users (list with filter and paging, get, create, replace, patch,
//! delete), discovery documents, and SCIM-shaped errors.
//!
//! Lists and searches run in SQL, filters included (`store::scim_filter`, which means what
//! the reference evaluator `domain::scim::filter` means): a call reads one page, however many
//! users or groups the tenant has. Groups grant the role they are named after (see
//! `domain::scim::group`).

use rpc::user::v1::{ScimRequest, ScimResponse};
use serde_json::{Value, json};
use sqlx::PgPool;

use ids::TenantId;

use crate::domain::scim::ScimError;
use crate::domain::scim::projection::project;
use crate::domain::scim::user::ScimUser;
use crate::domain::scim::{filter, group};
use crate::domain::secrets;
use crate::store::{self, scim_filter, scim_tokens};

mod discovery;
mod groups;
mod users;

use discovery::{resource_type, resource_types, schema, schemas, service_provider_config};
use groups::{create_group, delete_group, find_group, list_groups, render_group, write_group};
use users::{create, delete, find, list, render, write};

const MEDIA: &str = "application/scim+json";

fn header<'a>(req: &'a ScimRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn respond(status: u16, body: Option<Value>, extra: &[(&str, String)]) -> ScimResponse {
    let mut headers: std::collections::HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    if body.is_some() {
        headers.insert("content-type".into(), MEDIA.into());
    }
    ScimResponse {
        status: u32::from(status),
        body: body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default(),
        headers,
    }
}

fn error(e: ScimError) -> ScimResponse {
    respond(e.status, Some(e.to_json()), &[])
}

/// Handles one SCIM request.
pub async fn handle(pool: &PgPool, req: ScimRequest) -> ScimResponse {
    match route(pool, &req).await {
        Ok(r) => r,
        Err(e) => error(e),
    }
}

fn db(e: sqlx::Error) -> ScimError {
    if store::is_unique_violation(&e) {
        ScimError::uniqueness("a user with this userName, e-mail or externalId already exists")
    } else if matches!(&e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("22")))
    {
        ScimError::invalid_value("a value cannot be stored")
    } else {
        tracing::error!(error = %e, "SCIM database error");
        ScimError::internal()
    }
}

async fn authenticate(pool: &PgPool, req: &ScimRequest) -> Result<TenantId, ScimError> {
    let token = header(req, "authorization")
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| t.starts_with("scim_") && t.len() < 200)
        .ok_or_else(ScimError::unauthorized)?;
    scim_tokens::tenant_of(pool, &secrets::hash(token))
        .await
        .map_err(db)?
        .ok_or_else(ScimError::unauthorized)
}

fn query_params(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.trim_start_matches('?').as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn body_json(req: &ScimRequest) -> Result<Value, ScimError> {
    serde_json::from_slice(&req.body)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not JSON: {e}")))
}

async fn route(pool: &PgPool, req: &ScimRequest) -> Result<ScimResponse, ScimError> {
    let segments: Vec<&str> = req
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = req.method.to_ascii_uppercase();
    // Discovery documents are public per RFC 7644 §4, but served only behind the token too,
    // which every identity provider sends anyway.
    let tenant = authenticate(pool, req).await?;
    let base = format!(
        "{}://{}/scim/v2",
        header(req, "x-forwarded-proto").unwrap_or("http"),
        header(req, "host").unwrap_or("localhost")
    );
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["ServiceProviderConfig"]) => {
            Ok(respond(200, Some(service_provider_config()), &[]))
        }
        ("GET", ["ResourceTypes"]) => Ok(respond(200, Some(resource_types()), &[])),
        ("GET", ["ResourceTypes", id]) => resource_type(id)
            .map(|d| respond(200, Some(d), &[]))
            .ok_or_else(|| ScimError::not_found("ResourceType")),
        ("GET", ["Schemas"]) => Ok(respond(200, Some(schemas()), &[])),
        ("GET", ["Schemas", id]) => schema(id)
            .map(|d| respond(200, Some(d), &[]))
            .ok_or_else(|| ScimError::not_found("Schema")),
        // Searches by POST (RFC 7644 §3.4.3): the body's parameters, answered as the GET form.
        ("POST", ["Users", ".search"]) => list(pool, &tenant, &base, &search_query(req)?).await,
        ("POST", ["Groups", ".search"]) => {
            list_groups(pool, &tenant, &base, &search_query(req)?).await
        }
        ("POST", [".search"]) => search_all(pool, &tenant, &base, &search_query(req)?).await,
        ("GET", ["Users"]) => list(pool, &tenant, &base, &req.query).await,
        ("POST", ["Users"]) => create(pool, &tenant, &base, &body_json(req)?).await,
        ("GET", ["Users", id]) => {
            let row = find(pool, &tenant, id).await?;
            one(req, render(&row, &base))
        }
        ("PUT", ["Users", id]) => {
            let body = body_json(req)?;
            let user = ScimUser::from_json(&body)?;
            write(pool, &tenant, &base, id, header(req, "if-match"), |_| {
                Ok(user)
            })
            .await
        }
        ("PATCH", ["Users", id]) => {
            let body = body_json(req)?;
            write(
                pool,
                &tenant,
                &base,
                id,
                header(req, "if-match"),
                |current| current.patch(&body),
            )
            .await
        }
        ("DELETE", ["Users", id]) => delete(pool, &tenant, id).await,
        ("GET", ["Groups"]) => list_groups(pool, &tenant, &base, &req.query).await,
        ("POST", ["Groups"]) => create_group(pool, &tenant, &base, &body_json(req)?).await,
        ("GET", ["Groups", id]) => {
            let row = find_group(pool, &tenant, id).await?;
            one(req, render_group(&row, &base))
        }
        ("PUT", ["Groups", id]) => {
            let change = group::from_json(&body_json(req)?)?;
            write_group(pool, &tenant, &base, id, header(req, "if-match"), change).await
        }
        ("PATCH", ["Groups", id]) => {
            let change = group::from_patch(&body_json(req)?)?;
            write_group(pool, &tenant, &base, id, header(req, "if-match"), change).await
        }
        ("DELETE", ["Groups", id]) => delete_group(pool, &tenant, id).await,
        // Operations the ServiceProviderConfig says are not supported (RFC 7644 §3.7, §3.11,
        // §3.12): 501, not a missing endpoint.
        (_, ["Bulk"]) => Err(ScimError::not_implemented(
            "bulk operations are not supported",
        )),
        (_, ["Me", ..]) => Err(ScimError::not_implemented(
            "/Me is not supported: a SCIM token authenticates a tenant, not a user",
        )),
        (_, ["Users" | "Groups", ..])
        | (_, ["ServiceProviderConfig" | "ResourceTypes" | "Schemas"]) => {
            Err(ScimError::method(format!("{method} is not supported here")))
        }
        _ => Err(ScimError::not_found("endpoint")),
    }
}

/// One resource read by id: 304 when the client's ETag is current, else the resource with
/// the `attributes`/`excludedAttributes` the query asks for.
fn one(req: &ScimRequest, (mut v, tag): (Value, String)) -> Result<ScimResponse, ScimError> {
    if header(req, "if-none-match") == Some(tag.as_str()) {
        return Ok(respond(304, None, &[("etag", tag)]));
    }
    let params = query_params(&req.query);
    project(
        &mut v,
        param(&params, "attributes"),
        param(&params, "excludedAttributes"),
    );
    Ok(respond(200, Some(v), &[("etag", tag)]))
}

/// A query parameter by name (case-insensitive, as SCIM's are).
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A `.search` body (`SearchRequest`) as the query string its GET form takes.
fn search_query(req: &ScimRequest) -> Result<String, ScimError> {
    const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
    let body = body_json(req)?;
    let Some(fields) = body.as_object() else {
        return Err(ScimError::invalid_syntax(
            "the body must be a SearchRequest object",
        ));
    };
    if !body["schemas"]
        .as_array()
        .is_some_and(|s| s.iter().any(|v| v == SEARCH))
    {
        return Err(ScimError::invalid_syntax(format!(
            "schemas must contain {SEARCH}"
        )));
    }
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            // attributes / excludedAttributes: comma-separated in the GET form.
            Value::Array(items) if k != "schemas" => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ScimError::invalid_value(format!("{k} must list strings")))?
                .join(","),
            _ => continue,
        };
        q.append_pair(k, &text);
    }
    Ok(q.finish())
}

/// A search at the root: Users and Groups together, one filter and one paging over both
/// (users first, then groups, each in id order), each read in SQL.
async fn search_all(
    pool: &PgPool,
    tenant: &TenantId,
    base: &str,
    query: &str,
) -> Result<ScimResponse, ScimError> {
    let q = ListQuery::parse(query)?;
    let (offset, limit) = q.window();
    let users = |first| {
        q.filter
            .as_ref()
            .map(|f| scim_filter::users(f, base, first))
    };
    let groups = |first| {
        q.filter
            .as_ref()
            .map(|f| scim_filter::groups(f, base, first))
    };
    let user_total = store::users::count(pool, tenant, users(2).as_ref())
        .await
        .map_err(db)?;
    let group_total = store::groups::count(pool, tenant, groups(2).as_ref())
        .await
        .map_err(db)?;
    let user_rows = store::users::window(pool, tenant, users(4).as_ref(), offset, limit)
        .await
        .map_err(db)?;
    // The groups' part of the window: what is left of it after the users.
    let group_offset = (offset - user_total).max(0);
    let group_limit = limit - user_rows.len() as i64;
    let group_rows = if group_limit > 0 {
        store::groups::window(pool, tenant, groups(4).as_ref(), group_offset, group_limit)
            .await
            .map_err(db)?
    } else {
        Vec::new()
    };
    let page = user_rows
        .iter()
        .map(|u| render(u, base).0)
        .chain(group_rows.iter().map(|g| render_group(g, base).0))
        .collect();
    let total = usize::try_from(user_total + group_total).unwrap_or(0);
    Ok(q.respond(total, page))
}

/// A list or search request's parameters (RFC 7644 §3.4.2).
struct ListQuery {
    filter: Option<filter::Filter>,
    /// 1-based; values below 1 mean 1 (§3.4.2.4).
    start: usize,
    count: usize,
    attributes: Option<String>,
    excluded: Option<String>,
}

/// Most resources one page holds (`count` above it is lowered to it).
const MAX_PAGE: usize = 1000;

impl ListQuery {
    fn parse(query: &str) -> Result<ListQuery, ScimError> {
        let params = query_params(query);
        let get = |k: &str| param(&params, k);
        let filter = match get("filter") {
            Some(f) => {
                Some(filter::parse(f).map_err(|e| ScimError::invalid_filter(e.to_string()))?)
            }
            None => None,
        };
        let num = |k: &str, default: usize| -> Result<usize, ScimError> {
            match get(k) {
                None => Ok(default),
                Some(v) => v
                    .parse::<i64>()
                    .map(|n| n.max(0) as usize)
                    .map_err(|_| ScimError::invalid_value(format!("{k} must be an integer"))),
            }
        };
        Ok(ListQuery {
            start: num("startIndex", 1)?.max(1),
            count: num("count", 100)?.min(MAX_PAGE),
            attributes: get("attributes").map(str::to_string),
            excluded: get("excludedAttributes").map(str::to_string),
            filter,
        })
    }

    /// The (offset, limit) of this query's page, for SQL.
    fn window(&self) -> (i64, i64) {
        (self.start as i64 - 1, self.count as i64)
    }

    /// A page without a filter, straight from SQL: `total` counts the tenant's resources and
    /// `rows` is [`window`](Self::window) of them.
    fn sql_page<R>(
        &self,
        total: Result<i64, sqlx::Error>,
        rows: Result<Vec<R>, sqlx::Error>,
        render: impl Fn(&R) -> Value,
    ) -> Result<ScimResponse, ScimError> {
        let total = usize::try_from(total.map_err(db)?).unwrap_or(0);
        let page = rows.map_err(db)?.iter().map(render).collect();
        Ok(self.respond(total, page))
    }

    /// One ListResponse: `page` already cut to this query's window, `total` matches overall.
    fn respond(&self, total: usize, mut page: Vec<Value>) -> ScimResponse {
        for v in &mut page {
            project(v, self.attributes.as_deref(), self.excluded.as_deref());
        }
        respond(
            200,
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": total,
                "startIndex": self.start,
                "itemsPerPage": page.len(),
                "Resources": page,
            })),
            &[],
        )
    }
}
