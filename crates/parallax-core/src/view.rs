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
    pub fn owned(name: impl Into<String>) -> Self {
        Self { name: name.into(), shared: false }
    }

    /// A view whose documents are read-modify-written from several partitions.
    pub fn shared(name: impl Into<String>) -> Self {
        Self { name: name.into(), shared: true }
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
    /// A view whose documents have one writer at a time.
    pub const fn owned(name: &'static str) -> Self {
        Self { name, shared: false, document: PhantomData }
    }

    /// A view whose documents are read-modify-written from events of several
    /// streams (see [`ViewSpec::shared`]).
    pub const fn shared(name: &'static str) -> Self {
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
