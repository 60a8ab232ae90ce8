use super::*;
use proptest::prelude::*;
use serde_json::json;

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "Ada.Lovelace@Example.com",
        "externalId": "00u1",
        "displayName": "Ada Lovelace",
        "active": true,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [
            {"value": "ada@example.com", "type": "work", "primary": true},
            {"value": "ada@home.example", "type": "home"}
        ],
        "meta": {"lastModified": "2026-11-01T10:00:00Z", "resourceType": "User"}
    })
}

fn m(f: &str) -> bool {
    parse(f)
        .unwrap_or_else(|e| panic!("{f}: {e}"))
        .matches(&user())
}

#[test]
fn operators_on_the_attributes_okta_and_entra_use() {
    assert!(
        m(r#"userName eq "ada.lovelace@example.com""#),
        "case-insensitive eq"
    );
    assert!(
        m(r#"USERNAME Eq "Ada.Lovelace@Example.com""#),
        "keywords and names too"
    );
    assert!(m(
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "ada.lovelace@example.com""#
    ));
    assert!(!m(r#"userName ne "ada.lovelace@example.com""#));
    assert!(m(r#"userName co "love""#));
    assert!(m(r#"userName sw "ada""#));
    assert!(m(r#"userName ew ".com""#));
    assert!(m(r#"externalId eq "00u1""#));
    assert!(m(r#"displayName pr"#));
    assert!(!m(r#"nickName pr"#));
    assert!(m(r#"active eq true"#));
    assert!(!m(r#"active eq false"#));
    assert!(
        m(r#"emails eq "ada@home.example""#),
        "multi-valued compares any value"
    );
    assert!(m(r#"emails.value co "home""#));
    assert!(m(r#"emails[type eq "work" and value ew "example.com"]"#));
    assert!(!m(r#"emails[type eq "home" and primary eq true]"#));
    // Entra ID's value path with a sub-attribute: the same element must match both.
    assert!(m(r#"emails[type eq "work"].value eq "ada@example.com""#));
    assert!(!m(r#"emails[type eq "home"].value eq "ada@example.com""#));
    assert!(m(r#"emails[type eq "home"].value co "home""#));
    assert!(parse(r#"emails[type eq "work"]. eq "x""#).is_err());
    assert!(m(r#"name.familyName eq "lovelace""#));
    assert!(m(r#"meta.lastModified gt "2026-10-31T00:00:00Z""#));
    assert!(!m(r#"meta.lastModified lt "2026-10-31T00:00:00Z""#));
    assert!(m(
        r#"meta.lastModified ge "2026-11-01T10:00:00Z" and meta.lastModified le "2026-11-01T10:00:00Z""#
    ));
    assert!(m(r#"nickName eq null"#));
    assert!(m(r#"nickName ne "x""#));
}

#[test]
fn logic_precedence_and_parentheses() {
    // and binds tighter than or.
    assert!(m(
        r#"userName eq "nobody" and active eq false or displayName sw "Ada""#
    ));
    assert!(!m(
        r#"userName eq "nobody" and (active eq false or displayName sw "Ada")"#
    ));
    assert!(m(r#"not (userName eq "nobody")"#));
    assert!(!m(r#"not(active eq true)"#));
    assert!(m(r#"((((active eq true))))"#));
    let f = parse(r#"a eq 1 or b eq 2 and c eq 3"#).unwrap();
    assert!(matches!(f, Filter::Or(_, ref r) if matches!(**r, Filter::And(_, _))));
}

#[test]
fn errors_say_where() {
    for (f, at) in [
        ("", 0),
        ("userName", 8),
        ("userName eq", 11),
        ("userName xx \"a\"", 9),
        ("userName eq \"unterminated", 12),
        ("(userName pr", 12),
        ("userName pr)", 11),
        ("emails[type eq \"work\"", 21),
        ("userName eq \"a\" and", 19),
        ("a..b pr", 0),
        ("userName eq @", 12),
    ] {
        let e = parse(f).unwrap_err();
        assert_eq!(e.at, at, "{f:?}: {e}");
    }
    assert!(parse(&"(".repeat(100)).is_err());
    assert!(parse(&"a pr or ".repeat(600)).is_err(), "length limit");
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(s in ".{0,200}") {
        if let Ok(f) = parse(&s) {
            let _ = f.matches(&user());
        }
    }

    #[test]
    fn never_panics_on_filter_shaped_text(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("userName"), Just("emails"), Just("["), Just("]"), Just("("), Just(")"),
                Just("eq"), Just("pr"), Just("and"), Just("or"), Just("not"), Just("\"x\""),
                Just("1.5"), Just("true"), Just("null"), Just("\"\\u0041\""), Just("name.givenName"),
            ],
            0..30,
        )
    ) {
        let s = parts.join(" ");
        if let Ok(f) = parse(&s) {
            let _ = f.matches(&user());
        }
    }
}
