//! SCIM Users: read, list with filter, create, replace or patch (with ETags), delete; every
//! change enqueues its `user.*` event in the same transaction.

use platform::events::enqueue;
use rpc::user::v1::ScimResponse;
use serde_json::Value;
use sqlx::PgPool;

use ids::{TenantId, UserId};

use super::{ListQuery, db, respond};
use crate::domain::UserStatus;
use crate::domain::scim::ScimError;
use crate::domain::scim::user::{ScimUser, Stored, etag, to_json};
use crate::store::{scim_filter, users};

pub(super) fn scim_user(row: &users::UserRow) -> ScimUser {
    ScimUser {
        user_name: row.user_name.clone(),
        external_id: row.external_id.clone(),
        given_name: row.given_name.clone(),
        family_name: row.family_name.clone(),
        display_name: row.display_name.clone(),
        email: row.email.clone(),
        email_type: row.email_type.clone(),
        email_primary: row.email_primary,
        active: row
            .active_assigned
            .then_some(row.status == UserStatus::Active),
    }
}

pub(super) fn render(row: &users::UserRow, base: &str) -> (Value, String) {
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

pub(super) async fn find(
    pool: &PgPool,
    tenant: &TenantId,
    id: &str,
) -> Result<users::UserRow, ScimError> {
    let id = UserId::parse(id).map_err(|_| ScimError::not_found("User"))?;
    let mut conn = pool.acquire().await.map_err(db)?;
    users::get(&mut conn, tenant, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| ScimError::not_found("User"))
}

pub(super) async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    base: &str,
    query: &str,
) -> Result<ScimResponse, ScimError> {
    let q = ListQuery::parse(query)?;
    let (offset, limit) = q.window();
    // Filters run in SQL: only the page is read, however big the tenant.
    let filter = |first| {
        q.filter
            .as_ref()
            .map(|f| scim_filter::users(f, base, first))
    };
    q.sql_page(
        users::count(pool, tenant, filter(2).as_ref()).await,
        users::window(pool, tenant, filter(4).as_ref(), offset, limit).await,
        |r| render(r, base).0,
    )
}

pub(super) fn fields(u: &ScimUser) -> users::ScimFields<'_> {
    users::ScimFields {
        user_name: &u.user_name,
        email: &u.email,
        email_type: &u.email_type,
        email_primary: u.email_primary,
        display_name: &u.display_name,
        given_name: &u.given_name,
        family_name: &u.family_name,
        external_id: u.external_id.as_deref(),
        active: u.is_active(),
        active_assigned: u.active.is_some(),
    }
}

pub(super) async fn create(
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
pub(super) async fn write(
    pool: &PgPool,
    tenant: &TenantId,
    base: &str,
    id: &str,
    if_match: Option<&str>,
    change: impl FnOnce(ScimUser) -> Result<ScimUser, ScimError>,
) -> Result<ScimResponse, ScimError> {
    let id = UserId::parse(id).map_err(|_| ScimError::not_found("User"))?;
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

pub(super) async fn delete(
    pool: &PgPool,
    tenant: &TenantId,
    id: &str,
) -> Result<ScimResponse, ScimError> {
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
