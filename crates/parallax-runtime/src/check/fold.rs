//! Projections rebuilt from exactly the events checked.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use parallax_core::{
    Checkpoint, ClusteringRange, DeadLetter, DocKey, EventLog, EventRecord, LogError, Page, Partition,
    Position, Projection, ReadStore, ReadStoreError, Revision, StoredDocument, ViewBatch,
};
use serde_json::Value;

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
impl ReadStore for Touched {
    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(Value, Revision)>, ReadStoreError> {
        self.inner.get_with_revision(view, key).await
    }

    async fn get_many(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<(Value, Revision)>>, ReadStoreError> {
        self.inner.get_many(keys).await
    }

    async fn get_many_stored(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<StoredDocument>>, ReadStoreError> {
        self.inner.get_many_stored(keys).await
    }

    fn commits_atomically(&self) -> bool {
        self.inner.commits_atomically()
    }

    async fn declare_views(&self, views: &[parallax_core::ViewSpec]) -> Result<(), ReadStoreError> {
        self.inner.declare_views(views).await
    }

    async fn scan(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page, ReadStoreError> {
        self.inner.scan(view, partition, range, limit).await
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

    async fn checkpoint(&self, projection: &str, partition: Partition) -> Result<Checkpoint, ReadStoreError> {
        self.inner.checkpoint(projection, partition).await
    }

    async fn checkpoints(&self, projection: &str) -> Result<Vec<(Partition, Checkpoint)>, ReadStoreError> {
        self.inner.checkpoints(projection).await
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, ReadStoreError> {
        self.inner.dead_letters(projection).await
    }
}
