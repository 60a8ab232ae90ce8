//! The SCIM Group resource: a named set of users whose name may map to a platform role.
//!
//! A group named like a tenant role ("Admin", "Billing Admin", "billing_admin", "viewer")
//! grants that role to its members; any other name is kept as a plain group. `platform_admin`
//! and `owner` are never granted through SCIM: an identity provider must not be able to make
//! someone the tenant's owner or the platform's operator.

use serde_json::Value;

use super::ScimError;

/// The role a group's display name maps to, if any.
pub fn role_for(display_name: &str) -> Option<authz::Role> {
    let norm: String = display_name
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect();
    authz::Role::parse(&norm)
        .filter(|r| !matches!(r, authz::Role::PlatformAdmin | authz::Role::Owner))
}

/// What a request does to a group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupChange {
    pub display_name: Option<String>,
    pub external_id: Option<Option<String>>,
    /// Replace the whole member list.
    pub set_members: Option<Vec<String>>,
    pub add_members: Vec<String>,
    pub remove_members: Vec<String>,
}

fn get<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// `[{"value": "usr_..."}]` → ids.
fn member_ids(v: &Value) -> Result<Vec<String>, ScimError> {
    let arr = match v {
        Value::Array(a) => a.as_slice(),
        Value::Null => &[],
        _ => return Err(ScimError::invalid_value("members must be an array")),
    };
    arr.iter()
        .map(|m| {
            get(m, "value")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ScimError::invalid_value("each member needs a value (the user id)"))
        })
        .collect()
}

fn display_name(v: &Value) -> Result<String, ScimError> {
    let s = v
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::invalid_value("displayName must be a non-empty string"))?;
    if s.chars().count() > 200 || s.chars().any(char::is_control) {
        return Err(ScimError::invalid_value(
            "displayName is too long or has control characters",
        ));
    }
    Ok(s.to_string())
}

fn external_id(v: &Value) -> Result<Option<String>, ScimError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) if s.len() <= 200 && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()))
        }
        _ => Err(ScimError::invalid_value(
            "externalId must be a short string",
        )),
    }
}

/// From a POST/PUT body: the full new state.
pub fn from_json(body: &Value) -> Result<GroupChange, ScimError> {
    if !body.is_object() {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    }
    let name = get(body, "displayName")
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    Ok(GroupChange {
        display_name: Some(display_name(name)?),
        external_id: Some(
            get(body, "externalId")
                .map(external_id)
                .transpose()?
                .flatten(),
        ),
        set_members: Some(
            get(body, "members")
                .map(member_ids)
                .transpose()?
                .unwrap_or_default(),
        ),
        ..Default::default()
    })
}

/// From a PatchOp body, in Okta's and Entra ID's shapes.
pub fn from_patch(body: &Value) -> Result<GroupChange, ScimError> {
    let ops = get(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("Operations must be an array"))?;
    if ops.len() > 1000 {
        return Err(ScimError::invalid_syntax("at most 1000 operations"));
    }
    let mut c = GroupChange::default();
    for op in ops {
        let kind = get(op, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| ScimError::invalid_syntax("each operation needs an op"))?;
        let path = get(op, "path").and_then(Value::as_str).map(str::trim);
        let value = get(op, "value").cloned().unwrap_or(Value::Null);
        let lower = path.map(str::to_ascii_lowercase);
        match (kind.as_str(), lower.as_deref()) {
            ("add", Some("members")) => c.add_members.extend(member_ids(&value)?),
            ("replace", Some("members")) => c.set_members = Some(member_ids(&value)?),
            ("remove", Some("members")) => {
                if value.is_null() {
                    c.set_members = Some(Vec::new());
                } else {
                    c.remove_members.extend(member_ids(&value)?);
                }
            }
            ("remove", Some(p)) if p.starts_with("members[") && p.ends_with(']') => {
                // members[value eq "usr_..."]: the original text, so the id keeps its case.
                let raw = path.unwrap_or_default();
                let inner = &raw["members[".len()..raw.len() - 1];
                let f = super::filter::parse(inner)
                    .map_err(|e| ScimError::invalid_path(e.to_string()))?;
                match f {
                    super::filter::Filter::Compare(
                        attr,
                        super::filter::Op::Eq,
                        Value::String(id),
                    ) if attr.name == "value" => c.remove_members.push(id),
                    _ => {
                        return Err(ScimError::invalid_path(
                            "only members[value eq \"id\"] is supported",
                        ));
                    }
                }
            }
            ("add" | "replace", Some("displayname")) => {
                c.display_name = Some(display_name(&value)?)
            }
            ("add" | "replace", Some("externalid")) => c.external_id = Some(external_id(&value)?),
            ("remove", Some("externalid")) => c.external_id = Some(None),
            ("add" | "replace", None) => {
                let obj = value.as_object().ok_or_else(|| {
                    ScimError::invalid_value("an operation without a path needs an object value")
                })?;
                for (k, v) in obj {
                    match k.to_ascii_lowercase().as_str() {
                        "displayname" => c.display_name = Some(display_name(v)?),
                        "externalid" => c.external_id = Some(external_id(v)?),
                        "members" if kind == "add" => c.add_members.extend(member_ids(v)?),
                        "members" => c.set_members = Some(member_ids(v)?),
                        _ => {} // id, schemas, meta: read-only or ignored
                    }
                }
            }
            ("remove", None) => return Err(ScimError::no_target("remove needs a path")),
            ("add" | "replace" | "remove", Some(p)) => {
                return Err(ScimError::invalid_path(format!("unsupported path {p:?}")));
            }
            (other, _) => return Err(ScimError::invalid_syntax(format!("unknown op {other:?}"))),
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_map_to_tenant_roles_but_never_owner_or_operator() {
        assert_eq!(role_for("Admin"), Some(authz::Role::Admin));
        assert_eq!(role_for("Billing Admin"), Some(authz::Role::BillingAdmin));
        assert_eq!(role_for(" billing-admin "), Some(authz::Role::BillingAdmin));
        assert_eq!(role_for("viewer"), Some(authz::Role::Viewer));
        assert_eq!(role_for("Owner"), None);
        assert_eq!(role_for("platform_admin"), None);
        assert_eq!(role_for("Engineering"), None);
    }

    #[test]
    fn okta_and_entra_member_patches() {
        let okta = from_patch(&json!({"Operations": [
            {"op": "add", "path": "members", "value": [{"value": "usr_1"}, {"value": "usr_2"}]},
            {"op": "remove", "path": "members[value eq \"usr_3\"]"}
        ]}))
        .unwrap();
        assert_eq!(okta.add_members, vec!["usr_1", "usr_2"]);
        assert_eq!(okta.remove_members, vec!["usr_3"]);
        let entra = from_patch(&json!({"Operations": [
            {"op": "Remove", "path": "members", "value": [{"value": "usr_1"}]},
            {"op": "Replace", "path": "displayName", "value": "Viewer"}
        ]}))
        .unwrap();
        assert_eq!(entra.remove_members, vec!["usr_1"]);
        assert_eq!(entra.display_name.as_deref(), Some("Viewer"));
        let rename = from_patch(&json!({"Operations": [{"op": "replace", "value": {"id": "x", "displayName": "Admin"}}]})).unwrap();
        assert_eq!(rename.display_name.as_deref(), Some("Admin"));
        for bad in [
            json!({}),
            json!({"Operations": [{"op": "remove"}]}),
            json!({"Operations": [{"op": "add", "path": "members", "value": [{"display": "x"}]}]}),
            json!({"Operations": [{"op": "remove", "path": "members[display eq \"x\"]"}]}),
            json!({"Operations": [{"op": "replace", "path": "displayName", "value": ""}]}),
        ] {
            assert!(from_patch(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn full_bodies() {
        let c =
            from_json(&json!({"displayName": "Admin", "members": [{"value": "usr_1"}]})).unwrap();
        assert_eq!(c.set_members, Some(vec!["usr_1".to_string()]));
        assert!(from_json(&json!({"members": []})).is_err());
    }
}
