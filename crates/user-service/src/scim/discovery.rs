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

/// The resource types, each as its own document (`/ResourceTypes/{id}`).
fn resource_type_documents() -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "schema": USER,
            "meta": {"resourceType": "ResourceType"}
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Members get the tenant role the group is named after (Admin, Billing Admin, Member, Viewer)",
            "schema": GROUP,
            "meta": {"resourceType": "ResourceType"}
        }),
    ]
}

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// The schemas, each as its own document (`/Schemas/{id}`).
fn schema_documents() -> Vec<Value> {
    let attr = |name: &str, ty: &str, required: bool, uniqueness: &str| {
        json!({"name": name, "type": ty, "multiValued": false, "required": required,
               "caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": uniqueness})
    };
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": USER,
            "name": "User",
            "attributes": [
                attr("userName", "string", true, "server"),
                attr("displayName", "string", false, "none"),
                attr("active", "boolean", false, "none"),
                attr("externalId", "string", false, "server"),
                {"name": "name", "type": "complex", "multiValued": false, "required": false,
                 "mutability": "readWrite", "returned": "default",
                 "subAttributes": [attr("givenName", "string", false, "none"), attr("familyName", "string", false, "none")]},
                {"name": "emails", "type": "complex", "multiValued": true, "required": false,
                 "mutability": "readWrite", "returned": "default",
                 "subAttributes": [attr("value", "string", false, "server"), attr("type", "string", false, "none"), attr("primary", "boolean", false, "none")]}
            ],
            "meta": {"resourceType": "Schema"}
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": GROUP,
            "name": "Group",
            "attributes": [
                attr("displayName", "string", true, "server"),
                attr("externalId", "string", false, "server"),
                {"name": "members", "type": "complex", "multiValued": true, "required": false,
                 "mutability": "readWrite", "returned": "default",
                 "subAttributes": [
                    {"name": "value", "type": "string", "multiValued": false, "required": false,
                     "caseExact": true, "mutability": "immutable", "returned": "default", "uniqueness": "none"},
                    {"name": "$ref", "type": "reference", "referenceTypes": ["User"], "multiValued": false,
                     "required": false, "caseExact": true, "mutability": "immutable", "returned": "default", "uniqueness": "none"},
                    {"name": "display", "type": "string", "multiValued": false, "required": false,
                     "caseExact": false, "mutability": "readOnly", "returned": "default", "uniqueness": "none"},
                    {"name": "type", "type": "string", "canonicalValues": ["User"], "multiValued": false,
                     "required": false, "caseExact": false, "mutability": "immutable", "returned": "default",
                     "uniqueness": "none"}
                 ]}
            ],
            "meta": {"resourceType": "Schema"}
        }),
    ]
}

fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": resources.len(),
        "itemsPerPage": resources.len(),
        "startIndex": 1,
        "Resources": resources,
    })
}

/// The one document of `docs` with this `id` (RFC 7644 §4: each is addressable).
fn by_id(docs: Vec<Value>, id: &str) -> Option<Value> {
    docs.into_iter().find(|d| d["id"] == id)
}

pub(super) fn resource_types() -> Value {
    list(resource_type_documents())
}

pub(super) fn resource_type(id: &str) -> Option<Value> {
    by_id(resource_type_documents(), id)
}

pub(super) fn schemas() -> Value {
    list(schema_documents())
}

pub(super) fn schema(id: &str) -> Option<Value> {
    by_id(schema_documents(), id)
}
