//! The id newtypes and their grammars.

use std::fmt;

use uuid::Uuid;

/// A string that is not an id of the expected kind. Carries the kind for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidId(pub &'static str);

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a valid {} id", self.0)
    }
}

impl std::error::Error for InvalidId {}

/// `prefix` + 32 lowercase hex digits: what `generate` makes.
fn is_generated(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 32
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// 1–64 printable ASCII bytes without a comma (identity metadata joins lists with commas).
fn is_tenant(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

/// 1–64 bytes of `a-z 0-9 _ - .`, starting with a letter or digit: safe in a URL path, a
/// metric label and a log line without escaping.
pub fn is_key(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.".contains(c))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal, $valid:expr) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id, later in sort order than every id generated before it here.
            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, Uuid::now_v7().simple()))
            }

            /// The id, if `s` is one of this kind. A malformed id cannot exist, so callers
            /// can answer "not found" without a query.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                let valid: fn(&str) -> bool = $valid;
                if valid(s) {
                    Ok($name(s.to_string()))
                } else {
                    Err(InvalidId($kind))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                $name::parse(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

macro_rules! generated_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        id_type!($(#[$doc])* $name, $prefix, $kind, |s| is_generated(s, $prefix));
    };
}

id_type!(
    /// A tenant: `ten_<uuid>` when the user service creates it, or an operator-chosen name
    /// such as the configured platform operator tenant (`ten_platform`).
    TenantId,
    "ten_",
    "tenant",
    is_tenant
);
id_type!(
    /// A plan: a key the operator chose (`pro`), or `pln_<uuid>` when they left it empty.
    PlanId,
    "pln_",
    "plan",
    is_key
);
generated_id!(UserId, "usr_", "user");
generated_id!(ApiKeyId, "key_", "API key");
generated_id!(ScimTokenId, "sct_", "SCIM token");
generated_id!(GroupId, "grp_", "group");
generated_id!(SubscriptionId, "sub_", "subscription");
generated_id!(RunId, "run_", "billing run");
generated_id!(InvoiceId, "inv_", "invoice");
generated_id!(TaxRateId, "txr_", "tax rate");
generated_id!(PaymentMethodId, "pmt_", "payment method");
generated_id!(PaymentIntentId, "pay_", "payment intent");
generated_id!(RefundId, "rfd_", "refund");
generated_id!(RecipientId, "rcp_", "recipient");
generated_id!(EndpointId, "ep_", "webhook endpoint");
generated_id!(MessageId, "msg_", "message");
generated_id!(DeliveryId, "dlv_", "delivery");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let a = UserId::generate();
        let b = UserId::generate();
        assert_eq!(UserId::parse(a.as_str()), Ok(a.clone()));
        assert!(a < b);
        assert_eq!(
            SubscriptionId::parse(a.as_str()),
            Err(InvalidId("subscription")),
            "prefixes are not interchangeable"
        );
        for bad in [
            "",
            "usr_",
            "usr_xyz",
            "usr_0123456789abcdef0123456789ABCDEF",
            "usr_0123456789abcdef0123456789abcdef0",
            "sub_0123456789abcdef0123456789abcdef",
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tenants_are_generated_or_named() {
        let t = TenantId::generate();
        assert!(t.as_str().starts_with("ten_") && t.as_str().len() == 36);
        assert!(TenantId::parse(t.as_str()).is_ok());
        assert!(TenantId::parse("ten_platform").is_ok());
        for bad in ["", "ten a", "ten_ü", "a,b", &"t".repeat(65)] {
            assert_eq!(TenantId::parse(bad), Err(InvalidId("tenant")), "{bad:?}");
        }
    }

    #[test]
    fn plans_are_keys() {
        assert!(PlanId::parse("pro").is_ok());
        assert!(PlanId::parse("team-2026.v2").is_ok());
        assert!(PlanId::parse(PlanId::generate().as_str()).is_ok());
        for bad in ["", "Pro", "-pro", "pro plan", &"p".repeat(65)] {
            assert!(PlanId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_checks_what_it_reads() {
        let id = RunId::generate();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), id);
        let err = serde_json::from_str::<RunId>("\"run_nope\"").unwrap_err();
        assert!(
            err.to_string().contains("not a valid billing run id"),
            "{err}"
        );
    }
}
