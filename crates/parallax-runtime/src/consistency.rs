//! ⑦ Read-your-writes on request: wait, bounded, until a view has absorbed a token.
//!
//! A projector in the same process publishes every checkpoint it commits on
//! a shared [`Progress`] board. A waiter registers the position it needs; a
//! commit wakes only the waiters whose position it reached, each once, so
//! waiters cost nothing per commit that does not concern them. Only when the
//! board does not show the token absorbed does a waiter read the checkpoint
//! from the read store (the projector may run in another process), one
//! waiter per poll interval reading for all.
//!
//! The board's memory is bounded by the partitions that exist: a line (and
//! its poll time) is kept while a waiter is on it or once a checkpoint above
//! 0 reached it, and a partition no projector has (a token naming a
//! partition the log does not have) has no checkpoint, so its line goes
//! with its last waiter.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use parallax_core::{Checkpoint, ConsistencyToken, Partition, Position, ReadStore, ReadStoreError};
use tokio::sync::oneshot;

use crate::status::WorkerStatus;
use tokio::time::Instant;

/// The checkpoints the projectors of this process have committed, and who
/// waits for which position.
#[derive(Debug, Default)]
pub struct Progress {
    board: Mutex<Board>,
    /// When a waiter last read each checkpoint from the store.
    polled: Mutex<HashMap<(String, Partition), Instant>>,
    /// Records each projector of this process has yet to absorb, per source partition it owns.
    lag: Mutex<BTreeMap<String, Vec<(Partition, u64)>>>,
    /// The status of the projector publishing here, per projection.
    workers: Mutex<BTreeMap<String, Arc<WorkerStatus>>>,
}

/// Per projection and partition: the position reached, and the waiters by
/// the position they need (with a number that tells equal positions apart).
#[derive(Debug, Default)]
struct Board {
    partitions: HashMap<String, HashMap<Partition, Line>>,
    next_waiter: u64,
}

#[derive(Debug, Default)]
struct Line {
    reached: Position,
    waiting: BTreeMap<(Position, u64), oneshot::Sender<()>>,
}

impl Board {
    /// Takes the waiter `key` off its line, and forgets the line if it then
    /// holds nothing (no waiter, nothing reached). Whether it was forgotten.
    fn leave(&mut self, projection: &str, partition: Partition, key: (Position, u64)) -> bool {
        let Some(lines) = self.partitions.get_mut(projection) else { return false };
        let Some(line) = lines.get_mut(&partition) else { return false };
        line.waiting.remove(&key);
        if !line.waiting.is_empty() || line.reached > 0 {
            return false;
        }
        lines.remove(&partition);
        if lines.is_empty() {
            self.partitions.remove(projection);
        }
        true
    }

    fn line(&mut self, projection: &str, partition: Partition) -> &mut Line {
        if !self.partitions.contains_key(projection) {
            self.partitions.insert(projection.to_owned(), HashMap::new());
        }
        let lines = self.partitions.get_mut(projection).expect("inserted above");
        lines.entry(partition).or_default()
    }
}

/// A waiter's place on the board; leaving (dropping) it takes the place back.
struct Registration<'a> {
    progress: &'a Progress,
    projection: &'a str,
    partition: Partition,
    key: (Position, u64),
    woken: oneshot::Receiver<()>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut board = self.progress.board.lock().unwrap_or_else(PoisonError::into_inner);
        let forgotten = board.leave(self.projection, self.partition, self.key);
        drop(board);
        if forgotten {
            let mut polled = self.progress.polled.lock().unwrap_or_else(PoisonError::into_inner);
            polled.remove(&(self.projection.to_owned(), self.partition));
        }
    }
}

impl Progress {
    /// Records that `projection` committed `checkpoint` in `partition`, and
    /// wakes the waiters whose position it reached.
    pub fn advance(&self, projection: &str, partition: Partition, checkpoint: Checkpoint) {
        let mut board = self.board.lock().unwrap_or_else(PoisonError::into_inner);
        let line = board.line(projection, partition);
        line.reached = line.reached.max(checkpoint.position);
        // Everything at or below `reached` is satisfied.
        let later = line.waiting.split_off(&(line.reached + 1, 0));
        let satisfied = std::mem::replace(&mut line.waiting, later);
        drop(board);
        for (_, waiter) in satisfied {
            // A waiter that gave up has dropped its receiver: nothing to wake.
            let _ = waiter.send(());
        }
    }

    /// Registers a wait for `needed` in `projection`'s `partition`; `None`
    /// when the board already shows it reached.
    fn register<'a>(
        &'a self,
        projection: &'a str,
        partition: Partition,
        needed: Position,
    ) -> Option<Registration<'a>> {
        if needed == 0 {
            // Every checkpoint is at 0 or beyond.
            return None;
        }
        let mut board = self.board.lock().unwrap_or_else(PoisonError::into_inner);
        let id = board.next_waiter;
        board.next_waiter += 1;
        let line = board.line(projection, partition);
        if line.reached >= needed {
            return None;
        }
        let (wake, woken) = oneshot::channel();
        line.waiting.insert((needed, id), wake);
        Some(Registration { progress: self, projection, partition, key: (needed, id), woken })
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
        let board = self.board.lock().unwrap_or_else(PoisonError::into_inner);
        board
            .partitions
            .get(projection)
            .and_then(|lines| lines.get(&partition))
            .map_or(0, |line| line.reached)
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
        loop {
            let Some(mut registration) = self.progress.register(projection, token.partition, token.position)
            else {
                return Ok(());
            };
            if self.progress.claim_poll(projection, token.partition, self.poll) {
                // Not seen here: maybe a projector in another process moved it.
                // One waiter reads for all, and wakes the others it satisfies.
                let stored = self.store.checkpoint(projection, token.partition).await?;
                self.progress.advance(projection, token.partition, stored);
                if token.absorbed_by(&stored) {
                    return Ok(());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::NotCaughtUp {
                    projection: projection.to_owned(),
                    partition: token.partition,
                    reached: self.progress.reached(projection, token.partition),
                    needed: token.position,
                });
            }
            tokio::select! {
                _ = &mut registration.woken => {}
                _ = tokio::time::sleep(self.poll.min(deadline - now)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_no_checkpoint_reached_goes_with_its_last_waiter() {
        let progress = Progress::default();
        progress.advance("catalog", 0, Checkpoint { position: 7, offset: 7 });
        for partition in 0..1_000 {
            let first = progress.register("catalog", partition, 9).expect("not reached");
            let second = progress.register("catalog", partition, 9).expect("not reached");
            progress.claim_poll("catalog", partition, Duration::from_secs(60));
            drop(first);
            assert_eq!(progress.board.lock().unwrap().partitions["catalog"][&partition].waiting.len(), 1);
            drop(second);
        }
        assert!(progress.register("catalog", 4_096, 0).is_none(), "position 0 is always absorbed");
        let board = progress.board.lock().unwrap();
        let lines: Vec<Partition> =
            board.partitions.values().flat_map(|lines| lines.keys().copied()).collect();
        assert_eq!(lines, [0], "only the line a checkpoint reached stays");
        assert_eq!(board.partitions["catalog"][&0].reached, 7);
        let polled = progress.polled.lock().unwrap();
        assert_eq!(polled.keys().collect::<Vec<_>>(), [&("catalog".to_owned(), 0)]);
    }
}
