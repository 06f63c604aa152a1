//! Stores in memory: an [`EventStore`](parallax_core::EventStore) with its
//! log, a [`ReadStore`](parallax_core::ReadStore) and a
//! [`KeyStore`](parallax_core::KeyStore), for a service's unit
//! tests and for examples. They pass the same contract suites as the SQLite,
//! PostgreSQL and Cassandra adapters (`tests/memory.rs`), and keep nothing
//! when dropped.

mod event_store;
mod key_store;
mod read_store;

pub use event_store::{MemEventStore, MemLog};
pub use key_store::MemKeyStore;
pub use read_store::MemReadStore;
