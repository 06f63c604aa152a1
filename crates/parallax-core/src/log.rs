//! ③④ The log: events in position order, for anything downstream of the store.
//!
//! Delivery is at-least-once: a consumer may see an event again after a
//! restart, so consumers keep their own position (a checkpoint) and skip what
//! they have absorbed. In the embedded shape the log is a tail of the event
//! store itself.

use std::time::Duration;

use async_trait::async_trait;

use crate::event::{EventRecord, Position};
use crate::store::StoreError;

/// Why the log could not be read.
pub type LogError = StoreError;

/// A subscribable, ordered source of events.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Up to `limit` events after `after`, in position order, without gaps.
    async fn read(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, LogError>;

    /// Returns once an event beyond `after` may be available, or after
    /// `timeout`. Spurious wake-ups are allowed.
    async fn wait_beyond(&self, after: Position, timeout: Duration);

    /// The position of the newest event (for lag reporting).
    async fn head(&self) -> Result<Position, LogError>;
}
