//! `commands-postgres`: the add-item/checkout workload of
//! `commands-embedded`, in-process through `ShopCommands` over the
//! PostgreSQL event store (`PgEventStore`), durable ack
//! (`synchronous_commit=on`: a command is acknowledged once the WAL of its
//! transaction is flushed).
//!
//! The event store group-commits: `--writers` writer tasks (default 4, the
//! store's default) each take what is queued, up to 512 requests, and append
//! it with one `parallax_append` call — one statement, so one transaction,
//! one round trip and one WAL flush. Products are registered first, one
//! add-item per cart slot warms up, and only the command side runs (no
//! relay, projectors nor saga). Each command appends one event. Events per
//! transaction are read from the rows themselves (the distinct `tx_id`s of
//! the positions a step appended); the server's CPU from `/proc` (every
//! `postgres` process on this machine).
//!
//! Baselines, same run, same server, each in a database of its own:
//! - **the physical limit**: the event rows of the reference step (the best
//!   step of the search, else the fixed-rate run) read back and inserted
//!   again, plainly — one `INSERT … SELECT … FROM unnest(…)` per batch, in
//!   autocommit, so one transaction and one WAL flush per batch — into the
//!   same `events` table (the event store's own migration), in batches of
//!   the size the group commit achieved, over as many connections as the
//!   store has writers: what the writers would do if a command cost nothing
//!   but its row. Closed loop for the maximum; at the fixed rate, batches
//!   offered at the same rate of rows, each batch's latency from its
//!   intended start (a lower bound of a command's at that rate).
//! - **the peer**: the same cart commands written with cqrs-es over
//!   postgres-es ([`crate::peer`]: its own process, its own database, the
//!   same pool size), at the same concurrency steps, then at the same fixed
//!   rate with the same workers.
//!
//! `ours / limit` is the fraction of the plain-insert rate the command path
//! reaches; `ours / peer` is above 1 where the shop is faster (for
//! latencies: below 1 where the shop's is lower).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parallax_core::EventStore;
use parallax_postgres::{PgEventStore, PgKeyStore, PgStoreOptions};
use serde::Serialize;
use serde_json::json;
use shop::commands::ShopCommands;
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use super::commands_embedded::{measure, steps_table, GroupCommit, Grouping, Mark, Measured};
use super::{ratio, Context};
use bench_load::remote;

use crate::load::{self, Load, LoadArgs, LoadDefaults, Search, Sequence, Target, Worker};
use crate::machine::process_cpu_secs;
use crate::peer::{self, PeerArgs};
use crate::report::{ms, rate, thousands, Report, Table};
use crate::servers::{self, PostgresArgs, RunId, ScratchDb};
use crate::stats::Stats;
use crate::workload::{self, CartArgs, CartPlan, InProcess, Then};

const NAME: &str = "commands-postgres";

/// The server's processes, as the kernel names them.
const SERVER: &str = "postgres";

/// The server, as the steps table names it.
const WRITER: &str = "PostgreSQL";

/// The store's largest group, for the second row of the limit.
const LARGEST_GROUP: usize = 512;

/// Most rows read back for the limit (they are cycled).
const MAX_ROWS: i64 = 1_000_000;

/// Options of `commands-postgres`.
///
/// Defaults: concurrency steps 16 to 2048, p99 limit 100 ms, at least 256
/// workers at the fixed rate.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub cart: CartArgs,
    /// What a cart slot does after its cart's last item: check it out, or
    /// start a new cart.
    #[arg(long, value_enum, default_value_t = Then::Checkout)]
    pub then: Then,
    /// Customers the checkouts are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub customers: u64,
    /// Writer tasks of the event store, each with one group in flight (and
    /// the connections of the plain-insert baseline).
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub postgres: PostgresArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub peer: PeerArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
}

const DEFAULTS: LoadDefaults =
    LoadDefaults { min_concurrency: 16, max_concurrency: 2048, fixed_concurrency: 256, p99_limit_ms: 100.0 };

impl GroupCommit for PgEventStore {
    async fn mark(&self) -> anyhow::Result<Mark> {
        Ok(Mark { head: self.head().await?, transactions: 0, writer_cpu_secs: process_cpu_secs(SERVER) })
    }

    async fn transactions(&self, from: &Mark, to: &Mark) -> anyhow::Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT tx_id) FROM events WHERE position > $1 AND position <= $2",
        )
        .bind(to_i64(from.head))
        .bind(to_i64(to.head))
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// Runs the scenario: in databases of its own, dropped afterwards.
pub async fn run(args: Args, context: &Context) -> anyhow::Result<Report> {
    let run = RunId::new();
    let load = args.load.resolve(DEFAULTS);
    let mut databases = Vec::new();
    let figures = async {
        for role in ["events", "limit", "peer"] {
            databases.push(ScratchDb::create(&args.postgres.postgres_url, &run, role).await?);
        }
        measure_all(&args, &load, &databases).await
    }
    .await;
    servers::clean_up(databases, None).await;
    Ok(report(&args, context, &load, &figures?))
}

/// What the plain inserts did.
#[derive(Debug, Clone, Serialize)]
struct Limit {
    /// Rows per INSERT.
    batch: usize,
    /// Connections.
    connections: usize,
    /// The batches: one request each.
    batches: Stats,
    /// The server's CPU meanwhile, in cores.
    server_cores: f64,
}

impl Limit {
    fn rows_per_sec(&self) -> f64 {
        self.batches.per_sec * self.batch as f64
    }
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
struct Figures {
    plan: CartPlan,
    warm_up: Duration,
    /// Ours.
    measured: Measured,
    /// The size of ours' rows.
    sizes: Sizes,
    /// The plain inserts in closed loop: at the reference step's batch size, then at the largest.
    limits: Vec<Limit>,
    /// The plain inserts at the fixed rate.
    fixed_limit: Option<Limit>,
    /// The peer, unless `--no-peer`.
    peer: Option<Peer>,
}

/// What the peer measured, and its rows' sizes.
#[derive(Debug, Clone, Serialize)]
struct Peer {
    answer: remote::Answer,
    sizes: Sizes,
}

async fn measure_all(args: &Args, load: &Load, databases: &[ScratchDb]) -> anyhow::Result<Figures> {
    let [events_db, limit_db, peer_db] = databases else { anyhow::bail!("three databases") };
    let pool_size = args.postgres.pool_size;
    let peer_binary = match args.peer.no_peer {
        true => None,
        false => Some(peer::binary(&args.peer).await?),
    };

    // Ours.
    let pool = parallax_postgres::pool(&events_db.url, pool_size).await?;
    parallax_postgres::migrate_write(&pool).await?;
    let store =
        PgEventStore::new(pool.clone(), PgStoreOptions { writers: args.writers, ..Default::default() });
    let commands =
        Arc::new(ShopCommands::new(Arc::new(store.clone()), Arc::new(PgKeyStore::new(pool.clone()))));
    workload::register_products(&commands, args.cart.products).await?;
    let plan = args.cart.plan(args.then, args.customers);
    let target = InProcess { commands, plan };
    let sequence = Sequence::default();
    let warm_up = load::warm_up(&target, args.cart.carts, 64, &sequence).await?;
    let measured = measure(&target, &store, load, &sequence).await?;
    let reference = measured.reference()?;
    let rows = Arc::new(read_rows(&pool, reference.1.positions).await?);
    let sizes = event_sizes(&pool).await?;
    drop(target);
    drop(store);
    pool.close().await;

    // The physical limit: the same rows, plainly, in batches of the sizes the group commit achieved.
    let limit_pool = parallax_postgres::pool(&limit_db.url, pool_size).await?;
    parallax_postgres::migrate_write(&limit_pool).await?;
    let span = to_i64(reference.1.events()).max(1);
    let plain = Plain { pool: &limit_pool, rows: &rows, span, connections: args.writers.max(1), load };
    let limits = plain.closed(&measured).await?;
    let fixed_limit = plain.fixed(&measured).await?;
    limit_pool.close().await;

    // The peer: same plan, steps, rate and workers.
    let mut peer = None;
    if let Some(binary) = &peer_binary {
        peer = Some(run_peer(args, load, plan, &measured, binary, &peer_db.url).await?);
    }

    Ok(Figures { plan, warm_up, measured, sizes, limits, fixed_limit, peer })
}

/// The plain inserts of the rows ours appended, each line into the emptied table.
struct Plain<'a> {
    pool: &'a PgPool,
    rows: &'a Arc<Vec<Row>>,
    /// How far a cycle through the rows shifts their positions.
    span: i64,
    /// As many as the store has writers.
    connections: usize,
    load: &'a Load,
}

impl Plain<'_> {
    fn batches(&self, batch: usize) -> PlainBatches {
        PlainBatches { pool: self.pool.clone(), rows: self.rows.clone(), batch, span: self.span }
    }

    /// In closed loop, in batches of the size the best step of the search
    /// achieved, then of the largest group.
    async fn closed(&self, measured: &Measured) -> anyhow::Result<Vec<Limit>> {
        let (connections, load) = (self.connections, self.load);
        let mut limits = Vec::new();
        if let Some((best, grouping)) = measured.best() {
            for batch in [batch_of(grouping), LARGEST_GROUP] {
                let label = format!("plain INSERTs of {batch} rows");
                truncate(self.pool).await?;
                let (server, target) = (process_cpu_secs(SERVER), self.batches(batch));
                let began = Instant::now();
                let batches =
                    load::closed_step(&label, &target, connections, load.step, &Sequence::default()).await?;
                let server_cores = ratio(process_cpu_secs(SERVER) - server, began.elapsed().as_secs_f64());
                eprintln!(
                    "  {label:<28} c={connections:<5} {:>10.0} rows/s  batch p99 {:>8.2} ms  (ours: {:.0}/s at c={})",
                    batches.per_sec * batch as f64,
                    batches.latency.p99_ms,
                    best.per_sec,
                    best.concurrency
                );
                limits.push(Limit { batch, connections, batches, server_cores });
            }
        }
        Ok(limits)
    }

    /// At the fixed-rate run's rate of rows, in batches of the size it achieved.
    async fn fixed(&self, measured: &Measured) -> anyhow::Result<Option<Limit>> {
        let (connections, load) = (self.connections, self.load);
        let Some((stats, grouping)) = &measured.fixed else { return Ok(None) };
        let batch = batch_of(grouping);
        let rows_rate = stats.offered_per_sec.unwrap_or(stats.per_sec);
        let label = format!("plain INSERTs of {batch} rows");
        truncate(self.pool).await?;
        let (server, target) = (process_cpu_secs(SERVER), self.batches(batch));
        let began = Instant::now();
        let batches = load::fixed_rate(
            &label,
            &target,
            rows_rate / batch as f64,
            connections,
            load.duration,
            &Sequence::default(),
        )
        .await?;
        let server_cores = ratio(process_cpu_secs(SERVER) - server, began.elapsed().as_secs_f64());
        Ok(Some(Limit { batch, connections, batches, server_cores }))
    }
}

/// Runs the peer (`binary`) on the database at `url`: the same plan, steps,
/// rate and workers as ours; then measures its rows' sizes.
async fn run_peer(
    args: &Args,
    load: &Load,
    plan: CartPlan,
    measured: &Measured,
    binary: &Path,
    url: &str,
) -> anyhow::Result<Peer> {
    let request = remote::Request {
        postgres_url: url.to_owned(),
        pool_size: args.postgres.pool_size,
        products: args.cart.products,
        plan,
        warm_up: args.cart.carts,
        load: load.clone(),
        find_max: load.mode.finds_max(),
        fixed: measured.fixed.as_ref().map(|(stats, _)| remote::Fixed {
            rate: stats.offered_per_sec.unwrap_or(stats.per_sec),
            concurrency: stats.concurrency,
        }),
    };
    let answer = peer::run(binary, &request).await?;
    let peer_pool = parallax_postgres::pool(url, 1).await?;
    let sizes = event_sizes(&peer_pool).await?;
    peer_pool.close().await;
    Ok(Peer { answer, sizes })
}

fn report(args: &Args, context: &Context, load: &Load, figures: &Figures) -> Report {
    let Figures { measured, limits, fixed_limit, peer, .. } = figures;
    let (fixed_limit, peer) = (fixed_limit.as_ref(), peer.as_ref());
    let mut report = Report::new(
        NAME,
        "in-process commands over PostgreSQL, durable ack (synchronous_commit=on)",
        context.machine.clone(),
    );
    parameters(&mut report, args, load, figures);

    let peer_search = peer.and_then(|peer| peer.answer.search.as_ref());
    let peer_fixed = peer.and_then(|peer| peer.answer.fixed.as_ref());
    if let Some((best, _)) = measured.best() {
        max_compares(&mut report, best, limits, peer_search);
    }
    if let Some((stats, grouping)) = &measured.fixed {
        fixed_compares(&mut report, stats, fixed_limit, peer_fixed);
        fixed_section(&mut report, (stats, grouping), fixed_limit, peer_fixed);
    }
    if let Some(search) = &measured.search {
        report.section(
            "Find the maximum (closed loop): ours",
            steps_table(&search.steps, &measured.groupings, WRITER, None),
            vec![format!(
                "The search stopped: {}. events/txn: events over the distinct transaction ids of the rows the \
                 step appended. PostgreSQL on CPU: every postgres process of the machine, as a share of one \
                 core (above 100 %: several cores).",
                search.stopped
            )],
        );
    }
    if let Some(search) = peer_search {
        report.section(
            "Find the maximum (closed loop): the peer (cqrs-es over postgres-es)",
            Table::of_steps(&search.steps),
            vec![format!(
                "The search stopped: {}. Measured in the peer's process by the same load generator.",
                search.stopped
            )],
        );
    }
    if !limits.is_empty() {
        baseline_section(&mut report, load, measured, limits);
    }
    report.notes = notes();
    report.raw = json!({ "args": args, "figures": figures });
    report
}

fn notes() -> Vec<String> {
    vec![
        "ours / limit for a rate: the fraction of the physical limit (plain INSERTs of the same rows, in batches \
         of the size the group commit achieved, over as many connections as it has writers, durable) that the \
         command path reaches; 1.0 would mean a command costs nothing beyond its row."
            .into(),
        "ours / limit for a latency: how many times one batch's durable INSERT (a lower bound of any command's \
         latency at that batch size) the command's latency is."
            .into(),
        "ours / peer: the same cart commands (same plan, same concurrency or the same fixed rate and workers, \
         same pool size, same server) written with cqrs-es over postgres-es, in a process of their own. For a \
         rate above 1 means the shop is faster; for a latency below 1 means the shop's is lower. The peer \
         reads a cart's events on every command (postgres-es keeps no aggregate cache) and commits each \
         command's event in a transaction of its own; its products are in memory (the shop's are product \
         aggregates, cached after their first load)."
            .into(),
        "Search: closed loop, concurrency doubling each step; fixed rate: open loop, latency from each \
         request's intended start (no coordinated omission). See `bench/src/lib.rs`."
            .into(),
        "Only the command side runs (no relay, projectors nor saga). Each command appends one event. The \
         database server runs on the same machine as the bench (and the peer): CPU busy counts all of them."
            .into(),
    ]
}

/// The workload, the stores, the peer, the steps, the rows' sizes.
fn parameters(report: &mut Report, args: &Args, load: &Load, figures: &Figures) {
    let Figures { plan, warm_up, sizes, peer, .. } = figures;
    let peer = peer.as_ref();
    report.parameter("workload", plan.describe());
    report.parameter(
        "warm-up",
        format!(
            "one add-item per cart slot ({} requests, {:.1} s, not measured)",
            args.cart.carts,
            warm_up.as_secs_f64()
        ),
    );
    report.parameter(
        "event store",
        format!(
            "PgEventStore on {} (a fresh database), {} writer tasks, group commit up to 512 requests per \
             parallax_append call, a pool of {} connections",
            parallax_postgres::redact(&args.postgres.postgres_url),
            args.writers,
            args.postgres.pool_size
        ),
    );
    report.parameter(
        "peer",
        match peer {
            Some(_) => format!(
                "cqrs-es 0.5 + postgres-es 0.5 (postgres_cqrs, PostgresEventRepository, no snapshots), a process \
                 and a fresh database of its own, a pool of {} connections",
                args.postgres.pool_size
            ),
            None => "not run (--no-peer)".to_owned(),
        },
    );
    report.parameter("search steps", format!("{:?} × {:.1} s", load.levels, load.step.as_secs_f64()));
    report.parameter("fixed-rate run", format!("{:.1} s", load.duration.as_secs_f64()));
    report.parameter(
        "event sizes",
        format!(
            "cart.item_added payload {:.0} B, metadata {:.0} B{} (means, as jsonb text)",
            sizes.payload,
            sizes.metadata,
            peer.map_or_else(String::new, |peer| format!(
                "; the peer's {:.0} B and {:.0} B",
                peer.sizes.payload, peer.sizes.metadata
            ))
        ),
    );
}

/// Ours at the best step of the search beside the plain inserts and the peer's best.
fn max_compares(report: &mut Report, best: &Stats, limits: &[Limit], peer_search: Option<&Search>) {
    let measure = format!("commands/s (max, c={})", best.concurrency);
    if let Some(limit) = limits.first() {
        report.compare(
            &measure,
            rate(best.per_sec),
            format!(
                "{} (rows/s, plain INSERTs of {} rows, {} connections)",
                rate(limit.rows_per_sec()),
                limit.batch,
                limit.connections
            ),
            ratio(best.per_sec, limit.rows_per_sec()),
            "",
        );
    }
    if let Some(peer_best) = peer_search.and_then(Search::best) {
        report.compare(
            &measure,
            rate(best.per_sec),
            format!("{} (cqrs-es, max at c={})", rate(peer_best.per_sec), peer_best.concurrency),
            ratio(best.per_sec, peer_best.per_sec),
            "",
        );
    }
    if let Some(limit) = limits.first() {
        report.compare(
            "p99 ms (max)",
            ms(best.latency.p99_ms),
            format!("{} (one batch's INSERT)", ms(limit.batches.latency.p99_ms)),
            ratio(best.latency.p99_ms, limit.batches.latency.p99_ms),
            "",
        );
    }
    if let Some(peer_best) = peer_search.and_then(Search::best) {
        report.compare(
            "p99 ms (max)",
            ms(best.latency.p99_ms),
            format!("{} (cqrs-es at its max)", ms(peer_best.latency.p99_ms)),
            ratio(best.latency.p99_ms, peer_best.latency.p99_ms),
            "",
        );
    }
}

/// Ours at the fixed rate beside the plain inserts and the peer at the same rate.
fn fixed_compares(
    report: &mut Report,
    stats: &Stats,
    fixed_limit: Option<&Limit>,
    peer_fixed: Option<&Stats>,
) {
    let offered = stats.offered_per_sec.unwrap_or(0.0);
    let measure = format!("p50 / p99 / p99.9 ms at {}/s (open loop)", rate(offered));
    let ours = format!(
        "{} / {} / {}",
        ms(stats.latency.p50_ms),
        ms(stats.latency.p99_ms),
        ms(stats.latency.p999_ms)
    );
    if let Some(limit) = fixed_limit {
        report.compare(
            &measure,
            ours.clone(),
            format!(
                "{} (plain INSERTs of {} rows at the same rate of rows, p99)",
                ms(limit.batches.latency.p99_ms),
                limit.batch
            ),
            ratio(stats.latency.p99_ms, limit.batches.latency.p99_ms),
            "",
        );
    }
    if let Some(peer_fixed) = peer_fixed {
        report.compare(
            &measure,
            ours,
            format!(
                "{} / {} / {} (cqrs-es, same rate; achieved {}/s)",
                ms(peer_fixed.latency.p50_ms),
                ms(peer_fixed.latency.p99_ms),
                ms(peer_fixed.latency.p999_ms),
                rate(peer_fixed.per_sec)
            ),
            ratio(stats.latency.p99_ms, peer_fixed.latency.p99_ms),
            "",
        );
    }
}

/// The fixed-rate runs of ours, the plain inserts and the peer.
fn fixed_section(
    report: &mut Report,
    (stats, grouping): (&Stats, &Grouping),
    fixed_limit: Option<&Limit>,
    peer_fixed: Option<&Stats>,
) {
    let mut steps = vec![stats.clone()];
    let mut per_request = vec![1.0];
    if let Some(limit) = fixed_limit {
        steps.push(limit.batches.clone());
        per_request.push(limit.batch as f64);
    }
    if let Some(peer_fixed) = peer_fixed {
        let mut peer_fixed = peer_fixed.clone();
        peer_fixed.label = "cqrs-es commands".into();
        steps.push(peer_fixed);
        per_request.push(1.0);
    }
    let mut table = Table::of_steps(&steps);
    table.columns.extend(["events/s".into(), "events/txn".into(), format!("{WRITER} on CPU")]);
    for (i, (row, step)) in table.rows.iter_mut().zip(&steps).enumerate() {
        row.push(rate(step.per_sec * per_request[i]));
        match (i, fixed_limit) {
            (0, _) => {
                row.push(format!("{:.1}", grouping.per_transaction()));
                row.push(format!("{:.0} %", 100.0 * grouping.writer_cpu()));
            }
            (1, Some(limit)) => {
                row.push(limit.batch.to_string());
                row.push(format!("{:.0} %", 100.0 * limit.server_cores));
            }
            _ => {
                row.push("1".into());
                row.push(String::new());
            }
        }
    }
    report.section(
        "Fixed rate (open loop): ours, the plain inserts, the peer",
        table,
        vec![format!(
            "All at {} events/s offered: ours and the peer {} workers (requests in flight at most), the plain \
             INSERTs {} connections, batches offered at the rate of rows / batch size, each batch's latency \
             from its intended start. achieved/s counts requests (a batch is one request); events/s counts \
             rows.",
            rate(stats.offered_per_sec.unwrap_or(0.0)),
            stats.concurrency,
            fixed_limit.map_or(0, |limit| limit.connections)
        )],
    );
}

/// The plain inserts in closed loop.
fn baseline_section(report: &mut Report, load: &Load, measured: &Measured, limits: &[Limit]) {
    let mut table = Table::new(&[
        "batch (rows)",
        "connections",
        "batches",
        "rows/s",
        "batch p50 ms",
        "batch p99 ms",
        "batch p99.9 ms",
        "PostgreSQL on CPU",
    ]);
    for limit in limits {
        table.row(vec![
            limit.batch.to_string(),
            limit.connections.to_string(),
            thousands(limit.batches.ok),
            rate(limit.rows_per_sec()),
            ms(limit.batches.latency.p50_ms),
            ms(limit.batches.latency.p99_ms),
            ms(limit.batches.latency.p999_ms),
            format!("{:.0} %", 100.0 * limit.server_cores),
        ]);
    }
    let grouping = measured.best().map(|(_, grouping)| *grouping).unwrap_or_default();
    report.section(
        "Baseline: plain batched INSERTs (same rows, same table)",
        table,
        vec![format!(
            "The {} event rows of the best step of the search, inserted again into a fresh database with the \
             event store's migration, one INSERT … SELECT FROM unnest statement per batch in autocommit (one \
             transaction, one WAL flush), {} rows per batch (the {:.1} events per transaction the group commit \
             achieved), over {} connections (the store's writers), closed loop for {:.1} s, rows cycled with \
             shifted positions and versions. The second row: batches of {LARGEST_GROUP} (the store's largest \
             group), for scale.",
            thousands(grouping.events()),
            limits[0].batch,
            grouping.per_transaction(),
            limits[0].connections,
            load.step.as_secs_f64()
        )],
    );
}

/// The batch size the group commit achieved.
fn batch_of(grouping: &Grouping) -> usize {
    grouping.per_transaction().round().max(1.0) as usize
}

/// One event row as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    position: i64,
    stream_id: String,
    stream_version: i64,
    event_id: Uuid,
    event_type: String,
    schema_version: i32,
    payload: String,
    metadata: String,
    recorded_at: DateTime<Utc>,
}

/// The rows at positions `(after, upto]` (at most [`MAX_ROWS`]).
async fn read_rows(pool: &PgPool, (after, upto): (u64, u64)) -> anyhow::Result<Vec<Row>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT position, stream_id, stream_version, event_id, event_type, schema_version, \
         payload::text AS payload, metadata::text AS metadata, recorded_at \
         FROM events WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3",
    )
    .bind(to_i64(after))
    .bind(to_i64(upto))
    .bind(MAX_ROWS)
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(!rows.is_empty(), "the reference step appended no events");
    Ok(rows)
}

/// Mean sizes of the stored `cart.item_added` events, as jsonb renders them
/// (so that json and jsonb columns compare).
#[derive(Debug, Clone, Copy, Serialize)]
struct Sizes {
    payload: f64,
    metadata: f64,
}

async fn event_sizes(pool: &PgPool) -> anyhow::Result<Sizes> {
    let (payload, metadata): (f64, f64) = sqlx::query_as(
        "SELECT COALESCE(AVG(octet_length(payload::jsonb::text)), 0)::float8, \
         COALESCE(AVG(octet_length(metadata::jsonb::text)), 0)::float8 FROM events \
         WHERE event_type = 'cart.item_added'",
    )
    .fetch_one(pool)
    .await?;
    Ok(Sizes { payload, metadata })
}

async fn truncate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE events").execute(pool).await?;
    Ok(())
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Shifts the stream versions of each cycle through the rows, so no row repeats.
const VERSION_CYCLE: i64 = 1 << 32;

/// Plain batched INSERTs of the rows: request `seq` inserts the `seq`-th
/// batch of `batch` rows, cycling through them; each cycle shifts positions
/// by `span` and stream versions by [`VERSION_CYCLE`], so no row repeats.
#[derive(Clone)]
struct PlainBatches {
    pool: PgPool,
    rows: Arc<Vec<Row>>,
    batch: usize,
    span: i64,
}

impl Target for PlainBatches {
    type Worker = PlainBatches;

    async fn worker(&self) -> anyhow::Result<PlainBatches> {
        Ok(self.clone())
    }
}

impl Worker for PlainBatches {
    async fn call(&mut self, seq: u64, _intended: Instant) -> anyhow::Result<()> {
        let n = self.rows.len();
        let first = usize::try_from(seq)? * self.batch;
        let mut positions = Vec::with_capacity(self.batch);
        let mut stream_ids = Vec::with_capacity(self.batch);
        let mut versions = Vec::with_capacity(self.batch);
        let mut event_ids = Vec::with_capacity(self.batch);
        let mut event_types = Vec::with_capacity(self.batch);
        let mut schema_versions = Vec::with_capacity(self.batch);
        let mut payloads = Vec::with_capacity(self.batch);
        let mut metadata = Vec::with_capacity(self.batch);
        let mut recorded = Vec::with_capacity(self.batch);
        for i in first..first + self.batch {
            let (row, cycle) = (&self.rows[i % n], i64::try_from(i / n)?);
            positions.push(row.position + cycle * self.span);
            stream_ids.push(row.stream_id.as_str());
            versions.push(row.stream_version + cycle * VERSION_CYCLE);
            event_ids.push(row.event_id);
            event_types.push(row.event_type.as_str());
            schema_versions.push(row.schema_version);
            payloads.push(row.payload.as_str());
            metadata.push(row.metadata.as_str());
            recorded.push(row.recorded_at);
        }
        sqlx::query(
            "INSERT INTO events (position, stream_id, stream_version, event_id, event_type, schema_version, \
             payload, metadata, recorded_at) \
             SELECT p, s, v, e, t, sv, pl::jsonb, m::jsonb, at FROM unnest($1::bigint[], $2::text[], \
             $3::bigint[], $4::uuid[], $5::text[], $6::int4[], $7::text[], $8::text[], $9::timestamptz[]) \
             AS r(p, s, v, e, t, sv, pl, m, at)",
        )
        .bind(&positions)
        .bind(&stream_ids)
        .bind(&versions)
        .bind(&event_ids)
        .bind(&event_types)
        .bind(&schema_versions)
        .bind(&payloads)
        .bind(&metadata)
        .bind(&recorded)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
