//! ⑥ The read store port: views as JSON documents addressed like Cassandra rows.
//!
//! A document lives in a view (a table) under a partition key and a
//! clustering key; documents of one partition are ordered by clustering key
//! (byte order of the UTF-8 key). Views with one document per partition use
//! the empty clustering key.
//!
//! [`ViewCommitter::commit`] is where ARCHITECTURE.md's invariant 8 (view writes
//! and checkpoints together, guarded by the checkpoints and revisions the
//! batch started from) and, for stores that do not commit atomically,
//! invariant 9 are kept. A batch that retries a dead letter removes it in the
//! same commit, and only if it is still there, so a dead letter retried twice
//! at once applies once.

mod layer;
#[cfg(feature = "testing")]
pub mod recorder;

use async_trait::async_trait;
pub use layer::ReadStoreLayer;

use crate::event::Position;
use crate::log::{Checkpoint, Partition};
use crate::view::{View, ViewSpec};

/// A stored document's revision: a fresh value on every write, so a reader
/// can tell whether the document changed since it read it. 0 means absent.
pub type Revision = u64;

/// A fresh, non-zero revision for a write.
pub fn fresh_revision() -> Revision {
    // 63 random bits: fits a signed 64-bit column, never 0.
    (uuid::Uuid::new_v4().as_u64_pair().0 >> 1).max(1)
}

/// Where a document lives within its view.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocKey {
    /// Partition key: which documents live together.
    pub partition: String,
    /// Clustering key: order within the partition ("" when the view has one
    /// document per partition).
    pub clustering: String,
}

impl DocKey {
    /// The key of a view with one document per partition.
    pub fn partition(partition: impl Into<String>) -> Self {
        Self { partition: partition.into(), clustering: String::new() }
    }

    /// A key with both parts.
    pub fn new(partition: impl Into<String>, clustering: impl Into<String>) -> Self {
        Self { partition: partition.into(), clustering: clustering.into() }
    }
}

/// A stored document: its body as a JSON value, or as the JSON text it is
/// stored as (`Document<String>`, from [`ViewReader::scan_json`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Document<B = serde_json::Value> {
    /// Where it lives in its view.
    pub key: DocKey,
    /// The JSON document (a `Value`, or the stored text for `Document<String>`).
    pub body: B,
}

/// The event a write comes from: its source partition and position.
///
/// Stores whose commits are atomic ignore it. A store that commits without
/// transactions ([`ViewCommitter::commits_atomically`] is false) orders writes
/// by it, so a replayed (older) write never overwrites a newer one, and keeps
/// it per document as a *mark*, so a projector can tell that a document has
/// already absorbed an event it replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// The source partition of the event.
    pub partition: Partition,
    /// The event's position.
    pub position: Position,
}

/// One change to a view.
#[derive(Debug, Clone, PartialEq)]
pub enum ViewWrite {
    /// Insert or replace a document.
    Put {
        /// The view's stored name (a generation's, see [`crate::ViewId`]).
        view: String,
        /// Where the document goes.
        key: DocKey,
        /// The new body.
        body: serde_json::Value,
        /// The last event that changed it (`None` outside any projector).
        stamp: Option<Stamp>,
    },
    /// Remove a document (absent is fine).
    Delete {
        /// The view's stored name.
        view: String,
        /// The document to remove.
        key: DocKey,
        /// The last event that changed it (`None` outside any projector).
        stamp: Option<Stamp>,
    },
}

impl ViewWrite {
    /// An unstamped put (a write outside any projector).
    pub fn put(view: impl Into<String>, key: DocKey, body: serde_json::Value) -> Self {
        Self::Put { view: view.into(), key, body, stamp: None }
    }

    /// An unstamped delete (a write outside any projector).
    pub fn delete(view: impl Into<String>, key: DocKey) -> Self {
        Self::Delete { view: view.into(), key, stamp: None }
    }

    /// The view written.
    pub fn view(&self) -> &str {
        match self {
            Self::Put { view, .. } | Self::Delete { view, .. } => view,
        }
    }

    /// The document written.
    pub fn key(&self) -> &DocKey {
        match self {
            Self::Put { key, .. } | Self::Delete { key, .. } => key,
        }
    }

    /// The event the write comes from, if any.
    pub fn stamp(&self) -> Option<Stamp> {
        match self {
            Self::Put { stamp, .. } | Self::Delete { stamp, .. } => *stamp,
        }
    }
}

/// A stored document as a projector reads it: body, revision, and the marks
/// of the events it has absorbed (the last position per source partition;
/// always empty in stores whose commits are atomic).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    /// The JSON document.
    pub body: serde_json::Value,
    /// Its revision when read: what a [`ReadGuard`] compares at commit.
    pub revision: Revision,
    /// Per source partition, the position of the last event whose effect the
    /// document holds.
    pub marks: Vec<Stamp>,
}

impl StoredDocument {
    /// Whether the document already holds the effect of the event at `stamp`.
    pub fn absorbed(&self, stamp: Stamp) -> bool {
        self.marks.iter().any(|mark| mark.partition == stamp.partition && mark.position >= stamp.position)
    }
}

/// An event a projection could not apply (kept in the read store), or a
/// process manager could not handle (parked in the write DB:
/// [`crate::EventStore::park`]), kept for a look and a retry after a fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The projection, or process manager, that failed.
    pub projection: String,
    /// The event's position.
    pub position: Position,
    /// The event's id.
    pub event_id: uuid::Uuid,
    /// The event's type.
    pub event_type: String,
    /// What went wrong.
    pub error: String,
}

/// A checkpoint a batch moves: from where it was read to where the batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointMove {
    /// The source partition.
    pub partition: Partition,
    /// The checkpoint the batch was computed from.
    pub from: Checkpoint,
    /// The checkpoint after the batch.
    pub to: Checkpoint,
}

/// A document a batch read, at the revision it read (0: it was absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadGuard {
    /// The view's stored name.
    pub view: String,
    /// The document read (read absent, it must still be absent).
    pub key: DocKey,
    /// The revision read.
    pub revision: Revision,
}

/// Everything one projector batch changes, committed atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewBatch {
    /// The projection that owns the writes.
    pub projection: String,
    /// The checkpoints the batch moves (none for a write outside any projector).
    pub checkpoints: Vec<CheckpointMove>,
    /// The documents the batch's writes were computed from: if any changed
    /// since, the batch is not applied ([`ReadStoreError::Conflict`]).
    pub reads: Vec<ReadGuard>,
    /// View changes, applied in order.
    pub writes: Vec<ViewWrite>,
    /// Events that could not be applied.
    pub dead_letters: Vec<DeadLetter>,
    /// Positions of this projection's dead letters that the batch resolves
    /// (a retried dead letter, applied by the batch's writes): each is
    /// removed with the batch, and one that is no longer there refuses the
    /// whole batch ([`ReadStoreError::DeadLetterMissing`]), so a dead letter
    /// retried twice at once is applied once. Stores whose commits are not
    /// atomic refuse any.
    pub resolved_dead_letters: Vec<Position>,
}

impl ViewBatch {
    /// A batch of `projection` that changes nothing yet.
    pub fn empty(projection: impl Into<String>) -> Self {
        Self {
            projection: projection.into(),
            checkpoints: Vec::new(),
            reads: Vec::new(),
            writes: Vec::new(),
            dead_letters: Vec::new(),
            resolved_dead_letters: Vec::new(),
        }
    }
}

/// A bounded, ordered slice of a partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<B = serde_json::Value> {
    /// Documents in clustering order.
    pub documents: Vec<Document<B>>,
    /// Pass it back as `after` to read on; `None` when nothing follows.
    pub next_cursor: Option<String>,
}

impl<B> Page<B> {
    /// The page of at most `limit` documents from a read that fetched one
    /// more than asked: that extra document tells whether anything follows.
    pub fn from_one_more(mut documents: Vec<Document<B>>, limit: usize) -> Self {
        let next_cursor = if documents.len() > limit {
            documents.truncate(limit);
            documents.last().map(|d| d.key.clustering.clone())
        } else {
            None
        };
        Page { documents, next_cursor }
    }
}

/// A range of clustering keys within a partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusteringRange {
    /// Lowest key, inclusive.
    pub from: Option<String>,
    /// Highest key, exclusive.
    pub to: Option<String>,
    /// A cursor from a previous [`Page`]: start strictly after it.
    pub after: Option<String>,
}

/// Where a scan starts: the tighter of `from` and `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowerBound<'a> {
    /// Keys at or above this one.
    Inclusive(&'a str),
    /// Keys strictly above this one.
    Exclusive(&'a str),
}

impl ClusteringRange {
    /// The tighter of `from` (inclusive) and `after` (exclusive), if any.
    pub fn lower_bound(&self) -> Option<LowerBound<'_>> {
        match (&self.from, &self.after) {
            (Some(from), Some(after)) if from > after => Some(LowerBound::Inclusive(from)),
            (_, Some(after)) => Some(LowerBound::Exclusive(after)),
            (Some(from), None) => Some(LowerBound::Inclusive(from)),
            (None, None) => None,
        }
    }
}

/// Why the read store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadStoreError {
    /// Another projector moved the checkpoint since the batch was read:
    /// the batch was not applied.
    #[error("checkpoint of {projection} in partition {partition} is at position {actual}, not {expected}")]
    CheckpointMoved {
        /// The projection whose checkpoint moved (its name as the batch gave it).
        projection: String,
        /// The source partition.
        partition: Partition,
        /// Where the batch started.
        expected: Position,
        /// Where the checkpoint is.
        actual: Position,
    },
    /// A document the batch read changed since (another projector of the
    /// same projection wrote it): the batch was not applied.
    #[error("document {view}/{partition}/{clustering} changed while the batch was computed")]
    Conflict {
        /// The view's stored name.
        view: String,
        /// The document's partition key.
        partition: String,
        /// The document's clustering key.
        clustering: String,
    },
    /// A dead letter the batch resolves is no longer there (another retry
    /// resolved it first): the batch was not applied.
    #[error("{projection} has no dead letter at position {position} any more: the batch was not applied")]
    DeadLetterMissing {
        /// The projection whose dead letter is gone.
        projection: String,
        /// The dead letter's position.
        position: Position,
    },
    /// The store failed.
    #[error("read store: {message}")]
    Store {
        /// What failed.
        message: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl ReadStoreError {
    /// A store failure without a cause.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::Store { message: message.into(), source: None }
    }

    /// A store failure with a cause.
    pub fn store(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Store { message: message.into(), source: Some(Box::new(source)) }
    }
}

/// A document body as JSON text.
fn json_text(view: &str, partition: &str, body: &serde_json::Value) -> Result<String, ReadStoreError> {
    serde_json::to_string(body)
        .map_err(|e| ReadStoreError::store(format!("encode a document of {view}/{partition}"), e))
}

/// What queries use: documents by key and by range, never a write.
///
/// The read store port is split by who uses it: queries hold a
/// [`ViewReader`], projectors a [`ViewCommitter`], operators (migrate,
/// rebuild, check, dead letters) a [`ViewAdmin`]; [`ReadStore`] is all
/// three. A store implements the three traits; a decorator implements
/// [`ReadStoreLayer`] and overrides only what it changes.
///
/// A query holds a reader and nothing more: it cannot write a view.
///
/// ```
/// use parallax_core::{ClusteringRange, DocKey, ReadStoreError, View, ViewReader, ViewReaderExt};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Order {
///     total_cents: i64,
/// }
///
/// /// A customer's orders, one document each, clustered by order id.
/// const ORDERS: View<Order> = View::owned("orders_by_customer");
///
/// /// One order, typed by its view's handle.
/// async fn order(views: &dyn ViewReader, customer: &str, id: &str) -> Result<Option<Order>, ReadStoreError> {
///     views.get_doc(&ORDERS, &DocKey::new(customer, id)).await
/// }
///
/// /// What a customer spent on their first 100 orders, from one partition
/// /// of the view (no join, no write DB).
/// async fn spent(views: &dyn ViewReader, customer: &str) -> Result<i64, ReadStoreError> {
///     let page = views.scan(ORDERS.name(), customer, &ClusteringRange::default(), 100).await?;
///     Ok(page.documents.iter().filter_map(|document| document.body["total_cents"].as_i64()).sum())
/// }
/// ```
#[async_trait]
pub trait ViewReader: Send + Sync {
    /// One document.
    async fn get(&self, view: &str, key: &DocKey) -> Result<Option<serde_json::Value>, ReadStoreError> {
        Ok(self.get_with_revision(view, key).await?.map(|(body, _)| body))
    }

    /// One document with its revision.
    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(serde_json::Value, Revision)>, ReadStoreError>;

    /// Several documents with their revisions, in the order of `keys`
    /// (view, key). Stores answer it in one round trip where they can.
    async fn get_many(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<(serde_json::Value, Revision)>>, ReadStoreError> {
        let mut found = Vec::with_capacity(keys.len());
        for (view, key) in keys {
            found.push(self.get_with_revision(view, key).await?);
        }
        Ok(found)
    }

    /// Documents of one partition within `range`, in clustering order, at most
    /// `limit`. A page is full unless it is the last; `next_cursor` is `None`
    /// exactly when nothing follows. `limit == 0` returns an empty last page.
    async fn scan(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page, ReadStoreError>;

    /// One document as the JSON text it is stored as, for a reader that
    /// decodes it into a type of its own (a query's DTO) without building a
    /// `serde_json::Value` on the way. Stores that keep JSON text return it
    /// as stored; the default encodes what [`ViewReader::get`] returns.
    async fn get_json(&self, view: &str, key: &DocKey) -> Result<Option<String>, ReadStoreError> {
        self.get(view, key).await?.map(|body| json_text(view, &key.partition, &body)).transpose()
    }

    /// [`ViewReader::scan`] with each body as the JSON text it is stored as
    /// (see [`ViewReader::get_json`]).
    async fn scan_json(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page<String>, ReadStoreError> {
        let page = self.scan(view, partition, range, limit).await?;
        let documents = page
            .documents
            .into_iter()
            .map(|doc| Ok(Document { body: json_text(view, partition, &doc.body)?, key: doc.key }))
            .collect::<Result<_, ReadStoreError>>()?;
        Ok(Page { documents, next_cursor: page.next_cursor })
    }
}

/// What projectors use: the documents a batch changes (with revisions and
/// marks), the commit of a batch, checkpoints and dead letters.
#[async_trait]
pub trait ViewCommitter: ViewReader {
    /// Whether [`ViewCommitter::commit`] applies a batch's writes and
    /// checkpoint moves all or nothing, isolated from concurrent batches (SQL
    /// stores). A store that answers `false` (Cassandra) checks checkpoints
    /// and read guards before it writes, writes rows before checkpoints,
    /// orders writes by their [`Stamp`] and keeps marks: a batch cut short by
    /// a crash is replayed without effect twice, but two batches racing from
    /// one checkpoint may both write (the same rows, when they replay the same
    /// events) before one of them moves it. No default: a store that claimed
    /// atomic commits by omission would lose invariant 9's guards.
    fn commits_atomically(&self) -> bool;

    /// Several documents with their revisions and marks, in the order of
    /// `keys`: what a projector reads. Stores that keep no marks need not
    /// implement it.
    async fn get_many_stored(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<StoredDocument>>, ReadStoreError> {
        Ok(self
            .get_many(keys)
            .await?
            .into_iter()
            .map(|found| found.map(|(body, revision)| StoredDocument { body, revision, marks: Vec::new() }))
            .collect())
    }

    /// Applies a batch and moves the projection's checkpoints, atomically,
    /// if every checkpoint is still at its `from`, every read document at
    /// its revision and every dead letter it resolves still there (then
    /// removed with it).
    async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError>;

    /// How far a projection has got in one source partition.
    async fn checkpoint(&self, projection: &str, partition: Partition) -> Result<Checkpoint, ReadStoreError>;

    /// A projection's checkpoints in every partition it has seen, by partition.
    async fn checkpoints(&self, projection: &str) -> Result<Vec<(Partition, Checkpoint)>, ReadStoreError>;

    /// Events a projection could not apply, by position.
    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, ReadStoreError>;
}

/// What operators use: declaring views, dropping a generation, listing a
/// view's partitions for an audit.
#[async_trait]
pub trait ViewAdmin: ViewCommitter {
    /// Makes sure the store can hold these views before they are written.
    /// Stores with one table for every view need nothing; a store with a
    /// table per view (Cassandra) creates the missing ones.
    async fn declare_views(&self, _views: &[ViewSpec]) -> Result<(), ReadStoreError> {
        Ok(())
    }

    /// Removes every document of `views` and the projection's checkpoints
    /// and dead letters: a projection generation that is no longer served.
    /// Stores that cannot (read-only wrappers) refuse.
    async fn drop_projection(&self, projection: &str, _views: &[String]) -> Result<(), ReadStoreError> {
        Err(ReadStoreError::msg(format!("this read store cannot drop projection {projection}")))
    }

    /// Every partition of `view` that holds a document, in byte order. For
    /// audits (`shop check` compares whole views), not for serving: it reads
    /// every key of the view. Stores that cannot list refuse.
    async fn partitions(&self, view: &str) -> Result<Vec<String>, ReadStoreError> {
        Err(ReadStoreError::msg(format!("this read store cannot list the partitions of {view}")))
    }
}

/// The whole read database: reader, committer and admin. Implemented for
/// every type that is all three.
pub trait ReadStore: ViewAdmin {}

impl<S: ViewAdmin + ?Sized> ReadStore for S {}

/// Conveniences over a [`ViewCommitter`].
#[async_trait]
pub trait ReadStoreExt: ViewCommitter {
    /// Writes a single change outside any projection (tests, tools): commits a
    /// batch of one write under the projection name `owner`, moving no checkpoint.
    async fn write_one(&self, owner: &str, write: ViewWrite) -> Result<(), ReadStoreError> {
        self.commit(ViewBatch { writes: vec![write], ..ViewBatch::empty(owner) }).await
    }
}

impl<S: ViewCommitter + ?Sized> ReadStoreExt for S {}

/// Conveniences over a [`ViewReader`].
#[async_trait]
pub trait ViewReaderExt: ViewReader {
    /// A document of a typed view.
    async fn get_doc<T: serde::de::DeserializeOwned>(
        &self,
        view: &View<T>,
        key: &DocKey,
    ) -> Result<Option<T>, ReadStoreError> {
        let name = view.name();
        match self.get_json(name, key).await? {
            None => Ok(None),
            Some(body) => serde_json::from_str(&body)
                .map(Some)
                .map_err(|e| ReadStoreError::store(format!("document {name}/{key:?} does not decode"), e)),
        }
    }
}

impl<S: ViewReader + ?Sized> ViewReaderExt for S {}

/// The highest position a projection has absorbed in any partition (for lag
/// reporting; with one partition it is simply its checkpoint).
pub fn furthest(checkpoints: &[(Partition, Checkpoint)]) -> Position {
    checkpoints.iter().map(|(_, c)| c.position).max().unwrap_or(0)
}
