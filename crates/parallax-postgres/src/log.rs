//! ③ The log tail on PostgreSQL: events in position order, never skipping one
//! that commits late.
//!
//! Positions come from a sequence, and transactions commit in any order, so
//! "everything above the last position seen" is not safe: a transaction that
//! took position 5 may commit after one that took 6. The tail therefore reads
//! only rows whose transaction id is below the oldest transaction still
//! running (`pg_snapshot_xmin(pg_current_snapshot())`); `parallax_append`
//! takes positions and its transaction id together under a lock, so position
//! order is transaction-id order and every row the tail has not returned yet
//! lies above the last one it did (the argument is spelled out in the
//! migration). The price: a long-running transaction anywhere in the cluster
//! holds the tail back (it waits, it never skips) until it ends.
//!
//! Waiting is shared: every clone of a [`PgLog`] (one per process, handed to
//! the relay, the saga and each live event stream) waits on one horizon, the
//! end of the readable prefix of the log. While anyone waits, one of the
//! waiters reads it per poll interval (a single index probe) and wakes the
//! others when it moves; a commit in this process makes the next read come
//! sooner. So idle tailers cost one query per poll interval in all, not one
//! each.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use parallax_core::{EventLog, EventRecord, LogError, Position, StoreError};
use sqlx::postgres::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::store_error;
use crate::store::{event_columns, record_of, to_i64, to_u64};

/// A tail of a [`crate::PgEventStore`].
#[derive(Clone)]
pub struct PgLog {
    pool: PgPool,
    local: watch::Receiver<Position>,
    poll: Duration,
    horizon: Arc<Horizon>,
}

/// The end of the log's readable prefix as last read, and when it was read.
struct Horizon {
    end: watch::Sender<Position>,
    read_at: Mutex<Option<Instant>>,
}

impl Horizon {
    fn new() -> Arc<Self> {
        Arc::new(Self { end: watch::channel(0).0, read_at: Mutex::new(None) })
    }

    /// Whether the caller should read the horizon now: true for one caller per `every`.
    fn claim(&self, every: Duration) -> bool {
        let mut read_at = self.read_at.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if read_at.is_some_and(|at| now.duration_since(at) < every) {
            return false;
        }
        *read_at = Some(now);
        true
    }

    /// Moves the end forward to `end` (never back), waking the waiters.
    fn advance(&self, end: Position) {
        self.end.send_if_modified(|known| {
            let moved = end > *known;
            *known = (*known).max(end);
            moved
        });
    }
}

impl PgLog {
    pub(crate) fn new(pool: PgPool, local: watch::Receiver<Position>, poll: Duration) -> Self {
        Self { pool, local, poll, horizon: Horizon::new() }
    }

    /// A tail over `pool` alone (no writer in this process): polls every `poll`.
    pub fn standalone(pool: PgPool, poll: Duration) -> Self {
        Self { pool, local: watch::channel(0).1, poll, horizon: Horizon::new() }
    }
}

/// The last position of the readable prefix of the log, if it is beyond
/// `after`: rows below the oldest running transaction come before every row
/// at or above it (positions follow transaction ids), so this is a backward
/// index scan that stops at the first readable row.
async fn readable_end(pool: &PgPool, after: Position) -> Result<Option<Position>, StoreError> {
    let end: Option<i64> = sqlx::query_scalar(
        "SELECT max(position) FROM events WHERE position > $1 \
         AND tx_id < pg_snapshot_xmin(pg_current_snapshot())",
    )
    .bind(to_i64(after))
    .fetch_one(pool)
    .await
    .map_err(|e| store_error(format!("read the log's horizon after {after}"), e))?;
    Ok(end.map(to_u64))
}

/// Up to `limit` events after `after` that no running transaction can precede.
pub(crate) async fn read_after(
    pool: &PgPool,
    after: Position,
    limit: usize,
) -> Result<Vec<EventRecord>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events WHERE position > $1 AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY position LIMIT $2"
    ))
    .bind(to_i64(after))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(|e| store_error(format!("read the log after {after}"), e))?;
    rows.iter().map(record_of).collect()
}

#[async_trait]
impl EventLog for PgLog {
    async fn read(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, LogError> {
        read_after(&self.pool, after, limit).await
    }

    async fn wait_beyond(&self, after: Position, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut end = self.horizon.end.subscribe();
        let mut local = self.local.clone();
        // Without a writer in this process the sender is gone: nothing to wait for there.
        let mut local_open = local.has_changed().is_ok();
        loop {
            if *end.borrow_and_update() > after {
                return;
            }
            if self.horizon.claim(self.poll) {
                let known = *end.borrow();
                match readable_end(&self.pool, known).await {
                    Ok(Some(readable)) => self.horizon.advance(readable),
                    Ok(None) => {}
                    Err(error) => {
                        // The caller's next read meets the error and handles it.
                        tracing::debug!(%error, "the log's horizon is unknown");
                        return;
                    }
                }
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            tokio::select! {
                _ = end.changed() => {}
                // Committed here: the horizon may have moved.
                changed = local.changed(), if local_open => local_open = changed.is_ok(),
                _ = tokio::time::sleep(self.poll.min(deadline - now)) => {}
            }
        }
    }

    async fn head(&self) -> Result<Position, LogError> {
        crate::store::head(&self.pool).await
    }
}
