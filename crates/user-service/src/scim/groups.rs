//! SCIM Groups: a group named after a tenant role grants it to its members.

use platform::events::enqueue;
use rpc::user::v1::ScimResponse;
use serde_json::{Value, json};
use sqlx::PgPool;

use ids::{GroupId, TenantId, UserId};

use super::{ListQuery, db, respond};
use crate::domain::scim::ScimError;
use crate::domain::scim::group;
use crate::domain::scim::user::etag;
use crate::store::{groups, scim_filter, users};

pub(super) fn render_group(row: &groups::GroupRow, base: &str) -> (Value, String) {
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

pub(super) async fn find_group(
    pool: &PgPool,
    tenant: &TenantId,
    id: &str,
) -> Result<groups::GroupRow, ScimError> {
    let id = GroupId::parse(id).map_err(|_| ScimError::not_found("Group"))?;
    let mut conn = pool.acquire().await.map_err(db)?;
    groups::get(&mut conn, tenant, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| ScimError::not_found("Group"))
}

pub(super) async fn list_groups(
    pool: &PgPool,
    tenant: &TenantId,
    base: &str,
    query: &str,
) -> Result<ScimResponse, ScimError> {
    let q = ListQuery::parse(query)?;
    let (offset, limit) = q.window();
    // Filters run in SQL: only the page is read.
    let filter = |first| {
        q.filter
            .as_ref()
            .map(|f| scim_filter::groups(f, base, first))
    };
    q.sql_page(
        groups::count(pool, tenant, filter(2).as_ref()).await,
        groups::window(pool, tenant, filter(4).as_ref(), offset, limit).await,
        |g| render_group(g, base).0,
    )
}

pub(super) async fn create_group(
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

pub(super) fn dedup(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids.dedup();
    ids
}

/// Stores the membership (and the roles it grants) and tells billing and others which users
/// changed, through `user.updated` events in the same transaction.
pub(super) async fn apply_members(
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

pub(super) async fn write_group(
    pool: &PgPool,
    tenant: &TenantId,
    base: &str,
    id: &str,
    if_match: Option<&str>,
    change: group::GroupChange,
) -> Result<ScimResponse, ScimError> {
    let id = GroupId::parse(id).map_err(|_| ScimError::not_found("Group"))?;
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

pub(super) async fn delete_group(
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
