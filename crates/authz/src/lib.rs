//! Roles and permissions (DESIGN.md §7), shared by the gateway and the user service.
//!
//! A route needs one permission; a caller has roles; a role grants a fixed set of permissions.
//! The matrix is data, in one place, so the RBAC test can walk all of it. `platform_admin` is
//! the SaaS operator: it alone acts across tenants (create tenants, edit the plan catalog, run
//! billing, ingest usage for any tenant). Every other role acts inside its own tenant only.

use std::fmt;

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    TenantsRead,
    TenantsWrite,
    UsersRead,
    UsersWrite,
    RolesWrite,
    ApiKeysWrite,
    PlansRead,
    PlansWrite,
    SubscriptionsRead,
    SubscriptionsWrite,
    UsageRead,
    UsageWrite,
    EntitlementsRead,
    BillingRead,
    BillingRun,
    InvoicesRead,
    InvoicesWrite,
    PaymentsRead,
    PaymentsWrite,
    NotificationsRead,
    NotificationsWrite,
}

impl Permission {
    pub const ALL: [Permission; 21] = [
        Permission::TenantsRead,
        Permission::TenantsWrite,
        Permission::UsersRead,
        Permission::UsersWrite,
        Permission::RolesWrite,
        Permission::ApiKeysWrite,
        Permission::PlansRead,
        Permission::PlansWrite,
        Permission::SubscriptionsRead,
        Permission::SubscriptionsWrite,
        Permission::UsageRead,
        Permission::UsageWrite,
        Permission::EntitlementsRead,
        Permission::BillingRead,
        Permission::BillingRun,
        Permission::InvoicesRead,
        Permission::InvoicesWrite,
        Permission::PaymentsRead,
        Permission::PaymentsWrite,
        Permission::NotificationsRead,
        Permission::NotificationsWrite,
    ];

    /// The wire name, e.g. `users:read` (API key scopes use it).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::TenantsRead => "tenants:read",
            Permission::TenantsWrite => "tenants:write",
            Permission::UsersRead => "users:read",
            Permission::UsersWrite => "users:write",
            Permission::RolesWrite => "roles:write",
            Permission::ApiKeysWrite => "api_keys:write",
            Permission::PlansRead => "plans:read",
            Permission::PlansWrite => "plans:write",
            Permission::SubscriptionsRead => "subscriptions:read",
            Permission::SubscriptionsWrite => "subscriptions:write",
            Permission::UsageRead => "usage:read",
            Permission::UsageWrite => "usage:write",
            Permission::EntitlementsRead => "entitlements:read",
            Permission::BillingRead => "billing:read",
            Permission::BillingRun => "billing:run",
            Permission::InvoicesRead => "invoices:read",
            Permission::InvoicesWrite => "invoices:write",
            Permission::PaymentsRead => "payments:read",
            Permission::PaymentsWrite => "payments:write",
            Permission::NotificationsRead => "notifications:read",
            Permission::NotificationsWrite => "notifications:write",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role a user holds within a tenant (or, for `platform_admin`, over the platform).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    PlatformAdmin,
    Owner,
    Admin,
    BillingAdmin,
    Member,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::PlatformAdmin,
        Role::Owner,
        Role::Admin,
        Role::BillingAdmin,
        Role::Member,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::BillingAdmin => "billing_admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    /// Unknown role names are ignored by callers (a token may carry roles of other systems).
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The matrix. Reads are broad, writes narrow; money-moving and catalog-wide operations
    /// belong to the operator.
    pub fn grants(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Role::PlatformAdmin => true,
            Role::Owner => !matches!(
                p,
                P::TenantsWrite | P::PlansWrite | P::BillingRun | P::UsageWrite
            ),
            Role::Admin => matches!(
                p,
                P::TenantsRead
                    | P::UsersRead
                    | P::UsersWrite
                    | P::RolesWrite
                    | P::ApiKeysWrite
                    | P::PlansRead
                    | P::SubscriptionsRead
                    | P::UsageRead
                    | P::EntitlementsRead
                    | P::BillingRead
                    | P::InvoicesRead
                    | P::PaymentsRead
                    | P::NotificationsRead
                    | P::NotificationsWrite
            ),
            Role::BillingAdmin => matches!(
                p,
                P::TenantsRead
                    | P::PlansRead
                    | P::SubscriptionsRead
                    | P::SubscriptionsWrite
                    | P::UsageRead
                    | P::EntitlementsRead
                    | P::BillingRead
                    | P::InvoicesRead
                    | P::InvoicesWrite
                    | P::PaymentsRead
                    | P::PaymentsWrite
                    | P::NotificationsRead
            ),
            Role::Member => matches!(
                p,
                P::TenantsRead | P::UsersRead | P::PlansRead | P::EntitlementsRead | P::UsageRead
            ),
            Role::Viewer => matches!(
                p,
                P::TenantsRead
                    | P::UsersRead
                    | P::PlansRead
                    | P::SubscriptionsRead
                    | P::UsageRead
                    | P::EntitlementsRead
                    | P::BillingRead
                    | P::InvoicesRead
            ),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True when any of `roles` grants `p`.
pub fn allowed(roles: &[Role], p: Permission) -> bool {
    roles.iter().any(|r| r.grants(p))
}

/// A set of permissions: what a caller holds (its roles' grants plus an API key's scopes), or
/// what a role or key would confer. Privileges never grow: a caller may hand out (as a key's
/// scopes or a role grant) only a set it [`covers`](Permissions::covers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u32);

impl Permissions {
    pub const NONE: Permissions = Permissions(0);

    fn bit(p: Permission) -> u32 {
        1 << (p as u32)
    }

    /// Everything `roles` grant, plus `scopes`.
    pub fn of(roles: &[Role], scopes: &[Permission]) -> Permissions {
        let mut set = Permissions::NONE;
        for r in roles {
            set = set.union(r.permissions());
        }
        for p in scopes {
            set.0 |= Self::bit(*p);
        }
        set
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & Self::bit(p) != 0
    }

    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// True when every permission of `other` is in `self`.
    pub fn covers(self, other: Permissions) -> bool {
        other.0 & !self.0 == 0
    }

    /// The permissions of `other` that `self` lacks, for error messages.
    pub fn missing(self, other: Permissions) -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| other.contains(*p) && !self.contains(*p))
            .collect()
    }
}

impl Role {
    /// Every permission this role grants.
    pub fn permissions(self) -> Permissions {
        let mut set = Permissions::NONE;
        for p in Permission::ALL {
            if self.grants(p) {
                set.0 |= Permissions::bit(p);
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn operator_only_permissions() {
        for p in [
            Permission::TenantsWrite,
            Permission::PlansWrite,
            Permission::BillingRun,
            Permission::UsageWrite,
        ] {
            assert!(Role::PlatformAdmin.grants(p));
            for r in Role::ALL.into_iter().filter(|r| *r != Role::PlatformAdmin) {
                assert!(!r.grants(p), "{r} must not have {p}");
            }
        }
    }

    #[test]
    fn owner_covers_every_other_tenant_role_and_viewer_only_reads() {
        for p in Permission::ALL {
            for r in [Role::Admin, Role::BillingAdmin, Role::Member, Role::Viewer] {
                if r.grants(p) {
                    assert!(Role::Owner.grants(p), "owner lacks {r}'s {p}");
                }
            }
            if Role::Viewer.grants(p) || Role::Member.grants(p) {
                assert!(p.as_str().ends_with(":read"), "{p} is not a read");
            }
        }
        assert!(!allowed(&[], Permission::TenantsRead));
        assert!(allowed(
            &[Role::Viewer, Role::Admin],
            Permission::UsersWrite
        ));
    }

    #[test]
    fn permission_sets_cover_by_inclusion() {
        let admin = Permissions::of(&[Role::Admin], &[]);
        assert!(admin.covers(Role::Member.permissions()));
        assert!(admin.covers(Role::Viewer.permissions()));
        assert!(admin.covers(Role::Admin.permissions()));
        assert!(!admin.covers(Role::Owner.permissions()));
        assert!(!admin.covers(Role::BillingAdmin.permissions()));
        assert_eq!(
            admin.missing(Permissions::of(&[], &[Permission::SubscriptionsWrite])),
            vec![Permission::SubscriptionsWrite]
        );
        let owner = Role::Owner.permissions();
        assert!(!owner.contains(Permission::UsageWrite));
        assert!(Role::PlatformAdmin.permissions().covers(owner));
        let key = Permissions::of(&[], &[Permission::UsersRead, Permission::UsersWrite]);
        assert!(key.contains(Permission::UsersWrite) && !key.contains(Permission::RolesWrite));
        assert!(Permissions::NONE.covers(Permissions::NONE));
        for p in Permission::ALL {
            assert!(Permissions::of(&Role::ALL, &[]).contains(p));
            assert!(
                Permissions::of(&[], &[p])
                    .missing(Permissions::of(&[], &[p]))
                    .is_empty()
            );
        }
    }
}
