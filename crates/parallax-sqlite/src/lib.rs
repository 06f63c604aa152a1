//! # parallax-sqlite
//!
//! Parallax on SQLite, the embedded shape: one process, two database files.
//!
//! In the order of the data flow:
//!
//! - ② [`store`]: [`SqliteEventStore`], the event store. One writer thread
//!   group-commits concurrent appends (one transaction, many requests, each
//!   checked against its own expected version); `synchronous=FULL` by default,
//!   so an acknowledged append survives a crash or a power loss.
//! - ③④ [`log`]: [`SqliteLog`], the in-process tail of the event store that
//!   projectors read instead of a broker.
//! - ⑥ [`read_store`]: [`SqliteReadStore`], the views and their checkpoints,
//!   in a second database file.
//! - [`keys`]: [`SqliteKeyStore`], the keys of data subjects
//!   (crypto-shredding), in the event store's file.
//!
//! Every SQLite call runs off the async runtime: on the writer thread, or in
//! `tokio::task::spawn_blocking`. Both files run in WAL mode, so readers never
//! wait for a writer. The schema is plain SQL under `src/sql/`, applied
//! (idempotently) whenever a file is opened.
//!
//! This crate depends on `parallax-core` and the SQLite driver only: never on
//! `parallax-runtime`, another adapter, or anything of the shop.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{path::Path, sync::Arc};
//! use parallax_core::{EventLog, EventStore, ReadStore};
//! use parallax_sqlite::{SqliteEventStore, SqliteReadStore};
//!
//! let store = SqliteEventStore::open(Path::new("shop-events.db"))?;
//! let log: Arc<dyn EventLog> = Arc::new(store.log());
//! let store: Arc<dyn EventStore> = Arc::new(store);
//! let views: Arc<dyn ReadStore> = Arc::new(SqliteReadStore::open(Path::new("shop-views.db"))?);
//! # let _ = (log, store, views);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

// In the order of the data flow, not alphabetical.
// ② the event store,
pub mod store;
// ③④ its log tail,
pub mod log;
// ⑥ the views.
pub mod read_store;
// The keys of data subjects (crypto-shredding), in the event store's file.
pub mod keys;

mod conn;
mod error;

pub use keys::SqliteKeyStore;
pub use log::SqliteLog;
pub use read_store::SqliteReadStore;
pub use store::{SqliteEventStore, SqliteStoreOptions};
