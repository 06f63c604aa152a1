//! ⑤ The projector: log → projection → read store, one batch at a time.
//!
//! Semantics: the log delivers at least once; the projector makes the effect
//! exactly once. Each batch is read after the projection's checkpoint, applied
//! to a [`ViewTx`], and committed to the read store *together with* the new
//! checkpoint, on the condition that the checkpoint has not moved meanwhile
//! (so a second projector of the same projection, or a replay after a crash,
//! can never apply an event twice). A crash before the commit loses nothing:
//! the batch is read again.
//!
//! A poison event (one the projection cannot apply) goes to the dead-letter
//! table with its error, its half-applied changes are taken back, and the
//! projection goes on.

use std::sync::Arc;

use parallax_core::{
    read_store::DeadLetter, EventLog, LogError, Position, Projection, ProjectionError, ReadStore,
    ReadStoreError, ViewBatch, ViewTx,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::worker::{drive, Step};

/// Why a batch was not committed. Every variant is transient: the loop retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectorError {
    /// The log could not be read.
    #[error("reading the log")]
    Log(#[from] LogError),
    /// The read store failed, or another projector moved the checkpoint.
    #[error("writing the views")]
    ReadStore(#[from] ReadStoreError),
}

/// Drives one projection.
pub struct Projector {
    projection: Arc<dyn Projection>,
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadStore>,
    batch_size: usize,
    progress: Arc<Notify>,
}

impl Projector {
    /// A projector of `projection` from `log` into `store`, 500 events a batch.
    pub fn new(projection: Arc<dyn Projection>, log: Arc<dyn EventLog>, store: Arc<dyn ReadStore>) -> Self {
        Self { projection, log, store, batch_size: 500, progress: Arc::new(Notify::new()) }
    }

    /// At most `n` events per batch.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Notifies `progress` after every committed batch (consistency waiters
    /// listen to it).
    pub fn with_progress(mut self, progress: Arc<Notify>) -> Self {
        self.progress = progress;
        self
    }

    /// The projection's name.
    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Projects one batch; returns how many events it covered (0: caught up).
    pub async fn project_batch(&self) -> Result<usize, ProjectorError> {
        self.step().await.map(|(events, _)| events)
    }

    /// One batch: how many events it covered, and the checkpoint afterwards.
    async fn step(&self) -> Result<(usize, Position), ProjectorError> {
        let name = self.projection.name();
        let from = self.store.checkpoint(name).await?;
        let events = self.log.read(from, self.batch_size).await?;
        let Some(last) = events.last() else {
            return Ok((0, from));
        };
        let to = last.position;
        let mut tx = ViewTx::new(self.store.as_ref());
        let mut dead_letters = Vec::new();
        for event in &events {
            tx.begin_event();
            match self.projection.apply(&mut tx, event).await {
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
        let batch = ViewBatch {
            projection: name.to_owned(),
            from_checkpoint: from,
            to_checkpoint: to,
            writes: tx.into_writes(),
            dead_letters,
        };
        self.store.commit(batch).await?;
        self.progress.notify_waiters();
        Ok((events.len(), to))
    }

    /// Projects until caught up with the log's head as it was when called.
    pub async fn catch_up(&self) -> Result<Position, ProjectorError> {
        let head = self.log.head().await?;
        loop {
            let (events, at) = self.step().await?;
            if events == 0 || at >= head {
                return Ok(at);
            }
        }
    }

    /// Projects until `cancel`, waiting on the log when caught up and backing
    /// off after failures.
    pub async fn run(&self, cancel: CancellationToken) {
        drive("projector", self.projection.name(), self.log.as_ref(), &cancel, || async {
            match self.step().await {
                Ok((0, at)) => Ok(Step::CaughtUp(at)),
                Ok(_) => Ok(Step::Progressed),
                Err(ProjectorError::ReadStore(ReadStoreError::CheckpointMoved { .. })) => Ok(Step::Raced),
                Err(error) => Err(error),
            }
        })
        .await
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
