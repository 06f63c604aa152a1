//! The scenarios, one module each: its options (`Args`) and its `run`,
//! which measures the shop and its baseline in the same run and returns the
//! report. A new scenario is a new module and a new variant of [`Scenario`];
//! another store or path of an existing one, a variant of its choice
//! (`--store`, `--via`).

use std::path::PathBuf;

use crate::machine::Machine;
use crate::report::Report;

pub mod commands_embedded;
pub mod commands_postgres;
pub mod commands_http;
pub mod queries;
pub mod projection_rebuild;
pub mod freshness;
pub mod scale_out;
pub mod pipeline;
pub mod read_heavy;

/// What every scenario gets.
pub struct Context {
    /// The machine, fsync rate measured.
    pub machine: Machine,
    /// This run's data folder (removed afterwards).
    pub data_dir: PathBuf,
}

/// A scenario and its options.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Scenario {
    /// In-process commands (add item, check out) through ShopCommands over the
    /// SQLite event store, durable ack; baseline: plain batched INSERTs of the
    /// same rows, same pragmas, same batch size.
    ///
    /// Defaults: search from 16 to 2048 tasks, p99 limit 100 ms; fixed rate at
    /// half the maximum with at least 256 tasks.
    CommandsEmbedded(commands_embedded::Args),
    /// The same commands through ShopCommands over the PostgreSQL event store
    /// (group commit), durable ack; baselines: plain batched INSERTs of the
    /// same rows (same batch size, as many connections as the store's
    /// writers), and the same cart written with cqrs-es over postgres-es (the
    /// peer, a process of its own), at the same steps and the same fixed rate.
    ///
    /// Defaults: search from 16 to 2048 tasks, p99 limit 100 ms; fixed rate at
    /// half the maximum with at least 256 tasks. Each run makes databases of
    /// its own on --postgres-url and drops them; the peer is built first
    /// (bench/peer-cqrs-es) unless --peer-bin or --no-peer.
    CommandsPostgres(commands_postgres::Args),
    /// Add-item commands over HTTP against `shop serve`; baselines: GET /health
    /// at the same concurrency, and the in-process path.
    ///
    /// Defaults: search from 8 to 1024 connections, p99 limit 100 ms; fixed
    /// rate at half the maximum with at least 128 connections. Starts
    /// target/release/shop (built first) unless --shop-bin or --in-process.
    CommandsHttp(commands_http::Args),
    /// GET cart by id and GET orders by customer over HTTP against a filled
    /// `shop serve`; baseline: GET /health.
    ///
    /// Defaults: search from 1 to 512 connections, p99 limit 50 ms; fixed rate
    /// at half the lower of the two queries' maxima, the same for all three
    /// targets, with at least 64 connections.
    Queries(queries::Args),
    /// Every shop view rebuilt from the SQLite event store into a fresh read
    /// store (--store sqlite, the default, postgres or cassandra); baseline:
    /// plain batched upserts of as many documents into the same kind of store
    /// (Cassandra: the store's timestamped writes in logged batches of 64, 8
    /// in flight, then unlogged batches and single writes).
    ///
    /// Generates a realistic history of --events events first (not measured).
    /// With PostgreSQL or Cassandra, the report is projection-rebuild-postgres
    /// or projection-rebuild-cassandra.
    ProjectionRebuild(projection_rebuild::Args),
    /// Write-to-visible lag in-process at 25, 50 and 75 % of the maximum
    /// command rate, embedded (the default) or through Kafka (--via kafka:
    /// PostgreSQL event store, relay, Kafka, projectors as consumer groups,
    /// PostgreSQL read store; report freshness-kafka; --via cassandra: the
    /// same into the Cassandra read store; report freshness-cassandra);
    /// baseline: the query alone.
    ///
    /// Defaults: the maximum is the rate of whole write-to-visible cycles
    /// (closed loop, 4 to 2048 tasks, p99 limit 100 ms); 1024 requests in
    /// flight at most at the fractions. --mode and --rate do not apply: use
    /// --max-rate, --max-of and --fractions.
    Freshness(freshness::Args),
    /// The distributed shape with every role in `shop serve` processes of its
    /// own (PostgreSQL event store, Kafka, PostgreSQL views), at 1 and 2
    /// processes of each scalable role (--processes): catch-up of a backlog
    /// of --backlog events (default 500,000) by the relay, then by the
    /// projectors; GET cart and GET orders by customer against the query
    /// processes; add-item commands against the command processes. Beside
    /// throughput and latency, the CPU per operation of every process and
    /// server, from /proc; baseline: the first process count.
    ///
    /// Defaults: commands from 16 to 512 connections (p99 limit 100 ms),
    /// queries from 8 to 256 (50 ms); fixed rate at half the first count's
    /// maximum, the same for every count, at least 64 connections. Starts
    /// `target/<profile>/shop` (built first, the bench's profile) unless
    /// `--shop-bin`; makes databases and a topic of its own and removes them.
    ScaleOut(scale_out::Args),
    /// Open-loop commands (add items, check out) over HTTP into the
    /// distributed shape, every role a `shop serve` process of its own:
    /// PostgreSQL event store, relay, Kafka, saga, projectors into
    /// PostgreSQL views (--store postgres) or Cassandra (--store cassandra;
    /// report pipeline-cassandra), at rising --rates. Per rate: commands
    /// acknowledged/s, events projected/s, each event's lag from its append
    /// to its view (p50, p99, from the projector's histogram), the CPU of
    /// every process and of PostgreSQL per client. The figure: the highest
    /// rate whose lag p99 stays under 1 s; baseline: commands-postgres's
    /// maximum, same run.
    ///
    /// Defaults: rates 250 to 6,000/s, 256 connections, stop at the first
    /// rate that fails; the baseline's search from 16 to 2048 tasks.
    Pipeline(pipeline::Args),
    /// 95 % reads and 5 % writes at rising rates, the same shop data two
    /// ways on the same PostgreSQL: a normalized schema whose reads are
    /// joins (a customer's orders with lines and names, a cart with names
    /// and prices) and an aggregate (sales per product), against Parallax's
    /// views (PostgreSQL event store, relay, Kafka, projectors, in this
    /// process). Reports each side's read and write latencies and
    /// throughput, and the staleness Parallax pays.
    ///
    /// Defaults: a history of 5,600,000 events (1,043,549 order lines),
    /// rates 100 to 10,000/s, 16 workers, reads' p99 limit 100 ms.
    ReadHeavy(read_heavy::Args),
}

impl Scenario {
    /// The scenario's name, as on the command line and in the results' file names.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::CommandsEmbedded(_) => "commands-embedded",
            Scenario::CommandsPostgres(_) => "commands-postgres",
            Scenario::CommandsHttp(_) => "commands-http",
            Scenario::Queries(_) => "queries",
            Scenario::ProjectionRebuild(_) => "projection-rebuild",
            Scenario::Freshness(_) => "freshness",
            Scenario::ScaleOut(_) => "scale-out",
            Scenario::Pipeline(_) => "pipeline",
            Scenario::ReadHeavy(_) => "read-heavy",
        }
    }

    /// Runs it.
    pub async fn run(self, context: &Context) -> anyhow::Result<Report> {
        match self {
            Scenario::CommandsEmbedded(args) => commands_embedded::run(args, context).await,
            Scenario::CommandsPostgres(args) => commands_postgres::run(args, context).await,
            Scenario::CommandsHttp(args) => commands_http::run(args, context).await,
            Scenario::Queries(args) => queries::run(args, context).await,
            Scenario::ProjectionRebuild(args) => projection_rebuild::run(args, context).await,
            Scenario::Freshness(args) => freshness::run(args, context).await,
            Scenario::ScaleOut(args) => scale_out::run(args, context).await,
            Scenario::Pipeline(args) => pipeline::run(args, context).await,
            Scenario::ReadHeavy(args) => read_heavy::run(args, context).await,
        }
    }
}

/// `a / b`, 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}
