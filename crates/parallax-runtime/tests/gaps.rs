//! Holes in a partition cannot pass silently: the relay links every event
//! to the previous one of its partition, and a projector whose next event
//! follows events it never saw stops that partition (Architecture
//! invariant 21).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parallax_core::{
    partition_for, Checkpoint, DocKey, EventRecord, EventSink, EventSource, EventStore, ExpectedVersion,
    Lease, LeaseError, LogError, Metadata, NewEvent, Outgoing, Partition, Position, Projection,
    ProjectionError, ReadStore, SourceBatch, SourcedEvent, View, ViewSpec, ViewTx,
};
use parallax_runtime::{CancellationToken, PartitionGap, Projector, ProjectorError, Relay, WorkerState};
use parallax_sqlite::{SqliteEventStore, SqliteReadStore};
use serde_json::json;

const PARTITIONS: u32 = 4;

/// Each stream's events, as positions.
const SEEN: View<serde_json::Value> = View::owned("seen");

/// Records the positions of each stream's events.
struct Seen;

#[async_trait]
impl Projection for Seen {
    fn name(&self) -> &'static str {
        "seen"
    }

    fn views(&self) -> Vec<ViewSpec> {
        vec![SEEN.spec()]
    }

    async fn apply(&self, tx: &mut ViewTx<'_>, event: &EventRecord) -> Result<(), ProjectionError> {
        let key = DocKey::partition(&event.stream_id);
        let mut positions = tx.get(&SEEN, &key).await?.unwrap_or_else(|| json!([]));
        positions.as_array_mut().expect("an array").push(json!(event.position));
        tx.put(&SEEN, key, &positions);
        Ok(())
    }
}

fn record(position: Position, stream: &str) -> EventRecord {
    EventRecord {
        position,
        stream_id: stream.to_owned(),
        stream_version: position,
        event_id: uuid::Uuid::now_v7(),
        event_type: "thing.happened".into(),
        schema_version: 1,
        payload: "{}".into(),
        metadata: Metadata::default(),
        recorded_at: chrono::Utc::now(),
    }
}

/// A source that hands out scripted batches: partitions 0 and 1 assigned
/// first, then each batch as given, then nothing.
struct Scripted {
    batches: VecDeque<Vec<SourcedEvent>>,
    assigned: bool,
}

#[async_trait]
impl EventSource for Scripted {
    async fn next_batch(&mut self, _max: usize, _wait: Duration) -> Result<SourceBatch, LogError> {
        if !self.assigned {
            self.assigned = true;
            return Ok(SourceBatch { assigned: vec![0, 1], ..SourceBatch::default() });
        }
        Ok(SourceBatch { events: self.batches.pop_front().unwrap_or_default(), ..SourceBatch::default() })
    }

    async fn seek(&mut self, _partition: Partition, _checkpoint: Checkpoint) -> Result<(), LogError> {
        Ok(())
    }
}

fn sourced(
    partition: Partition,
    offset: u64,
    position: Position,
    previous: Option<Position>,
) -> SourcedEvent {
    SourcedEvent { partition, offset, event: record(position, &format!("s-{partition}")), previous }
}

async fn seen(store: &dyn ReadStore, partition: Partition) -> Vec<u64> {
    let doc = store.get("seen", &DocKey::partition(format!("s-{partition}"))).await.expect("a read");
    doc.map(|doc| doc.as_array().expect("an array").iter().map(|p| p.as_u64().expect("a position")).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_whose_next_event_follows_a_hole_stops_and_says_so() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let store: Arc<dyn ReadStore> =
        Arc::new(SqliteReadStore::open(&dir.path().join("views.db")).expect("the read store"));
    store.declare_views(&Seen.views()).await.expect("declare");
    let batches = VecDeque::from([
        vec![
            // Partition 0 links up: 0 → 2 → 5 (a republished 2 in between).
            sourced(0, 0, 2, Some(0)),
            sourced(1, 0, 1, Some(0)),
            sourced(0, 1, 2, Some(0)),
            sourced(0, 2, 5, Some(2)),
            // Partition 1: 1, then an unlinked 3 (not checked), then 9,
            // which follows 7: positions 4..=7 of partition 1 are gone.
            sourced(1, 1, 3, None),
            sourced(1, 2, 9, Some(7)),
            sourced(1, 3, 11, Some(9)),
        ],
        vec![sourced(0, 3, 6, Some(5)), sourced(1, 4, 12, Some(11))],
    ]);
    let source = Scripted { batches, assigned: false };
    let projector = Projector::from_source(Arc::new(Seen), Box::new(source), Arc::clone(&store));

    let expected = PartitionGap {
        projection: "seen".to_owned(),
        partition: 1,
        checkpoint: 3,
        previous: 7,
        position: 9,
        offset: 2,
    };
    match projector.step(Duration::ZERO).await {
        Err(ProjectorError::Gap(gap)) => assert_eq!(gap, expected),
        other => panic!("expected the gap in partition 1, got {other:?}"),
    }
    let text = expected.to_string();
    assert!(
        text.contains("seen stopped partition 1 at its checkpoint, position 3")
            && text.contains("(offset 2, position 9) follows position 7")
            && text.contains("after position 3 up to position 7 are missing"),
        "{text}"
    );
    // The other partition went on; the stopped one kept its checkpoint.
    assert_eq!(seen(store.as_ref(), 0).await, vec![2, 5]);
    assert_eq!(seen(store.as_ref(), 1).await, vec![1, 3], "nothing after the hole is applied");
    assert_eq!(store.checkpoint("seen", 1).await.expect("checkpoint"), Checkpoint { position: 3, offset: 2 });

    // The next batch: partition 0 goes on, partition 1 stays stopped.
    match projector.step(Duration::ZERO).await {
        Err(ProjectorError::Gap(gap)) => assert_eq!(gap, expected),
        other => panic!("expected partition 1 to stay stopped, got {other:?}"),
    }
    assert_eq!(seen(store.as_ref(), 0).await, vec![2, 5, 6]);
    assert_eq!(seen(store.as_ref(), 1).await, vec![1, 3]);
    assert_eq!(store.checkpoint("seen", 0).await.expect("checkpoint"), Checkpoint { position: 6, offset: 4 });
    assert_eq!(store.checkpoint("seen", 1).await.expect("checkpoint"), Checkpoint { position: 3, offset: 2 });

    // The loop shows it as the worker's state.
    let cancel = CancellationToken::new();
    let status = projector.status();
    let running = tokio::spawn({
        let cancel = cancel.clone();
        async move { projector.run(cancel).await }
    });
    let start = Instant::now();
    let state = loop {
        match status.report().state {
            WorkerState::Failing(error) => break error,
            _ => assert!(start.elapsed() < Duration::from_secs(30), "the worker never reported the gap"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(state, text);
    cancel.cancel();
    running.await.expect("the loop ends");
}

/// Hands the relay's linked events to the test, placed like Kafka's sink.
#[derive(Default)]
struct Recording {
    published: Mutex<Vec<(Position, Partition, Option<Position>)>>,
}

#[async_trait]
impl EventSink for Recording {
    fn partition_of(&self, stream_id: &str) -> Partition {
        partition_for(stream_id, PARTITIONS)
    }

    async fn publish(&self, events: &[Outgoing<'_>]) -> Result<(), LogError> {
        let mut published = self.published.lock().expect("not poisoned");
        for outgoing in events {
            let partition = self.partition_of(&outgoing.event.stream_id);
            published.push((outgoing.event.position, partition, outgoing.previous));
        }
        Ok(())
    }
}

/// A lease held for good, its checkpoint in memory.
#[derive(Default)]
struct Held(Mutex<Position>);

#[async_trait]
impl Lease for Held {
    fn name(&self) -> &str {
        "relay"
    }

    fn epoch(&self) -> u64 {
        1
    }

    async fn checkpoint(&self) -> Result<Position, LeaseError> {
        Ok(*self.0.lock().expect("not poisoned"))
    }

    async fn save(&self, position: Position) -> Result<(), LeaseError> {
        *self.0.lock().expect("not poisoned") = position;
        Ok(())
    }

    async fn lost(&self) {
        std::future::pending().await
    }
}

/// No one else wants the lease: the tests call the relay's step directly.
struct Unused;

#[async_trait]
impl parallax_core::Leases for Unused {
    async fn acquire(&self, _name: &str) -> Result<Box<dyn Lease>, LeaseError> {
        Ok(Box::new(Held::default()))
    }
}

async fn relay_all(relay: &Relay, lease: &Held, mut at: Position) -> Position {
    loop {
        let to = relay.publish_batch(lease, at).await.expect("a batch");
        if to == at {
            return at;
        }
        at = to;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_links_each_event_to_the_previous_one_of_its_partition() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let events = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).expect("the event store"));
    for n in 0..120 {
        let new = NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: "thing.happened".into(),
            schema_version: 1,
            payload: "{}".into(),
            metadata: Metadata::default(),
            recorded_at: chrono::Utc::now(),
        };
        let request =
            parallax_core::AppendRequest::new(format!("thing-{}", n % 9), ExpectedVersion::Any, vec![new]);
        events.append(request).await.expect("append");
    }
    let log = Arc::new(events.log());
    let sink = Arc::new(Recording::default());
    let lease = Held::default();
    let relay = Relay::new(log.clone(), sink.clone(), Arc::new(Unused)).with_batch_size(7);
    assert_eq!(relay_all(&relay, &lease, 0).await, 120);

    // Every event names its partition's previous event, 0 for the first.
    let published = sink.published.lock().expect("not poisoned").clone();
    assert_eq!(published.len(), 120);
    let mut last: BTreeMap<Partition, Position> = BTreeMap::new();
    for &(position, partition, previous) in &published {
        let expected = last.insert(partition, position).unwrap_or(0);
        assert_eq!(previous, Some(expected), "the link of position {position} (partition {partition})");
    }

    // Republished from an earlier checkpoint (a crash before saving), by a
    // relay that reads only position 60 below where it starts: the same
    // links where the window saw the partition's previous event, none for
    // the first event of each other partition.
    sink.published.lock().expect("not poisoned").clear();
    let restarted = Relay::new(log, sink.clone(), Arc::new(Unused)).with_batch_size(7).with_link_window(1);
    assert_eq!(relay_all(&restarted, &lease, 60).await, 120);
    let republished = sink.published.lock().expect("not poisoned").clone();
    assert_eq!(republished.len(), 60);
    let window: Vec<Partition> =
        published.iter().filter(|(p, ..)| *p == 60).map(|&(_, partition, _)| partition).collect();
    let mut first_of = BTreeMap::new();
    for (again, first) in republished.iter().zip(&published[60..]) {
        assert_eq!(again.0, first.0);
        let unseen = !window.contains(&again.1) && first_of.insert(again.1, ()).is_none();
        if unseen {
            assert_eq!(
                again.2, None,
                "position {}: its partition's previous event is below the window",
                again.0
            );
        } else {
            assert_eq!(again.2, first.2, "position {} links as the first time", again.0);
        }
    }
    assert!(
        republished.iter().any(|(.., previous)| previous.is_none()),
        "the window is smaller than a partition's spacing somewhere"
    );
}
