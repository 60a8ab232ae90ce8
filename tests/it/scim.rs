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

/// RFC 7644 §4: each schema and resource type is addressable; §3.4.3: searches by POST at
/// `/Users/.search`, `/Groups/.search` and the root answer as their GET forms do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_by_id_and_searches_by_post() {
    let stack = Stack::start().await;
    let (_, _, scim) = setup(&stack, "search-co").await;
    let (s, schemas, _) = scim.call(Method::GET, "/Schemas", None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = schemas["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let (user_urn, group_urn) = (
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:core:2.0:Group",
    );
    assert_eq!(ids, [user_urn, group_urn]);
    assert_eq!(schemas["totalResults"], 2);
    for urn in [user_urn, group_urn] {
        let (s, one, _) = scim
            .call(Method::GET, &format!("/Schemas/{urn}"), None, &[])
            .await;
        assert_eq!(
            (s, one["id"].as_str()),
            (StatusCode::OK, Some(urn)),
            "{one}"
        );
    }
    for id in ["User", "Group"] {
        let (s, one, _) = scim
            .call(Method::GET, &format!("/ResourceTypes/{id}"), None, &[])
            .await;
        assert_eq!((s, one["id"].as_str()), (StatusCode::OK, Some(id)), "{one}");
    }
    let (s, e, headers) = scim.call(Method::GET, "/Schemas/urn:nope", None, &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        e["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(headers["content-type"], "application/scim+json");

    let (s, ann, _) = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("ann@s.example")),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ann}");
    scim.call(
        Method::POST,
        "/Users",
        Some(okta_user("bob@s.example")),
        &[],
    )
    .await;
    let (s, group, _) = scim
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [group_urn], "displayName": "Viewer"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{group}");
    let search = |filter: &str| {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": filter,
            "startIndex": 1,
            "count": 10
        })
    };
    let (s, found, _) = scim
        .call(
            Method::POST,
            "/Users/.search",
            Some(search("userName eq \"ann@s.example\"")),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["id"], ann["id"]);
    let (s, found, _) = scim
        .call(
            Method::POST,
            "/Groups/.search",
            Some(search("displayName eq \"Viewer\"")),
            &[],
        )
        .await;
    assert_eq!(
        (s, found["totalResults"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (_, groups, _) = scim.call(Method::GET, "/Groups?count=0", None, &[]).await;
    assert_eq!(groups["totalResults"], 1);
    assert_eq!(groups["Resources"], json!([]));
    let (_, groups, _) = scim.call(Method::GET, "/Groups", None, &[]).await;
    assert_eq!(groups["Resources"][0]["displayName"], "Viewer", "{groups}");
    // At the root: users and groups together.
    let (s, all, _) = scim
        .call(
            Method::POST,
            "/.search",
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]})),
            &[],
        )
        .await;
    assert_eq!(
        (s, all["totalResults"].as_u64()),
        (StatusCode::OK, Some(3)),
        "{all}"
    );
    // attributes / excludedAttributes shape what comes back, by id, in lists and searches;
    // id and schemas come always.
    let id = ann["id"].as_str().unwrap();
    let (s, only, _) = scim
        .call(
            Method::GET,
            &format!("/Users/{id}?attributes=userName,name.givenName"),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(only["userName"], "ann@s.example");
    assert_eq!(only["name"], json!({"givenName": "Jane"}));
    assert_eq!(only["id"], ann["id"]);
    assert!(
        only.get("emails").is_none() && only.get("active").is_none(),
        "{only}"
    );
    let (_, list, _) = scim
        .call(
            Method::GET,
            "/Users?excludedAttributes=name,emails",
            None,
            &[],
        )
        .await;
    for r in list["Resources"].as_array().unwrap() {
        assert!(r.get("name").is_none() && r.get("emails").is_none(), "{r}");
        assert!(r.get("userName").is_some());
    }
    let mut narrow = search("userName eq \"bob@s.example\"");
    narrow["attributes"] = json!(["active"]);
    let (_, found, _) = scim
        .call(Method::POST, "/Users/.search", Some(narrow), &[])
        .await;
    let bob = &found["Resources"][0];
    assert_eq!(bob["active"], true);
    assert!(bob.get("userName").is_none(), "{bob}");

    // A user name need not be an e-mail: such a user has none, and names are unique in the
    // tenant regardless of case.
    let emp = json!({"schemas": [user_urn], "userName": "EMP-0042", "displayName": "Emp"});
    let (s, created, _) = scim.call(Method::POST, "/Users", Some(emp), &[]).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["userName"], "EMP-0042");
    assert!(created.get("emails").is_none(), "{created}");
    let again = json!({"schemas": [user_urn], "userName": "emp-0042"});
    let (s, e, _) = scim.call(Method::POST, "/Users", Some(again), &[]).await;
    assert_eq!(
        (s, e["scimType"].as_str()),
        (StatusCode::CONFLICT, Some("uniqueness")),
        "{e}"
    );
    // Plain pages come straight from SQL in id (creation) order; count=0 only counts.
    let (s, second, _) = scim
        .call(Method::GET, "/Users?startIndex=2&count=1", None, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            second["totalResults"].as_u64(),
            second["itemsPerPage"].as_u64()
        ),
        (Some(3), Some(1)),
        "{second}"
    );
    assert_eq!(second["Resources"][0]["userName"], "bob@s.example");
    let (_, none, _) = scim.call(Method::GET, "/Users?count=0", None, &[]).await;
    assert_eq!(none["totalResults"], 3);
    assert_eq!(none["Resources"], json!([]));
    // The userName lookup is case-insensitive (userName is not caseExact).
    let (_, hit, _) = scim
        .call(
            Method::GET,
            "/Users?filter=userName%20eq%20%22emp-0042%22",
            None,
            &[],
        )
        .await;
    assert_eq!(hit["totalResults"], 1, "{hit}");
    assert_eq!(hit["Resources"][0]["userName"], "EMP-0042");

    // The edge's own refusals under /scim/v2 are SCIM errors too (here: no credentials).
    let resp = scim
        .http
        .get(format!("{}/scim/v2/Users", scim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["content-type"], "application/scim+json");
    let e: Value = resp.json().await.unwrap();
    assert_eq!(
        (e["schemas"][0].as_str(), e["status"].as_str()),
        (
            Some("urn:ietf:params:scim:api:messages:2.0:Error"),
            Some("401")
        ),
        "{e}"
    );

    // A body that is not a SearchRequest is a SCIM error naming it.
    let (s, e, _) = scim
        .call(
            Method::POST,
            "/Users/.search",
            Some(json!({"filter": "x"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["scimType"], "invalidSyntax", "{e}");
    stack.stop().await;
}

/// The independent SCIM 2.0 conformance suite (installed by `cargo xtask test`; its Python in
/// `SCIM_TESTER_PYTHON`) runs discovery, CRUD, PATCH and search checks for Users and Groups
/// against the gateway, to the end, with no check breaking a MUST of the RFCs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_conformance_suite_runs_to_the_end() {
    let python = std::env::var("SCIM_TESTER_PYTHON").expect(
        "SCIM_TESTER_PYTHON names a Python with scim2-tester; `cargo xtask test` installs it",
    );
    // The suite sends a few hundred requests in a burst; limits are not what it checks.
    let stack = Stack::start_with(&[
        ("RATE_LIMIT_CALLER_PER_SEC", "1000000"),
        ("RATE_LIMIT_CALLER_BURST", "1000000"),
        ("RATE_LIMIT_TENANT_PER_SEC", "1000000"),
        ("RATE_LIMIT_TENANT_BURST", "1000000"),
    ])
    .await;
    let (_, _, scim) = setup(&stack, "conformance-co").await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scim/conformance.py");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        tokio::process::Command::new(&python)
            .arg(&script)
            .env("SCIM_URL", format!("{}/scim/v2", scim.base))
            .env("SCIM_TOKEN", &scim.token)
            .output(),
    )
    .await
    .expect("the suite finished within 5 minutes")
    .expect("the suite ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no summary line\nstdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let failures: Vec<&str> = summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    eprintln!("{stdout}");
    assert_eq!(failures, Vec::<&str>::new(), "{stdout}");
    // Every check succeeded: none skipped, none a deviation or a warning.
    let counts = summary["counts"].as_object().unwrap();
    let other: Vec<&String> = counts.keys().filter(|k| *k != "SUCCESS").collect();
    assert!(
        other.is_empty(),
        "checks that did not succeed: {other:?}\n{stdout}"
    );
    let passed = counts["SUCCESS"].as_u64().unwrap_or(0);
    assert!(passed >= 69, "{passed} checks passed: {stdout}");
    stack.stop().await;
}

/// `meta.location` and `Location` are built on `PUBLIC_URL`, never on a client's
/// `X-Forwarded-Proto`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_use_the_configured_public_url() {
    let stack = Stack::start_with(&[("PUBLIC_URL", "https://id.example.test/")]).await;
    let (_, _, scim) = setup(&stack, "public-co").await;
    let (s, u, headers) = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("pub@p.example")),
            &[("x-forwarded-proto", "gopher"), ("host", "evil.example")],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let expected = format!(
        "https://id.example.test/scim/v2/Users/{}",
        u["id"].as_str().unwrap()
    );
    assert_eq!(u["meta"]["location"], expected.as_str());
    assert_eq!(headers["location"], expected.as_str());
    stack.stop().await;

    // Unset: plain http and the request's host; the client's X-Forwarded-Proto is ignored.
    let stack = Stack::start().await;
    let (_, _, scim) = setup(&stack, "dev-co").await;
    let (_, u, _) = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("dev@p.example")),
            &[("x-forwarded-proto", "https")],
        )
        .await;
    let location = u["meta"]["location"].as_str().unwrap();
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    stack.stop().await;
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// User filters run in SQL; over users that differ in every attribute a filter can name,
/// each filter selects exactly the users the reference evaluator (the in-memory one over
/// the users' SCIM JSON) selects, and pages count the matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_filters_in_sql_select_what_the_reference_evaluator_selects() {
    use user_service::domain::scim::filter;

    let stack = Stack::start().await;
    let (_, _, scim) = setup(&stack, "filters-co").await;
    let bodies = [
        okta_user("Alice@Example.com"),
        json!({"userName": "EMP-0042", "displayName": "Łukasz Żółć",
               "name": {"givenName": "Łukasz", "familyName": "Żółć"}}),
        json!({"userName": "Ωmega", "active": false,
               "emails": [{"value": "omega@ex.example", "type": "home", "primary": false}]}),
        json!({"userName": "bob_%", "displayName": "50% off_deal\\", "externalId": "b-1"}),
        json!({"userName": "carol@c.example", "name": {"familyName": "Doe"},
               "emails": [{"value": "carol@c.example"}]}),
        json!({"userName": "dave@d.example", "displayName": "Dave"}),
    ];
    let mut ids = Vec::new();
    for b in bodies {
        let (s, u, _) = scim.call(Method::POST, "/Users", Some(b), &[]).await;
        assert_eq!(s, StatusCode::CREATED, "{u}");
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    // Dave's `active` is removed: unassigned.
    let (s, _, _) = scim
        .call(
            Method::PATCH,
            &format!("/Users/{}", ids[5]),
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "remove", "path": "active"}]})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, all, _) = scim.call(Method::GET, "/Users?count=100", None, &[]).await;
    let all = all["Resources"].as_array().unwrap().clone();
    assert_eq!(all.len(), 6);

    let filters = [
        r#"userName eq "alice@example.com""#,
        r#"userName ne "alice@example.com""#,
        r#"userName co "EX""#,
        r#"userName sw "emp""#,
        r#"userName ew ".COM""#,
        r#"userName gt "b""#,
        r#"userName ge "bob_%""#,
        r#"userName lt "c""#,
        r#"userName le "emp-0042""#,
        r#"userName gt "ω""#,
        "userName eq null",
        "userName ne null",
        "userName pr",
        "userName eq true",
        "userName ne 1",
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "A""#,
        r#"displayName co "%""#,
        r#"displayName co "_deal\\""#,
        r#"displayName sw "łukasz""#,
        "displayName pr",
        "not (displayName pr)",
        "externalId pr",
        r#"externalId eq "00u-alice@example.com""#,
        r#"externalId ne "b-1""#,
        r#"name.givenName eq "jane""#,
        "name.familyName pr",
        "name pr",
        r#"name.formatted eq "x""#,
        r#"name[givenName sw "ł"]"#,
        r#"name[familyName eq "doe" and givenName eq "jane"]"#,
        "emails pr",
        r#"emails eq "alice@example.com""#,
        r#"emails.value ew "example""#,
        r#"emails.type eq "home""#,
        "emails.primary eq false",
        "emails.primary ne true",
        r#"emails[type eq "work" and value co "alice"]"#,
        r#"emails[type eq "work"].value eq "alice@example.com""#,
        "emails[primary eq true]",
        "emails[not (type pr)]",
        "active eq true",
        "active eq false",
        "active ne true",
        "active pr",
        "not (active pr)",
        r#"active eq "true""#,
        "active eq null",
        r#"meta.resourceType eq "User""#,
        r#"meta.created gt "2000-01-01T00:00:00Z""#,
        r#"meta.lastModified lt "2000""#,
        r#"meta.version sw "w/""#,
        r#"meta.location co "/Users/usr_""#,
        r#"meta[resourceType eq "User" and created pr]"#,
        r#"schemas eq "urn:ietf:params:scim:schemas:core:2.0:User""#,
        r#"schemas[value eq "x"]"#,
        "id pr",
        r#"id sw "usr_""#,
        r#"nickName eq "x""#,
        r#"nickName ne "x""#,
        r#"(userName sw "a" or userName sw "b") and not (active eq false)"#,
        r#"userName sw "d" or emails.type eq "home" or name.familyName eq "DOE""#,
    ];
    for f in filters {
        let parsed = filter::parse(f).unwrap();
        let want: Vec<&str> = all
            .iter()
            .filter(|u| parsed.matches(u))
            .map(|u| u["id"].as_str().unwrap())
            .collect();
        let (s, page, _) = scim
            .call(
                Method::GET,
                &format!("/Users?count=100&filter={}", encode(f)),
                None,
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{f}: {page}");
        let got: Vec<&str> = page["Resources"]
            .as_array()
            .map(|r| r.iter().map(|u| u["id"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(got, want, "{f}");
        assert_eq!(page["totalResults"], want.len(), "{f}");
    }
    // A filtered page: the count is of all matches, the page is the window of them.
    let f = encode(r#"userName ne "nobody""#);
    let (_, page, _) = scim
        .call(
            Method::GET,
            &format!("/Users?filter={f}&startIndex=2&count=2"),
            None,
            &[],
        )
        .await;
    assert_eq!(page["totalResults"], 6);
    let got: Vec<&Value> = page["Resources"].as_array().unwrap().iter().collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["id"], all[1]["id"]);
    assert_eq!(got[1]["id"], all[2]["id"]);
    stack.stop().await;
}
