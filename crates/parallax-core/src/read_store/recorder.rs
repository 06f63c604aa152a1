//! A read store that records which of its methods were called, to check
//! that a decorator forwards every method it does not deliberately keep to
//! itself (feature `testing`).

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::{
    ClusteringRange, DeadLetter, DocKey, Page, ReadStore, ReadStoreError, Revision, StoredDocument,
    ViewAdmin, ViewBatch, ViewCommitter, ViewReader,
};
use crate::log::{Checkpoint, Partition};
use crate::view::ViewSpec;

/// A method of the read store port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Method {
    Get,
    GetWithRevision,
    GetMany,
    Scan,
    GetJson,
    ScanJson,
    CommitsAtomically,
    GetManyStored,
    Commit,
    Checkpoint,
    Checkpoints,
    DeadLetters,
    DeclareViews,
    DropProjection,
    Partitions,
}

impl Method {
    /// Every method of [`ViewReader`], [`ViewCommitter`] and [`ViewAdmin`].
    /// [`Recorder`] implements each of them without a trait default, so a
    /// method added to the port without a default fails to compile here
    /// until it is listed.
    pub const ALL: [Method; 15] = [
        Method::Get,
        Method::GetWithRevision,
        Method::GetMany,
        Method::Scan,
        Method::GetJson,
        Method::ScanJson,
        Method::CommitsAtomically,
        Method::GetManyStored,
        Method::Commit,
        Method::Checkpoint,
        Method::Checkpoints,
        Method::DeadLetters,
        Method::DeclareViews,
        Method::DropProjection,
        Method::Partitions,
    ];

    /// Calls this method on `store` with placeholder arguments; the answer
    /// (or error) is dropped.
    pub async fn call(self, store: &dyn ReadStore) {
        let key = DocKey::partition("p");
        let keys = [("v".to_owned(), key.clone())];
        let range = ClusteringRange::default();
        let _ = match self {
            Method::Get => store.get("v", &key).await.map(drop),
            Method::GetWithRevision => store.get_with_revision("v", &key).await.map(drop),
            Method::GetMany => store.get_many(&keys).await.map(drop),
            Method::Scan => store.scan("v", "p", &range, 10).await.map(drop),
            Method::GetJson => store.get_json("v", &key).await.map(drop),
            Method::ScanJson => store.scan_json("v", "p", &range, 10).await.map(drop),
            Method::CommitsAtomically => {
                let _atomic = store.commits_atomically();
                Ok(())
            }
            Method::GetManyStored => store.get_many_stored(&keys).await.map(drop),
            Method::Commit => store.commit(ViewBatch::empty("p")).await,
            Method::Checkpoint => store.checkpoint("p", 0).await.map(drop),
            Method::Checkpoints => store.checkpoints("p").await.map(drop),
            Method::DeadLetters => store.dead_letters("p").await.map(drop),
            Method::DeclareViews => store.declare_views(&[ViewSpec::owned("v")]).await,
            Method::DropProjection => store.drop_projection("p", &["v".to_owned()]).await,
            Method::Partitions => store.partitions("v").await.map(drop),
        };
    }
}

/// A read store holding nothing that records every call it receives.
/// [`ViewCommitter::commits_atomically`] answers `false`, the answer a
/// decorator must never turn into `true` by omission.
#[derive(Debug, Default)]
pub struct Recorder {
    calls: Mutex<Vec<Method>>,
}

impl Recorder {
    fn record(&self, method: Method) {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).push(method);
    }

    /// Returns and forgets the calls received so far.
    pub fn take(&self) -> Vec<Method> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Checks that `decorated`, a decorator over `recorder`, passes every
/// method of the port on to it, except those in `kept` (what the decorator
/// deliberately answers itself, such as a read-only store refusing commits);
/// and that it reports `recorder`'s [`ViewCommitter::commits_atomically`].
///
/// # Panics
///
/// Names every method that did not reach `recorder`.
pub async fn assert_forwards(decorated: &dyn ReadStore, recorder: &Recorder, kept: &[Method]) {
    let mut missing = Vec::new();
    for method in Method::ALL {
        recorder.take();
        method.call(decorated).await;
        if !kept.contains(&method) && !recorder.take().contains(&method) {
            missing.push(method);
        }
    }
    assert!(missing.is_empty(), "the decorator does not forward {missing:?}");
    assert!(
        kept.contains(&Method::CommitsAtomically) || !decorated.commits_atomically(),
        "the decorator claims atomic commits over a store without them"
    );
}

#[async_trait]
impl ViewReader for Recorder {
    async fn get(&self, _view: &str, _key: &DocKey) -> Result<Option<serde_json::Value>, ReadStoreError> {
        self.record(Method::Get);
        Ok(None)
    }

    async fn get_with_revision(
        &self,
        _view: &str,
        _key: &DocKey,
    ) -> Result<Option<(serde_json::Value, Revision)>, ReadStoreError> {
        self.record(Method::GetWithRevision);
        Ok(None)
    }

    async fn get_many(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<(serde_json::Value, Revision)>>, ReadStoreError> {
        self.record(Method::GetMany);
        Ok(vec![None; keys.len()])
    }

    async fn scan(
        &self,
        _view: &str,
        _partition: &str,
        _range: &ClusteringRange,
        _limit: usize,
    ) -> Result<Page, ReadStoreError> {
        self.record(Method::Scan);
        Ok(Page { documents: Vec::new(), next_cursor: None })
    }

    async fn get_json(&self, _view: &str, _key: &DocKey) -> Result<Option<String>, ReadStoreError> {
        self.record(Method::GetJson);
        Ok(None)
    }

    async fn scan_json(
        &self,
        _view: &str,
        _partition: &str,
        _range: &ClusteringRange,
        _limit: usize,
    ) -> Result<Page<String>, ReadStoreError> {
        self.record(Method::ScanJson);
        Ok(Page { documents: Vec::new(), next_cursor: None })
    }
}

#[async_trait]
impl ViewCommitter for Recorder {
    fn commits_atomically(&self) -> bool {
        self.record(Method::CommitsAtomically);
        false
    }

    async fn get_many_stored(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<StoredDocument>>, ReadStoreError> {
        self.record(Method::GetManyStored);
        Ok(vec![None; keys.len()])
    }

    async fn commit(&self, _batch: ViewBatch) -> Result<(), ReadStoreError> {
        self.record(Method::Commit);
        Ok(())
    }

    async fn checkpoint(
        &self,
        _projection: &str,
        _partition: Partition,
    ) -> Result<Checkpoint, ReadStoreError> {
        self.record(Method::Checkpoint);
        Ok(Checkpoint::default())
    }

    async fn checkpoints(&self, _projection: &str) -> Result<Vec<(Partition, Checkpoint)>, ReadStoreError> {
        self.record(Method::Checkpoints);
        Ok(Vec::new())
    }

    async fn dead_letters(&self, _projection: &str) -> Result<Vec<DeadLetter>, ReadStoreError> {
        self.record(Method::DeadLetters);
        Ok(Vec::new())
    }
}

#[async_trait]
impl ViewAdmin for Recorder {
    async fn declare_views(&self, _views: &[ViewSpec]) -> Result<(), ReadStoreError> {
        self.record(Method::DeclareViews);
        Ok(())
    }

    async fn drop_projection(&self, _projection: &str, _views: &[String]) -> Result<(), ReadStoreError> {
        self.record(Method::DropProjection);
        Ok(())
    }

    async fn partitions(&self, _view: &str) -> Result<Vec<String>, ReadStoreError> {
        self.record(Method::Partitions);
        Ok(Vec::new())
    }
}
