//! [`text_enum!`]: enums stored as one of a fixed set of strings.

/// Declares a `Copy` enum whose values are stored as text: `as_str`, `parse`, `ALL`,
/// `Display`, serde as the string, and sqlx `text` (and `text[]`) encode/decode. Decoding a string that
/// is not a variant is an error (a corrupt row), never a silent default.
///
/// ```
/// ids::text_enum! {
///     /// A door.
///     pub enum Door { Open = "open", Closed = "closed" }
/// }
/// assert_eq!(Door::parse("open"), Some(Door::Open));
/// assert_eq!(Door::Closed.as_str(), "closed");
/// ```
#[macro_export]
macro_rules! text_enum {
    ($(#[$doc:meta])* $vis:vis enum $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::__private::serde::Serialize for $name {
            fn serialize<S: $crate::__private::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    <D::Error as $crate::__private::serde::de::Error>::custom(
                        format!("{:?} is not a {}", s, stringify!($name)),
                    )
                })
            }
        }

        impl $crate::__private::sqlx::Type<$crate::__private::sqlx::Postgres> for $name {
            fn type_info() -> $crate::__private::sqlx::postgres::PgTypeInfo {
                <&str as $crate::__private::sqlx::Type<$crate::__private::sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &$crate::__private::sqlx::postgres::PgTypeInfo) -> bool {
                <&str as $crate::__private::sqlx::Type<$crate::__private::sqlx::Postgres>>::compatible(ty)
            }
        }

        impl $crate::__private::sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> $crate::__private::sqlx::postgres::PgTypeInfo {
                <&str as $crate::__private::sqlx::postgres::PgHasArrayType>::array_type_info()
            }
            fn array_compatible(ty: &$crate::__private::sqlx::postgres::PgTypeInfo) -> bool {
                <&str as $crate::__private::sqlx::postgres::PgHasArrayType>::array_compatible(ty)
            }
        }

        impl $crate::__private::sqlx::Encode<'_, $crate::__private::sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut $crate::__private::sqlx::postgres::PgArgumentBuffer,
            ) -> Result<$crate::__private::sqlx::encode::IsNull, $crate::__private::sqlx::error::BoxDynError> {
                <&str as $crate::__private::sqlx::Encode<'_, $crate::__private::sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> $crate::__private::sqlx::Decode<'r, $crate::__private::sqlx::Postgres> for $name {
            fn decode(
                value: $crate::__private::sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, $crate::__private::sqlx::error::BoxDynError> {
                let s = <&str as $crate::__private::sqlx::Decode<'r, $crate::__private::sqlx::Postgres>>::decode(value)?;
                $name::parse(s).ok_or_else(|| format!("{:?} is not a {}", s, stringify!($name)).into())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::text_enum! {
        enum Light { Red = "red", AmberBlink = "amber_blink" }
    }

    #[test]
    fn round_trips_every_variant_and_rejects_others() {
        for l in Light::ALL {
            assert_eq!(Light::parse(l.as_str()), Some(*l));
            let json = serde_json::to_string(l).unwrap();
            assert_eq!(serde_json::from_str::<Light>(&json).unwrap(), *l);
        }
        assert_eq!(Light::AmberBlink.to_string(), "amber_blink");
        assert_eq!(Light::parse("Red"), None);
        assert!(serde_json::from_str::<Light>("\"green\"").is_err());
    }
}
