//! # parallax-testing
//!
//! The test kit of Parallax: a given/when/then harness for aggregates, one
//! contract suite per port that every adapter runs against its real backend
//! (ripgrep's trick: one test body, many engines), and the poison-event
//! suite ([`dead_letters`]: bounded attempts, dead letters, retries) that
//! every read store with atomic commits runs under a real projector; the
//! [`key_store`] contract of crypto-shredding's keys; and
//! stores in memory ([`memory`]) that pass those suites, for a service's own
//! unit tests; with the `contract` feature, a check of the messages a
//! service's tests read from a Kafka topic against the topic's AsyncAPI
//! document (`contract`).
#![warn(missing_docs)]

pub mod given;
pub mod event_store;
pub mod read_store;
pub mod dead_letters;
pub mod key_store;
pub mod memory;
#[cfg(feature = "contract")]
pub mod contract;

/// A read store that records the calls it receives, and the check that a
/// decorator forwards every method it does not keep to itself.
pub use parallax_core::read_store::recorder as forwarding;
