//! # fulfilment
//!
//! A second service on the shop's topic: it ships paid orders and tells the
//! shop. Built on the Parallax toolkit and on the shop's published event
//! contract (`shop-events`) alone — never on the shop's domain, read side or
//! application, which it knows only through the topic and the HTTP API.
//!
//! ```text
//! shop topic ─▶ intake ─▶ shipment-{order} streams ─▶ warehouse ─▶ POST /api/orders/{id}/ship
//! (Kafka, own      (opens on      (fulfilment's own       (pick → pack →      (Idempotency-Key per
//!  consumer group)  order.paid)    PostgreSQL event store)  dispatch)           shipment, retried)
//!                                           │
//!                                           └─▶ projector ─▶ shipments view ─▶ GET /api/shipments…
//! ```
//!
//! - [`intake`]: the shop's topic as consumer group `fulfilment` (or the
//!   embedded shop's event store); opens a
//!   [`shipment::Shipment`] on `order.paid` and cancels it on
//!   `order.cancelled`, storing each partition's offset only after the
//!   effect is durable.
//! - [`shipment`]: the aggregate, whose every command is idempotent.
//! - [`warehouse`]: a process manager over fulfilment's own log that takes
//!   each shipment through its steps and reports the dispatch to the shop
//!   ([`shop_api`]), recording the answer as an event.
//! - [`views`] and [`http`]: the shipments view and the query API.
//! - [`config`] and [`app`]: settings and wiring; `src/main.rs` is the CLI
//!   (`fulfilment serve`, `fulfilment migrate`).
//!
//! Two shapes, like the shop's ([`config::Shape`]): distributed (its own
//! PostgreSQL database, the shop's Kafka topic) and, by default, embedded
//! beside the embedded shop of the same folder (SQLite files of its own, the
//! shop's event store file tailed read-only by polling, which is all an
//! embedded shop publishes).
#![warn(missing_docs)]

pub mod config;
pub mod shipment;
pub mod intake;
pub mod warehouse;
pub mod shop_api;
pub mod views;
pub mod http;
pub mod app;
