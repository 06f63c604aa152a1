//! An event store in memory, and the log that tails it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parallax_core::{
    AppendError, AppendOutcome, AppendRequest, DeadLetter, EventLog, EventRecord, EventStore,
    ExpectedVersion, LogError, Position, Snapshot, StoreError, StoredIdempotency,
};
use tokio::sync::watch;
use uuid::Uuid;

/// An [`EventStore`] in memory, for unit tests and examples: it keeps the
/// port's contract (the suite in [`crate::event_store`] runs against it)
/// and forgets everything when dropped. Cheap to clone: clones share the
/// events.
///
/// ```
/// use parallax_core::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent};
/// use parallax_testing::memory::MemEventStore;
///
/// # tokio_test_block_on(async {
/// let store = MemEventStore::new();
/// let event = NewEvent {
///     event_id: uuid::Uuid::now_v7(),
///     event_type: "account.opened".into(),
///     schema_version: 1,
///     payload: r#"{"owner":"ada"}"#.into(),
///     metadata: Metadata::default(),
///     recorded_at: chrono::Utc::now(),
/// };
/// store.append(AppendRequest::new("account-1", ExpectedVersion::Exact(0), vec![event])).await?;
/// let events = store.read_stream("account-1", 0).await?;
/// assert_eq!(events[0].stream_version, 1);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct MemEventStore {
    state: Arc<Mutex<State>>,
    head: Arc<watch::Sender<Position>>,
}

#[derive(Default)]
struct State {
    /// Every event; the event at index `i` has position `i + 1`.
    events: Vec<EventRecord>,
    /// Per stream, the indexes of its events in `events`.
    streams: HashMap<String, Vec<usize>>,
    event_ids: HashSet<Uuid>,
    idempotency: HashMap<String, StoredIdempotency>,
    snapshots: HashMap<String, Snapshot>,
    checkpoints: HashMap<String, Position>,
    parked: BTreeMap<(String, Position), DeadLetter>,
}

impl State {
    fn version(&self, stream_id: &str) -> u64 {
        self.streams.get(stream_id).map_or(0, |events| events.len() as u64)
    }

    /// The conflict an append meets, if any: its own stream first, then
    /// each stream its decision read.
    fn conflict(&self, request: &AppendRequest) -> Option<AppendError> {
        let own = match request.expected_version {
            ExpectedVersion::Exact(expected) => Some((&request.stream_id, expected)),
            ExpectedVersion::Any => None,
        };
        let reads = request.reads.iter().map(|read| (&read.stream_id, read.version));
        own.into_iter().chain(reads).find_map(|(stream, expected)| {
            let actual = self.version(stream);
            (actual != expected).then(|| AppendError::Conflict { stream: stream.clone(), expected, actual })
        })
    }
}

impl Default for MemEventStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemEventStore").field("head", &*self.head.borrow()).finish_non_exhaustive()
    }
}

impl MemEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self { state: Arc::default(), head: Arc::new(watch::channel(0).0) }
    }

    /// The log over this store: [`EventStore::read_all`] in position order,
    /// woken by every append.
    pub fn log(&self) -> MemLog {
        MemLog { store: self.clone() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held leaves no half-made change behind
        // (each change is made after every check), so the state stays usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `at` to the microsecond, as the SQL stores keep it.
fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// Why `request` is unusable whatever the store holds, if it is.
fn malformed(request: &AppendRequest) -> Option<String> {
    if request.events.is_empty() {
        return Some(format!("an append to {} has no events", request.stream_id));
    }
    request.stream_id.is_empty().then(|| "an append has an empty stream id".into())
}

/// An event id of `request` the store (or the request itself) has already.
fn stored_twice(request: &AppendRequest, state: &State) -> Option<String> {
    let mut seen = HashSet::new();
    request
        .events
        .iter()
        .find(|event| state.event_ids.contains(&event.event_id) || !seen.insert(event.event_id))
        .map(|event| format!("event id {} is already stored", event.event_id))
}

#[async_trait]
impl EventStore for MemEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        if let Some(reason) = malformed(&request) {
            return Err(AppendError::Invalid(reason));
        }
        let mut state = self.state();
        if let Some(first) = request.idempotency.as_ref().and_then(|key| state.idempotency.get(&key.key)) {
            return Ok(AppendOutcome::Duplicate(first.clone()));
        }
        if let Some(conflict) = state.conflict(&request) {
            return Err(conflict);
        }
        if let Some(reason) = stored_twice(&request, &state) {
            return Err(AppendError::Invalid(reason));
        }
        let first_position = state.events.len() as Position + 1;
        let mut stream_version = state.version(&request.stream_id);
        for event in request.events {
            stream_version += 1;
            let index = state.events.len();
            state.event_ids.insert(event.event_id);
            state.streams.entry(request.stream_id.clone()).or_default().push(index);
            state.events.push(EventRecord {
                position: index as Position + 1,
                stream_id: request.stream_id.clone(),
                stream_version,
                event_id: event.event_id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                payload: event.payload,
                metadata: event.metadata,
                recorded_at: to_micros(event.recorded_at),
            });
        }
        let last_position = state.events.len() as Position;
        if let Some(record) = request.idempotency {
            state.idempotency.insert(record.key.clone(), StoredIdempotency { record, last_position });
        }
        drop(state);
        self.head.send_replace(last_position);
        Ok(AppendOutcome::Appended { first_position, last_position, stream_version })
    }

    async fn read_stream(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventRecord>, StoreError> {
        let state = self.state();
        let Some(indexes) = state.streams.get(stream_id) else { return Ok(Vec::new()) };
        let after = usize::try_from(after_version).unwrap_or(usize::MAX);
        Ok(indexes.iter().skip(after).map(|&i| state.events[i].clone()).collect())
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let state = self.state();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(state.events.len());
        Ok(state.events[start..].iter().take(limit).cloned().collect())
    }

    async fn head(&self) -> Result<Position, StoreError> {
        Ok(self.state().events.len() as Position)
    }

    async fn idempotency(&self, key: &str) -> Result<Option<StoredIdempotency>, StoreError> {
        Ok(self.state().idempotency.get(key).cloned())
    }

    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.state().snapshots.get(stream_id).cloned())
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut state = self.state();
        let newer = state.snapshots.get(&snapshot.stream_id).is_none_or(|stored| {
            stored.schema_version != snapshot.schema_version
                || stored.stream_version <= snapshot.stream_version
        });
        if newer {
            state.snapshots.insert(snapshot.stream_id.clone(), snapshot);
        }
        Ok(())
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Position, StoreError> {
        Ok(self.state().checkpoints.get(consumer).copied().unwrap_or(0))
    }

    async fn save_checkpoint(&self, consumer: &str, position: Position) -> Result<(), StoreError> {
        self.state().checkpoints.insert(consumer.to_owned(), position);
        Ok(())
    }

    async fn park(&self, letter: DeadLetter) -> Result<(), StoreError> {
        self.state().parked.entry((letter.projection.clone(), letter.position)).or_insert(letter);
        Ok(())
    }

    async fn parked(&self, consumer: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let state = self.state();
        Ok(state.parked.values().filter(|letter| letter.projection == consumer).cloned().collect())
    }
}

/// The [`EventLog`] over a [`MemEventStore`], from [`MemEventStore::log`]:
/// one partition, positions without gaps, woken by each append.
#[derive(Clone, Debug)]
pub struct MemLog {
    store: MemEventStore,
}

#[async_trait]
impl EventLog for MemLog {
    async fn read(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, LogError> {
        self.store.read_all(after, limit).await
    }

    async fn wait_beyond(&self, after: Position, timeout: Duration) {
        let mut head = self.store.head.subscribe();
        // Running out of time is an answer too: the caller reads again.
        let _ = tokio::time::timeout(timeout, head.wait_for(|&head| head > after)).await;
    }

    async fn head(&self) -> Result<Position, LogError> {
        self.store.head().await
    }
}
