//! The command handler against the real SQLite event store.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parallax_core::store::StoredIdempotency;
use parallax_core::{
    Aggregate, AppendError, AppendOutcome, AppendRequest, DomainEvent, EventRecord, EventStore,
    IdempotencyRecord, Position, Snapshot, StoreError,
};
use parallax_runtime::{CommandContext, CommandError, CommandHandler, Executed, RetryPolicy};
use parallax_sqlite::SqliteEventStore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Counter {
    value: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum CounterEvent {
    #[serde(rename = "counter.added")]
    Added { amount: i64 },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> &'static str {
        "counter.added"
    }
}

#[derive(Debug, thiserror::Error)]
#[error("counter would go below zero")]
struct BelowZero;

impl Aggregate for Counter {
    const STREAM_TYPE: &'static str = "counter";
    type Command = i64;
    type Event = CounterEvent;
    type Error = BelowZero;

    fn handle(&self, amount: &i64) -> Result<Vec<CounterEvent>, BelowZero> {
        match self.value + amount {
            v if v < 0 => Err(BelowZero),
            _ if *amount == 0 => Ok(vec![]),
            _ => Ok(vec![CounterEvent::Added { amount: *amount }]),
        }
    }

    fn apply(&mut self, CounterEvent::Added { amount }: &CounterEvent) {
        self.value += amount;
    }
}

fn sqlite() -> (tempfile::TempDir, Arc<dyn EventStore>) {
    let dir = tempfile::tempdir().expect("temp folder");
    let store = SqliteEventStore::open(&dir.path().join("events.db")).expect("open");
    (dir, Arc::new(store))
}

#[tokio::test]
async fn stale_caches_conflict_then_retry_until_every_command_lands() {
    let (_dir, store) = sqlite();
    // Two handlers with their own caches: each decides against a state the
    // other has moved on from, so appends conflict and are retried.
    let policy = RetryPolicy { max_attempts: 50, ..RetryPolicy::default() };
    let a = Arc::new(CommandHandler::<Counter>::new(store.clone()).with_retry(policy));
    let b = Arc::new(CommandHandler::<Counter>::new(store.clone()).with_retry(policy));
    let tasks = (0..40).map(|n| {
        let handler = if n % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { handler.execute("c", &1, &CommandContext::new()).await })
    });
    for result in futures::future::join_all(tasks).await {
        assert!(matches!(result.expect("task"), Ok(Executed::Appended { .. })));
    }
    let fresh = CommandHandler::<Counter>::new(store.clone());
    let state = fresh.load("c").await.expect("load");
    assert_eq!((state.state.value, state.version), (40, 40));
}

#[tokio::test]
async fn a_refused_command_appends_nothing() {
    let (_dir, store) = sqlite();
    let handler = CommandHandler::<Counter>::new(store.clone());
    handler.execute("c", &2, &CommandContext::new()).await.expect("add");
    let refused = handler.execute("c", &-3, &CommandContext::new()).await;
    assert!(matches!(refused, Err(CommandError::Domain(BelowZero))));
    assert_eq!(store.head().await.expect("head"), 1);
    let unchanged = handler.execute("c", &0, &CommandContext::new()).await.expect("no-op");
    assert_eq!(unchanged, Executed::Unchanged { stream_version: 1, last_position: 1 });
}

#[tokio::test]
async fn idempotency_keys_answer_the_first_time_and_refuse_other_requests() {
    let (_dir, store) = sqlite();
    let handler = CommandHandler::<Counter>::new(store.clone());
    let record = |fingerprint: &str| IdempotencyRecord {
        key: "k".into(),
        fingerprint: fingerprint.into(),
        response: r#"{"n":1}"#.into(),
    };
    let first =
        handler.execute("c", &5, &CommandContext::new().with_idempotency(record("f"))).await.expect("first");
    let again =
        handler.execute("c", &5, &CommandContext::new().with_idempotency(record("f"))).await.expect("again");
    assert_eq!(again, Executed::Duplicate { response: r#"{"n":1}"#.into(), last_position: first.position() });
    let other = handler.execute("c", &7, &CommandContext::new().with_idempotency(record("g"))).await;
    assert!(matches!(other, Err(CommandError::IdempotencyMismatch { .. })));
    assert_eq!(handler.load("c").await.expect("load").state.value, 5);
}

/// Counts what reaches the store, and can make every append conflict.
struct Spy {
    inner: Arc<dyn EventStore>,
    appends: AtomicU32,
    always_conflict: bool,
    read_after: AtomicU64,
    /// How many idempotency lookups still answer "never used", as they do for
    /// a repeat that looked before the first request committed.
    stale_key_lookups: AtomicU32,
}

#[async_trait]
impl EventStore for Spy {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        if self.always_conflict {
            return Err(AppendError::Conflict { stream: request.stream_id, expected: 0, actual: 1 });
        }
        self.inner.append(request).await
    }
    async fn read_stream(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventRecord>, StoreError> {
        self.read_after.store(after_version, Ordering::SeqCst);
        self.inner.read_stream(stream_id, after_version).await
    }
    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.read_all(after, limit).await
    }
    async fn head(&self) -> Result<Position, StoreError> {
        self.inner.head().await
    }
    async fn idempotency(&self, key: &str) -> Result<Option<StoredIdempotency>, StoreError> {
        let stale =
            self.stale_key_lookups.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if stale.is_ok() {
            return Ok(None);
        }
        self.inner.idempotency(key).await
    }
    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(stream_id).await
    }
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn checkpoint(&self, consumer: &str) -> Result<Position, StoreError> {
        self.inner.checkpoint(consumer).await
    }
    async fn save_checkpoint(&self, consumer: &str, position: Position) -> Result<(), StoreError> {
        self.inner.save_checkpoint(consumer, position).await
    }
    async fn park(&self, letter: parallax_core::DeadLetter) -> Result<(), StoreError> {
        self.inner.park(letter).await
    }
    async fn parked(&self, consumer: &str) -> Result<Vec<parallax_core::DeadLetter>, StoreError> {
        self.inner.parked(consumer).await
    }
}

fn spy(inner: Arc<dyn EventStore>) -> Spy {
    Spy {
        inner,
        appends: AtomicU32::new(0),
        always_conflict: false,
        read_after: AtomicU64::new(0),
        stale_key_lookups: AtomicU32::new(0),
    }
}

/// A repeat that looked its key up before the first request committed, then
/// decided against the state that request left: the command is refused (or
/// changes nothing) there, yet the answer must be the first one's.
#[tokio::test]
async fn a_repeat_that_raced_its_first_request_answers_the_first_answer() {
    let (_dir, store) = sqlite();
    let record =
        IdempotencyRecord { key: "take".into(), fingerprint: "f".into(), response: r#"{"n":0}"#.into() };
    let first_handler = CommandHandler::<Counter>::new(store.clone());
    first_handler.execute("c", &1, &CommandContext::new()).await.expect("add");
    let first = first_handler
        .execute("c", &-1, &CommandContext::new().with_idempotency(record.clone()))
        .await
        .expect("first");
    // Taking one more would go below zero, and 0 changes nothing: the late
    // repeats of either kind still answer what the first request was told.
    for repeat in [-1, 0] {
        let late = Arc::new(Spy { stale_key_lookups: AtomicU32::new(1), ..spy(store.clone()) });
        let handler = CommandHandler::<Counter>::new(late.clone());
        let answer =
            handler.execute("c", &repeat, &CommandContext::new().with_idempotency(record.clone())).await;
        assert_eq!(
            answer.expect("the first answer"),
            Executed::Duplicate { response: record.response.clone(), last_position: first.position() }
        );
        assert_eq!(late.appends.load(Ordering::SeqCst), 0);
    }
    assert_eq!(store.head().await.expect("head"), 2, "nothing appended");
}

#[tokio::test]
async fn conflicts_give_up_after_the_policy_s_attempts() {
    let (_dir, store) = sqlite();
    let spy = Arc::new(Spy { always_conflict: true, ..spy(store) });
    let policy = RetryPolicy { max_attempts: 4, ..RetryPolicy::default() };
    let handler = CommandHandler::<Counter>::new(spy.clone()).with_retry(policy);
    let result = handler.execute("c", &1, &CommandContext::new()).await;
    assert!(matches!(result, Err(CommandError::Conflict { .. })), "{result:?}");
    assert_eq!(spy.appends.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_cold_load_starts_from_the_latest_snapshot() {
    let (_dir, store) = sqlite();
    let writer = CommandHandler::<Counter>::new(store.clone()).with_snapshot_every(5);
    for _ in 0..12 {
        writer.execute("c", &1, &CommandContext::new()).await.expect("add");
    }
    // Snapshots are written in the background; wait until the one at 10 is there.
    let mut snapshot = None;
    for _ in 0..500 {
        snapshot = store.load_snapshot("counter-c").await.expect("load snapshot");
        if snapshot.as_ref().is_some_and(|s| s.stream_version == 10) {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(snapshot.expect("a snapshot").stream_version, 10);

    let spy = Arc::new(Spy { read_after: AtomicU64::new(99), ..spy(store) });
    let reader = CommandHandler::<Counter>::new(spy.clone()).with_snapshot_every(5);
    let state = reader.load("c").await.expect("load");
    assert_eq!((state.state.value, state.version), (12, 12));
    assert_eq!(spy.read_after.load(Ordering::SeqCst), 10, "only the events after the snapshot were read");
}

/// Two writers taking turns on one stream (two command processes behind a
/// round-robin balancer, one cart): after its first conflict a writer
/// catches the stream up before deciding, so each later command appends
/// once instead of failing an append against its stale cache first.
#[tokio::test]
async fn writers_taking_turns_on_a_stream_stop_conflicting_after_the_first_time() {
    let (_dir, store) = sqlite();
    let (spy_a, spy_b) = (Arc::new(spy(store.clone())), Arc::new(spy(store.clone())));
    let a = CommandHandler::<Counter>::new(spy_a.clone());
    let b = CommandHandler::<Counter>::new(spy_b.clone());
    for _ in 0..10 {
        a.execute("c", &1, &CommandContext::new()).await.expect("A adds");
        b.execute("c", &1, &CommandContext::new()).await.expect("B adds");
    }
    assert_eq!(a.load("c").await.expect("load").state.value, 20);
    let appends = spy_a.appends.load(Ordering::SeqCst) + spy_b.appends.load(Ordering::SeqCst);
    assert!(appends <= 22, "{appends} appends for 20 commands: each writer should conflict once at most");
}
