//! Tenants: whose data a stream, an event, a document and a token is.
//!
//! Every tenant's data lives apart under the same names: the cart `42` of
//! tenant `acme` is the stream `acme/cart-42`, and its documents live in
//! partitions `acme/…` of every view (a component of the partition key,
//! so a tenant's reads never touch another's rows). The default tenant is
//! the one a service without tenants has: its stream ids and partitions carry
//! no prefix, so a service that never names a tenant stores exactly what
//! it stored before tenants existed.
//!
//! A tenant's ids and partitions must not contain `/` in a store shared by
//! tenants (the shop's ids never do: see its value rules); the prefix is
//! told apart from the id by it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::read_store::DocKey;

/// A tenant: the default one, or one named by [`Tenant::parse`].
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tenant(Option<Arc<str>>);

/// Longest tenant name.
pub const MAX_TENANT_LEN: usize = 40;

/// A name that is not a tenant's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid tenant {0:?}: 1 to {MAX_TENANT_LEN} characters of a-z, 0-9 and _, starting with a letter or digit"
)]
pub struct TenantError(pub String);

impl Tenant {
    /// The default tenant: no prefix anywhere.
    pub const DEFAULT: Self = Self(None);

    /// A named tenant: 1 to 40 of `a-z`, `0-9` and `_`, not starting with
    /// `_` (so no `-`, the stream id's separator, and no `/`, the prefix's).
    pub fn parse(name: &str) -> Result<Self, TenantError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_TENANT_LEN
            && !name.starts_with('_')
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(Self(Some(name.into())))
        } else {
            Err(TenantError(name.to_owned()))
        }
    }

    /// The tenant's name; `None` for the default tenant.
    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// Whether this is the default tenant.
    pub fn is_default(&self) -> bool {
        self.0.is_none()
    }

    /// `value` in this tenant's space: `"{tenant}/{value}"`, or `value` as
    /// it is for the default tenant. Stream ids, idempotency keys and view
    /// partitions are all scoped this way.
    pub fn scope(&self, value: &str) -> String {
        match &self.0 {
            Some(name) => format!("{name}/{value}"),
            None => value.to_owned(),
        }
    }

    /// `key` with its partition in this tenant's space (see [`Tenant::scope`]).
    pub fn scope_key(&self, key: &DocKey) -> DocKey {
        match self.0 {
            Some(_) => DocKey { partition: self.scope(&key.partition), clustering: key.clustering.clone() },
            None => key.clone(),
        }
    }

    /// Splits a scoped value into its tenant and the value within it: the
    /// prefix up to the first `/` when it is a tenant's name and comes
    /// before any `-` (so a default tenant's stream id `cart-a/b` stays
    /// whole), else the default tenant and `value` whole.
    pub fn split(value: &str) -> (Self, &str) {
        if let Some((prefix, rest)) = value.split_once('/') {
            if !prefix.contains('-') {
                if let Ok(tenant) = Self::parse(prefix) {
                    return (tenant, rest);
                }
            }
        }
        (Self::DEFAULT, value)
    }

    /// The value within this tenant's space, if `value` is scoped to it.
    pub fn unscope<'v>(&self, value: &'v str) -> Option<&'v str> {
        let (tenant, rest) = Self::split(value);
        (tenant == *self).then_some(rest)
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().unwrap_or("(default)"))
    }
}

impl FromStr for Tenant {
    type Err = TenantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for good in ["acme", "a", "tenant_2", "0day", &"x".repeat(MAX_TENANT_LEN)] {
            assert_eq!(Tenant::parse(good).unwrap().name(), Some(good));
        }
        for bad in ["", "_x", "Acme", "a-b", "a/b", "a b", "é", &"x".repeat(MAX_TENANT_LEN + 1)] {
            assert_eq!(Tenant::parse(bad), Err(TenantError(bad.to_owned())), "{bad:?}");
        }
    }

    #[test]
    fn scoping_prefixes_a_named_tenant_only_and_splits_back() {
        let acme = Tenant::parse("acme").unwrap();
        assert_eq!(acme.scope("cart-42"), "acme/cart-42");
        assert_eq!(Tenant::DEFAULT.scope("cart-42"), "cart-42");
        assert_eq!(Tenant::split("acme/cart-42"), (acme.clone(), "cart-42"));
        assert_eq!(Tenant::split("cart-42"), (Tenant::DEFAULT, "cart-42"));
        // A default tenant's stream whose id holds a `/`: the `-` comes first.
        assert_eq!(Tenant::split("cart-a/b"), (Tenant::DEFAULT, "cart-a/b"));
        assert_eq!(acme.unscope("acme/x"), Some("x"));
        assert_eq!(acme.unscope("other/x"), None);
        assert_eq!(acme.unscope("x"), None);
        assert_eq!(Tenant::DEFAULT.unscope("x"), Some("x"));
        assert_eq!(Tenant::DEFAULT.unscope("acme/x"), None);
        let key = DocKey::new("42", "sku");
        assert_eq!(acme.scope_key(&key), DocKey::new("acme/42", "sku"));
        assert_eq!(Tenant::DEFAULT.scope_key(&key), key);
    }
}
