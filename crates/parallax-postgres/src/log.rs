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

use std::time::Duration;

use async_trait::async_trait;
use parallax_core::{EventLog, EventRecord, LogError, Position, StoreError};
use sqlx::postgres::PgPool;
use tokio::sync::watch;

use crate::error::store_error;
use crate::store::{event_columns, record_of, to_i64};

/// A tail of a [`crate::PgEventStore`].
#[derive(Clone)]
pub struct PgLog {
    pool: PgPool,
    local: watch::Receiver<Position>,
    poll: Duration,
}

impl PgLog {
    pub(crate) fn new(pool: PgPool, local: watch::Receiver<Position>, poll: Duration) -> Self {
        Self { pool, local, poll }
    }

    /// A tail over `pool` alone (no writer in this process): polls every `poll`.
    pub fn standalone(pool: PgPool, poll: Duration) -> Self {
        Self { pool, local: watch::channel(0).1, poll }
    }
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
        let mut local = self.local.clone();
        if *local.borrow_and_update() > after {
            // Written here, maybe not yet below the horizon: look again soon.
            tokio::time::sleep(self.poll.min(timeout)).await;
            return;
        }
        tokio::select! {
            _ = local.changed() => {}
            _ = tokio::time::sleep(self.poll.min(timeout)) => {}
        }
    }

    async fn head(&self) -> Result<Position, LogError> {
        crate::store::head(&self.pool).await
    }
}
