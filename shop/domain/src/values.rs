//! The shop's values, each defined once with its rule: ids ([`Sku`],
//! [`CartId`], [`CustomerId`], [`OrderId`]), a cart line's [`Quantity`] and
//! an amount of [`Cents`].
//!
//! A value exists only once its rule holds: `parse` (and serde's
//! `Deserialize`, which goes through it) refuses anything else with a
//! precise [`ValueError`]. The edge parses requests into these types, so a
//! handler never sees a malformed id; the consts beside each rule
//! ([`ID_PATTERN`], [`MAX_ID_LEN`], [`Quantity::MAX`], …) are what the API
//! document states, so the document and the parser cannot disagree.
//!
//! Numbers are read as JSON Schema's `integer` reads them: `278` and `278.0`
//! are the same integer. An integral number written with a fraction or an
//! exponent is exact in a double only up to 2^53 ([`MAX_EXACT_FLOAT`]);
//! above that it is refused rather than rounded.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest id (SKU, cart id, customer id), in characters.
pub const MAX_ID_LEN: usize = 64;
/// The id rule as a regular expression (ECMA 262, as OpenAPI reads it):
/// 1 to [`MAX_ID_LEN`] characters of `A-Z a-z 0-9 . _ -`.
pub const ID_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";
/// Largest integer accepted when written with a fraction or an exponent
/// (`278.0`, `1e3`): 2^53, above which a double is no longer exact.
pub const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// A value that breaks its rule: which value, as given, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} {problem}")]
pub struct ValueError {
    /// What the value is ("sku", "cart id", "quantity", …).
    pub what: &'static str,
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// What is wrong with an id (SKU, cart id, customer id), if anything: the
/// rule of [`ID_PATTERN`].
pub(crate) fn id_problem(id: &str) -> Option<&'static str> {
    if id.trim().is_empty() {
        Some("must not be empty")
    } else if id.len() > MAX_ID_LEN {
        Some("must be at most 64 characters")
    } else if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        Some("may contain only letters A-Z and a-z, digits, '.', '_' and '-'")
    } else {
        None
    }
}

macro_rules! id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// What the id names, in messages.
            pub const WHAT: &'static str = $what;

            /// The id, if `id` keeps the rule of [`ID_PATTERN`].
            pub fn parse(id: impl Into<String>) -> Result<Self, ValueError> {
                let id = id.into();
                match id_problem(&id) {
                    None => Ok(Self(id)),
                    Some(problem) => Err(ValueError { what: $what, value: id, problem }),
                }
            }

            /// An id read back from a recorded event, taken as recorded:
            /// the rule held when the event was written, and a rule made
            /// stricter later must not strand what the event started (a
            /// checkout's order, say).
            pub fn recorded(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
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

        impl std::str::FromStr for $name {
            type Err = ValueError;

            fn from_str(id: &str) -> Result<Self, ValueError> {
                Self::parse(id)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let id = String::deserialize(deserializer)?;
                Self::parse(id).map_err(de::Error::custom)
            }
        }
    };
}

id!(
    /// A product's SKU, also its stream id.
    Sku,
    "sku"
);
id!(
    /// A cart's id, also its stream id.
    CartId,
    "cart id"
);
id!(
    /// A customer's id.
    CustomerId,
    "customer id"
);

/// An order's id: a UUID (the checkout chooses a version 7 one), in its
/// hyphenated form in JSON and URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    /// What the id names, in messages.
    pub const WHAT: &'static str = "order id";

    /// The id, if `id` is a UUID.
    pub fn parse(id: &str) -> Result<Self, ValueError> {
        id.parse::<Uuid>().map(Self).map_err(|_| ValueError {
            what: Self::WHAT,
            value: id.to_owned(),
            problem: "is not a UUID",
        })
    }

    /// The UUID.
    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for OrderId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Self::parse(&id).map_err(de::Error::custom)
    }
}

/// Units of one SKU put in a cart at once: 1 to [`Quantity::MAX`] (the most
/// a cart line may hold, [`crate::MAX_LINE_QUANTITY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    /// The fewest units.
    pub const MIN: u32 = 1;
    /// The most units: a cart line holds no more.
    pub const MAX: u32 = crate::MAX_LINE_QUANTITY;

    /// The quantity, if `units` is from [`Self::MIN`] to [`Self::MAX`].
    pub fn parse(units: i64) -> Result<Self, ValueError> {
        match u32::try_from(units) {
            Ok(units) if (Self::MIN..=Self::MAX).contains(&units) => Ok(Self(units)),
            _ => Err(ValueError {
                what: "quantity",
                value: units.to_string(),
                problem: "must be an integer from 1 to 1000",
            }),
        }
    }

    /// The units.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::parse(integer::deserialize(deserializer)?).map_err(de::Error::custom)
    }
}

/// An amount in minor units (euro cents). Any `i64` parses; whether a
/// negative amount may be used is a business rule of the command it is
/// given to ([`Cents::MIN_PRICE`] for a price, refused with
/// [`crate::Refusal::RuleViolated`] below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Cents(i64);

impl Cents {
    /// The lowest price a product may have.
    pub const MIN_PRICE: i64 = 0;

    /// The amount.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl From<i64> for Cents {
    fn from(cents: i64) -> Self {
        Self(cents)
    }
}

impl<'de> Deserialize<'de> for Cents {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        integer::deserialize(deserializer).map(Self)
    }
}

/// An `i64` read as JSON Schema's `integer`: `278`, and also `278.0` or
/// `2.78e2`, the same number (up to [`MAX_EXACT_FLOAT`] when written so).
/// Use as `#[serde(with = "shop_domain::values::integer")]`.
pub mod integer {
    use super::*;

    /// Reads an integer, integral floats included.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        deserializer.deserialize_i64(Integer)
    }

    /// Writes the integer as an integer.
    pub fn serialize<S: serde::Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(*value)
    }

    struct Integer;

    impl Visitor<'_> for Integer {
        type Value = i64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
            Ok(value)
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
            i64::try_from(value)
                .map_err(|_| E::custom(format!("integer {value} is above the maximum of {}", i64::MAX)))
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<i64, E> {
            if value.fract() != 0.0 || !value.is_finite() {
                return Err(E::invalid_type(de::Unexpected::Float(value), &self));
            }
            if value.abs() > MAX_EXACT_FLOAT {
                return Err(E::custom(format!(
                    "integer {value} written with a fraction or an exponent must be at most 2^53 in size; \
                     write it without them"
                )));
            }
            // In range and integral: the cast is exact.
            Ok(value as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_the_rule() {
        assert_eq!(id_problem("MUG-1.a_b"), None);
        assert_eq!(id_problem(&"a".repeat(64)), None);
        assert_eq!(id_problem(""), Some("must not be empty"));
        assert_eq!(id_problem(&"a".repeat(65)), Some("must be at most 64 characters"));
        assert_eq!(id_problem("  "), Some("must not be empty"));
        for bad in ["a b", "a/b", "é", "a\0"] {
            assert!(id_problem(bad).is_some(), "{bad:?}");
            assert!(Sku::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Sku::parse("MUG-1").map(|sku| sku.to_string()), Ok("MUG-1".to_owned()));
        assert_eq!(
            CartId::parse("a b").unwrap_err().to_string(),
            "cart id \"a b\" may contain only letters A-Z and a-z, digits, '.', '_' and '-'"
        );
    }

    #[test]
    fn the_pattern_states_the_rule() {
        // The pattern's pieces, as id_problem checks them.
        assert_eq!(ID_PATTERN, format!("^[A-Za-z0-9._-]{{1,{MAX_ID_LEN}}}$"));
    }

    #[test]
    fn serde_parses_through_the_rule() {
        assert!(serde_json::from_str::<CustomerId>("\"bob\"").is_ok());
        let error = serde_json::from_str::<CustomerId>("\"no spaces\"").unwrap_err().to_string();
        assert!(error.starts_with("customer id \"no spaces\" may contain only"), "{error}");
        assert_eq!(serde_json::to_string(&Sku::parse("P").unwrap()).unwrap(), "\"P\"");
        let id = "0190f3a4-0000-7000-8000-000000000000";
        let order: OrderId = serde_json::from_str(&format!("\"{id}\"")).unwrap();
        assert_eq!(serde_json::to_string(&order).unwrap(), format!("\"{id}\""));
        assert!(serde_json::from_str::<OrderId>("\"not-a-uuid\"").is_err());
    }

    #[test]
    fn integers_may_be_written_as_integral_floats() {
        let read = |json: &str| serde_json::from_str::<Cents>(json).map(Cents::get);
        assert_eq!(read("278").unwrap(), 278);
        assert_eq!(read("278.0").unwrap(), 278);
        assert_eq!(read("2.78e2").unwrap(), 278);
        assert_eq!(read("-5.0").unwrap(), -5);
        assert_eq!(read("9007199254740992.0").unwrap(), 1 << 53);
        assert!(read("9007199254740994.0").is_err());
        assert!(read("1.5").is_err());
        assert!(read("9223372036854775808").is_err());
        assert!(read("\"7\"").is_err());
        assert!(read("null").is_err());
    }

    #[test]
    fn quantities_are_1_to_1000() {
        let read = |json: &str| serde_json::from_str::<Quantity>(json).map(Quantity::get);
        assert_eq!(read("1").unwrap(), 1);
        assert_eq!(read("1000.0").unwrap(), 1000);
        for bad in ["0", "-1", "1001", "4294967297", "1.5"] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
