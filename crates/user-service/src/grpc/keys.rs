//! API keys: created with scopes the creator holds; the secret is shown once.

use platform::grpc::{Caller, timestamp};
use rpc::user::v1 as pb;

use crate::domain::{grants, secrets, validate};
use crate::error::UserError;
use crate::store::{api_keys, tenants};
use ids::ApiKeyId;

use super::{UserApi, scoped_tenant};

pub(crate) fn key_pb(k: api_keys::ApiKeyRow) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id.into(),
        tenant_id: k.tenant_id.into(),
        name: k.name,
        prefix: k.prefix,
        scopes: k.scopes,
        created_at: Some(timestamp(k.created_at)),
        revoked_at: k.revoked_at.map(timestamp),
        last_used_at: k.last_used_at.map(timestamp),
    }
}

impl UserApi {
    pub(super) async fn create_api_key_inner(
        &self,
        c: &Caller,
        r: pb::CreateApiKeyRequest,
    ) -> Result<pb::CreateApiKeyResponse, UserError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let name = validate::name("name", &r.name)?;
        let scopes = validate::scopes(&r.scopes)?;
        grants::scopes(c.permissions(), &scopes)?;
        if tenants::get(&self.pool, &tenant).await?.is_none() {
            return Err(UserError::NotFound("tenant"));
        }
        let secret = secrets::generate("sk_");
        let id = ApiKeyId::generate();
        let row = api_keys::insert(
            &self.pool,
            api_keys::NewKey {
                id: &id,
                tenant_id: &tenant,
                name: &name,
                prefix: &secrets::display_prefix(&secret),
                secret_hash: &secrets::hash(&secret),
                scopes: &scopes,
                created_by: &c.subject,
            },
        )
        .await?;
        Ok(pb::CreateApiKeyResponse {
            key: Some(key_pb(row)),
            secret,
        })
    }
}
