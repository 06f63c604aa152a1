//! ③④ The log, live, over HTTP: `GET /api/events/stream?after=<position>`
//! tails the event store as server-sent events (for the dashboard, or
//! `curl -N`).
//!
//! Each event is one SSE message whose `id` is its global position and whose
//! data is JSON: position, stream, version, type, payload, correlation id and
//! the consistency token of that event (a query given it waits until its view
//! has absorbed the event). Events come in position order, from the position
//! after `after`; a browser that reconnects sends `Last-Event-ID` and resumes
//! after the last event it saw. Without either the stream starts at the head:
//! events committed after connecting.
//!
//! Memory is bounded per client: the stream reads at most [`BATCH`] events at
//! a time, and reads the next batch only once the client has taken the last,
//! so a slow client slows its own reads. The stream ends when the client goes
//! (the server drops it; a keep-alive comment every [`KEEP_ALIVE`] notices a
//! client that vanished silently), when the server shuts down, or when the
//! log fails to read (the browser reconnects by itself).
//!
//! Streams are capped: at most `http.max_streams` open at once, and
//! `http.max_streams_per_key` per API key; one more is answered 429. A
//! stream's place is given back when it ends.
//!
//! A caller sees its tenant's events alone, their stream ids within its
//! tenant (`cart-42`, not `acme/cart-42`), and their tokens for its tenant's
//! queries; the positions are the log's, shared by all tenants.
//!
//! A watcher, not a consumer: it keeps no checkpoint. On PostgreSQL a stream
//! that starts at the head may miss an event whose append was still in
//! flight below it; one that starts at a position it was given does not.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use parallax_core::{partition_for, ConsistencyToken, EventLog, EventRecord, Position, Tenant};
use parallax_runtime::CancellationToken;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::access::Caller;
use super::extract::Params;
use super::problem::ApiError;
use super::ApiState;
use crate::config::{ApiKeySettings, HttpSettings};

/// Events read from the log at a time, per client.
const BATCH: usize = 256;
/// How often an idle stream sends a comment (and so notices a gone client).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long one wait for new events lasts before the stream looks again.
const WAIT: Duration = Duration::from_secs(5);
/// How long a browser waits before reconnecting.
const RETRY: Duration = Duration::from_secs(1);

/// What the live stream tails, when it stops, and how many may be open.
#[derive(Clone)]
pub struct LiveEvents {
    log: Arc<dyn EventLog>,
    shutdown: CancellationToken,
    slots: Arc<Slots>,
}

/// Places for open streams: in all, and per API key (the keys are known at
/// start, so the map never grows).
struct Slots {
    all: Arc<Semaphore>,
    per_key: HashMap<Arc<str>, Arc<Semaphore>>,
    max_streams: usize,
    max_streams_per_key: usize,
}

impl LiveEvents {
    /// Streams of `log`, ended when `shutdown` is cancelled (so that the
    /// graceful shutdown does not wait for their clients), capped by `http`
    /// in all and per key of `keys`.
    pub fn new(
        log: Arc<dyn EventLog>,
        shutdown: CancellationToken,
        http: &HttpSettings,
        keys: &[ApiKeySettings],
    ) -> Self {
        let per_key = keys
            .iter()
            .map(|key| (Arc::from(key.name.as_str()), Arc::new(Semaphore::new(http.max_streams_per_key))))
            .collect();
        let slots = Slots {
            all: Arc::new(Semaphore::new(http.max_streams)),
            per_key,
            max_streams: http.max_streams,
            max_streams_per_key: http.max_streams_per_key,
        };
        Self { log, shutdown, slots: Arc::new(slots) }
    }

    /// A place for one more stream of `caller`, held until it is dropped.
    fn take_slot(&self, caller: Option<&Caller>) -> Result<Vec<OwnedSemaphorePermit>, ApiError> {
        let Slots { max_streams, max_streams_per_key, .. } = *self.slots;
        let mut held = Vec::with_capacity(2);
        let key = caller.and_then(|caller| caller.key.as_ref());
        if let Some(slots) = key.and_then(|key| self.slots.per_key.get(key)) {
            held.push(slots.clone().try_acquire_owned().map_err(|_| {
                ApiError::too_many_streams(format!(
                    "this key holds {max_streams_per_key} live event streams, the most it may"
                ))
            })?);
        }
        held.push(self.slots.all.clone().try_acquire_owned().map_err(|_| {
            ApiError::too_many_streams(format!(
                "{max_streams} live event streams are open, the most this server serves"
            ))
        })?);
        Ok(held)
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Start after this log position (default: the head). `Last-Event-ID` wins over it.
    #[param(schema_with = after)]
    after: Option<String>,
}

fn after() -> utoipa::openapi::Object {
    super::extract::integer(0, i64::MAX, "A log position, 0 to 9223372036854775807.")
}

/// One event as the stream sends it.
#[derive(Serialize)]
struct StreamedEvent<'a> {
    position: Position,
    stream_id: &'a str,
    stream_version: u64,
    event_type: &'a str,
    schema_version: u32,
    recorded_at: String,
    correlation_id: Uuid,
    /// Waiting on it makes a query see this event.
    token: String,
    payload: &'a RawValue,
}

#[utoipa::path(get, path = "/api/events/stream", tag = "queries", params(StreamParams, super::extract::TenantHeader),
    responses((status = 200, description = "Server-sent events, one per stored event", content_type = "text/event-stream"), (status = 429, description = "As many streams are open as the key, or the server, may hold", content_type = "application/problem+json"), super::openapi::QueryRefusals))]
pub async fn stream(
    State(state): State<Arc<ApiState>>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    Params(params): Params<StreamParams>,
) -> Result<Response, ApiError> {
    let live = state.live.clone().ok_or_else(|| ApiError::role_not_served("query"))?;
    let tenant = caller.as_ref().map(|caller| caller.tenant.clone()).unwrap_or_default();
    let slot = live.take_slot(caller.as_deref())?;
    // A reconnecting browser's Last-Event-ID wins over the URL it reuses.
    let last_event_id = headers.get("last-event-id").map(|value| value.to_str().unwrap_or("?").to_owned());
    let after = match last_event_id.or(params.after) {
        Some(raw) => super::extract::position(raw.trim()).ok_or_else(|| {
            ApiError::bad_request(format!(
                "after (or Last-Event-ID) must be a log position, 0 to {}, got {raw:?}",
                i64::MAX
            ))
        })?,
        None => live.log.head().await.map_err(|e| ApiError::internal(&e))?,
    };
    // The first message flushes the headers and sets the reconnect delay.
    let hello = Event::default().retry(RETRY).comment(format!("after {after}"));
    let events = stream::once(async move { Ok(hello) })
        .chain(tail(live.log, after, state.partitions, tenant))
        .take_until(live.shutdown.cancelled_owned())
        // The places are held as long as the stream is.
        .map(move |event| {
            let _held = &slot;
            event
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

/// Events after `after`, in position order, as SSE messages; never ends
/// unless the log fails.
fn tail(
    log: Arc<dyn EventLog>,
    after: Position,
    partitions: u32,
    tenant: Tenant,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    struct Tail {
        log: Arc<dyn EventLog>,
        after: Position,
        pending: VecDeque<EventRecord>,
        /// Whose events the caller sees.
        tenant: Tenant,
    }
    let start = Tail { log, after, pending: VecDeque::with_capacity(BATCH), tenant };
    stream::unfold(start, move |mut tail| async move {
        loop {
            if let Some(record) = tail.pending.pop_front() {
                let Some(stream_id) = tail.tenant.unscope(&record.stream_id) else { continue };
                let message = message(&record, stream_id, partitions, &tail.tenant);
                return Some((Ok(message), tail));
            }
            match tail.log.read(tail.after, BATCH).await {
                Ok(records) if records.is_empty() => tail.log.wait_beyond(tail.after, WAIT).await,
                Ok(records) => {
                    tail.after = records.last().map_or(tail.after, |last| last.position);
                    tail.pending.extend(records);
                }
                Err(error) => {
                    tracing::warn!(error = %parallax_runtime::error_chain(&error), after = tail.after,
                        "live event stream cannot read the log; closing it");
                    return None;
                }
            }
        }
    })
}

fn message(record: &EventRecord, stream_id: &str, partitions: u32, tenant: &Tenant) -> Event {
    let token = ConsistencyToken::at(partition_for(&record.stream_id, partitions), record.position);
    // Payloads are JSON by the store's contract; a broken one travels as a string.
    let quoted;
    let payload: &RawValue = match serde_json::from_str::<&RawValue>(&record.payload) {
        Ok(raw) => raw,
        Err(_) => {
            quoted = RawValue::from_string(serde_json::Value::from(record.payload.as_str()).to_string())
                .expect("a JSON string is JSON");
            &quoted
        }
    };
    let data = StreamedEvent {
        position: record.position,
        stream_id,
        stream_version: record.stream_version,
        event_type: &record.event_type,
        schema_version: record.schema_version,
        recorded_at: record.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        correlation_id: record.metadata.correlation_id,
        token: token.text_in(tenant),
        payload,
    };
    Event::default()
        .id(record.position.to_string())
        .json_data(&data)
        .expect("a streamed event serializes to JSON")
}
