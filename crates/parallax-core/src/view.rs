//! ⑥ Views by typed handle: a view's name, its document type and whether its
//! documents are shared, declared once.
//!
//! ```
//! use parallax_core::View;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Balance {
//!     cents: i64,
//! }
//!
//! /// Balances by account: one writer per document.
//! const BALANCES: View<Balance> = View::owned("balances");
//! assert_eq!(BALANCES.name(), "balances");
//! assert!(!BALANCES.spec().shared);
//! ```
//!
//! A projection reads and writes through the handle
//! ([`crate::ViewTx::get`], [`crate::ViewTx::put`]), so the document type
//! and the view cannot disagree, and lists the views it writes
//! ([`crate::Projection::views`]) as the handles' [`ViewSpec`]s.

use std::marker::PhantomData;

/// A view a store holds, and how it is written: what a store needs to know
/// of a view before it is written ([`crate::ViewAdmin::declare_views`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewSpec {
    /// The view's name as stored (letters, digits, `_` and `-`).
    pub name: String,
    /// Whether its documents are read-modify-written from events of several
    /// streams, and so behind a partitioned log from several partitions at
    /// once (sales per product): a store without multi-document transactions
    /// guards those with compare-and-set; the others have one writer per
    /// document at a time.
    pub shared: bool,
}

impl ViewSpec {
    /// A view whose documents have one writer at a time.
    ///
    /// # Panics
    ///
    /// If the name is one a generation of another view is stored under
    /// (see [`ViewId`]).
    pub fn owned(name: impl Into<String>) -> Self {
        Self { name: checked(name.into()), shared: false }
    }

    /// A view whose documents are read-modify-written from several partitions.
    ///
    /// # Panics
    ///
    /// As [`ViewSpec::owned`].
    pub fn shared(name: impl Into<String>) -> Self {
        Self { name: checked(name.into()), shared: true }
    }

    /// This view in `generation`, as the store declares it.
    pub fn in_generation(&self, generation: u32) -> ViewSpec {
        ViewSpec { name: ViewId::new(&self.name, generation).stored_name(), shared: self.shared }
    }
}

fn checked(name: String) -> String {
    if let Some(reason) = name_problem(&name) {
        panic!("view name {name:?}: {reason}");
    }
    name
}

/// Why `name` cannot name a view or a projection, if it cannot: it is
/// empty, or it ends in `_g` and digits, the form a later generation of
/// another name is stored under (`catalog_g2` is generation 2 of `catalog`).
pub const fn name_problem(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Some("a name is not empty");
    }
    let mut digits = bytes.len();
    while digits > 0 && bytes[digits - 1].is_ascii_digit() {
        digits -= 1;
    }
    if digits < bytes.len() && digits >= 2 && bytes[digits - 1] == b'g' && bytes[digits - 2] == b'_' {
        return Some("a name ending in `_g` and digits is reserved for the generations of another name");
    }
    None
}

/// A view, or a projection's checkpoints and dead letters, in one
/// generation: what a store keeps documents under.
///
/// A projection rebuilt blue/green writes a new generation of its views
/// beside the served one (see `parallax_runtime::generations`). The
/// generation is a field of the identity; [`ViewId::stored_name`] is the
/// one place that turns it into the name a store holds: the plain name for
/// generation 1 (what a store held before it had generations), `{name}_g{n}`
/// after. Names ending in `_g` and digits are refused ([`name_problem`]), so
/// two identities never share a stored name.
///
/// ```
/// use parallax_core::ViewId;
///
/// assert_eq!(ViewId::new("catalog", 1).stored_name(), "catalog");
/// assert_eq!(ViewId::new("catalog", 3).stored_name(), "catalog_g3");
/// assert!(std::panic::catch_unwind(|| ViewId::new("catalog_g2", 1)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ViewId<'a> {
    name: &'a str,
    generation: u32,
}

impl<'a> ViewId<'a> {
    /// `name` in `generation` (1, 2, …).
    ///
    /// # Panics
    ///
    /// If `name` is refused by [`name_problem`], or `generation` is 0.
    pub fn new(name: &'a str, generation: u32) -> Self {
        if let Some(reason) = name_problem(name) {
            panic!("name {name:?}: {reason}");
        }
        assert!(generation >= 1, "generations count from 1");
        Self { name, generation }
    }

    /// The view's (or projection's) name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The generation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The name a store keeps it under.
    pub fn stored_name(&self) -> String {
        if self.generation == 1 {
            self.name.to_owned()
        } else {
            format!("{}_g{}", self.name, self.generation)
        }
    }
}

/// A view whose documents are `T`s, by name. `Copy`, and made in `const`
/// context, so the one definition of a view is a constant.
pub struct View<T> {
    name: &'static str,
    shared: bool,
    document: PhantomData<fn() -> T>,
}

impl<T> View<T> {
    /// A view whose documents have one writer at a time. A refused name
    /// ([`name_problem`]) fails the build of the constant.
    pub const fn owned(name: &'static str) -> Self {
        assert!(name_problem(name).is_none(), "a view name is not empty nor ends in `_g` and digits");
        Self { name, shared: false, document: PhantomData }
    }

    /// A view whose documents are read-modify-written from events of several
    /// streams (see [`ViewSpec::shared`]).
    pub const fn shared(name: &'static str) -> Self {
        assert!(name_problem(name).is_none(), "a view name is not empty nor ends in `_g` and digits");
        Self { name, shared: true, document: PhantomData }
    }

    /// The persisted name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// What a store needs to know of it.
    pub fn spec(&self) -> ViewSpec {
        ViewSpec { name: self.name.to_owned(), shared: self.shared }
    }
}

impl<T> Clone for View<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for View<T> {}

impl<T> std::fmt::Debug for View<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("name", &self.name).field("shared", &self.shared).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_of_a_view_never_share_a_stored_name_with_another_view() {
        assert_eq!(ViewId::new("catalog", 1).stored_name(), "catalog");
        assert_eq!(ViewId::new("catalog", 2).stored_name(), "catalog_g2");
        assert_eq!(ViewId::new("catalog_g", 2).stored_name(), "catalog_g_g2");
        assert_eq!(ViewId::new("g2", 1).stored_name(), "g2");
        for taken in ["catalog_g2", "catalog_g10", "x_g0"] {
            assert!(name_problem(taken).is_some(), "{taken} is accepted");
            assert!(std::panic::catch_unwind(|| ViewId::new(taken, 1)).is_err());
            assert!(std::panic::catch_unwind(|| ViewSpec::owned(taken)).is_err());
        }
        for fine in ["catalog", "catalog_g", "catalog_gx2", "g2", "orders_2", "a.generations"] {
            assert_eq!(name_problem(fine), None, "{fine} is refused");
        }
        assert!(name_problem("").is_some());
    }

    #[test]
    fn a_spec_in_a_generation_keeps_its_sharing() {
        let spec = ViewSpec::shared("sales").in_generation(3);
        assert_eq!(spec, ViewSpec { name: "sales_g3".to_owned(), shared: true });
    }
}
