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
//! An event the projection fails to apply (an error of its own, such as
//! [`ProjectionError::Poison`], or a panic in `apply`) fails its batch:
//! nothing is committed, and the loop retries the batch after a backoff, so a
//! passing failure heals. The projector counts each event's failed attempts
//! (in memory, by partition and position; a success clears the count, a
//! restart starts afresh). At the last attempt ([`Projector::with_max_attempts`],
//! 3 by default) the event goes to the dead-letter table with its error, its
//! half-applied changes are taken back, the batch commits, and the
//! projection goes on. A read store failure ([`ProjectionError::Store`]) is
//! never held against the event: the store is down, not the event, and the
//! loop retries for as long as it lasts. [`crate::dead_letters`] retries a
//! dead letter after a fix.
//!
//! With a source of one partition (the embedded log) the batches need not
//! guard the documents they read: the one checkpoint serializes them. They
//! do while the projection has dead letters, so that a batch and a
//! concurrent retry of a dead letter writing the same document cannot
//! overwrite each other.
//!
//! A partition whose next event is not the next one the projection expects
//! stops: each message of a broker says which position came before it in
//! its partition ([`SourcedEvent::previous`], put there by the relay), and
//! an event whose previous position is beyond the partition's checkpoint
//! follows events the projection never saw (the broker's retention deleted
//! them, or a new generation started reading after they were gone). The
//! projector applies nothing more of that partition, moves neither its
//! position nor its offset, and reports a [`PartitionGap`] naming the
//! projection, the partition, the checkpoint and the missing positions:
//! every step returns it (after committing what the other partitions
//! brought) and the loop shows it as the worker's failing state, until the
//! partition is taken away or the projection is rebuilt from the event
//! store (Architecture invariant 21). An event that does not say (the
//! embedded log, a message the relay could not link) is not checked.
//!
//! Each event is applied inside a `project` span (debug level) carrying the
//! projection, partition, position and the event's trace id (its
//! [`TraceParent`](parallax_core::TraceParent)); once its batch commits it
//! logs `event projected` there. After every batch the projector records the
//! lag of its partitions on the [`Progress`] board.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use parallax_core::{
    read_store::DeadLetter, Checkpoint, CheckpointMove, EventLog, EventRecord, EventSource, LogError,
    LogSource, Partition, Position, Projection, ProjectionError, ReadStore, ReadStoreError, SourceBatch,
    SourcedEvent, Stamp, ViewBatch, ViewTx,
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::consistency::Progress;
use crate::retry::Backoff;
use crate::status::{WorkerState, WorkerStatus};

/// How long a caught-up projector waits on its source before polling again.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// Attempts at an event before it is dead-lettered, unless configured.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// A hole in a source partition: the next message of the partition follows
/// an event the projection never absorbed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{projection} stopped partition {partition} at its checkpoint, position {checkpoint}: the next message \
     there (offset {offset}, position {position}) follows position {previous}, so the partition's events \
     after position {checkpoint} up to position {previous} are missing from the source (deleted by the \
     broker's retention, say); nothing more of the partition is applied until the projection is rebuilt \
     from the event store"
)]
pub struct PartitionGap {
    /// The projection.
    pub projection: String,
    /// The source partition.
    pub partition: Partition,
    /// The partition's checkpoint: the highest position absorbed (0: none).
    pub checkpoint: Position,
    /// The position the next message says came before it in the partition:
    /// the last one missing.
    pub previous: Position,
    /// The next message's position.
    pub position: Position,
    /// The next message's offset.
    pub offset: u64,
}

/// Why a batch was not committed, or a partition stopped. The loop retries
/// every one: the source and the store for as long as they fail, an event
/// at most its `max_attempts` times before it is dead-lettered; a stopped
/// partition stays stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectorError {
    /// A partition is stopped at a hole in the source. What the other
    /// partitions brought was committed.
    #[error(transparent)]
    Gap(#[from] PartitionGap),
    /// The source could not be read.
    #[error("reading the source")]
    Log(#[from] LogError),
    /// The read store failed, or another projector moved first.
    #[error("writing the views")]
    ReadStore(#[from] ReadStoreError),
    /// The projection failed to apply an event (an error of its own or a
    /// panic), and it has attempts left: nothing was committed, the batch is
    /// retried.
    #[error(
        "{projection} failed to apply the event at position {position} (partition {partition}), \
         attempt {attempt} of {max_attempts} before it is dead-lettered: {error}"
    )]
    Apply {
        /// The projection.
        projection: String,
        /// The event's source partition.
        partition: Partition,
        /// The event's position.
        position: Position,
        /// This failure's number, from 1.
        attempt: u32,
        /// The attempt at which the event is dead-lettered instead.
        max_attempts: u32,
        /// What the projection said, or the panic's message.
        error: String,
    },
}

/// Why applying one event failed.
#[derive(Debug)]
pub(crate) enum ApplyFailure {
    /// The read store failed: not the event's fault.
    Store(ReadStoreError),
    /// The projection's own error, or its panic, as text.
    Failed(String),
}

/// Applies `event` through `tx`, turning a panic in the projection's code
/// into a failure with the panic's message.
pub(crate) async fn apply_caught(
    projection: &dyn Projection,
    tx: &mut ViewTx<'_>,
    event: &EventRecord,
) -> Result<(), ApplyFailure> {
    if !projection.handles(&event.event_type) {
        return Ok(());
    }
    tx.enter_tenant_of(event);
    // A panic leaves `tx` with whatever the event wrote so far; the caller
    // rolls the event back or drops the batch, so nothing half-done is kept.
    match AssertUnwindSafe(projection.apply(tx, event)).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(ProjectionError::Store(error))) => Err(ApplyFailure::Store(error)),
        Ok(Err(ProjectionError::Poison(error))) => Err(ApplyFailure::Failed(error)),
        Ok(Err(other)) => Err(ApplyFailure::Failed(error_chain(&other))),
        Err(panic) => Err(ApplyFailure::Failed(format!("panicked: {}", panic_message(panic.as_ref())))),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(message), _) => (*message).to_owned(),
        (None, Some(message)) => message.clone(),
        (None, None) => "(a panic without a message)".to_owned(),
    }
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
    max_attempts: u32,
    progress: Arc<Progress>,
    status: Arc<WorkerStatus>,
    event_lag: metrics::Histogram,
}

/// The histogram of each applied event's lag, in seconds: from its
/// `recorded_at` (when the command's handler made it, just before its
/// append committed) to the commit of the batch that applied it to the
/// views, by `projection`. Recorded through the `metrics` facade into the
/// recorder in effect when the projector (or its [`crate::Supervisor`]) was
/// made; events of types the projection does not handle are not counted.
pub const EVENT_LAG: &str = "parallax_projector_event_lag_seconds";

/// The source and the checkpoints of the partitions it currently gives us.
struct SourceState {
    source: Box<dyn EventSource>,
    checkpoints: BTreeMap<Partition, Checkpoint>,
    /// Partitions given to us whose checkpoint could not be loaded yet (the
    /// read store was down): their events are skipped until it is, and every
    /// batch tries again first. Forgetting them would stall the partition
    /// until the next rebalance.
    unresumed: BTreeSet<Partition>,
    /// Failed attempts at events not absorbed yet, by partition and position.
    failures: BTreeMap<(Partition, Position), u32>,
    /// Whether batches of an unpartitioned source guard what they read: while
    /// the projection has dead letters (a retry may write beside us).
    guard_reads: bool,
    /// The partition whose turn it is, for a store whose commits are not
    /// atomic (one partition per batch there; see `one_partition`).
    turn: Partition,
    /// Partitions stopped at a hole, until they are taken away: their
    /// events are skipped and their checkpoints stay where they are.
    stopped: BTreeMap<Partition, PartitionGap>,
}

/// What applying a batch's events leaves to commit.
#[derive(Default)]
struct Applied {
    /// Each partition's checkpoint: where the batch began, and past its
    /// last event of ours.
    moves: BTreeMap<Partition, CheckpointMove>,
    /// The events dead-lettered after their last attempt.
    dead_letters: Vec<DeadLetter>,
    /// Events applied (or dead-lettered).
    applied: usize,
    /// The events' spans, when tracing records them.
    traced: Vec<tracing::Span>,
    /// When each applied event of a type the projection handles was recorded.
    recorded: Vec<chrono::DateTime<chrono::Utc>>,
}

/// What the duplicate filter makes of an event.
enum Admission {
    /// The next event of its partition: apply it.
    Apply,
    /// Not (or no longer) ours, from before the resume point, or absorbed
    /// already.
    Skip,
    /// It follows events of its partition that were never absorbed.
    Gap {
        /// The partition's checkpoint.
        checkpoint: Position,
        /// The position before the event, beyond the checkpoint.
        previous: Position,
    },
}

/// Moves the checkpoint of `sourced`'s partition in `moves` past it, unless
/// it follows a hole; what to do with it.
fn advance(
    state: &SourceState,
    moves: &mut BTreeMap<Partition, CheckpointMove>,
    sourced: &SourcedEvent,
) -> Admission {
    let Some(&from) = state.checkpoints.get(&sourced.partition) else {
        // Not (or no longer) ours: the partition's owner will apply it.
        return Admission::Skip;
    };
    let movement = moves.entry(sourced.partition).or_insert(CheckpointMove {
        partition: sourced.partition,
        from,
        to: from,
    });
    if sourced.offset < movement.to.offset {
        // From before the resume point (a fetch that raced a seek).
        return Admission::Skip;
    }
    let checkpoint = movement.to.position;
    if let Some(previous) = sourced.previous.filter(|&previous| previous > checkpoint) {
        if sourced.event.position > checkpoint {
            return Admission::Gap { checkpoint, previous };
        }
    }
    movement.to.offset = movement.to.offset.max(sourced.offset + 1);
    if sourced.event.position <= checkpoint && !mutation_no_skip() {
        // Already absorbed: a republished or redelivered duplicate.
        return Admission::Skip;
    }
    movement.to.position = checkpoint.max(sourced.event.position);
    Admission::Apply
}

/// A test-only mutation control: in a debug build with
/// `PARALLAX_TEST_MUTATION_NO_SKIP` set (read once), the skip above is off
/// and duplicates are applied again, breaking invariant 8 on purpose so the
/// fault suite can show that `shop check` sees it. Release builds ignore it.
fn mutation_no_skip() -> bool {
    #[cfg(debug_assertions)]
    {
        static NO_SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *NO_SKIP.get_or_init(|| std::env::var_os("PARALLAX_TEST_MUTATION_NO_SKIP").is_some())
    }
    #[cfg(not(debug_assertions))]
    false
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
        let projection_name = projection.name();
        Self {
            projection,
            store,
            state: Mutex::new(SourceState {
                source,
                checkpoints: BTreeMap::new(),
                unresumed: BTreeSet::new(),
                failures: BTreeMap::new(),
                guard_reads: false,
                turn: 0,
                stopped: BTreeMap::new(),
            }),
            batch_size: 500,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            progress: Arc::new(Progress::default()),
            status,
            event_lag: metrics::histogram!(EVENT_LAG, "projection" => projection_name),
        }
    }

    /// Records each applied event's lag ([`EVENT_LAG`]) into `histogram`
    /// rather than the one taken from the recorder in effect at
    /// construction.
    pub fn with_event_lag(mut self, histogram: metrics::Histogram) -> Self {
        self.event_lag = histogram;
        self
    }

    /// At most `n` events per batch.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Dead-letters an event at its `n`-th failed attempt (at least 1: then
    /// at its first failure) instead of [`DEFAULT_MAX_ATTEMPTS`].
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
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

    /// Projects until the source has nothing more right now. An event the
    /// projection fails to apply is attempted again at once until it is
    /// dead-lettered; other errors are returned.
    pub async fn catch_up(&self) -> Result<(), ProjectorError> {
        loop {
            match self.step(Duration::ZERO).await {
                Ok(outcome) if outcome.delivered == 0 => return Ok(()),
                Ok(_) | Err(ProjectorError::Apply { .. }) => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// One batch, waiting up to `wait` for the source.
    pub async fn step(&self, wait: Duration) -> Result<BatchOutcome, ProjectorError> {
        let mut state = self.state.lock().await;
        let result = self.step_locked(&mut state, wait).await;
        // A stopped partition fails the step after the others committed.
        let committed = matches!(result, Ok(_) | Err(ProjectorError::Gap(_)));
        if committed {
            let checkpoints: Vec<(Partition, Checkpoint)> =
                state.checkpoints.iter().map(|(partition, at)| (*partition, *at)).collect();
            let lag = state.source.lag(&checkpoints).await;
            self.progress.set_lag(self.name(), lag);
        }
        if !committed {
            // Whatever the source handed over was not committed: forget the
            // checkpoints (another projector may have moved them) and read
            // them again before the next batch.
            let partitions: Vec<Partition> = state.checkpoints.keys().copied().collect();
            for partition in partitions {
                if let Err(error) = self.resume(&mut state, partition).await {
                    tracing::warn!(projection = self.name(), partition, %error, "could not seek back; trying again before the next batch");
                    state.checkpoints.remove(&partition);
                    state.unresumed.insert(partition);
                }
            }
        }
        result
    }

    /// Keeps the events of one source partition only (taking turns), and
    /// points the source back at the others' checkpoints to read theirs
    /// again. A store whose commits are not atomic records on each written
    /// document the last event it absorbed, one per write: with events of two
    /// partitions changing one document (a shared row) in one batch, a crash
    /// between the rows and the checkpoints would leave the first
    /// partition's event unrecorded, and its replay would apply it twice.
    async fn one_partition(
        &self,
        state: &mut SourceState,
        events: &mut Vec<parallax_core::SourcedEvent>,
    ) -> Result<(), ProjectorError> {
        let present: BTreeSet<Partition> = events
            .iter()
            .map(|sourced| sourced.partition)
            .filter(|partition| {
                state.checkpoints.contains_key(partition) && !state.stopped.contains_key(partition)
            })
            .collect();
        let Some(&chosen) = present.range(state.turn..).next().or_else(|| present.first()) else {
            return Ok(());
        };
        state.turn = chosen + 1;
        for &partition in present.iter().filter(|&&partition| partition != chosen) {
            let checkpoint = state.checkpoints[&partition];
            state.source.seek(partition, checkpoint).await?;
        }
        events.retain(|sourced| sourced.partition == chosen);
        Ok(())
    }

    /// Resumes the partitions whose checkpoint could not be loaded before.
    async fn resume_unresumed(&self, state: &mut SourceState) -> Result<(), ProjectorError> {
        while let Some(&partition) = state.unresumed.first() {
            self.resume(state, partition).await?;
            state.unresumed.remove(&partition);
        }
        Ok(())
    }

    /// Loads a partition's checkpoint and points the source at it.
    async fn resume(&self, state: &mut SourceState, partition: Partition) -> Result<(), ProjectorError> {
        let checkpoint = self.store.checkpoint(self.name(), partition).await?;
        state.source.seek(partition, checkpoint).await?;
        state.checkpoints.insert(partition, checkpoint);
        if !state.source.partitioned() {
            state.guard_reads = !self.store.dead_letters(self.name()).await?.is_empty();
        }
        Ok(())
    }

    async fn step_locked(
        &self,
        state: &mut SourceState,
        wait: Duration,
    ) -> Result<BatchOutcome, ProjectorError> {
        let mut batch = self.next_batch(state, wait).await?;
        if !self.store.commits_atomically() && state.source.partitioned() {
            self.one_partition(state, &mut batch.events).await?;
        }
        let delivered = batch.events.len();
        let mut tx = ViewTx::new(self.store.as_ref());
        let handled = batch
            .events
            .iter()
            .map(|sourced| &sourced.event)
            .filter(|event| self.projection.handles(&event.event_type));
        tx.prefetch(self.projection.as_ref(), handled).await?;
        let Applied { mut moves, dead_letters, applied, traced, recorded } =
            self.apply_batch(state, &mut tx, &batch.events).await?;
        moves.retain(|_, movement| movement.to != movement.from);
        let applied = if moves.is_empty() {
            0
        } else {
            self.commit(state, tx, moves, dead_letters).await?;
            let now = chrono::Utc::now();
            for at in recorded {
                self.event_lag.record((now - at).as_seconds_f64().max(0.0));
            }
            for span in traced {
                tracing::debug!(parent: &span, "event projected");
            }
            applied
        };
        match state.stopped.values().next() {
            Some(gap) => Err(gap.clone().into()),
            None => Ok(BatchOutcome { delivered, applied }),
        }
    }

    /// The next poll that brings events or leaves the assignment as it
    /// was, the partitions revoked and assigned meanwhile absorbed.
    async fn next_batch(
        &self,
        state: &mut SourceState,
        wait: Duration,
    ) -> Result<SourceBatch, ProjectorError> {
        self.resume_unresumed(state).await?;
        let mut batch = state.source.next_batch(self.batch_size, wait).await?;
        loop {
            for partition in &batch.revoked {
                state.checkpoints.remove(partition);
                state.unresumed.remove(partition);
                state.stopped.remove(partition);
                // Its new owner counts the attempts at its events.
                state.failures.retain(|&(of, _), _| of != *partition);
            }
            state.unresumed.extend(batch.assigned.iter().copied());
            self.resume_unresumed(state).await?;
            // A poll that only changed the assignment: poll again from the
            // checkpoints just loaded.
            if !batch.events.is_empty() || batch.assigned.is_empty() {
                return Ok(batch);
            }
            batch = state.source.next_batch(self.batch_size, wait).await?;
        }
    }

    /// Applies the events of ours that are not absorbed yet, in order; an
    /// event that fails is retried with its batch, or dead-lettered after
    /// its last attempt.
    async fn apply_batch(
        &self,
        state: &mut SourceState,
        tx: &mut ViewTx<'_>,
        events: &[SourcedEvent],
    ) -> Result<Applied, ProjectorError> {
        let name = self.projection.name();
        let mut applied = Applied::default();
        for sourced in events {
            if state.stopped.contains_key(&sourced.partition) {
                continue;
            }
            match advance(state, &mut applied.moves, sourced) {
                Admission::Apply => {}
                Admission::Skip => continue,
                Admission::Gap { checkpoint, previous } => {
                    self.stop(state, sourced, checkpoint, previous);
                    continue;
                }
            }
            let event = &sourced.event;
            applied.applied += 1;
            if self.projection.handles(&event.event_type) {
                applied.recorded.push(event.recorded_at);
            }
            let span = tracing::debug_span!(
                "project",
                projection = name,
                partition = sourced.partition,
                position = event.position,
                trace_id = event.metadata.traceparent.map(|t| tracing::field::display(t.trace_id())),
            );
            tx.begin_event(Stamp { partition: sourced.partition, position: event.position });
            let outcome = apply_caught(self.projection.as_ref(), tx, event).instrument(span.clone()).await;
            if !span.is_disabled() {
                applied.traced.push(span);
            }
            let error = match outcome {
                Ok(()) => {
                    state.failures.remove(&(sourced.partition, event.position));
                    continue;
                }
                // The store is down, not the event: not an attempt.
                Err(ApplyFailure::Store(error)) => return Err(error.into()),
                Err(ApplyFailure::Failed(error)) => error,
            };
            let dead_letter = self.failed_attempt(state, sourced, error)?;
            tx.rollback_event();
            applied.dead_letters.push(dead_letter);
        }
        Ok(applied)
    }

    /// Stops `sourced`'s partition at the hole before it.
    fn stop(
        &self,
        state: &mut SourceState,
        sourced: &SourcedEvent,
        checkpoint: Position,
        previous: Position,
    ) {
        let gap = PartitionGap {
            projection: self.projection.name().to_owned(),
            partition: sourced.partition,
            checkpoint,
            previous,
            position: sourced.event.position,
            offset: sourced.offset,
        };
        tracing::error!(
            projection = gap.projection,
            partition = gap.partition,
            checkpoint,
            missing_through = previous,
            position = gap.position,
            offset = gap.offset,
            "events missing from the source; partition stopped"
        );
        state.stopped.insert(sourced.partition, gap);
    }

    /// Counts a failed attempt at `sourced`: an error that retries its batch
    /// while attempts are left, else the event's dead letter.
    fn failed_attempt(
        &self,
        state: &mut SourceState,
        sourced: &SourcedEvent,
        error: String,
    ) -> Result<DeadLetter, ProjectorError> {
        let name = self.projection.name();
        let event = &sourced.event;
        let attempt = state.failures.entry((sourced.partition, event.position)).or_insert(0);
        *attempt += 1;
        let attempt = *attempt;
        if attempt < self.max_attempts {
            tracing::warn!(
                projection = name,
                partition = sourced.partition,
                position = event.position,
                event_type = %event.event_type,
                attempt,
                max_attempts = self.max_attempts,
                %error,
                "event failed; its batch will be retried"
            );
            return Err(ProjectorError::Apply {
                projection: name.to_owned(),
                partition: sourced.partition,
                position: event.position,
                attempt,
                max_attempts: self.max_attempts,
                error,
            });
        }
        tracing::error!(
            projection = name,
            partition = sourced.partition,
            position = event.position,
            event_type = %event.event_type,
            attempts = attempt,
            %error,
            "poison event dead-lettered"
        );
        Ok(DeadLetter {
            projection: name.to_owned(),
            position: event.position,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            error,
        })
    }

    /// Commits the batch's writes, dead letters and checkpoint `moves`, then
    /// moves ours and publishes them on the progress board.
    async fn commit(
        &self,
        state: &mut SourceState,
        tx: ViewTx<'_>,
        moves: BTreeMap<Partition, CheckpointMove>,
        dead_letters: Vec<DeadLetter>,
    ) -> Result<(), ProjectorError> {
        let name = self.projection.name();
        let (writes, mut reads) = tx.into_writes();
        if !state.source.partitioned() && !state.guard_reads {
            // Every concurrent batch moves the one checkpoint: its
            // compare-and-set already serializes them.
            reads.clear();
        }
        let checkpoints: Vec<CheckpointMove> = moves.into_values().collect();
        let dead_lettered = !dead_letters.is_empty();
        self.store
            .commit(ViewBatch {
                projection: name.to_owned(),
                checkpoints: checkpoints.clone(),
                reads,
                writes,
                dead_letters,
                resolved_dead_letters: Vec::new(),
            })
            .await?;
        state.guard_reads |= dead_lettered;
        for movement in checkpoints {
            state.checkpoints.insert(movement.partition, movement.to);
            self.progress.advance(name, movement.partition, movement.to);
        }
        // Events at or below a checkpoint are absorbed: their counts are done.
        let SourceState { checkpoints, failures, .. } = state;
        failures.retain(|(partition, position), _| {
            checkpoints.get(partition).is_none_or(|at| *position > at.position)
        });
        Ok(())
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
                Err(ProjectorError::Gap(gap)) => {
                    // Logged when found; the other partitions go on at full speed.
                    backoff.succeeded();
                    self.status.failed(&gap);
                }
                Err(ProjectorError::ReadStore(
                    error @ (ReadStoreError::CheckpointMoved { .. } | ReadStoreError::Conflict { .. }),
                )) => {
                    tracing::debug!(projection = name, %error, "another projector moved first; re-reading");
                }
                Err(error) => {
                    self.status.failed(&error);
                    let delay = backoff.failed();
                    if matches!(error, ProjectorError::Apply { .. }) {
                        // Logged at warn where it failed, with its attempt.
                        tracing::debug!(projection = name, ?delay, "retrying the batch");
                    } else {
                        tracing::warn!(projection = name, error = %error_chain(&error), ?delay, "batch failed; retrying");
                    }
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
