//! SCIM 2.0 through the gateway, as Okta and Entra ID drive it.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::stack::{Stack, token};

struct Scim {
    http: Client,
    base: String,
    token: String,
    token_id: String,
}

impl Scim {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .request(method, format!("{}/scim/v2{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }
}

/// A tenant with a SCIM token; returns (tenant id, owner token, SCIM client).
async fn setup(stack: &Stack, slug: &str) -> (String, String, Scim) {
    let http = Client::new();
    let admin = token("ten_platform", "operator", &["platform_admin"]);
    let t: Value = http
        .post(stack.url("/v1/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"name": slug, "slug": slug}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant = t["id"].as_str().unwrap().to_string();
    let owner = token(&tenant, "owner", &["owner"]);
    let resp = http
        .post(stack.url(&format!("/v1/tenants/{tenant}/scim_tokens")))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let tok: Value = resp.json().await.unwrap();
    let scim = Scim {
        http,
        base: stack.url(""),
        token: tok["secret"].as_str().unwrap().to_string(),
        token_id: tok["id"].as_str().unwrap().to_string(),
    };
    assert!(scim.token.starts_with("scim_"));
    (tenant, owner, scim)
}

fn okta_user(email: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"primary": true, "value": email, "type": "work"}],
        "displayName": "Jane Doe",
        "locale": "en-US",
        "externalId": format!("00u-{}", email.to_lowercase()),
        "groups": [],
        "password": "ignored-by-us",
        "active": true
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_provisioning_flow() {
    let stack = Stack::start().await;
    let (tenant, owner, scim) = setup(&stack, "okta-co").await;

    let (s, spc, _) = scim
        .call(Method::GET, "/ServiceProviderConfig", None, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(spc["patch"]["supported"], true);
    let (s, _, _) = scim.call(Method::GET, "/Schemas", None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = scim.call(Method::GET, "/ResourceTypes", None, &[]).await;
    assert_eq!(s, StatusCode::OK);

    // Okta first looks the user up, then creates it.
    let lookup = "/Users?filter=userName%20eq%20%22jane%40okta.example%22&startIndex=1&count=100";
    let (s, list, _) = scim.call(Method::GET, lookup, None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["totalResults"], 0);
    let (s, created, headers) = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("jane@okta.example")),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(headers["content-type"], "application/scim+json");
    let id = created["id"].as_str().unwrap().to_string();
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/scim/v2/Users/{id}"))
    );
    assert_eq!(created["name"]["givenName"], "Jane");
    assert_eq!(created["externalId"], "00u-jane@okta.example");
    let etag1 = headers["etag"].to_str().unwrap().to_string();

    let (s, list, _) = scim.call(Method::GET, lookup, None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["id"], id);

    // The same user again: a uniqueness conflict.
    let (s, e, _) = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("JANE@okta.example")),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(e["scimType"], "uniqueness");

    // Okta deactivates with a path-less replace.
    let (s, u, headers) = scim
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": false}}]
            })),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["active"], false);
    assert_ne!(headers["etag"].to_str().unwrap(), etag1);

    // The REST API sees the same user, deactivated.
    let rest: Value = scim
        .http
        .get(stack.url(&format!("/v1/tenants/{tenant}/users/{id}")))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["status"], "deactivated");

    // A PUT with a stale ETag is refused; with the current one it applies.
    let (s, _, _) = scim
        .call(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(okta_user("jane@okta.example")),
            &[("if-match", &etag1)],
        )
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (s, u, _) = scim
        .call(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(okta_user("jane@okta.example")),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(u["active"], true);

    let (s, _, _) = scim
        .call(Method::DELETE, &format!("/Users/{id}"), None, &[])
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e, _) = scim
        .call(Method::GET, &format!("/Users/{id}"), None, &[])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        e["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_patches_filters_errors_and_isolation() {
    let stack = Stack::start().await;
    let (tenant_a, owner_a, a) = setup(&stack, "entra-a").await;
    let (_, _, b) = setup(&stack, "entra-b").await;
    let (_, created, _) = a
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("amy@a.example")),
            &[],
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    for i in 0..4 {
        a.call(
            Method::POST,
            "/Users",
            Some(okta_user(&format!("u{i}@a.example"))),
            &[],
        )
        .await;
    }

    // Entra ID: capitalised ops, string booleans, paths.
    let (s, u, _) = a
        .call(Method::PATCH, &format!("/Users/{id}"), Some(json!({"Operations": [
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "name.givenName", "value": "Amelia"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "amelia@a.example"}
        ]})), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(
        (
            u["active"].as_bool(),
            u["name"]["givenName"].as_str(),
            u["emails"][0]["value"].as_str()
        ),
        (Some(false), Some("Amelia"), Some("amelia@a.example"))
    );

    // Filters and paging.
    let (_, list, _) = a.call(Method::GET, "/Users?filter=emails%20co%20%22%40a.example%22%20and%20active%20eq%20true&count=2&startIndex=2", None, &[]).await;
    assert_eq!(list["totalResults"], 4);
    assert_eq!(list["itemsPerPage"], 2);
    assert_eq!(list["startIndex"], 2);
    let (s, e, _) = a
        .call(
            Method::GET,
            "/Users?filter=userName%20zz%20%22x%22",
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["scimType"], "invalidFilter");
    let (s, e, _) = a
        .call(Method::POST, "/Users", Some(json!({"userName": ""})), &[])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["scimType"], "invalidValue");
    let (s, groups, _) = a.call(Method::GET, "/Groups", None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(groups["totalResults"], 0);

    // Tenant B's token sees nothing of A.
    let (s, _, _) = b
        .call(Method::GET, &format!("/Users/{id}"), None, &[])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = b
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": [{"op": "replace", "value": {"active": true}}]})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list, _) = b.call(Method::GET, "/Users", None, &[]).await;
    assert_eq!(list["totalResults"], 0);

    // No token, a wrong token, and a revoked token: 401.
    let anon = Scim {
        http: Client::new(),
        base: a.base.clone(),
        token: "scim_wrong".into(),
        token_id: String::new(),
    };
    let (s, e, _) = anon.call(Method::GET, "/Users", None, &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(e["status"], "401");
    // Revoking the token through the REST API shuts the identity provider out.
    let s = a
        .http
        .delete(stack.url(&format!(
            "/v1/tenants/{tenant_a}/scim_tokens/{}",
            a.token_id
        )))
        .bearer_auth(&owner_a)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = a.call(Method::GET, "/Users", None, &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_grant_the_role_they_are_named_after() {
    let stack = Stack::start().await;
    let (tenant, owner, scim) = setup(&stack, "groups-co").await;
    let (_, _, other) = setup(&stack, "groups-other").await;
    let mut ids = Vec::new();
    for who in ["ann@g.example", "bob@g.example"] {
        let (s, u, _) = scim
            .call(Method::POST, "/Users", Some(okta_user(who)), &[])
            .await;
        assert_eq!(s, StatusCode::CREATED);
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    let (ann, bob) = (ids[0].clone(), ids[1].clone());
    let roles = |uid: String| {
        let http = scim.http.clone();
        let url = stack.url(&format!("/v1/tenants/{tenant}/users/{uid}"));
        let owner = owner.clone();
        async move {
            let u: Value = http
                .get(url)
                .bearer_auth(owner)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            u["roles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };

    let (s, g, _) = scim
        .call(Method::POST, "/Groups", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Admin", "members": [{"value": ann}]})), &[])
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    assert_eq!(roles(ann.clone()).await, vec!["admin", "member"]);

    // Okta moves the role from Ann to Bob.
    let (s, g, _) = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
                    {"op": "add", "path": "members", "value": [{"value": bob}]},
                    {"op": "remove", "path": format!("members[value eq \"{ann}\"]")}
                ]}),
            ),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    assert_eq!(g["members"].as_array().unwrap().len(), 1);
    assert_eq!(roles(ann.clone()).await, vec!["member"]);
    assert_eq!(roles(bob.clone()).await, vec!["admin", "member"]);

    // A direct role change through the API keeps the group's grant.
    let s = scim
        .http
        .put(stack.url(&format!("/v1/tenants/{tenant}/users/{bob}/roles")))
        .bearer_auth(&owner)
        .json(&json!({"roles": ["viewer"]}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(roles(bob.clone()).await, vec!["admin", "viewer"]);

    // "Owner" is never granted through SCIM; other tenants' users cannot be members.
    let (s, _, _) = scim
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Owner", "members": [{"value": ann}]})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(!roles(ann.clone()).await.contains(&"owner".to_string()));
    let (_, foreign, _) = other
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("zed@other.example")),
            &[],
        )
        .await;
    let (s, e, _) = scim
        .call(Method::PATCH, &format!("/Groups/{gid}"), Some(json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": foreign["id"]}]}]})), &[])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, _, _) = other
        .call(Method::GET, &format!("/Groups/{gid}"), None, &[])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (_, found, _) = scim
        .call(
            Method::GET,
            "/Groups?filter=displayName%20eq%20%22admin%22",
            None,
            &[],
        )
        .await;
    assert_eq!(found["totalResults"], 1);

    let (s, _, _) = scim
        .call(Method::DELETE, &format!("/Groups/{gid}"), None, &[])
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(roles(bob.clone()).await, vec!["viewer"]);
    stack.stop().await;
}

mod conformance;
mod discovery;
mod filters;
