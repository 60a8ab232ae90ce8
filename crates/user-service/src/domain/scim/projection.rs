//! `attributes` and `excludedAttributes` (RFC 7643 §7, RFC 7644 §3.9): which attributes of a
//! rendered resource a response carries. Pure.
//!
//! Names are case-insensitive and may be qualified by their schema URN
//! (`urn:ietf:params:scim:schemas:core:2.0:User:userName`) or name a sub-attribute
//! (`name.givenName`). `id`, `schemas` and `meta` are returned always, whatever was asked.

use serde_json::{Map, Value};

/// Attributes every response carries (their `returned` is `always`).
const ALWAYS: [&str; 3] = ["id", "schemas", "meta"];

/// A parsed attribute path: the attribute and, optionally, one sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Path {
    attr: String,
    sub: Option<String>,
}

/// Parses a comma-separated list, dropping any schema URN qualifier.
fn paths(list: &str) -> Vec<Path> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            // "urn:…:User:name.givenName" → "name.givenName": the URN ends at the last ':'.
            let bare = if p.to_ascii_lowercase().starts_with("urn:") {
                p.rsplit(':').next().unwrap_or(p)
            } else {
                p
            };
            let mut parts = bare.splitn(2, '.');
            Path {
                attr: parts.next().unwrap_or_default().to_ascii_lowercase(),
                sub: parts.next().map(str::to_ascii_lowercase),
            }
        })
        .collect()
}

/// The key of `obj` that is `name`, compared case-insensitively.
fn key_of(obj: &Map<String, Value>, name: &str) -> Option<String> {
    obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// Keeps only `subs` of a complex value (or of each element of a multi-valued one).
fn keep_subs(v: &mut Value, subs: &[&str]) {
    match v {
        Value::Object(o) => o.retain(|k, _| subs.iter().any(|s| k.eq_ignore_ascii_case(s))),
        Value::Array(items) => items.iter_mut().for_each(|i| keep_subs(i, subs)),
        _ => {}
    }
}

/// Removes `sub` from a complex value (or from each element of a multi-valued one).
fn drop_sub(v: &mut Value, sub: &str) {
    match v {
        Value::Object(o) => o.retain(|k, _| !k.eq_ignore_ascii_case(sub)),
        Value::Array(items) => items.iter_mut().for_each(|i| drop_sub(i, sub)),
        _ => {}
    }
}

/// Applies `attributes` (only these, plus the always-returned ones) or, when it is absent,
/// `excluded_attributes` (all but these) to a rendered resource.
pub fn project(resource: &mut Value, attributes: Option<&str>, excluded_attributes: Option<&str>) {
    let Value::Object(obj) = resource else { return };
    if let Some(list) = attributes.filter(|l| !l.trim().is_empty()) {
        let wanted = paths(list);
        let keys: Vec<String> = obj.keys().cloned().collect();
        for k in keys {
            if ALWAYS.iter().any(|a| k.eq_ignore_ascii_case(a)) {
                continue;
            }
            let asked: Vec<&Path> = wanted
                .iter()
                .filter(|p| k.eq_ignore_ascii_case(&p.attr))
                .collect();
            if asked.is_empty() {
                obj.remove(&k);
            } else if asked.iter().all(|p| p.sub.is_some()) {
                let subs: Vec<&str> = asked.iter().filter_map(|p| p.sub.as_deref()).collect();
                if let Some(v) = obj.get_mut(&k) {
                    keep_subs(v, &subs);
                }
            }
        }
        return;
    }
    if let Some(list) = excluded_attributes {
        for p in paths(list) {
            if ALWAYS.iter().any(|a| p.attr.eq_ignore_ascii_case(a)) {
                continue;
            }
            let Some(k) = key_of(obj, &p.attr) else {
                continue;
            };
            match &p.sub {
                None => {
                    obj.remove(&k);
                }
                Some(sub) => {
                    if let Some(v) = obj.get_mut(&k) {
                        drop_sub(v, sub);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "usr_1",
            "userName": "ann@x.example",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "emails": [{"value": "ann@x.example", "type": "work", "primary": true}],
            "active": true,
            "meta": {"resourceType": "User"}
        })
    }

    #[test]
    fn attributes_keep_only_what_is_asked_and_the_always_returned() {
        let mut u = user();
        project(&mut u, Some("userName,name.givenName,EMAILS.value"), None);
        assert_eq!(
            u,
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": "usr_1",
                "userName": "ann@x.example",
                "name": {"givenName": "Ann"},
                "emails": [{"value": "ann@x.example"}],
                "meta": {"resourceType": "User"}
            })
        );
        let mut u = user();
        project(
            &mut u,
            Some("urn:ietf:params:scim:schemas:core:2.0:User:active"),
            Some("active"),
        );
        assert_eq!(u["active"], true, "attributes wins over excludedAttributes");
        assert!(u.get("userName").is_none());
    }

    #[test]
    fn excluded_attributes_drop_them_but_never_id() {
        let mut u = user();
        project(&mut u, None, Some("name, emails.type, id, nosuch"));
        assert!(u.get("name").is_none());
        assert_eq!(
            u["emails"],
            json!([{"value": "ann@x.example", "primary": true}])
        );
        assert_eq!(u["id"], "usr_1");
        assert_eq!(u["userName"], "ann@x.example");
        let mut same = user();
        project(&mut same, None, None);
        assert_eq!(same, user());
    }
}
