//! `projection-rebuild`: every shop view rebuilt from position 0 of a SQLite
//! event store into a fresh read store (`--store`: SQLite, the default,
//! PostgreSQL or Cassandra) — one `Projector` per
//! projection of `shop_read::all_projections()`, each `catch_up()` on a
//! task of its own, all concurrently (as `shop serve` runs them), or one
//! after the other with `--sequential`. Events per second = events in the
//! log / wall time until the last projector is done.
//!
//! The history (`--events`, default 1,000,000) is generated fast and
//! realistically by [`crate::history`] (the shop's own aggregates and saga
//! decisions run in memory) and appended through `SqliteEventStore`
//! (`synchronous=NORMAL` for speed: generation is not measured).
//!
//! The events are generated into a SQLite event store whichever the read
//! store: the source is not what is measured (reading the log shows in the
//! breakdown of the projectors' time), the read store's writes are.
//!
//! Each projector has probes of its own ([`crate::probes`]): the time it
//! spends reading the log, reading documents and committing batches, so the
//! report breaks the time down per projection. The CPU the machine, the
//! bench process and the store's server (PostgreSQL, Cassandra) used during
//! the rebuild is read from `/proc`.
//!
//! Baseline, same run: the raw upsert rate of the read store. As many
//! documents as the rebuild wrote (counted by a wrapper around the read
//! store), taken from the rebuilt views, are upserted with the read store's
//! statement, in batches of the size the projectors committed, into an
//! empty store of the same kind:
//! - SQLite: a fresh file with the read store's schema and pragmas (WAL,
//!   `synchronous=NORMAL`), by one thread (SQLite has one writer at a time);
//! - PostgreSQL: a fresh database with the read store's migration, one
//!   `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE` per batch, in a
//!   transaction with `synchronous_commit = off` (as the read store
//!   commits), over as many connections as projectors commit concurrently,
//!   each on its own share of the documents (as each projector writes its
//!   own views);
//! - Cassandra: a fresh keyspace with the read store's tables, the read
//!   store's own write of a row (`UPDATE … USING TIMESTAMP ? SET body = ?,
//!   rev = ?, marks = marks + ? WHERE p = ? AND c = ?`, prepared, at
//!   `LOCAL_QUORUM`) in logged batches of 64 rows with 8 batches in flight:
//!   the shape in which the store writes a commit's rows (its `BATCH_ROWS`
//!   and `IN_FLIGHT`). Then, as further lines, the same rows in unlogged
//!   batches of 64 (8 in flight), and one statement at a time (64 in
//!   flight), the tables emptied before each. The baseline writes every row
//!   plainly, where the store writes the rows of shared views (sales) by
//!   compare-and-set, and checks and moves each commit's checkpoint by Paxos
//!   (a serial read, a compare-and-set): what those cost is measured too,
//!   one operation at a time, on the baseline's keyspace ("unit costs").
//!
//! `ours / limit` is the fraction of the read store's raw write rate the
//! rebuild reaches. A PostgreSQL run makes databases of its own on
//! `--postgres-url`, a Cassandra run keyspaces of its own on
//! `--cassandra-nodes`, and drops them afterwards; their reports are
//! `projection-rebuild-postgres` and `projection-rebuild-cassandra`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt, TryStreamExt};
use parallax_cassandra::CassandraReadStore;
use parallax_core::{EventLog, ReadStore};
use parallax_postgres::PgReadStore;
use parallax_runtime::Projector;
use parallax_sqlite::{SqliteEventStore, SqliteReadStore, SqliteStoreOptions};
use rusqlite::{params, Connection};
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;

use super::{ratio, Context};
use crate::history;
use crate::machine::{cmdline_cpu_secs, own_cpu_secs, process_cpu_secs, CpuMeter};
use crate::probes::{Counted, Counts, TimedLog};
use crate::report::{ms, rate, thousands, Report, Table};
use crate::servers::{
    self, CassandraArgs, PostgresArgs, RunId, ScratchDb, ScratchKeyspace, CASSANDRA_PROCESS,
};
use crate::stats::Latencies;

const NAME: &str = "projection-rebuild";

/// The read store's schema, so the baseline's file is the same.
const READ_STORE_SCHEMA: &str = include_str!("../../../crates/parallax-sqlite/src/sql/read_store.sql");

/// Rows per logged batch and batches in flight per commit of the Cassandra
/// read store (`BATCH_ROWS`, `IN_FLIGHT` in `parallax-cassandra`'s store):
/// the shape of the baseline's first line.
const CQL_BATCH_ROWS: usize = 64;
const CQL_IN_FLIGHT: usize = 8;
/// Single statements in flight in the baseline's last line.
const CQL_SINGLE_IN_FLIGHT: usize = 64;
/// Operations timed one at a time for each unit cost.
const CQL_UNIT_SAMPLES: usize = 300;
/// Commits' worth of shared rows timed for each way of writing them.
const CQL_SHARED_SAMPLES: usize = 30;

/// Options of `projection-rebuild`.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Args {
    /// Events in the generated history (at least; the last round is whole).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Products in the catalog.
    #[arg(long, default_value_t = 1_000)]
    pub products: u64,
    /// Customers the orders are spread over.
    #[arg(long, default_value_t = 10_000)]
    pub customers: u64,
    /// Events per projector batch (the shop's projectors take 500).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Rebuild the projections one after the other instead of concurrently.
    #[arg(long)]
    pub sequential: bool,
    /// The read store the views are rebuilt into.
    #[arg(long, value_enum, default_value_t = Store::Sqlite)]
    pub store: Store,
    #[command(flatten)]
    #[serde(flatten)]
    pub postgres: PostgresArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub cassandra: CassandraArgs,
}

/// The read stores a rebuild can write to. Another store is a variant here
/// and in `Views` (how to open it, read its documents back, and measure
/// its raw upsert rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// `SqliteReadStore`: a file in the run's data folder.
    Sqlite,
    /// `PgReadStore`: a database of the run's own on `--postgres-url`.
    Postgres,
    /// `CassandraReadStore`: a keyspace of the run's own on `--cassandra-nodes`.
    Cassandra,
}

impl Store {
    /// The report's name: `projection-rebuild`, followed by the store's
    /// name unless SQLite.
    fn report_name(self) -> String {
        match self {
            Store::Sqlite => NAME.to_owned(),
            Store::Postgres => format!("{NAME}-postgres"),
            Store::Cassandra => format!("{NAME}-cassandra"),
        }
    }

    /// The store, as the report names it.
    fn title(self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres => "PostgreSQL",
            Store::Cassandra => "Cassandra",
        }
    }

    /// The goal for a rebuild into this store.
    fn goal(self) -> &'static str {
        match self {
            Store::Sqlite => "200,000/s",
            Store::Postgres => "50,000/s",
            Store::Cassandra => "15,000/s",
        }
    }

    /// The databases a run needs on the PostgreSQL server (made and dropped around it).
    fn databases(self) -> &'static [&'static str] {
        match self {
            Store::Postgres => &["views", "limit"],
            Store::Sqlite | Store::Cassandra => &[],
        }
    }

    /// The keyspaces a run needs on the Cassandra nodes (made and dropped around it).
    fn keyspaces(self) -> &'static [&'static str] {
        match self {
            Store::Cassandra => &["views", "limit"],
            Store::Sqlite | Store::Postgres => &[],
        }
    }

    /// CPU seconds the store's server has used so far, if it is a server on this machine.
    fn server_cpu_secs(self) -> Option<f64> {
        match self {
            Store::Sqlite => None,
            Store::Postgres => Some(process_cpu_secs("postgres")),
            Store::Cassandra => Some(cmdline_cpu_secs(CASSANDRA_PROCESS)),
        }
    }
}

/// The read store of a rebuild, and the empty one of the same kind its
/// baseline writes to.
enum Views {
    /// SQLite files in the run's data folder.
    Sqlite { path: PathBuf, store: SqliteReadStore, limit_path: PathBuf },
    /// PostgreSQL databases of the run's own.
    Postgres { store: PgReadStore, limit: PgPool, url: String, pool_size: u32 },
    /// Cassandra keyspaces of the run's own.
    Cassandra { store: Arc<CassandraReadStore>, limit: Box<CassandraReadStore>, nodes: String },
}

impl Views {
    /// Opens the read stores of kind `args.store`, in `databases` for
    /// PostgreSQL, in `keyspaces` for Cassandra.
    async fn open(
        args: &Args,
        context: &Context,
        databases: &[ScratchDb],
        keyspaces: &[ScratchKeyspace],
    ) -> anyhow::Result<Self> {
        Ok(match args.store {
            Store::Sqlite => Views::Sqlite {
                path: context.data_dir.join("views.db"),
                store: SqliteReadStore::open(&context.data_dir.join("views.db"))?,
                limit_path: context.data_dir.join("limit-views.db"),
            },
            Store::Postgres => {
                let [views, limit] = databases else { anyhow::bail!("two databases") };
                let pool_size = args.postgres.pool_size;
                let pool = parallax_postgres::pool(&views.url, pool_size).await?;
                parallax_postgres::migrate_read(&pool).await?;
                let limit = parallax_postgres::pool(&limit.url, pool_size).await?;
                parallax_postgres::migrate_read(&limit).await?;
                Views::Postgres { store: PgReadStore::new(pool), limit, url: views.url.clone(), pool_size }
            }
            Store::Cassandra => {
                let [views, limit] = keyspaces else { anyhow::bail!("two keyspaces") };
                Views::Cassandra {
                    store: Arc::new(views.connect().await?),
                    limit: Box::new(limit.connect().await?),
                    nodes: args.cassandra.cassandra_nodes.clone(),
                }
            }
        })
    }

    fn read_store(&self) -> Arc<dyn ReadStore> {
        match self {
            Views::Sqlite { store, .. } => Arc::new(store.clone()),
            Views::Postgres { store, .. } => Arc::new(store.clone()),
            Views::Cassandra { store, .. } => store.clone(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Views::Sqlite { .. } => "SQLite WAL, synchronous=NORMAL".to_owned(),
            Views::Postgres { url, pool_size, .. } => format!(
                "PgReadStore on {} (a fresh database), synchronous_commit=off per batch, a pool of {pool_size} \
                 connections",
                parallax_postgres::redact(url)
            ),
            Views::Cassandra { store, nodes, .. } => format!(
                "CassandraReadStore on {nodes} (a fresh keyspace, {}, replication factor 1, LOCAL_QUORUM; a table \
                 per view): per commit a serial read of the checkpoint, the rows in logged batches of \
                 {CQL_BATCH_ROWS} written USING TIMESTAMP <position> ({CQL_IN_FLIGHT} in flight), the rows of \
                 shared views (sales) by compare-and-set, one conditional batch per partition, then the checkpoint by compare-and-set",
                store.keyspace()
            ),
        }
    }

    /// Every document of the rebuilt views.
    async fn documents(&self) -> anyhow::Result<Vec<Doc>> {
        match self {
            Views::Sqlite { path, .. } => read_documents(path),
            Views::Postgres { store, .. } => {
                let rows: Vec<(String, String, String, String)> =
                    sqlx::query_as("SELECT view, partition, clustering, body::text FROM documents")
                        .fetch_all(store.pool())
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(view, partition, clustering, body)| Doc { view, partition, clustering, body })
                    .collect())
            }
            Views::Cassandra { store, .. } => cql_documents(store).await,
        }
    }

    /// Upserts `count` of `docs`, `batch` per transaction, over `connections`
    /// (SQLite: one thread), into the empty store of the same kind (Cassandra:
    /// in the store's own write shape, then in others).
    async fn upsert_limit(
        &self,
        docs: Vec<Doc>,
        count: u64,
        batch: usize,
        connections: usize,
    ) -> anyhow::Result<UpsertLimit> {
        match self {
            Views::Sqlite { limit_path, .. } => {
                let path = limit_path.clone();
                tokio::task::spawn_blocking(move || upsert_limit(&path, &docs, count, batch)).await?
            }
            Views::Postgres { limit, .. } => pg_upsert_limit(limit, docs, count, batch, connections).await,
            Views::Cassandra { limit, .. } => cql_upsert_limit(limit, docs, count).await,
        }
    }

    /// How the baseline wrote.
    fn describe_limit(&self, batch: usize, connections: usize) -> String {
        match self {
            Views::Sqlite { .. } => format!(
                "with the read store's INSERT … ON CONFLICT statement, {batch} per transaction (the documents per \
                 commit the projectors achieved), one thread, into a fresh file with the read store's schema, \
                 WAL, synchronous=NORMAL"
            ),
            Views::Postgres { .. } => format!(
                "with the read store's INSERT … SELECT FROM unnest … ON CONFLICT DO UPDATE statement, {batch} per \
                 transaction (the documents per commit the projectors achieved) with synchronous_commit=off, over \
                 {connections} connections (one per projector committing at a time), each cycling through its own \
                 share of the documents, into a fresh database with the read store's migration"
            ),
            Views::Cassandra { limit, .. } => format!(
                "with the read store's own timestamped write (UPDATE … USING TIMESTAMP ? SET body = ?, rev = ?, \
                 marks = marks + ? WHERE p = ? AND c = ?, prepared, LOCAL_QUORUM), every row plainly (the store \
                 writes sales rows by compare-and-set), into a fresh keyspace with the read store's tables ({}), \
                 emptied before each line; the first line is the store's own shape for a commit's rows (the \
                 projectors committed {batch} documents per batch on average, {connections} projectors at a time)",
                limit.keyspace()
            ),
        }
    }

    async fn close(self) {
        if let Views::Postgres { store, limit, .. } = self {
            store.pool().close().await;
            limit.close().await;
        }
    }
}

/// Runs the scenario; with PostgreSQL or Cassandra, in databases or
/// keyspaces of its own, dropped afterwards.
pub async fn run(args: Args, context: &Context) -> anyhow::Result<Report> {
    let run = RunId::new();
    let mut databases = Vec::new();
    let keyspaces: Vec<ScratchKeyspace> =
        args.store.keyspaces().iter().map(|role| ScratchKeyspace::new(&args.cassandra, &run, role)).collect();
    let report = async {
        for role in args.store.databases() {
            databases.push(ScratchDb::create(&args.postgres.postgres_url, &run, role).await?);
        }
        let views = Views::open(&args, context, &databases, &keyspaces).await?;
        let report = rebuild(&args, context, &views).await;
        views.close().await;
        report
    }
    .await;
    servers::clean_up(databases, None).await;
    servers::drop_keyspaces(keyspaces).await;
    report
}

/// One projector's probes.
struct Probe {
    name: &'static str,
    counted: Arc<Counted>,
    log: Arc<TimedLog>,
}

/// CPU used during the rebuild, in cores (CPU seconds per second of wall time).
#[derive(Debug, Clone, Copy, Serialize)]
struct CpuUse {
    /// The whole machine (every process).
    machine_cores: f64,
    /// The bench process: projectors, the SQLite log, the driver.
    bench_cores: f64,
    /// The read store's server, if it is one on this machine.
    server_cores: Option<f64>,
}

/// Generates the history, rebuilds the views into `views`, measures the baseline.
async fn rebuild(args: &Args, context: &Context, views: &Views) -> anyhow::Result<Report> {
    let events_path = context.data_dir.join("events.db");
    let store = SqliteEventStore::open_with(
        &events_path,
        SqliteStoreOptions { max_batch: 512, synchronous_full: false },
    )?;
    let generated = Instant::now();
    let shape = history::Shape { events: args.events, products: args.products, customers: args.customers };
    let head = history::generate(&store, shape).await?.head;
    let generation_secs = generated.elapsed().as_secs_f64();
    eprintln!("  generated {head} events in {generation_secs:.1} s");
    let mix = event_mix(&events_path)?;

    // The rebuild, each projector with probes of its own.
    let read = views.read_store();
    let source: Arc<dyn EventLog> = Arc::new(store.log());
    let projections = shop_read::all_projections();
    let probes: Vec<Probe> = projections
        .iter()
        .map(|projection| Probe {
            name: projection.name(),
            counted: Arc::new(Counted::new(read.clone())),
            log: Arc::new(TimedLog::new(source.clone())),
        })
        .collect();
    let (machine_cpu, bench_cpu, server_cpu) =
        (CpuMeter::start(), own_cpu_secs(), args.store.server_cpu_secs());
    let started = Instant::now();
    let mut finished = Vec::new();
    if args.sequential {
        for (projection, probe) in projections.into_iter().zip(&probes) {
            let projector = Projector::new(projection, probe.log.clone(), probe.counted.clone())
                .with_batch_size(args.batch_size);
            projector.catch_up().await?;
            finished.push((probe.name, started.elapsed()));
        }
    } else {
        let mut tasks = tokio::task::JoinSet::new();
        for (projection, probe) in projections.into_iter().zip(&probes) {
            let name = probe.name;
            let projector = Projector::new(projection, probe.log.clone(), probe.counted.clone())
                .with_batch_size(args.batch_size);
            tasks.spawn(async move { projector.catch_up().await.map(|()| (name, started.elapsed())) });
        }
        while let Some(done) = tasks.join_next().await {
            finished.push(done??);
        }
    }
    let wall = started.elapsed();
    let cpu = CpuUse {
        machine_cores: machine_cpu.busy_cores(),
        bench_cores: ratio(own_cpu_secs() - bench_cpu, wall.as_secs_f64()),
        server_cores: server_cpu
            .zip(args.store.server_cpu_secs())
            .map(|(before, after)| ratio(after - before, wall.as_secs_f64())),
    };
    finished.sort_by_key(|(_, at)| *at);
    let per_sec = head as f64 / wall.as_secs_f64();
    eprintln!("  rebuilt in {:.2} s: {per_sec:.0} events/s", wall.as_secs_f64());

    // Every projection must be at the head, with nothing dead-lettered.
    let mut checks = Vec::new();
    for projection in shop_read::all_projections() {
        let name = projection.name();
        let at = read.checkpoint(name, 0).await?.position;
        let dead = read.dead_letters(name).await?.len();
        anyhow::ensure!(at == head, "{name} stopped at {at}, the head is {head}");
        checks.push((name, dead));
    }
    let documents = views.documents().await?;
    let per_projection: Vec<(&'static str, Counts, Duration)> =
        probes.iter().map(|probe| (probe.name, probe.counted.counts(), probe.log.busy())).collect();
    let counts = per_projection.iter().fold(Counts::default(), |sum, (_, counts, _)| sum.plus(counts));
    let log_busy: Duration = per_projection.iter().map(|(_, _, busy)| *busy).sum();
    drop(probes);
    drop(read);
    drop(source);
    drop(store);

    // The baseline: as many plain upserts, in batches of the same size.
    let batch = ratio(counts.writes as f64, counts.commits as f64).round().max(1.0) as usize;
    let writes = counts.writes;
    let connections = if args.sequential { 1 } else { finished.len().max(1) };
    let step = (documents.len() / CQL_BATCH_ROWS).max(1);
    let sample: Vec<Doc> = documents.iter().step_by(step).take(CQL_BATCH_ROWS).cloned().collect();
    let limit = views.upsert_limit(documents, writes, batch, connections).await?;
    let limit_secs = writes as f64 / limit.per_sec;
    let limit_events_per_sec = head as f64 / limit_secs;
    let units = match views {
        Views::Cassandra { limit, .. } => cql_unit_costs(limit, &sample).await?,
        _ => Vec::new(),
    };

    let mut report = Report::new(
        &args.store.report_name(),
        format!(
            "every shop view rebuilt from the SQLite event store into a fresh {} read store",
            args.store.title()
        ),
        context.machine.clone(),
    );
    report.parameter(
        "history",
        format!(
            "{} events ({}), generated and appended to a SQLite event store in {generation_secs:.1} s (not \
             measured), read from it by the projectors; payload mean {:.0} B",
            thousands(head),
            mix.describe(),
            mix.payload_mean
        ),
    );
    report.parameter(
        "projectors",
        format!(
            "{} ({}), {} events per batch, {}",
            finished.len(),
            finished.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            args.batch_size,
            if args.sequential { "one after the other" } else { "concurrently, one task each" }
        ),
    );
    report.parameter("read store", views.describe());
    report.parameter(
        "CPU during the rebuild",
        format!(
            "{:.2} cores busy on the machine: the bench process {:.2}{}",
            cpu.machine_cores,
            cpu.bench_cores,
            cpu.server_cores
                .map_or(String::new(), |cores| format!(", the {} server {cores:.2}", args.store.title()))
        ),
    );
    report.compare(
        "events/s, rebuild of all views",
        rate(per_sec),
        format!(
            "{} (plain upserts of as many documents{})",
            rate(limit_events_per_sec),
            match views {
                Views::Cassandra { .. } => ", the store's write shape",
                _ => "",
            }
        ),
        ratio(per_sec, limit_events_per_sec),
        args.store.goal(),
    );
    let mut timeline = Table::new(&[
        "projection",
        "done after s",
        "batches committed",
        "documents written",
        "read log s",
        "get documents s",
        "commit s",
        "dead letters",
    ]);
    for (name, at) in &finished {
        let dead = checks.iter().find(|(n, _)| n == name).map_or(0, |(_, d)| *d);
        let (counts, log) = per_projection
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, counts, log)| (*counts, *log))
            .unwrap_or_default();
        timeline.row(vec![
            (*name).to_owned(),
            format!("{:.2}", at.as_secs_f64()),
            thousands(counts.commits),
            thousands(counts.writes),
            format!("{:.2}", log.as_secs_f64()),
            format!("{:.2}", counts.get_busy.as_secs_f64()),
            format!("{:.2}", counts.commit_busy.as_secs_f64()),
            dead.to_string(),
        ]);
    }
    report.section(
        "Projectors",
        timeline,
        vec![
            "Each projector's own probes: wall time in the log's read, in the read store's gets and commits."
                .into(),
        ],
    );
    let mut work = Table::new(&["what", "count", "busy s (sum over projectors)", "share of projector time"]);
    let projector_secs: f64 = if args.sequential {
        wall.as_secs_f64()
    } else {
        finished.iter().map(|(_, at)| at.as_secs_f64()).sum()
    };
    let share = |busy: Duration| format!("{:.0} %", 100.0 * ratio(busy.as_secs_f64(), projector_secs));
    work.row(vec![
        "read events (log.read)".into(),
        thousands(head * finished.len() as u64),
        format!("{:.2}", log_busy.as_secs_f64()),
        share(log_busy),
    ]);
    work.row(vec![
        "get documents (get_many of a batch, or one get_with_revision)".into(),
        thousands(counts.gets),
        format!("{:.2}", counts.get_busy.as_secs_f64()),
        share(counts.get_busy),
    ]);
    work.row(vec![
        format!(
            "commit a batch ({} documents, {} read guards)",
            thousands(counts.writes),
            thousands(counts.guards)
        ),
        thousands(counts.commits),
        format!("{:.2}", counts.commit_busy.as_secs_f64()),
        share(counts.commit_busy),
    ]);
    let rest = Duration::from_secs_f64(
        (projector_secs
            - log_busy.as_secs_f64()
            - counts.get_busy.as_secs_f64()
            - counts.commit_busy.as_secs_f64())
        .max(0.0),
    );
    work.row(vec![
        "the rest: decode, apply, encode, scheduling".into(),
        String::new(),
        format!("{:.2}", rest.as_secs_f64()),
        share(rest),
    ]);
    report.section(
        "Where the projectors' time goes",
        work,
        vec!["Measured by wrappers around the log and the read store (wall time of each call, summed over \
              the projectors; concurrent projectors overlap, so shares are of the sum of their run times)."
            .into()],
    );
    let mut baseline =
        Table::new(&["documents upserted", "batches", "documents/s", "would rebuild at events/s"]);
    for line in limit.lines() {
        baseline.row(vec![
            thousands(writes),
            line.shape.clone(),
            rate(line.per_sec),
            rate(head as f64 / (writes as f64 / line.per_sec)),
        ]);
    }
    report.section(
        "Baseline: plain batched upserts (same schema and settings)",
        baseline,
        vec![format!(
            "{} upserts of the rebuilt views' {} documents (cycled), {}.",
            thousands(writes),
            thousands(limit.distinct),
            views.describe_limit(batch, connections)
        )],
    );
    if !units.is_empty() {
        let mut table =
            Table::new(&["operation, one at a time", "what a commit does of it", "p50 ms", "p99 ms"]);
        for unit in &units {
            table.row(vec![unit.what.clone(), unit.per_commit.clone(), ms(unit.p50_ms), ms(unit.p99_ms)]);
        }
        let p50 =
            |what: &str| units.iter().find(|unit| unit.what.starts_with(what)).map_or(0.0, |u| u.p50_ms);
        let paxos_ms = p50("read a checkpoint") + p50("move a checkpoint");
        let (sales_commits, sales_rows, sales_busy) = per_projection
            .iter()
            .filter(|(name, _, _)| *name == shop_read::queries::answered_by::SALES)
            .map(|(_, counts, _)| (counts.commits, counts.writes, counts.commit_busy))
            .fold((0, 0, Duration::ZERO), |(c, w, b), (c2, w2, b2)| (c + c2, w + w2, b + b2));
        let rows = format!("{CQL_BATCH_ROWS} shared rows of one partition");
        report.section(
            "Cassandra: unit costs",
            table,
            vec![format!(
                "Each operation timed {CQL_UNIT_SAMPLES} times ({CQL_SHARED_SAMPLES} for the commits' worth of \
                 shared rows), one after the other, on the baseline's keyspace after the baseline (the server \
                 otherwise idle). At these latencies a commit's checkpoint check and move take {} ms, {:.1} s \
                 over the rebuild's {} commits (the projectors spent {:.1} s committing). The sales projection \
                 committed {} rows of its shared view in {} commits ({:.0} per commit), in {:.1} s of commits: \
                 {} ms per {CQL_BATCH_ROWS} rows the store's way, {} ms as one conditional batch.",
                ms(paxos_ms),
                counts.commits as f64 * paxos_ms / 1000.0,
                thousands(counts.commits),
                counts.commit_busy.as_secs_f64(),
                thousands(sales_rows),
                thousands(sales_commits),
                ratio(sales_rows as f64, sales_commits as f64),
                sales_busy.as_secs_f64(),
                ms(p50(&format!("{rows}, each as above, {CQL_IN_FLIGHT} in flight"))),
                ms(p50(&format!("the same {CQL_BATCH_ROWS} rows as one conditional batch"))),
            )],
        );
    }
    report.notes = vec![
        "ours / baseline: the fraction of the read store's raw write rate (plain upserts of as many \
         documents, in batches of the same size) that the rebuild reaches; the rebuild also reads the log, \
         decodes, applies, reads documents back and checks checkpoints and revisions."
            .into(),
        "The history is generated by the shop's own aggregates and saga decisions run in memory, then \
         appended through SqliteEventStore (not measured), whichever the read store."
            .into(),
        "CPU: from /proc, over the rebuild's wall time; the servers run on the same machine as the bench."
            .into(),
    ];
    report.raw = json!({
        "args": args,
        "events": head,
        "generation_secs": generation_secs,
        "mix": mix,
        "rebuild_secs": wall.as_secs_f64(),
        "events_per_sec": per_sec,
        "finished": finished.iter().map(|(n, at)| json!({ "projection": n, "secs": at.as_secs_f64() })).collect::<Vec<_>>(),
        "per_projection": per_projection.iter().map(|(n, counts, log)| json!({ "projection": n, "counts": counts, "log_read_busy_secs": log.as_secs_f64() })).collect::<Vec<_>>(),
        "log_read_busy_secs": log_busy.as_secs_f64(),
        "counts": counts,
        "cpu": cpu,
        "limit": limit,
        "limit_events_per_sec": limit_events_per_sec,
        "unit_costs": units,
    });
    Ok(report)
}

/// The kinds of events in the history.
#[derive(Debug, Clone, Serialize)]
struct Mix {
    product: u64,
    cart: u64,
    order: u64,
    payload_mean: f64,
}

impl Mix {
    fn describe(&self) -> String {
        let total = (self.product + self.cart + self.order).max(1) as f64;
        format!(
            "{:.0} % product, {:.0} % cart, {:.0} % order events",
            100.0 * self.product as f64 / total,
            100.0 * self.cart as f64 / total,
            100.0 * self.order as f64 / total
        )
    }
}

fn event_mix(path: &Path) -> anyhow::Result<Mix> {
    let conn = Connection::open(path)?;
    let count = |prefix: &str| -> rusqlite::Result<u64> {
        conn.query_row(
            "SELECT COUNT(*) FROM events WHERE event_type LIKE ?1",
            [format!("{prefix}.%")],
            |row| row.get::<_, i64>(0).map(|n| n as u64),
        )
    };
    Ok(Mix {
        product: count("product")?,
        cart: count("cart")?,
        order: count("order")?,
        payload_mean: conn
            .query_row("SELECT COALESCE(AVG(LENGTH(payload)), 0) FROM events", [], |row| row.get(0))?,
    })
}

// ---------------------------------------------------------------------------
// The baseline

/// A stored document.
#[derive(Debug, Clone)]
struct Doc {
    view: String,
    partition: String,
    clustering: String,
    body: String,
}

fn read_documents(path: &Path) -> anyhow::Result<Vec<Doc>> {
    let conn = Connection::open(path)?;
    let mut statement = conn.prepare("SELECT view, partition, clustering, body FROM documents")?;
    let rows = statement.query_map([], |row| {
        Ok(Doc { view: row.get(0)?, partition: row.get(1)?, clustering: row.get(2)?, body: row.get(3)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What the plain upserts did.
#[derive(Debug, Clone, Serialize)]
struct UpsertLimit {
    /// Distinct documents cycled through.
    distinct: u64,
    /// Upserts per second (the baseline).
    per_sec: f64,
    /// How they were written.
    shape: String,
    /// The same upserts written in other shapes, for comparison.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    others: Vec<LimitLine>,
}

impl UpsertLimit {
    /// The baseline's line, then the others.
    fn lines(&self) -> Vec<LimitLine> {
        let first = LimitLine { shape: self.shape.clone(), per_sec: self.per_sec };
        std::iter::once(first).chain(self.others.iter().cloned()).collect()
    }
}

/// Upserts written in one shape.
#[derive(Debug, Clone, Serialize)]
struct LimitLine {
    shape: String,
    per_sec: f64,
}

/// Upserts `count` documents (cycling through `docs`), `batch` per
/// transaction, into a fresh read store file at `path`, by one thread.
fn upsert_limit(path: &Path, docs: &[Doc], count: u64, batch: usize) -> anyhow::Result<UpsertLimit> {
    anyhow::ensure!(!docs.is_empty(), "the rebuild wrote no documents");
    let conn = Connection::open(path)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "{} cannot use WAL", path.display());
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(READ_STORE_SCHEMA)?;
    let start = Instant::now();
    let mut done = 0u64;
    while done < count {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut upsert = conn.prepare_cached(
            "INSERT INTO documents (view, partition, clustering, body, revision) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (view, partition, clustering) \
             DO UPDATE SET body = excluded.body, revision = excluded.revision",
        )?;
        for _ in 0..batch.min((count - done) as usize) {
            let doc = &docs[(done % docs.len() as u64) as usize];
            upsert.execute(params![doc.view, doc.partition, doc.clustering, doc.body, done as i64])?;
            done += 1;
        }
        conn.execute_batch("COMMIT")?;
    }
    Ok(UpsertLimit {
        distinct: docs.len() as u64,
        per_sec: count as f64 / start.elapsed().as_secs_f64(),
        shape: format!("{batch} per transaction, one thread"),
        others: Vec::new(),
    })
}

/// Upserts `count` documents, `batch` per transaction, over `connections`
/// connections to the empty read store database of `pool`: connection `i`
/// cycles through the `i`-th share of `docs`, and a batch holds each of its
/// documents once (one statement cannot update a row twice).
async fn pg_upsert_limit(
    pool: &PgPool,
    docs: Vec<Doc>,
    count: u64,
    batch: usize,
    connections: usize,
) -> anyhow::Result<UpsertLimit> {
    anyhow::ensure!(!docs.is_empty(), "the rebuild wrote no documents");
    let distinct = docs.len() as u64;
    let connections = connections.clamp(1, docs.len());
    let share = docs.len().div_ceil(connections);
    let docs = Arc::new(docs);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..connections {
        let (pool, docs) = (pool.clone(), docs.clone());
        let mine = (i * share).min(docs.len())..((i + 1) * share).min(docs.len());
        let todo = count / connections as u64 + u64::from((i as u64) < count % connections as u64);
        tasks.spawn(async move {
            let (len, mut done) = (mine.len(), 0u64);
            while done < todo && len > 0 {
                let n = batch.min(len).min(usize::try_from(todo - done).unwrap_or(usize::MAX));
                let at = |k: usize| &docs[mine.start + (done as usize + k) % len];
                let views: Vec<&str> = (0..n).map(|k| at(k).view.as_str()).collect();
                let partitions: Vec<&str> = (0..n).map(|k| at(k).partition.as_str()).collect();
                let clusterings: Vec<&str> = (0..n).map(|k| at(k).clustering.as_str()).collect();
                let bodies: Vec<&str> = (0..n).map(|k| at(k).body.as_str()).collect();
                let mut tx = pool.begin().await?;
                sqlx::query("SET LOCAL synchronous_commit TO OFF").execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO documents (view, partition, clustering, body, revision) \
                     SELECT v, p, c, b::jsonb, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) \
                     AS r(v, p, c, b) ON CONFLICT (view, partition, clustering) \
                     DO UPDATE SET body = excluded.body, revision = excluded.revision",
                )
                .bind(&views)
                .bind(&partitions)
                .bind(&clusterings)
                .bind(&bodies)
                .bind(i64::try_from(done).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                done += n as u64;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(UpsertLimit {
        distinct,
        per_sec: count as f64 / start.elapsed().as_secs_f64(),
        shape: format!("{batch} per transaction, {connections} connections"),
        others: Vec::new(),
    })
}

// ---------------------------------------------------------------------------
// Cassandra

/// The CQL table of a view, as the Cassandra read store names it.
fn cql_table(view: &str) -> String {
    format!("v_{}", view.to_ascii_lowercase().replace('-', "_"))
}

/// Every document of the views in `store`'s keyspace.
async fn cql_documents(store: &CassandraReadStore) -> anyhow::Result<Vec<Doc>> {
    let mut docs = Vec::new();
    for spec in shop::app::shop_view_specs() {
        let query = format!("SELECT p, c, body FROM {}.{}", store.keyspace(), cql_table(&spec.name));
        let mut rows =
            store.session().query_iter(query, ()).await?.rows_stream::<(String, String, Option<String>)>()?;
        while let Some((partition, clustering, body)) = rows.try_next().await? {
            if let Some(body) = body {
                docs.push(Doc { view: spec.name.clone(), partition, clustering, body });
            }
        }
    }
    Ok(docs)
}

async fn cql_prepare(
    session: &Session,
    cql: String,
    consistency: Consistency,
) -> anyhow::Result<PreparedStatement> {
    let mut statement = session.prepare(cql).await?;
    statement.set_consistency(consistency);
    statement.set_serial_consistency(Some(SerialConsistency::LocalSerial));
    Ok(statement)
}

/// The read store's timestamped write of a row, per view, prepared on `store`'s keyspace.
async fn cql_puts(store: &CassandraReadStore) -> anyhow::Result<HashMap<String, PreparedStatement>> {
    let mut puts = HashMap::new();
    for spec in shop::app::shop_view_specs() {
        let cql = format!(
            "UPDATE {}.{} USING TIMESTAMP ? SET body = ?, rev = ?, marks = marks + ? WHERE p = ? AND c = ?",
            store.keyspace(),
            cql_table(&spec.name)
        );
        let mut put = cql_prepare(store.session(), cql, Consistency::LocalQuorum).await?;
        put.set_is_idempotent(true);
        puts.insert(spec.name, put);
    }
    Ok(puts)
}

/// The values of a put: timestamp, body, revision, marks, partition, clustering.
type PutValues<'a> = (i64, &'a str, i64, BTreeMap<i32, i64>, &'a str, &'a str);

/// The values of the `i`-th write, of `doc`, at timestamp `i + 1`.
fn put_values(doc: &Doc, i: u64) -> PutValues<'_> {
    let at = i64::try_from(i).unwrap_or(i64::MAX - 1) + 1;
    (at, doc.body.as_str(), at, BTreeMap::from([(0, at)]), doc.partition.as_str(), doc.clustering.as_str())
}

/// How the baseline sends its rows to Cassandra.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CqlShape {
    /// Logged batches of `CQL_BATCH_ROWS`, `CQL_IN_FLIGHT` in flight: the store's shape.
    Logged,
    /// Unlogged batches of the same size.
    Unlogged,
    /// One row per statement, `CQL_SINGLE_IN_FLIGHT` in flight.
    Single,
}

impl CqlShape {
    fn describe(self) -> String {
        match self {
            CqlShape::Logged => {
                format!("logged, {CQL_BATCH_ROWS} rows each, {CQL_IN_FLIGHT} in flight (the store's shape)")
            }
            CqlShape::Unlogged => format!("unlogged, {CQL_BATCH_ROWS} rows each, {CQL_IN_FLIGHT} in flight"),
            CqlShape::Single => format!("none: one row per statement, {CQL_SINGLE_IN_FLIGHT} in flight"),
        }
    }
}

/// Writes `count` rows (cycling through `docs`) in each shape, into the
/// emptied tables of `limit`; the first line is the store's shape.
async fn cql_upsert_limit(
    limit: &CassandraReadStore,
    docs: Vec<Doc>,
    count: u64,
) -> anyhow::Result<UpsertLimit> {
    anyhow::ensure!(!docs.is_empty(), "the rebuild wrote no documents");
    let puts = cql_puts(limit).await?;
    let mut lines = Vec::new();
    for shape in [CqlShape::Logged, CqlShape::Unlogged, CqlShape::Single] {
        limit.truncate_all().await?;
        let per_sec = cql_write(limit.session(), &puts, &docs, count, shape).await?;
        eprintln!("  baseline, batches {}: {per_sec:.0} rows/s", shape.describe());
        lines.push(LimitLine { shape: shape.describe(), per_sec });
    }
    let first = lines.remove(0);
    Ok(UpsertLimit { distinct: docs.len() as u64, per_sec: first.per_sec, shape: first.shape, others: lines })
}

/// Writes `count` rows, cycling through `docs`, in `shape`; returns rows per second.
async fn cql_write(
    session: &Session,
    puts: &HashMap<String, PreparedStatement>,
    docs: &[Doc],
    count: u64,
    shape: CqlShape,
) -> anyhow::Result<f64> {
    let (rows, in_flight) = match shape {
        CqlShape::Single => (1, CQL_SINGLE_IN_FLIGHT),
        CqlShape::Logged | CqlShape::Unlogged => (CQL_BATCH_ROWS, CQL_IN_FLIGHT),
    };
    let doc = |i: u64| &docs[(i % docs.len() as u64) as usize];
    let start = Instant::now();
    stream::iter((0..count).step_by(rows))
        .map(|from| async move {
            if shape == CqlShape::Single {
                let doc = doc(from);
                session.execute_unpaged(&puts[&doc.view], put_values(doc, from)).await?;
                return anyhow::Ok(());
            }
            let kind = if shape == CqlShape::Logged { BatchType::Logged } else { BatchType::Unlogged };
            let mut batch = Batch::new(kind);
            let mut values = Vec::with_capacity(rows);
            for i in from..(from + rows as u64).min(count) {
                batch.append_statement(puts[&doc(i).view].clone());
                values.push(put_values(doc(i), i));
            }
            session.batch(&batch, values).await?;
            Ok(())
        })
        .buffer_unordered(in_flight)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// A shared row's statements, to write it blind as the store does.
struct Shared<'a> {
    session: &'a Session,
    revision: &'a PreparedStatement,
    update: &'a PreparedStatement,
    body: &'a str,
}

impl Shared<'_> {
    /// Reads the row's revision at SERIAL, then sets it by compare-and-set
    /// on that revision; again while another write gets in between.
    async fn write_blind(&self, key: &str, stamp: i64) -> anyhow::Result<()> {
        let marks = BTreeMap::from([(0i32, stamp)]);
        for _ in 0..20 {
            let rows =
                self.session.execute_unpaged(self.revision, ("shared", key)).await?.into_rows_result()?;
            let current = rows.maybe_first_row::<(Option<i64>,)>()?.and_then(|(rev,)| rev).unwrap_or(0);
            let outcome = self
                .session
                .execute_unpaged(self.update, (self.body, current + 1, &marks, "shared", key, current))
                .await?
                .into_rows_result()?;
            if applied(&outcome)? {
                return Ok(());
            }
        }
        anyhow::bail!("a shared row kept being changed")
    }
}

/// Whether a conditional write applied (its outcome's first column).
fn applied(outcome: &scylla::response::query_result::QueryRowsResult) -> anyhow::Result<bool> {
    let row = outcome.maybe_first_row::<scylla::value::Row>()?;
    Ok(matches!(
        row.as_ref().and_then(|row| row.columns.first()),
        Some(Some(scylla::value::CqlValue::Boolean(true)))
    ))
}

/// What one kind of operation costs, timed one at a time.
#[derive(Debug, Clone, Serialize)]
struct UnitCost {
    what: String,
    per_commit: String,
    p50_ms: f64,
    p99_ms: f64,
}

/// Times, one at a time, the operations a Cassandra commit is made of, on
/// the keyspace of `store` (the baseline's), with rows like `sample`.
async fn cql_unit_costs(store: &CassandraReadStore, sample: &[Doc]) -> anyhow::Result<Vec<UnitCost>> {
    anyhow::ensure!(!sample.is_empty(), "the rebuild wrote no documents");
    let (session, keyspace) = (store.session(), store.keyspace());
    let mut costs = Vec::new();
    let mut record = |what: &str, per_commit: &str, latencies: Latencies| {
        let summary = latencies.summary();
        eprintln!("  {what}: p50 {:.2} ms, p99 {:.2} ms", summary.p50_ms, summary.p99_ms);
        costs.push(UnitCost {
            what: what.to_owned(),
            per_commit: per_commit.to_owned(),
            p50_ms: summary.p50_ms,
            p99_ms: summary.p99_ms,
        });
    };
    macro_rules! timed {
        ($i:ident => $op:expr) => {
            timed!(CQL_UNIT_SAMPLES, $i => $op)
        };
        ($samples:expr, $i:ident => $op:expr) => {{
            let mut latencies = Latencies::default();
            for $i in 0..$samples as u64 {
                let began = Instant::now();
                $op;
                latencies.record(began.elapsed());
            }
            latencies
        }};
    }

    // The checkpoint: its row made first, then read and moved as a commit does.
    let checkpoints = format!("{keyspace}.checkpoints");
    let insert = cql_prepare(
        session,
        format!(
            "INSERT INTO {checkpoints} (projection, source_partition, position, source_offset) VALUES (?, ?, ?, ?) \
             IF NOT EXISTS"
        ),
        Consistency::LocalQuorum,
    )
    .await?;
    session.execute_unpaged(&insert, ("bench", 0i32, 0i64, 0i64)).await?;
    let read = cql_prepare(
        session,
        format!(
            "SELECT position, source_offset FROM {checkpoints} WHERE projection = ? AND source_partition = ?"
        ),
        Consistency::LocalSerial,
    )
    .await?;
    let latencies = timed!(_i => session.execute_unpaged(&read, ("bench", 0i32)).await?);
    record("read a checkpoint at SERIAL (Paxos)", "1, before any row", latencies);
    let update = cql_prepare(
        session,
        format!(
            "UPDATE {checkpoints} SET position = ?, source_offset = ? WHERE projection = ? AND source_partition = ? \
             IF position = ? AND source_offset = ?"
        ),
        Consistency::LocalQuorum,
    )
    .await?;
    let latencies = timed!(i => {
        let (from, to) = (i as i64, i as i64 + 1);
        session.execute_unpaged(&update, (to, to, "bench", 0i32, from, from)).await?
    });
    record("move a checkpoint by compare-and-set (Paxos)", "1, after the rows", latencies);

    // A shared row, written blind as the store writes one: its revision read
    // at SERIAL, then a compare-and-set on it.
    // The sales view: the shared view the rebuild writes most.
    let sales = shop_read::views::SALES.name();
    if let Some(shared) =
        shop::app::shop_view_specs().into_iter().find(|spec| spec.shared && spec.name == sales)
    {
        let table = format!("{keyspace}.{}", cql_table(&shared.name));
        let body = &sample[0].body;
        let insert = cql_prepare(
            session,
            format!("INSERT INTO {table} (p, c, body, rev, marks) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"),
            Consistency::LocalQuorum,
        )
        .await?;
        let marks = BTreeMap::from([(0i32, 0i64)]);
        session.execute_unpaged(&insert, ("bench", "bench", body, 0i64, &marks)).await?;
        let revision = cql_prepare(
            session,
            format!("SELECT rev FROM {table} WHERE p = ? AND c = ?"),
            Consistency::LocalSerial,
        )
        .await?;
        let update = cql_prepare(
            session,
            format!(
                "UPDATE {table} SET body = ?, rev = ?, marks = marks + ? WHERE p = ? AND c = ? IF rev = ?"
            ),
            Consistency::LocalQuorum,
        )
        .await?;
        let latencies = timed!(i => {
            let rows = session.execute_unpaged(&revision, ("bench", "bench")).await?.into_rows_result()?;
            let current = rows.maybe_first_row::<(Option<i64>,)>()?.and_then(|(rev,)| rev).unwrap_or(0);
            let marks = BTreeMap::from([(0i32, i as i64 + 1)]);
            session.execute_unpaged(&update, (body, current + 1, &marks, "bench", "bench", current)).await?
        });
        record(
            &format!("write a shared row ({}): serial read + compare-and-set", shared.name),
            &format!("1 per row of a shared view, {CQL_IN_FLIGHT} in flight"),
            latencies,
        );

        // A commit's worth of shared rows in one partition (the sales view
        // has one, `all`): as the store writes them, one at a time, and as
        // one conditional batch.
        let keys: Vec<String> = (0..CQL_BATCH_ROWS).map(|k| format!("bench-{k:03}")).collect();
        for key in &keys {
            session.execute_unpaged(&insert, ("shared", key, body, 0i64, &marks)).await?;
        }
        let shared_write = Shared { session, revision: &revision, update: &update, body };
        let latencies = timed!(CQL_SHARED_SAMPLES, i => {
            stream::iter(&keys)
                .map(|key| shared_write.write_blind(key, i as i64 + 1))
                .buffer_unordered(CQL_IN_FLIGHT)
                .try_collect::<Vec<()>>()
                .await?
        });
        record(
            &format!(
                "{CQL_BATCH_ROWS} shared rows of one partition, each as above, {CQL_IN_FLIGHT} in flight"
            ),
            "a sales commit's rows (the store's way)",
            latencies,
        );
        let latencies = timed!(CQL_SHARED_SAMPLES, i => {
            for key in &keys {
                shared_write.write_blind(key, i as i64 + 1).await?;
            }
        });
        record(
            &format!("{CQL_BATCH_ROWS} shared rows of one partition, each as above, one at a time"),
            "(an alternative: no contention within the partition)",
            latencies,
        );
        let revisions = cql_prepare(
            session,
            format!("SELECT c, rev FROM {table} WHERE p = ? AND c IN ?"),
            Consistency::LocalSerial,
        )
        .await?;
        let latencies = timed!(CQL_SHARED_SAMPLES, i => {
            let rows = session.execute_unpaged(&revisions, ("shared", &keys)).await?.into_rows_result()?;
            let current: HashMap<String, i64> = rows
                .rows::<(String, Option<i64>)>()?
                .map(|row| row.map(|(c, rev)| (c, rev.unwrap_or(0))))
                .collect::<Result<_, _>>()?;
            let mut batch = Batch::new(BatchType::Logged);
            batch.set_serial_consistency(Some(SerialConsistency::LocalSerial));
            let marks = BTreeMap::from([(0i32, i as i64 + 1)]);
            let mut values = Vec::with_capacity(keys.len());
            for key in &keys {
                let at = current.get(key).copied().unwrap_or(0);
                batch.append_statement(update.clone());
                values.push((body, at + 1, &marks, "shared", key, at));
            }
            let outcome = session.batch(&batch, values).await?.into_rows_result()?;
            anyhow::ensure!(applied(&outcome)?, "a conditional batch did not apply");
        });
        record(
            &format!(
                "the same {CQL_BATCH_ROWS} rows as one conditional batch: one SELECT … IN at SERIAL, one BATCH of \
                 UPDATE … IF rev = ?"
            ),
            "(an alternative: one Paxos round per partition and commit)",
            latencies,
        );
    }

    // Owned rows, as the store writes them, and a document read.
    let puts = cql_puts(store).await?;
    let doc = |i: u64| &sample[(i % sample.len() as u64) as usize];
    let base = 1u64 << 40;
    for (kind, what, per_commit) in [
        (BatchType::Logged, "a logged batch of 64 rows", "1 per 64 rows of owned views, 8 in flight"),
        (BatchType::Unlogged, "an unlogged batch of 64 rows", "none (the store's batches are logged)"),
    ] {
        let latencies = timed!(i => {
            let mut batch = Batch::new(kind);
            let mut values = Vec::with_capacity(CQL_BATCH_ROWS);
            for k in 0..CQL_BATCH_ROWS as u64 {
                let n = i * CQL_BATCH_ROWS as u64 + k;
                batch.append_statement(puts[&doc(n).view].clone());
                values.push(put_values(doc(n), base + n));
            }
            session.batch(&batch, values).await?
        });
        record(what, per_commit, latencies);
    }
    let latencies =
        timed!(i => session.execute_unpaged(&puts[&doc(i).view], put_values(doc(i), base + i)).await?);
    record("one timestamped row (UPDATE … USING TIMESTAMP)", "a commit of a single owned row", latencies);
    let mut gets = HashMap::new();
    for spec in shop::app::shop_view_specs() {
        let cql = format!(
            "SELECT body, rev, marks FROM {keyspace}.{} WHERE p = ? AND c = ?",
            cql_table(&spec.name)
        );
        gets.insert(spec.name, cql_prepare(session, cql, Consistency::LocalQuorum).await?);
    }
    let latencies = timed!(i => {
        let doc = doc(i);
        session.execute_unpaged(&gets[&doc.view], (&doc.partition, &doc.clustering)).await?
    });
    record(
        "read a document (SELECT body, rev, marks)",
        "1 per document a batch reads, 64 in flight",
        latencies,
    );
    Ok(costs)
}
