//! ① The command handler: load, decide, append, retry.
//!
//! Hot aggregates stay hydrated in memory (state + version). A command is
//! decided against the cached state and appended with that version as the
//! expected version; if another writer got there first the store answers
//! `Conflict`, the handler catches the state up from the store and decides
//! again, a bounded number of times ([`RetryPolicy`]). A command that is
//! refused by the aggregate appends nothing.
//!
//! Other processes write the same streams (a second command process, the
//! saga), so a cached state may be stale: the cache may speed a decision up,
//! never change it (ARCHITECTURE.md, invariant 5). An append finds a stale
//! cache out by its expected version, and the other aggregates a decision
//! looked up in the cache ([`Lookups`]) by their versions, which the append
//! carries ([`AppendRequest::reads`]); a retry reads them from the store and
//! does not pin them (a stream that keeps changing cannot starve it). A
//! decision that appends nothing (a refusal, a no-op) has no such check:
//! before it is answered, the state and every lookup are caught up with the
//! store and the command decided again. A hot command that appends therefore costs no
//! read; only a refusal or a no-op pays one per stream it involves.
//!
//! Idempotency: a command given an idempotency key is recorded with its
//! append, in the same transaction; a repeat of the key returns the first
//! answer and appends nothing, even when the repeats race each other.

use std::borrow::Borrow;
use std::future::Future;
use std::sync::{Arc, Mutex};

use parallax_core::{
    Aggregate, AppendError, AppendOutcome, AppendRequest, Codec, CodecError, EventRecord, EventStore,
    ExpectedVersion, IdempotencyRecord, Metadata, Position, Snapshot, StoreError, StreamVersion, Tenant,
    TraceParent,
};
use uuid::Uuid;

use crate::retry::RetryPolicy;

/// An aggregate's state at a version.
#[derive(Debug, Clone)]
pub struct Hydrated<A> {
    /// The folded state.
    pub state: A,
    /// How many events it folds (0: the stream does not exist).
    pub version: u64,
    /// The global position of the last event it folds (0: none).
    pub position: Position,
}

impl<A: Aggregate> Default for Hydrated<A> {
    fn default() -> Self {
        Self { state: A::default(), version: 0, position: 0 }
    }
}

/// Who asks, why, and under which idempotency key.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// Id of this command.
    pub command_id: Uuid,
    /// The request it belongs to.
    pub correlation_id: Uuid,
    /// What caused it (the command itself for a user request, an event for a
    /// process manager).
    pub causation_id: Uuid,
    /// Who asks, if known.
    pub actor: Option<String>,
    /// Idempotency: the key, a digest of the request, and the answer body to
    /// store with the append.
    pub idempotency: Option<IdempotencyRecord>,
    /// The W3C trace context the command runs in, recorded with its events.
    pub traceparent: Option<TraceParent>,
    /// Whose aggregates the command decides on: its streams, its lookups
    /// and its idempotency key are all in this tenant's space.
    pub tenant: Tenant,
}

impl CommandContext {
    /// A fresh context for a user request, in a new trace.
    pub fn new() -> Self {
        let id = Uuid::now_v7();
        Self {
            command_id: id,
            correlation_id: id,
            causation_id: id,
            actor: None,
            idempotency: None,
            traceparent: Some(TraceParent::new_root()),
            tenant: Tenant::DEFAULT,
        }
    }

    /// A context for a command caused by `event`, in the event's
    /// correlation, trace and tenant.
    pub fn caused_by(event: &EventRecord) -> Self {
        Self {
            command_id: Uuid::now_v7(),
            correlation_id: event.metadata.correlation_id,
            causation_id: event.event_id,
            actor: None,
            idempotency: None,
            traceparent: event.metadata.traceparent.map(|trace| trace.child()),
            tenant: event.tenant(),
        }
    }

    /// In the trace `traceparent` (the caller's, continued: see
    /// [`TraceParent::continue_or_start`]).
    pub fn with_trace(mut self, traceparent: TraceParent) -> Self {
        self.traceparent = Some(traceparent);
        self
    }

    /// With an idempotency key.
    pub fn with_idempotency(mut self, record: IdempotencyRecord) -> Self {
        self.idempotency = Some(record);
        self
    }

    /// In `tenant`.
    pub fn in_tenant(mut self, tenant: Tenant) -> Self {
        self.tenant = tenant;
        self
    }

    /// The idempotency record as stored: its key in the tenant's space.
    fn scoped_idempotency(&self) -> Option<IdempotencyRecord> {
        self.idempotency
            .as_ref()
            .map(|record| IdempotencyRecord { key: self.tenant.scope(&record.key), ..record.clone() })
    }

    fn metadata(&self) -> Metadata {
        Metadata {
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            command_id: self.command_id,
            actor: self.actor.clone(),
            traceparent: self.traceparent,
            tenant: self.tenant.name().map(str::to_owned),
        }
    }
}

impl Default for CommandContext {
    fn default() -> Self {
        Self::new()
    }
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executed {
    /// Events were appended.
    Appended {
        /// Position of the last event appended (the consistency token).
        last_position: Position,
        /// The stream's version afterwards.
        stream_version: u64,
        /// How many events.
        events: usize,
    },
    /// The aggregate agreed but had nothing to record.
    Unchanged {
        /// The stream's version.
        stream_version: u64,
        /// Position of the stream's last event (0: none): the state the
        /// command was decided on is absorbed once a view reaches it.
        last_position: Position,
    },
    /// The idempotency key was used before: this is the first answer.
    Duplicate {
        /// The body stored with the first answer.
        response: String,
        /// Position of the first answer's last event.
        last_position: Position,
    },
}

impl Executed {
    /// The position a consistency token for this command must name.
    pub fn position(&self) -> Position {
        match self {
            Self::Appended { last_position, .. } | Self::Duplicate { last_position, .. } => *last_position,
            Self::Unchanged { last_position, .. } => *last_position,
        }
    }
}

/// Why a command failed. Generic over the aggregate's own refusal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The aggregate refused.
    #[error(transparent)]
    Domain(E),
    /// Concurrent writers kept winning, after every retry.
    #[error("stream {stream} kept changing: expected version {expected}, found {actual}")]
    Conflict {
        /// The stream.
        stream: String,
        /// The version last tried.
        expected: u64,
        /// The version found.
        actual: u64,
    },
    /// The idempotency key was first used with a different request.
    #[error("idempotency key {key:?} was used for a different request")]
    IdempotencyMismatch {
        /// The key.
        key: String,
    },
    /// A stored event does not decode.
    #[error("stream does not decode")]
    Codec(#[from] CodecError),
    /// The store failed.
    #[error("event store failed")]
    Store(#[from] StoreError),
}

/// Why an aggregate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A stored event does not decode.
    #[error("stream does not decode")]
    Codec(#[from] CodecError),
    /// The store failed.
    #[error("event store failed")]
    Store(#[from] StoreError),
}

impl<E: std::error::Error + 'static> From<LoadError> for CommandError<E> {
    fn from(error: LoadError) -> Self {
        match error {
            LoadError::Codec(e) => Self::Codec(e),
            LoadError::Store(e) => Self::Store(e),
        }
    }
}

/// The other aggregates a decision looked up from the cache, at the versions
/// it saw.
///
/// Given to the command builder of [`CommandHandler::execute_with`] and
/// passed to [`CommandHandler::lookup`]: the append that records the
/// decision carries every cached version looked up, and commits only if
/// none of those streams has moved since. Cheap to clone (one shared list).
#[derive(Debug, Clone, Default)]
pub struct Lookups {
    inner: Arc<LookupsInner>,
}

#[derive(Debug, Default)]
struct LookupsInner {
    /// Read every lookup from the store, not the cache (the decision
    /// appends nothing, or an earlier attempt found a lookup stale).
    fresh: bool,
    /// The deciding command's tenant, whose aggregates alone it looks up.
    tenant: Tenant,
    reads: Mutex<Vec<StreamVersion>>,
}

impl Lookups {
    fn new(fresh: bool, tenant: Tenant) -> Self {
        Self { inner: Arc::new(LookupsInner { fresh, tenant, reads: Mutex::new(Vec::new()) }) }
    }

    fn record(&self, stream_id: &str, version: u64) {
        let mut reads = self.inner.reads.lock().expect("the lookups' lock is never poisoned");
        match reads.iter_mut().find(|read| read.stream_id == stream_id) {
            Some(read) => read.version = version,
            None => reads.push(StreamVersion { stream_id: stream_id.to_owned(), version }),
        }
    }

    /// What was looked up, at which version.
    pub fn reads(&self) -> Vec<StreamVersion> {
        self.inner.reads.lock().expect("the lookups' lock is never poisoned").clone()
    }
}

/// Handles the commands of one aggregate type.
pub struct CommandHandler<A: Aggregate> {
    store: Arc<dyn EventStore>,
    codec: Codec<A::Event>,
    cache: quick_cache::sync::Cache<String, Arc<Hydrated<A>>>,
    /// Streams whose cached state another writer made stale lately (an
    /// append conflicted): caught up before each decision until a catch-up
    /// finds nothing new, which costs one read instead of a failed append,
    /// a read and a second append when writers take turns on a stream.
    contended: quick_cache::sync::Cache<String, ()>,
    retry: RetryPolicy,
    snapshot_every: u64,
}

impl<A: Aggregate> CommandHandler<A> {
    /// A handler over `store`, caching up to 100,000 aggregates, snapshotting
    /// every 100 events.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            codec: Codec::new(),
            cache: quick_cache::sync::Cache::new(100_000),
            contended: quick_cache::sync::Cache::new(10_000),
            retry: RetryPolicy::default(),
            snapshot_every: 100,
        }
    }

    /// With this codec (upcasters).
    pub fn with_codec(mut self, codec: Codec<A::Event>) -> Self {
        self.codec = codec;
        self
    }

    /// With this retry policy on conflicts.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Caching at most `capacity` aggregates (at least one).
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache = quick_cache::sync::Cache::new(capacity.max(1));
        self
    }

    /// Snapshotting every `n` events (0: never).
    pub fn with_snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = n;
        self
    }

    /// The state of aggregate `id` as the store has it now: the cached state
    /// caught up with the store (one read of the stream's newer events, none
    /// when it has not moved), or a cold load.
    pub async fn load(&self, id: &str) -> Result<Arc<Hydrated<A>>, LoadError> {
        self.load_in(&Tenant::DEFAULT, id).await
    }

    /// [`CommandHandler::load`] of aggregate `id` of `tenant`.
    pub async fn load_in(&self, tenant: &Tenant, id: &str) -> Result<Arc<Hydrated<A>>, LoadError> {
        let stream_id = A::stream_id_in(tenant, id);
        let cached = self.cache.get(&stream_id);
        self.refresh(&stream_id, cached).await
    }

    /// The state of aggregate `id` for a decision of another aggregate (a
    /// product priced into a cart line), as the store had it when the
    /// command arrived or later.
    ///
    /// From the cache when hot, and then recorded in `lookups` at its
    /// version, so the decision's append commits only if the stream has not
    /// moved since (else the decision is made again with fresh lookups).
    /// Read from the store when cold, or when `lookups` asks for fresh reads
    /// (the decision appends nothing, or an earlier attempt found a lookup
    /// stale); a state read during the command is recent enough and is not
    /// recorded, so a stream that keeps changing (a product's stock, under
    /// the saga's reservations) cannot starve the decision. The aggregate
    /// is the deciding command's tenant's.
    pub async fn lookup(&self, id: &str, lookups: &Lookups) -> Result<Arc<Hydrated<A>>, LoadError> {
        let stream_id = A::stream_id_in(&lookups.inner.tenant, id);
        match self.cache.get(&stream_id) {
            Some(hot) if !lookups.inner.fresh => {
                lookups.record(&stream_id, hot.version);
                Ok(hot)
            }
            cached => self.refresh(&stream_id, cached).await,
        }
    }

    /// Decides `command` against aggregate `id` and appends what it decides.
    pub async fn execute(
        &self,
        id: &str,
        command: &A::Command,
        context: &CommandContext,
    ) -> Result<Executed, CommandError<A::Error>> {
        self.execute_with(id, context, |_, _| std::future::ready(Ok(command))).await
    }

    /// Decides the command `build` makes from the aggregate's state and
    /// appends what it decides.
    ///
    /// `build` runs once per attempt, so what it looks up (with
    /// [`CommandHandler::lookup`] and the [`Lookups`] it is given) is looked
    /// up again whenever the decision is retried: after a conflict, and
    /// before a refusal or a no-op is answered. Its error is returned as is.
    pub async fn execute_with<C, F, Fut>(
        &self,
        id: &str,
        context: &CommandContext,
        build: F,
    ) -> Result<Executed, CommandError<A::Error>>
    where
        C: Borrow<A::Command>,
        F: Fn(Arc<Hydrated<A>>, Lookups) -> Fut,
        Fut: Future<Output = Result<C, CommandError<A::Error>>>,
    {
        if let Some(answer) = self.answered_before(context).await? {
            return Ok(answer);
        }
        let stream_id = A::stream_id_in(&context.tenant, id);
        // Fresh: read from the store during this command, so no older than
        // the command (the state, and separately every lookup).
        let (mut current, mut fresh) = self.current(&stream_id).await?;
        let mut fresh_lookups = false;
        let mut attempt = 1;
        loop {
            let lookups = Lookups::new(fresh_lookups, context.tenant.clone());
            let command = build(current.clone(), lookups.clone()).await?;
            let events = match current.state.handle(command.borrow()) {
                Ok(events) if !events.is_empty() => events,
                decided if !(fresh && fresh_lookups) => {
                    // No append will check this decision: make it again on
                    // the store's state before answering it.
                    tracing::trace!(stream_id, refused = decided.is_err(), "deciding again on fresh state");
                    if !fresh {
                        current = self.refresh(&stream_id, Some(current)).await?;
                    }
                    (fresh, fresh_lookups) = (true, true);
                    continue;
                }
                decided => {
                    // A repeat that raced its first request looked the key up
                    // before that request committed and may now decide against
                    // the state it left: the first answer still stands.
                    if let Some(answer) = self.answered_before(context).await? {
                        return Ok(answer);
                    }
                    decided.map_err(CommandError::Domain)?;
                    return Ok(Executed::Unchanged {
                        stream_version: current.version,
                        last_position: current.position,
                    });
                }
            };
            let metadata = context.metadata();
            let request = AppendRequest {
                stream_id: stream_id.clone(),
                expected_version: ExpectedVersion::Exact(current.version),
                events: events.iter().map(|e| self.codec.new_event(e, metadata.clone())).collect(),
                idempotency: context.scoped_idempotency(),
                reads: lookups.reads(),
            };
            match self.store.append(request).await {
                Ok(outcome) => return self.answer(&stream_id, &current, &events, outcome, context),
                Err(AppendError::Conflict { stream, expected, actual }) => {
                    if attempt >= self.retry.max_attempts {
                        return Err(CommandError::Conflict { stream, expected, actual });
                    }
                    tracing::debug!(%stream, expected, actual, attempt, "conflict; catching up and retrying");
                    self.before_retry(&stream_id, &stream, attempt).await;
                    attempt += 1;
                    // The stream itself or one it looked up moved: catch the
                    // state up, and look everything up afresh.
                    current = self.refresh(&stream_id, Some(current)).await?;
                    (fresh, fresh_lookups) = (true, true);
                }
                Err(AppendError::Store(e)) => return Err(CommandError::Store(e)),
                Err(e) => return Err(CommandError::Store(StoreError::new("append refused", e))),
            }
        }
    }

    /// The state a command starts from, and whether it was read from the
    /// store during this command: the cached one, caught up first if its
    /// stream is contended; else read.
    async fn current(&self, stream_id: &str) -> Result<(Arc<Hydrated<A>>, bool), LoadError> {
        Ok(match self.cache.get(stream_id) {
            Some(hot) if self.contended.get(stream_id).is_some() => {
                let caught_up = self.refresh(stream_id, Some(hot.clone())).await?;
                if Arc::ptr_eq(&caught_up, &hot) {
                    self.contended.remove(stream_id);
                }
                (caught_up, true)
            }
            Some(hot) => (hot, false),
            None => (self.refresh(stream_id, None).await?, true),
        })
    }

    /// The answer to an append of `events` decided on `current`: the
    /// state they lead to is cached; a duplicate answers as the key's first
    /// request did.
    fn answer(
        &self,
        stream_id: &str,
        current: &Hydrated<A>,
        events: &[A::Event],
        outcome: AppendOutcome,
        context: &CommandContext,
    ) -> Result<Executed, CommandError<A::Error>> {
        match outcome {
            AppendOutcome::Appended { last_position, stream_version, .. } => {
                let mut next = Hydrated {
                    state: current.state.clone(),
                    version: stream_version,
                    position: last_position,
                };
                for event in events {
                    next.state.apply(event);
                }
                self.remember(stream_id, current.version, Arc::new(next));
                Ok(Executed::Appended { last_position, stream_version, events: events.len() })
            }
            AppendOutcome::Duplicate(stored) => {
                let record = context.idempotency.as_ref().expect("a duplicate needs an idempotency key");
                duplicate(record, stored.record.fingerprint, stored.record.response, stored.last_position)
            }
        }
    }

    /// After the `attempt`-th append of `stream_id` conflicted on `stream`:
    /// marks the stream contended if it was the one that moved, and backs
    /// off from the second conflict on.
    async fn before_retry(&self, stream_id: &str, stream: &str, attempt: u32) {
        if stream == stream_id {
            self.contended.insert(stream_id.to_owned(), ());
        }
        // The first conflict is most often a stale cache: catch
        // up and retry at once; back off from the second on.
        if attempt > 1 {
            tokio::time::sleep(self.retry.delay(attempt - 1)).await;
        }
    }

    /// The first answer to the context's idempotency key, if the key was used.
    async fn answered_before(
        &self,
        context: &CommandContext,
    ) -> Result<Option<Executed>, CommandError<A::Error>> {
        let Some(asked) = &context.idempotency else { return Ok(None) };
        let Some(stored) = self.store.idempotency(&context.tenant.scope(&asked.key)).await? else {
            return Ok(None);
        };
        duplicate(asked, stored.record.fingerprint, stored.record.response, stored.last_position).map(Some)
    }

    /// Catches a state up with the store (from scratch, or from a snapshot,
    /// when `from` is `None`) and caches it.
    async fn refresh(
        &self,
        stream_id: &str,
        from: Option<Arc<Hydrated<A>>>,
    ) -> Result<Arc<Hydrated<A>>, LoadError> {
        let (mut hydrated, events) = match from {
            Some(from) => {
                let events = self.store.read_stream(stream_id, from.version).await?;
                if events.is_empty() {
                    // Current: keep the cached state, no copy.
                    return Ok(from);
                }
                (Hydrated::clone(&from), events)
            }
            None => {
                let hydrated = self.hydrate_from_snapshot(stream_id).await?;
                let events = self.store.read_stream(stream_id, hydrated.version).await?;
                (hydrated, events)
            }
        };
        for record in &events {
            let event = self.codec.decode_record(record)?;
            hydrated.state.apply(&event);
            hydrated.version = record.stream_version;
            hydrated.position = record.position;
        }
        let hydrated = Arc::new(hydrated);
        self.cache.insert(stream_id.to_owned(), hydrated.clone());
        // A load that replayed a long tail saves the next one the work.
        if self.snapshot_every > 0 && events.len() as u64 >= self.snapshot_every {
            self.snapshot_in_background(stream_id, hydrated.clone());
        }
        Ok(hydrated)
    }

    async fn hydrate_from_snapshot(&self, stream_id: &str) -> Result<Hydrated<A>, LoadError> {
        if self.snapshot_every == 0 {
            return Ok(Hydrated::default());
        }
        let Some(snapshot) = self.store.load_snapshot(stream_id).await? else {
            return Ok(Hydrated::default());
        };
        if snapshot.schema_version != A::SNAPSHOT_VERSION {
            return Ok(Hydrated::default());
        }
        match serde_json::from_str(&snapshot.state) {
            Ok(state) => {
                // The snapshot's last event, for the position a token names.
                let last =
                    self.store.read_stream(stream_id, snapshot.stream_version.saturating_sub(1)).await?;
                let position = last.first().map_or(0, |record| record.position);
                Ok(Hydrated { state, version: snapshot.stream_version, position })
            }
            Err(error) => {
                tracing::warn!(stream_id, %error, "snapshot does not decode; rebuilding from events");
                Ok(Hydrated::default())
            }
        }
    }

    fn remember(&self, stream_id: &str, before: u64, next: Arc<Hydrated<A>>) {
        let crossed =
            self.snapshot_every > 0 && next.version / self.snapshot_every > before / self.snapshot_every;
        self.cache.insert(stream_id.to_owned(), next.clone());
        if crossed {
            self.snapshot_in_background(stream_id, next);
        }
    }

    /// Saves a snapshot off the command's path; a failure only costs replay later.
    fn snapshot_in_background(&self, stream_id: &str, hydrated: Arc<Hydrated<A>>) {
        let store = self.store.clone();
        let snapshot = snapshot_of(stream_id, &hydrated);
        tokio::spawn(async move {
            let stream_id = snapshot.stream_id.clone();
            if let Err(error) = store.save_snapshot(snapshot).await {
                tracing::warn!(stream_id, %error, "snapshot not saved");
            }
        });
    }
}

fn snapshot_of<A: Aggregate>(stream_id: &str, hydrated: &Hydrated<A>) -> Snapshot {
    Snapshot {
        stream_id: stream_id.to_owned(),
        stream_version: hydrated.version,
        schema_version: A::SNAPSHOT_VERSION,
        state: serde_json::to_string(&hydrated.state).expect("aggregate state serializes to JSON"),
    }
}

fn duplicate<E: std::error::Error>(
    asked: &IdempotencyRecord,
    fingerprint: String,
    response: String,
    last_position: Position,
) -> Result<Executed, CommandError<E>> {
    if asked.fingerprint != fingerprint {
        return Err(CommandError::IdempotencyMismatch { key: asked.key.clone() });
    }
    Ok(Executed::Duplicate { response, last_position })
}
