//! A read store in memory.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use parallax_core::read_store::{fresh_revision, LowerBound};
use parallax_core::{
    Checkpoint, ClusteringRange, DeadLetter, DocKey, Document, Page, Partition, Position, ReadStoreError,
    Revision, ViewAdmin, ViewBatch, ViewCommitter, ViewReader, ViewWrite,
};
use serde_json::Value;

/// A [`parallax_core::ReadStore`] in memory, for unit tests and examples:
/// commits are atomic and isolated (one lock), and it keeps the port's
/// contract (the suites in [`crate::read_store`] and [`crate::dead_letters`]
/// run against it). Cheap to clone: clones share the documents.
///
/// ```
/// use parallax_core::{DocKey, ReadStoreExt, ViewReader, ViewWrite};
/// use parallax_testing::memory::MemReadStore;
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemReadStore::new();
/// let key = DocKey::new("ada", "");
/// store.write_one("accounts", ViewWrite::put("balances", key.clone(), json!({ "cents": 100 }))).await?;
/// assert_eq!(store.get("balances", &key).await?, Some(json!({ "cents": 100 })));
/// # Ok::<_, parallax_core::ReadStoreError>(())
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemReadStore {
    state: Arc<Mutex<State>>,
}

/// A partition's documents by clustering key.
type Partitioned = BTreeMap<String, (Value, Revision)>;

#[derive(Debug, Default)]
struct State {
    /// By (view, partition key).
    documents: BTreeMap<(String, String), Partitioned>,
    /// By (projection, partition).
    checkpoints: HashMap<(String, Partition), Checkpoint>,
    /// By (projection, position).
    dead_letters: BTreeMap<(String, Position), DeadLetter>,
}

impl State {
    fn document(&self, view: &str, key: &DocKey) -> Option<&(Value, Revision)> {
        self.documents.get(&(view.to_owned(), key.partition.clone()))?.get(&key.clustering)
    }

    fn checkpoint(&self, projection: &str, partition: Partition) -> Checkpoint {
        self.checkpoints.get(&(projection.to_owned(), partition)).copied().unwrap_or_default()
    }

    /// Why `batch` may not be applied, if it may not.
    fn refusal(&self, batch: &ViewBatch) -> Option<ReadStoreError> {
        for moved in &batch.checkpoints {
            let actual = self.checkpoint(&batch.projection, moved.partition);
            if actual != moved.from {
                let actual = actual.position;
                return Some(ReadStoreError::CheckpointMoved {
                    projection: batch.projection.clone(),
                    partition: moved.partition,
                    expected: moved.from.position,
                    actual,
                });
            }
        }
        for &position in &batch.resolved_dead_letters {
            if !self.dead_letters.contains_key(&(batch.projection.clone(), position)) {
                return Some(ReadStoreError::DeadLetterMissing {
                    projection: batch.projection.clone(),
                    position,
                });
            }
        }
        batch.reads.iter().find_map(|guard| {
            let revision = self.document(&guard.view, &guard.key).map_or(0, |&(_, revision)| revision);
            (revision != guard.revision).then(|| ReadStoreError::Conflict {
                view: guard.view.clone(),
                partition: guard.key.partition.clone(),
                clustering: guard.key.clustering.clone(),
            })
        })
    }

    fn apply(&mut self, write: ViewWrite) {
        match write {
            ViewWrite::Put { view, key, body, .. } => {
                let partition = self.documents.entry((view, key.partition)).or_default();
                partition.insert(key.clustering, (body, fresh_revision()));
            }
            ViewWrite::Delete { view, key, .. } => {
                let slot = (view, key.partition);
                if let Some(partition) = self.documents.get_mut(&slot) {
                    partition.remove(&key.clustering);
                    if partition.is_empty() {
                        self.documents.remove(&slot);
                    }
                }
            }
        }
    }
}

impl MemReadStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A commit changes nothing until every check has passed, so a panic
        // while the lock is held leaves no half-applied batch behind.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The bounds of `range` over a partition's clustering keys.
fn bounds(range: &ClusteringRange) -> (Bound<String>, Bound<String>) {
    let lower = match range.lower_bound() {
        Some(LowerBound::Inclusive(key)) => Bound::Included(key.to_owned()),
        Some(LowerBound::Exclusive(key)) => Bound::Excluded(key.to_owned()),
        None => Bound::Unbounded,
    };
    let upper = range.to.clone().map_or(Bound::Unbounded, Bound::Excluded);
    (lower, upper)
}

#[async_trait]
impl ViewReader for MemReadStore {
    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(Value, Revision)>, ReadStoreError> {
        Ok(self.state().document(view, key).cloned())
    }

    async fn scan(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page, ReadStoreError> {
        let (lower, upper) = bounds(range);
        if matches!((&lower, &upper), (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u)) if l >= u)
        {
            return Ok(Page { documents: Vec::new(), next_cursor: None });
        }
        let state = self.state();
        let Some(documents) = state.documents.get(&(view.to_owned(), partition.to_owned())) else {
            return Ok(Page { documents: Vec::new(), next_cursor: None });
        };
        let found = documents
            .range((lower, upper))
            .take(limit.saturating_add(1))
            .map(|(clustering, (body, _))| Document {
                key: DocKey::new(partition, clustering.as_str()),
                body: body.clone(),
            })
            .collect();
        Ok(Page::from_one_more(found, limit))
    }
}

#[async_trait]
impl ViewCommitter for MemReadStore {
    fn commits_atomically(&self) -> bool {
        true
    }

    async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError> {
        let mut state = self.state();
        if let Some(refusal) = state.refusal(&batch) {
            return Err(refusal);
        }
        for moved in &batch.checkpoints {
            state.checkpoints.insert((batch.projection.clone(), moved.partition), moved.to);
        }
        for position in batch.resolved_dead_letters {
            state.dead_letters.remove(&(batch.projection.clone(), position));
        }
        for write in batch.writes {
            state.apply(write);
        }
        for letter in batch.dead_letters {
            state.dead_letters.insert((letter.projection.clone(), letter.position), letter);
        }
        Ok(())
    }

    async fn checkpoint(&self, projection: &str, partition: Partition) -> Result<Checkpoint, ReadStoreError> {
        Ok(self.state().checkpoint(projection, partition))
    }

    async fn checkpoints(&self, projection: &str) -> Result<Vec<(Partition, Checkpoint)>, ReadStoreError> {
        let state = self.state();
        let mut found: Vec<_> = state
            .checkpoints
            .iter()
            .filter(|((owner, _), _)| owner == projection)
            .map(|(&(_, partition), &checkpoint)| (partition, checkpoint))
            .collect();
        found.sort_by_key(|&(partition, _)| partition);
        Ok(found)
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, ReadStoreError> {
        let state = self.state();
        Ok(state.dead_letters.values().filter(|letter| letter.projection == projection).cloned().collect())
    }
}

#[async_trait]
impl ViewAdmin for MemReadStore {
    async fn drop_projection(&self, projection: &str, views: &[String]) -> Result<(), ReadStoreError> {
        let mut state = self.state();
        state.documents.retain(|(view, _), _| !views.contains(view));
        state.checkpoints.retain(|(owner, _), _| owner != projection);
        state.dead_letters.retain(|(owner, _), _| owner != projection);
        Ok(())
    }

    async fn partitions(&self, view: &str) -> Result<Vec<String>, ReadStoreError> {
        let state = self.state();
        Ok(state
            .documents
            .keys()
            .filter(|(name, _)| name == view)
            .map(|(_, partition)| partition.clone())
            .collect())
    }
}
