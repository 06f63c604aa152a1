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

use std::sync::Arc;
use std::time::Duration;

use parallax_core::{
    partition_for, Aggregate, ConsistencyToken, EventLog, EventStore, Leases, Partition, ReadStore,
};
use parallax_kafka::{KafkaSink, KafkaSource};
use parallax_postgres::{PgEventStore, PgLeases, PgReadStore, PgStoreOptions};
use parallax_runtime::{CancellationToken, Executed, Freshness, ProcessRunner, Progress, Projector, Relay};
use parallax_sqlite::{SqliteEventStore, SqliteReadStore};
use serde::Serialize;
use serde_json::json;
use shop::commands::ShopCommands;
use shop::saga::CheckoutSaga;
use shop_domain::Cart;
use shop_read::queries::answered_by;
use shop_read::ShopQueries;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{ratio, Context};
use crate::load::{self, LoadArgs, LoadDefaults, Search, Sequence, Target, Worker};
use crate::machine::{cmdline_cpu_secs, own_cpu_secs, process_cpu_secs};
use crate::probes::{Counted, Counts, Published};
use crate::report::{ms, rate, Report, Table};
use crate::servers::{
    self, CassandraArgs, KafkaArgs, PostgresArgs, RunId, ScratchDb, ScratchKeyspace, ScratchTopic,
};
use crate::stats::{Latencies, Percentiles, Stats};
use crate::workload::{self, CartArgs, CartPlan, InProcess, Then};

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

/// The shop in this process, wired as `shop serve` wires the chosen shape.
struct Shop {
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    /// The read store as the projectors see it: counting their batches.
    projected: Arc<Counted>,
    /// Partitions of the log (the embedded log has one).
    partitions: u32,
    /// What the relay published to each partition (over Kafka).
    published: Option<Arc<Published>>,
    /// The carts projection's checkpoint in each partition, as the watcher last read them.
    carts_at: watch::Receiver<Vec<u64>>,
    commands: Arc<ShopCommands>,
    freshness: Freshness,
    queries: ShopQueries,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

/// What the shape needs from outside the process: nothing embedded; over
/// Kafka, databases, a topic and, for Cassandra, a keyspace of the run's own.
#[derive(Default)]
struct Scratch {
    databases: Vec<ScratchDb>,
    topic: Option<ScratchTopic>,
    keyspaces: Vec<ScratchKeyspace>,
}

impl Scratch {
    async fn remove(self) {
        servers::clean_up(self.databases, self.topic).await;
        servers::drop_keyspaces(self.keyspaces).await;
    }
}

impl Shop {
    /// The embedded shape: SQLite files in the run's data folder.
    fn embedded(context: &Context, poll: Duration) -> anyhow::Result<Self> {
        let events = SqliteEventStore::open(&context.data_dir.join("events.db"))?;
        let read: Arc<dyn ReadStore> = Arc::new(SqliteReadStore::open(&context.data_dir.join("views.db"))?);
        let projected = Arc::new(Counted::new(read.clone()));
        let log: Arc<dyn EventLog> = Arc::new(events.log());
        let store: Arc<dyn EventStore> = Arc::new(events);
        let progress = Arc::new(Progress::default());
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for projection in shop_read::all_projections() {
            let projector =
                Projector::new(projection, log.clone(), projected.clone()).with_progress(progress.clone());
            let cancel = cancel.clone();
            tasks.spawn(async move { projector.run(cancel).await });
        }
        let commands = Arc::new(ShopCommands::new(store.clone()));
        let saga = ProcessRunner::new(Arc::new(CheckoutSaga::new(commands.clone())), log, store.clone());
        {
            let cancel = cancel.clone();
            tasks.spawn(async move { saga.run(cancel).await });
        }
        let parts =
            Parts { events: store, read, projected, partitions: 1, published: None, commands, progress };
        Ok(Self::finish(parts, cancel, tasks, poll))
    }

    /// The distributed shape's path in one process, on `scratch`'s databases
    /// (events, and views unless in Cassandra), topic and keyspace (views in Cassandra).
    async fn over_kafka(args: &Args, scratch: &Scratch, run: &RunId, poll: Duration) -> anyhow::Result<Self> {
        let (Some(events_db), Some(topic)) = (scratch.databases.first(), &scratch.topic) else {
            anyhow::bail!("an events database and a topic")
        };
        let pool_size = args.postgres.pool_size;
        let write_pool = parallax_postgres::pool(&events_db.url, pool_size).await?;
        parallax_postgres::migrate_write(&write_pool).await?;
        let read: Arc<dyn ReadStore> = match (args.via, scratch.databases.get(1), scratch.keyspaces.first()) {
            (Via::Cassandra, _, Some(keyspace)) => Arc::new(keyspace.connect().await?),
            (_, Some(views_db), _) => {
                let read_pool = parallax_postgres::pool(&views_db.url, pool_size).await?;
                parallax_postgres::migrate_read(&read_pool).await?;
                Arc::new(PgReadStore::new(read_pool))
            }
            _ => anyhow::bail!("a views database or keyspace"),
        };
        let events = PgEventStore::new(write_pool.clone(), PgStoreOptions::default());
        let log: Arc<dyn EventLog> = Arc::new(events.log());
        let store: Arc<dyn EventStore> = Arc::new(events);
        let leases: Arc<dyn Leases> = Arc::new(PgLeases::new(write_pool));
        let projected = Arc::new(Counted::new(read.clone()));
        let partitions = topic.config.partitions;
        let published = Arc::new(Published::new(Arc::new(KafkaSink::new(topic.config.clone())?), partitions));
        let progress = Arc::new(Progress::default());
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let relay = Relay::new(log.clone(), published.clone(), leases.clone());
        {
            let cancel = cancel.clone();
            tasks.spawn(async move { relay.run(cancel).await });
        }
        for projection in shop_read::all_projections() {
            let group = format!("parallax-bench-{run}.{}", projection.name());
            let source = Box::new(KafkaSource::new(&topic.config, &group)?);
            let projector =
                Projector::from_source(projection, source, projected.clone()).with_progress(progress.clone());
            let cancel = cancel.clone();
            tasks.spawn(async move { projector.run(cancel).await });
        }
        let commands = Arc::new(ShopCommands::new(store.clone()));
        let saga = ProcessRunner::new(Arc::new(CheckoutSaga::new(commands.clone())), log, store.clone());
        {
            let cancel = cancel.clone();
            tasks.spawn(async move { saga.run_leased(leases, cancel).await });
        }
        let parts = Parts {
            events: store,
            read,
            projected,
            partitions,
            published: Some(published),
            commands,
            progress,
        };
        Ok(Self::finish(parts, cancel, tasks, poll))
    }

    /// Starts the `poll` watcher and puts the shop together.
    fn finish(parts: Parts, cancel: CancellationToken, mut tasks: JoinSet<()>, poll: Duration) -> Self {
        let Parts { events, read, projected, partitions, published, commands, progress } = parts;
        let (carts_tx, carts_at) = watch::channel(vec![0; partitions as usize]);
        {
            let (read, cancel) = (read.clone(), cancel.clone());
            tasks.spawn(async move {
                while !cancel.is_cancelled() {
                    match read.checkpoints(answered_by::CARTS).await {
                        Ok(checkpoints) => {
                            carts_tx.send_if_modified(|seen| {
                                let mut moved = false;
                                for (partition, at) in checkpoints {
                                    if let Some(seen) = seen.get_mut(partition as usize) {
                                        moved |= std::mem::replace(seen, at.position) != at.position;
                                    }
                                }
                                moved
                            });
                        }
                        Err(error) => eprintln!("  the watcher could not read the checkpoints: {error}"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = cancel.cancelled() => {}
                    }
                }
            });
        }
        Self {
            events,
            carts_at,
            freshness: Freshness::new(read.clone(), progress),
            queries: ShopQueries::new(read.clone()),
            read,
            projected,
            partitions,
            published,
            commands,
            cancel,
            tasks,
        }
    }

    /// Waits until every projection has absorbed the event store's head —
    /// over Kafka: until the relay has published it, then until every
    /// projection has absorbed the last event published to each partition;
    /// returns how long that took.
    async fn caught_up(&self) -> anyhow::Result<Duration> {
        let began = Instant::now();
        let head = self.events.head().await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        let targets = match &self.published {
            None => vec![head],
            Some(published) => {
                while published.furthest() < head {
                    anyhow::ensure!(Instant::now() < deadline, "the relay did not publish up to {head}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                published.last()
            }
        };
        for projection in shop_read::all_projections() {
            for (partition, &target) in targets.iter().enumerate() {
                let partition = Partition::try_from(partition)?;
                while self.read.checkpoint(projection.name(), partition).await?.position < target {
                    anyhow::ensure!(Instant::now() < deadline, "{} did not catch up", projection.name());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        Ok(began.elapsed())
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// What a shape's wiring hands to [`Shop::finish`].
struct Parts {
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    projected: Arc<Counted>,
    partitions: u32,
    published: Option<Arc<Published>>,
    commands: Arc<ShopCommands>,
    progress: Arc<Progress>,
}

/// Requests that send a command, wait until a query shows it, and time the query alone.
struct Visible<'a> {
    shop: &'a Shop,
    plan: CartPlan,
    freshness: bool,
}

struct VisibleWorker {
    commands: Arc<ShopCommands>,
    /// `Some`: wait with `Freshness::wait`; `None`: on the polling watcher.
    freshness: Option<Freshness>,
    carts_at: watch::Receiver<Vec<u64>>,
    partitions: u32,
    queries: ShopQueries,
    plan: CartPlan,
    ack: Latencies,
    lag: Latencies,
    query: Latencies,
}

impl Target for Visible<'_> {
    type Worker = VisibleWorker;

    async fn worker(&self) -> anyhow::Result<VisibleWorker> {
        Ok(VisibleWorker {
            commands: self.shop.commands.clone(),
            freshness: self.freshness.then(|| self.shop.freshness.clone()),
            carts_at: self.shop.carts_at.clone(),
            partitions: self.shop.partitions,
            queries: self.shop.queries.clone(),
            plan: self.plan,
            ack: Latencies::default(),
            lag: Latencies::default(),
            query: Latencies::default(),
        })
    }
}

impl Worker for VisibleWorker {
    async fn call(&mut self, seq: u64, intended: Instant) -> anyhow::Result<()> {
        let op = self.plan.op(seq);
        let executed = workload::execute(&self.commands, &op).await?;
        let acked = Instant::now();
        self.ack.record(acked - intended);
        let version = match executed {
            Executed::Appended { stream_version, .. } | Executed::Unchanged { stream_version, .. } => {
                stream_version
            }
            Executed::Duplicate { .. } => 0,
        };
        let position = executed.position();
        // The token the command API hands out: the cart stream's partition, the position.
        let partition = partition_for(&Cart::stream_id(op.cart_id()), self.partitions);
        match &self.freshness {
            Some(freshness) => {
                freshness.wait(answered_by::CARTS, ConsistencyToken::at(partition, position), WAIT).await?;
            }
            None => {
                let reached = |at: &Vec<u64>| at.get(partition as usize).is_some_and(|&at| at >= position);
                tokio::time::timeout(WAIT, self.carts_at.wait_for(reached)).await??;
            }
        }
        let cart = self.queries.cart(op.cart_id()).await?;
        let shown = cart.as_ref().map_or(0, |cart| cart.version);
        anyhow::ensure!(shown >= version, "cart {} shows version {shown}, not {version}", op.cart_id());
        self.lag.record(acked.elapsed());
        let alone = Instant::now();
        self.queries.cart(op.cart_id()).await?;
        self.query.record(alone.elapsed());
        Ok(())
    }
}

/// One fixed-rate run's figures.
#[derive(Debug, Clone, Serialize)]
struct Level {
    fraction: f64,
    wait: Wait,
    run: Stats,
    ack: Percentiles,
    lag: Percentiles,
    query: Percentiles,
    /// Events appended during the run.
    events: u64,
    /// What the projectors did meanwhile.
    projectors: Counts,
    /// CPU the bench process and the servers used meanwhile, in cores.
    cpu: CpuSplit,
}

/// CPU of the bench process and of the servers on this machine the shape
/// uses: CPU seconds so far, or cores over a run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct CpuSplit {
    bench: f64,
    postgres: f64,
    kafka: f64,
    cassandra: f64,
}

impl CpuSplit {
    /// CPU seconds used so far.
    fn now(via: Via) -> Self {
        let over_kafka = via != Via::Embedded;
        Self {
            bench: own_cpu_secs(),
            postgres: if over_kafka { process_cpu_secs("postgres") } else { 0.0 },
            kafka: if over_kafka { cmdline_cpu_secs(servers::KAFKA_PROCESS) } else { 0.0 },
            cassandra: if via == Via::Cassandra { cmdline_cpu_secs(servers::CASSANDRA_PROCESS) } else { 0.0 },
        }
    }

    /// Cores used since `earlier`, over `secs`.
    fn cores_since(&self, earlier: &Self, secs: f64) -> Self {
        Self {
            bench: ratio(self.bench - earlier.bench, secs),
            postgres: ratio(self.postgres - earlier.postgres, secs),
            kafka: ratio(self.kafka - earlier.kafka, secs),
            cassandra: ratio(self.cassandra - earlier.cassandra, secs),
        }
    }

    /// The column's name for `via`.
    fn header(via: Via) -> &'static str {
        match via {
            Via::Embedded => "CPU cores: bench",
            Via::Kafka => "CPU cores: bench / PostgreSQL / Kafka",
            Via::Cassandra => "CPU cores: bench / PostgreSQL / Kafka / Cassandra",
        }
    }

    /// The cell for `via`.
    fn describe(&self, via: Via) -> String {
        match via {
            Via::Embedded => format!("{:.2}", self.bench),
            Via::Kafka => format!("{:.2} / {:.2} / {:.2}", self.bench, self.postgres, self.kafka),
            Via::Cassandra => format!(
                "{:.2} / {:.2} / {:.2} / {:.2}",
                self.bench, self.postgres, self.kafka, self.cassandra
            ),
        }
    }
}

/// A search step with the projectors' catch-up after it.
#[derive(Debug, Clone, Serialize)]
struct Step {
    commands: Stats,
    /// Events appended during the step.
    events: u64,
    /// How long the projectors took to absorb them after the step.
    catch_up_secs: f64,
}

impl Step {
    /// Events per second the whole pipeline sustained: appended, then absorbed.
    fn pipeline_per_sec(&self) -> f64 {
        ratio(self.events as f64, self.commands.elapsed_secs + self.catch_up_secs)
    }
}

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
                Shop::over_kafka(&args, &scratch, &run, poll).await?
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

    let mut steps: Vec<Step> = Vec::new();
    let mut search = None;
    if args.max_rate.is_none() {
        let commands = InProcess { commands: shop.commands.clone(), plan };
        let cycles = Visible { shop: &shop, plan, freshness: true };
        let mut found = Search::new(load.p99_limit);
        for &concurrency in &load.levels {
            shop.caught_up().await?;
            let head = shop.events.head().await?;
            let stats = match args.max_of {
                MaxOf::Visible => {
                    load::closed_step("write-to-visible", &cycles, concurrency, load.step, &sequence).await?
                }
                MaxOf::Commands | MaxOf::Pipeline => {
                    load::closed_step("commands", &commands, concurrency, load.step, &sequence).await?
                }
            };
            let events = shop.events.head().await? - head;
            let catch_up = shop.caught_up().await?;
            let step = Step { commands: stats.clone(), events, catch_up_secs: catch_up.as_secs_f64() };
            eprintln!(
                "    then the projectors took {:.2} s to catch up: the pipeline sustained {:.0} events/s",
                step.catch_up_secs,
                step.pipeline_per_sec()
            );
            let pipeline_flat = args.max_of == MaxOf::Pipeline && pipeline_stopped(&steps, &step);
            steps.push(step);
            if !found.push(stats) {
                break;
            }
            if pipeline_flat {
                found.stopped = "the pipeline rate grew less than 5 % for 2 steps".into();
                break;
            }
        }
        search = Some(found);
    }
    let best_pipeline = steps.iter().map(Step::pipeline_per_sec).fold(0.0, f64::max);
    let max = match (args.max_rate, args.max_of, search.as_ref().and_then(Search::best)) {
        (Some(max), _, _) => max,
        (None, MaxOf::Visible | MaxOf::Commands, Some(best)) => best.per_sec,
        (None, MaxOf::Pipeline, Some(_)) => best_pipeline,
        (None, _, None) => anyhow::bail!("no step qualified: no maximum to take fractions of"),
    };
    let concurrency = load.concurrency.unwrap_or(load.fixed_floor);
    let middle = args.fractions.iter().copied().min_by(|a, b| (a - 0.5).abs().total_cmp(&(b - 0.5).abs()));
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
    let mut levels = Vec::new();
    for (fraction, wait) in runs {
        shop.caught_up().await?;
        let target = Visible { shop: &shop, plan, freshness: wait == Wait::Freshness };
        let workers = load::workers(&target, concurrency).await?;
        let rate = (max * fraction).max(1.0);
        let label = format!("{:.0} % of max, {}", fraction * 100.0, wait_name(wait));
        let (head, before) = (shop.events.head().await?, shop.projected.counts());
        let cpu_before = CpuSplit::now(args.via);
        let (run, workers) = load::open_loop(&label, workers, rate, load.duration, &sequence).await?;
        let cpu = CpuSplit::now(args.via).cores_since(&cpu_before, run.elapsed_secs);
        let (events, projectors) = (shop.events.head().await? - head, shop.projected.counts().since(&before));
        let (mut ack, mut lag, mut query) =
            (Latencies::default(), Latencies::default(), Latencies::default());
        for worker in &workers {
            ack.merge(&worker.ack);
            lag.merge(&worker.lag);
            query.merge(&worker.query);
        }
        let level = Level {
            fraction,
            wait,
            run,
            ack: ack.summary(),
            lag: lag.summary(),
            query: query.summary(),
            events,
            projectors,
            cpu,
        };
        eprintln!(
            "  {label:<28} {:>8.0}/s offered {:>8.0}/s achieved  lag p50 {:>7.2} p99 {:>7.2} p99.9 {:>7.2} ms  \
             query p99 {:>6.2} ms  errors {}  unsent {}  cpu {:.2}",
            rate,
            level.run.per_sec,
            level.lag.p50_ms,
            level.lag.p99_ms,
            level.lag.p999_ms,
            level.query.p99_ms,
            level.run.errors,
            level.run.unsent,
            level.run.cpu_busy_cores
        );
        levels.push(level);
    }
    shop.stop().await;

    let title = match args.via {
        Via::Embedded => "write-to-visible lag, embedded in one process",
        Via::Kafka => "write-to-visible lag through Kafka, every role in one process",
        Via::Cassandra => "write-to-visible lag through Kafka into Cassandra, every role in one process",
    };
    let mut report = Report::new(args.via.report_name(), title, context.machine.clone());
    report.parameter("workload", plan.describe());
    report.parameter(
        "shop",
        match args.via {
            Via::Embedded => "in-process: SQLite event store (synchronous=FULL), 4 projectors + checkout saga \
                              tailing it, SQLite read store"
                .to_owned(),
            Via::Kafka | Via::Cassandra => format!(
                "in-process, the distributed shape's path: PostgreSQL event store (synchronous_commit=on) on {} \
                 → relay (leased) → KafkaSink → topic of {} partitions on {} → 4 projectors, each a consumer \
                 group (KafkaSource) → {}; checkout saga tailing the event store (leased); fresh databases, \
                 topic{}; pools of {} connections",
                parallax_postgres::redact(&args.postgres.postgres_url),
                args.kafka.partitions,
                args.kafka.kafka_brokers,
                match args.via {
                    Via::Cassandra => format!(
                        "Cassandra read store on {} (a table per view, LOCAL_QUORUM, replication factor 1)",
                        args.cassandra.cassandra_nodes
                    ),
                    _ => "PostgreSQL read store".to_owned(),
                },
                if args.via == Via::Cassandra { " and keyspace" } else { "" },
                args.postgres.pool_size
            ),
        },
    );
    report.parameter(
        "warm-up",
        format!("one add-item per cart slot ({} requests, not measured)", args.cart.carts),
    );
    report.parameter(
        "maximum",
        match (args.max_rate, args.max_of) {
            (Some(max), _) => format!("{} commands/s (given)", rate(max)),
            (None, MaxOf::Visible) => format!(
                "{} write-to-visible cycles/s (found: command, wait until visible, query twice; projectors and \
                 saga running)",
                rate(max)
            ),
            (None, MaxOf::Commands) => format!(
                "{} commands/s (the command rate found, projectors and saga running; the pipeline sustained \
                 {} events/s)",
                rate(max),
                rate(best_pipeline)
            ),
            (None, MaxOf::Pipeline) => format!(
                "{} events/s (the rate the pipeline sustained: appended, then absorbed by every projection)",
                rate(max)
            ),
        },
    );
    report.parameter(
        "each run",
        format!("{:.1} s, {concurrency} requests in flight at most", load.duration.as_secs_f64()),
    );
    for level in levels.iter().filter(|l| Some(l.fraction) == middle) {
        report.compare(
            &format!(
                "lag p99 ms at {:.0} % load ({}/s), {}",
                level.fraction * 100.0,
                rate(level.run.offered_per_sec.unwrap_or(0.0)),
                wait_name(level.wait)
            ),
            ms(level.lag.p99_ms),
            format!("{} (the query alone, p99)", ms(level.query.p99_ms)),
            ratio(level.lag.p99_ms, level.query.p99_ms),
            "10 ms at 50 %",
        );
    }
    let mut table = Table::new(&[
        "load",
        "wait",
        "offered/s",
        "achieved/s",
        "errors",
        "ack p50 / p99 ms",
        "lag p50 ms",
        "lag p99 ms",
        "lag p99.9 ms",
        "query alone p50 / p99 / p99.9 ms",
        "lag p99 / query p99",
        "CPU busy (cores)",
        CpuSplit::header(args.via),
        "projector batches/s",
        "events per batch",
        "commit mean ms",
    ]);
    for level in &levels {
        table.row(vec![
            format!("{:.0} %", level.fraction * 100.0),
            wait_name(level.wait).to_owned(),
            rate(level.run.offered_per_sec.unwrap_or(0.0)),
            rate(level.run.per_sec),
            match level.run.unsent {
                0 => level.run.errors.to_string(),
                unsent => format!("{} (+{unsent} unsent)", level.run.errors),
            },
            format!("{} / {}", ms(level.ack.p50_ms), ms(level.ack.p99_ms)),
            ms(level.lag.p50_ms),
            ms(level.lag.p99_ms),
            ms(level.lag.p999_ms),
            format!("{} / {} / {}", ms(level.query.p50_ms), ms(level.query.p99_ms), ms(level.query.p999_ms)),
            format!("{:.2}", ratio(level.lag.p99_ms, level.query.p99_ms)),
            format!("{:.2}", level.run.cpu_busy_cores),
            level.cpu.describe(args.via),
            rate(ratio(level.projectors.commits as f64, level.run.elapsed_secs)),
            format!(
                "{:.1}",
                ratio(
                    (level.events * shop_read::all_projections().len() as u64) as f64,
                    level.projectors.commits as f64
                )
            ),
            ms(ratio(level.projectors.commit_busy.as_secs_f64() * 1000.0, level.projectors.commits as f64)),
        ]);
    }
    let first_error = levels.iter().find_map(|l| l.run.first_error.clone());
    report.section(
        "Write-to-visible lag (open loop)",
        table,
        first_error.map(|e| format!("First failure: {e}")).into_iter().collect(),
    );
    if let Some(search) = &search {
        let mut table = Table::of_steps(&search.steps);
        table.columns.extend(["events".into(), "catch-up after, s".into(), "pipeline events/s".into()]);
        for (row, step) in table.rows.iter_mut().zip(&steps) {
            row.push(step.events.to_string());
            row.push(format!("{:.2}", step.catch_up_secs));
            row.push(rate(step.pipeline_per_sec()));
        }
        report.section(
            "The maximum (closed loop, projectors and saga running)",
            table,
            vec![format!(
                "The search stopped: {}. Before each step the projectors had caught up; \"catch-up after\" is \
                 how long they then took to absorb the step's events, and the pipeline rate is the step's \
                 events over the step and its catch-up.",
                search.stopped
            )],
        );
    }
    report.notes = vec![
        "ack: from the request's intended start (open loop) to the command's durable acknowledgement.".into(),
        "lag: from the acknowledgement until a query shows the command: a wait for the carts projection's \
         checkpoint in the cart stream's partition to reach the command's position (`Freshness::wait` on \
         the command's token, as `?consistent_with=` does; or `poll`: one watcher reading the checkpoints \
         from the read store every --poll-ms), then ShopQueries::cart, checked against the command's stream \
         version. Over Kafka the wait covers the relay's poll of the event store, the publish (acks=all), \
         the consumer's fetch and the projector's batch."
            .into(),
        "query alone: the same query right after, with nothing to wait for — the lower bound of the lag. \
         lag / query: how many query times the wait for the projection adds."
            .into(),
        "projector batches/s, events per batch, commit mean ms: what the four projectors committed during \
         the run (a probe around the read store): batches, events of the run per batch, and the mean wall \
         time of a commit. In Cassandra a commit reads each moved partition's checkpoint at SERIAL, writes \
         its rows (logged batches; sales rows by compare-and-set), then moves each checkpoint by \
         compare-and-set."
            .into(),
        "CPU busy: the whole machine (every process); CPU cores: the bench process (the shop's roles and \
         the load generator) and each server of the shape, from /proc, over the run."
            .into(),
        "Runs stop sending after twice their duration: a system that fell that far behind shows `unsent`."
            .into(),
    ];
    report.raw = json!({
        "args": args,
        "max_per_sec": max,
        "pipeline_per_sec": best_pipeline,
        "search": search,
        "steps": steps,
        "levels": levels,
    });
    Ok(report)
}

/// Whether the pipeline rate has not grown by 5 % over the best before for
/// this step and the one before it.
fn pipeline_stopped(before: &[Step], step: &Step) -> bool {
    let best = |steps: &[Step]| steps.iter().map(Step::pipeline_per_sec).fold(0.0, f64::max);
    let [.., previous] = before else { return false };
    let best_before_previous = best(&before[..before.len() - 1]);
    let flat_previous = previous.pipeline_per_sec() <= best_before_previous * 1.05;
    let flat_now = step.pipeline_per_sec() <= best(before) * 1.05;
    before.len() >= 2 && flat_previous && flat_now
}

fn wait_name(wait: Wait) -> &'static str {
    match wait {
        Wait::Freshness => "Freshness::wait",
        Wait::Poll => "poll",
        Wait::Both => "both",
    }
}
