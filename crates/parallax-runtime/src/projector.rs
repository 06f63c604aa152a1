//! ⑤ The projector: source → projection → read store, one batch at a time.
//!
//! Semantics: the source delivers at least once (a relay may publish twice,
//! a broker may redeliver after a rebalance); the projector makes the effect
//! exactly once. It keeps, per source partition, the projection's checkpoint
//! (the highest position absorbed and the source offset to resume from).
//! Each batch skips events at or below its partition's checkpoint, applies
//! the rest to a [`ViewTx`], and commits the view writes *together with* the
//! moved checkpoints, on the condition that no checkpoint has moved and no
//! document read has changed meanwhile. A second projector of the same
//! projection (racing for a partition during a rebalance, or sharing a row
//! across partitions) therefore never applies an event twice nor loses a
//! write: the loser re-reads its checkpoints and seeks back. A crash before
//! the commit loses nothing: the source is read again from the checkpoint.
//!
//! A poison event (one the projection cannot apply) goes to the dead-letter
//! table with its error, its half-applied changes are taken back, and the
//! projection goes on.
//!
//! Each event is applied inside a `project` span (debug level) carrying the
//! projection, partition, position and the event's trace id (its
//! [`TraceParent`](parallax_core::TraceParent)); once its batch commits it
//! logs `event projected` there. After every batch the projector records the
//! lag of its partitions on the [`Progress`] board.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parallax_core::{
    read_store::DeadLetter, Checkpoint, CheckpointMove, EventLog, EventSource, LogError, LogSource,
    Partition, Projection, ProjectionError, ReadStore, ReadStoreError, Stamp, ViewBatch, ViewTx,
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::consistency::Progress;
use crate::retry::Backoff;
use crate::status::{WorkerState, WorkerStatus};

/// How long a caught-up projector waits on its source before polling again.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// Why a batch was not committed. Every variant is transient: the loop retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectorError {
    /// The source could not be read.
    #[error("reading the source")]
    Log(#[from] LogError),
    /// The read store failed, or another projector moved first.
    #[error("writing the views")]
    ReadStore(#[from] ReadStoreError),
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// Events delivered by the source (duplicates included).
    pub delivered: usize,
    /// Events applied (or dead-lettered) for the first time.
    pub applied: usize,
}

/// Drives one projection.
pub struct Projector {
    projection: Arc<dyn Projection>,
    store: Arc<dyn ReadStore>,
    state: Mutex<SourceState>,
    batch_size: usize,
    progress: Arc<Progress>,
    status: Arc<WorkerStatus>,
}

/// The source and the checkpoints of the partitions it currently gives us.
struct SourceState {
    source: Box<dyn EventSource>,
    checkpoints: BTreeMap<Partition, Checkpoint>,
}

impl Projector {
    /// A projector of `projection` from the embedded `log` into `store`.
    pub fn new(projection: Arc<dyn Projection>, log: Arc<dyn EventLog>, store: Arc<dyn ReadStore>) -> Self {
        Self::from_source(projection, Box::new(LogSource::new(log)), store)
    }

    /// A projector of `projection` from any `source` (a broker's consumer
    /// group, say) into `store`, 500 events a batch.
    pub fn from_source(
        projection: Arc<dyn Projection>,
        source: Box<dyn EventSource>,
        store: Arc<dyn ReadStore>,
    ) -> Self {
        let status = Arc::new(WorkerStatus::new("projector", projection.name()));
        Self {
            projection,
            store,
            state: Mutex::new(SourceState { source, checkpoints: BTreeMap::new() }),
            batch_size: 500,
            progress: Arc::new(Progress::default()),
            status,
        }
    }

    /// At most `n` events per batch.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Publishes every committed checkpoint on `progress` and wakes its
    /// waiters (consistency waits in this process listen to it); shows its
    /// status and its partitions' lag there too.
    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        progress.attach(self.status.clone());
        self.progress = progress;
        self
    }

    /// What the loop is doing (running, failing, ...).
    pub fn status(&self) -> Arc<WorkerStatus> {
        self.status.clone()
    }

    /// The projection's name.
    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Projects one batch without waiting; returns how many events the
    /// source delivered (0: caught up).
    pub async fn project_batch(&self) -> Result<usize, ProjectorError> {
        self.step(Duration::ZERO).await.map(|outcome| outcome.delivered)
    }

    /// Projects until the source has nothing more right now.
    pub async fn catch_up(&self) -> Result<(), ProjectorError> {
        while self.step(Duration::ZERO).await?.delivered > 0 {}
        Ok(())
    }

    /// One batch, waiting up to `wait` for the source.
    pub async fn step(&self, wait: Duration) -> Result<BatchOutcome, ProjectorError> {
        let mut state = self.state.lock().await;
        let result = self.step_locked(&mut state, wait).await;
        if result.is_ok() {
            let checkpoints: Vec<(Partition, Checkpoint)> =
                state.checkpoints.iter().map(|(partition, at)| (*partition, *at)).collect();
            let lag = state.source.lag(&checkpoints).await;
            self.progress.set_lag(self.name(), lag);
        }
        if result.is_err() {
            // Whatever the source handed over was not committed: forget the
            // checkpoints (another projector may have moved them) and read
            // them again before the next batch.
            let partitions: Vec<Partition> = state.checkpoints.keys().copied().collect();
            for partition in partitions {
                if let Err(error) = self.resume(&mut state, partition).await {
                    tracing::warn!(projection = self.name(), partition, %error, "could not seek back");
                    state.checkpoints.remove(&partition);
                }
            }
        }
        result
    }

    /// Loads a partition's checkpoint and points the source at it.
    async fn resume(&self, state: &mut SourceState, partition: Partition) -> Result<(), ProjectorError> {
        let checkpoint = self.store.checkpoint(self.name(), partition).await?;
        state.source.seek(partition, checkpoint).await?;
        state.checkpoints.insert(partition, checkpoint);
        Ok(())
    }

    async fn step_locked(
        &self,
        state: &mut SourceState,
        wait: Duration,
    ) -> Result<BatchOutcome, ProjectorError> {
        let name = self.projection.name();
        let mut batch = state.source.next_batch(self.batch_size, wait).await?;
        loop {
            for partition in &batch.revoked {
                state.checkpoints.remove(partition);
            }
            for &partition in &batch.assigned {
                self.resume(state, partition).await?;
            }
            // A poll that only changed the assignment: poll again from the
            // checkpoints just loaded.
            if !batch.events.is_empty() || batch.assigned.is_empty() {
                break;
            }
            batch = state.source.next_batch(self.batch_size, wait).await?;
        }
        let delivered = batch.events.len();
        let mut moves: BTreeMap<Partition, CheckpointMove> = BTreeMap::new();
        let mut tx = ViewTx::new(self.store.as_ref());
        let wanted =
            batch.events.iter().flat_map(|sourced| self.projection.prefetch(&sourced.event)).collect();
        tx.prefetch(wanted).await?;
        let mut dead_letters = Vec::new();
        let mut applied = 0;
        let mut traced = Vec::new();
        for sourced in &batch.events {
            let Some(&from) = state.checkpoints.get(&sourced.partition) else {
                // Not (or no longer) ours: the partition's owner will apply it.
                continue;
            };
            let movement = moves.entry(sourced.partition).or_insert(CheckpointMove {
                partition: sourced.partition,
                from,
                to: from,
            });
            if sourced.offset < movement.to.offset {
                // From before the resume point (a fetch that raced a seek).
                continue;
            }
            movement.to.offset = movement.to.offset.max(sourced.offset + 1);
            let event = &sourced.event;
            if event.position <= movement.to.position {
                // Already absorbed: a republished or redelivered duplicate.
                continue;
            }
            movement.to.position = event.position;
            applied += 1;
            let span = tracing::debug_span!(
                "project",
                projection = name,
                partition = sourced.partition,
                position = event.position,
                trace_id = event.metadata.traceparent.map(|t| tracing::field::display(t.trace_id())),
            );
            tx.begin_event(Stamp { partition: sourced.partition, position: event.position });
            let outcome = self.projection.apply(&mut tx, event).instrument(span.clone()).await;
            if !span.is_disabled() {
                traced.push(span);
            }
            match outcome {
                Ok(()) => {}
                Err(ProjectionError::Poison(error)) => {
                    tracing::error!(projection = name, position = event.position, %error, "poison event dead-lettered");
                    tx.rollback_event();
                    dead_letters.push(DeadLetter {
                        projection: name.to_owned(),
                        position: event.position,
                        event_id: event.event_id,
                        event_type: event.event_type.clone(),
                        error,
                    });
                }
                Err(ProjectionError::Store(e)) => return Err(e.into()),
                Err(other) => {
                    return Err(ReadStoreError::store(
                        format!("{name} failed at position {}", event.position),
                        other,
                    )
                    .into())
                }
            }
        }
        moves.retain(|_, movement| movement.to != movement.from);
        if moves.is_empty() {
            return Ok(BatchOutcome { delivered, applied: 0 });
        }
        let (writes, mut reads) = tx.into_writes();
        if !state.source.partitioned() {
            // Every concurrent batch moves the one checkpoint: its
            // compare-and-set already serializes them.
            reads.clear();
        }
        let checkpoints: Vec<CheckpointMove> = moves.into_values().collect();
        self.store
            .commit(ViewBatch {
                projection: name.to_owned(),
                checkpoints: checkpoints.clone(),
                reads,
                writes,
                dead_letters,
            })
            .await?;
        for movement in checkpoints {
            state.checkpoints.insert(movement.partition, movement.to);
            self.progress.advance(name, movement.partition, movement.to);
        }
        self.progress.notify();
        for span in traced {
            tracing::debug!(parent: &span, "event projected");
        }
        Ok(BatchOutcome { delivered, applied })
    }

    /// Projects until `cancel`, waiting on the source when caught up and
    /// backing off after failures.
    pub async fn run(&self, cancel: CancellationToken) {
        let name = self.name();
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(5));
        tracing::info!(projection = name, "projector started");
        while !cancel.is_cancelled() {
            let step = tokio::select! {
                _ = cancel.cancelled() => break,
                step = self.step(IDLE_WAIT) => step,
            };
            match step {
                Ok(_) => {
                    backoff.succeeded();
                    self.status.set(WorkerState::Running);
                }
                Err(ProjectorError::ReadStore(
                    error @ (ReadStoreError::CheckpointMoved { .. } | ReadStoreError::Conflict { .. }),
                )) => {
                    tracing::debug!(projection = name, %error, "another projector moved first; re-reading");
                }
                Err(error) => {
                    self.status.failed(&error);
                    let delay = backoff.failed();
                    tracing::warn!(projection = name, error = %error_chain(&error), ?delay, "batch failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        self.status.set(WorkerState::Stopped);
        tracing::info!(projection = name, "projector stopped");
    }
}

/// An error with its causes, `outer: inner: root`, for one log line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
