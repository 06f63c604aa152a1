//! `commands-embedded`: in-process commands through `ShopCommands` over the
//! SQLite event store, durable ack (`synchronous=FULL`, the default).
//!
//! Products are registered first. The load is the cart plan of
//! [`crate::workload`]: each cart slot gets `--items-per-cart` add-items,
//! then a checkout, then the slot starts a new cart — by default four
//! add-items and one checkout of every five commands, mixed in one stream of
//! requests (not a separate phase). Only the command side runs: no
//! projectors, no saga (their cost is measured by `projection-rebuild` and
//! `freshness`). Each command appends one event.
//!
//! Baseline, same run: the physical limit of the write path. The event rows
//! the best step appended are read back and inserted again, with the same
//! statement, into a fresh file with the same schema and pragmas (WAL,
//! `synchronous=FULL`), one transaction per batch of the size the group
//! commit achieved in that step, by one thread — what the writer thread
//! would do if a command cost nothing but its row. `ours / limit` is the
//! fraction of that limit the command path reaches; a batch's commit time is
//! a lower bound on a command's latency at that batch size.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parallax_core::EventStore;
use parallax_sqlite::{SqliteEventStore, SqliteKeyStore};
use rusqlite::{params, Connection};
use serde::Serialize;
use serde_json::json;
use shop::commands::ShopCommands;

use super::{ratio, Context};
use crate::load::{self, Load, LoadArgs, LoadDefaults, Search, Sequence, Target};
use crate::machine::thread_cpu_secs;
use crate::report::{ms, rate, Report, Table};
use crate::stats::{Latencies, Percentiles, Stats};
use crate::workload::{self, CartArgs, CartPlan, InProcess, Then};

const NAME: &str = "commands-embedded";

/// The event store's writer thread, as the kernel names it (15 characters).
const WRITER_THREAD: &str = "parallax-sqlite";

/// The writer, as the steps table names it.
const WRITER: &str = "writer";

/// The event store's schema, so the baseline's file is the same.
const EVENT_STORE_SCHEMA: &str = include_str!("../../../crates/parallax-sqlite/src/sql/event_store.sql");

/// Options of `commands-embedded`.
///
/// Defaults: concurrency steps 16 to 2048, p99 limit 100 ms, at least 256
/// workers at the fixed rate.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub cart: CartArgs,
    /// What a cart slot does after its cart's last item: check it out (the
    /// checkout also sets the saga to work, where it runs), or start a new cart.
    #[arg(long, value_enum, default_value_t = Then::Checkout)]
    pub then: Then,
    /// Customers the checkouts are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub customers: u64,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
}

const DEFAULTS: LoadDefaults =
    LoadDefaults { min_concurrency: 16, max_concurrency: 2048, fixed_concurrency: 256, p99_limit_ms: 100.0 };

/// What the group commit did during one step.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Grouping {
    /// Positions appended: `(first, last]`.
    pub positions: (u64, u64),
    /// Write transactions committed.
    pub transactions: u64,
    /// CPU seconds of the writer: the event store's writer thread (SQLite),
    /// or the database server's processes (PostgreSQL).
    pub writer_cpu_secs: f64,
    /// Wall seconds of the step.
    pub wall_secs: f64,
}

impl Grouping {
    /// Events appended.
    pub fn events(&self) -> u64 {
        self.positions.1 - self.positions.0
    }

    /// Events per transaction.
    pub fn per_transaction(&self) -> f64 {
        ratio(self.events() as f64, self.transactions as f64)
    }

    /// The writer's time on a CPU, as a fraction of the step (of one core).
    pub fn writer_cpu(&self) -> f64 {
        ratio(self.writer_cpu_secs, self.wall_secs)
    }

    /// The writer thread's time waiting for fsync, estimated as one fsync of
    /// the machine's measured mean per transaction, as a fraction of the step.
    pub fn writer_fsync(&self, fsync_mean_ms: f64) -> f64 {
        ratio(self.transactions as f64 * fsync_mean_ms / 1000.0, self.wall_secs)
    }
}

/// Where an event store's writer is at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    /// The log's head.
    pub head: u64,
    /// Write transactions committed so far, where the store counts them (else 0).
    pub transactions: u64,
    /// CPU seconds the writer used so far.
    pub writer_cpu_secs: f64,
}

/// An event store with group commit, as the command scenarios watch it
/// around each step: how many events it appended in how many transactions,
/// and the CPU its writer used.
pub trait GroupCommit: Sync {
    /// Where the writer is now.
    fn mark(&self) -> impl Future<Output = anyhow::Result<Mark>> + Send;

    /// How many write transactions committed between two marks.
    fn transactions(&self, from: &Mark, to: &Mark) -> impl Future<Output = anyhow::Result<u64>> + Send;
}

impl GroupCommit for SqliteEventStore {
    async fn mark(&self) -> anyhow::Result<Mark> {
        Ok(Mark {
            head: self.head().await?,
            transactions: self.writer_stats().transactions,
            writer_cpu_secs: thread_cpu_secs(WRITER_THREAD),
        })
    }

    async fn transactions(&self, from: &Mark, to: &Mark) -> anyhow::Result<u64> {
        Ok(to.transactions - from.transactions)
    }
}

/// Measures what the writer does while `step` runs.
pub async fn grouped<T>(
    store: &impl GroupCommit,
    step: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Grouping)> {
    let (before, began) = (store.mark().await?, Instant::now());
    let out = step.await?;
    let after = store.mark().await?;
    let wall_secs = began.elapsed().as_secs_f64();
    Ok((
        out,
        Grouping {
            positions: (before.head, after.head),
            transactions: store.transactions(&before, &after).await?,
            writer_cpu_secs: after.writer_cpu_secs - before.writer_cpu_secs,
            wall_secs,
        },
    ))
}

/// What a command scenario measured of its own path: the search, with what
/// the group commit did at each step, and the fixed-rate run.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// The search for the maximum, if made.
    pub search: Option<Search>,
    /// What the group commit did at each step of the search.
    pub groupings: Vec<Grouping>,
    /// The fixed-rate run, if made, and what the group commit did meanwhile.
    pub fixed: Option<(Stats, Grouping)>,
}

impl Measured {
    /// The best step of the search, and what the group commit did in it.
    pub fn best(&self) -> Option<(&Stats, &Grouping)> {
        let best = self.search.as_ref()?.best?;
        Some((&self.search.as_ref()?.steps[best], &self.groupings[best]))
    }

    /// The step the baselines are measured against: the best step of the
    /// search, else the fixed-rate run.
    pub fn reference(&self) -> anyhow::Result<(Stats, Grouping)> {
        match (self.best(), &self.fixed) {
            (Some((stats, grouping)), _) => Ok((stats.clone(), *grouping)),
            (None, Some((stats, grouping))) => Ok((stats.clone(), *grouping)),
            (None, None) => anyhow::bail!("no step qualified: nothing to compare (see the steps above)"),
        }
    }
}

/// Searches for the maximum of `target` (if `load` says so), then runs it at
/// the fixed rate (if `load` says so: `--rate`, else half the maximum),
/// watching `store`'s group commit at every step.
pub async fn measure<T: Target>(
    target: &T,
    store: &impl GroupCommit,
    load: &Load,
    sequence: &Sequence,
) -> anyhow::Result<Measured> {
    let mut search = None;
    let mut groupings = Vec::new();
    if load.mode.finds_max() {
        let mut found = Search::new(load.p99_limit);
        for &concurrency in &load.levels {
            let (stats, grouping) =
                grouped(store, load::closed_step("commands", target, concurrency, load.step, sequence))
                    .await?;
            groupings.push(grouping);
            if !found.push(stats) {
                break;
            }
        }
        search = Some(found);
    }
    let mut fixed = None;
    if load.mode.runs_fixed() {
        let rate = load.fixed_rate(search.as_ref(), 0.5)?;
        let concurrency = load.fixed_concurrency(search.as_ref());
        fixed = Some(
            grouped(store, load::fixed_rate("commands", target, rate, concurrency, load.duration, sequence))
                .await?,
        );
    }
    Ok(Measured { search, groupings, fixed })
}

/// Runs the scenario.
pub async fn run(args: Args, context: &Context) -> anyhow::Result<Report> {
    let load = args.load.resolve(DEFAULTS);
    let path = context.data_dir.join("events.db");
    let store = SqliteEventStore::open(&path)?;
    let keys = Arc::new(SqliteKeyStore::open(&path)?);
    let commands = Arc::new(ShopCommands::new(Arc::new(store.clone()), keys));
    workload::register_products(&commands, args.cart.products).await?;
    let plan = args.cart.plan(args.then, args.customers);
    let target = InProcess { commands, plan };
    let sequence = Sequence::default();
    let warm = load::warm_up(&target, args.cart.carts, 64, &sequence).await?;
    let measured = measure(&target, &store, &load, &sequence).await?;

    // The baseline: the best step's rows again, plain, in batches of the size it achieved.
    let reference = measured.reference()?;
    let batch = reference.1.per_transaction().round().max(1.0) as usize;
    let rows = read_rows(&path, reference.1.positions)?;
    let sizes = payload_sizes(&path)?;
    drop(target);
    drop(store);
    let (limit_path, largest_path) =
        (context.data_dir.join("limit.db"), context.data_dir.join("limit-512.db"));
    let (limit, largest) = tokio::task::spawn_blocking(move || {
        anyhow::Ok((
            insert_limit(&limit_path, &rows, batch, true)?,
            insert_limit(&largest_path, &rows, 512, true)?,
        ))
    })
    .await??;
    let baseline = Baseline { reference, batch, limit, largest, sizes };
    let run = Run { args: &args, load: &load, warm, plan, measured: &measured, baseline: &baseline };
    Ok(report(context, &run))
}

/// The baseline's figures.
struct Baseline {
    /// The step the baseline is measured against, and what the group commit did in it.
    reference: (Stats, Grouping),
    /// Rows per transaction: the events per transaction the group commit achieved.
    batch: usize,
    limit: Limit,
    /// The same rows in batches of 512 (the store's largest group).
    largest: Limit,
    sizes: Sizes,
}

/// What a run measured, and how.
struct Run<'a> {
    args: &'a Args,
    load: &'a Load,
    /// How long the warm-up took.
    warm: Duration,
    plan: CartPlan,
    measured: &'a Measured,
    baseline: &'a Baseline,
}

/// The report of `run`.
fn report(context: &Context, run: &Run<'_>) -> Report {
    let Run { args, load, warm, plan, measured, baseline } = *run;
    let Measured { search, groupings, fixed } = measured;
    let Baseline { reference, batch, limit, largest, sizes } = baseline;
    let mut report =
        Report::new(NAME, "in-process commands, durable ack (synchronous=FULL)", context.machine.clone());
    report.parameter("workload", plan.describe());
    report.parameter(
        "warm-up",
        format!(
            "one add-item per cart slot ({} requests, {:.1} s, not measured)",
            args.cart.carts,
            warm.as_secs_f64()
        ),
    );
    report.parameter("event store", "SQLite WAL, synchronous=FULL, group commit up to 512 requests");
    report.parameter("search steps", format!("{:?} × {:.1} s", load.levels, load.step.as_secs_f64()));
    report.parameter("fixed-rate run", format!("{:.1} s", load.duration.as_secs_f64()));
    report.parameter(
        "event sizes",
        format!(
            "cart.item_added payload {:.0} B, metadata {:.0} B (means over the file)",
            sizes.payload, sizes.metadata
        ),
    );
    let (best, _) = reference;
    let which = if best.offered_per_sec.is_some() { "fixed rate" } else { "max" };
    report.compare(
        &format!("commands/s ({which}, c={})", best.concurrency),
        rate(best.per_sec),
        format!("{} (rows/s, batches of {batch})", rate(limit.rows_per_sec)),
        ratio(best.per_sec, limit.rows_per_sec),
        "100,000/s",
    );
    report.compare(
        &format!("p99 ms ({which})"),
        ms(best.latency.p99_ms),
        format!("{} (one batch's commit)", ms(limit.commit.p99_ms)),
        ratio(best.latency.p99_ms, limit.commit.p99_ms),
        "",
    );
    if let Some((stats, grouping)) = fixed {
        fixed_section(&mut report, context, stats, *grouping, limit);
    }
    if let Some(search) = search {
        report.section(
            "Find the maximum (closed loop)",
            steps_table(&search.steps, groupings, WRITER, Some(context.machine.fsync_mean_ms)),
            vec![format!("The search stopped: {}.", search.stopped)],
        );
    }
    baseline_section(&mut report, baseline);
    report.notes = vec![
        "ours / baseline for a rate: the fraction of the physical limit (plain inserts of the same rows in \
         batches of the same size, durable) that the command path reaches; 1.0 would mean the command \
         path costs nothing beyond its row."
            .into(),
        "ours / baseline for a latency: how many times one batch's durable commit (a lower bound of any \
         command's latency at that batch size) the command's latency is."
            .into(),
        "Search: closed loop, concurrency doubling each step; fixed rate: open loop, latency from each \
         request's intended start (no coordinated omission). See `bench/src/lib.rs`."
            .into(),
        "Only the command side runs (no projectors, no saga). Each command appends one event.".into(),
    ];
    report.raw = json!({
        "args": args,
        "search": search,
        "groupings": groupings,
        "fixed": fixed,
        "limit": limit,
        "limit_512": largest,
        "payload_bytes": sizes.payload,
        "metadata_bytes": sizes.metadata,
    });
    report
}

/// The fixed-rate run beside one batch's commit.
fn fixed_section(report: &mut Report, context: &Context, stats: &Stats, grouping: Grouping, limit: &Limit) {
    report.compare(
        &format!("p50 / p99 / p99.9 ms at {}/s (open loop)", rate(stats.offered_per_sec.unwrap_or(0.0))),
        format!(
            "{} / {} / {}",
            ms(stats.latency.p50_ms),
            ms(stats.latency.p99_ms),
            ms(stats.latency.p999_ms)
        ),
        format!("{} (one batch's commit, p99)", ms(limit.commit.p99_ms)),
        ratio(stats.latency.p99_ms, limit.commit.p99_ms),
        "",
    );
    report.section(
        "Fixed rate (open loop)",
        steps_table(std::slice::from_ref(stats), &[grouping], WRITER, Some(context.machine.fsync_mean_ms)),
        vec![format!(
            "Achieved {} of {} offered.",
            rate(stats.per_sec),
            rate(stats.offered_per_sec.unwrap_or(0.0))
        )],
    );
}

/// The baseline: plain batched inserts of the reference step's rows.
fn baseline_section(report: &mut Report, baseline: &Baseline) {
    let Baseline { reference: (best, grouping), batch, limit, largest, .. } = baseline;
    let batch = *batch;
    let mut limit_table = Table::new(&[
        "batch (rows)",
        "batches",
        "rows",
        "rows/s",
        "commit p50 ms",
        "commit p99 ms",
        "commit p99.9 ms",
    ]);
    for (size, limit) in [(batch, limit), (512, largest)] {
        limit_table.row(vec![
            size.to_string(),
            limit.batches.to_string(),
            limit.rows.to_string(),
            rate(limit.rows_per_sec),
            ms(limit.commit.p50_ms),
            ms(limit.commit.p99_ms),
            ms(limit.commit.p999_ms),
        ]);
    }
    report.section(
        "Baseline: plain batched INSERTs (same rows, same schema and pragmas)",
        limit_table,
        vec![format!(
            "The {} event rows of the reference step ({}), inserted again into a fresh file with the event \
             store's schema, WAL and synchronous=FULL, {batch} rows per transaction (the {:.1} events per \
             transaction the group commit achieved), one thread, the store's own INSERT statement. The \
             second row: the same rows in batches of 512 (the store's largest group), for scale.",
            limit.rows,
            if best.offered_per_sec.is_some() { "the fixed-rate run" } else { "the best step of the search" },
            grouping.per_transaction()
        )],
    );
}

/// The steps, with what the group commit did: events per transaction, the
/// `writer`'s time on a CPU, and (given the machine's mean fsync) its
/// estimated time in fsync.
pub fn steps_table(
    steps: &[Stats],
    groupings: &[Grouping],
    writer: &str,
    fsync_mean_ms: Option<f64>,
) -> Table {
    let mut table = Table::of_steps(steps);
    table.columns.extend(["events/txn".into(), format!("{writer} on CPU")]);
    if fsync_mean_ms.is_some() {
        table.columns.push(format!("{writer} in fsync (est.)"));
    }
    for (row, grouping) in table.rows.iter_mut().zip(groupings) {
        row.push(format!("{:.1}", grouping.per_transaction()));
        row.push(format!("{:.0} %", 100.0 * grouping.writer_cpu()));
        if let Some(fsync_mean_ms) = fsync_mean_ms {
            row.push(format!("{:.0} %", 100.0 * grouping.writer_fsync(fsync_mean_ms)));
        }
    }
    table
}

/// One event row as stored.
pub struct EventRow {
    stream_id: String,
    stream_version: i64,
    event_id: String,
    event_type: String,
    schema_version: i64,
    payload: String,
    metadata: String,
    recorded_at: i64,
}

/// The rows at positions `(after, upto]`.
pub fn read_rows(path: &Path, (after, upto): (u64, u64)) -> anyhow::Result<Vec<EventRow>> {
    let conn = Connection::open(path)?;
    let mut statement = conn.prepare(
        "SELECT stream_id, stream_version, event_id, event_type, schema_version, payload, metadata, \
         recorded_at FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position",
    )?;
    let rows = statement.query_map(params![after as i64, upto as i64], |row| {
        Ok(EventRow {
            stream_id: row.get(0)?,
            stream_version: row.get(1)?,
            event_id: row.get(2)?,
            event_type: row.get(3)?,
            schema_version: row.get(4)?,
            payload: row.get(5)?,
            metadata: row.get(6)?,
            recorded_at: row.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Mean sizes of the stored `cart.item_added` events.
struct Sizes {
    payload: f64,
    metadata: f64,
}

fn payload_sizes(path: &Path) -> anyhow::Result<Sizes> {
    let conn = Connection::open(path)?;
    let (payload, metadata) = conn.query_row(
        "SELECT COALESCE(AVG(LENGTH(payload)), 0), COALESCE(AVG(LENGTH(metadata)), 0) FROM events \
         WHERE event_type = 'cart.item_added'",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    Ok(Sizes { payload, metadata })
}

/// What the plain inserts did.
#[derive(Debug, Clone, Serialize)]
pub struct Limit {
    /// Rows inserted.
    pub rows: u64,
    /// Transactions.
    pub batches: u64,
    /// Rows per second.
    pub rows_per_sec: f64,
    /// Duration of one batch (BEGIN, inserts, COMMIT).
    pub commit: Percentiles,
}

/// Inserts `rows` into a fresh event store file at `path`, `batch` per
/// transaction, with `synchronous=FULL` (or NORMAL), by one thread.
pub fn insert_limit(path: &Path, rows: &[EventRow], batch: usize, full: bool) -> anyhow::Result<Limit> {
    let conn = Connection::open(path)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "{} cannot use WAL", path.display());
    conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
    conn.execute_batch(EVENT_STORE_SCHEMA)?;
    let mut commits = Latencies::default();
    let start = Instant::now();
    let mut batches = 0;
    for chunk in rows.chunks(batch.max(1)) {
        let began = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, payload, \
             metadata, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for row in chunk {
            insert.execute(params![
                row.stream_id,
                row.stream_version,
                row.event_id,
                row.event_type,
                row.schema_version,
                row.payload,
                row.metadata,
                row.recorded_at
            ])?;
        }
        conn.execute_batch("COMMIT")?;
        commits.record(began.elapsed());
        batches += 1;
    }
    let elapsed = start.elapsed().max(Duration::from_nanos(1));
    Ok(Limit {
        rows: rows.len() as u64,
        batches,
        rows_per_sec: rows.len() as f64 / elapsed.as_secs_f64(),
        commit: commits.summary(),
    })
}
