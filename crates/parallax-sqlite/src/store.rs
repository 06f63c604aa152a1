//! ② The event store on SQLite, with group commit.
//!
//! # Writes: one thread, one transaction per group
//!
//! One OS thread owns the only write connection. [`EventStore::append`] (and
//! `save_snapshot`, `save_checkpoint`) send their request to it over a channel
//! and await the answer. The thread blocks for one request, takes whatever
//! else is queued (up to [`SqliteStoreOptions::max_batch`]), and runs them all
//! in one `BEGIN IMMEDIATE` transaction:
//!
//! - each request runs inside its own `SAVEPOINT`: its idempotency key is
//!   looked up first (already used: [`AppendOutcome::Duplicate`], nothing
//!   written), then the stream's current version is read *inside the
//!   transaction* and checked against the request's expected version, so two
//!   requests for one stream in one group conflict exactly as they would in
//!   two transactions. A request that fails (conflict, invalid, a duplicate
//!   event id) is rolled back to its savepoint and does not affect the others;
//! - one `COMMIT` (one fsync with `synchronous=FULL`) covers the whole group,
//!   and only then is every request answered. If the commit fails, every
//!   request of the group gets an error and nothing of the group is stored.
//!
//! An append whose future is dropped after it was queued may still commit;
//! only its answer is lost (a retry with the same idempotency key then gets
//! [`AppendOutcome::Duplicate`]).
//!
//! An answered append is durable: with the default `synchronous=FULL` it
//! survives `kill -9` and power loss; with `synchronous_full: false`
//! (`synchronous=NORMAL`) it survives a crash of the process but the last
//! groups may be lost on power loss.
//!
//! # Positions: no gaps seen by readers
//!
//! ARCHITECTURE.md's invariant 6 holds by construction. Positions are the rowid of
//! the `events` table (`AUTOINCREMENT`: never reused), assigned inside the
//! write transaction, and SQLite admits one write transaction at a time per
//! file (across processes too). A transaction therefore takes positions above
//! every position of every transaction committed before it, and a reader's
//! snapshot holds either all of a transaction or none of it: the positions a
//! reader sees are always exactly `1..=head`. A tail that has read up to `p`
//! can never later find a committed event below `p`.
//!
//! # Metrics
//!
//! Each committed group records its size (requests) in the histogram
//! `parallax_event_store_group_size{store="sqlite"}` through the `metrics`
//! facade. The handle is taken when the store is opened, from the recorder
//! in effect then: the global one, or one set with
//! `metrics::with_local_recorder` around [`SqliteEventStore::open`].
//!
//! # Reads
//!
//! Reads run on a small pool of separate read connections, never on the
//! write connection; in WAL mode they see the last commit and never wait for
//! the writer. Point reads (the head, an idempotency key, a checkpoint) run
//! on the calling thread: an index lookup costs less than a handoff to a
//! blocking thread and back. Events, streams and snapshots are read in
//! `spawn_blocking`.
//!
//! `recorded_at` is stored in microseconds: finer digits are dropped.
//! A snapshot replaces the stored one unless that one is of a higher stream
//! version (and the same schema version): late background saves never win.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use parallax_core::{
    AppendError, AppendOutcome, AppendRequest, DeadLetter, EventRecord, EventStore, ExpectedVersion,
    IdempotencyRecord, Position, Snapshot, StoreError, StoredIdempotency,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::{oneshot, watch};

use crate::conn::{clamp_i64, json_at, micros, open_writer, timestamp_at, u64_at, uuid_at, ReadPool};
use crate::error::{is_unique_violation, Shared};
use crate::log::SqliteLog;

const SCHEMA: &str = include_str!("sql/event_store.sql");

/// The histogram of group sizes (see the module docs).
const GROUP_SIZE: &str = "parallax_event_store_group_size";

/// How an event store file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteStoreOptions {
    /// The most requests committed in one transaction (at least 1).
    pub max_batch: usize,
    /// `synchronous=FULL` (durable on power loss) when true, `NORMAL`
    /// (durable on a process crash only) when false.
    pub synchronous_full: bool,
}

impl Default for SqliteStoreOptions {
    fn default() -> Self {
        Self { max_batch: 512, synchronous_full: true }
    }
}

/// The event store in one SQLite file. Cheap to clone; the writer thread ends
/// when the last clone is dropped (its queued requests are committed first).
#[derive(Clone)]
pub struct SqliteEventStore {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: mpsc::Sender<Message>,
    writer: Option<JoinHandle<()>>,
    reads: Arc<ReadPool>,
    head: watch::Receiver<Position>,
    counters: Arc<Counters>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has answered what is queued.
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the event store's writer thread panicked");
            }
        }
    }
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    requests: AtomicU64,
}

/// What the writer thread has done since the store was opened (for tests
/// and diagnostics).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Write transactions committed.
    pub transactions: u64,
    /// Requests (appends, snapshots, checkpoints) answered by those commits.
    pub requests: u64,
}

/// Holds the writer thread before its next group while alive (for tests):
/// requests sent meanwhile are committed together once it is dropped.
#[doc(hidden)]
#[must_use = "the writer resumes when this is dropped"]
pub struct WriterPause {
    _release: mpsc::Sender<()>,
}

impl std::fmt::Debug for SqliteEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEventStore").field("head", &*self.inner.head.borrow()).finish_non_exhaustive()
    }
}

impl SqliteEventStore {
    /// Opens (creating if needed) the event store at `path`, with the default
    /// [`SqliteStoreOptions`], and starts its writer thread. Blocks while it
    /// creates the schema: call it at startup (or in `spawn_blocking`).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteStoreOptions::default())
    }

    /// Opens (creating if needed) the event store at `path`.
    pub fn open_with(path: &Path, options: SqliteStoreOptions) -> Result<Self, StoreError> {
        let synchronous = if options.synchronous_full { "FULL" } else { "NORMAL" };
        let conn: Connection = open_writer(path, synchronous, SCHEMA)?;
        let head = conn
            .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |row| u64_at(row, 0))
            .map_err(|e| StoreError::new("read the head position", e))?;
        let (head_tx, head_rx) = watch::channel(head);
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        metrics::describe_histogram!(
            GROUP_SIZE,
            "Requests committed together in one event store transaction"
        );
        let writer = Writer {
            conn,
            jobs: jobs_rx,
            head: head_tx,
            counters: Arc::clone(&counters),
            group_size: metrics::histogram!(GROUP_SIZE, "store" => "sqlite"),
            max_batch: options.max_batch.max(1),
            broken: false,
        };
        let thread = std::thread::Builder::new()
            .name("parallax-sqlite-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::new("start the writer thread", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: jobs_tx,
                writer: Some(thread),
                reads: Arc::new(ReadPool::new(path)),
                head: head_rx,
                counters,
            }),
        })
    }

    /// The log tail of this store, for projectors (see [`SqliteLog`]).
    pub fn log(&self) -> SqliteLog {
        SqliteLog::new(Arc::clone(&self.inner.reads), self.inner.head.clone())
    }

    #[doc(hidden)]
    pub fn writer_stats(&self) -> WriterStats {
        WriterStats {
            transactions: self.inner.counters.transactions.load(Ordering::Acquire),
            requests: self.inner.counters.requests.load(Ordering::Acquire),
        }
    }

    #[doc(hidden)]
    pub fn pause_writer(&self) -> WriterPause {
        let (release, paused) = mpsc::channel();
        // If the writer is gone, there is nothing to pause.
        let _ = self.inner.jobs.send(Message::Pause(paused));
        WriterPause { _release: release }
    }

    async fn submit<T, E: From<StoreError>>(&self, job: impl FnOnce(Reply<T, E>) -> Job) -> Result<T, E> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .jobs
            .send(Message::Job(job(reply)))
            .map_err(|_| StoreError::msg("the event store's writer thread has stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::msg("the event store's writer thread stopped before answering"))?
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        if request.events.is_empty() {
            return Err(AppendError::Invalid(format!("an append to {} has no events", request.stream_id)));
        }
        if request.stream_id.is_empty() {
            return Err(AppendError::Invalid("an append has an empty stream id".into()));
        }
        self.submit(|reply| Job::Append(request, reply)).await
    }

    async fn read_stream(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventRecord>, StoreError> {
        let stream_id = stream_id.to_owned();
        self.inner
            .reads
            .read(move |conn| {
                read_stream(conn, &stream_id, after_version)
                    .map_err(|e| StoreError::new(format!("read stream {stream_id}"), e))
            })
            .await
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        read_all(&self.inner.reads, after, limit).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        head(&self.inner.reads).await
    }

    async fn idempotency(&self, key: &str) -> Result<Option<StoredIdempotency>, StoreError> {
        self.inner.reads.read_now(|conn| {
            idempotency(conn, key).map_err(|e| StoreError::new(format!("look up idempotency key {key}"), e))
        })
    }

    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        let stream_id = stream_id.to_owned();
        self.inner
            .reads
            .read(move |conn| {
                load_snapshot(conn, &stream_id)
                    .map_err(|e| StoreError::new(format!("load the snapshot of {stream_id}"), e))
            })
            .await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.submit(|reply| Job::SaveSnapshot(snapshot, reply)).await
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Position, StoreError> {
        self.inner.reads.read_now(|conn| {
            checkpoint(conn, consumer)
                .map_err(|e| StoreError::new(format!("load the checkpoint of {consumer}"), e))
        })
    }

    async fn save_checkpoint(&self, consumer: &str, position: Position) -> Result<(), StoreError> {
        let consumer = consumer.to_owned();
        self.submit(|reply| Job::SaveCheckpoint(consumer, position, reply)).await
    }

    async fn park(&self, letter: DeadLetter) -> Result<(), StoreError> {
        self.submit(|reply| Job::Park(letter, reply)).await
    }

    async fn parked(&self, consumer: &str) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner.reads.read_now(|conn| {
            parked(conn, consumer).map_err(|e| StoreError::new(format!("list what {consumer} parked"), e))
        })
    }
}

// ---------------------------------------------------------------------------
// Reads (pool connections)

const EVENT_COLUMNS: &str =
    "position, stream_id, stream_version, event_id, event_type, schema_version, payload, metadata, recorded_at";

fn record_at(row: &Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        position: u64_at(row, 0)?,
        stream_id: row.get(1)?,
        stream_version: u64_at(row, 2)?,
        event_id: uuid_at(row, 3)?,
        event_type: row.get(4)?,
        schema_version: row.get(5)?,
        payload: row.get(6)?,
        metadata: json_at(row, 7)?,
        recorded_at: timestamp_at(row, 8)?,
    })
}

fn read_stream(conn: &Connection, stream_id: &str, after_version: u64) -> rusqlite::Result<Vec<EventRecord>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ?1 AND stream_version > ?2 ORDER BY stream_version"
    ))?;
    let rows = statement.query_map(params![stream_id, clamp_i64(after_version)], record_at)?;
    rows.collect()
}

/// Up to `limit` events after `after`, in position order (shared with the log).
pub(crate) async fn read_all(
    reads: &Arc<ReadPool>,
    after: Position,
    limit: usize,
) -> Result<Vec<EventRecord>, StoreError> {
    reads
        .read(move |conn| {
            let read = || -> rusqlite::Result<Vec<EventRecord>> {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
                ))?;
                let rows = statement.query_map(params![clamp_i64(after), clamp_i64(limit)], record_at)?;
                rows.collect()
            };
            read().map_err(|e| StoreError::new(format!("read events after position {after}"), e))
        })
        .await
}

/// The position of the last committed event (shared with the log).
pub(crate) async fn head(reads: &Arc<ReadPool>) -> Result<Position, StoreError> {
    reads.read_now(|conn| {
        conn.prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")
            .and_then(|mut statement| statement.query_row([], |row| u64_at(row, 0)))
            .map_err(|e| StoreError::new("read the head position", e))
    })
}

fn idempotency(conn: &Connection, key: &str) -> rusqlite::Result<Option<StoredIdempotency>> {
    let mut statement = conn
        .prepare_cached("SELECT key, fingerprint, response, last_position FROM idempotency WHERE key = ?1")?;
    statement
        .query_row([key], |row| {
            Ok(StoredIdempotency {
                record: IdempotencyRecord {
                    key: row.get(0)?,
                    fingerprint: row.get(1)?,
                    response: row.get(2)?,
                },
                last_position: u64_at(row, 3)?,
            })
        })
        .optional()
}

fn load_snapshot(conn: &Connection, stream_id: &str) -> rusqlite::Result<Option<Snapshot>> {
    let mut statement = conn.prepare_cached(
        "SELECT stream_id, stream_version, schema_version, state FROM snapshots WHERE stream_id = ?1",
    )?;
    statement
        .query_row([stream_id], |row| {
            Ok(Snapshot {
                stream_id: row.get(0)?,
                stream_version: u64_at(row, 1)?,
                schema_version: row.get(2)?,
                state: row.get(3)?,
            })
        })
        .optional()
}

fn parked(conn: &Connection, consumer: &str) -> rusqlite::Result<Vec<DeadLetter>> {
    let mut statement = conn.prepare_cached(
        "SELECT position, event_id, event_type, error FROM parked WHERE consumer = ?1 ORDER BY position",
    )?;
    let rows = statement.query_map(params![consumer], |row| {
        Ok(DeadLetter {
            projection: consumer.to_owned(),
            position: u64_at(row, 0)?,
            event_id: uuid_at(row, 1)?,
            event_type: row.get(2)?,
            error: row.get(3)?,
        })
    })?;
    rows.collect()
}

fn checkpoint(conn: &Connection, consumer: &str) -> rusqlite::Result<Position> {
    let mut statement = conn.prepare_cached("SELECT position FROM checkpoints WHERE consumer = ?1")?;
    Ok(statement.query_row([consumer], |row| u64_at(row, 0)).optional()?.unwrap_or(0))
}

// ---------------------------------------------------------------------------
// Writes (the writer thread)

type Reply<T, E> = oneshot::Sender<Result<T, E>>;

enum Message {
    Job(Job),
    Pause(mpsc::Receiver<()>),
}

enum Job {
    Append(AppendRequest, Reply<AppendOutcome, AppendError>),
    SaveSnapshot(Snapshot, Reply<(), StoreError>),
    SaveCheckpoint(String, Position, Reply<(), StoreError>),
    Park(DeadLetter, Reply<(), StoreError>),
}

/// A job that has run inside the open transaction, waiting for the commit.
enum Done {
    Append(Reply<AppendOutcome, AppendError>, Result<AppendOutcome, AppendError>),
    Unit(Reply<(), StoreError>, Result<(), StoreError>),
}

impl Job {
    /// Answers with `error` without running.
    fn fail(self, error: StoreError) {
        // A requester that stopped waiting does not care about the answer.
        match self {
            Job::Append(_, reply) => drop(reply.send(Err(error.into()))),
            Job::SaveSnapshot(_, reply) | Job::SaveCheckpoint(_, _, reply) | Job::Park(_, reply) => {
                drop(reply.send(Err(error)))
            }
        }
    }
}

impl Done {
    /// Sends the result computed in the transaction (after a successful commit).
    fn answer(self) {
        match self {
            Done::Append(reply, result) => drop(reply.send(result)),
            Done::Unit(reply, result) => drop(reply.send(result)),
        }
    }

    /// Answers with `error` instead: the transaction did not commit.
    fn fail(self, error: StoreError) {
        match self {
            Done::Append(reply, _) => drop(reply.send(Err(error.into()))),
            Done::Unit(reply, _) => drop(reply.send(Err(error))),
        }
    }

    /// Answers with the job's own error if it failed, else with `error`.
    fn fail_keeping_own_error(self, error: StoreError) {
        match self {
            Done::Append(reply, Err(own)) => drop(reply.send(Err(own))),
            Done::Unit(reply, Err(own)) => drop(reply.send(Err(own))),
            done => done.fail(error),
        }
    }

    fn last_position(&self) -> Option<Position> {
        match self {
            Done::Append(_, Ok(AppendOutcome::Appended { last_position, .. })) => Some(*last_position),
            _ => None,
        }
    }
}

struct Writer {
    conn: Connection,
    jobs: mpsc::Receiver<Message>,
    head: watch::Sender<Position>,
    counters: Arc<Counters>,
    group_size: metrics::Histogram,
    max_batch: usize,
    /// Set when a savepoint could not be released or rolled back: the open
    /// transaction may hold a failed request's writes and must not commit.
    broken: bool,
}

impl Writer {
    fn run(mut self) {
        let mut group = Vec::new(); // reused: it keeps the largest group's capacity
        while let Ok(message) = self.jobs.recv() {
            let job = match message {
                Message::Job(job) => job,
                Message::Pause(release) => {
                    // Returns when the pause guard is dropped.
                    let _ = release.recv();
                    continue;
                }
            };
            group.push(job);
            let mut pause = None;
            while group.len() < self.max_batch {
                match self.jobs.try_recv() {
                    Ok(Message::Job(job)) => group.push(job),
                    Ok(Message::Pause(release)) => {
                        pause = Some(release);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group.drain(..));
            if let Some(release) = pause {
                let _ = release.recv();
            }
        }
        tracing::debug!("event store writer thread ends: every handle was dropped");
    }

    /// Runs `jobs` in one transaction and answers each of them.
    fn commit_group(&mut self, mut jobs: impl Iterator<Item = Job>) {
        if let Err(e) = self.execute("BEGIN IMMEDIATE") {
            let e = Shared::new(e);
            jobs.for_each(|job| job.fail(StoreError::new("begin a write transaction", e.clone())));
            return;
        }
        self.broken = false;
        let mut done = Vec::new();
        while let Some(job) = jobs.next() {
            done.push(self.run_job(job));
            if self.broken || self.conn.is_autocommit() {
                // SQLite rolled the transaction back (I/O error, disk full) or a
                // savepoint could not be undone: nothing of the group may commit.
                let _ = self.execute("ROLLBACK");
                tracing::error!("a write transaction was aborted; failing its {} requests", done.len());
                let abort =
                    || StoreError::msg("the group's write transaction was aborted by an earlier failure");
                let culprit = done.pop().expect("the job just run is in `done`");
                culprit.fail_keeping_own_error(abort());
                done.into_iter().for_each(|d| d.fail(abort()));
                jobs.for_each(|job| job.fail(abort()));
                return;
            }
        }
        if let Err(e) = self.execute("COMMIT") {
            let _ = self.execute("ROLLBACK");
            let e = Shared::new(e);
            tracing::error!(error = %e, "commit of {} requests failed", done.len());
            done.into_iter()
                .for_each(|d| d.fail(StoreError::new("commit the group's write transaction", e.clone())));
            return;
        }
        self.counters.transactions.fetch_add(1, Ordering::AcqRel);
        self.counters.requests.fetch_add(done.len() as u64, Ordering::AcqRel);
        self.group_size.record(done.len() as f64);
        if let Some(head) = done.iter().filter_map(Done::last_position).max() {
            // Wakes the log tail; receivers read the latest value.
            self.head.send_replace(head);
        }
        done.into_iter().for_each(Done::answer);
    }

    fn execute(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    fn run_job(&mut self, job: Job) -> Done {
        match job {
            Job::Append(request, reply) => {
                let result = if request.events.len() == 1 && request.idempotency.is_none() {
                    // One write statement: if it fails, SQLite backs out that
                    // statement alone and the transaction goes on, so the
                    // request leaves nothing behind without a savepoint (two
                    // statements fewer per command, on the one writer thread).
                    append(&self.conn, &request)
                } else {
                    self.in_savepoint(|conn| append(conn, &request))
                };
                Done::Append(reply, result)
            }
            Job::SaveSnapshot(snapshot, reply) => {
                let result = self.in_savepoint(|conn| {
                    save_snapshot(conn, &snapshot).map_err(|e| {
                        StoreError::new(format!("save the snapshot of {}", snapshot.stream_id), e)
                    })
                });
                Done::Unit(reply, result)
            }
            Job::SaveCheckpoint(consumer, position, reply) => {
                let result = self.in_savepoint(|conn| {
                    save_checkpoint(conn, &consumer, position)
                        .map_err(|e| StoreError::new(format!("save the checkpoint of {consumer}"), e))
                });
                Done::Unit(reply, result)
            }
            Job::Park(letter, reply) => {
                let result = self.in_savepoint(|conn| {
                    park(conn, &letter)
                        .map_err(|e| StoreError::new(format!("park an event of {}", letter.projection), e))
                });
                Done::Unit(reply, result)
            }
        }
    }

    /// Runs one request so that, if it fails, nothing it wrote remains.
    fn in_savepoint<T, E: From<StoreError>>(
        &mut self,
        request: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        self.execute("SAVEPOINT request").map_err(|e| StoreError::new("open a savepoint", e))?;
        match request(&self.conn) {
            Ok(value) => match self.execute("RELEASE request") {
                Ok(()) => Ok(value),
                Err(e) => {
                    self.broken = true;
                    Err(StoreError::new("release a savepoint", e).into())
                }
            },
            Err(error) => {
                if self.execute("ROLLBACK TO request").and_then(|()| self.execute("RELEASE request")).is_err()
                {
                    self.broken = true;
                }
                Err(error)
            }
        }
    }
}

/// One append inside the open write transaction.
fn append(conn: &Connection, request: &AppendRequest) -> Result<AppendOutcome, AppendError> {
    let stream = &request.stream_id;
    if let Some(key) = &request.idempotency {
        let stored = idempotency(conn, &key.key)
            .map_err(|e| StoreError::new(format!("look up idempotency key {}", key.key), e))?;
        if let Some(stored) = stored {
            return Ok(AppendOutcome::Duplicate(stored));
        }
    }

    for read in &request.reads {
        let actual = stream_version(conn, &read.stream_id)?;
        if actual != read.version {
            return Err(AppendError::Conflict {
                stream: read.stream_id.clone(),
                expected: read.version,
                actual,
            });
        }
    }
    let actual = stream_version(conn, stream)?;
    if let ExpectedVersion::Exact(expected) = request.expected_version {
        if expected != actual {
            return Err(AppendError::Conflict { stream: stream.clone(), expected, actual });
        }
    }

    let mut insert = conn
        .prepare_cached(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, payload, \
             metadata, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(|e| StoreError::new("prepare the event insert", e))?;
    let mut first_position = None;
    let mut last_position = 0;
    let mut version = actual;
    for event in &request.events {
        version += 1;
        let metadata = serde_json::to_string(&event.metadata).map_err(|e| {
            AppendError::Invalid(format!("metadata of event {} does not encode: {e}", event.event_id))
        })?;
        let mut id_text = uuid::Uuid::encode_buffer();
        let event_id: &str = event.event_id.hyphenated().encode_lower(&mut id_text);
        let inserted = insert.execute(params![
            stream,
            clamp_i64(version),
            event_id,
            event.event_type,
            event.schema_version,
            event.payload,
            metadata,
            micros(event.recorded_at),
        ]);
        if let Err(e) = inserted {
            return Err(if is_unique_violation(&e) && event_id_stored(conn, event_id) {
                AppendError::Invalid(format!("event id {event_id} is already stored"))
            } else {
                StoreError::new(format!("insert event {event_id} into {stream}"), e).into()
            });
        }
        let position = u64::try_from(conn.last_insert_rowid())
            .map_err(|e| StoreError::new("read the position of an inserted event", e))?;
        first_position.get_or_insert(position);
        last_position = position;
    }
    let first_position = first_position.expect("an append has at least one event (checked before queueing)");

    if let Some(key) = &request.idempotency {
        conn.prepare_cached(
            "INSERT INTO idempotency (key, fingerprint, response, last_position) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut statement| {
            statement.execute(params![key.key, key.fingerprint, key.response, clamp_i64(last_position)])
        })
        .map_err(|e| StoreError::new(format!("store idempotency key {}", key.key), e))?;
    }
    Ok(AppendOutcome::Appended { first_position, last_position, stream_version: version })
}

/// A stream's version inside the write transaction (0: no such stream).
fn stream_version(conn: &Connection, stream: &str) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = ?1")
        .and_then(|mut statement| statement.query_row([stream], |row| u64_at(row, 0)))
        .map_err(|e| StoreError::new(format!("read the version of stream {stream}"), e))
}

/// Whether an event id is already in the store (a unique violation's cause).
fn event_id_stored(conn: &Connection, event_id: &str) -> bool {
    conn.prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")
        .and_then(|mut statement| statement.exists([event_id]))
        .unwrap_or(false)
}

fn save_snapshot(conn: &Connection, snapshot: &Snapshot) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO snapshots (stream_id, stream_version, schema_version, state) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (stream_id) DO UPDATE SET stream_version = excluded.stream_version, \
         schema_version = excluded.schema_version, state = excluded.state \
         WHERE excluded.stream_version >= snapshots.stream_version \
         OR excluded.schema_version <> snapshots.schema_version",
    )?
    .execute(params![
        snapshot.stream_id,
        clamp_i64(snapshot.stream_version),
        snapshot.schema_version,
        snapshot.state
    ])
    .map(drop)
}

fn park(conn: &Connection, letter: &DeadLetter) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO parked (consumer, position, event_id, event_type, error) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (consumer, position) DO NOTHING",
    )?
    .execute(params![
        letter.projection,
        clamp_i64(letter.position),
        letter.event_id.hyphenated().to_string(),
        letter.event_type,
        letter.error
    ])
    .map(drop)
}

fn save_checkpoint(conn: &Connection, consumer: &str, position: Position) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO checkpoints (consumer, position) VALUES (?1, ?2) \
         ON CONFLICT (consumer) DO UPDATE SET position = excluded.position",
    )?
    .execute(params![consumer, clamp_i64(position)])
    .map(drop)
}
