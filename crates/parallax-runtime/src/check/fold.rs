//! Projections rebuilt from exactly the events checked.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use parallax_core::{
    DeadLetter, EventLog, EventRecord, LogError, Position, Projection, ReadStore, ReadStoreError,
    ReadStoreLayer, ViewBatch,
};

use super::documents::{documents, Documents};
use crate::{Projector, ProjectorError};

/// Projections rebuilt from scratch.
#[derive(Debug, Clone)]
pub struct Fold {
    /// Every document the rebuild left.
    pub documents: Documents,
    /// The (view, partition) pairs the rebuild wrote (put or deleted): the
    /// ones to compare, with those that hold documents in the read DB.
    pub partitions: BTreeSet<(String, String)>,
    /// Events the rebuild could not apply.
    pub dead_letters: Vec<DeadLetter>,
}

/// Why [`fold`] did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FoldError {
    /// A projection failed otherwise than by dead-lettering an event.
    #[error("fold {projection}")]
    Project {
        /// The projection.
        projection: String,
        /// The projector's error.
        #[source]
        source: ProjectorError,
    },
    /// The fold's store could not list a projection's dead letters.
    #[error(transparent)]
    DeadLetters(ReadStoreError),
    /// The fold's store could not be read back.
    #[error("read the fold")]
    Read(#[source] ReadStoreError),
}

/// Rebuilds `projections` from `events` (in position order, as the store
/// holds them) into `store`, which must be fresh and empty, and reads back
/// every document it wrote.
///
/// # Errors
/// When a projection fails or `store` does.
pub async fn fold(
    projections: &[Arc<dyn Projection>],
    events: Arc<Vec<EventRecord>>,
    store: Arc<dyn ReadStore>,
) -> Result<Fold, FoldError> {
    let store = Arc::new(Touched { inner: store, partitions: Mutex::default() });
    let log: Arc<dyn EventLog> = Arc::new(Recorded(events));
    let mut dead_letters = Vec::new();
    for projection in projections {
        let name = projection.name();
        Projector::new(Arc::clone(projection), Arc::clone(&log), Arc::clone(&store) as Arc<dyn ReadStore>)
            .catch_up()
            .await
            .map_err(|source| FoldError::Project { projection: name.to_owned(), source })?;
        dead_letters.extend(store.dead_letters(name).await.map_err(FoldError::DeadLetters)?);
    }
    let partitions = store.partitions.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let documents = documents(store.as_ref(), &partitions).await.map_err(FoldError::Read)?;
    Ok(Fold { documents, partitions, dead_letters })
}

/// Events held in memory as a log: the fold reads exactly the events checked.
pub(super) struct Recorded(pub(super) Arc<Vec<EventRecord>>);

#[async_trait]
impl EventLog for Recorded {
    async fn read(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, LogError> {
        let start = self.0.partition_point(|event| event.position <= after);
        Ok(self.0[start..].iter().take(limit).cloned().collect())
    }

    async fn wait_beyond(&self, _after: Position, _timeout: Duration) {}

    async fn head(&self) -> Result<Position, LogError> {
        Ok(self.0.last().map_or(0, |last| last.position))
    }
}

/// A read store that remembers which (view, partition) pairs were written.
struct Touched {
    inner: Arc<dyn ReadStore>,
    partitions: Mutex<BTreeSet<(String, String)>>,
}

#[async_trait]
impl ReadStoreLayer for Touched {
    fn inner(&self) -> &dyn ReadStore {
        self.inner.as_ref()
    }

    async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError> {
        let written: Vec<(String, String)> = batch
            .writes
            .iter()
            .map(|write| (write.view().to_owned(), write.key().partition.clone()))
            .collect();
        self.inner.commit(batch).await?;
        self.partitions.lock().unwrap_or_else(PoisonError::into_inner).extend(written);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use parallax_core::read_store::recorder::{assert_forwards, Recorder};

    use super::Touched;

    #[tokio::test]
    async fn the_touch_recording_store_forwards_every_method() {
        let recorder = Arc::new(Recorder::default());
        let store = Touched { inner: recorder.clone(), partitions: Mutex::default() };
        assert_forwards(&store, &recorder, &[]).await;
    }
}
