//! # parallax-postgres
//!
//! Parallax on PostgreSQL, for ② ③ ⑥ of the data flow:
//!
//! - [`PgEventStore`]: the write database, whose events table is the
//!   outbox. Appends are group-committed: concurrent requests share one
//!   transaction and one round trip (the `parallax_append` SQL function),
//!   each still checked against its own expected version and idempotency key.
//! - [`PgLog`]: the tail by global position that never skips an event that
//!   commits late (positions and transaction ids are taken together; the
//!   tail reads below the oldest running transaction).
//! - [`PgLeases`]: one active relay (or process manager) across processes,
//!   a session advisory lock with a fencing epoch.
//! - [`pool`]: a pool on one host, or on a list of hosts that keeps to
//!   whichever is the primary ([`hosts`]).
//! - [`PgReadStore`]: views as JSON documents, with per-partition
//!   checkpoints and read guards committed with the view writes.
//! - [`PgKeyStore`]: the keys of data subjects (crypto-shredding), in the
//!   write database; forgetting one rewrites their table ([`keys`]).
//!
//! Schemas are SQL files under `migrations/` (`write/` for the event store,
//! `read/` for the views), applied by [`migrate_write`] and [`migrate_read`];
//! the two may share a database or not.
#![warn(missing_docs)]

mod error;
mod store;
mod log;
mod lease;
mod read_store;
pub mod hosts;
pub mod keys;

use std::time::Duration;

use parallax_core::StoreError;
use sqlx::postgres::{PgPool, PgPoolOptions};

pub use keys::PgKeyStore;
pub use lease::PgLeases;
pub use log::PgLog;
pub use read_store::PgReadStore;
pub use store::{PgEventStore, PgStoreOptions};

/// How long a pool waits for a connection (and [`pool`] for a primary).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool of at most `max_connections` to `url`. A URL with several hosts
/// (`postgres://u:p@host1:5433,host2:5434/db`) gives a pool that keeps to
/// whichever of them is the primary ([`hosts`] says how); it looks for one
/// for the acquire timeout (10 s), each host given as long to answer.
pub async fn pool(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    if let Some(list) = hosts::split_hosts(url)? {
        return hosts::pool(url, list, max_connections, ACQUIRE_TIMEOUT).await;
    }
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(url)
        .await
        .map_err(|e| StoreError::new(format!("connect to {}", redact(url)), e))
}

/// Creates or updates the event store's schema.
pub async fn migrate_write(pool: &PgPool) -> Result<(), StoreError> {
    let mut migrator = sqlx::migrate!("./migrations/write");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await.map_err(|e| StoreError::new("migrate the event store schema", e))
}

/// Creates or updates the read store's schema.
pub async fn migrate_read(pool: &PgPool) -> Result<(), StoreError> {
    let mut migrator = sqlx::migrate!("./migrations/read");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await.map_err(|e| StoreError::new("migrate the read store schema", e))
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
