//! `shop check`: a Jepsen-style checker of a shop's stores, run after a load
//! (or a fault injection) has stopped.
//!
//! It opens the stores as `shop status` does — the write DB, the Kafka topic
//! when the log is one, the read DB through each projection's active
//! generation — and checks, in this order:
//!
//! 1. **The views have settled.** The read side is eventually consistent, so
//!    the checker first waits (at most [`CheckOptions::wait`], 60 s by
//!    default) until every projection's checkpoint in every partition has
//!    reached the last position of the store's events in that partition and
//!    the event store's head stands still. Run it once the load has stopped:
//!    against a store that keeps growing it compares at the last head it saw.
//! 2. **The event store**: every event read in position order; no event id
//!    twice; per stream, versions 1..n, each one more than the highest before
//!    it in position order (so no gap, no repeat, and positions increasing
//!    with versions).
//! 3. **The views**: every projection rebuilt from scratch, from exactly the
//!    events of step 2, into a temporary SQLite read store (the *fold*), and
//!    compared document by document with the read DB: every partition the
//!    fold wrote (put or deleted) and every partition of the read DB's views
//!    (`ReadStore::partitions`), so a stray document in a partition no event
//!    touches is seen too. Each projection's checkpoints must equal the last position of
//!    the store's events in their partition; dead letters are reported.
//! 4. **The topic** (when `log.kind = "kafka"`): every partition read from
//!    offset 0 to its end offset by a consumer group of its own
//!    (`<group>.check-<uuid>`, committing nothing) and compared with the
//!    store. Delivery is at-least-once, so a repeated event is allowed and
//!    only counted; what must hold is that every event of the store is there,
//!    that each message carries an event of the store unchanged in the
//!    partition of its stream, and that in each partition the first
//!    occurrences come in position order (a projector skips by position: an
//!    event after a higher one of its partition would be skipped, and so
//!    would a stream's earlier version after a later one). The checker is
//!    meant for topics that keep everything: a message deleted by retention
//!    shows as unreadable and its event as missing.
//! 5. **A history of client operations** (`--history FILE`, JSON lines from
//!    the fault suite's load driver: an `invoke` line per operation, then one
//!    completion with the same `id`, `ok`, `fail` or `info`; see
//!    [`parse_history`]). An operation is *present* when its idempotency key
//!    is in the event store (the store writes the key with the last position
//!    of the command's events, in the append's transaction); its position is
//!    the one its key records. The history is assumed to hold every command
//!    sent to its streams, each with a key of its own.
//!
//! # The report
//!
//! [`CheckReport`] serializes (`shop check --json`) as one object:
//!
//! | field | meaning |
//! |---|---|
//! | `ok` | no violation: every count below is 0 except `topic_duplicates` (and the informative ones) |
//! | `events` | events in the event store, up to `head` |
//! | `streams` | streams among them |
//! | `head` | the event store's head the check ran against |
//! | `topic_checked` | whether the configuration has a Kafka topic (it was read) |
//! | `topic_messages` | messages read from the topic, unreadable ones included (0 without a topic) |
//! | `history_checked` | whether a history was given |
//! | `operations` | `{"ok","fail","info"}`: operations of the history by completion; an invoke without completion is `info` |
//! | `lost` | `lost_acknowledged + lost_in_views` |
//! | `lost_acknowledged` | `ok` operations whose key is absent, or whose acknowledged position holds no event of their stream, or whose key records another position than the one acknowledged |
//! | `lost_in_views` | (cart, SKU) pairs of all-`add_item` carts of the history whose cart view holds fewer units than the present operations added |
//! | `refused_present` | `fail` operations (definite refusals) whose key is in the store |
//! | `duplicated` | `duplicate_event_ids + applied_twice + topic_unknown` |
//! | `duplicate_event_ids` | events whose event id an earlier event of the store already has |
//! | `applied_twice` | (cart, SKU) pairs of all-`add_item` carts of the history whose cart view holds more units than the present operations added |
//! | `topic_unknown` | messages of the topic that carry no event of the store: unreadable (not a Parallax event), at a position the store does not have, differing from the stored event (stream, version, id, type, schema version, payload), or in another partition than their stream's |
//! | `order_violations` | events of the store whose stream version is not one more than the highest version of their stream at a lower position |
//! | `linearizability_violations` | present operations `b` for which an `ok` operation `a` of the same stream, acknowledged before `b` was invoked, has a higher position than `b` |
//! | `topic_missing` | events of the store (up to `head`) that are on no partition of the topic |
//! | `topic_duplicates` | messages repeating an event already carried (allowed: at-least-once; informative) |
//! | `topic_order_violations` | first occurrences of events that come after a higher position in their partition |
//! | `view_differences` | documents missing from the read DB, extra in it, or with another body than the fold's, plus checkpoints beyond the last position of their partition's events |
//! | `views_behind` | (projection, partition) checkpoints still behind the store's events when the wait ended |
//! | `dead_letters` | dead letters of the projections' active generations |
//! | `documents` | documents the fold holds (what was compared) |
//! | `details` | up to 50 lines naming violations (at most 10 of each kind), then informative lines |
//! | `details_omitted` | lines left out of `details` |
//!
//! `shop check` prints a summary (or the JSON with `--json`) and exits with
//! 0 when `ok`, 1 when a violation was found, 2 when the check could not run.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use futures::{StreamExt as _, TryStreamExt as _};
use parallax_core::{
    partition_for, Checkpoint, ClusteringRange, DeadLetter, DocKey, EventLog, EventRecord, EventSource,
    EventStore, LogError, Page, Partition, Position, ReadStore, ReadStoreError, Revision, StoredDocument,
    ViewBatch,
};
use parallax_kafka::{KafkaConfig, KafkaSource};
use parallax_runtime::{ActiveGenerations, Projector};
use parallax_sqlite::SqliteReadStore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shop_read::ShopQueries;
use uuid::Uuid;

use crate::app::{kafka_config, open_read_store, open_write_side};
use crate::config::{LogKind, Settings};

/// How long the checker waits for the views by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Lines in [`CheckReport::details`].
const MAX_DETAILS: usize = 50;
/// Lines of one kind of violation in [`CheckReport::details`].
const MAX_DETAILS_OF_A_KIND: usize = 10;
/// How long reading the topic to its end offsets may take.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(120);
/// With every partition assigned, how long the topic may stay silent below
/// its end offsets (messages that are not Parallax events are skipped) before
/// the read ends.
const TOPIC_IDLE: Duration = Duration::from_secs(3);
/// Events per read of the event store.
const PAGE: usize = 5_000;
/// Idempotency keys looked up at once.
const KEY_LOOKUPS: usize = 8;

/// What to check beyond the stores.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// A history of client operations (JSON lines; see [`parse_history`]).
    pub history: Option<PathBuf>,
    /// How long to wait for the projections to reach the event store's head.
    pub wait: Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self { history: None, wait: DEFAULT_WAIT }
    }
}

/// Operations of the history, by completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Operations {
    /// Acknowledged.
    pub ok: u64,
    /// Definitely refused.
    pub fail: u64,
    /// Outcome unknown (timeouts, and invokes without completion).
    pub info: u64,
}

/// What the checker found; the fields are documented in the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// No violation.
    pub ok: bool,
    /// Events in the event store, up to `head`.
    pub events: u64,
    /// Streams among them.
    pub streams: u64,
    /// The head the check ran against.
    pub head: Position,
    /// Whether a topic was read.
    pub topic_checked: bool,
    /// Messages read from the topic.
    pub topic_messages: u64,
    /// Whether a history was checked.
    pub history_checked: bool,
    /// Operations of the history.
    pub operations: Operations,
    /// `lost_acknowledged + lost_in_views`.
    pub lost: u64,
    /// Acknowledged operations not in the event store.
    pub lost_acknowledged: u64,
    /// (cart, SKU) pairs whose view holds fewer units than the history added.
    pub lost_in_views: u64,
    /// Refused operations whose key is in the store.
    pub refused_present: u64,
    /// `duplicate_event_ids + applied_twice + topic_unknown`.
    pub duplicated: u64,
    /// Events whose id an earlier event has.
    pub duplicate_event_ids: u64,
    /// (cart, SKU) pairs whose view holds more units than the history added.
    pub applied_twice: u64,
    /// Messages of the topic that carry no event of the store.
    pub topic_unknown: u64,
    /// Events out of version order in their stream.
    pub order_violations: u64,
    /// Operations ordered before one acknowledged before they began.
    pub linearizability_violations: u64,
    /// Events of the store on no partition of the topic.
    pub topic_missing: u64,
    /// Messages repeating an event already carried (allowed).
    pub topic_duplicates: u64,
    /// First occurrences after a higher position of their partition.
    pub topic_order_violations: u64,
    /// Documents and checkpoints that differ from the fold.
    pub view_differences: u64,
    /// Checkpoints behind the store's events when the wait ended.
    pub views_behind: u64,
    /// Dead letters of the active generations.
    pub dead_letters: u64,
    /// Documents of the fold.
    pub documents: u64,
    /// Lines naming what was found.
    pub details: Vec<String>,
    /// Lines left out of `details`.
    pub details_omitted: u64,
}

impl CheckReport {
    /// Sums the totals and decides `ok`.
    fn conclude(&mut self, details: Details) {
        self.lost = self.lost_acknowledged + self.lost_in_views;
        self.duplicated = self.duplicate_event_ids + self.applied_twice + self.topic_unknown;
        self.ok = [
            self.lost,
            self.refused_present,
            self.duplicated,
            self.order_violations,
            self.linearizability_violations,
            self.topic_missing,
            self.topic_order_violations,
            self.view_differences,
            self.views_behind,
            self.dead_letters,
        ]
        .iter()
        .all(|&count| count == 0);
        (self.details, self.details_omitted) = details.finish();
    }

    /// The report for people: one line per store, then the details.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = if self.ok { "OK" } else { "VIOLATIONS FOUND" };
        let _ = writeln!(out, "shop check: {verdict}");
        let _ = writeln!(
            out,
            "event store  {} events in {} streams (head {}); duplicate event ids {}; order violations {}",
            self.events, self.streams, self.head, self.duplicate_event_ids, self.order_violations
        );
        if self.topic_checked {
            let _ = writeln!(
                out,
                "topic        {} messages; missing {}; not in the store {}; order violations {}; \
                 duplicates {} (allowed: at-least-once)",
                self.topic_messages,
                self.topic_missing,
                self.topic_unknown,
                self.topic_order_violations,
                self.topic_duplicates
            );
        } else {
            let _ = writeln!(out, "topic        none configured");
        }
        let _ = writeln!(
            out,
            "views        {} documents compared; differences {}; checkpoints behind {}; dead letters {}",
            self.documents, self.view_differences, self.views_behind, self.dead_letters
        );
        if self.history_checked {
            let ops = &self.operations;
            let _ = writeln!(
                out,
                "history      {} ok, {} fail, {} info; lost {}; refused but present {}; \
                 linearizability violations {}; in the carts: applied twice {}, lost {}",
                ops.ok,
                ops.fail,
                ops.info,
                self.lost_acknowledged,
                self.refused_present,
                self.linearizability_violations,
                self.applied_twice,
                self.lost_in_views
            );
        } else {
            let _ = writeln!(out, "history      none given");
        }
        for line in &self.details {
            let _ = writeln!(out, "  {line}");
        }
        if self.details_omitted > 0 {
            let _ = writeln!(out, "  … and {} more", self.details_omitted);
        }
        out
    }
}

/// Lines naming what was found: violations first (a few of each kind), then
/// informative lines, at most [`MAX_DETAILS`] in all.
#[derive(Debug, Default)]
struct Details {
    violations: Vec<String>,
    notes: Vec<String>,
    per_kind: HashMap<&'static str, usize>,
    omitted: u64,
}

impl Details {
    fn violation(&mut self, kind: &'static str, line: String) {
        let seen = self.per_kind.entry(kind).or_default();
        *seen += 1;
        if *seen <= MAX_DETAILS_OF_A_KIND {
            self.violations.push(format!("{kind}: {line}"));
        } else {
            self.omitted += 1;
        }
    }

    fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    fn finish(mut self) -> (Vec<String>, u64) {
        let mut lines = self.violations;
        lines.append(&mut self.notes);
        if lines.len() > MAX_DETAILS {
            self.omitted += (lines.len() - MAX_DETAILS) as u64;
            lines.truncate(MAX_DETAILS);
        }
        (lines, self.omitted)
    }
}

/// `shop check`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// A history of client operations: JSON lines as the fault suite's load
    /// driver writes them.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Seconds to wait for the projections to reach the event store's head.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_WAIT.as_secs())]
    pub wait: u64,
    /// JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// `shop check`: loads the settings (`config`, then `data_dir` over them),
/// checks, prints the report; returns the exit status: 0 ok, 1 a violation
/// found, 2 the check could not run.
pub async fn run(config: Option<&Path>, data_dir: Option<PathBuf>, args: &CheckArgs) -> i32 {
    let checked = async {
        let mut settings = Settings::load(config)?;
        if let Some(data_dir) = data_dir {
            settings.data_dir = data_dir;
        }
        let options = CheckOptions { history: args.history.clone(), wait: Duration::from_secs(args.wait) };
        check(&settings, options).await
    };
    match checked.await {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(error) => {
                        eprintln!("error: serialize the report: {error}");
                        return 2;
                    }
                }
            } else {
                print!("{}", report.render());
            }
            if report.ok {
                0
            } else {
                1
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            2
        }
    }
}

/// Checks the shop `settings` describe; see the module docs.
///
/// # Errors
/// When a store cannot be opened or read, the topic cannot be read to its
/// end, or the history does not parse: the check could not run. Violations
/// are not errors; they are in the report.
pub async fn check(settings: &Settings, options: CheckOptions) -> anyhow::Result<CheckReport> {
    let history = match &options.history {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read the history {}", path.display()))?;
            Some(parse_history(&text).with_context(|| format!("parse the history {}", path.display()))?)
        }
        None => None,
    };
    let write = open_write_side(settings).await?;
    let projections = shop_read::all_projections();
    let read: Arc<dyn ReadStore> =
        Arc::new(ActiveGenerations::new(open_read_store(settings).await?, &projections));
    let partitions = settings.partitions();
    let mut report = CheckReport::default();
    let mut details = Details::default();

    // The carts of the history are compared too, even where the fold has none.
    let history_carts: BTreeSet<(String, String)> = history
        .iter()
        .flatten()
        .filter_map(|op| cart_id(&op.stream))
        .map(|cart| (shop_read::views::names::CART.to_owned(), cart.to_owned()))
        .collect();

    // 1 and 3: settle, fold and compare, again while the head moves (the saga at work).
    let deadline = Instant::now() + options.wait;
    let mut events: Vec<EventRecord> = Vec::new();
    let (settled, fold, actual) = loop {
        let settled = settle(write.log.as_ref(), read.as_ref(), &mut events, partitions, deadline).await?;
        let fold = fold(Arc::new(events.clone())).await?;
        let mut compared = fold.partitions.clone();
        compared.extend(history_carts.iter().cloned());
        compared.extend(listed_partitions(read.as_ref()).await?);
        let actual = documents(read.as_ref(), &compared).await.context("read the views of the read DB")?;
        let moved = write.log.head().await.context("read the head")? != settled.head;
        if !moved || Instant::now() >= deadline {
            if moved {
                details.note(format!(
                    "the event store's head moved from {} while the views were read: differences may be \
                     transient",
                    settled.head
                ));
            }
            break (settled, fold, actual);
        }
    };
    report.head = settled.head;
    report.views_behind = settled.behind.len() as u64;
    for line in &settled.behind {
        details.violation("behind", line.clone());
    }

    // 2. The event store.
    check_event_store(&events, &mut report, &mut details);

    // 3. The views.
    report.documents = fold.documents.len() as u64;
    let differing = differences(&fold.documents, &actual);
    report.view_differences = differing.len() as u64;
    for line in differing {
        details.violation("view", line);
    }
    for line in &settled.ahead {
        report.view_differences += 1;
        details.violation("view", line.clone());
    }
    for projection in &projections {
        let name = projection.name();
        let letters =
            read.dead_letters(name).await.with_context(|| format!("read the dead letters of {name}"))?;
        report.dead_letters += letters.len() as u64;
        for letter in letters {
            details.violation(
                "dead letter",
                format!(
                    "{name}: position {} ({}, event {}): {}",
                    letter.position, letter.event_type, letter.event_id, letter.error
                ),
            );
        }
    }
    for letter in &fold.dead_letters {
        details.note(format!(
            "the fold dead-lettered position {} in {} ({}): {}",
            letter.position, letter.projection, letter.event_type, letter.error
        ));
    }

    // 4. The topic.
    if settings.log.kind == LogKind::Kafka {
        report.topic_checked = true;
        let config = kafka_config(settings);
        let group = format!("{}.check-{}", settings.log.group, Uuid::new_v4().simple());
        let topic = read_topic(&config, &group).await?;
        // Events appended since the head was read may be on the topic too.
        let mut known = events.clone();
        read_events(write.log.as_ref(), &mut known, Position::MAX).await?;
        let findings = compare_topic(&known, settled.head, &topic.messages, partitions);
        report.topic_messages = (topic.messages.len() as u64) + topic.unreadable.len() as u64;
        report.topic_duplicates = findings.duplicates as u64;
        report.topic_missing = findings.missing.len() as u64;
        report.topic_order_violations = findings.order_violations.len() as u64;
        report.topic_unknown = (findings.unknown.len() + topic.unreadable.len()) as u64;
        for line in findings.missing {
            details.violation("topic missing", line);
        }
        for line in findings.order_violations {
            details.violation("topic order", line);
        }
        for line in topic.unreadable.into_iter().chain(findings.unknown) {
            details.violation("topic unknown", line);
        }
        if findings.duplicates > 0 {
            details.note(format!(
                "the topic repeats {} events (allowed: at-least-once delivery)",
                findings.duplicates
            ));
        }
    }

    // 5. The history.
    if let Some(history) = &history {
        report.history_checked = true;
        let queries = ShopQueries::new(Arc::clone(&read));
        check_history(history, write.store.as_ref(), &events, &queries, &mut report, &mut details).await?;
    }

    report.conclude(details);
    Ok(report)
}

/// The cart id of a cart stream (`cart-<id>`).
fn cart_id(stream: &str) -> Option<&str> {
    stream.strip_prefix(shop_events::CART)?.strip_prefix('-')
}

// ---- 1. settling ----

/// Where the read side stood when the wait ended.
struct Settled {
    /// The event store's head.
    head: Position,
    /// Checkpoints behind the store's events in their partition.
    behind: Vec<String>,
    /// Checkpoints beyond the store's events in their partition.
    ahead: Vec<String>,
}

/// Reads the store's events to its head into `events` and waits until every
/// projection has absorbed them in every partition and the head stands
/// still, or until `deadline`.
async fn settle(
    log: &dyn EventLog,
    read: &dyn ReadStore,
    events: &mut Vec<EventRecord>,
    partitions: u32,
    deadline: Instant,
) -> anyhow::Result<Settled> {
    loop {
        let head = log.head().await.context("read the head")?;
        if events.last().is_some_and(|last| last.position > head) {
            // Events were removed from the store's end since: read it again.
            events.clear();
        }
        read_events(log, events, head).await?;
        let mut reached: BTreeMap<Partition, Position> = BTreeMap::new();
        for event in events.iter() {
            reached.insert(partition_for(&event.stream_id, partitions), event.position);
        }
        let (behind, ahead) = checkpoints_against(read, &reached).await?;
        let visible = events.last().map_or(0, |last| last.position);
        let still = log.head().await.context("read the head")? == head && visible >= head;
        if (behind.is_empty() && still) || Instant::now() >= deadline {
            return Ok(Settled { head, behind, ahead });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads events after the last of `events` until one at or beyond `until`,
/// or until nothing more is visible.
async fn read_events(
    log: &dyn EventLog,
    events: &mut Vec<EventRecord>,
    until: Position,
) -> anyhow::Result<()> {
    loop {
        let after = events.last().map_or(0, |last| last.position);
        if after >= until {
            return Ok(());
        }
        let batch = log.read(after, PAGE).await.context("read the event store")?;
        if batch.is_empty() {
            return Ok(());
        }
        events.extend(batch);
    }
}

/// Each projection's checkpoints against the last position of the store's
/// events in each partition: those behind, and those beyond.
async fn checkpoints_against(
    read: &dyn ReadStore,
    reached: &BTreeMap<Partition, Position>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let (mut behind, mut ahead) = (Vec::new(), Vec::new());
    for projection in shop_read::all_projections() {
        let name = projection.name();
        let checkpoints: BTreeMap<Partition, Checkpoint> = read
            .checkpoints(name)
            .await
            .with_context(|| format!("read the checkpoints of {name}"))?
            .into_iter()
            .collect();
        for (partition, position) in reached {
            let at = checkpoints.get(partition).map_or(0, |checkpoint| checkpoint.position);
            if at < *position {
                behind.push(format!(
                    "{name} in partition {partition} is at position {at}; the store's events there \
                     reach {position}"
                ));
            }
        }
        for (partition, checkpoint) in &checkpoints {
            let last = reached.get(partition).copied().unwrap_or(0);
            if checkpoint.position > last {
                ahead.push(format!(
                    "checkpoint of {name} in partition {partition} is at position {}; the store's events \
                     there end at {last}",
                    checkpoint.position
                ));
            }
        }
    }
    Ok((behind, ahead))
}

// ---- 2. the event store ----

fn check_event_store(events: &[EventRecord], report: &mut CheckReport, details: &mut Details) {
    let mut ids: HashMap<Uuid, Position> = HashMap::with_capacity(events.len());
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for event in events {
        if let Some(first) = ids.insert(event.event_id, event.position) {
            ids.insert(event.event_id, first);
            report.duplicate_event_ids += 1;
            details.violation(
                "duplicate event id",
                format!(
                    "event {} at position {} ({}@{}) was already at position {first}",
                    event.event_id, event.position, event.stream_id, event.stream_version
                ),
            );
        }
        let highest = versions.entry(&event.stream_id).or_default();
        if event.stream_version != *highest + 1 {
            report.order_violations += 1;
            details.violation(
                "order",
                format!(
                    "{} version {} at position {} follows version {} (expected {})",
                    event.stream_id,
                    event.stream_version,
                    event.position,
                    highest,
                    *highest + 1
                ),
            );
        }
        *highest = (*highest).max(event.stream_version);
    }
    report.events = events.len() as u64;
    report.streams = versions.len() as u64;
}

// ---- 3. the views ----

/// Documents by (view, partition, clustering).
pub type Documents = BTreeMap<(String, String, String), Value>;

/// Every projection rebuilt from scratch.
#[derive(Debug, Clone)]
pub struct Fold {
    /// Every document of every view.
    pub documents: Documents,
    /// The (view, partition) pairs the rebuild wrote.
    pub partitions: BTreeSet<(String, String)>,
    /// Events the rebuild could not apply.
    pub dead_letters: Vec<DeadLetter>,
}

/// Rebuilds every projection of the shop from `events` (in position order,
/// as the store holds them) into a temporary SQLite read store, and reads
/// back every document it wrote.
///
/// # Errors
/// When the temporary store cannot be made or a projection fails.
pub async fn fold(events: Arc<Vec<EventRecord>>) -> anyhow::Result<Fold> {
    let folder = TempFolder::new()?;
    let sqlite =
        SqliteReadStore::open(&folder.path.join("fold.db")).context("open the fold's SQLite store")?;
    let store = Arc::new(Touched { inner: Arc::new(sqlite), partitions: Mutex::default() });
    let log: Arc<dyn EventLog> = Arc::new(Recorded(events));
    let mut dead_letters = Vec::new();
    for projection in shop_read::all_projections() {
        let name = projection.name();
        Projector::new(projection, Arc::clone(&log), Arc::clone(&store) as Arc<dyn ReadStore>)
            .catch_up()
            .await
            .with_context(|| format!("fold {name}"))?;
        dead_letters.extend(store.dead_letters(name).await?);
    }
    let partitions = store.partitions.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let documents = documents(store.as_ref(), &partitions).await.context("read the fold")?;
    Ok(Fold { documents, partitions, dead_letters })
}

/// Every (view, partition) of the shop's views that holds a document in
/// `store`.
async fn listed_partitions(store: &dyn ReadStore) -> anyhow::Result<BTreeSet<(String, String)>> {
    let mut listed = BTreeSet::new();
    for projection in shop_read::all_projections() {
        for view in projection.views() {
            let partitions =
                store.partitions(view).await.with_context(|| format!("list the partitions of {view}"))?;
            listed.extend(partitions.into_iter().map(|partition| ((*view).to_owned(), partition)));
        }
    }
    Ok(listed)
}

/// Every document of `partitions` (view, partition) in `store`.
///
/// # Errors
/// When the store fails.
pub async fn documents(
    store: &dyn ReadStore,
    partitions: &BTreeSet<(String, String)>,
) -> Result<Documents, ReadStoreError> {
    let mut documents = Documents::new();
    for (view, partition) in partitions {
        let mut range = ClusteringRange::default();
        loop {
            let page = store.scan(view, partition, &range, 500).await?;
            for document in page.documents {
                documents.insert((view.clone(), partition.clone(), document.key.clustering), document.body);
            }
            match page.next_cursor {
                Some(cursor) => range.after = Some(cursor),
                None => break,
            }
        }
    }
    Ok(documents)
}

/// Every difference of `actual` from `expected`, one line each: documents
/// missing, differing, extra.
pub fn differences(expected: &Documents, actual: &Documents) -> Vec<String> {
    let place = |(view, partition, clustering): &(String, String, String)| {
        if clustering.is_empty() {
            format!("{view}/{partition}")
        } else {
            format!("{view}/{partition}/{clustering}")
        }
    };
    let mut lines = Vec::new();
    for (key, body) in expected {
        match actual.get(key) {
            None => lines.push(format!("missing {}: the fold has {}", place(key), brief(body))),
            Some(other) if other != body => {
                let mut fields = Vec::new();
                changed_fields("", body, other, &mut fields);
                let shown = fields.len().min(5);
                let more = if fields.len() > shown {
                    format!("; {} more", fields.len() - shown)
                } else {
                    String::new()
                };
                lines.push(format!(
                    "differs {}: {}{more} (fold → read DB)",
                    place(key),
                    fields[..shown].join(", ")
                ));
            }
            Some(_) => {}
        }
    }
    for (key, body) in actual {
        if !expected.contains_key(key) {
            lines.push(format!("extra {}: {}", place(key), brief(body)));
        }
    }
    lines
}

/// Where `actual` differs from `expected`, one `path: expected → actual` each.
fn changed_fields(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for name in names {
                let inner = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                match (a.get(name), b.get(name)) {
                    (Some(x), Some(y)) => changed_fields(&inner, x, y, out),
                    (x, y) => out.push(format!(
                        "{inner}: {} → {}",
                        x.map_or_else(|| "absent".to_owned(), brief),
                        y.map_or_else(|| "absent".to_owned(), brief)
                    )),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                changed_fields(&format!("{path}[{index}]"), x, y, out);
            }
        }
        (x, y) if x != y => {
            let path = if path.is_empty() { "body" } else { path };
            out.push(format!("{path}: {} → {}", brief(x), brief(y)));
        }
        _ => {}
    }
}

/// A body, cut to a readable length.
fn brief(body: &Value) -> String {
    let text = body.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A folder under the system's temporary folder, removed when dropped.
struct TempFolder {
    path: PathBuf,
}

impl TempFolder {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("shop-check-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Events held in memory as a log: the fold reads exactly the events checked.
struct Recorded(Arc<Vec<EventRecord>>);

#[async_trait]
impl EventLog for Recorded {
    async fn read(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, LogError> {
        let start = self.0.partition_point(|event| event.position <= after);
        Ok(self.0[start..].iter().take(limit).cloned().collect())
    }

    async fn wait_beyond(&self, _after: Position, _timeout: Duration) {}

    async fn head(&self) -> Result<Position, LogError> {
        Ok(self.0.last().map_or(0, |last| last.position))
    }
}

/// A read store that remembers which (view, partition) pairs were written.
struct Touched {
    inner: Arc<dyn ReadStore>,
    partitions: Mutex<BTreeSet<(String, String)>>,
}

#[async_trait]
impl ReadStore for Touched {
    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(Value, Revision)>, ReadStoreError> {
        self.inner.get_with_revision(view, key).await
    }

    async fn get_many(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<(Value, Revision)>>, ReadStoreError> {
        self.inner.get_many(keys).await
    }

    async fn get_many_stored(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<StoredDocument>>, ReadStoreError> {
        self.inner.get_many_stored(keys).await
    }

    fn commits_atomically(&self) -> bool {
        self.inner.commits_atomically()
    }

    async fn declare_views(&self, views: &[(String, bool)]) -> Result<(), ReadStoreError> {
        self.inner.declare_views(views).await
    }

    async fn scan(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page, ReadStoreError> {
        self.inner.scan(view, partition, range, limit).await
    }

    async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError> {
        let written: Vec<(String, String)> = batch
            .writes
            .iter()
            .map(|write| (write.view().to_owned(), write.key().partition.clone()))
            .collect();
        self.inner.commit(batch).await?;
        self.partitions.lock().unwrap_or_else(PoisonError::into_inner).extend(written);
        Ok(())
    }

    async fn checkpoint(&self, projection: &str, partition: Partition) -> Result<Checkpoint, ReadStoreError> {
        self.inner.checkpoint(projection, partition).await
    }

    async fn checkpoints(&self, projection: &str) -> Result<Vec<(Partition, Checkpoint)>, ReadStoreError> {
        self.inner.checkpoints(projection).await
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, ReadStoreError> {
        self.inner.dead_letters(projection).await
    }
}

// ---- 4. the topic ----

/// A message of the topic, as far as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMessage {
    /// Its partition.
    pub partition: Partition,
    /// Its offset there.
    pub offset: u64,
    /// Its key: the stream id.
    pub key: Option<String>,
    /// `ce_position`.
    pub position: Position,
    /// `ce_streamversion`.
    pub stream_version: u64,
    /// `ce_id`.
    pub event_id: Uuid,
    /// `ce_type`.
    pub event_type: String,
    /// `ce_schemaversion`.
    pub schema_version: u32,
    /// The body.
    pub payload: String,
}

impl TopicMessage {
    /// The message a source delivered (its key is the event's stream).
    pub fn delivered(sourced: parallax_core::SourcedEvent) -> Self {
        let event = sourced.event;
        Self {
            partition: sourced.partition,
            offset: sourced.offset,
            key: Some(event.stream_id),
            position: event.position,
            stream_version: event.stream_version,
            event_id: event.event_id,
            event_type: event.event_type,
            schema_version: event.schema_version,
            payload: event.payload,
        }
    }

    fn place(&self) -> String {
        format!("message {}@{}", self.partition, self.offset)
    }

    /// Why the message does not carry `event` in the partition of its stream.
    fn differs_from(&self, event: &EventRecord, partitions: u32) -> Option<String> {
        let expected_partition = partition_for(&event.stream_id, partitions);
        let same_payload = serde_json::from_str::<Value>(&self.payload).ok()
            == serde_json::from_str::<Value>(&event.payload).ok();
        let field = if self.key.as_deref() != Some(event.stream_id.as_str()) {
            format!("key {:?}, the stream is {}", self.key, event.stream_id)
        } else if self.stream_version != event.stream_version {
            format!("stream version {}, stored {}", self.stream_version, event.stream_version)
        } else if self.event_id != event.event_id {
            format!("event id {}, stored {}", self.event_id, event.event_id)
        } else if self.event_type != event.event_type {
            format!("type {}, stored {}", self.event_type, event.event_type)
        } else if self.schema_version != event.schema_version {
            format!("schema version {}, stored {}", self.schema_version, event.schema_version)
        } else if !same_payload {
            format!("payload {}, stored {}", self.payload, event.payload)
        } else if self.partition != expected_partition {
            format!("{} belongs in partition {expected_partition}", event.stream_id)
        } else {
            return None;
        };
        Some(format!("{} (position {}): {field}", self.place(), self.position))
    }
}

/// What a read of the topic found.
#[derive(Debug, Clone, Default)]
pub struct TopicRead {
    /// Messages that are Parallax events, by partition and offset.
    pub messages: Vec<TopicMessage>,
    /// Offsets below the end that delivered nothing (not Parallax events),
    /// one line each.
    pub unreadable: Vec<String>,
}

/// Reads every partition of the topic from offset 0 to the end offsets it
/// has when the read begins, as consumer group `group` (which commits
/// nothing: use a fresh one).
///
/// # Errors
/// When the topic does not exist, or cannot be read to its end within two
/// minutes.
pub async fn read_topic(config: &KafkaConfig, group: &str) -> anyhow::Result<TopicRead> {
    let topic = &config.topic;
    let ends: BTreeMap<Partition, u64> = parallax_kafka::end_offsets(config)
        .await
        .with_context(|| format!("read the end offsets of topic {topic}"))?
        .into_iter()
        .collect();
    anyhow::ensure!(!ends.is_empty(), "topic {topic} does not exist");
    let mut source = KafkaSource::new(config, group).with_context(|| format!("consume topic {topic}"))?;
    // Per partition: where to read on from, and the offsets delivered below the end.
    let mut next: BTreeMap<Partition, u64> = ends.keys().map(|&partition| (partition, 0)).collect();
    let mut delivered: BTreeMap<Partition, BTreeSet<u64>> = BTreeMap::new();
    let mut sought: BTreeSet<Partition> = BTreeSet::new();
    let mut messages = Vec::new();
    let began = Instant::now();
    let mut quiet_since = Instant::now();
    let result = loop {
        if ends.iter().all(|(partition, end)| next[partition] >= *end) {
            break Ok(());
        }
        if sought.len() == ends.len() && quiet_since.elapsed() >= TOPIC_IDLE {
            // What is left below the end offsets is not Parallax events.
            break Ok(());
        }
        if began.elapsed() >= TOPIC_TIMEOUT {
            let behind: Vec<String> = ends
                .iter()
                .filter(|(partition, end)| next[partition] < **end)
                .map(|(partition, end)| format!("partition {partition} at {} of {end}", next[partition]))
                .collect();
            break Err(anyhow::anyhow!(
                "could not read topic {topic} to its end within {TOPIC_TIMEOUT:?}: {}",
                behind.join(", ")
            ));
        }
        let batch = match source.next_batch(PAGE, Duration::from_millis(200)).await {
            Ok(batch) => batch,
            Err(error) => break Err(anyhow::Error::new(error).context(format!("read topic {topic}"))),
        };
        for partition in &batch.revoked {
            sought.remove(partition);
        }
        let mut failed = None;
        for &partition in &batch.assigned {
            let offset = next.get(&partition).copied().unwrap_or(0);
            if let Err(error) = source.seek(partition, Checkpoint { position: 0, offset }).await {
                failed =
                    Some(anyhow::Error::new(error).context(format!("seek partition {partition} of {topic}")));
                break;
            }
            sought.insert(partition);
        }
        if let Some(error) = failed {
            break Err(error);
        }
        if !batch.events.is_empty() || !batch.assigned.is_empty() {
            quiet_since = Instant::now();
        }
        for sourced in batch.events {
            let partition = sourced.partition;
            let Some(&end) = ends.get(&partition) else { continue };
            let slot = next.entry(partition).or_default();
            *slot = (*slot).max(sourced.offset + 1);
            if sourced.offset < end && delivered.entry(partition).or_default().insert(sourced.offset) {
                messages.push(TopicMessage::delivered(sourced));
            }
        }
    };
    source.close().await;
    result?;
    let mut unreadable = Vec::new();
    for (partition, end) in &ends {
        let seen = delivered.get(partition);
        let skipped = (0..*end).filter(|offset| !seen.is_some_and(|seen| seen.contains(offset)));
        for offset in skipped {
            unreadable.push(format!("message {partition}@{offset} is not a Parallax event"));
        }
    }
    messages.sort_by_key(|message| (message.partition, message.offset));
    Ok(TopicRead { messages, unreadable })
}

/// The topic against the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicFindings {
    /// Distinct events of the store carried.
    pub distinct: usize,
    /// Messages repeating an event already carried (allowed).
    pub duplicates: usize,
    /// Events of the store up to the head carried by no message, one line each.
    pub missing: Vec<String>,
    /// First occurrences after a higher position of their partition.
    pub order_violations: Vec<String>,
    /// Messages that carry no event of the store.
    pub unknown: Vec<String>,
}

/// Compares `messages` (in any order) with the store's `events` (in position
/// order): every event up to `head` must be carried; every message must carry
/// an event of `events` unchanged, in its stream's partition among
/// `partitions`; in each partition, first occurrences come in position order.
pub fn compare_topic(
    events: &[EventRecord],
    head: Position,
    messages: &[TopicMessage],
    partitions: u32,
) -> TopicFindings {
    let by_position: HashMap<Position, &EventRecord> =
        events.iter().map(|event| (event.position, event)).collect();
    let mut ordered: Vec<&TopicMessage> = messages.iter().collect();
    ordered.sort_by_key(|message| (message.partition, message.offset));
    let mut findings = TopicFindings::default();
    let mut carried: HashSet<Position> = HashSet::new();
    let mut highest: HashMap<Partition, (Position, u64)> = HashMap::new();
    for message in ordered {
        let Some(event) = by_position.get(&message.position) else {
            findings.unknown.push(format!(
                "{} carries position {}, which the event store does not have",
                message.place(),
                message.position
            ));
            continue;
        };
        if let Some(difference) = message.differs_from(event, partitions) {
            findings.unknown.push(difference);
            continue;
        }
        if !carried.insert(message.position) {
            findings.duplicates += 1;
            continue;
        }
        match highest.get(&message.partition) {
            Some(&(above, at)) if above > message.position => {
                findings.order_violations.push(format!(
                    "{} ({}@{}, position {}) comes after position {above} at offset {at}",
                    message.place(),
                    event.stream_id,
                    event.stream_version,
                    message.position
                ));
            }
            _ => {
                highest.insert(message.partition, (message.position, message.offset));
            }
        }
    }
    findings.distinct = carried.len();
    for event in events.iter().take_while(|event| event.position <= head) {
        if !carried.contains(&event.position) {
            findings.missing.push(format!(
                "position {} ({}@{}, {}) is on no partition",
                event.position, event.stream_id, event.stream_version, event.event_type
            ));
        }
    }
    findings
}

// ---- 5. the history ----

/// One client operation: its invocation and its completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The driver's id of it.
    pub id: u64,
    /// What it did (`add_item`, ...).
    pub f: String,
    /// The stream it addressed (`cart-…`).
    pub stream: String,
    /// Its idempotency key.
    pub key: Option<String>,
    /// The product (`add_item`).
    pub sku: Option<String>,
    /// Units (`add_item`).
    pub quantity: i64,
    /// When it was sent, in microseconds of the driver's clock.
    pub invoked_at: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged at `at`; `position` is the last position of its events.
    Ok {
        /// When.
        at: u64,
        /// From the answer's consistency token.
        position: Option<Position>,
    },
    /// Definitely refused: nothing may be stored.
    Fail {
        /// The HTTP status.
        status: Option<u16>,
        /// Why.
        error: Option<String>,
    },
    /// Unknown: it may or may not have been applied.
    Info {
        /// Why, if it ended at all.
        error: Option<String>,
    },
}

/// One line of a history.
#[derive(Debug, Deserialize)]
struct Line {
    id: u64,
    #[serde(rename = "type")]
    kind: String,
    f: Option<String>,
    stream: Option<String>,
    key: Option<String>,
    sku: Option<String>,
    quantity: Option<i64>,
    at_us: Option<u64>,
    position: Option<Position>,
    status: Option<u16>,
    error: Option<String>,
}

/// Parses a history: JSON lines, one object each, blank lines ignored.
///
/// ```text
/// {"id":17,"worker":3,"type":"invoke","f":"add_item","stream":"cart-f1-2","key":"f1-17","sku":"F-1","quantity":1,"at_us":123456}
/// {"id":17,"type":"ok","at_us":125000,"position":4711}
/// {"id":18,"type":"fail","at_us":125100,"status":409,"error":"..."}
/// {"id":19,"type":"info","at_us":130000,"error":"timeout"}
/// ```
///
/// Each `id` has one `invoke` and at most one completion (`ok`, `fail` or
/// `info`); fields missing from one are taken from the other. An invoke
/// without completion is `info`.
///
/// # Errors
/// A line that is not such an object, an unknown `type`, a second invoke or
/// completion of an id, an operation without `stream`.
pub fn parse_history(text: &str) -> anyhow::Result<Vec<Operation>> {
    let mut lines: BTreeMap<u64, (Option<Line>, Option<Line>)> = BTreeMap::new();
    for (number, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let number = number + 1;
        let line: Line = serde_json::from_str(text).with_context(|| format!("line {number}"))?;
        let slots = lines.entry(line.id).or_default();
        let slot = match line.kind.as_str() {
            "invoke" => &mut slots.0,
            "ok" | "fail" | "info" => &mut slots.1,
            other => anyhow::bail!("line {number}: unknown type {other:?}"),
        };
        anyhow::ensure!(slot.is_none(), "line {number}: a second {} of operation {}", line.kind, line.id);
        *slot = Some(line);
    }
    lines
        .into_iter()
        .map(|(id, (invoke, completion))| {
            let field = |get: fn(&Line) -> Option<String>| {
                invoke.as_ref().and_then(get).or_else(|| completion.as_ref().and_then(get))
            };
            let stream =
                field(|l| l.stream.clone()).with_context(|| format!("operation {id} has no stream"))?;
            let outcome = match &completion {
                Some(done) if done.kind == "ok" => Outcome::Ok {
                    at: done.at_us.with_context(|| format!("operation {id}: ok without at_us"))?,
                    position: done.position,
                },
                Some(done) if done.kind == "fail" => {
                    Outcome::Fail { status: done.status, error: done.error.clone() }
                }
                Some(done) => Outcome::Info { error: done.error.clone() },
                None => Outcome::Info { error: None },
            };
            Ok(Operation {
                id,
                f: field(|l| l.f.clone()).unwrap_or_default(),
                stream,
                key: field(|l| l.key.clone()),
                sku: field(|l| l.sku.clone()),
                quantity: invoke
                    .as_ref()
                    .and_then(|l| l.quantity)
                    .or_else(|| completion.as_ref().and_then(|l| l.quantity))
                    .unwrap_or(0),
                invoked_at: invoke.as_ref().and_then(|l| l.at_us),
                outcome,
            })
        })
        .collect()
}

/// A present operation: its key is in the store, at `position`.
struct Present<'a> {
    op: &'a Operation,
    position: Position,
}

async fn check_history(
    history: &[Operation],
    store: &dyn EventStore,
    events: &[EventRecord],
    queries: &ShopQueries,
    report: &mut CheckReport,
    details: &mut Details,
) -> anyhow::Result<()> {
    let by_position: HashMap<Position, &EventRecord> =
        events.iter().map(|event| (event.position, event)).collect();
    // Each key's last position in the store, if it is there.
    let unique: BTreeSet<&str> = history.iter().filter_map(|op| op.key.as_deref()).collect();
    let keys: HashMap<&str, Option<Position>> = futures::stream::iter(unique)
        .map(|key| async move {
            let stored =
                store.idempotency(key).await.with_context(|| format!("look up idempotency key {key}"))?;
            anyhow::Ok((key, stored.map(|stored| stored.last_position)))
        })
        .buffer_unordered(KEY_LOOKUPS)
        .try_collect()
        .await?;
    let stored_at = |op: &Operation| op.key.as_deref().and_then(|key| keys.get(key).copied().flatten());
    let describe = |op: &Operation| {
        format!("operation {} ({} on {}, key {})", op.id, op.f, op.stream, op.key.as_deref().unwrap_or("-"))
    };

    let mut present: BTreeMap<&str, Vec<Present<'_>>> = BTreeMap::new();
    for op in history {
        match &op.outcome {
            Outcome::Ok { .. } => report.operations.ok += 1,
            Outcome::Fail { .. } => report.operations.fail += 1,
            Outcome::Info { .. } => report.operations.info += 1,
        }
        let Some(key) = op.key.as_deref() else { continue };
        let stored = stored_at(op);
        match (&op.outcome, stored) {
            (Outcome::Ok { position, .. }, None) => {
                report.lost_acknowledged += 1;
                let at = position.map_or_else(|| "?".to_owned(), |p| p.to_string());
                details.violation(
                    "lost",
                    format!(
                        "{} was acknowledged at position {at}, but its key is not in the event store",
                        describe(op)
                    ),
                );
            }
            (Outcome::Ok { position, .. }, Some(stored)) => {
                let acknowledged = position.unwrap_or(stored);
                let holds = by_position.get(&acknowledged).is_some_and(|event| event.stream_id == op.stream);
                if !holds {
                    report.lost_acknowledged += 1;
                    details.violation(
                        "lost",
                        format!(
                            "{} was acknowledged at position {acknowledged}, which holds no event of {}",
                            describe(op),
                            op.stream
                        ),
                    );
                } else if acknowledged != stored {
                    report.lost_acknowledged += 1;
                    details.violation(
                        "lost",
                        format!(
                            "{} was acknowledged at position {acknowledged}, its key {key} records {stored}",
                            describe(op)
                        ),
                    );
                }
            }
            (Outcome::Fail { status, error }, Some(stored)) => {
                report.refused_present += 1;
                details.violation(
                    "refused but present",
                    format!(
                        "{} was refused ({}: {}), yet its key is in the store at position {stored}",
                        describe(op),
                        status.map_or_else(|| "?".to_owned(), |s| s.to_string()),
                        error.as_deref().unwrap_or("-")
                    ),
                );
            }
            _ => {}
        }
        if let Some(position) = stored {
            present.entry(op.stream.as_str()).or_default().push(Present { op, position });
        }
    }

    // Linearizability: an acknowledged append is ordered before every append
    // of its stream that began after it was acknowledged.
    for (stream, ops) in &present {
        let mut acknowledged: Vec<(u64, &Present<'_>)> = ops
            .iter()
            .filter_map(|present| match present.op.outcome {
                Outcome::Ok { at, .. } => Some((at, present)),
                _ => None,
            })
            .collect();
        acknowledged.sort_by_key(|(at, _)| *at);
        let mut started: Vec<(u64, &Present<'_>)> =
            ops.iter().filter_map(|present| Some((present.op.invoked_at?, present))).collect();
        started.sort_by_key(|(at, _)| *at);
        let mut next = 0;
        let mut highest: Option<(u64, &Present<'_>)> = None;
        for (invoked, b) in started {
            while next < acknowledged.len() && acknowledged[next].0 < invoked {
                let candidate = acknowledged[next];
                if highest.is_none_or(|(_, h)| candidate.1.position > h.position) {
                    highest = Some(candidate);
                }
                next += 1;
            }
            if let Some((acked, a)) = highest {
                if a.position > b.position {
                    report.linearizability_violations += 1;
                    details.violation(
                        "linearizability",
                        format!(
                            "{stream}: operation {} (invoked at {invoked} µs) is at position {}, below \
                             operation {} acknowledged at {acked} µs at position {}",
                            b.op.id, b.position, a.op.id, a.position
                        ),
                    );
                }
            }
        }
    }

    // Carts only added to: the view holds what the present operations added.
    let mut by_stream: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_stream.entry(op.stream.as_str()).or_default().push(op);
    }
    for (stream, ops) in by_stream {
        let Some(cart) = cart_id(stream) else { continue };
        if !ops.iter().all(|op| op.f == "add_item") {
            continue;
        }
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        for op in ops {
            if stored_at(op).is_some() {
                if let Some(sku) = &op.sku {
                    *expected.entry(sku.clone()).or_default() += op.quantity;
                }
            }
        }
        let view = queries.cart(cart).await.with_context(|| format!("query cart {cart}"))?;
        let mut actual: BTreeMap<String, i64> = BTreeMap::new();
        for item in view.iter().flat_map(|view| &view.items) {
            *actual.entry(item.sku.clone()).or_default() += i64::from(item.quantity);
        }
        let skus: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
        for sku in skus {
            let (wanted, shown) =
                (expected.get(sku).copied().unwrap_or(0), actual.get(sku).copied().unwrap_or(0));
            if shown > wanted {
                report.applied_twice += 1;
                details.violation(
                    "applied twice",
                    format!("cart {cart} shows {shown} × {sku}; the operations in the store added {wanted}"),
                );
            } else if shown < wanted {
                report.lost_in_views += 1;
                details.violation(
                    "lost in the views",
                    format!("cart {cart} shows {shown} × {sku}; the operations in the store added {wanted}"),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use parallax_core::Metadata;
    use serde_json::json;

    use super::*;

    fn event(position: Position, stream: &str, version: u64) -> EventRecord {
        EventRecord {
            position,
            stream_id: stream.to_owned(),
            stream_version: version,
            event_id: Uuid::new_v4(),
            event_type: "cart.item_added".to_owned(),
            schema_version: 2,
            payload: format!(r#"{{"n":{position}}}"#),
            metadata: Metadata::default(),
            recorded_at: Utc::now(),
        }
    }

    fn message(event: &EventRecord, offset: u64) -> TopicMessage {
        TopicMessage {
            partition: partition_for(&event.stream_id, 4),
            offset,
            key: Some(event.stream_id.clone()),
            position: event.position,
            stream_version: event.stream_version,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
        }
    }

    #[test]
    fn the_event_store_check_names_gaps_repeats_and_duplicate_ids() {
        let mut events = vec![event(1, "cart-a", 1), event(2, "cart-a", 2), event(3, "cart-b", 1)];
        let mut report = CheckReport::default();
        check_event_store(&events, &mut report, &mut Details::default());
        assert_eq!((report.events, report.streams, report.order_violations), (3, 2, 0));

        events.push(event(4, "cart-a", 4)); // a gap
        events.push(event(5, "cart-b", 1)); // a repeat
        let mut again = event(6, "cart-c", 1);
        again.event_id = events[0].event_id;
        events.push(again);
        let mut report = CheckReport::default();
        check_event_store(&events, &mut report, &mut Details::default());
        assert_eq!((report.order_violations, report.duplicate_event_ids), (2, 1));
    }

    #[test]
    fn the_topic_check_allows_duplicates_and_names_the_rest() {
        let events = vec![event(1, "cart-a", 1), event(2, "cart-a", 2), event(3, "cart-a", 3)];
        let clean: Vec<TopicMessage> = events.iter().zip(0..).map(|(e, offset)| message(e, offset)).collect();
        let findings = compare_topic(&events, 3, &clean, 4);
        assert_eq!(findings, TopicFindings { distinct: 3, ..TopicFindings::default() });

        let mut repeated = clean.clone();
        repeated.push(message(&events[1], 3));
        repeated.push(message(&events[2], 4));
        assert_eq!(compare_topic(&events, 3, &repeated, 4).duplicates, 2);

        // Version 2 after version 3, and version 1 missing.
        let swapped = vec![message(&events[2], 0), message(&events[1], 1)];
        let findings = compare_topic(&events, 3, &swapped, 4);
        assert_eq!(findings.order_violations.len(), 1, "{findings:?}");
        assert_eq!(findings.missing.len(), 1, "{findings:?}");

        let mut foreign = clean.clone();
        foreign.push(TopicMessage { position: 9, offset: 3, ..clean[0].clone() });
        foreign.push(TopicMessage { payload: "{}".into(), offset: 4, ..clean[1].clone() });
        foreign.push(TopicMessage { partition: clean[2].partition + 1, ..clean[2].clone() });
        assert_eq!(compare_topic(&events, 3, &foreign, 4).unknown.len(), 3);
    }

    #[test]
    fn a_history_pairs_invokes_with_completions() {
        let text = r#"
{"id":1,"worker":0,"type":"invoke","f":"add_item","stream":"cart-x","key":"k1","sku":"A","quantity":2,"at_us":10}
{"id":2,"worker":1,"type":"invoke","f":"add_item","stream":"cart-x","key":"k2","sku":"A","quantity":1,"at_us":11}
{"id":1,"worker":0,"type":"ok","f":"add_item","stream":"cart-x","key":"k1","at_us":20,"position":7}
{"id":3,"worker":1,"type":"invoke","f":"add_item","stream":"cart-x","key":"k3","sku":"B","quantity":1,"at_us":30}
{"id":3,"worker":1,"type":"fail","at_us":31,"status":409,"error":"conflict"}
"#;
        let ops = parse_history(text).expect("a valid history");
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].outcome, Outcome::Ok { at: 20, position: Some(7) });
        assert_eq!((ops[0].quantity, ops[0].invoked_at), (2, Some(10)));
        assert_eq!(ops[1].outcome, Outcome::Info { error: None });
        assert_eq!(ops[2].outcome, Outcome::Fail { status: Some(409), error: Some("conflict".into()) });
        assert_eq!(ops[2].key.as_deref(), Some("k3"));

        let twice = "{\"id\":1,\"type\":\"ok\",\"stream\":\"s\",\"at_us\":1}\n{\"id\":1,\"type\":\"info\"}";
        assert!(parse_history(twice).is_err());
        assert!(parse_history("{\"id\":1,\"type\":\"maybe\",\"stream\":\"s\"}").is_err());
        assert!(parse_history("not json").is_err());
    }

    #[test]
    fn differences_name_documents_and_fields() {
        let key = |partition: &str| ("cart".to_owned(), partition.to_owned(), String::new());
        let fold = Documents::from([
            (key("a"), json!({"items": [{"sku": "A", "quantity": 2}], "status": "open"})),
            (key("b"), json!({"status": "open"})),
        ]);
        let read = Documents::from([
            (key("a"), json!({"items": [{"sku": "A", "quantity": 4}], "status": "open"})),
            (key("c"), json!({"status": "open"})),
        ]);
        assert_eq!(
            differences(&fold, &read),
            [
                "differs cart/a: items[0].quantity: 2 → 4 (fold → read DB)",
                r#"missing cart/b: the fold has {"status":"open"}"#,
                r#"extra cart/c: {"status":"open"}"#,
            ]
        );
    }

    #[test]
    fn details_keep_a_few_of_each_kind() {
        let mut details = Details::default();
        for n in 0..30 {
            details.violation("lost", format!("{n}"));
        }
        details.violation("order", "x".into());
        details.note("a note".into());
        let (lines, omitted) = details.finish();
        assert_eq!(lines.len(), MAX_DETAILS_OF_A_KIND + 2);
        assert_eq!(omitted, 20);
        assert_eq!(lines.last().map(String::as_str), Some("a note"));
    }
}
