//! Operating the shop from the command line: `shop status` (how far each
//! projection has got, per partition), `shop events tail` (events as they
//! are committed), `shop rebuild` (a projection's views from position 0, in
//! a new generation) and `shop dlq list|retry` (the events projections could
//! not apply, and applying one again after a fix).

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use parallax_core::{DeadLetter, EventRecord, Position, Tenant};
use serde::Serialize;

use std::sync::Arc;
use std::time::Instant;

use parallax_core::{Projection, ReadStore, ViewCommitter};
use parallax_runtime::generations::{self, Generation, GenerationStore};
use parallax_runtime::{DeadLetterId, Projector, ProjectorError};

use crate::app::{generation_sources, kafka_config, open_read_store, open_write_side};
use crate::config::{LogKind, Settings};
use crate::lag::{self, LogEnds};
use crate::saga::CheckoutSaga;

pub use crate::lag::PartitionStatus;

/// One projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionStatus {
    /// Its name.
    pub name: String,
    /// `caught up`, `behind`, `unknown` (the log's end could not be read),
    /// or `missing events` (see `deleted`).
    pub state: &'static str,
    /// Total lag over its partitions.
    pub lag: Option<u64>,
    /// Events it could not apply.
    pub dead_letters: usize,
    /// Per partition.
    pub partitions: Vec<PartitionStatus>,
    /// Messages the topic deleted (retention) before the projection read
    /// them: its projectors stop there (Architecture invariant 21).
    pub deleted: Vec<DeletedUnread>,
}

/// Messages of a partition deleted before a projection read them: its
/// checkpoint's offset is below the earliest offset the partition holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletedUnread {
    /// The topic's partition.
    pub partition: parallax_core::Partition,
    /// The offset the projection resumes from.
    pub from_offset: u64,
    /// The earliest offset the partition still holds.
    pub earliest: u64,
}

/// The status of every projection of the shop, as its read store and log
/// tell it.
pub async fn status(settings: &Settings) -> anyhow::Result<Vec<ProjectionStatus>> {
    let read: Arc<dyn ReadStore> = Arc::new(parallax_runtime::ActiveGenerations::new(
        open_read_store(settings).await?,
        &shop_read::all_projections(),
    ));
    let log_ends = match settings.log.kind {
        LogKind::Embedded => match open_write_side(settings).await {
            Ok(write) => Some(LogEnds::Head(write.store)),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot open the event store; lag unknown");
                None
            }
        },
        LogKind::Kafka => Some(LogEnds::Kafka(kafka_config(settings))),
    };
    let ends = match &log_ends {
        Some(log_ends) => log_ends.read().await.map_err(|error| {
            tracing::warn!(%error, "cannot read where the log ends; lag unknown");
        }),
        None => Err(()),
    };
    let starts = match settings.log.kind {
        LogKind::Kafka => parallax_kafka::start_offsets(&kafka_config(settings))
            .await
            .map_err(|error| tracing::warn!(%error, "cannot read where the topic starts; deleted messages unknown"))
            .ok(),
        LogKind::Embedded => None,
    };
    let mut statuses = Vec::new();
    for projection in shop_read::all_projections() {
        let name = projection.name();
        let checkpoints =
            read.checkpoints(name).await.with_context(|| format!("read the checkpoints of {name}"))?;
        let deleted =
            starts.as_deref().map(|starts| deleted_unread(&checkpoints, starts)).unwrap_or_default();
        let dead_letters =
            read.dead_letters(name).await.with_context(|| format!("read the dead letters of {name}"))?.len();
        let by_offset = settings.log.kind == LogKind::Kafka;
        let rows = lag::partitions(by_offset, &checkpoints, ends.as_ref().ok());
        let lag = rows.iter().map(|row| row.lag).sum::<Option<u64>>();
        let state = match lag::worst(&rows) {
            _ if !deleted.is_empty() => "missing events",
            None => "unknown",
            Some(0) => "caught up",
            Some(_) => "behind",
        };
        statuses.push(ProjectionStatus {
            name: name.to_owned(),
            state,
            lag,
            dead_letters,
            partitions: rows,
            deleted,
        });
    }
    Ok(statuses)
}

/// The partitions whose messages from a checkpoint's offset on were
/// deleted before they were read: `starts` holds each partition's earliest
/// offset (a partition without a checkpoint resumes at offset 0).
fn deleted_unread(
    checkpoints: &[(parallax_core::Partition, parallax_core::Checkpoint)],
    starts: &[(u32, u64)],
) -> Vec<DeletedUnread> {
    starts
        .iter()
        .filter_map(|&(partition, earliest)| {
            let from_offset =
                checkpoints.iter().find(|(p, _)| *p == partition).map_or(0, |(_, at)| at.offset);
            (from_offset < earliest).then_some(DeletedUnread { partition, from_offset, earliest })
        })
        .collect()
}

/// The status as a table, one line per projection and partition, then the
/// messages deleted before a projection read them.
pub fn render_status(statuses: &[ProjectionStatus]) -> String {
    let show = |value: Option<u64>| value.map_or_else(|| "?".to_owned(), |v| v.to_string());
    let mut out = format!(
        "{:<10} {:>9} {:>10} {:>10} {:>10} {:>8}  {:<10} {:>12}\n",
        "projection", "partition", "position", "offset", "end", "lag", "state", "dead letters"
    );
    for status in statuses {
        let state_of = |lag: Option<u64>| match lag {
            None => "unknown",
            Some(0) => "caught up",
            Some(_) => "behind",
        };
        if status.partitions.is_empty() {
            out.push_str(&format!(
                "{:<10} {:>9} {:>10} {:>10} {:>10} {:>8}  {:<10} {:>12}\n",
                status.name, "-", 0, 0, "?", "?", status.state, status.dead_letters
            ));
        }
        for row in &status.partitions {
            out.push_str(&format!(
                "{:<10} {:>9} {:>10} {:>10} {:>10} {:>8}  {:<10} {:>12}\n",
                status.name,
                row.partition,
                row.position,
                row.offset,
                show(row.end),
                show(row.lag),
                state_of(row.lag),
                status.dead_letters
            ));
        }
    }
    for status in statuses {
        for gone in &status.deleted {
            out.push_str(&format!(
                "{}: partition {} lost messages at offsets {} to {} to retention before it read them; its \
                 projector stops there: rebuild it with `shop rebuild --from-store {}`\n",
                status.name,
                gone.partition,
                gone.from_offset,
                gone.earliest - 1,
                status.name
            ));
        }
    }
    out
}

/// The event store's head: where `events tail` starts by default.
pub async fn head(settings: &Settings) -> anyhow::Result<Position> {
    Ok(open_write_side(settings).await?.log.head().await?)
}

/// Which events `events tail` prints.
#[derive(Debug, Clone, Default)]
pub struct Only {
    /// Only this tenant's (`None`: every tenant's).
    pub tenant: Option<Tenant>,
    /// Only this stream's, named within `tenant`'s (`cart-c1`).
    pub stream: Option<String>,
}

impl Only {
    fn admits(&self, event: &EventRecord) -> bool {
        let (tenant, stream) = Tenant::split(&event.stream_id);
        self.tenant.as_ref().is_none_or(|only| *only == tenant)
            && self.stream.as_deref().is_none_or(|only| only == stream || only == event.stream_id)
    }
}

/// Prints committed events, one line each (position, stream and version,
/// type, payload), from position `after`, optionally of one tenant or
/// stream only; with `follow`, waits for more until the process is stopped.
pub async fn tail_events(
    settings: &Settings,
    only: &Only,
    after: Position,
    follow: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let write = open_write_side(settings).await?;
    let head = write.log.head().await?;
    let mut at = after;
    loop {
        let events = write.log.read(at, 500).await?;
        if events.is_empty() {
            if !follow && at >= head {
                return Ok(());
            }
            if !follow {
                // Below the head but nothing visible yet (a late commit): wait a little.
                write.log.wait_beyond(at, Duration::from_millis(200)).await;
                continue;
            }
            write.log.wait_beyond(at, Duration::from_secs(1)).await;
            continue;
        }
        for event in &events {
            at = event.position;
            if only.admits(event) {
                writeln!(out, "{}", event_line(event))?;
            }
        }
        out.flush()?;
        if !follow && at >= head {
            return Ok(());
        }
    }
}

fn event_line(event: &EventRecord) -> String {
    format!(
        "{:>8}  {}@{}  {} v{}  {}",
        event.position,
        event.stream_id,
        event.stream_version,
        event.event_type,
        event.schema_version,
        event.payload.trim()
    )
}

/// One dead letter: an event a projection could not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterRow {
    /// `<projection>@<position>`: what `shop dlq retry` takes.
    pub id: String,
    /// The projection (its name, whatever generation serves).
    pub projection: String,
    /// The event's position.
    pub position: Position,
    /// The event's type.
    pub event_type: String,
    /// The event's id.
    pub event_id: uuid::Uuid,
    /// The tenant whose event it is (`None`: the default tenant).
    pub tenant: Option<String>,
    /// What went wrong at its last attempt.
    pub error: String,
}

impl From<DeadLetter> for DeadLetterRow {
    fn from(letter: DeadLetter) -> Self {
        Self {
            id: DeadLetterId::of(&letter).to_string(),
            projection: letter.projection,
            position: letter.position,
            event_type: letter.event_type,
            event_id: letter.event_id,
            tenant: None,
            error: letter.error,
        }
    }
}

/// `shop dlq list`: every projection's dead letters, those of the generation
/// that serves, by projection and position; then the events the checkout
/// saga parked (a command refused for good; the error names the order).
/// Each belongs to its event's tenant, read from the event store; with
/// `tenant`, only that tenant's.
pub async fn dead_letters(
    settings: &Settings,
    tenant: Option<&Tenant>,
) -> anyhow::Result<Vec<DeadLetterRow>> {
    let projections = shop_read::all_projections();
    // Dead letters are stored under the active generation's name; this
    // store resolves it and answers with the projection's own name.
    let read = parallax_runtime::ActiveGenerations::new(open_read_store(settings).await?, &projections);
    let mut rows = Vec::new();
    for projection in &projections {
        let name = projection.name();
        let letters =
            read.dead_letters(name).await.with_context(|| format!("read the dead letters of {name}"))?;
        rows.extend(letters.into_iter().map(DeadLetterRow::from));
    }
    let write = crate::app::open_write_side(settings).await?;
    let parked = write.store.parked(CheckoutSaga::NAME).await.context("read what the saga parked")?;
    rows.extend(parked.into_iter().map(DeadLetterRow::from));
    for row in &mut rows {
        let event = write.log.read(row.position - 1, 1).await?.into_iter().next();
        row.tenant = event
            .filter(|event| event.position == row.position)
            .and_then(|event| event.tenant().name().map(str::to_owned));
    }
    rows.retain(|row| tenant.is_none_or(|only| only.name() == row.tenant.as_deref()));
    Ok(rows)
}

/// The dead letters as a table, one line each (the error last, whole).
pub fn render_dead_letters(rows: &[DeadLetterRow]) -> String {
    if rows.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let width = rows.iter().map(|row| row.id.len()).max().unwrap_or(0).max(2);
    let mut out = format!(
        "{:<width$}  {:<10} {:>10}  {:<22} {:<36}  {:<12}  {}\n",
        "id", "projection", "position", "event type", "event id", "tenant", "error"
    );
    for row in rows {
        out.push_str(&format!(
            "{:<width$}  {:<10} {:>10}  {:<22} {:<36}  {:<12}  {}\n",
            row.id,
            row.projection,
            row.position,
            row.event_type,
            row.event_id,
            row.tenant.as_deref().unwrap_or("default"),
            row.error.replace('\n', " ")
        ));
    }
    out
}

/// What `shop dlq retry` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    /// The dead letter, now removed.
    pub id: DeadLetterId,
    /// The generation whose views took the event.
    pub generation: Generation,
    /// The event's type.
    pub event_type: String,
    /// The event's id.
    pub event_id: uuid::Uuid,
    /// Documents written.
    pub writes: usize,
}

impl std::fmt::Display for Retried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (event {}) applied to generation {} of {} ({} document{} written) and the dead letter \
             removed; it was applied on the views as they are now, after the events that followed it",
            self.id,
            self.event_type,
            self.event_id,
            self.generation.generation,
            self.id.projection,
            self.writes,
            if self.writes == 1 { "" } else { "s" }
        )
    }
}

/// `shop dlq retry <projection>@<position>`: applies the dead letter's event
/// to the serving generation's views with this code and removes the dead
/// letter, atomically; when the projection still fails on it (or the dead
/// letter is not there), changes nothing and says why. The event is applied
/// on the views' current state, out of its original order; `shop rebuild`
/// replays every event in order instead.
pub async fn retry_dead_letter(settings: &Settings, id: &str) -> anyhow::Result<Retried> {
    let id: DeadLetterId = id.parse()?;
    let name = id.projection.as_str();
    anyhow::ensure!(
        name != CheckoutSaga::NAME,
        "{id} is an event the checkout saga parked: a command it sent was refused for good, so \
         sending it again would be refused again; settle the order its error names by hand"
    );
    let projections = shop_read::all_projections();
    let projection: Arc<dyn Projection> =
        projections.iter().find(|p| p.name() == name).cloned().with_context(|| {
            let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
            format!(
                "no projection {name:?} (in dead letter {id}); the shop's projections are {}",
                names.join(", ")
            )
        })?;
    let store = open_read_store(settings).await?;
    let (pointer, _) = generations::load(store.as_ref(), name).await?;
    let active = pointer.active;
    if active.version != projection.version() {
        anyhow::bail!(
            "generation {} of {name}, which serves, was written by version {} of the projection and this \
             code is version {}: a retry would mix the two; the generation of this version replays every \
             event with this code (`shop status`, or `shop rebuild {name}`)",
            active.generation,
            active.version,
            projection.version()
        );
    }
    let serving: Arc<dyn ReadStore> = Arc::new(GenerationStore::new(store, active));
    let write = open_write_side(settings).await?;
    let outcome = parallax_runtime::retry_dead_letter(
        projection.as_ref(),
        write.log.as_ref(),
        serving.as_ref(),
        id.position,
    )
    .await
    .with_context(|| format!("retry the dead letter {id}"))?;
    Ok(Retried {
        id,
        generation: active,
        event_type: outcome.letter.event_type,
        event_id: outcome.letter.event_id,
        writes: outcome.writes,
    })
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The generation that served before.
    pub from: Generation,
    /// The generation built and now served.
    pub to: Generation,
    /// Whether this process flipped the pointer (another process may have
    /// done it first) and dropped the old generation.
    pub switched_here: bool,
}

/// Where `shop rebuild` reads the history it builds a generation from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildFrom {
    /// The log the projectors read: the event store in the embedded shape,
    /// the topic (a consumer group of the new generation) with Kafka.
    Log,
    /// The event store itself (the write DB's log), then the topic from
    /// where the event store left off: for a topic that no longer holds the
    /// whole history (retention deleted its start).
    EventStore,
}

/// `shop rebuild <projection>`: builds a new generation of the projection's
/// views from position 0 while the active one keeps serving, switches the
/// queries over when it has caught up, and drops the old one; shows a
/// progress bar (events or messages, rate, ETA) on stderr when it is a
/// terminal.
///
/// With Kafka and [`RebuildFrom::EventStore`] the generation is first built
/// from the event store (`build_from_store`), then handed to the
/// topic, where it catches up like any other.
pub async fn rebuild(settings: &Settings, name: &str, from: RebuildFrom) -> anyhow::Result<Rebuilt> {
    let projections = shop_read::all_projections();
    let projection: Arc<dyn Projection> =
        projections.iter().find(|p| p.name() == name).cloned().with_context(|| {
            let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
            format!("no projection {name:?}; the shop's projections are {}", names.join(", "))
        })?;
    let store = open_read_store(settings).await?;
    let log = match (settings.log.kind, from) {
        (LogKind::Kafka, RebuildFrom::Log) => None,
        _ => Some(open_write_side(settings).await?.log),
    };
    let (pointer, _) = generations::load(store.as_ref(), name).await?;
    let building = match (settings.log.kind, &log) {
        (LogKind::Kafka, Some(events)) => build_from_store(settings, &store, &projection, events).await?,
        _ => generations::start_rebuild(store.as_ref(), projection.as_ref()).await?,
    };
    tracing::info!(
        projection = name,
        serving = pointer.active.generation,
        building = building.generation,
        "rebuilding"
    );
    // The topic takes over a generation built from the event store.
    let log = log.filter(|_| settings.log.kind == LogKind::Embedded);
    let caught_up = catch_up(settings, &store, &projection, log, building)
        .await
        .map_err(|error| suggest_the_store(error, name))?;
    if !caught_up {
        // Another process (a projector's supervisor) switched first.
        return Ok(Rebuilt { from: pointer.active, to: building, switched_here: false });
    }
    match generations::flip(store.as_ref(), projection.as_ref(), building).await? {
        Some(old) => {
            generations::drop_after_grace(store.as_ref(), projection.as_ref(), old).await?;
            Ok(Rebuilt { from: old, to: building, switched_here: true })
        }
        None => Ok(Rebuilt { from: pointer.active, to: building, switched_here: false }),
    }
}

/// `error`, and where it is a hole in the topic, what to do about it.
fn suggest_the_store(error: anyhow::Error, name: &str) -> anyhow::Error {
    match error.downcast_ref::<ProjectorError>() {
        Some(ProjectorError::Gap(_)) => error.context(format!(
            "the topic no longer holds the whole history of {name}: rebuild it from the event store \
             (`shop rebuild --from-store {name}`)"
        )),
        _ => error,
    }
}

/// A progress bar on stderr for building `generation` of `name`.
fn progress_bar(name: &str, generation: Generation) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("{name} generation {}", generation.generation));
    bar
}

/// Projects `building` from its log (the event store embedded, the topic
/// with Kafka) until it has caught up with the active generation: true, or
/// false when another process switched first.
async fn catch_up(
    settings: &Settings,
    store: &Arc<dyn ReadStore>,
    projection: &Arc<dyn Projection>,
    log: Option<Arc<dyn parallax_core::EventLog>>,
    building: Generation,
) -> anyhow::Result<bool> {
    let name = projection.name();
    let source = generation_sources(settings, log.clone(), name)(building).map_err(anyhow::Error::msg)?;
    let generation_store: Arc<dyn ReadStore> = Arc::new(GenerationStore::new(Arc::clone(store), building));
    let projector = Projector::from_source(Arc::clone(projection), source, Arc::clone(&generation_store));
    let bar = progress_bar(name, building);
    let mut last_report = Instant::now();
    loop {
        match projector.step(Duration::from_millis(200)).await {
            // An event the projection failed on: attempted again at the next
            // step, and dead-lettered in the new generation at its last.
            Ok(_) | Err(ProjectorError::Apply { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        if last_report.elapsed() >= Duration::from_millis(250) {
            last_report = Instant::now();
            let (done, total) =
                rebuild_progress(settings, log.as_deref(), generation_store.as_ref(), name).await;
            bar.set_length(total.max(done));
            bar.set_position(done);
        }
        let (now, _) = generations::load(store.as_ref(), name).await?;
        if now.building != Some(building) {
            bar.finish_and_clear();
            return Ok(false);
        }
        if generations::caught_up(store.as_ref(), name, now.active, building).await? {
            bar.finish_and_clear();
            return Ok(true);
        }
    }
}

/// Builds a new generation of `projection` from the event store `events`
/// for the topic to take over, and makes it the one being built; returns it.
///
/// The topic's end offsets are read first, then the event store is folded
/// to its end, position `c`. Everything the relay had published before the
/// offsets were read, it had read from the event store, so it is at or
/// below `c`; everything published after is at or beyond those offsets.
/// Each partition's checkpoint is then left at position `c` with the offset
/// read: the generation's Kafka projectors resume there, skip by position
/// what the event store gave already, and miss nothing after it (a link
/// beyond `c` names an event published after the offsets were read, so
/// one they read before it). Should retention delete past those offsets
/// meanwhile, the consumer starts at the earliest offset held and the
/// links tell the hole.
///
/// The generation is built out of the supervisors' sight (they would read
/// it from the topic beside this build) and only then named in the
/// pointer, by compare-and-set; it takes the number after the next one, so
/// that a supervisor starting a generation for new code meanwhile takes
/// another. A generation being built from the topic before (stuck at a
/// hole, say) is replaced and its views dropped.
async fn build_from_store(
    settings: &Settings,
    store: &Arc<dyn ReadStore>,
    projection: &Arc<dyn Projection>,
    events: &Arc<dyn parallax_core::EventLog>,
) -> anyhow::Result<Generation> {
    let name = projection.name();
    let ends = parallax_kafka::end_offsets(&kafka_config(settings))
        .await
        .with_context(|| format!("read the end offsets of topic {}", settings.log.topic))?;
    anyhow::ensure!(
        ends.len() == settings.log.partitions as usize,
        "topic {} has {} partitions, the configuration says {}; run `shop migrate`",
        settings.log.topic,
        ends.len(),
        settings.log.partitions
    );
    let (pointer, revision) = generations::load(store.as_ref(), name).await?;
    let building = Generation { generation: pointer.highest() + 2, version: projection.version() };
    generations::declare(store.as_ref(), projection.as_ref(), building).await?;
    let generation_store: Arc<dyn ReadStore> = Arc::new(GenerationStore::new(Arc::clone(store), building));
    let position = fold_store(settings, projection, events, &generation_store, building).await?;
    hand_to_topic(generation_store.as_ref(), name, position, &ends).await?;
    let named = generations::Generations { building: Some(building), ..pointer };
    if let Err(error) = generations::save(store.as_ref(), name, &named, revision).await {
        let (now, _) = generations::load(store.as_ref(), name).await?;
        if now.active != building && now.building != Some(building) {
            let views: Vec<String> =
                projection.views().iter().map(|view| building.physical(&view.name)).collect();
            store.drop_projection(&building.physical(name), &views).await?;
        }
        return Err(anyhow::Error::new(error).context(format!(
            "the generations of {name} changed while generation {} was built from the event store (another \
             rebuild, or code of a new version); run the command again",
            building.generation
        )));
    }
    if let Some(replaced) = pointer.building {
        generations::drop_after_grace(store.as_ref(), projection.as_ref(), replaced).await?;
    }
    Ok(building)
}

/// Projects `events` (the event store's log) into `generation_store` to its
/// end; returns the position reached.
async fn fold_store(
    settings: &Settings,
    projection: &Arc<dyn Projection>,
    events: &Arc<dyn parallax_core::EventLog>,
    generation_store: &Arc<dyn ReadStore>,
    building: Generation,
) -> anyhow::Result<Position> {
    let name = projection.name();
    let projector = Projector::new(Arc::clone(projection), Arc::clone(events), Arc::clone(generation_store));
    let bar = progress_bar(name, building);
    loop {
        match projector.step(Duration::ZERO).await {
            Ok(outcome) if outcome.delivered == 0 => break,
            Ok(_) | Err(ProjectorError::Apply { .. }) => {}
            Err(error) => return Err(error).context("build from the event store"),
        }
        let (done, total) =
            rebuild_progress(settings, Some(events.as_ref()), generation_store.as_ref(), name).await;
        bar.set_length(total.max(done));
        bar.set_position(done);
    }
    bar.finish_and_clear();
    Ok(generation_store.checkpoint(name, 0).await?.position)
}

/// Leaves every partition's checkpoint at `position` with the partition's
/// offset in `ends` (the event store's log kept its one checkpoint in
/// partition 0, with the position for an offset).
async fn hand_to_topic(
    generation_store: &dyn ReadStore,
    name: &str,
    position: Position,
    ends: &[(u32, u64)],
) -> anyhow::Result<()> {
    let held: std::collections::BTreeMap<parallax_core::Partition, parallax_core::Checkpoint> =
        generation_store.checkpoints(name).await?.into_iter().collect();
    let checkpoints = ends
        .iter()
        .map(|&(partition, offset)| parallax_core::CheckpointMove {
            partition,
            from: held.get(&partition).copied().unwrap_or_default(),
            to: parallax_core::Checkpoint { position, offset },
        })
        .collect();
    let batch = parallax_core::ViewBatch { checkpoints, ..parallax_core::ViewBatch::empty(name) };
    generation_store.commit(batch).await.context("hand the generation's checkpoints to the topic")?;
    Ok(())
}

/// How far a generation has got and how far it has to go: positions
/// (embedded) or offsets summed over partitions (Kafka).
async fn rebuild_progress(
    settings: &Settings,
    log: Option<&dyn parallax_core::EventLog>,
    store: &dyn ReadStore,
    name: &str,
) -> (u64, u64) {
    let checkpoints = store.checkpoints(name).await.unwrap_or_default();
    match log {
        Some(log) => {
            let head = log.head().await.unwrap_or(0);
            (parallax_core::furthest(&checkpoints), head)
        }
        None => {
            let ends = parallax_kafka::end_offsets(&kafka_config(settings)).await.unwrap_or_default();
            let done = checkpoints.iter().map(|(_, checkpoint)| checkpoint.offset).sum();
            (done, ends.iter().map(|(_, end)| end).sum())
        }
    }
}
