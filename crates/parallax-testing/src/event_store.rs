//! The [`EventStore`] contract: one suite that every adapter runs against its
//! real backend.
//!
//! Each case is a public async function taking a *fresh, empty* store (and,
//! for the tailer case, the log that tails it); [`run_all`] runs every case
//! against a new store from a factory:
//!
//! ```no_run
//! use std::sync::Arc;
//! use parallax_core::{EventLog, EventStore};
//! use parallax_testing::event_store::{run_all, EventStoreFixture};
//!
//! /// The adapter under test, on a new, empty database.
//! async fn open_fresh() -> (Arc<dyn EventStore>, Arc<dyn EventLog>) {
//!     unimplemented!("open a new database")
//! }
//!
//! // In a `#[tokio::test(flavor = "multi_thread")]`:
//! # async fn event_store_contract() {
//! run_all(|| async {
//!     let (store, log) = open_fresh().await;
//!     EventStoreFixture { store, log }
//! })
//! .await;
//! # }
//! ```
//!
//! `parallax-sqlite`'s `tests/contract.rs` is a complete example.
//!
//! Payloads are compared as JSON values, not as text (a `jsonb` column
//! normalizes whitespace and key order); `recorded_at` must round-trip to the
//! microsecond. Cases never sleep to wait for work and assert no timings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parallax_core::{
    AppendError, AppendOutcome, AppendRequest, DeadLetter, EventLog, EventRecord, EventStore,
    ExpectedVersion, IdempotencyRecord, Metadata, NewEvent, Position, Snapshot, StreamVersion,
};
use serde_json::json;
use tokio::sync::{watch, Barrier};
use uuid::Uuid;

/// A store under test and the log that tails it.
#[derive(Clone)]
pub struct EventStoreFixture {
    /// The store, empty.
    pub store: Arc<dyn EventStore>,
    /// The log over that store.
    pub log: Arc<dyn EventLog>,
}

/// Runs every case of the contract, each against a fresh store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = EventStoreFixture>,
{
    let fresh = |case: &str| {
        eprintln!("event store contract: {case}");
        make()
    };
    appends_are_atomic_and_versioned(fresh("appends_are_atomic_and_versioned").await.store).await;
    wrong_expected_version_conflicts(fresh("wrong_expected_version_conflicts").await.store).await;
    a_stream_read_that_moved_conflicts(fresh("a_stream_read_that_moved_conflicts").await.store).await;
    concurrent_appends_at_one_version_have_one_winner(
        fresh("concurrent_appends_at_one_version_have_one_winner").await.store,
    )
    .await;
    concurrent_writers_retrying_leave_contiguous_versions(
        fresh("concurrent_writers_retrying_leave_contiguous_versions").await.store,
    )
    .await;
    let fixture = fresh("tailer_sees_every_event_once").await;
    tailer_sees_every_event_once(fixture.store, fixture.log).await;
    idempotency_keys_answer_duplicates(fresh("idempotency_keys_answer_duplicates").await.store).await;
    concurrent_appends_with_one_key_append_once(
        fresh("concurrent_appends_with_one_key_append_once").await.store,
    )
    .await;
    snapshots_are_saved_and_replaced(fresh("snapshots_are_saved_and_replaced").await.store).await;
    checkpoints_default_to_zero(fresh("checkpoints_default_to_zero").await.store).await;
    parking_an_event_twice_keeps_it_once(fresh("parking_an_event_twice_keeps_it_once").await.store).await;
    empty_append_is_invalid(fresh("empty_append_is_invalid").await.store).await;
    read_all_honours_after_and_limit(fresh("read_all_honours_after_and_limit").await.store).await;
}

// ---------------------------------------------------------------------------
// Builders

/// A timestamp with whole microseconds, as every store keeps them.
fn micros(at: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at).expect("a valid test timestamp")
}

fn now() -> DateTime<Utc> {
    micros(Utc::now().timestamp_micros())
}

/// A new event with a fresh id.
pub fn new_event(event_type: &str, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        payload: payload.to_string(),
        metadata: Metadata {
            correlation_id: Uuid::new_v4(),
            causation_id: Uuid::new_v4(),
            command_id: Uuid::new_v4(),
            actor: None,
            traceparent: Some(parallax_core::TraceParent::new_root()),
            tenant: None,
        },
        recorded_at: now(),
    }
}

fn any_event() -> NewEvent {
    new_event("test.happened", json!({ "n": 1 }))
}

/// An append without an idempotency key.
pub fn append_request(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest::new(stream, expected, events)
}

fn appended(outcome: Result<AppendOutcome, AppendError>, what: &str) -> (Position, Position, u64) {
    match outcome {
        Ok(AppendOutcome::Appended { first_position, last_position, stream_version }) => {
            (first_position, last_position, stream_version)
        }
        other => panic!("{what}: expected Appended, got {other:?}"),
    }
}

async fn head(store: &dyn EventStore) -> Position {
    store.head().await.expect("read the head")
}

async fn version_of(store: &dyn EventStore, stream: &str) -> u64 {
    let events = store.read_stream(stream, 0).await.expect("read the stream");
    events.last().map_or(0, |e| e.stream_version)
}

fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("payload {text:?} is not JSON: {e}"))
}

fn assert_round_trip(record: &EventRecord, sent: &NewEvent, stream: &str, version: u64) {
    assert_eq!(record.stream_id, stream, "stream id of version {version}");
    assert_eq!(record.stream_version, version);
    assert_eq!(record.event_id, sent.event_id, "event id of version {version}");
    assert_eq!(record.event_type, sent.event_type, "event type of version {version}");
    assert_eq!(record.schema_version, sent.schema_version, "schema version of version {version}");
    assert_eq!(json_of(&record.payload), json_of(&sent.payload), "payload of version {version}");
    assert_eq!(record.metadata, sent.metadata, "metadata of version {version}");
    assert_eq!(record.recorded_at, sent.recorded_at, "recorded_at of version {version}, to the microsecond");
}

// ---------------------------------------------------------------------------
// Cases

/// An append to a new stream at `Exact(0)` gets versions `1..=n` and
/// increasing positions; a second append continues the stream; every field
/// round-trips.
pub async fn appends_are_atomic_and_versioned(store: Arc<dyn EventStore>) {
    let stream = "versioned-1";
    let mut first = vec![
        new_event("test.opened", json!({ "name": "Zoë", "lines": [1, 2, 3], "nested": { "ok": true } })),
        new_event("test.renamed", json!({ "name": "Zoë ☕", "price_cents": 1999 })),
        new_event("test.closed", json!({})),
    ];
    first[0].metadata.actor = Some("user-7".into());
    first[0].recorded_at = micros(1_700_000_000_123_456);
    first[1].schema_version = 3;
    first[1].recorded_at = micros(1_700_000_000_123_457);
    first[2].recorded_at = micros(-1_000_001); // before the epoch

    let (first_a, last_a, version) = appended(
        store.append(append_request(stream, ExpectedVersion::Exact(0), first.clone())).await,
        "first append",
    );
    assert_eq!(version, 3, "three events on a new stream end at version 3");
    assert!(first_a >= 1 && first_a < last_a, "positions {first_a}..{last_a} increase within an append");

    let (_, other_last, _) = appended(
        store.append(append_request("versioned-other", ExpectedVersion::Exact(0), vec![any_event()])).await,
        "append to another stream",
    );
    assert!(other_last > last_a, "a later append gets a higher position");

    let second = vec![any_event(), new_event("test.reopened", json!({ "by": null }))];
    let (first_b, last_b, version) = appended(
        store.append(append_request(stream, ExpectedVersion::Exact(3), second.clone())).await,
        "second append",
    );
    assert_eq!(version, 5);
    assert!(first_b > other_last && last_b > first_b, "positions keep increasing across appends");

    let records = store.read_stream(stream, 0).await.expect("read the stream");
    let sent: Vec<&NewEvent> = first.iter().chain(&second).collect();
    assert_eq!(records.len(), 5, "read_stream returns exactly the stream's events");
    for (i, (record, event)) in records.iter().zip(&sent).enumerate() {
        assert_round_trip(record, event, stream, i as u64 + 1);
    }
    assert!(records.windows(2).all(|w| w[0].position < w[1].position), "positions increase along the stream");
    assert_eq!(
        [records[0].position, records[2].position, records[3].position, records[4].position],
        [first_a, last_a, first_b, last_b],
        "stored positions are the ones the appends reported"
    );

    let tail = store.read_stream(stream, 3).await.expect("read after version 3");
    assert_eq!(tail.iter().map(|r| r.stream_version).collect::<Vec<_>>(), [4, 5]);
    assert!(store.read_stream(stream, 5).await.expect("read after the end").is_empty());
    assert!(store.read_stream("never-written", 0).await.expect("read an unknown stream").is_empty());
}

/// A wrong expected version is a typed [`AppendError::Conflict`] with the
/// right numbers, and writes nothing; `Any` appends at the current version.
pub async fn wrong_expected_version_conflicts(store: Arc<dyn EventStore>) {
    let stream = "conflict-1";
    appended(
        store.append(append_request(stream, ExpectedVersion::Exact(0), vec![any_event(), any_event()])).await,
        "set-up append",
    );
    let before = head(&*store).await;

    for expected in [0, 1, 3, 7] {
        match store.append(append_request(stream, ExpectedVersion::Exact(expected), vec![any_event()])).await
        {
            Err(AppendError::Conflict { stream: s, expected: e, actual }) => {
                assert_eq!((s.as_str(), e, actual), (stream, expected, 2), "conflict at Exact({expected})");
            }
            other => panic!("append at Exact({expected}) to a stream at 2: expected Conflict, got {other:?}"),
        }
    }
    match store.append(append_request("conflict-new", ExpectedVersion::Exact(1), vec![any_event()])).await {
        Err(AppendError::Conflict { stream: s, expected: 1, actual: 0 }) => assert_eq!(s, "conflict-new"),
        other => panic!("append at Exact(1) to a new stream: expected Conflict 1/0, got {other:?}"),
    }
    assert_eq!(head(&*store).await, before, "conflicting appends write nothing");
    assert_eq!(store.read_stream(stream, 0).await.expect("read").len(), 2);
    assert!(store.read_stream("conflict-new", 0).await.expect("read").is_empty());

    let (_, _, version) = appended(
        store.append(append_request(stream, ExpectedVersion::Any, vec![any_event()])).await,
        "Any append",
    );
    assert_eq!(version, 3, "Any appends at whatever the version is");
    let (_, _, version) = appended(
        store.append(append_request("conflict-any-new", ExpectedVersion::Any, vec![any_event()])).await,
        "Any append to a new stream",
    );
    assert_eq!(version, 1);
}

/// An append that names other streams its decision read
/// ([`AppendRequest::reads`]) commits only while each is at the version
/// read; otherwise it is a [`AppendError::Conflict`] naming the stream that
/// moved, and writes nothing, not even its idempotency key.
pub async fn a_stream_read_that_moved_conflicts(store: Arc<dyn EventStore>) {
    let read = |stream: &str, version| StreamVersion { stream_id: stream.to_owned(), version };
    appended(
        store.append(append_request("price-1", ExpectedVersion::Exact(0), vec![any_event()])).await,
        "the stream read",
    );
    let holds = AppendRequest {
        reads: vec![read("price-1", 1), read("never-written", 0)],
        ..append_request("cart-1", ExpectedVersion::Exact(0), vec![any_event()])
    };
    let (_, _, version) = appended(store.append(holds).await, "an append whose reads hold");
    assert_eq!(version, 1);
    appended(
        store.append(append_request("price-1", ExpectedVersion::Exact(1), vec![any_event()])).await,
        "the stream read moves",
    );
    let before = head(&*store).await;

    let key = IdempotencyRecord { key: "read-moved".into(), fingerprint: "f".into(), response: "{}".into() };
    let stale = AppendRequest {
        reads: vec![read("price-1", 1)],
        idempotency: Some(key.clone()),
        ..append_request("cart-1", ExpectedVersion::Exact(1), vec![any_event()])
    };
    match store.append(stale).await {
        Err(AppendError::Conflict { stream, expected, actual }) => {
            assert_eq!((stream.as_str(), expected, actual), ("price-1", 1, 2), "the conflict names the read");
        }
        other => panic!("an append whose read moved: expected Conflict, got {other:?}"),
    }
    let created = AppendRequest {
        reads: vec![read("price-1", 0)],
        ..append_request("cart-2", ExpectedVersion::Exact(0), vec![any_event()])
    };
    match store.append(created).await {
        Err(AppendError::Conflict { stream, expected: 0, actual: 2 }) => assert_eq!(stream, "price-1"),
        other => panic!("a read of a stream that did not exist, which now does: got {other:?}"),
    }
    assert_eq!(head(&*store).await, before, "conflicting appends write nothing");
    assert!(store.idempotency("read-moved").await.expect("look the key up").is_none(), "nor their key");
    assert!(store.read_stream("cart-2", 0).await.expect("read").is_empty());

    let fresh = AppendRequest {
        reads: vec![read("price-1", 2)],
        idempotency: Some(key),
        ..append_request("cart-1", ExpectedVersion::Exact(1), vec![any_event()])
    };
    let (_, _, version) = appended(store.append(fresh).await, "the same append, at the read's new version");
    assert_eq!(version, 2);
}

/// 32 tasks race to append at the same expected version, round after round:
/// each round exactly one wins, every loser gets a typed `Conflict` naming the
/// winner's version, and the stream ends with contiguous versions.
pub async fn concurrent_appends_at_one_version_have_one_winner(store: Arc<dyn EventStore>) {
    const TASKS: usize = 32;
    const ROUNDS: u64 = 6;
    let stream = "race-rounds";
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        tasks.spawn(async move {
            let mut attempts = Vec::new();
            for round in 0..ROUNDS {
                barrier.wait().await; // the previous round has finished
                let version = version_of(&*store, stream).await;
                barrier.wait().await; // everyone has read: now race
                let event = any_event();
                let id = event.event_id;
                let result =
                    store.append(append_request(stream, ExpectedVersion::Exact(version), vec![event])).await;
                attempts.push((round, version, id, result));
            }
            attempts
        });
    }
    let mut by_round: BTreeMap<u64, Vec<_>> = BTreeMap::new();
    while let Some(attempts) = tasks.join_next().await {
        for (round, version, id, result) in attempts.expect("a racing task panicked") {
            by_round.entry(round).or_default().push((version, id, result));
        }
    }

    let mut winners = Vec::new();
    for (round, attempts) in by_round {
        assert_eq!(attempts.len(), TASKS);
        let mut wins = 0;
        for (version, id, result) in attempts {
            assert_eq!(version, round, "round {round}: every task saw the stream at {round}");
            match result {
                Ok(AppendOutcome::Appended { stream_version, .. }) => {
                    assert_eq!(stream_version, version + 1);
                    wins += 1;
                    winners.push(id);
                }
                Err(AppendError::Conflict { stream: s, expected, actual }) => {
                    assert_eq!(
                        (s.as_str(), expected, actual),
                        (stream, version, version + 1),
                        "round {round}"
                    );
                }
                other => panic!("round {round}: expected Appended or Conflict, got {other:?}"),
            }
        }
        assert_eq!(wins, 1, "round {round}: exactly one of {TASKS} appends at version {round} wins");
    }

    let records = store.read_stream(stream, 0).await.expect("read the raced stream");
    assert_eq!(
        records.iter().map(|r| r.stream_version).collect::<Vec<_>>(),
        (1..=ROUNDS).collect::<Vec<_>>()
    );
    assert_eq!(
        records.iter().map(|r| r.event_id).collect::<Vec<_>>(),
        winners,
        "the winners, in round order"
    );
}

/// 32 tasks each append several events to one stream, reloading the version
/// and retrying on conflict: the stream ends with contiguous versions holding
/// every winning event once, and every conflict is typed and accurate.
pub async fn concurrent_writers_retrying_leave_contiguous_versions(store: Arc<dyn EventStore>) {
    const TASKS: usize = 32;
    const WINS_EACH: usize = 3;
    let stream = "race-retry";
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let (mut wins, mut conflicts) = (Vec::new(), 0usize);
            while wins.len() < WINS_EACH {
                let version = version_of(&*store, stream).await;
                let event = any_event();
                let id = event.event_id;
                match store.append(append_request(stream, ExpectedVersion::Exact(version), vec![event])).await
                {
                    Ok(AppendOutcome::Appended { stream_version, .. }) => {
                        assert_eq!(stream_version, version + 1);
                        wins.push((stream_version, id));
                    }
                    Err(AppendError::Conflict { expected, actual, .. }) => {
                        assert_eq!(expected, version);
                        assert!(actual > version, "the stream moved on from {version}, to {actual}");
                        conflicts += 1;
                    }
                    other => panic!("expected Appended or Conflict, got {other:?}"),
                }
            }
            (wins, conflicts)
        });
    }
    let mut wins: HashMap<u64, Uuid> = HashMap::new();
    while let Some(result) = tasks.join_next().await {
        let (task_wins, _conflicts) = result.expect("a racing task panicked");
        for (version, id) in task_wins {
            assert!(wins.insert(version, id).is_none(), "two appends won version {version}");
        }
    }

    let total = (TASKS * WINS_EACH) as u64;
    let records = store.read_stream(stream, 0).await.expect("read the raced stream");
    assert_eq!(records.iter().map(|r| r.stream_version).collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
    for record in &records {
        assert_eq!(
            Some(&record.event_id),
            wins.get(&record.stream_version),
            "version {}",
            record.stream_version
        );
    }
}

/// A tailer reading the log (read after its position, then wait) while 50
/// tasks append 10,000 events sees every committed event exactly once, in
/// strictly increasing positions, each at the position its append reported.
pub async fn tailer_sees_every_event_once(store: Arc<dyn EventStore>, log: Arc<dyn EventLog>) {
    const WRITERS: usize = 50;
    const APPENDS_EACH: usize = 200;
    let start = head(&*store).await;
    // Set to the store's head once every writer is done.
    let (finished_tx, finished) = watch::channel(None::<Position>);

    let tailer = tokio::spawn(async move {
        let mut position = start;
        let mut seen: Vec<(Position, Uuid)> = Vec::new();
        let mut deadline = None;
        loop {
            // Read the flag before reading the log. An empty read is not
            // "caught up" by itself: a store may show a commit to readers a
            // little after acknowledging it (the PostgreSQL tail waits for
            // older transactions anywhere in the cluster), so the tailer
            // stops once it has reached the head the writers left, or after
            // a bound, and the assertions below say what it missed.
            let head_when_done = *finished.borrow();
            let batch = log.read(position, 512).await.expect("read the log");
            if batch.is_empty() {
                if let Some(head) = head_when_done {
                    let deadline = *deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
                    if position >= head || Instant::now() >= deadline {
                        return seen;
                    }
                }
                log.wait_beyond(position, Duration::from_millis(100)).await;
                continue;
            }
            for record in batch {
                assert!(
                    record.position > position,
                    "log positions strictly increase: {} after {position}",
                    record.position
                );
                position = record.position;
                seen.push((record.position, record.event_id));
            }
        }
    });

    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        writers.spawn(async move {
            let mut acked = Vec::with_capacity(APPENDS_EACH);
            for i in 0..APPENDS_EACH {
                let event = new_event("test.tailed", json!({ "writer": writer, "i": i }));
                let id = event.event_id;
                let stream = format!("tail-{writer}-{}", i % 3);
                let (first, last, _) = appended(
                    store.append(append_request(&stream, ExpectedVersion::Any, vec![event])).await,
                    "concurrent append",
                );
                assert_eq!(first, last);
                acked.push((id, first));
            }
            acked
        });
    }
    let mut acked: HashMap<Uuid, Position> = HashMap::new();
    while let Some(result) = writers.join_next().await {
        acked.extend(result.expect("a writer task panicked"));
    }
    finished_tx.send_replace(Some(head(&*store).await));
    let seen = tailer.await.expect("the tailer panicked");

    assert_eq!(acked.len(), WRITERS * APPENDS_EACH);
    let distinct: HashSet<Uuid> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(distinct.len(), seen.len(), "the tailer saw an event twice");
    assert_eq!(seen.len(), acked.len(), "the tailer saw {} of {} events", seen.len(), acked.len());
    for (position, id) in &seen {
        assert_eq!(acked.get(id), Some(position), "event {id} was acknowledged at another position");
    }
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
}

/// An idempotency key is stored with its append; reusing it (even with other
/// events, another stream, or a stale expected version) answers `Duplicate`
/// with the stored record and writes nothing.
pub async fn idempotency_keys_answer_duplicates(store: Arc<dyn EventStore>) {
    let record = IdempotencyRecord {
        key: "command-1".into(),
        fingerprint: "sha256:first".into(),
        response: r#"{"cart":"c-1"}"#.into(),
    };
    assert_eq!(store.idempotency("command-1").await.expect("look up"), None);

    let event = any_event();
    let mut request = append_request("idem-1", ExpectedVersion::Exact(0), vec![event.clone()]);
    request.idempotency = Some(record.clone());
    let (_, last_position, _) = appended(store.append(request.clone()).await, "first use of a key");
    let stored = store.idempotency("command-1").await.expect("look up").expect("the key is stored");
    assert_eq!(stored.record, record);
    assert_eq!(stored.last_position, last_position);
    let before = head(&*store).await;

    // The same request again: its expected version is stale and its event id
    // is already stored, but the key answers first.
    match store.append(request).await {
        Ok(AppendOutcome::Duplicate(again)) => assert_eq!(again, stored),
        other => panic!("a retried request: expected Duplicate, got {other:?}"),
    }
    // Other events, another stream, another fingerprint: still the first answer.
    let mut other = append_request("idem-2", ExpectedVersion::Exact(0), vec![any_event(), any_event()]);
    other.idempotency = Some(IdempotencyRecord { fingerprint: "sha256:other".into(), ..record.clone() });
    match store.append(other).await {
        Ok(AppendOutcome::Duplicate(again)) => assert_eq!(again, stored, "the first record, not the new one"),
        other => panic!("a reused key: expected Duplicate, got {other:?}"),
    }
    assert_eq!(head(&*store).await, before, "a duplicate writes nothing");
    assert!(store.read_stream("idem-2", 0).await.expect("read").is_empty());
    assert_eq!(store.read_stream("idem-1", 0).await.expect("read").len(), 1);
    assert_eq!(store.idempotency("command-1").await.expect("look up"), Some(stored));
    assert_eq!(store.idempotency("command-2").await.expect("look up"), None);
}

/// Concurrent appends with one idempotency key: exactly one is `Appended`,
/// the others are `Duplicate` of it.
pub async fn concurrent_appends_with_one_key_append_once(store: Arc<dyn EventStore>) {
    const TASKS: usize = 16;
    let before = head(&*store).await;
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        tasks.spawn(async move {
            let mut request =
                append_request(&format!("idem-race-{task}"), ExpectedVersion::Exact(0), vec![any_event()]);
            request.idempotency = Some(IdempotencyRecord {
                key: "command-race".into(),
                fingerprint: format!("sha256:{task}"),
                response: "{}".into(),
            });
            barrier.wait().await;
            (task, store.append(request).await)
        });
    }
    let (mut winner, mut duplicates) = (None, Vec::new());
    while let Some(result) = tasks.join_next().await {
        match result.expect("a racing task panicked") {
            (task, Ok(AppendOutcome::Appended { last_position, .. })) => {
                assert!(
                    winner.replace((task, last_position)).is_none(),
                    "two appends with one key were written"
                );
            }
            (_, Ok(AppendOutcome::Duplicate(stored))) => duplicates.push(stored),
            (task, other) => panic!("task {task}: expected Appended or Duplicate, got {other:?}"),
        }
    }
    let (task, last_position) = winner.expect("one append with the key was written");
    assert_eq!(duplicates.len(), TASKS - 1);
    for stored in duplicates {
        assert_eq!(stored.last_position, last_position);
        assert_eq!(stored.record.fingerprint, format!("sha256:{task}"), "the winner's record");
    }
    // Positions may have gaps (a store may hand out positions to appends that
    // turn out duplicates): count the events instead.
    let written = read_all_settled(&*store, before, 1_000).await;
    assert_eq!(written.len(), 1, "exactly one event was written");
    assert_eq!(written[0].position, last_position);
    for other in 0..TASKS {
        let written = store.read_stream(&format!("idem-race-{other}"), 0).await.expect("read").len();
        assert_eq!(written, usize::from(other == task), "stream idem-race-{other}");
    }
}

/// Snapshots: absent, saved, replaced, per stream.
pub async fn snapshots_are_saved_and_replaced(store: Arc<dyn EventStore>) {
    assert_eq!(store.load_snapshot("cart-1").await.expect("load"), None);
    let first = Snapshot {
        stream_id: "cart-1".into(),
        stream_version: 4,
        schema_version: 1,
        state: r#"{"items":["a"]}"#.into(),
    };
    store.save_snapshot(first.clone()).await.expect("save");
    assert_eq!(store.load_snapshot("cart-1").await.expect("load"), Some(first));

    let second = Snapshot {
        stream_id: "cart-1".into(),
        stream_version: 9,
        schema_version: 2,
        state: r#"{"items":["a","b"]}"#.into(),
    };
    store.save_snapshot(second.clone()).await.expect("replace");
    assert_eq!(store.load_snapshot("cart-1").await.expect("load"), Some(second.clone()));

    let other =
        Snapshot { stream_id: "cart-2".into(), stream_version: 1, schema_version: 1, state: "{}".into() };
    store.save_snapshot(other.clone()).await.expect("save another");
    assert_eq!(store.load_snapshot("cart-1").await.expect("load"), Some(second));
    assert_eq!(store.load_snapshot("cart-2").await.expect("load"), Some(other));
}

/// Consumer checkpoints: 0 until saved, then the last saved value, per consumer.
pub async fn checkpoints_default_to_zero(store: Arc<dyn EventStore>) {
    assert_eq!(store.checkpoint("checkout-saga").await.expect("load"), 0);
    store.save_checkpoint("checkout-saga", 5).await.expect("save");
    assert_eq!(store.checkpoint("checkout-saga").await.expect("load"), 5);
    store.save_checkpoint("checkout-saga", 12).await.expect("save");
    assert_eq!(store.checkpoint("checkout-saga").await.expect("load"), 12);
    assert_eq!(store.checkpoint("another-consumer").await.expect("load"), 0);
}

/// Parked events: per consumer, by position, each (consumer, position) once
/// however often it is parked.
pub async fn parking_an_event_twice_keeps_it_once(store: Arc<dyn EventStore>) {
    assert!(store.parked("checkout-saga").await.expect("list").is_empty());
    let letter = |position: u64, error: &str| DeadLetter {
        projection: "checkout-saga".to_owned(),
        position,
        event_id: Uuid::new_v4(),
        event_type: "cart.checked_out".to_owned(),
        error: error.to_owned(),
    };
    let (late, early) = (letter(9, "order o-9 refused"), letter(4, "order o-4 refused"));
    store.park(late.clone()).await.expect("park");
    store.park(early.clone()).await.expect("park");
    store.park(letter(9, "refused again after a crash")).await.expect("park again");
    assert_eq!(store.parked("checkout-saga").await.expect("list"), vec![early, late]);
    assert!(store.parked("another-consumer").await.expect("list").is_empty());
}

/// An append without events is `Invalid` (not a conflict) and writes nothing.
pub async fn empty_append_is_invalid(store: Arc<dyn EventStore>) {
    appended(
        store.append(append_request("empty-1", ExpectedVersion::Exact(0), vec![any_event()])).await,
        "set-up",
    );
    let before = head(&*store).await;
    for expected in [ExpectedVersion::Exact(0), ExpectedVersion::Exact(1), ExpectedVersion::Any] {
        match store.append(append_request("empty-1", expected, Vec::new())).await {
            Err(AppendError::Invalid(_)) => {}
            other => panic!("an append of no events at {expected:?}: expected Invalid, got {other:?}"),
        }
    }
    assert_eq!(head(&*store).await, before);
    assert_eq!(version_of(&*store, "empty-1").await, 1);
}

/// `read_all` once it shows every event up to the head. A store's log may
/// hold committed events back while older transactions run (PostgreSQL's
/// tail waits for the oldest one on the server, in any database: another
/// test's), never for long.
async fn read_all_settled(store: &dyn EventStore, after: Position, limit: usize) -> Vec<EventRecord> {
    let head = head(store).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = store.read_all(after, limit).await.expect("read all");
        if events.len() >= limit || events.last().map_or(head <= after, |last| last.position >= head) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "read_all({after}, {limit}) still ends at {:?} after 10 s; the head is {head}",
            events.last().map(|e| e.position)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `read_all` pages through every stream in position order, honouring
/// `after` and `limit`; `head` is the last position.
pub async fn read_all_honours_after_and_limit(store: Arc<dyn EventStore>) {
    assert_eq!(head(&*store).await, 0, "an empty store's head is 0");
    assert!(store.read_all(0, 10).await.expect("read an empty store").is_empty());

    let mut written = Vec::new();
    for i in 0..10 {
        let stream = format!("all-{}", i % 3);
        let event = new_event("test.numbered", json!({ "i": i }));
        let id = event.event_id;
        let (first, _, _) = appended(
            store.append(append_request(&stream, ExpectedVersion::Any, vec![event])).await,
            "append",
        );
        written.push((first, id));
    }
    let last = written.last().expect("ten events").0;
    assert_eq!(head(&*store).await, last);

    let everything = read_all_settled(&*store, 0, 1000).await;
    assert_eq!(everything.iter().map(|r| (r.position, r.event_id)).collect::<Vec<_>>(), written);

    let page = store.read_all(0, 3).await.expect("read 3");
    assert_eq!(
        page.iter().map(|r| r.event_id).collect::<Vec<_>>(),
        written[..3].iter().map(|w| w.1).collect::<Vec<_>>()
    );
    let rest = store.read_all(page[2].position, 100).await.expect("read the rest");
    assert_eq!(
        rest.iter().map(|r| r.event_id).collect::<Vec<_>>(),
        written[3..].iter().map(|w| w.1).collect::<Vec<_>>()
    );
    let middle = store.read_all(written[4].0, 2).await.expect("read 2 in the middle");
    assert_eq!(middle.iter().map(|r| r.position).collect::<Vec<_>>(), [written[5].0, written[6].0]);
    assert!(store.read_all(last, 10).await.expect("read past the end").is_empty());
    assert!(store.read_all(0, 0).await.expect("read nothing").is_empty());
}
