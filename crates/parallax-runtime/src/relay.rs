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
//! Each event goes out linked to the previous event of its partition (its
//! position, [`Outgoing::previous`]), so that a consumer can tell a hole in
//! a partition (events the broker's retention deleted) from the next event
//! (Architecture invariant 21). The links are facts of the event store, not
//! of a publishing session: the relay reads the log in position order
//! without gaps, so the last position it read of each partition is the
//! previous event of the next one, and a republished event carries the
//! same link as the first time. What it needs from below its starting
//! point it reads again when it starts (or resumes from its checkpoint
//! after an error): the events of the [`Relay::with_link_window`] positions
//! (10,000 by default) below it. A partition without an event in that
//! window is not known, and its next event goes out unlinked (unchecked);
//! every event after that one is linked again. When the window reaches
//! back to position 0, every partition is known.
//!
//! Only the holder of the lease publishes; others wait in
//! [`parallax_core::Leases::acquire`]. A relay whose lease is lost (its
//! database connection dropped, a newer epoch exists) stops at once and
//! waits to be elected again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use parallax_core::{
    EventLog, EventRecord, EventSink, Lease, LeaseError, Leases, LogError, Outgoing, Partition, Position,
};
use tokio_util::sync::CancellationToken;

use crate::projector::error_chain;
use crate::retry::Backoff;
use crate::status::{WorkerState, WorkerStatus};

/// How long a caught-up relay waits on the log before looking again anyway.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// How many positions below its starting point the relay reads to link the
/// first events it publishes, unless configured.
const DEFAULT_LINK_WINDOW: Position = 10_000;

/// The last position of each partition in the event store, up to where the
/// relay has read it: what links the next event of each partition.
#[derive(Debug)]
struct Links {
    /// The last position read; the map holds every partition's last event
    /// at or below it that the reading saw.
    through: Position,
    /// Whether the reading began at position 0: then a partition missing
    /// from `last` has no event yet.
    complete: bool,
    last: BTreeMap<Partition, Position>,
}

impl Links {
    /// Links `events` (the log's next ones after `through`) to their
    /// partitions' previous events, and moves past them.
    fn link<'a>(&mut self, sink: &dyn EventSink, events: &'a [EventRecord]) -> Vec<Outgoing<'a>> {
        events
            .iter()
            .map(|event| {
                let partition = sink.partition_of(&event.stream_id);
                let previous = self.last.insert(partition, event.position).or(self.complete.then_some(0));
                self.through = event.position;
                Outgoing { event, previous }
            })
            .collect()
    }
}

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
    link_window: Position,
    /// Where the last batch left the links; `None` until the first batch,
    /// and after a failed one (the next reads them again).
    links: Mutex<Option<Links>>,
    status: Arc<WorkerStatus>,
}

impl Relay {
    /// A relay named `name` (the lease's name) from `log` to `sink`.
    pub fn new(log: Arc<dyn EventLog>, sink: Arc<dyn EventSink>, leases: Arc<dyn Leases>) -> Self {
        let status = Arc::new(WorkerStatus::new("relay", "relay"));
        Self {
            log,
            sink,
            leases,
            name: "relay".to_owned(),
            batch_size: 1_000,
            link_window: DEFAULT_LINK_WINDOW,
            links: Mutex::new(None),
            status,
        }
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

    /// Reads `n` positions of the event store below where it starts, to
    /// link the first events it publishes (at least 1).
    pub fn with_link_window(mut self, n: Position) -> Self {
        self.link_window = n.max(1);
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
        let known = self.links.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut links = match known {
            Some(links) if links.through == after => links,
            _ => self.links_below(after).await?,
        };
        self.sink.publish(&links.link(self.sink.as_ref(), &events)).await?;
        lease.save(last).await?;
        *self.links.lock().unwrap_or_else(PoisonError::into_inner) = Some(links);
        Ok(last)
    }

    /// The links at `after`, from the events of the window below it.
    async fn links_below(&self, after: Position) -> Result<Links, LogError> {
        let from = after.saturating_sub(self.link_window);
        let mut links = Links { through: from, complete: from == 0, last: BTreeMap::new() };
        while links.through < after {
            let events = self.log.read(links.through, self.batch_size).await?;
            let below: Vec<&EventRecord> =
                events.iter().take_while(|event| event.position <= after).collect();
            for event in &below {
                links.last.insert(self.sink.partition_of(&event.stream_id), event.position);
            }
            match below.last() {
                Some(event) if below.len() == events.len() => links.through = event.position,
                // Beyond `after` (or the end of the log): the window is read.
                _ => break,
            }
        }
        links.through = after;
        Ok(links)
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
