//! ③④ The log tail: the event store read in position order, for projectors
//! in the embedded shape (no relay, no broker).
//!
//! [`SqliteLog::read`] is [`EventStore::read_all`](parallax_core::EventStore::read_all):
//! positions are visible in commit order (see [`crate::store`]), so a tail
//! that reads after the last position it has seen never skips an event.
//!
//! [`SqliteLog::wait_beyond`] waits on the head position the writer thread
//! publishes after every commit, so it wakes as soon as this process commits
//! beyond `after`. Commits made by *another* process writing the same file
//! are not signalled: the wait then ends at its timeout, and the caller simply
//! reads again, which finds them. Delivery is at-least-once as the port says:
//! the consumer keeps its own checkpoint.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parallax_core::{EventLog, EventRecord, LogError, Position, StoreError};
use tokio::sync::watch;

use crate::conn::ReadPool;

/// The in-process log over a [`SqliteEventStore`](crate::SqliteEventStore)'s
/// file; from [`SqliteEventStore::log`](crate::SqliteEventStore::log). Cheap
/// to clone. It does not keep the store's writer alive: once the store is
/// dropped, reads still work and waits run to their timeout.
#[derive(Clone)]
pub struct SqliteLog {
    reads: Arc<ReadPool>,
    head: watch::Receiver<Position>,
}

impl std::fmt::Debug for SqliteLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLog").field("head", &*self.head.borrow()).finish_non_exhaustive()
    }
}

impl SqliteLog {
    pub(crate) fn new(reads: Arc<ReadPool>, head: watch::Receiver<Position>) -> Self {
        Self { reads, head }
    }

    /// A tail of the event store at `path` that another process writes (a
    /// second service reading a service's log on the same machine): its
    /// connections only read (`query_only`), and it neither creates the file
    /// nor its schema, so a missing store is refused. No writer here signals
    /// commits: [`EventLog::wait_beyond`] runs to its timeout, and the
    /// caller reads again (polls).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::msg(format!("no event store at {}", path.display())));
        }
        Ok(Self::new(Arc::new(ReadPool::new(path)), watch::channel(0).1))
    }
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn read(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, LogError> {
        crate::store::read_all(&self.reads, after, limit).await
    }

    async fn wait_beyond(&self, after: Position, timeout: Duration) {
        let mut head = self.head.clone();
        let beyond = async {
            loop {
                if *head.borrow_and_update() > after {
                    return;
                }
                if head.changed().await.is_err() {
                    // The writer is gone: nothing more will be signalled.
                    std::future::pending::<()>().await;
                }
            }
        };
        // Running out of time is an answer too: the caller reads again.
        let _ = tokio::time::timeout(timeout, beyond).await;
    }

    async fn head(&self) -> Result<Position, LogError> {
        crate::store::head(&self.reads).await
    }
}
