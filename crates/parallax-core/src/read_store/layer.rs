//! Decorators of a read store that override only what they change.
//!
//! A decorator (a probe that counts, a fault injector, the generation
//! resolver) implements [`ReadStoreLayer`]: it names the store it wraps, and
//! every method it does not override forwards to that store, unchanged. The
//! blanket implementations below make every layer a [`ReadStore`], so a
//! decorator cannot forget a method, and a method added to the port is
//! forwarded by every decorator at once.
//!
//! ```
//! use async_trait::async_trait;
//! use parallax_core::read_store::{ReadStoreLayer, ViewBatch};
//! use parallax_core::{ReadStore, ReadStoreError};
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! /// Counts commits; everything else goes straight to `inner`.
//! struct CountCommits {
//!     inner: Box<dyn ReadStore>,
//!     commits: AtomicU64,
//! }
//!
//! #[async_trait]
//! impl ReadStoreLayer for CountCommits {
//!     fn inner(&self) -> &dyn ReadStore {
//!         self.inner.as_ref()
//!     }
//!
//!     async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError> {
//!         self.commits.fetch_add(1, Ordering::Relaxed);
//!         self.inner.commit(batch).await
//!     }
//! }
//! ```

use async_trait::async_trait;

use super::{
    ClusteringRange, DeadLetter, DocKey, Page, ReadStore, ReadStoreError, Revision, StoredDocument,
    ViewAdmin, ViewBatch, ViewCommitter, ViewReader,
};
use crate::log::{Checkpoint, Partition};
use crate::view::ViewSpec;

/// A read store that wraps another: every method forwards to
/// [`ReadStoreLayer::inner`] unless the layer overrides it. Every layer is a
/// [`ReadStore`].
#[async_trait]
pub trait ReadStoreLayer: Send + Sync {
    /// The store this layer wraps.
    fn inner(&self) -> &dyn ReadStore;

    /// See [`ViewReader::get`].
    async fn get(&self, view: &str, key: &DocKey) -> Result<Option<serde_json::Value>, ReadStoreError> {
        self.inner().get(view, key).await
    }

    /// See [`ViewReader::get_with_revision`].
    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(serde_json::Value, Revision)>, ReadStoreError> {
        self.inner().get_with_revision(view, key).await
    }

    /// See [`ViewReader::get_many`].
    async fn get_many(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<(serde_json::Value, Revision)>>, ReadStoreError> {
        self.inner().get_many(keys).await
    }

    /// See [`ViewReader::scan`].
    async fn scan(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page, ReadStoreError> {
        self.inner().scan(view, partition, range, limit).await
    }

    /// See [`ViewReader::get_json`].
    async fn get_json(&self, view: &str, key: &DocKey) -> Result<Option<String>, ReadStoreError> {
        self.inner().get_json(view, key).await
    }

    /// See [`ViewReader::scan_json`].
    async fn scan_json(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page<String>, ReadStoreError> {
        self.inner().scan_json(view, partition, range, limit).await
    }

    /// See [`ViewCommitter::commits_atomically`].
    fn commits_atomically(&self) -> bool {
        self.inner().commits_atomically()
    }

    /// See [`ViewCommitter::get_many_stored`].
    async fn get_many_stored(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<StoredDocument>>, ReadStoreError> {
        self.inner().get_many_stored(keys).await
    }

    /// See [`ViewCommitter::commit`].
    async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError> {
        self.inner().commit(batch).await
    }

    /// See [`ViewCommitter::checkpoint`].
    async fn checkpoint(&self, projection: &str, partition: Partition) -> Result<Checkpoint, ReadStoreError> {
        self.inner().checkpoint(projection, partition).await
    }

    /// See [`ViewCommitter::checkpoints`].
    async fn checkpoints(&self, projection: &str) -> Result<Vec<(Partition, Checkpoint)>, ReadStoreError> {
        self.inner().checkpoints(projection).await
    }

    /// See [`ViewCommitter::dead_letters`].
    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, ReadStoreError> {
        self.inner().dead_letters(projection).await
    }

    /// See [`ViewAdmin::declare_views`].
    async fn declare_views(&self, views: &[ViewSpec]) -> Result<(), ReadStoreError> {
        self.inner().declare_views(views).await
    }

    /// See [`ViewAdmin::drop_projection`].
    async fn drop_projection(&self, projection: &str, views: &[String]) -> Result<(), ReadStoreError> {
        self.inner().drop_projection(projection, views).await
    }

    /// See [`ViewAdmin::partitions`].
    async fn partitions(&self, view: &str) -> Result<Vec<String>, ReadStoreError> {
        self.inner().partitions(view).await
    }
}

// Every method of the three traits is written out below, defaults included,
// so that none falls back to a trait default instead of the layer.

#[async_trait]
impl<L: ReadStoreLayer> ViewReader for L {
    async fn get(&self, view: &str, key: &DocKey) -> Result<Option<serde_json::Value>, ReadStoreError> {
        ReadStoreLayer::get(self, view, key).await
    }

    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(serde_json::Value, Revision)>, ReadStoreError> {
        ReadStoreLayer::get_with_revision(self, view, key).await
    }

    async fn get_many(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<(serde_json::Value, Revision)>>, ReadStoreError> {
        ReadStoreLayer::get_many(self, keys).await
    }

    async fn scan(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page, ReadStoreError> {
        ReadStoreLayer::scan(self, view, partition, range, limit).await
    }

    async fn get_json(&self, view: &str, key: &DocKey) -> Result<Option<String>, ReadStoreError> {
        ReadStoreLayer::get_json(self, view, key).await
    }

    async fn scan_json(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page<String>, ReadStoreError> {
        ReadStoreLayer::scan_json(self, view, partition, range, limit).await
    }
}

#[async_trait]
impl<L: ReadStoreLayer> ViewCommitter for L {
    fn commits_atomically(&self) -> bool {
        ReadStoreLayer::commits_atomically(self)
    }

    async fn get_many_stored(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<StoredDocument>>, ReadStoreError> {
        ReadStoreLayer::get_many_stored(self, keys).await
    }

    async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError> {
        ReadStoreLayer::commit(self, batch).await
    }

    async fn checkpoint(&self, projection: &str, partition: Partition) -> Result<Checkpoint, ReadStoreError> {
        ReadStoreLayer::checkpoint(self, projection, partition).await
    }

    async fn checkpoints(&self, projection: &str) -> Result<Vec<(Partition, Checkpoint)>, ReadStoreError> {
        ReadStoreLayer::checkpoints(self, projection).await
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, ReadStoreError> {
        ReadStoreLayer::dead_letters(self, projection).await
    }
}

#[async_trait]
impl<L: ReadStoreLayer> ViewAdmin for L {
    async fn declare_views(&self, views: &[ViewSpec]) -> Result<(), ReadStoreError> {
        ReadStoreLayer::declare_views(self, views).await
    }

    async fn drop_projection(&self, projection: &str, views: &[String]) -> Result<(), ReadStoreError> {
        ReadStoreLayer::drop_projection(self, projection, views).await
    }

    async fn partitions(&self, view: &str) -> Result<Vec<String>, ReadStoreError> {
        ReadStoreLayer::partitions(self, view).await
    }
}
