//! The SCIM User resource as this platform stores it, and the PATCH operations that change it.
//!
//! Identity providers differ in small ways this module absorbs: Okta sends PATCH operations
//! without a `path` and with an object `value` (`{"op":"replace","value":{"active":false}}`);
//! Entra ID sends capitalised ops and string booleans (`{"op":"Replace","path":"active",
//! "value":"False"}`). Both work.

use serde_json::{Value, json};

use super::ScimError;
use crate::domain::validate;

/// The attributes we keep. `userName` is any string unique in the tenant; it doubles as the
/// e-mail when no e-mail is given and it is one. A user may have no e-mail (`email` empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScimUser {
    pub user_name: String,
    pub external_id: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub display_name: String,
    pub email: String,
    /// The e-mail's SCIM `type` and `primary`, as sent (default `work`, primary).
    pub email_type: String,
    pub email_primary: bool,
    /// `None` once a PATCH removed it: unassigned, and the user is active (a user nobody
    /// deactivated); see [`ScimUser::is_active`].
    pub active: Option<bool>,
}

fn get<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn string(v: &Value, attr: &str) -> Result<String, ScimError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(ScimError::invalid_value(format!("{attr} must be a string"))),
    }
}

/// Booleans, or the strings "true"/"false" in any case (Entra ID sends those).
fn boolean(v: &Value, attr: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::invalid_value(format!(
            "{attr} must be a boolean"
        ))),
    }
}

/// The primary e-mail of an `emails` array, else the first: (value, type, primary).
fn primary_email(emails: &Value) -> Option<(String, String, bool)> {
    let arr = emails.as_array()?;
    let e = arr
        .iter()
        .find(|e| get(e, "primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| arr.first())?;
    let value = get(e, "value").and_then(Value::as_str)?.to_string();
    let kind = get(e, "type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or("work")
        .to_string();
    let primary = get(e, "primary").and_then(Value::as_bool).unwrap_or(false);
    Some((value, kind, primary))
}

impl ScimUser {
    /// Whether the user may sign in and counts as a seat: unless deactivated.
    pub fn is_active(&self) -> bool {
        self.active.unwrap_or(true)
    }

    /// From a POST/PUT body.
    pub fn from_json(body: &Value) -> Result<ScimUser, ScimError> {
        if !body.is_object() {
            return Err(ScimError::invalid_syntax("the body must be a JSON object"));
        }
        let user_name = get(body, "userName")
            .map(|v| string(v, "userName"))
            .transpose()?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ScimError::invalid_value("userName is required"))?;
        let mut u = ScimUser {
            user_name,
            active: Some(true),
            email_type: "work".into(),
            email_primary: true,
            ..Default::default()
        };
        for (k, v) in body.as_object().into_iter().flatten() {
            u.set(k, v)?;
        }
        u.finish(true)
    }

    /// Applies one attribute (top level or `name.x`); unknown attributes are ignored, as
    /// SCIM allows for attributes a service provider does not support.
    fn set(&mut self, attr: &str, v: &Value) -> Result<(), ScimError> {
        match attr.to_ascii_lowercase().as_str() {
            "username" => self.user_name = string(v, "userName")?,
            "externalid" => {
                let s = string(v, "externalId")?;
                self.external_id = (!s.is_empty()).then_some(s);
            }
            "displayname" => self.display_name = string(v, "displayName")?,
            "active" => self.active = Some(boolean(v, "active")?),
            "name" => {
                if let Some(g) = get(v, "givenName") {
                    self.given_name = string(g, "name.givenName")?;
                }
                if let Some(f) = get(v, "familyName") {
                    self.family_name = string(f, "name.familyName")?;
                }
            }
            "name.givenname" => self.given_name = string(v, "name.givenName")?,
            "name.familyname" => self.family_name = string(v, "name.familyName")?,
            "emails" => {
                if let Some((value, kind, primary)) = primary_email(v) {
                    (self.email, self.email_type, self.email_primary) = (value, kind, primary);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Validates what we store; on create and replace (`derive`) also fills what the client
    /// left out from what it sent (the e-mail from an e-mail-shaped userName, the display
    /// name from the name). A PATCH that removed them leaves them removed.
    fn finish(mut self, derive: bool) -> Result<ScimUser, ScimError> {
        if self.email.is_empty() {
            // Okta's userName is the e-mail; Entra's UPN often is one; an employee number is not.
            if derive && let Ok(e) = validate::email(&self.user_name) {
                self.email = e;
            }
        } else {
            self.email = validate::email(&self.email).map_err(|_| {
                ScimError::invalid_value("emails[].value must be an e-mail address")
            })?;
        }
        if self.display_name.is_empty() && derive {
            self.display_name = format!("{} {}", self.given_name, self.family_name)
                .trim()
                .to_string();
        }
        for (attr, s) in [
            ("userName", &self.user_name),
            ("displayName", &self.display_name),
            ("name.givenName", &self.given_name),
            ("name.familyName", &self.family_name),
        ] {
            if s.chars().count() > 200 || s.chars().any(char::is_control) {
                return Err(ScimError::invalid_value(format!(
                    "{attr} is too long or has control characters"
                )));
            }
        }
        if let Some(x) = &self.external_id
            && (x.len() > 200 || x.chars().any(char::is_control))
        {
            return Err(ScimError::invalid_value(
                "externalId is too long or has control characters",
            ));
        }
        Ok(self)
    }

    /// Applies a PatchOp request body (RFC 7644 §3.5.2).
    pub fn patch(mut self, body: &Value) -> Result<ScimUser, ScimError> {
        let ops = get(body, "Operations")
            .and_then(Value::as_array)
            .ok_or_else(|| ScimError::invalid_syntax("Operations must be an array"))?;
        if ops.len() > 100 {
            return Err(ScimError::invalid_syntax("at most 100 operations"));
        }
        for op in ops {
            let kind = get(op, "op")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .ok_or_else(|| ScimError::invalid_syntax("each operation needs an op"))?;
            let path = get(op, "path").and_then(Value::as_str);
            let value = get(op, "value").cloned().unwrap_or(Value::Null);
            match (kind.as_str(), path) {
                ("add" | "replace", None) => {
                    let obj = value.as_object().ok_or_else(|| {
                        ScimError::invalid_value(
                            "an operation without a path needs an object value",
                        )
                    })?;
                    for (k, v) in obj {
                        self.set(k, v)?;
                    }
                }
                ("add" | "replace", Some(p)) => self.set_path(p, &value)?,
                ("remove", Some(p)) => self.remove_path(p)?,
                ("remove", None) => return Err(ScimError::no_target("remove needs a path")),
                (other, _) => {
                    return Err(ScimError::invalid_syntax(format!("unknown op {other:?}")));
                }
            }
        }
        self.finish(false)
    }

    /// `emails[type eq "work"].value` and the like address the (single) e-mail we keep.
    fn set_path(&mut self, path: &str, v: &Value) -> Result<(), ScimError> {
        let lower = path.to_ascii_lowercase();
        if lower.starts_with("emails[") && lower.ends_with("].value") {
            self.email = string(v, "emails.value")?;
            return Ok(());
        }
        if lower.contains('[') {
            return Err(ScimError::invalid_path(format!(
                "unsupported path {path:?}"
            )));
        }
        let attr = lower.rsplit(':').next().unwrap_or(&lower);
        self.set(attr, v)
    }

    fn remove_path(&mut self, path: &str) -> Result<(), ScimError> {
        match path.to_ascii_lowercase().as_str() {
            "externalid" => self.external_id = None,
            "displayname" => self.display_name.clear(),
            "name.givenname" => self.given_name.clear(),
            "name.familyname" => self.family_name.clear(),
            "name" => {
                self.given_name.clear();
                self.family_name.clear();
            }
            "emails" => self.email.clear(),
            "active" => self.active = None,
            "username" => {
                return Err(ScimError::mutability(format!("{path} cannot be removed")));
            }
            _ => {
                return Err(ScimError::invalid_path(format!(
                    "unsupported path {path:?}"
                )));
            }
        }
        Ok(())
    }
}

/// What a stored user looks like to a SCIM client.
pub struct Stored<'a> {
    pub id: &'a str,
    pub user: &'a ScimUser,
    pub version: i64,
    pub created: &'a str,
    pub last_modified: &'a str,
    pub location: String,
}

pub fn to_json(s: &Stored<'_>) -> Value {
    let u = s.user;
    let mut v = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": s.id,
        "userName": u.user_name,
        "meta": {
            "resourceType": "User",
            "created": s.created,
            "lastModified": s.last_modified,
            "location": s.location,
            "version": etag(s.version),
        }
    });
    if let Some(a) = u.active {
        v["active"] = json!(a);
    }
    if let Some(x) = &u.external_id {
        v["externalId"] = json!(x);
    }
    // Unassigned attributes are left out rather than sent empty (RFC 7643 §2.5).
    if !u.given_name.is_empty() || !u.family_name.is_empty() {
        let mut name = serde_json::Map::new();
        for (k, x) in [("givenName", &u.given_name), ("familyName", &u.family_name)] {
            if !x.is_empty() {
                name.insert(k.into(), json!(x));
            }
        }
        v["name"] = Value::Object(name);
    }
    if !u.display_name.is_empty() {
        v["displayName"] = json!(u.display_name);
    }
    if !u.email.is_empty() {
        v["emails"] = json!([{"value": u.email, "type": u.email_type, "primary": u.email_primary}]);
    }
    v
}

/// A weak ETag from the row version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ScimUser {
        ScimUser::from_json(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@example.com",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada@example.com", "primary": true, "type": "work"}],
            "externalId": "00u1",
            "active": true
        }))
        .unwrap()
    }

    #[test]
    fn create_from_okta_body() {
        let u = base();
        assert_eq!(u.email, "ada@example.com");
        assert_eq!(u.display_name, "Ada Lovelace");
        assert_eq!(u.external_id.as_deref(), Some("00u1"));
        assert_eq!(u.active, Some(true));
        assert!(
            ScimUser::from_json(&json!({"name": {}})).is_err(),
            "userName required"
        );
        // A user name need not be an e-mail (Entra UPNs, employee numbers): no e-mail then.
        let emp = ScimUser::from_json(&json!({"userName": "EMP-0042"})).unwrap();
        assert_eq!(
            (emp.user_name.as_str(), emp.email.as_str()),
            ("EMP-0042", "")
        );
        let upn = ScimUser::from_json(&json!({"userName": "ada@corp.example"})).unwrap();
        assert_eq!(
            upn.email, "ada@corp.example",
            "a user name that is an e-mail is one"
        );
        assert!(
            ScimUser::from_json(&json!({"userName": "x", "emails": [{"value": "not-an-email"}]}))
                .is_err(),
            "an e-mail given must be one"
        );
        assert!(ScimUser::from_json(&json!([1])).is_err());
    }

    #[test]
    fn okta_style_patch_deactivates() {
        let u = base()
            .patch(
                &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": false}}]}),
            )
            .unwrap();
        assert_eq!(u.active, Some(false));
    }

    #[test]
    fn entra_style_patch_with_paths_and_string_booleans() {
        let u = base()
            .patch(&json!({"Operations": [
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Replace", "path": "displayName", "value": "Ada L."},
                {"op": "Add", "path": "name.givenName", "value": "Augusta"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "augusta@example.com"},
                {"op": "Remove", "path": "externalId"}
            ]}))
            .unwrap();
        assert_eq!(u.active, Some(false));
        assert_eq!(u.display_name, "Ada L.");
        assert_eq!(u.given_name, "Augusta");
        assert_eq!(u.email, "augusta@example.com");
        assert_eq!(u.external_id, None);
    }

    #[test]
    fn bad_patches_are_scim_errors() {
        for (body, scim_type) in [
            (json!({}), "invalidSyntax"),
            (json!({"Operations": [{"path": "active"}]}), "invalidSyntax"),
            (
                json!({"Operations": [{"op": "move", "path": "active"}]}),
                "invalidSyntax",
            ),
            (json!({"Operations": [{"op": "remove"}]}), "noTarget"),
            (
                json!({"Operations": [{"op": "remove", "path": "userName"}]}),
                "mutability",
            ),
            (
                json!({"Operations": [{"op": "replace", "path": "active", "value": "maybe"}]}),
                "invalidValue",
            ),
            (
                json!({"Operations": [{"op": "replace", "path": "groups[value eq \"x\"]", "value": 1}]}),
                "invalidPath",
            ),
            (
                json!({"Operations": [{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "nope"}]}),
                "invalidValue",
            ),
        ] {
            let e = base().patch(&body).unwrap_err();
            assert_eq!(e.scim_type, Some(scim_type), "{body}");
            assert_eq!(e.status, 400, "{body}");
        }
    }

    #[test]
    fn removed_optional_attributes_stay_removed_and_are_not_rendered() {
        let u = base()
            .patch(&json!({"Operations": [
                {"op": "remove", "path": "displayName"},
                {"op": "remove", "path": "name"},
                {"op": "remove", "path": "emails"},
                {"op": "remove", "path": "active"}
            ]}))
            .unwrap();
        // An unassigned `active` is a user nobody deactivated.
        assert_eq!(u.active, None);
        assert!(u.is_active());
        assert_eq!(
            (
                u.display_name.as_str(),
                u.given_name.as_str(),
                u.email.as_str()
            ),
            ("", "", "")
        );
        let v = to_json(&Stored {
            id: "usr_1",
            user: &u,
            version: 2,
            created: "2026-01-01T00:00:00Z",
            last_modified: "2026-01-01T00:00:00Z",
            location: "https://x.example/scim/v2/Users/usr_1".into(),
        });
        for gone in ["displayName", "name", "emails", "active"] {
            assert!(v.get(gone).is_none(), "{gone}: {v}");
        }
        assert_eq!(v["userName"], u.user_name);
        let again = u
            .patch(&json!({"Operations": [{"op": "add", "path": "active", "value": false}]}))
            .unwrap();
        assert_eq!((again.active, again.is_active()), (Some(false), false));
    }
}
