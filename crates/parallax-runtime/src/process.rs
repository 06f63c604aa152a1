//! Process managers (sagas): events in, commands out.
//!
//! Semantics: at-least-once. The runner reads the log after the process
//! manager's checkpoint (kept in the write DB), hands each event to the
//! process manager, and stores the checkpoint after the batch. After a crash
//! the events since the last checkpoint are handed over again, so a process
//! manager must be idempotent: the shop's saga sends every command with an
//! idempotency key derived from the causing event's id, so a replayed
//! reaction appends nothing new.

use std::sync::Arc;

use async_trait::async_trait;
use parallax_core::{DeadLetter, EventLog, EventRecord, EventStore, Leases, LogError, Position};
use tokio_util::sync::CancellationToken;

use crate::status::{WorkerState, WorkerStatus};
use crate::worker::{drive, Step};

/// Why a process manager could not handle an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// Worth retrying (store down, conflicts after retries): the runner stops
    /// the batch here and tries the event again later.
    #[error("transient: {0}")]
    Transient(String),
    /// Will fail again (the command was refused): parked, and the runner goes on.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Reading or checkpointing failed.
    #[error("log")]
    Log(#[from] LogError),
}

/// Reacts to events by sending commands.
///
/// A [`ProcessRunner`] hands it each event after its checkpoint, at least
/// once, so what it sends must be idempotent (a key derived from the event's
/// id, say).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use async_trait::async_trait;
/// use parallax_core::{AppendRequest, EventRecord, EventStore, ExpectedVersion, Metadata, NewEvent};
/// use parallax_runtime::{ProcessError, ProcessManager, ProcessRunner};
///
/// /// Counts the orders placed (a real one would send a command).
/// #[derive(Default)]
/// struct Orders(AtomicUsize);
///
/// #[async_trait]
/// impl ProcessManager for Orders {
///     fn name(&self) -> &'static str {
///         "orders"
///     }
///
///     async fn handle(&self, event: &EventRecord) -> Result<(), ProcessError> {
///         if event.event_type == "order.placed" {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir()?;
/// let store = parallax_sqlite::SqliteEventStore::open(&dir.path().join("events.db"))?;
/// let placed = NewEvent {
///     event_id: uuid::Uuid::now_v7(),
///     event_type: "order.placed".into(),
///     schema_version: 1,
///     payload: "{}".into(),
///     metadata: Metadata::default(),
///     recorded_at: chrono::Utc::now(),
/// };
/// store.append(AppendRequest::new("order-1", ExpectedVersion::Exact(0), vec![placed])).await?;
///
/// let orders = Arc::new(Orders::default());
/// let runner = ProcessRunner::new(orders.clone(), Arc::new(store.log()), Arc::new(store));
/// assert_eq!(runner.process_batch().await?, 1);
/// assert_eq!(runner.process_batch().await?, 0, "caught up: its checkpoint is stored");
/// assert_eq!(orders.0.load(Ordering::Relaxed), 1);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait ProcessManager: Send + Sync {
    /// Persisted name: the checkpoint's key.
    fn name(&self) -> &'static str;

    /// Handles one event (and sends whatever commands it causes).
    async fn handle(&self, event: &EventRecord) -> Result<(), ProcessError>;
}

/// Feeds a process manager from the log.
pub struct ProcessRunner {
    manager: Arc<dyn ProcessManager>,
    log: Arc<dyn EventLog>,
    checkpoints: Arc<dyn EventStore>,
    batch_size: usize,
    status: Arc<WorkerStatus>,
}

impl ProcessRunner {
    /// A runner of `manager` over `log`, keeping its checkpoint in `checkpoints`.
    pub fn new(
        manager: Arc<dyn ProcessManager>,
        log: Arc<dyn EventLog>,
        checkpoints: Arc<dyn EventStore>,
    ) -> Self {
        let status = Arc::new(WorkerStatus::new("process manager", manager.name()));
        Self { manager, log, checkpoints, batch_size: 200, status }
    }

    /// What the loop is doing (with the checkpoint it last stored).
    pub fn status(&self) -> Arc<WorkerStatus> {
        self.status.clone()
    }

    /// Handles one batch; returns how many events it covered (0: caught up).
    /// On a transient failure the checkpoint still moves past the events
    /// handled before it.
    pub async fn process_batch(&self) -> Result<usize, ProcessError> {
        self.step().await.map(|(events, _)| events)
    }

    /// One batch: how many events it covered, and the checkpoint afterwards.
    async fn step(&self) -> Result<(usize, Position), ProcessError> {
        let name = self.manager.name();
        let from = self.checkpoints.checkpoint(name).await?;
        let events = self.log.read(from, self.batch_size).await?;
        let mut done: Option<Position> = None;
        let mut failure = None;
        for event in &events {
            match self.manager.handle(event).await {
                Ok(()) => {}
                Err(ProcessError::Permanent(reason)) => {
                    tracing::error!(manager = name, position = event.position, event_type = %event.event_type, %reason, "event parked");
                    let letter = DeadLetter {
                        projection: name.to_owned(),
                        position: event.position,
                        event_id: event.event_id,
                        event_type: event.event_type.clone(),
                        error: reason,
                    };
                    if let Err(error) = self.checkpoints.park(letter).await {
                        failure = Some(ProcessError::Transient(format!("park the event: {error}")));
                        break;
                    }
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
            done = Some(event.position);
        }
        if let Some(position) = done {
            self.checkpoints.save_checkpoint(name, position).await?;
        }
        match failure {
            Some(error) => Err(error),
            None => Ok((events.len(), done.unwrap_or(from))),
        }
    }

    /// Runs until `cancel`, waiting on the log when caught up and backing
    /// off after failures.
    pub async fn run(&self, cancel: CancellationToken) {
        let (name, log) = (self.manager.name(), self.log.as_ref());
        drive("process manager", name, log, &self.status, &cancel, || async {
            match self.step().await? {
                (0, at) => Ok::<_, ProcessError>(Step::CaughtUp(at)),
                (_, at) => Ok(Step::Progressed(at)),
            }
        })
        .await
    }

    /// Runs like [`Self::run`], but only while this process holds the lease
    /// named after the manager, so one runner is active across processes.
    pub async fn run_leased(&self, leases: Arc<dyn Leases>, cancel: CancellationToken) {
        let name = self.manager.name();
        while !cancel.is_cancelled() {
            self.status.set(WorkerState::Standby);
            let lease = tokio::select! {
                _ = cancel.cancelled() => break,
                lease = leases.acquire(name) => lease,
            };
            let lease = match lease {
                Ok(lease) => lease,
                Err(error) => {
                    self.status.failed(&error);
                    tracing::warn!(manager = name, %error, "could not take the lease");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            tracing::info!(manager = name, epoch = lease.epoch(), "process manager active");
            let held = cancel.child_token();
            tokio::select! {
                _ = lease.lost() => tracing::warn!(manager = name, "lease lost; standing by"),
                _ = self.run(held.clone()) => {}
            }
            held.cancel();
        }
        self.status.set(WorkerState::Stopped);
    }
}
