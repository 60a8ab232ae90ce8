//! Filters in SQL against the reference evaluator: Users, Groups and root searches.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;

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
async fn filters_in_sql_select_what_the_reference_evaluator_selects() {
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
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "remove", "path": "active"}]}),
            ),
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
    check_groups_and_root_search(&scim, &ids, &all).await;
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

/// The ids of the resources in a ListResponse.
fn listed(page: &Value) -> Vec<String> {
    page["Resources"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| x["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Group filters and root searches (Users and Groups together) against the reference
/// evaluator, as for users.
async fn check_groups_and_root_search(scim: &Scim, users: &[String], all_users: &[Value]) {
    use user_service::domain::scim::filter;

    let group = |name: &str, members: &[&String], external: Option<&str>| {
        let mut g = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                           "displayName": name,
                           "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>()});
        if let Some(x) = external {
            g["externalId"] = json!(x);
        }
        g
    };
    for body in [
        group("Admin", &[&users[0], &users[3]], None),
        group("Viewer", &[], Some("g-1")),
        group("Billing Admin", &[&users[5]], None),
    ] {
        let (s, g, _) = scim.call(Method::POST, "/Groups", Some(body), &[]).await;
        assert_eq!(s, StatusCode::CREATED, "{g}");
    }
    let (_, all_groups, _) = scim.call(Method::GET, "/Groups?count=100", None, &[]).await;
    let all_groups = all_groups["Resources"].as_array().unwrap().clone();
    assert_eq!(all_groups.len(), 3);
    let (alice, bob, dave) = (&users[0], &users[3], &users[5]);
    let filters = [
        r#"displayName eq "admin""#.to_string(),
        r#"displayName sw "B""#.into(),
        r#"displayName gt "b""#.into(),
        "displayName pr".into(),
        "externalId pr".into(),
        r#"externalId eq "G-1""#.into(),
        r#"externalId ne "g-1""#.into(),
        "members pr".into(),
        "not (members pr)".into(),
        format!(r#"members eq "{alice}""#),
        format!(r#"members ne "{alice}""#),
        format!(r#"members.value eq "{dave}""#),
        r#"members.type eq "User""#.into(),
        r#"members.display eq "x""#.into(),
        "members.display eq null".into(),
        "members eq null".into(),
        "members ne null".into(),
        r#"members.$ref co "/Users/usr_""#.into(),
        format!(r#"members[value eq "{bob}"]"#),
        r#"members[type eq "user" and value sw "usr_"]"#.into(),
        r#"meta.resourceType eq "Group""#.into(),
        r#"meta.location co "/Groups/""#.into(),
        r#"schemas eq "urn:ietf:params:scim:schemas:core:2.0:Group""#.into(),
        r#"userName eq "alice@example.com""#.into(),
        "id pr".into(),
    ];
    for f in &filters {
        let parsed = filter::parse(f).unwrap();
        let want: Vec<String> = all_groups
            .iter()
            .filter(|g| parsed.matches(g))
            .map(|g| g["id"].as_str().unwrap().to_string())
            .collect();
        let (s, page, _) = scim
            .call(
                Method::GET,
                &format!("/Groups?count=100&filter={}", encode(f)),
                None,
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{f}: {page}");
        assert_eq!(listed(&page), want, "{f}");
        assert_eq!(page["totalResults"], want.len(), "{f}");
    }
    // The root: users first, then groups, one window over both.
    let everything: Vec<&Value> = all_users.iter().chain(&all_groups).collect();
    for (f, start, count) in [
        ("id pr", 5, 4),
        (
            r#"meta.resourceType eq "User" or displayName sw "a""#,
            1,
            100,
        ),
        (r#"displayName co "admin" or userName sw "bob""#, 2, 2),
        (r#"members pr or active eq false"#, 1, 1),
    ] {
        let parsed = filter::parse(f).unwrap();
        let matching: Vec<String> = everything
            .iter()
            .filter(|r| parsed.matches(r))
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        let (s, page, _) = scim
            .call(
                Method::POST,
                "/.search",
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                            "filter": f, "startIndex": start, "count": count}),
                ),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{f}: {page}");
        let want: Vec<String> = matching
            .iter()
            .skip(start - 1)
            .take(count)
            .cloned()
            .collect();
        assert_eq!(listed(&page), want, "{f} from {start}, {count}");
        assert_eq!(page["totalResults"], matching.len(), "{f}");
    }
}
