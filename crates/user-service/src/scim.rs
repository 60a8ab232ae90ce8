//! The SCIM 2.0 endpoint (`/scim/v2/...`, forwarded by the gateway as raw HTTP): bearer-token
//! authentication per tenant, Users (list with filter and paging, get, create, replace, patch,
//! delete), discovery documents, and SCIM-shaped errors.
//!
//! Filters are evaluated on the tenant's users (or groups) in memory (up to [`MAX_SCAN`]);
//! that covers identity providers' typical calls (`userName eq "..."`) for tenants of that
//! size, and is the honest limit until filters are translated to SQL. Groups grant the role
//! they are named after (see `domain::scim::group`).

use platform::events::enqueue;
use rpc::user::v1::{ScimRequest, ScimResponse};
use serde_json::{Value, json};
use sqlx::PgPool;

use ids::{GroupId, TenantId, UserId};

use crate::domain::UserStatus;
use crate::domain::scim::ScimError;
use crate::domain::scim::filter;
use crate::domain::scim::group;
use crate::domain::scim::user::{ScimUser, Stored, etag, to_json};
use crate::domain::secrets;
use crate::store::{self, groups, scim_tokens, users};

/// Users a filter is evaluated over, at most.
pub const MAX_SCAN: i64 = 10_000;
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
        ("GET", ["Schemas"]) => Ok(respond(200, Some(schemas()), &[])),
        ("GET", ["Users"]) => list(pool, &tenant, &base, &req.query).await,
        ("POST", ["Users"]) => create(pool, &tenant, &base, &body_json(req)?).await,
        ("GET", ["Users", id]) => {
            let row = find(pool, &tenant, id).await?;
            let (v, tag) = render(&row, &base);
            if header(req, "if-none-match") == Some(tag.as_str()) {
                return Ok(respond(304, None, &[("etag", tag)]));
            }
            Ok(respond(200, Some(v), &[("etag", tag)]))
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
            let (v, tag) = render_group(&row, &base);
            if header(req, "if-none-match") == Some(tag.as_str()) {
                return Ok(respond(304, None, &[("etag", tag)]));
            }
            Ok(respond(200, Some(v), &[("etag", tag)]))
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
        (_, ["Users" | "Groups", ..])
        | (_, ["ServiceProviderConfig" | "ResourceTypes" | "Schemas"]) => {
            Err(ScimError::method(format!("{method} is not supported here")))
        }
        _ => Err(ScimError::not_found("endpoint")),
    }
}

fn scim_user(row: &users::UserRow) -> ScimUser {
    ScimUser {
        user_name: row.email.clone(),
        external_id: row.external_id.clone(),
        given_name: row.given_name.clone(),
        family_name: row.family_name.clone(),
        display_name: row.display_name.clone(),
        email: row.email.clone(),
        active: row.status == UserStatus::Active,
    }
}

fn render(row: &users::UserRow, base: &str) -> (Value, String) {
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let user = scim_user(row);
    let v = to_json(&Stored {
        id: row.id.as_str(),
        user: &user,
        version: row.version,
        created: &fmt(row.created_at),
        last_modified: &fmt(row.updated_at),
        location: format!("{base}/Users/{}", row.id),
    });
    (v, etag(row.version))
}

async fn find(pool: &PgPool, tenant: &TenantId, id: &str) -> Result<users::UserRow, ScimError> {
    let id = UserId::parse(id)
        .ok()
        .ok_or_else(|| ScimError::not_found("User"))?;
    let mut conn = pool.acquire().await.map_err(db)?;
    users::get(&mut conn, tenant, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| ScimError::not_found("User"))
}

async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    base: &str,
    query: &str,
) -> Result<ScimResponse, ScimError> {
    let rows = users::all(pool, tenant, MAX_SCAN).await.map_err(db)?;
    page(rows.iter().map(|r| render(r, base).0).collect(), query)
}

/// Filters rendered resources and answers one ListResponse page (`startIndex` is 1-based;
/// values below 1 mean 1, RFC 7644 §3.4.2.4).
fn page(resources: Vec<Value>, query: &str) -> Result<ScimResponse, ScimError> {
    let params = query_params(query);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let filter = match get("filter") {
        Some(f) => Some(filter::parse(f).map_err(|e| ScimError::invalid_filter(e.to_string()))?),
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
    let start = num("startIndex", 1)?.max(1);
    let count = num("count", 100)?.min(1000);
    let matching: Vec<Value> = resources
        .into_iter()
        .filter(|v| filter.as_ref().is_none_or(|f| f.matches(v)))
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching.into_iter().skip(start - 1).take(count).collect();
    Ok(respond(
        200,
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        })),
        &[],
    ))
}

fn fields(u: &ScimUser) -> users::ScimFields<'_> {
    users::ScimFields {
        email: &u.email,
        display_name: &u.display_name,
        given_name: &u.given_name,
        family_name: &u.family_name,
        external_id: u.external_id.as_deref(),
        active: u.active,
    }
}

async fn create(
    pool: &PgPool,
    tenant: &TenantId,
    base: &str,
    body: &Value,
) -> Result<ScimResponse, ScimError> {
    let user = ScimUser::from_json(body)?;
    let id = UserId::generate();
    let mut tx = pool.begin().await.map_err(db)?;
    users::insert_scim(&mut tx, tenant, &id, &fields(&user))
        .await
        .map_err(db)?;
    let row = users::get(&mut tx, tenant, &id)
        .await
        .map_err(db)?
        .ok_or_else(ScimError::internal)?;
    enqueue(&mut tx, &crate::events::user_event("user.created", &row))
        .await
        .map_err(|_| ScimError::internal())?;
    tx.commit().await.map_err(db)?;
    let (v, tag) = render(&row, base);
    let location = v["meta"]["location"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(respond(
        201,
        Some(v),
        &[("etag", tag), ("location", location)],
    ))
}

/// Replace or patch under the row lock, honouring If-Match.
async fn write(
    pool: &PgPool,
    tenant: &TenantId,
    base: &str,
    id: &str,
    if_match: Option<&str>,
    change: impl FnOnce(ScimUser) -> Result<ScimUser, ScimError>,
) -> Result<ScimResponse, ScimError> {
    let id = UserId::parse(id)
        .ok()
        .ok_or_else(|| ScimError::not_found("User"))?;
    let mut tx = pool.begin().await.map_err(db)?;
    if !users::lock(&mut tx, tenant, &id).await.map_err(db)? {
        return Err(ScimError::not_found("User"));
    }
    let before = users::get(&mut tx, tenant, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| ScimError::not_found("User"))?;
    if let Some(tag) = if_match
        && tag != "*"
        && tag != etag(before.version)
    {
        return Err(ScimError::precondition());
    }
    let updated = change(scim_user(&before))?;
    users::replace_scim(&mut tx, tenant, &id, &fields(&updated))
        .await
        .map_err(db)?;
    let row = users::get(&mut tx, tenant, &id)
        .await
        .map_err(db)?
        .ok_or_else(ScimError::internal)?;
    let kind = match (before.status, row.status) {
        (UserStatus::Active, UserStatus::Deactivated) => "user.deactivated",
        (UserStatus::Deactivated, UserStatus::Active) => "user.reactivated",
        _ => "user.updated",
    };
    enqueue(&mut tx, &crate::events::user_event(kind, &row))
        .await
        .map_err(|_| ScimError::internal())?;
    tx.commit().await.map_err(db)?;
    let (v, tag) = render(&row, base);
    Ok(respond(200, Some(v), &[("etag", tag)]))
}

async fn delete(pool: &PgPool, tenant: &TenantId, id: &str) -> Result<ScimResponse, ScimError> {
    let row = find(pool, tenant, id).await?;
    let mut tx = pool.begin().await.map_err(db)?;
    if !users::delete(&mut tx, tenant, &row.id).await.map_err(db)? {
        return Err(ScimError::not_found("User"));
    }
    // Seats follow active users: a deleted active user is a deactivation for billing.
    if row.status == UserStatus::Active {
        enqueue(
            &mut tx,
            &crate::events::user_event("user.deactivated", &row),
        )
        .await
        .map_err(|_| ScimError::internal())?;
    }
    enqueue(&mut tx, &crate::events::user_event("user.deleted", &row))
        .await
        .map_err(|_| ScimError::internal())?;
    tx.commit().await.map_err(db)?;
    Ok(respond(204, None, &[]))
}

fn service_provider_config() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://docs.saas-platform.dev/scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": 1000},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A per-tenant SCIM token created with POST /v1/tenants/{tenant_id}/scim_tokens",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig"}
    })
}

fn resource_types() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 2,
        "Resources": [{
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "schema": "urn:ietf:params:scim:schemas:core:2.0:User",
            "meta": {"resourceType": "ResourceType"}
        }, {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Members get the tenant role the group is named after (Admin, Billing Admin, Member, Viewer)",
            "schema": "urn:ietf:params:scim:schemas:core:2.0:Group",
            "meta": {"resourceType": "ResourceType"}
        }]
    })
}

fn schemas() -> Value {
    let attr = |name: &str, ty: &str, required: bool, uniqueness: &str| {
        json!({"name": name, "type": ty, "multiValued": false, "required": required,
               "caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": uniqueness})
    };
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 1,
        "Resources": [{
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": "urn:ietf:params:scim:schemas:core:2.0:User",
            "name": "User",
            "attributes": [
                attr("userName", "string", true, "server"),
                attr("displayName", "string", false, "none"),
                attr("active", "boolean", false, "none"),
                attr("externalId", "string", false, "server"),
                {"name": "name", "type": "complex", "multiValued": false, "required": false,
                 "subAttributes": [attr("givenName", "string", false, "none"), attr("familyName", "string", false, "none")]},
                {"name": "emails", "type": "complex", "multiValued": true, "required": false,
                 "subAttributes": [attr("value", "string", false, "server"), attr("type", "string", false, "none"), attr("primary", "boolean", false, "none")]}
            ],
            "meta": {"resourceType": "Schema"}
        }]
    })
}

fn render_group(row: &groups::GroupRow, base: &str) -> (Value, String) {
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let members: Vec<Value> = row
        .members
        .iter()
        .map(|m| json!({"value": m, "$ref": format!("{base}/Users/{m}"), "type": "User"}))
        .collect();
    let mut v = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": row.id,
        "displayName": row.display_name,
        "members": members,
        "meta": {
            "resourceType": "Group",
            "created": fmt(row.created_at),
            "lastModified": fmt(row.updated_at),
            "location": format!("{base}/Groups/{}", row.id),
            "version": etag(row.version),
        }
    });
    if let Some(x) = &row.external_id {
        v["externalId"] = json!(x);
    }
    (v, etag(row.version))
}

async fn find_group(
    pool: &PgPool,
    tenant: &TenantId,
    id: &str,
) -> Result<groups::GroupRow, ScimError> {
    let id = GroupId::parse(id)
        .ok()
        .ok_or_else(|| ScimError::not_found("Group"))?;
    let mut conn = pool.acquire().await.map_err(db)?;
    groups::get(&mut conn, tenant, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| ScimError::not_found("Group"))
}

async fn list_groups(
    pool: &PgPool,
    tenant: &TenantId,
    base: &str,
    query: &str,
) -> Result<ScimResponse, ScimError> {
    let rows = groups::all(pool, tenant, MAX_SCAN).await.map_err(db)?;
    let rendered: Vec<Value> = rows.iter().map(|g| render_group(g, base).0).collect();
    page(rendered, query)
}

async fn create_group(
    pool: &PgPool,
    tenant: &TenantId,
    base: &str,
    body: &Value,
) -> Result<ScimResponse, ScimError> {
    let change = group::from_json(body)?;
    let name = change.display_name.clone().unwrap_or_default();
    let external = change.external_id.clone().flatten();
    let role = group::role_for(&name).map(|r| r.as_str());
    let id = GroupId::generate();
    let mut tx = pool.begin().await.map_err(db)?;
    groups::insert(&mut tx, &id, tenant, &name, external.as_deref(), role)
        .await
        .map_err(db)?;
    let members = dedup(change.set_members.unwrap_or_default());
    apply_members(&mut tx, tenant, &id, &[], &members, role).await?;
    let row = groups::get(&mut tx, tenant, &id)
        .await
        .map_err(db)?
        .ok_or_else(ScimError::internal)?;
    tx.commit().await.map_err(db)?;
    let (v, tag) = render_group(&row, base);
    let location = v["meta"]["location"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(respond(
        201,
        Some(v),
        &[("etag", tag), ("location", location)],
    ))
}

fn dedup(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids.dedup();
    ids
}

/// Stores the membership (and the roles it grants) and tells billing and others which users
/// changed, through `user.updated` events in the same transaction.
async fn apply_members(
    tx: &mut sqlx::PgConnection,
    tenant: &TenantId,
    group_id: &GroupId,
    before: &[String],
    after: &[String],
    role: Option<&str>,
) -> Result<(), ScimError> {
    let unknown = groups::set_members(tx, tenant, group_id, after, role)
        .await
        .map_err(db)?;
    if !unknown.is_empty() {
        return Err(ScimError::invalid_value(format!(
            "members are not users of this tenant: {}",
            unknown.join(", ")
        )));
    }
    let changed = before
        .iter()
        .filter(|m| !after.contains(m))
        .chain(after.iter().filter(|m| !before.contains(m)));
    for uid in changed.filter_map(|u| UserId::parse(u).ok()) {
        if let Some(row) = users::get(tx, tenant, &uid).await.map_err(db)? {
            enqueue(tx, &crate::events::user_event("user.updated", &row))
                .await
                .map_err(|_| ScimError::internal())?;
        }
    }
    Ok(())
}

async fn write_group(
    pool: &PgPool,
    tenant: &TenantId,
    base: &str,
    id: &str,
    if_match: Option<&str>,
    change: group::GroupChange,
) -> Result<ScimResponse, ScimError> {
    let id = GroupId::parse(id)
        .ok()
        .ok_or_else(|| ScimError::not_found("Group"))?;
    let mut tx = pool.begin().await.map_err(db)?;
    if !groups::lock(&mut tx, tenant, &id).await.map_err(db)? {
        return Err(ScimError::not_found("Group"));
    }
    let before = groups::get(&mut tx, tenant, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| ScimError::not_found("Group"))?;
    if let Some(tag) = if_match
        && tag != "*"
        && tag != etag(before.version)
    {
        return Err(ScimError::precondition());
    }
    let name = change
        .display_name
        .unwrap_or_else(|| before.display_name.clone());
    let external = change
        .external_id
        .unwrap_or_else(|| before.external_id.clone());
    let mut members = change.set_members.unwrap_or_else(|| before.members.clone());
    members.extend(change.add_members);
    members.retain(|m| !change.remove_members.contains(m));
    let members = dedup(members);
    let role = group::role_for(&name).map(|r| r.as_str());
    groups::update(&mut tx, &id, &name, external.as_deref(), role)
        .await
        .map_err(db)?;
    apply_members(&mut tx, tenant, &id, &before.members, &members, role).await?;
    let row = groups::get(&mut tx, tenant, &id)
        .await
        .map_err(db)?
        .ok_or_else(ScimError::internal)?;
    tx.commit().await.map_err(db)?;
    let (v, tag) = render_group(&row, base);
    Ok(respond(200, Some(v), &[("etag", tag)]))
}

async fn delete_group(
    pool: &PgPool,
    tenant: &TenantId,
    id: &str,
) -> Result<ScimResponse, ScimError> {
    let row = find_group(pool, tenant, id).await?;
    let mut tx = pool.begin().await.map_err(db)?;
    apply_members(&mut tx, tenant, &row.id, &row.members, &[], None).await?;
    if !groups::delete(&mut tx, tenant, &row.id).await.map_err(db)? {
        return Err(ScimError::not_found("Group"));
    }
    tx.commit().await.map_err(db)?;
    Ok(respond(204, None, &[]))
}
