//! ③ The relay: event store → broker, by exactly one active worker.
//!
//! The events table is the outbox: the relay tails it in position order (the
//! store's log never skips an event that commits late) and publishes every
//! event through an [`EventSink`], then saves its checkpoint under its
//! [`Lease`]. Semantics: at-least-once. A relay that crashes after publishing
//! and before saving publishes those events again when it (or its successor)
//! resumes; downstream consumers skip what they have absorbed by position.
//! The checkpoint only moves after the sink acknowledged every event below
//! it, so no committed event is ever left behind.
//!
//! Only the holder of the lease publishes; others wait in
//! [`parallax_core::Leases::acquire`]. A relay whose lease is lost (its
//! database connection dropped, a newer epoch exists) stops at once and
//! waits to be elected again.

use std::sync::Arc;
use std::time::Duration;

use parallax_core::{EventLog, EventSink, Lease, LeaseError, Leases, LogError, Position};
use tokio_util::sync::CancellationToken;

use crate::projector::error_chain;
use crate::retry::Backoff;
use crate::status::{WorkerState, WorkerStatus};

/// How long a caught-up relay waits on the log before looking again anyway.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// Why a relay step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// Reading the log or publishing failed: publish again from the checkpoint.
    #[error("relaying")]
    Log(#[from] LogError),
    /// The lease was lost or its store failed.
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

/// Publishes the event store's log to a broker.
pub struct Relay {
    log: Arc<dyn EventLog>,
    sink: Arc<dyn EventSink>,
    leases: Arc<dyn Leases>,
    name: String,
    batch_size: usize,
    status: Arc<WorkerStatus>,
}

impl Relay {
    /// A relay named `name` (the lease's name) from `log` to `sink`.
    pub fn new(log: Arc<dyn EventLog>, sink: Arc<dyn EventSink>, leases: Arc<dyn Leases>) -> Self {
        let status = Arc::new(WorkerStatus::new("relay", "relay"));
        Self { log, sink, leases, name: "relay".to_owned(), batch_size: 1_000, status }
    }

    /// Another lease name (one relay per name is active).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.status = Arc::new(WorkerStatus::new("relay", self.name.clone()));
        self
    }

    /// What the loop is doing: standby, running (with the last position
    /// published, by which relay lag is measured), failing.
    pub fn status(&self) -> Arc<WorkerStatus> {
        self.status.clone()
    }

    /// At most `n` events per publish.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Publishes one batch after `after` under `lease`; returns the new
    /// checkpoint (`after` when there was nothing to publish).
    pub async fn publish_batch(&self, lease: &dyn Lease, after: Position) -> Result<Position, RelayError> {
        let events = self.log.read(after, self.batch_size).await?;
        let Some(last) = events.last() else {
            return Ok(after);
        };
        let last = last.position;
        self.sink.publish(&events).await?;
        lease.save(last).await?;
        Ok(last)
    }

    /// Relays until `cancel`: waits for the lease, publishes while it holds
    /// it, and waits again if it loses it.
    pub async fn run(&self, cancel: CancellationToken) {
        let name = self.name.as_str();
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        while !cancel.is_cancelled() {
            self.status.set(WorkerState::Standby);
            let lease = tokio::select! {
                _ = cancel.cancelled() => break,
                lease = self.leases.acquire(name) => lease,
            };
            let lease = match lease {
                Ok(lease) => lease,
                Err(error) => {
                    self.status.failed(&error);
                    let delay = backoff.failed();
                    tracing::warn!(relay = name, error = %error_chain(&error), ?delay, "could not take the lease");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            tracing::info!(relay = name, epoch = lease.epoch(), "relay active");
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = lease.lost() => tracing::warn!(relay = name, epoch = lease.epoch(), "lease lost; standing by"),
                _ = self.publish_while_held(lease.as_ref(), &cancel) => {}
            }
        }
        self.status.set(WorkerState::Stopped);
        tracing::info!(relay = name, "relay stopped");
    }

    /// Publishes batch after batch; returns when the lease is found lost.
    async fn publish_while_held(&self, lease: &dyn Lease, cancel: &CancellationToken) {
        let name = self.name.as_str();
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        let mut at = None;
        loop {
            let step = async {
                let after = match at {
                    Some(after) => after,
                    None => lease.checkpoint().await?,
                };
                self.publish_batch(lease, after).await.map(|to| (after, to))
            };
            match step.await {
                Ok((after, to)) => {
                    backoff.succeeded();
                    self.status.reached(to);
                    at = Some(to);
                    if to == after {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = self.log.wait_beyond(to, IDLE_WAIT) => {}
                        }
                    }
                }
                Err(RelayError::Lease(LeaseError::Lost { .. })) => return,
                Err(error) => {
                    // Publish again from the saved checkpoint.
                    self.status.failed(&error);
                    at = None;
                    let delay = backoff.failed();
                    tracing::warn!(relay = name, error = %error_chain(&error), ?delay, "relaying failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
