//! # shop-read
//!
//! The shop's read side: ⑤ projections that fold the event contract into
//! views, ⑥ the views' documents, ⑦ queries that answer from the read store
//! alone and return DTOs.
//!
//! This crate depends on `shop-events` (the published contract) and never on
//! `shop-domain`: the read side cannot reach into aggregates, and the compiler
//! enforces it.
//!
//! | view | partition key | clustering key | written by |
//! |---|---|---|---|
//! | `catalog` | `"all"` | SKU | [`projections::CatalogProjection`] |
//! | `cart` | cart id | — | [`projections::CartProjection`] |
//! | `order` | order id | — | [`projections::OrderProjection`] |
//! | `customer_orders` | customer id | newest first | [`projections::OrderProjection`] |
//! | `sales` | `"all"` | SKU | [`projections::SalesProjection`] |
#![warn(missing_docs)]

pub mod projections;
pub mod views;
pub mod queries;

pub use projections::all_projections;
pub use queries::{QueryError, ShopQueries};
