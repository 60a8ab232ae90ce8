//! Prefixed, time-ordered ids: `ten_…`, `usr_…`, `key_…`, `sct_…`.
//!
//! The suffix is a UUIDv7 in simple form, so ids sort by creation time and cursor pagination
//! can use `ORDER BY id`. The prefix makes a pasted id self-describing.

use uuid::Uuid;

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, Uuid::now_v7().simple()))
            }

            /// Accepts only well-formed ids; anything else cannot exist, so callers answer
            /// NOT_FOUND without a query.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                (rest.len() == 32
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
                .then(|| $name(s.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(TenantId, "ten_");
prefixed_id!(UserId, "usr_");
prefixed_id!(ApiKeyId, "key_");
prefixed_id!(ScimTokenId, "sct_");
prefixed_id!(GroupId, "grp_");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let a = TenantId::generate();
        let b = TenantId::generate();
        assert_eq!(TenantId::parse(a.as_str()), Some(a.clone()));
        assert!(a < b);
        assert!(
            UserId::parse(a.as_str()).is_none(),
            "prefixes are not interchangeable"
        );
        for bad in [
            "",
            "ten_",
            "ten_xyz",
            "ten_0123456789abcdef0123456789ABCDEF",
            "usr_0123456789abcdef0123456789abcdef",
        ] {
            assert!(TenantId::parse(bad).is_none(), "{bad}");
        }
    }
}
