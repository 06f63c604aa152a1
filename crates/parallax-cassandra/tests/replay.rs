//! A projector that dies between a batch's rows and its checkpoint, against
//! a real Cassandra: the events delivered again change nothing twice.

mod common;

use common::{append, Counting, LAST, SHARED_TOTALS};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parallax_cassandra::CassandraReadStore;
use parallax_core::{
    Checkpoint, DocKey, EventLog, EventRecord, EventSource, EventStore, LogError, Partition, Projection,
    ProjectionError, ReadStore, ReadStoreError, ReadStoreLayer, SourceBatch, SourcedEvent, ViewBatch,
    ViewCommitter, ViewReader, ViewReaderExt, ViewSpec, ViewTx,
};
use parallax_runtime::Projector;
use parallax_sqlite::SqliteEventStore;
use serde_json::json;

/// The store, except that while `crash` is set a commit writes its rows,
/// leaves the checkpoints where they are and fails: a projector killed
/// between the two.
struct DiesBeforeCheckpoint {
    inner: Arc<dyn ReadStore>,
    crash: AtomicBool,
}

#[async_trait]
impl ReadStoreLayer for DiesBeforeCheckpoint {
    fn inner(&self) -> &dyn ReadStore {
        self.inner.as_ref()
    }

    fn commits_atomically(&self) -> bool {
        false
    }

    async fn commit(&self, mut batch: ViewBatch) -> Result<(), ReadStoreError> {
        if !self.crash.load(Ordering::SeqCst) {
            return self.inner.commit(batch).await;
        }
        batch.checkpoints.clear();
        self.inner.commit(batch).await?;
        Err(ReadStoreError::msg("killed between the rows and the checkpoint"))
    }
}

#[tokio::test]
async fn the_crashing_store_forwards_every_method() {
    let recorder = Arc::new(parallax_testing::forwarding::Recorder::default());
    let store = DiesBeforeCheckpoint { inner: recorder.clone(), crash: AtomicBool::new(false) };
    // It answers `commits_atomically` itself: it stands for a store without
    // atomic commits whatever it wraps.
    let kept = [parallax_testing::forwarding::Method::CommitsAtomically];
    parallax_testing::forwarding::assert_forwards(&store, &recorder, &kept).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_replayed_after_its_rows_landed_changes_nothing_twice() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let events = SqliteEventStore::open(&dir.path().join("events.db")).expect("open the event store");
    let log: Arc<dyn EventLog> = Arc::new(events.log());
    let (config, cassandra) =
        common::fresh_store(vec![ViewSpec::owned("totals"), ViewSpec::owned("last")]).await;
    let cassandra = Arc::new(cassandra);
    let projection: Arc<dyn Projection> = Arc::new(Counting { shared: false });

    append(&events, "a", 3).await;
    append(&events, "b", 2).await;
    let crashing = Arc::new(DiesBeforeCheckpoint { inner: cassandra.clone(), crash: AtomicBool::new(false) });
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
        cassandra.get_doc(&LAST, &DocKey::partition("a")).await.expect("get"),
        Some(json!({ "version": 7 }))
    );
    drop(restarted);
    common::drop_all(&[config]).await;
}

/// Counts every event into one shared row, as sales per product counts
/// orders from every partition.
struct SharedCounting;

#[async_trait]
impl Projection for SharedCounting {
    fn name(&self) -> &'static str {
        "shared-counting"
    }

    fn views(&self) -> Vec<ViewSpec> {
        vec![SHARED_TOTALS.spec()]
    }

    async fn apply(&self, tx: &mut ViewTx<'_>, _event: &EventRecord) -> Result<(), ProjectionError> {
        let key = DocKey::partition("all");
        let total = tx.get(&SHARED_TOTALS, &key).await?.and_then(|v| v["events"].as_u64()).unwrap_or(0);
        tx.put(&SHARED_TOTALS, key, &json!({ "events": total + 1 }));
        Ok(())
    }
}

/// A source of two partitions (stream `a` in 0, every other stream in 1)
/// that mixes both in every batch, as a consumer of several Kafka
/// partitions does.
struct TwoPartitions {
    events: Vec<EventRecord>,
    next: [u64; 2],
    assigned: bool,
}

impl TwoPartitions {
    fn of(event: &EventRecord) -> Partition {
        u32::from(event.stream_id != "a")
    }
}

#[async_trait]
impl EventSource for TwoPartitions {
    async fn next_batch(&mut self, max: usize, _wait: Duration) -> Result<SourceBatch, LogError> {
        if !self.assigned {
            self.assigned = true;
            return Ok(SourceBatch { assigned: vec![0, 1], ..SourceBatch::default() });
        }
        let mut offsets = [0u64; 2];
        let mut pending: [Vec<SourcedEvent>; 2] = [Vec::new(), Vec::new()];
        for event in &self.events {
            let partition = Self::of(event);
            let index = partition as usize;
            if offsets[index] >= self.next[index] {
                pending[index].push(SourcedEvent {
                    partition,
                    offset: offsets[index],
                    event: event.clone(),
                    previous: None,
                });
            }
            offsets[index] += 1;
        }
        // Interleaved: one of partition 0, one of partition 1, ...
        let mut events = Vec::new();
        let [mut first, mut second] = pending.map(Vec::into_iter);
        loop {
            let (a, b) = (first.next(), second.next());
            if a.is_none() && b.is_none() {
                break;
            }
            events.extend(a.into_iter().chain(b));
        }
        events.truncate(max);
        for sourced in &events {
            let index = sourced.partition as usize;
            self.next[index] = self.next[index].max(sourced.offset + 1);
        }
        Ok(SourceBatch { events, ..SourceBatch::default() })
    }

    async fn seek(&mut self, partition: Partition, checkpoint: Checkpoint) -> Result<(), LogError> {
        self.next[partition as usize] = checkpoint.offset;
        Ok(())
    }
}

/// A batch holding events of two partitions that change one shared row,
/// killed between the rows and the checkpoints: the replay counts each event
/// once. (A row records one mark per write, so a projector into a store
/// without atomic commits keeps one partition per batch; mixing them, the
/// replay applied the first partition's events again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_row_changed_from_two_partitions_is_replayed_once() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let events = SqliteEventStore::open(&dir.path().join("events.db")).expect("open the event store");
    append(&events, "a", 3).await;
    append(&events, "b", 3).await;
    let recorded = events.read_all(0, 100).await.expect("read the events");
    let source = || TwoPartitions { events: recorded.clone(), next: [0, 0], assigned: false };
    let (config, cassandra) = common::fresh_store(vec![ViewSpec::shared("shared_totals")]).await;
    let cassandra = Arc::new(cassandra);
    let projection: Arc<dyn Projection> = Arc::new(SharedCounting);

    let crashing = Arc::new(DiesBeforeCheckpoint { inner: cassandra.clone(), crash: AtomicBool::new(true) });
    let first = Projector::from_source(Arc::clone(&projection), Box::new(source()), crashing);
    assert!(first.catch_up().await.is_err(), "the crashing commit fails");
    drop(first);

    let restarted = Projector::from_source(Arc::clone(&projection), Box::new(source()), cassandra.clone());
    restarted.catch_up().await.expect("project after the restart");
    assert_eq!(
        cassandra.get("shared_totals", &DocKey::partition("all")).await.expect("get"),
        Some(json!({ "events": 6 })),
        "each of the 6 events counted once"
    );
    common::drop_all(&[config]).await;
}
