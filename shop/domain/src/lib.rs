//! # shop-domain
//!
//! The shop's write side, as pure decisions: the [`Product`], [`Cart`] and
//! [`Order`] aggregates, and the checkout saga's reactions ([`saga::react`]).
//!
//! Everything here is synchronous and free of I/O. An aggregate's `handle`
//! decides from its own state and the command alone; whatever a decision
//! needs from another stream (a product's name and price when an item goes
//! into a cart) is looked up by the command handler and passed in the
//! command. `apply` folds an event into the state and never fails.
//!
//! A new stream has the default state; whether the thing exists is part of
//! that state (`Product::is_registered`, `Cart::exists`, `Order::exists`).
//! States are `Serialize + Deserialize`, so they can be snapshotted.
//!
//! Refusals are one error enum per aggregate, each with a `kind()` that
//! sorts it into a [`Refusal`]: invalid input, not found, already exists, or
//! a business rule. Nothing is recorded for a refused command.
//!
//! This crate depends on `parallax-core` (the [`Aggregate`] trait) and
//! `shop-events` (the event contract) and on nothing that does I/O; the read
//! side (`shop-read`) must never depend on it.
//!
//! ```
//! use parallax_core::Aggregate;
//! use shop_domain::{Product, ProductCommand, Refusal, Sku};
//!
//! // A command's values are parsed first: an id exists only once its rule holds.
//! assert!(Sku::parse("MUG 1").is_err());
//! let product = Product::default();
//! let events = product
//!     .handle(&ProductCommand::Register {
//!         sku: Sku::parse("MUG-1").expect("a SKU"),
//!         name: "Mug".into(),
//!         price_cents: 1200,
//!         stock: 3,
//!     })
//!     .expect("a valid registration");
//! let mut product = product;
//! events.iter().for_each(|event| product.apply(event));
//! assert_eq!(product.stock(), 3);
//!
//! let refused = product.handle(&ProductCommand::Restock { quantity: 0 }).unwrap_err();
//! assert_eq!(refused.kind(), Refusal::RuleViolated);
//! assert_eq!(refused.to_string(), "restock quantity must be positive (got 0)");
//! ```
#![warn(missing_docs)]

pub mod cart;
mod error;
pub mod order;
pub mod product;
pub mod saga;
pub mod values;

pub use cart::{Cart, CartCommand, CartError, CartLine, ProductInfo, MAX_LINE_QUANTITY};
pub use error::{DomainError, Refusal, MAX_NAME_LEN};
pub use order::{Order, OrderCommand, OrderError, OrderStatus};
pub use product::{Product, ProductCommand, ProductError};
pub use saga::{react, SagaCommand};
pub use values::{
    CartId, Cents, CustomerId, OrderId, Quantity, Sku, ValueError, ID_PATTERN, MAX_EXACT_FLOAT, MAX_ID_LEN,
};

#[doc(no_inline)]
pub use parallax_core::Aggregate;
#[doc(no_inline)]
pub use shop_events::OrderLine;
