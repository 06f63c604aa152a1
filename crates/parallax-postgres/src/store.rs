//! ② The event store on PostgreSQL, with group commit.
//!
//! Appends queue up; a few writer tasks each take whatever is queued (up to
//! `max_batch` requests) and append it with one call of the
//! `parallax_append` SQL function: one statement, so one transaction, one
//! round trip and one WAL flush for the whole group. Inside, every request is
//! still checked on its own: idempotency key first, then the versions of the
//! other streams its decision read (`reads`: each row of `streams` must still
//! say what was read), then the expected version (a compare-and-set on the
//! stream's row in `streams`, which also serializes concurrent appends to one
//! stream across processes), then its events.
//!
//! Requests of a group are sent sorted by stream id (stable, so one stream's
//! requests keep their order), so concurrent groups lock stream rows in one
//! order and cannot deadlock on them. A group that fails with an error that
//! proves it was rolled back (deadlock, serialization failure) is retried; a
//! group whose outcome is unknown (the connection dropped during the commit)
//! fails every request with a store error rather than risk appending twice.
//!
//! Each group that reaches the database records its size (requests) in the
//! histogram `parallax_event_store_group_size{store="postgres"}` through the
//! `metrics` facade; the handle is taken in [`PgEventStore::new`], from the
//! recorder in effect then (the global one, or one set with
//! `metrics::with_local_recorder`).
//!
//! Positions and transaction ids are taken together under a lock, so the log
//! tail ([`crate::PgLog`]) never skips an event that commits late; see the
//! migration that defines `parallax_append` for the argument.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parallax_core::{
    AppendError, AppendOutcome, AppendRequest, DeadLetter, EventRecord, EventStore, ExpectedVersion,
    IdempotencyRecord, Metadata, Position, Snapshot, StoreError, StoredIdempotency,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::postgres::PgPool;
use sqlx::types::Json;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use uuid::Uuid;

use crate::error::{is_retryable, store_error};
use crate::log::PgLog;

/// Tuning of the event store.
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// Most requests appended in one transaction.
    pub max_batch: usize,
    /// Writer tasks, each with a group in flight.
    pub writers: usize,
    /// How often a caught-up log tail looks for events written by other processes.
    pub poll_interval: std::time::Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        Self { max_batch: 512, writers: 4, poll_interval: std::time::Duration::from_millis(10) }
    }
}

type Reply = oneshot::Sender<Result<AppendOutcome, AppendError>>;

/// A request waiting for its group.
struct Pending {
    request: AppendRequest,
    reply: Reply,
}

/// The event store in one PostgreSQL database. Cheap to clone.
#[derive(Clone)]
pub struct PgEventStore {
    pool: PgPool,
    queue: mpsc::Sender<Pending>,
    head: watch::Receiver<Position>,
    options: PgStoreOptions,
}

impl std::fmt::Debug for PgEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEventStore").field("options", &self.options).finish_non_exhaustive()
    }
}

impl PgEventStore {
    /// An event store over `pool` (whose database has the write schema:
    /// see [`crate::migrate_write`]). Starts its writer tasks on the current
    /// tokio runtime; they stop when the last clone is dropped.
    pub fn new(pool: PgPool, options: PgStoreOptions) -> Self {
        let (queue, requests) = mpsc::channel(options.max_batch.max(1) * 4);
        let (advanced, head) = watch::channel(0);
        let requests = Arc::new(Mutex::new(requests));
        let advanced = Arc::new(advanced);
        metrics::describe_histogram!(
            GROUP_SIZE,
            "Requests committed together in one event store transaction"
        );
        let group_size = metrics::histogram!(GROUP_SIZE, "store" => "postgres");
        for _ in 0..options.writers.max(1) {
            let writer = Writer {
                pool: pool.clone(),
                requests: Arc::clone(&requests),
                advanced: Arc::clone(&advanced),
                max_batch: options.max_batch.max(1),
                group_size: group_size.clone(),
            };
            tokio::spawn(writer.run());
        }
        Self { pool, queue, head, options }
    }

    /// Connects to `url` with default options.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = crate::pool(url, 16).await?;
        Ok(Self::new(pool, PgStoreOptions::default()))
    }

    /// The log tail over this store.
    pub fn log(&self) -> PgLog {
        PgLog::new(self.pool.clone(), self.head.clone(), self.options.poll_interval)
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        validate(&request)?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { request, reply })
            .await
            .map_err(|_| StoreError::msg("the event store's writers have stopped"))?;
        answer.await.map_err(|_| StoreError::msg("an event store writer stopped before answering"))?
    }

    async fn read_stream(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version"
        ))
        .bind(stream_id)
        .bind(to_i64(after_version))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error(format!("read stream {stream_id}"), e))?;
        rows.iter().map(record_of).collect()
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        crate::log::read_after(&self.pool, after, limit).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        head(&self.pool).await
    }

    async fn idempotency(&self, key: &str) -> Result<Option<StoredIdempotency>, StoreError> {
        let row = sqlx::query(
            "SELECT fingerprint, response, last_position FROM idempotency_keys \
             WHERE key = $1 AND last_position > 0",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| store_error(format!("look up idempotency key {key}"), e))?;
        Ok(row.map(|row| StoredIdempotency {
            record: IdempotencyRecord {
                key: key.to_owned(),
                fingerprint: row.get("fingerprint"),
                response: row.get("response"),
            },
            last_position: to_u64(row.get("last_position")),
        }))
    }

    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        let row =
            sqlx::query("SELECT stream_version, schema_version, state FROM snapshots WHERE stream_id = $1")
                .bind(stream_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| store_error(format!("load the snapshot of {stream_id}"), e))?;
        Ok(row.map(|row| Snapshot {
            stream_id: stream_id.to_owned(),
            stream_version: to_u64(row.get("stream_version")),
            schema_version: u32::try_from(row.get::<i32, _>("schema_version")).unwrap_or_default(),
            state: row.get("state"),
        }))
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshots (stream_id, stream_version, schema_version, state) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (stream_id) DO UPDATE SET stream_version = excluded.stream_version, \
             schema_version = excluded.schema_version, state = excluded.state, taken_at = now() \
             WHERE snapshots.stream_version <= excluded.stream_version",
        )
        .bind(&snapshot.stream_id)
        .bind(to_i64(snapshot.stream_version))
        .bind(i32::try_from(snapshot.schema_version).unwrap_or(i32::MAX))
        .bind(&snapshot.state)
        .execute(&self.pool)
        .await
        .map_err(|e| store_error(format!("save the snapshot of {}", snapshot.stream_id), e))?;
        Ok(())
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Position, StoreError> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM consumer_checkpoints WHERE consumer = $1")
                .bind(consumer)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| store_error(format!("load the checkpoint of {consumer}"), e))?;
        Ok(position.map_or(0, to_u64))
    }

    async fn save_checkpoint(&self, consumer: &str, position: Position) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO consumer_checkpoints (consumer, position) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET position = excluded.position",
        )
        .bind(consumer)
        .bind(to_i64(position))
        .execute(&self.pool)
        .await
        .map_err(|e| store_error(format!("save the checkpoint of {consumer}"), e))?;
        Ok(())
    }

    async fn park(&self, letter: DeadLetter) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO parked (consumer, position, event_id, event_type, error) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (consumer, position) DO NOTHING",
        )
        .bind(&letter.projection)
        .bind(to_i64(letter.position))
        .bind(letter.event_id)
        .bind(&letter.event_type)
        .bind(&letter.error)
        .execute(&self.pool)
        .await
        .map_err(|e| store_error(format!("park an event of {}", letter.projection), e))?;
        Ok(())
    }

    async fn parked(&self, consumer: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let rows: Vec<(i64, uuid::Uuid, String, String)> = sqlx::query_as(
            "SELECT position, event_id, event_type, error FROM parked WHERE consumer = $1 ORDER BY position",
        )
        .bind(consumer)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error(format!("list what {consumer} parked"), e))?;
        Ok(rows
            .into_iter()
            .map(|(position, event_id, event_type, error)| DeadLetter {
                projection: consumer.to_owned(),
                position: to_u64(position),
                event_id,
                event_type,
                error,
            })
            .collect())
    }
}

/// The newest committed position (0: none).
pub(crate) async fn head(pool: &PgPool) -> Result<Position, StoreError> {
    let head: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(pool)
        .await
        .map_err(|e| store_error("read the head", e))?;
    Ok(head.map_or(0, to_u64))
}

/// Refuses what the database would refuse for the whole group.
fn validate(request: &AppendRequest) -> Result<(), AppendError> {
    if request.stream_id.is_empty() {
        return Err(AppendError::Invalid("an append has an empty stream id".into()));
    }
    if request.events.is_empty() {
        return Err(AppendError::Invalid(format!("an append to {} has no events", request.stream_id)));
    }
    for event in &request.events {
        serde_json::from_str::<&RawValue>(&event.payload).map_err(|e| {
            AppendError::Invalid(format!("payload of event {} is not JSON: {e}", event.event_id))
        })?;
    }
    Ok(())
}

/// The columns [`record_of`] reads, for `concat!`.
macro_rules! event_columns {
    () => {
        "position, stream_id, stream_version, event_id, event_type, schema_version, \
         payload::text AS payload, metadata, recorded_at"
    };
}
pub(crate) use event_columns;

/// An event row.
pub(crate) fn record_of(row: &sqlx::postgres::PgRow) -> Result<EventRecord, StoreError> {
    let decode = |e| store_error("decode an event row", e);
    let metadata: Json<Metadata> = row.try_get("metadata").map_err(decode)?;
    Ok(EventRecord {
        position: to_u64(row.try_get("position").map_err(decode)?),
        stream_id: row.try_get("stream_id").map_err(decode)?,
        stream_version: to_u64(row.try_get("stream_version").map_err(decode)?),
        event_id: row.try_get("event_id").map_err(decode)?,
        event_type: row.try_get("event_type").map_err(decode)?,
        schema_version: u32::try_from(row.try_get::<i32, _>("schema_version").map_err(decode)?)
            .unwrap_or_default(),
        payload: row.try_get("payload").map_err(decode)?,
        metadata: metadata.0,
        recorded_at: row.try_get::<DateTime<Utc>, _>("recorded_at").map_err(decode)?,
    })
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Group commit

/// One request as `parallax_append` reads it.
#[derive(Serialize)]
struct WireRequest<'a> {
    stream_id: &'a str,
    expected: Option<u64>,
    key: Option<WireKey<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reads: Vec<WireRead<'a>>,
    events: Vec<WireEvent<'a>>,
}

#[derive(Serialize)]
struct WireRead<'a> {
    stream_id: &'a str,
    version: u64,
}

#[derive(Serialize)]
struct WireKey<'a> {
    key: &'a str,
    fingerprint: &'a str,
    response: &'a str,
}

#[derive(Serialize)]
struct WireEvent<'a> {
    event_id: Uuid,
    event_type: &'a str,
    schema_version: u32,
    payload: &'a RawValue,
    metadata: &'a Metadata,
    recorded_at: DateTime<Utc>,
}

/// One request's outcome as `parallax_append` answers it.
#[derive(Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum WireOutcome {
    Appended {
        first: i64,
        last: i64,
        version: i64,
    },
    /// `stream` and `expected` when a stream the decision read moved.
    Conflict {
        actual: i64,
        stream: Option<String>,
        expected: Option<i64>,
    },
    Duplicate {
        fingerprint: String,
        response: String,
        last: i64,
    },
}

/// The histogram of group sizes (see the module docs).
const GROUP_SIZE: &str = "parallax_event_store_group_size";

/// Attempts of a group that failed with an error proving it rolled back.
const GROUP_ATTEMPTS: u32 = 5;

struct Writer {
    pool: PgPool,
    requests: Arc<Mutex<mpsc::Receiver<Pending>>>,
    advanced: Arc<watch::Sender<Position>>,
    max_batch: usize,
    group_size: metrics::Histogram,
}

impl Writer {
    async fn run(self) {
        loop {
            let mut group = Vec::new();
            {
                let mut requests = self.requests.lock().await;
                let Some(first) = requests.recv().await else { return };
                group.push(first);
                while group.len() < self.max_batch {
                    match requests.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
            }
            self.commit_group(group).await;
        }
    }

    async fn commit_group(&self, mut group: Vec<Pending>) {
        // Stable: one stream's requests keep their order.
        group.sort_by(|a, b| a.request.stream_id.cmp(&b.request.stream_id));
        let wire = match group.iter().map(|p| wire_request(&p.request)).collect::<Result<Vec<_>, _>>() {
            Ok(wire) => wire,
            Err(error) => {
                // Checked before queueing; fail the group rather than guess.
                let message = error.to_string();
                for pending in group {
                    let _ = pending.reply.send(Err(StoreError::msg(message.clone()).into()));
                }
                return;
            }
        };
        let mut attempt = 1;
        let outcomes = loop {
            let result: Result<Json<Vec<WireOutcome>>, sqlx::Error> =
                sqlx::query_scalar("SELECT parallax_append($1)")
                    .bind(Json(&wire))
                    .fetch_one(&self.pool)
                    .await;
            match result {
                Ok(Json(outcomes)) if outcomes.len() == group.len() => break Ok(outcomes),
                Ok(Json(outcomes)) => {
                    break Err(StoreError::msg(format!(
                        "parallax_append answered {} outcomes for {} requests",
                        outcomes.len(),
                        group.len()
                    )))
                }
                Err(error) if attempt < GROUP_ATTEMPTS && is_retryable(&error) => {
                    tracing::debug!(%error, attempt, "append group rolled back; retrying");
                    attempt += 1;
                }
                Err(error) => {
                    break Err(store_error(format!("append a group of {} requests", group.len()), error))
                }
            }
        };
        drop(wire);
        match outcomes {
            Ok(outcomes) => {
                self.group_size.record(group.len() as f64);
                let mut furthest = 0;
                for (pending, outcome) in group.into_iter().zip(outcomes) {
                    let answer = answer(&pending.request, outcome);
                    if let Ok(AppendOutcome::Appended { last_position, .. }) = &answer {
                        furthest = furthest.max(*last_position);
                    }
                    let _ = pending.reply.send(answer);
                }
                if furthest > 0 {
                    self.advanced.send_if_modified(|head| {
                        let moved = furthest > *head;
                        *head = (*head).max(furthest);
                        moved
                    });
                }
            }
            Err(error) => {
                let message = error.to_string();
                // Display names this layer only; the driver's error says why.
                let cause = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
                tracing::warn!(error = %message, %cause, "append group failed");
                for pending in group {
                    let _ = pending.reply.send(Err(StoreError::msg(message.clone()).into()));
                }
            }
        }
    }
}

fn wire_request(request: &AppendRequest) -> Result<WireRequest<'_>, serde_json::Error> {
    let events = request
        .events
        .iter()
        .map(|event| {
            Ok(WireEvent {
                event_id: event.event_id,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                payload: serde_json::from_str(&event.payload)?,
                metadata: &event.metadata,
                recorded_at: event.recorded_at,
            })
        })
        .collect::<Result<_, serde_json::Error>>()?;
    Ok(WireRequest {
        stream_id: &request.stream_id,
        expected: match request.expected_version {
            ExpectedVersion::Exact(version) => Some(version),
            ExpectedVersion::Any => None,
        },
        key: request.idempotency.as_ref().map(|k| WireKey {
            key: &k.key,
            fingerprint: &k.fingerprint,
            response: &k.response,
        }),
        reads: request
            .reads
            .iter()
            .map(|r| WireRead { stream_id: &r.stream_id, version: r.version })
            .collect(),
        events,
    })
}

fn answer(request: &AppendRequest, outcome: WireOutcome) -> Result<AppendOutcome, AppendError> {
    match outcome {
        WireOutcome::Appended { first, last, version } => Ok(AppendOutcome::Appended {
            first_position: to_u64(first),
            last_position: to_u64(last),
            stream_version: to_u64(version),
        }),
        WireOutcome::Conflict { actual, stream: Some(stream), expected: Some(expected) } => {
            Err(AppendError::Conflict { stream, expected: to_u64(expected), actual: to_u64(actual) })
        }
        WireOutcome::Conflict { actual, .. } => Err(AppendError::Conflict {
            stream: request.stream_id.clone(),
            expected: match request.expected_version {
                ExpectedVersion::Exact(version) => version,
                ExpectedVersion::Any => 0,
            },
            actual: to_u64(actual),
        }),
        WireOutcome::Duplicate { fingerprint, response, last } => {
            let key = request.idempotency.as_ref().map(|k| k.key.clone()).unwrap_or_default();
            Ok(AppendOutcome::Duplicate(StoredIdempotency {
                record: IdempotencyRecord { key, fingerprint, response },
                last_position: to_u64(last),
            }))
        }
    }
}
