//! The discovery documents (RFC 7644 §4): what the endpoint supports, its resource types and
//! their schemas.

use serde_json::{Value, json};

pub(super) fn service_provider_config() -> Value {
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

pub(super) fn resource_types() -> Value {
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

pub(super) fn schemas() -> Value {
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
