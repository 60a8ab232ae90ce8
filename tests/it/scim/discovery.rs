//! Discovery documents by id and searches by POST (RFC 7644 §3.4.3, §4).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;

/// RFC 7644 §4: each schema and resource type is addressable; §3.4.3: searches by POST at
/// `/Users/.search`, `/Groups/.search` and the root answer as their GET forms do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_by_id_and_searches_by_post() {
    let stack = Stack::start().await;
    let (_, _, scim) = setup(&stack, "search-co").await;
    // What the ServiceProviderConfig says is unsupported answers 501 with a SCIM Error.
    for (method, path) in [(Method::POST, "/Bulk"), (Method::GET, "/Me")] {
        let (s, e, _) = scim
            .call(method, path, Some(json!({"schemas": []})), &[])
            .await;
        assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{path}: {e}");
        assert_eq!(e["status"], "501", "{e}");
    }
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
