//! Input rules for tenants and users. Each error names the field.

/// A rejected field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

/// Trimmed, 1..=200 characters, no control characters.
pub fn name(field: &'static str, s: &str) -> Result<String, Invalid> {
    let t = s.trim();
    if t.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if t.chars().count() > 200 {
        return Err(invalid(field, "must be at most 200 characters"));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(t.to_string())
}

/// 3..=63 of a-z, 0-9 and '-', not starting or ending with '-'.
pub fn slug(s: &str) -> Result<String, Invalid> {
    let ok = (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(invalid(
            "slug",
            "must be 3-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
        ))
    }
}

/// A pragmatic e-mail check: one '@', a non-empty local part, a dotted domain, no spaces,
/// at most 254 characters. Stored as given; compared case-insensitively.
pub fn email(s: &str) -> Result<String, Invalid> {
    let t = s.trim();
    let bad = || invalid("email", "must be an e-mail address like name@example.com");
    if t.len() > 254 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = t.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err(bad());
    }
    Ok(t.to_string())
}

/// Role names must be ones the platform knows.
pub fn roles(roles: &[String]) -> Result<Vec<String>, Invalid> {
    let mut out = Vec::with_capacity(roles.len());
    for r in roles {
        let role = authz::Role::parse(r.trim())
            .ok_or_else(|| invalid("roles", format!("unknown role {r:?}")))?;
        if role == authz::Role::PlatformAdmin {
            return Err(invalid(
                "roles",
                "platform_admin cannot be granted within a tenant",
            ));
        }
        if !out.contains(&role.as_str().to_string()) {
            out.push(role.as_str().to_string());
        }
    }
    Ok(out)
}

/// Scopes of an API key: known permission names.
pub fn scopes(scopes: &[String]) -> Result<Vec<String>, Invalid> {
    let mut out = Vec::with_capacity(scopes.len());
    for s in scopes {
        let p = authz::Permission::parse(s.trim())
            .ok_or_else(|| invalid("scopes", format!("unknown permission {s:?}")))?;
        if !out.contains(&p.as_str().to_string()) {
            out.push(p.as_str().to_string());
        }
    }
    if out.is_empty() {
        return Err(invalid("scopes", "must name at least one permission"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "First.Last+tag@Example.COM", " x@y.io "] {
            assert!(email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a@@b.co", "a b@c.de", "a@.b", "a@b.", "a@b..c",
        ] {
            assert_eq!(email(bad).unwrap_err().field, "email", "{bad}");
        }
    }

    #[test]
    fn slugs_names_roles_scopes() {
        assert!(slug("concurflow").is_ok());
        for bad in ["ab", "-abc", "abc-", "ABC", "a_b_c", "ünï"] {
            assert!(slug(bad).is_err(), "{bad}");
        }
        assert_eq!(name("name", "  Acme  ").unwrap(), "Acme");
        assert!(name("name", "   ").is_err());
        assert!(name("name", "a\u{0}b").is_err());
        assert_eq!(
            roles(&["admin".into(), "admin".into()]).unwrap(),
            vec!["admin"]
        );
        assert!(roles(&["platform_admin".into()]).is_err());
        assert!(roles(&["god".into()]).is_err());
        assert_eq!(
            scopes(&["usage:write".into()]).unwrap(),
            vec!["usage:write"]
        );
        assert!(scopes(&[]).is_err());
    }

    proptest! {
        #[test]
        fn validators_never_panic(s in ".{0,300}") {
            let _ = email(&s);
            let _ = slug(&s);
            let _ = name("name", &s);
        }
    }
}
