//! ⑦ Read-your-writes on request: wait, bounded, until a view has absorbed a token.
//!
//! A projector in the same process publishes every checkpoint it commits on
//! a shared [`Progress`] board and wakes the waiters, which check the board
//! (no I/O), so a thousand waiters cost nothing per commit. Only when the
//! board does not show the token absorbed does a waiter read the checkpoint
//! from the read store (the projector may run in another process), at most
//! once per poll interval.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use parallax_core::{Checkpoint, ConsistencyToken, Partition, Position, ReadStore, ReadStoreError};
use tokio::sync::Notify;

use crate::status::WorkerStatus;
use tokio::time::Instant;

/// The checkpoints the projectors of this process have committed, and a
/// wake-up for whoever waits on them.
#[derive(Debug, Default)]
pub struct Progress {
    reached: Mutex<HashMap<(String, Partition), Position>>,
    /// When a waiter last read each checkpoint from the store.
    polled: Mutex<HashMap<(String, Partition), Instant>>,
    changed: Notify,
    /// Records each projector of this process has yet to absorb, per source partition it owns.
    lag: Mutex<BTreeMap<String, Vec<(Partition, u64)>>>,
    /// The status of the projector publishing here, per projection.
    workers: Mutex<BTreeMap<String, Arc<WorkerStatus>>>,
}

impl Progress {
    /// Records that `projection` committed `checkpoint` in `partition`.
    pub fn advance(&self, projection: &str, partition: Partition, checkpoint: Checkpoint) {
        let mut reached = self.reached.lock().unwrap_or_else(PoisonError::into_inner);
        let at = reached.entry((projection.to_owned(), partition)).or_default();
        *at = (*at).max(checkpoint.position);
    }

    /// Wakes every waiter (after a commit's checkpoints are recorded).
    pub fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// Whether the caller should read this checkpoint from the store now:
    /// true for one caller per `every`, so waiters share the reads.
    fn claim_poll(&self, projection: &str, partition: Partition, every: Duration) -> bool {
        let mut polled = self.polled.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let last =
            polled.entry((projection.to_owned(), partition)).or_insert(now.checked_sub(every).unwrap_or(now));
        if now.duration_since(*last) < every {
            return false;
        }
        *last = now;
        true
    }

    /// Completes at the next [`Progress::notify`] after it is created.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Records how many events `projection` has yet to absorb in each
    /// partition its projector owns now (replacing what was recorded before:
    /// a partition handed to another process drops out).
    pub fn set_lag(&self, projection: &str, lag: Vec<(Partition, u64)>) {
        self.lag.lock().unwrap_or_else(PoisonError::into_inner).insert(projection.to_owned(), lag);
    }

    /// Per projection run in this process, the lag of each partition it
    /// owns: records (events, or broker messages) between its checkpoint and
    /// the end of the partition, as last measured by its projector.
    pub fn lag(&self) -> BTreeMap<String, Vec<(Partition, u64)>> {
        self.lag.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Shows `status` (of the projector that publishes here) as its
    /// projection's, in place of an earlier one.
    pub fn attach(&self, status: Arc<WorkerStatus>) {
        let name = status.report().name;
        self.workers.lock().unwrap_or_else(PoisonError::into_inner).insert(name, status);
    }

    /// The status of each projector publishing here, by projection name.
    pub fn workers(&self) -> BTreeMap<String, Arc<WorkerStatus>> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The furthest position this process saw `projection` commit in `partition`.
    pub fn reached(&self, projection: &str, partition: Partition) -> Position {
        let reached = self.reached.lock().unwrap_or_else(PoisonError::into_inner);
        reached.get(&(projection.to_owned(), partition)).copied().unwrap_or(0)
    }
}

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
    progress: Arc<Progress>,
    poll: Duration,
}

impl Freshness {
    /// A waiter over `store`, woken early by `progress`.
    pub fn new(store: Arc<dyn ReadStore>, progress: Arc<Progress>) -> Self {
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
        let mut reached = 0;
        loop {
            let notified = self.progress.notified();
            reached = reached.max(self.progress.reached(projection, token.partition));
            if reached >= token.position {
                return Ok(());
            }
            if self.progress.claim_poll(projection, token.partition, self.poll) {
                // Not seen here: maybe a projector in another process moved it.
                // One waiter reads for all, and tells the others.
                let stored = self.store.checkpoint(projection, token.partition).await?;
                if stored.position > reached {
                    self.progress.advance(projection, token.partition, stored);
                    self.progress.notify();
                }
                if token.absorbed_by(&stored) {
                    return Ok(());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::NotCaughtUp {
                    projection: projection.to_owned(),
                    partition: token.partition,
                    reached,
                    needed: token.position,
                });
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(self.poll.min(deadline - now)) => {}
            }
        }
    }
}
