//! ② The event store port: the write database, whose events table is the outbox.
//!
//! Every store keeps ARCHITECTURE.md's invariants 4 (an append is atomic and
//! checked against its expected version), 5 (the versions of the streams a
//! decision read are checked with it) and 6 (a reader of
//! [`EventStore::read_all`] that has seen position `p` never later finds a
//! committed event below `p`); the contract suite in `parallax-testing`
//! holds every adapter to them.

use async_trait::async_trait;

use crate::event::{EventRecord, NewEvent, Position};
use crate::read_store::DeadLetter;

/// What the writer believes the stream's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// The stream is exactly at this version (0: it does not exist yet).
    Exact(u64),
    /// Append whatever the version is.
    Any,
}

/// An idempotency key stored with an append, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The client's key.
    pub key: String,
    /// A digest of the request the key was first used with.
    pub fingerprint: String,
    /// What the first answer said, minus its position (JSON text).
    pub response: String,
}

/// A stored idempotency key and what its first append produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdempotency {
    /// The record as first written.
    pub record: IdempotencyRecord,
    /// Position of the last event the first append wrote.
    pub last_position: Position,
}

/// Another stream a decision read, at the version it read.
///
/// An append that carries it commits only if that stream is still at
/// `version`; otherwise it answers [`AppendError::Conflict`] naming that
/// stream. This is how a decision that looked another aggregate up (a
/// product's price, to price a cart line) is never recorded against a state
/// of it that is no longer the store's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamVersion {
    /// The stream read.
    pub stream_id: String,
    /// Its version when read (0: it did not exist).
    pub version: u64,
}

/// One append: events for one stream, checked against an expected version.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// The stream to append to.
    pub stream_id: String,
    /// The version the stream must be at.
    pub expected_version: ExpectedVersion,
    /// At least one event.
    pub events: Vec<NewEvent>,
    /// Stored in the same transaction, when given.
    pub idempotency: Option<IdempotencyRecord>,
    /// Other streams the decision read: each must still be at the version
    /// read when the append commits (checked after the idempotency key and
    /// the expected version, in the same transaction).
    pub reads: Vec<StreamVersion>,
}

impl AppendRequest {
    /// `events` for `stream_id` at `expected_version`, with no idempotency
    /// key and no other stream read.
    pub fn new(
        stream_id: impl Into<String>,
        expected_version: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        Self { stream_id: stream_id.into(), expected_version, events, idempotency: None, reads: Vec::new() }
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The events were written.
    Appended {
        /// Position of the first event written.
        first_position: Position,
        /// Position of the last event written.
        last_position: Position,
        /// The stream's version after the append.
        stream_version: u64,
    },
    /// The idempotency key was already used; nothing was written.
    Duplicate(StoredIdempotency),
}

/// Why an append wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// Another writer got there first: the stream appended to, or one of
    /// the streams the decision read ([`AppendRequest::reads`]), is not at
    /// the version expected.
    #[error("stream {stream} is at version {actual}, not {expected}")]
    Conflict {
        /// The stream that moved.
        stream: String,
        /// The version the writer expected.
        expected: u64,
        /// The version it really is at.
        actual: u64,
    },
    /// The request itself is unusable (no events, say).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A failure of the store itself (I/O, driver, corrupt data).
#[derive(Debug, thiserror::Error)]
#[error("event store: {message}")]
pub struct StoreError {
    /// What failed.
    pub message: String,
    /// The cause.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A store error with a cause.
    pub fn new(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self { message: message.into(), source: Some(Box::new(source)) }
    }

    /// A store error without a cause.
    pub fn msg(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None }
    }
}

/// The state of an aggregate at a stream version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The aggregate's stream (`"{category}-{id}"`).
    pub stream_id: String,
    /// The version the state includes.
    pub stream_version: u64,
    /// Schema version of `state`.
    pub schema_version: u32,
    /// The state as JSON text.
    pub state: String,
}

/// The write database.
///
/// What a command handler does with it, by hand: read a stream, decide,
/// append at the version read; another writer in between makes the append
/// a [`AppendError::Conflict`], and nothing is written.
///
/// ```
/// use parallax_core::{AppendError, AppendOutcome, AppendRequest, EventStore, ExpectedVersion, NewEvent};
///
/// /// Appends `event` to `stream` unless someone else wrote it since we read it.
/// async fn append_after_reading(
///     store: &dyn EventStore,
///     stream: &str,
///     event: NewEvent,
/// ) -> Result<Option<u64>, AppendError> {
///     let version = store.read_stream(stream, 0).await?.len() as u64;
///     // ... decide on those events ...
///     match store.append(AppendRequest::new(stream, ExpectedVersion::Exact(version), vec![event])).await {
///         Ok(AppendOutcome::Appended { stream_version, .. }) => Ok(Some(stream_version)),
///         Ok(AppendOutcome::Duplicate(_)) => Ok(None),
///         Err(AppendError::Conflict { .. }) => Ok(None), // read again and decide again
///         Err(other) => Err(other),
///     }
/// }
/// ```
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends events atomically, checked against `expected_version`.
    ///
    /// The idempotency key, when given, is checked first: a used key answers
    /// [`AppendOutcome::Duplicate`] whatever the stream's version. An event id
    /// already in the store is [`AppendError::Invalid`]. `recorded_at` is kept
    /// to the microsecond; the payload may come back normalised (same JSON
    /// value, other whitespace or key order).
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError>;

    /// The events of one stream with a version above `after_version`, in
    /// order, as committed when the call is made (an empty answer proves the
    /// stream is still at `after_version`).
    async fn read_stream(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventRecord>, StoreError>;

    /// Up to `limit` events with a position above `after`, in position order.
    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, StoreError>;

    /// The position of the last committed event (0 when empty).
    async fn head(&self) -> Result<Position, StoreError>;

    /// What an idempotency key's first append produced, if it was used.
    async fn idempotency(&self, key: &str) -> Result<Option<StoredIdempotency>, StoreError>;

    /// The latest snapshot of a stream.
    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError>;

    /// Stores a snapshot, replacing one of a lower stream version (or of
    /// another schema version); a snapshot older than the stored one is ignored.
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError>;

    /// A named consumer's position (a process manager's, say), kept in the write DB.
    async fn checkpoint(&self, consumer: &str) -> Result<Position, StoreError>;

    /// Stores a named consumer's position.
    async fn save_checkpoint(&self, consumer: &str, position: Position) -> Result<(), StoreError>;

    /// Keeps an event a named consumer (a process manager) could not handle
    /// for good, under `letter.projection` (the consumer's name) and the
    /// event's position. Parking the same (consumer, position) again
    /// changes nothing, so a consumer that handles an event again after a
    /// crash parks it once.
    async fn park(&self, letter: DeadLetter) -> Result<(), StoreError>;

    /// The events a named consumer parked, by position.
    async fn parked(&self, consumer: &str) -> Result<Vec<DeadLetter>, StoreError>;
}
