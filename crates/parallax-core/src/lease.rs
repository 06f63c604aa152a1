//! ③ Leases: exactly one active worker of a kind (the relay, a process
//! manager) across processes, with a fencing epoch.
//!
//! A worker waits in [`Leases::acquire`] until it holds the lease; every
//! acquisition gets an epoch greater than all before it. The lease carries
//! the worker's checkpoint, and [`Lease::save`] moves it only while the
//! lease's epoch is still the newest, so a worker that lost its lease (a
//! paused process, a dropped connection) can never move a checkpoint its
//! successor relies on.

use async_trait::async_trait;

use crate::event::Position;
use crate::store::StoreError;

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Another worker holds the lease now (a newer epoch): stop working.
    #[error("lease {name} lost: epoch {epoch} was superseded")]
    Lost {
        /// The lease.
        name: String,
        /// The epoch this worker held.
        epoch: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Grants leases.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Waits until this worker holds the lease `name`.
    async fn acquire(&self, name: &str) -> Result<Box<dyn Lease>, LeaseError>;
}

/// A held lease.
#[async_trait]
pub trait Lease: Send + Sync {
    /// The lease's name.
    fn name(&self) -> &str;

    /// This holder's epoch: greater than every earlier holder's.
    fn epoch(&self) -> u64;

    /// The checkpoint the holders have saved so far (0: none).
    async fn checkpoint(&self) -> Result<Position, LeaseError>;

    /// Moves the checkpoint, if this holder's epoch is still the newest.
    async fn save(&self, position: Position) -> Result<(), LeaseError>;

    /// Returns once the lease is lost (its holding connection dropped, or a
    /// newer epoch exists); never returns while it is held.
    async fn lost(&self);
}
