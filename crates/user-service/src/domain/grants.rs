//! Privileges never grow: what a caller hands out — an API key's scopes, a role for a user, a
//! SCIM token that will grant roles — must be covered by what the caller holds itself, and a
//! caller may only change users whose roles it could have granted (an `admin` cannot demote,
//! rename or deactivate the `owner`).
//!
//! The caller's power is [`authz::Permissions`]: its roles' permissions plus, for an API key,
//! its scopes. Checked when the grant is made; a key keeps its scopes if its creator later
//! loses a role (revoke the key to take them back).

use authz::{Permission, Permissions, Role};

use crate::domain::scim::group::role_for;

/// A grant the caller may not make: names what it would have given away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} needs {missing} that you do not hold")]
pub struct Escalation {
    pub what: String,
    pub missing: String,
}

fn check(caller: Permissions, wanted: Permissions, what: String) -> Result<(), Escalation> {
    if caller.covers(wanted) {
        return Ok(());
    }
    let missing: Vec<&str> = caller
        .missing(wanted)
        .into_iter()
        .map(Permission::as_str)
        .collect();
    Err(Escalation {
        what,
        missing: missing.join(", "),
    })
}

fn roles_power(roles: &[String]) -> Permissions {
    let parsed: Vec<Role> = roles.iter().filter_map(|r| Role::parse(r)).collect();
    Permissions::of(&parsed, &[])
}

/// May `caller` create a key with these (validated) scopes?
pub fn scopes(caller: Permissions, scopes: &[String]) -> Result<(), Escalation> {
    let parsed: Vec<Permission> = scopes.iter().filter_map(|s| Permission::parse(s)).collect();
    check(
        caller,
        Permissions::of(&[], &parsed),
        "an API key with these scopes".into(),
    )
}

/// May `caller` give a user these (validated) roles?
pub fn roles(caller: Permissions, roles: &[String]) -> Result<(), Escalation> {
    check(
        caller,
        roles_power(roles),
        format!("granting {}", roles.join(", ")),
    )
}

/// May `caller` change (roles, profile, status) a user who now holds `current`?
pub fn manage(caller: Permissions, current: &[String]) -> Result<(), Escalation> {
    check(
        caller,
        roles_power(current),
        format!("changing a user with roles {}", current.join(", ")),
    )
}

/// What a SCIM token can hand out: every role a SCIM group may grant.
pub fn scim_token_power() -> Permissions {
    let grantable: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|r| role_for(r.as_str()) == Some(*r))
        .collect();
    Permissions::of(&grantable, &[])
}

/// May `caller` create a SCIM token (whose groups can grant every role but owner)?
pub fn scim_token(caller: Permissions) -> Result<(), Escalation> {
    check(caller, scim_token_power(), "a SCIM token".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(roles: &[Role]) -> Permissions {
        Permissions::of(roles, &[])
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn admins_cannot_hand_out_what_they_lack() {
        let admin = of(&[Role::Admin]);
        let e = scopes(admin, &names(&["subscriptions:write"])).unwrap_err();
        assert_eq!(e.missing, "subscriptions:write");
        assert!(scopes(admin, &names(&["users:write", "users:read"])).is_ok());
        let e = roles(admin, &names(&["owner"])).unwrap_err();
        assert!(e.missing.contains("subscriptions:write"), "{e}");
        assert!(roles(admin, &names(&["billing_admin"])).is_err());
        assert!(roles(admin, &names(&["admin", "member", "viewer"])).is_ok());
        assert!(manage(admin, &names(&["owner"])).is_err());
        assert!(manage(admin, &names(&["member"])).is_ok());
        assert!(scim_token(admin).is_err());
    }

    #[test]
    fn owners_cannot_mint_operator_scopes_but_can_do_the_rest() {
        let owner = of(&[Role::Owner]);
        assert_eq!(
            scopes(owner, &names(&["usage:write"])).unwrap_err().missing,
            "usage:write"
        );
        assert!(scopes(owner, &names(&["subscriptions:write", "invoices:read"])).is_ok());
        assert!(roles(owner, &names(&["owner", "billing_admin"])).is_ok());
        assert!(scim_token(owner).is_ok());
        assert!(of(&[Role::PlatformAdmin]).covers(scim_token_power()));
    }

    #[test]
    fn a_key_grants_only_within_its_scopes() {
        let key = Permissions::of(
            &[],
            &[
                Permission::UsersWrite,
                Permission::RolesWrite,
                Permission::ApiKeysWrite,
            ],
        );
        assert!(roles(key, &names(&["member"])).is_err());
        assert!(scopes(key, &names(&["users:write"])).is_ok());
        assert!(scopes(key, &names(&["users:read"])).is_err());
        assert!(roles(key, &[]).is_ok());
    }

    #[test]
    fn scim_tokens_confer_every_group_role_but_owner() {
        let p = scim_token_power();
        assert!(p.covers(Role::BillingAdmin.permissions()));
        assert!(p.covers(Role::Admin.permissions()));
        assert!(!p.contains(Permission::TenantsWrite));
    }
}
