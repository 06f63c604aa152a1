//! `pipeline`: the distributed shape end to end, each role in a `shop
//! serve` process of its own ([`crate::processes`]): open-loop cart
//! commands (the add-item/checkout mix of the command scenarios, over
//! HTTP) into the command process and its PostgreSQL event store, the relay
//! publishing them to a Kafka topic of the run's own, the checkout saga,
//! and one projector process with the four projections as consumer groups,
//! into PostgreSQL views (`--store postgres`) or a Cassandra keyspace
//! (`--store cassandra`).
//!
//! At each rate of `--rates` (ascending), for `--duration-secs`:
//! - **commands acknowledged/s** and their latency (from each request's
//!   intended start);
//! - **the lag of every event** from its `recorded_at` (stamped by the
//!   command process when its handler decided it, just before the append
//!   commits; the acknowledgement follows the commit) to the commit of the
//!   projector batch that applied it to a view: the projector process's
//!   histogram `parallax_projector_event_lag_seconds`, read before the run
//!   and after the projectors have absorbed everything the run (and the
//!   saga after it) appended. Per event and per projection that handles
//!   it, not by polling; as precise as the histogram's buckets (the p99's
//!   side of 1 s is exact: 1 s is a bucket bound);
//! - **events projected/s**: those applications over the run and the
//!   time the projectors took to drain after it;
//! - **the CPU of every process** over the run, from `/proc`: each shop
//!   process, PostgreSQL's backends by whom they serve (each shop process
//!   names its connections after itself: `application_name`) and the
//!   server's own processes, Kafka, Cassandra, the bench; and each
//!   database's commits (`pg_stat_database`).
//!
//! A rate passes when the lag p99 stays under `--lag-limit-secs` (1 s),
//! the acknowledged rate is within 5 % of the offered one, fewer than 1 %
//! of commands failed and the projectors drained within `--drain-secs`.
//! The rates stop after the first that fails (`--past-limit` for more).
//!
//! Baseline, same run: `commands-postgres`'s maximum — the same commands
//! in-process through `ShopCommands` over the PostgreSQL event store, no
//! relay, projectors nor saga (closed loop, concurrency doubling), in a
//! database of its own, after the pipeline's processes are stopped. The
//! figure is the highest passing rate beside it.

mod lag;
mod report;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use parallax_core::ReadStore;
use parallax_postgres::{PgEventStore, PgReadStore, PgStoreOptions};
use serde::Serialize;
use shop::commands::ShopCommands;
use sqlx::PgPool;
use tokio::time::Instant;

use self::lag::LagHistogram;
use super::scale_out::{absorbed, partition_ends};
use super::Context;
use crate::http::{Client, ClientKind, ShopBinaryArgs};
use crate::load::{self, LoadArgs, LoadDefaults, Search, Sequence};
use crate::machine::{cmdline_cpu_secs, process_cpu_secs};
use crate::processes::{self, micros_per, CpuSnapshot, CpuUse, DbActivity, PgProcesses, Shape, ShopProcess};
use crate::report::Report;
use crate::servers::{
    self, CassandraArgs, KafkaArgs, PostgresArgs, RunId, ScratchDb, ScratchKeyspace, ScratchTopic,
    CASSANDRA_PROCESS,
};
use crate::stats::Stats;
use crate::workload::{self, CartArgs, InProcess, OverHttp, Then};

const NAME: &str = "pipeline";

/// The processes, by name and roles.
const PROCESSES: [(&str, &str); 4] =
    [("command", "command"), ("relay", "relay"), ("saga", "saga"), ("projector", "projector")];

/// Where the views are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// A PostgreSQL database of the run's own.
    Postgres,
    /// A Cassandra keyspace of the run's own.
    Cassandra,
}

/// Options of `pipeline`.
///
/// Defaults: 256 connections at each rate; the baseline's search from 16
/// to 2048 tasks with a p99 limit of 100 ms (`commands-postgres`'s).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Args {
    /// Where the projectors write the views.
    #[arg(long, value_enum, default_value_t = Store::Postgres)]
    pub store: Store,
    /// Offered command rates, ascending, commands/s; each runs open loop
    /// for --duration-secs.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000,1500,2000,3000,4000,6000")]
    pub rates: Vec<f64>,
    /// The lag p99 a rate must stay under, seconds (a bucket bound of the
    /// lag histogram: 0.5, 0.75, 1, 1.5, 2, 3, 5 …).
    #[arg(long, default_value_t = 1.0)]
    pub lag_limit_secs: f64,
    /// Rates still tried after the first that fails (0: stop there).
    #[arg(long, default_value_t = 0)]
    pub past_limit: usize,
    /// How long the projectors may take to absorb a run's events after it,
    /// seconds; a rate whose events are not all in the views by then fails.
    #[arg(long, default_value_t = 60.0)]
    pub drain_secs: f64,
    #[command(flatten)]
    #[serde(flatten)]
    pub cart: CartArgs,
    /// What a cart slot does after its last item: check the cart out (the
    /// saga then places, reserves and confirms the order), or start a new
    /// cart (add-items only: the saga idles).
    #[arg(long, value_enum, default_value_t = Then::Checkout)]
    pub then: Then,
    /// Customers the checkouts are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub customers: u64,
    /// Skip the baseline (commands-postgres's maximum).
    #[arg(long)]
    pub no_baseline: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub shop: ShopBinaryArgs,
    /// A setting of every shop process, `KEY=VALUE` with the configuration
    /// file's dotted key (`--set log.batch_gather_ms=20`); repeatable.
    #[arg(long = "set", value_parser = crate::processes::setting_env)]
    pub settings: Vec<(String, String)>,
    /// Where PostgreSQL is; `--pool-size` is each process's pool per database.
    #[command(flatten)]
    #[serde(flatten)]
    pub postgres: PostgresArgs,
    /// Where Kafka is.
    #[command(flatten)]
    #[serde(flatten)]
    pub kafka: KafkaArgs,
    /// Where Cassandra is (`--store cassandra`).
    #[command(flatten)]
    #[serde(flatten)]
    pub cassandra: CassandraArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
}

const DEFAULTS: LoadDefaults =
    LoadDefaults { min_concurrency: 16, max_concurrency: 2048, fixed_concurrency: 256, p99_limit_ms: 100.0 };

/// One rate's figures.
#[derive(Debug, Clone, Serialize)]
struct Level {
    /// The commands: offered and acknowledged rate, latency.
    stats: Stats,
    /// Every party's CPU over the run.
    cpu: CpuUse,
    /// The Cassandra node's CPU seconds over the run (`--store cassandra`).
    cassandra_secs: Option<f64>,
    /// Events the run appended (commands, and the saga's during the run).
    events: u64,
    /// The command and saga processes' appends over the run: (process,
    /// append requests, group commits), from their event stores'
    /// `parallax_event_store_group_size` (a command refused for a stale
    /// cache is appended again: more requests than commands).
    appends: Vec<(String, f64, f64)>,
    /// Commits, rows and rollbacks of each database of the run over the run.
    databases: Vec<(String, DbActivity)>,
    /// Whether the projectors absorbed everything within `--drain-secs`.
    drained: bool,
    /// How long that took after the run.
    drain_secs: f64,
    /// Each event's lag, every projection.
    lag: LagHistogram,
    passed: bool,
}

/// The pipeline's processes and what the bench reads beside them.
struct Pipeline {
    shape: Shape,
    events: PgPool,
    views: Arc<dyn ReadStore>,
    postgres: PgProcesses,
    /// (role, name) of the run's PostgreSQL databases the pipeline uses.
    databases: Vec<(String, String)>,
    processes: Vec<ShopProcess>,
    command: Client,
    projector: Client,
    sequence: Sequence,
}

/// Everything the run measured.
struct Measured {
    levels: Vec<Level>,
    baseline: Option<Search>,
    /// PostgreSQL's CPU µs per command over the baseline's search (every
    /// postgres process of the machine).
    baseline_postgres_per_command: Option<f64>,
    concurrency: usize,
    warm_up_secs: f64,
}

/// Runs the scenario on databases, a topic and (Cassandra) a keyspace of
/// its own, removed afterwards.
pub async fn run(args: Args, context: &Context) -> anyhow::Result<Report> {
    anyhow::ensure!(
        !args.rates.is_empty() && args.rates[0] > 0.0 && args.rates.windows(2).all(|w| w[0] < w[1]),
        "--rates takes ascending positive rates, e.g. 250,500,1000"
    );
    let binary = args.shop.binary().await?;
    let run = RunId::new();
    let (mut databases, mut topic, mut keyspaces) = (Vec::new(), None, Vec::new());
    let report = async {
        let url = &args.postgres.postgres_url;
        databases.push(ScratchDb::create(url, &run, "events").await?);
        let cassandra = match args.store {
            Store::Postgres => {
                databases.push(ScratchDb::create(url, &run, "views").await?);
                None
            }
            Store::Cassandra => {
                keyspaces.push(ScratchKeyspace::new(&args.cassandra, &run, "views"));
                Some((args.cassandra.cassandra_nodes.clone(), keyspaces[0].config.keyspace.clone()))
            }
        };
        let made = ScratchTopic::create(&args.kafka, &run).await?;
        let shape = Shape {
            binary,
            events_url: databases[0].url.clone(),
            views_url: databases.get(1).map_or_else(String::new, |db| db.url.clone()),
            brokers: args.kafka.kafka_brokers.clone(),
            topic: made.config.topic.clone(),
            partitions: args.kafka.partitions,
            group: format!("parallax-bench-{run}"),
            pool_size: args.postgres.pool_size,
            dir: context.data_dir.join("processes"),
            cassandra,
            settings: args.settings.clone(),
        };
        topic = Some(made);
        std::fs::create_dir_all(&shape.dir)?;
        shape.migrate().await?;
        let views: Arc<dyn ReadStore> = match keyspaces.first() {
            Some(keyspace) => Arc::new(keyspace.connect().await?),
            None => Arc::new(PgReadStore::new(parallax_postgres::pool(&shape.views_url, 2).await?)),
        };
        let roles = ["events", "views"];
        let names: Vec<(String, String)> =
            roles.iter().zip(&databases).map(|(role, db)| ((*role).to_owned(), db.name.clone())).collect();
        let events = parallax_postgres::pool(&shape.events_url, 4).await?;
        let admin = parallax_postgres::pool(url, 2).await?;
        let postgres = PgProcesses::new(admin, names.iter().map(|(_, name)| name.clone()).collect());
        let measured = measure(&args, shape, events, views, postgres, names).await;
        let measured = match (measured, args.no_baseline) {
            (Ok(mut measured), false) => {
                databases.push(ScratchDb::create(url, &run, "commands").await?);
                let db = databases.last().context("the baseline's database")?;
                let (search, postgres) = baseline(&args, &db.url).await?;
                let commands: u64 = search.steps.iter().map(|step| step.ok).sum();
                measured.baseline_postgres_per_command = Some(micros_per(postgres, commands));
                measured.baseline = Some(search);
                Ok(measured)
            }
            (measured, _) => measured,
        }?;
        Ok(report::report(&args, context, &measured))
    }
    .await;
    servers::clean_up(databases, topic).await;
    servers::drop_keyspaces(keyspaces).await;
    report
}

/// Starts the processes, runs every rate, stops them.
async fn measure(
    args: &Args,
    shape: Shape,
    events: PgPool,
    views: Arc<dyn ReadStore>,
    postgres: PgProcesses,
    databases: Vec<(String, String)>,
) -> anyhow::Result<Measured> {
    let mut processes = Vec::new();
    for (name, role) in PROCESSES {
        processes.push(shape.start(name, &[role]).await?);
    }
    let command = processes[0].client(ClientKind::Hyper)?;
    let projector = processes[3].client(ClientKind::Hyper)?;
    let pipeline = Pipeline {
        shape,
        events,
        views,
        postgres,
        databases,
        processes,
        command,
        projector,
        sequence: Sequence::default(),
    };
    let result = levels(args, &pipeline).await;
    processes::stop_all(pipeline.processes).await?;
    result
}

/// The warm-up, then each rate until one fails (and `--past-limit` more).
async fn levels(args: &Args, pipeline: &Pipeline) -> anyhow::Result<Measured> {
    let load = args.load.resolve(DEFAULTS);
    let concurrency = load.concurrency.unwrap_or(load.fixed_floor);
    let began = Instant::now();
    workload::register_products_http(&pipeline.command, args.cart.products).await?;
    let plan = args.cart.plan(args.then, args.customers);
    let target = OverHttp { client: pipeline.command.clone(), plan };
    load::warm_up(&target, args.cart.carts, 64, &pipeline.sequence).await?;
    anyhow::ensure!(
        caught_up(pipeline, Duration::from_secs_f64(args.drain_secs.max(60.0))).await?,
        "the projectors did not absorb the warm-up"
    );
    let warm_up_secs = began.elapsed().as_secs_f64();
    eprintln!("  warm-up: products, one command per cart slot, absorbed in {warm_up_secs:.1} s");
    let mut levels = Vec::new();
    let mut failed = 0;
    for &rate in &args.rates {
        let level = level(args, pipeline, &target, rate, concurrency, load.duration).await?;
        eprintln!(
            "    lag p50 {:.1} ms, p99 {:.1} ms over {} events; drained in {:.1} s; {}",
            level.lag.quantile(0.5) * 1000.0,
            level.lag.quantile(0.99) * 1000.0,
            level.lag.count(),
            level.drain_secs,
            if level.passed { "passed" } else { "failed" }
        );
        failed += usize::from(!level.passed);
        levels.push(level);
        if failed > args.past_limit {
            break;
        }
    }
    Ok(Measured { levels, baseline: None, baseline_postgres_per_command: None, concurrency, warm_up_secs })
}

/// One rate: the run, then the drain, and what every party did.
async fn level(
    args: &Args,
    pipeline: &Pipeline,
    target: &OverHttp,
    rate: f64,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Level> {
    let lag_before = LagHistogram::scrape(&pipeline.projector).await?;
    let appends_before = appends(pipeline).await?;
    let head_before = head(&pipeline.events).await?;
    let databases_before = activities(pipeline).await?;
    let processes: Vec<&ShopProcess> = pipeline.processes.iter().collect();
    let cassandra_before = cmdline_cpu_secs(CASSANDRA_PROCESS);
    let cpu_before = CpuSnapshot::take(&processes, &pipeline.postgres).await?;
    let label = format!("commands at {rate:.0}/s");
    let stats = load::fixed_rate(&label, target, rate, concurrency, duration, &pipeline.sequence).await?;
    let cpu = CpuSnapshot::take(&processes, &pipeline.postgres).await?.since(&cpu_before);
    let cassandra_secs =
        (args.store == Store::Cassandra).then(|| cmdline_cpu_secs(CASSANDRA_PROCESS) - cassandra_before);
    let databases_after = activities(pipeline).await?;
    let databases = databases_after
        .iter()
        .zip(&databases_before)
        .map(|((role, after), (_, before))| (role.clone(), after.since(before)))
        .collect();
    let events = head(&pipeline.events).await?.saturating_sub(head_before);
    let appends = appends(pipeline)
        .await?
        .into_iter()
        .zip(appends_before)
        .map(|((name, requests, groups), (_, before_requests, before_groups))| {
            (name, requests - before_requests, groups - before_groups)
        })
        .collect();
    let drained_from = Instant::now();
    let drained = caught_up(pipeline, Duration::from_secs_f64(args.drain_secs)).await?;
    let drain_secs = drained_from.elapsed().as_secs_f64();
    let lag = LagHistogram::scrape(&pipeline.projector).await?.since(&lag_before);
    let kept_up = stats.per_sec >= 0.95 * rate && stats.error_rate() <= 0.01 && stats.unsent == 0;
    let passed = kept_up && drained && lag.fraction_within(args.lag_limit_secs) >= 0.99;
    Ok(Level { stats, cpu, cassandra_secs, events, appends, databases, drained, drain_secs, lag, passed })
}

/// Append requests and group commits so far of the processes that append.
async fn appends(pipeline: &Pipeline) -> anyhow::Result<Vec<(String, f64, f64)>> {
    let mut all = Vec::new();
    for process in pipeline.processes.iter().filter(|p| p.name == "command" || p.name == "saga") {
        let client = process.client(ClientKind::Hyper)?;
        let requests = processes::scrape(&client, "parallax_event_store_group_size_sum").await?;
        let groups = processes::scrape(&client, "parallax_event_store_group_size_count").await?;
        all.push((process.name.clone(), requests, groups));
    }
    Ok(all)
}

/// The event store's head.
async fn head(events: &PgPool) -> anyhow::Result<u64> {
    let head: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
        .fetch_one(events)
        .await
        .context("read the head")?;
    Ok(u64::try_from(head)?)
}

/// Each database's activity so far.
async fn activities(pipeline: &Pipeline) -> anyhow::Result<Vec<(String, DbActivity)>> {
    let mut all = Vec::new();
    for (role, name) in &pipeline.databases {
        all.push((role.clone(), DbActivity::of(&pipeline.events, name).await?));
    }
    Ok(all)
}

/// Waits until every projection has absorbed every event of the event
/// store, with the head unchanged meanwhile (the saga may still append);
/// `false` if that takes longer than `timeout`.
async fn caught_up(pipeline: &Pipeline, timeout: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let before = head(&pipeline.events).await?;
        let ends = partition_ends(&pipeline.events, pipeline.shape.partitions).await?;
        let (_, absorbed) = absorbed(pipeline.views.as_ref(), &ends).await?;
        if absorbed && head(&pipeline.events).await? == before {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `commands-postgres`'s maximum: the same commands in-process over the
/// PostgreSQL event store of database `url`, nothing else running; and
/// the CPU seconds every postgres process used over the search.
async fn baseline(args: &Args, url: &str) -> anyhow::Result<(Search, f64)> {
    let pool = parallax_postgres::pool(url, args.postgres.pool_size).await?;
    parallax_postgres::migrate_write(&pool).await?;
    let keys = Arc::new(parallax_postgres::PgKeyStore::new(pool.clone()));
    let store = Arc::new(PgEventStore::new(pool, PgStoreOptions::default()));
    let commands = Arc::new(ShopCommands::new(store, keys));
    workload::register_products(&commands, args.cart.products).await?;
    let target = InProcess { commands, plan: args.cart.plan(args.then, args.customers) };
    let sequence = Sequence::default();
    load::warm_up(&target, args.cart.carts, 64, &sequence).await?;
    let load = args.load.resolve(DEFAULTS);
    let postgres = process_cpu_secs("postgres");
    let search = load::find_max("commands-postgres", &target, &load, &sequence).await?;
    Ok((search, process_cpu_secs("postgres") - postgres))
}
