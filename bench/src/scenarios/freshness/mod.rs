//! `freshness`: write-to-visible lag — a command acknowledged (durably) → a
//! query shows it — in one process wired as `shop serve` wires it
//! (`--via`):
//! - `embedded` (the default): the SQLite event store (`synchronous=FULL`),
//!   the four projectors tailing it into a SQLite read store and notifying a
//!   shared progress board after every batch, the checkout saga, and queries;
//! - `kafka`: the distributed shape's path, every role in this process: the
//!   PostgreSQL event store, the relay (under a PostgreSQL lease) publishing
//!   it through `KafkaSink` to a topic of the run's own (`--partitions`,
//!   default 8), the four projectors each a consumer group (`KafkaSource`)
//!   writing to a PostgreSQL read store and notifying the progress board, the
//!   checkout saga (leased), and queries. Every event goes through the real
//!   broker; the databases (events, views) and the topic are made for the run
//!   and removed afterwards. The report is `freshness-kafka`.
//! - `cassandra`: the same path into the Cassandra read store (the seed's
//!   stack: PostgreSQL, Kafka, Cassandra): the projectors write to a keyspace
//!   of the run's own on `--cassandra-nodes` (made with the shop's view
//!   specs, dropped afterwards), and queries read it. The report is
//!   `freshness-cassandra`.
//!
//! First the maximum is found, unless `--max-rate` gives it: concurrency
//! steps up in closed loop, with the projectors and the saga running; before
//! each step the projectors catch up, and after it the time they take to
//! absorb the step's events is measured. What is stepped (`--max-of`):
//! - `visible` (the default): the very requests measured below — a command,
//!   the wait until it is visible, the query, the query again — so the
//!   maximum is the rate of write-to-visible cycles the shop sustains, with
//!   the projections keeping up by construction;
//! - `commands`: add-item commands alone; the write side then runs far ahead
//!   of the projections, and fractions of that rate above what the
//!   projections absorb measure a growing backlog, not freshness;
//! - `pipeline`: add-item commands alone, but the maximum is the step's
//!   events over the step and its catch-up.
//!
//! Then, at each fraction (`--fractions`, default 25, 50 and
//! 75 %), an open-loop run: each request sends an add-item through
//! `ShopCommands` and, once it is acknowledged, waits until the carts
//! projection has absorbed the command's position, then queries the cart
//! (`ShopQueries::cart`) and checks that the view holds the command's stream
//! version. The lag is from the acknowledgement to that answer. Before each
//! run the projectors catch up with the event store (over Kafka: the relay
//! has published the event store's head, and every projection has absorbed
//! the last event published to each partition).
//!
//! How a request waits (`--wait`):
//! - `freshness`: `parallax_runtime::Freshness::wait` on the command's
//!   consistency token (the log partition of the cart's stream and the
//!   command's position), as the query API does for `?consistent_with=`:
//!   the projectors publish each committed checkpoint on the shared progress
//!   board and wake the waiters.
//! - `poll`: one watcher task reads the carts projection's checkpoints from
//!   the read store every `--poll-ms` and publishes them; requests wait on
//!   that in memory — the lag as a process without the projectors (reading
//!   only the read store) would see it.
//! - `both` (the default): `freshness` at every fraction, `poll` too at the
//!   fraction nearest 50 %.
//!
//! Baseline, same run: right after, the same query again, alone — the lower
//! bound of any write-to-visible lag (a lag can't be shorter than the query
//! that shows it). `lag / query` says how many query times the wait adds.

mod measure;
mod report;
pub(crate) mod wiring;

use std::time::Duration;

use serde::Serialize;

use self::measure::Runs;
use self::report::Measured;
use self::wiring::{Scratch, Shop};
use super::Context;
use crate::load::{self, LoadArgs, LoadDefaults, Sequence};
use crate::report::Report;
use crate::servers::{
    CassandraArgs, KafkaArgs, PostgresArgs, RunId, ScratchDb, ScratchKeyspace, ScratchTopic,
};
use crate::workload::{self, CartArgs, InProcess, Then};

const NAME: &str = "freshness";

/// How long a request waits for its token at most.
const WAIT: Duration = Duration::from_secs(10);

/// Options of `freshness`.
///
/// Defaults: concurrency steps 4 to 2048, p99 limit 100 ms, 1024 requests in
/// flight at most at the fixed rates.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub cart: CartArgs,
    /// What a cart slot does after its cart's last item: check it out (the
    /// checkout also sets the saga to work, where it runs), or start a new cart.
    #[arg(long, value_enum, default_value_t = Then::NewCart)]
    pub then: Then,
    /// The maximum command rate, commands/s (skips the search).
    #[arg(long)]
    pub max_rate: Option<f64>,
    /// Fractions of the maximum to measure at.
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,0.75")]
    pub fractions: Vec<f64>,
    /// The maximum the fractions are of: the rate of whole write-to-visible
    /// cycles (closed loop), of commands alone, or of commands until the
    /// projectors have caught up.
    #[arg(long, value_enum, default_value_t = MaxOf::Visible)]
    pub max_of: MaxOf,
    /// How a request waits for its command to become visible.
    #[arg(long, value_enum, default_value_t = Wait::Both)]
    pub wait: Wait,
    /// How often the `poll` watcher reads the checkpoint, milliseconds.
    #[arg(long, default_value_t = 1.0)]
    pub poll_ms: f64,
    /// The path from the command to the view.
    #[arg(long, value_enum, default_value_t = Via::Embedded)]
    pub via: Via,
    /// Where PostgreSQL is (`--via kafka`, `--via cassandra`).
    #[command(flatten)]
    #[serde(flatten)]
    pub postgres: PostgresArgs,
    /// Where Kafka is (`--via kafka`, `--via cassandra`).
    #[command(flatten)]
    #[serde(flatten)]
    pub kafka: KafkaArgs,
    /// Where Cassandra is (`--via cassandra`).
    #[command(flatten)]
    #[serde(flatten)]
    pub cassandra: CassandraArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
}

/// The path from a command to the view that shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// SQLite event store, projectors tailing it, SQLite read store.
    Embedded,
    /// PostgreSQL event store, relay, Kafka, projectors as consumer groups, PostgreSQL read store.
    Kafka,
    /// The same through Kafka, into the Cassandra read store.
    Cassandra,
}

impl Via {
    /// The report's name.
    fn report_name(self) -> &'static str {
        match self {
            Via::Embedded => NAME,
            Via::Kafka => "freshness-kafka",
            Via::Cassandra => "freshness-cassandra",
        }
    }

    /// The databases it needs on the PostgreSQL server.
    fn databases(self) -> &'static [&'static str] {
        match self {
            Via::Embedded => &[],
            Via::Kafka => &["events", "views"],
            Via::Cassandra => &["events"],
        }
    }
}

/// Which maximum the fractions are of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaxOf {
    /// Write-to-visible cycles: command, wait until visible, query (closed loop).
    Visible,
    /// The command rate (closed loop, projectors running but lagging).
    Commands,
    /// Events appended / (step + time the projectors take to catch up).
    Pipeline,
}

/// How a request waits for its command to become visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wait {
    /// `Freshness::wait` on the command's token (as `?consistent_with=` does).
    Freshness,
    /// One watcher polls the read store's checkpoint every `--poll-ms`; requests wait in memory.
    Poll,
    /// `freshness` at every fraction, `poll` too at the fraction nearest 50 %.
    Both,
}

const DEFAULTS: LoadDefaults =
    LoadDefaults { min_concurrency: 4, max_concurrency: 2048, fixed_concurrency: 1024, p99_limit_ms: 100.0 };

/// Runs the scenario; over Kafka, on databases, a topic and (Cassandra) a
/// keyspace of its own, removed afterwards.
pub async fn run(args: Args, context: &Context) -> anyhow::Result<Report> {
    let poll = Duration::from_secs_f64(args.poll_ms.max(0.1) / 1000.0);
    let mut scratch = Scratch::default();
    let report = async {
        let shop = match args.via {
            Via::Embedded => Shop::embedded(context, poll)?,
            Via::Kafka | Via::Cassandra => {
                let run = RunId::new();
                for role in args.via.databases() {
                    scratch.databases.push(ScratchDb::create(&args.postgres.postgres_url, &run, role).await?);
                }
                if args.via == Via::Cassandra {
                    scratch.keyspaces.push(ScratchKeyspace::new(&args.cassandra, &run, "views"));
                }
                scratch.topic = Some(ScratchTopic::create(&args.kafka, &run).await?);
                Shop::over_kafka((args.via, args.postgres.pool_size, true), &scratch, &run, poll).await?
            }
        };
        measure(&args, context, shop).await
    }
    .await;
    scratch.remove().await;
    report
}

/// Finds the maximum, measures the lag at its fractions, and stops `shop`.
async fn measure(args: &Args, context: &Context, shop: Shop) -> anyhow::Result<Report> {
    let load = args.load.resolve(DEFAULTS);
    workload::register_products(&shop.commands, args.cart.products).await?;
    let plan = args.cart.plan(args.then, 1000);
    let sequence = Sequence::default();
    load::warm_up(&InProcess { commands: shop.commands.clone(), plan }, args.cart.carts, 64, &sequence)
        .await?;

    let runs = Runs { shop: &shop, load: &load, plan, sequence: &sequence };
    let maximum = measure::maximum(args, &runs).await?;
    let concurrency = load.concurrency.unwrap_or(load.fixed_floor);
    let middle = args.fractions.iter().copied().min_by(|a, b| (a - 0.5).abs().total_cmp(&(b - 0.5).abs()));
    let mut levels = Vec::new();
    for run in fixed_runs(args, middle) {
        levels.push(measure::level(args, &runs, maximum.max, concurrency, run).await?);
    }
    shop.stop().await;

    let measured =
        Measured { args, plan, load: &load, concurrency, middle, maximum: &maximum, levels: &levels };
    Ok(report::report(context, &measured))
}

/// The open-loop runs: each fraction with each way of waiting `--wait`
/// asks for (`both`: `poll` at the `middle` fraction only).
fn fixed_runs(args: &Args, middle: Option<f64>) -> Vec<(f64, Wait)> {
    let mut runs = Vec::new();
    for &fraction in &args.fractions {
        match args.wait {
            Wait::Freshness => runs.push((fraction, Wait::Freshness)),
            Wait::Poll => runs.push((fraction, Wait::Poll)),
            Wait::Both => {
                runs.push((fraction, Wait::Freshness));
                if Some(fraction) == middle {
                    runs.push((fraction, Wait::Poll));
                }
            }
        }
    }
    runs
}

/// How a request waited, as the report names it.
fn wait_name(wait: Wait) -> &'static str {
    match wait {
        Wait::Freshness => "Freshness::wait",
        Wait::Poll => "poll",
        Wait::Both => "both",
    }
}
