//! ⑦ Read-your-writes on request: wait, bounded, until a view has absorbed a token.
//!
//! The waiter reads the projection's checkpoint from the read store (so it
//! works when the projector runs in another process) and sleeps between
//! reads; a projector in the same process wakes it at once through a shared
//! [`Notify`].

use std::sync::Arc;
use std::time::Duration;

use parallax_core::{ConsistencyToken, Partition, Position, ReadStore, ReadStoreError};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a wait ended without the token absorbed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The view has not caught up in time.
    #[error("view {projection} is at position {reached} in partition {partition}, the token needs {needed}")]
    NotCaughtUp {
        /// The projection behind the view.
        projection: String,
        /// The log partition of the token.
        partition: Partition,
        /// Where it got to.
        reached: Position,
        /// Where the token is.
        needed: Position,
    },
    /// The read store failed.
    #[error(transparent)]
    Store(#[from] ReadStoreError),
}

/// Waits for projections to absorb consistency tokens.
#[derive(Clone)]
pub struct Freshness {
    store: Arc<dyn ReadStore>,
    progress: Arc<Notify>,
    poll: Duration,
}

impl Freshness {
    /// A waiter over `store`, woken early by `progress`.
    pub fn new(store: Arc<dyn ReadStore>, progress: Arc<Notify>) -> Self {
        Self { store, progress, poll: Duration::from_millis(10) }
    }

    /// Returns once `projection` has absorbed `token`, or fails after `timeout`.
    pub async fn wait(
        &self,
        projection: &str,
        token: ConsistencyToken,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.progress.notified();
            let reached = self.store.checkpoint(projection, token.partition).await?;
            if token.absorbed_by(&reached) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::NotCaughtUp {
                    projection: projection.to_owned(),
                    partition: token.partition,
                    reached: reached.position,
                    needed: token.position,
                });
            }
            let nap = self.poll.min(deadline - now);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }
}
