//! A projector that dies between a batch's rows and its checkpoint, against
//! a real Cassandra: the events delivered again change nothing twice.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parallax_cassandra::{CassandraReadStore, ViewSpec};
use parallax_core::read_store::{ClusteringRange, DeadLetter, Page, Revision, StoredDocument};
use parallax_core::{
    Checkpoint, DocKey, EventLog, EventRecord, EventStore, ExpectedVersion, Partition, Projection,
    ProjectionError, ReadStore, ReadStoreError, ReadStoreExt, ViewBatch, ViewTx,
};
use parallax_runtime::Projector;
use parallax_sqlite::SqliteEventStore;
use parallax_testing::event_store::{append_request, new_event};
use serde_json::{json, Value};

/// Counts every event (one read-modify-written total) and keeps the last
/// event of each stream (a blind write).
struct Counting;

#[async_trait]
impl Projection for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn views(&self) -> &'static [&'static str] {
        &["totals", "last"]
    }

    async fn apply(&self, tx: &mut ViewTx<'_>, event: &EventRecord) -> Result<(), ProjectionError> {
        let key = DocKey::partition("all");
        let total = tx.get("totals", &key).await?.and_then(|v| v["events"].as_u64()).unwrap_or(0);
        tx.put("totals", key, json!({ "events": total + 1 }));
        tx.put("last", DocKey::partition(&event.stream_id), json!({ "version": event.stream_version }));
        Ok(())
    }
}

/// The store, except that while `crash` is set a commit writes its rows,
/// leaves the checkpoints where they are and fails: a projector killed
/// between the two.
struct DiesBeforeCheckpoint {
    inner: Arc<CassandraReadStore>,
    crash: AtomicBool,
}

#[async_trait]
impl ReadStore for DiesBeforeCheckpoint {
    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(Value, Revision)>, ReadStoreError> {
        self.inner.get_with_revision(view, key).await
    }

    async fn get_many_stored(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<StoredDocument>>, ReadStoreError> {
        self.inner.get_many_stored(keys).await
    }

    fn commits_atomically(&self) -> bool {
        false
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

    async fn commit(&self, mut batch: ViewBatch) -> Result<(), ReadStoreError> {
        if !self.crash.load(Ordering::SeqCst) {
            return self.inner.commit(batch).await;
        }
        batch.checkpoints.clear();
        self.inner.commit(batch).await?;
        Err(ReadStoreError::msg("killed between the rows and the checkpoint"))
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

async fn append(store: &SqliteEventStore, stream: &str, events: usize) {
    let events = (0..events).map(|n| new_event("thing.happened", json!({ "n": n }))).collect();
    store.append(append_request(stream, ExpectedVersion::Any, events)).await.expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_replayed_after_its_rows_landed_changes_nothing_twice() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let events = SqliteEventStore::open(&dir.path().join("events.db")).expect("open the event store");
    let log: Arc<dyn EventLog> = Arc::new(events.log());
    let (config, cassandra) =
        common::fresh_store(vec![ViewSpec::owned("totals"), ViewSpec::owned("last")]).await;
    let cassandra = Arc::new(cassandra);
    let projection: Arc<dyn Projection> = Arc::new(Counting);

    append(&events, "a", 3).await;
    append(&events, "b", 2).await;
    let crashing =
        Arc::new(DiesBeforeCheckpoint { inner: Arc::clone(&cassandra), crash: AtomicBool::new(false) });
    let first = Projector::new(Arc::clone(&projection), Arc::clone(&log), crashing.clone());
    first.catch_up().await.expect("project the first events");
    assert_eq!(cassandra.checkpoint("counting", 0).await.expect("checkpoint").position, 5);

    // The next batch's rows land, its checkpoint does not: twice over.
    append(&events, "a", 4).await;
    crashing.crash.store(true, Ordering::SeqCst);
    assert!(first.catch_up().await.is_err(), "the crashing commit fails");
    append(&events, "c", 1).await;
    let second = Projector::new(Arc::clone(&projection), Arc::clone(&log), crashing.clone());
    assert!(second.catch_up().await.is_err(), "the crashing commit fails again");
    assert_eq!(
        cassandra.checkpoint("counting", 0).await.expect("checkpoint").position,
        5,
        "the crashes left the checkpoint behind the rows"
    );
    let total = |store: Arc<CassandraReadStore>| async move {
        store.get("totals", &DocKey::partition("all")).await.expect("get")
    };
    assert_eq!(total(Arc::clone(&cassandra)).await, Some(json!({ "events": 10 })), "the rows landed");

    // A projector that starts again replays from the checkpoint.
    let restarted = Projector::new(Arc::clone(&projection), Arc::clone(&log), cassandra.clone());
    restarted.catch_up().await.expect("project after the restart");
    assert_eq!(cassandra.checkpoint("counting", 0).await.expect("checkpoint").position, 10);
    assert_eq!(total(Arc::clone(&cassandra)).await, Some(json!({ "events": 10 })), "each event counted once");
    assert_eq!(
        cassandra.get_as::<Value>("last", &DocKey::partition("a")).await.expect("get"),
        Some(json!({ "version": 7 }))
    );
    drop(restarted);
    common::drop_all(&[config]).await;
}
