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
//!   durable transaction (as the read store commits), over as many connections as projectors commit concurrently,
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

mod baseline;
mod cassandra;
mod measure;
mod report;
mod views;

use serde::Serialize;

use self::report::Measured;
use self::views::Views;
use super::Context;
use crate::machine::{cmdline_cpu_secs, process_cpu_secs};
use crate::report::Report;
use crate::servers::{
    self, CassandraArgs, PostgresArgs, RunId, ScratchDb, ScratchKeyspace, CASSANDRA_PROCESS,
};

const NAME: &str = "projection-rebuild";

/// The read store's schema, so the baseline's file is the same.
const READ_STORE_SCHEMA: &str = include_str!("../../../../crates/parallax-sqlite/src/sql/read_store.sql");

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

/// Generates the history, rebuilds the views into `views`, measures the baseline.
async fn rebuild(args: &Args, context: &Context, views: &Views) -> anyhow::Result<Report> {
    let (store, generated) = measure::generate(args, context).await?;
    let (rebuilt, documents) = measure::rebuild(args, views, &store, generated.head).await?;
    drop(store);
    let baseline = measure::baseline(args, views, &rebuilt, documents, generated.head).await?;
    let measured = Measured { args, views, generated: &generated, rebuilt: &rebuilt, baseline: &baseline };
    Ok(report::report(context, &measured))
}
