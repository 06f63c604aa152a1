//! `scale-out`: the distributed shape (PostgreSQL event store, Kafka,
//! PostgreSQL views) with every role in `shop serve` processes of its own
//! ([`crate::processes`]), and what one more process of a scalable role
//! buys and costs. For each process count of `--processes` (default 1 and
//! 2), in one run:
//!
//! 1. **Backlog**: a history of `--backlog` events (default 500,000;
//!    [`crate::history`]: the shop's own aggregates and saga decisions) is
//!    appended straight into the event store (not measured); one relay
//!    process publishes it to the run's topic (timed: until its checkpoint
//!    reaches the head); then, for each count, that many projector processes
//!    (one consumer group per projection, the topic's partitions split
//!    between the processes by the group) catch up with the whole topic into
//!    a fresh views database of their own: timed from their start, and from
//!    the first checkpoint that moved, until every projection's checkpoint
//!    in every partition reaches the partition's last event.
//! 2. **Queries**: `GET /api/carts/{id}` (the backlog's carts) and
//!    `GET /api/customers/{id}/orders` (its customers) against query
//!    processes reading the last views database, connections round-robin
//!    over the processes.
//! 3. **Commands**: add-item commands (`POST /api/carts/{id}/items`, the cart
//!    plan of the command scenarios, no checkouts) against command
//!    processes on the same event store, connections round-robin over the
//!    processes (what a layer-4 balancer does with keep-alive connections):
//!    a cart's commands land on either process, so each process's cache
//!    meets the other's appends and pays a conflict and a reload for them.
//!
//! Queries and commands: at each count a search for the maximum (closed
//! loop, concurrency doubling), then a fixed-rate run (open loop) at the
//! same rate and concurrency for every count: half the first count's
//! maximum, or `--rate`. Only the role measured runs meanwhile (no relay,
//! projector or saga beside the command processes), so its CPU is its own.
//!
//! Every measurement reads the CPU seconds of each party from `/proc`: each
//! shop process, PostgreSQL (the run's backends, and apart the server's own
//! processes), Kafka, and the bench; the report divides them by the
//! operations (a command, a query, an event of the backlog), and says what
//! the rest of the machine used meanwhile. Two cores
//! cannot show much speed-up when the load generator, the servers and the
//! processes share them: the point is the cost per operation of each role
//! and server, which does not depend on the core count. The baseline of
//! each figure is the same role with the first count of processes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use parallax_core::{partition_for, Partition, Position, ViewCommitter};
use parallax_postgres::{PgEventStore, PgReadStore, PgStoreOptions};
use serde::Serialize;
use sqlx::PgPool;
use tokio::time::Instant;

use super::Context;
use crate::history::{self, History};
use crate::http::{Client, ClientKind, ShopBinaryArgs};
use crate::load::{self, Load, LoadArgs, LoadDefaults, Search, Sequence, Target};
use crate::processes::{self, CpuSnapshot, CpuUse, DbActivity, PgProcesses, Shape, ShopProcess};
use crate::report::Report;
use crate::servers::{self, KafkaArgs, PostgresArgs, RunId, ScratchDb, ScratchTopic};
use crate::stats::Stats;
use crate::workload::{CartArgs, Gets, OverHttp, Then};

mod tables;

const NAME: &str = "scale-out";

/// How long a relay or the projectors may take to catch up.
const CATCH_UP: Duration = Duration::from_secs(1800);

/// How often catch-up is checked.
const POLL: Duration = Duration::from_millis(50);

/// The shop's projections: each is a consumer group of the topic.
const PROJECTIONS: usize = 4;

/// Options of `scale-out`.
///
/// Defaults: commands from 16 to 512 connections with a p99 limit of 100 ms,
/// queries from 8 to 256 with 50 ms; at least 64 connections at the fixed rate.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Args {
    /// Events of the projectors' backlog, appended to the event store before
    /// any relay or projector starts (at least; the last round is whole).
    #[arg(long, default_value_t = 500_000)]
    pub backlog: u64,
    /// Customers of the backlog's orders (queried for their orders).
    #[arg(long, default_value_t = 10_000)]
    pub customers: u64,
    /// The commands' carts; `--products` is also the backlog's catalog.
    #[command(flatten)]
    #[serde(flatten)]
    pub cart: CartArgs,
    /// Process counts compared for each scalable role, ascending; the first
    /// is the baseline.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub processes: Vec<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub shop: ShopBinaryArgs,
    /// Where PostgreSQL is; `--pool-size` is each process's pool per database.
    #[command(flatten)]
    #[serde(flatten)]
    pub postgres: PostgresArgs,
    /// Where Kafka is.
    #[command(flatten)]
    #[serde(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
}

const COMMANDS: LoadDefaults =
    LoadDefaults { min_concurrency: 16, max_concurrency: 512, fixed_concurrency: 64, p99_limit_ms: 100.0 };

const QUERIES: LoadDefaults =
    LoadDefaults { min_concurrency: 8, max_concurrency: 256, fixed_concurrency: 64, p99_limit_ms: 50.0 };

/// One measured step: the load generator's figures and the CPU of every party.
#[derive(Debug, Clone, Serialize)]
struct Step {
    stats: Stats,
    cpu: CpuUse,
    /// Commands only: what the step wrote.
    written: Option<Written>,
}

/// A role at one process count: its search and its fixed-rate run.
#[derive(Debug, Clone, Serialize)]
struct Scaled {
    processes: usize,
    steps: Vec<Step>,
    best: Option<usize>,
    stopped: String,
    fixed: Option<Step>,
}

impl Scaled {
    fn best(&self) -> Option<&Step> {
        self.best.map(|i| &self.steps[i])
    }
}

/// One target (a command, a query) at every process count.
#[derive(Debug, Clone, Serialize)]
struct Role {
    /// `POST add-item`, `GET cart`, …
    label: String,
    /// The processes' name prefix.
    process: &'static str,
    counts: Vec<Scaled>,
}

/// A catch-up: the relay publishing the backlog, or projectors absorbing it.
#[derive(Debug, Clone, Serialize)]
struct Stage {
    /// `relay`, `projector`.
    role: &'static str,
    processes: usize,
    events: u64,
    /// From starting the processes until done.
    secs: f64,
    /// From the first checkpoint that moved until done.
    working_secs: Option<f64>,
    cpu: CpuUse,
    /// Projectors: what the views database took meanwhile.
    views: Option<DbActivity>,
}

/// The backlog and its catch-ups.
#[derive(Debug, Clone, Serialize)]
struct Backlog {
    history: History,
    generation_secs: f64,
    relay: Stage,
    projectors: Vec<Stage>,
}

/// What the command processes wrote: so far, or over a step.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Written {
    /// The event store's head (over a step: positions taken; an append
    /// refused for a conflict leaves the positions it took unused).
    head: u64,
    /// Events stored (over a step only).
    events: u64,
    /// Append requests the processes' event stores committed (a conflict's retry is one more).
    appends: f64,
    /// Their transactions (group commits).
    transactions: f64,
}

/// Everything the scenario made on the servers, and how to reach it.
struct Run {
    run: RunId,
    shape: Shape,
    events: PgPool,
    postgres: PgProcesses,
    /// The views databases (name, URL), one per projector count, migrated.
    views: Vec<(String, String)>,
    sequence: Sequence,
}

/// Runs the scenario on databases and a topic of its own, removed afterwards.
pub async fn run(args: Args, context: &Context) -> anyhow::Result<Report> {
    let counts = &args.processes;
    anyhow::ensure!(
        !counts.is_empty() && counts[0] >= 1 && counts.windows(2).all(|w| w[0] < w[1]),
        "--processes takes ascending counts of at least 1, e.g. 1,2"
    );
    let binary = args.shop.binary().await?;
    let run = RunId::new();
    let mut databases = Vec::new();
    let mut topic = None;
    let report = async {
        let url = &args.postgres.postgres_url;
        databases.push(ScratchDb::create(url, &run, "events").await?);
        for &count in counts {
            databases.push(ScratchDb::create(url, &run, &format!("views{count}")).await?);
        }
        let made = ScratchTopic::create(&args.kafka, &run).await?;
        let shape = Shape {
            binary,
            events_url: databases[0].url.clone(),
            views_url: databases[1].url.clone(),
            brokers: args.kafka.kafka_brokers.clone(),
            topic: made.config.topic.clone(),
            partitions: args.kafka.partitions,
            group: String::new(),
            pool_size: args.postgres.pool_size,
            dir: context.data_dir.join("processes"),
            cassandra: None,
            settings: Vec::new(),
        };
        topic = Some(made);
        std::fs::create_dir_all(&shape.dir)?;
        let events = parallax_postgres::pool(&shape.events_url, args.postgres.pool_size).await?;
        let admin = parallax_postgres::pool(url, 2).await?;
        let names = databases.iter().map(|db| db.name.clone()).collect();
        let views: Vec<(String, String)> =
            databases[1..].iter().map(|db| (db.name.clone(), db.url.clone())).collect();
        for (_, url) in &views {
            Shape { views_url: url.clone(), ..shape.clone() }.migrate().await?;
        }
        let run = Run {
            run: run.clone(),
            shape,
            events,
            postgres: PgProcesses::new(admin, names),
            views,
            sequence: Sequence::default(),
        };
        measure(&args, context, &run).await
    }
    .await;
    servers::clean_up(databases, topic).await;
    report
}

/// The three parts, then the report.
async fn measure(args: &Args, context: &Context, run: &Run) -> anyhow::Result<Report> {
    let backlog = backlog(args, run).await?;
    let queries = queries(args, run, &backlog.history).await?;
    let commands = commands(args, run).await?;
    Ok(tables::report(args, context, &run.shape, &backlog, &[commands, queries].concat()))
}

// ---------------------------------------------------------------------------
// Backlog: the relay, then the projectors at each count

/// Generates the backlog, times the relay publishing it, then the
/// projectors absorbing it at each count.
async fn backlog(args: &Args, run: &Run) -> anyhow::Result<Backlog> {
    let generated = Instant::now();
    let store = PgEventStore::new(run.events.clone(), PgStoreOptions::default());
    let shape = history::Shape::new(args.backlog, args.cart.products, args.customers);
    let history = history::generate(&store, shape).await?;
    drop(store);
    let generation_secs = generated.elapsed().as_secs_f64();
    eprintln!("  backlog: {} events appended in {generation_secs:.1} s", history.head);

    let relay = relay_stage(run, history.head).await?;
    eprintln!("  relay: published {} events in {:.2} s", relay.events, relay.secs);
    let targets = partition_ends(&run.events, run.shape.partitions).await?;
    let mut projectors = Vec::new();
    for (&count, (name, url)) in args.processes.iter().zip(&run.views) {
        let shape = Shape {
            views_url: url.clone(),
            group: format!("parallax-bench-{}-p{count}", run.run),
            ..run.shape.clone()
        };
        let stage = projector_stage(run, &shape, name, count, &targets, history.head).await?;
        eprintln!(
            "  {count} projector process(es): caught up with {} events in {:.2} s ({:.2} s from the first commit)",
            stage.events,
            stage.secs,
            stage.working_secs.unwrap_or(0.0)
        );
        projectors.push(stage);
    }
    Ok(Backlog { history, generation_secs, relay, projectors })
}

/// One relay process publishes the event store up to `head`.
async fn relay_stage(run: &Run, head: u64) -> anyhow::Result<Stage> {
    let before = CpuSnapshot::take(&[], &run.postgres).await?;
    let began = Instant::now();
    let relay = run.shape.start("relay", &["relay"]).await?;
    let mut first = None;
    loop {
        let at: Option<i64> = sqlx::query_scalar("SELECT position FROM leases WHERE name = 'relay'")
            .fetch_optional(&run.events)
            .await
            .context("read the relay's checkpoint")?;
        let at = at.and_then(|at| u64::try_from(at).ok()).unwrap_or(0);
        if at > 0 && first.is_none() {
            first = Some(began.elapsed());
        }
        if at >= head {
            break;
        }
        anyhow::ensure!(
            began.elapsed() < CATCH_UP,
            "the relay published up to {at} of {head} in {CATCH_UP:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let secs = began.elapsed();
    let cpu = CpuSnapshot::take(&[&relay], &run.postgres).await?.since(&before);
    relay.stop().await?;
    Ok(Stage {
        role: "relay",
        processes: 1,
        events: head,
        secs: secs.as_secs_f64(),
        working_secs: first.map(|first| (secs - first).as_secs_f64()),
        cpu,
        views: None,
    })
}

/// The highest position of each partition's streams: where a caught-up
/// projection's checkpoint is in that partition.
pub(crate) async fn partition_ends(
    events: &PgPool,
    partitions: u32,
) -> anyhow::Result<BTreeMap<Partition, Position>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT stream_id, max(position) FROM events GROUP BY stream_id")
            .fetch_all(events)
            .await
            .context("read the streams' last positions")?;
    let mut ends = BTreeMap::new();
    for (stream, position) in rows {
        let end = ends.entry(partition_for(&stream, partitions)).or_insert(0);
        *end = (*end).max(u64::try_from(position)?);
    }
    Ok(ends)
}

/// `count` projector processes absorb the topic into a fresh views database.
async fn projector_stage(
    run: &Run,
    shape: &Shape,
    database: &str,
    count: usize,
    targets: &BTreeMap<Partition, Position>,
    events: u64,
) -> anyhow::Result<Stage> {
    let views = PgReadStore::new(parallax_postgres::pool(&shape.views_url, 2).await?);
    let activity = DbActivity::of(&run.events, database).await?;
    let before = CpuSnapshot::take(&[], &run.postgres).await?;
    let began = Instant::now();
    let processes = shape.start_many("projector", &["projector"], count).await?;
    let (mut first, mut polls) = (None, 0);
    loop {
        let (moved, caught_up) = absorbed(&views, targets).await?;
        polls += 1;
        if moved && first.is_none() {
            first = Some(began.elapsed());
        }
        if caught_up {
            break;
        }
        anyhow::ensure!(began.elapsed() < CATCH_UP, "the projectors did not catch up within {CATCH_UP:?}");
        tokio::time::sleep(POLL).await;
    }
    let secs = began.elapsed();
    let cpu = CpuSnapshot::take(&processes.iter().collect::<Vec<_>>(), &run.postgres).await?.since(&before);
    processes::stop_all(processes).await?;
    // The backends flush their statistics as they exit, once their client is gone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = DbActivity::of(&run.events, database).await?;
    Ok(Stage {
        role: "projector",
        processes: count,
        events,
        secs: secs.as_secs_f64(),
        working_secs: first.map(|first| (secs - first).as_secs_f64()),
        cpu,
        views: Some(DbActivity {
            rows: after.rows - activity.rows,
            // Less the bench's own reads of the checkpoints: a transaction per projection per poll.
            transactions: after.transactions - activity.transactions - polls * PROJECTIONS as i64,
            rollbacks: after.rollbacks - activity.rollbacks,
        }),
    })
}

/// Whether any projection's checkpoint has moved, and whether every one
/// has reached `targets` in every partition.
pub(crate) async fn absorbed(
    views: &dyn ViewCommitter,
    targets: &BTreeMap<Partition, Position>,
) -> anyhow::Result<(bool, bool)> {
    let (mut moved, mut caught_up) = (false, true);
    let projections = shop_read::all_projections();
    anyhow::ensure!(projections.len() == PROJECTIONS, "the shop has {PROJECTIONS} projections");
    for projection in projections {
        let at: BTreeMap<Partition, Position> =
            views.checkpoints(projection.name()).await?.into_iter().map(|(p, c)| (p, c.position)).collect();
        moved |= at.values().any(|&position| position > 0);
        caught_up &= targets.iter().all(|(p, &end)| at.get(p).is_some_and(|&position| position >= end));
    }
    Ok((moved, caught_up))
}

// ---------------------------------------------------------------------------
// Queries and commands: a search and a fixed-rate run at each count

/// Connections spread round-robin over several processes: worker `i` talks
/// to process `i mod n`.
struct Spread<T> {
    targets: Vec<T>,
    next: AtomicUsize,
}

impl<T> Spread<T> {
    fn new(targets: Vec<T>) -> Self {
        Self { targets, next: AtomicUsize::new(0) }
    }
}

impl<T: Target + Send + Sync> Target for Spread<T> {
    type Worker = T::Worker;

    async fn worker(&self) -> anyhow::Result<T::Worker> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        self.targets[i].worker().await
    }
}

/// What is read around each step: the CPU of every party, and for commands
/// what the processes wrote.
struct Meter<'a> {
    processes: Vec<&'a ShopProcess>,
    postgres: &'a PgProcesses,
    writes: Option<Writes<'a>>,
}

/// How to read what the command processes wrote.
struct Writes<'a> {
    events: &'a PgPool,
    clients: Vec<Client>,
}

impl Writes<'_> {
    async fn now(&self) -> anyhow::Result<Written> {
        let head: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
            .fetch_one(self.events)
            .await
            .context("read the head")?;
        let mut written = Written { head: u64::try_from(head)?, ..Written::default() };
        for client in &self.clients {
            written.appends += processes::scrape(client, "parallax_event_store_group_size_sum").await?;
            written.transactions +=
                processes::scrape(client, "parallax_event_store_group_size_count").await?;
        }
        Ok(written)
    }

    /// What was written since `earlier`.
    async fn since(&self, earlier: &Written) -> anyhow::Result<Written> {
        let now = self.now().await?;
        let events: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE position > $1 AND position <= $2")
                .bind(i64::try_from(earlier.head)?)
                .bind(i64::try_from(now.head)?)
                .fetch_one(self.events)
                .await
                .context("count the events written")?;
        Ok(Written {
            head: now.head - earlier.head,
            events: u64::try_from(events)?,
            appends: now.appends - earlier.appends,
            transactions: now.transactions - earlier.transactions,
        })
    }
}

impl Meter<'_> {
    /// Runs `step`, reading the CPU (and what was written) around it.
    async fn measure(
        &self,
        step: impl std::future::Future<Output = anyhow::Result<Stats>>,
    ) -> anyhow::Result<Step> {
        // What was written is read outside the CPU's window.
        let written = match &self.writes {
            Some(writes) => Some(writes.now().await?),
            None => None,
        };
        let cpu = CpuSnapshot::take(&self.processes, self.postgres).await?;
        let stats = step.await?;
        let cpu = CpuSnapshot::take(&self.processes, self.postgres).await?.since(&cpu);
        let written = match (&self.writes, written) {
            (Some(writes), Some(before)) => Some(writes.since(&before).await?),
            _ => None,
        };
        Ok(Step { stats, cpu, written })
    }
}

/// The fixed-rate run every count gets: the first count's.
#[derive(Debug, Clone, Copy)]
struct Fixed {
    rate: f64,
    concurrency: usize,
}

/// Searches the maximum of `target`, then runs it at the fixed rate (the
/// one given, else half this maximum, which later counts then get too).
async fn scale<T: Target>(
    label: &str,
    target: &T,
    meter: &Meter<'_>,
    load: &Load,
    fixed: &mut Option<Fixed>,
    sequence: &Sequence,
) -> anyhow::Result<Scaled> {
    let mut search = Search::new(load.p99_limit);
    let mut steps = Vec::new();
    if load.mode.finds_max() {
        for &concurrency in &load.levels {
            let step =
                meter.measure(load::closed_step(label, target, concurrency, load.step, sequence)).await?;
            let more = search.push(step.stats.clone());
            steps.push(step);
            if !more {
                break;
            }
        }
    }
    let mut fixed_step = None;
    if load.mode.runs_fixed() {
        let run = match *fixed {
            Some(run) => run,
            None => Fixed {
                rate: load.fixed_rate(Some(&search), 0.5)?,
                concurrency: load.fixed_concurrency(Some(&search)),
            },
        };
        *fixed = Some(run);
        let step = load::fixed_rate(label, target, run.rate, run.concurrency, load.duration, sequence);
        fixed_step = Some(meter.measure(step).await?);
    }
    Ok(Scaled {
        processes: meter.processes.len(),
        steps,
        best: search.best,
        stopped: search.stopped,
        fixed: fixed_step,
    })
}

/// Starts processes `<role>-<n>` of `role` until `fleet` has `count`.
async fn grow(shape: &Shape, fleet: &mut Vec<ShopProcess>, role: &str, count: usize) -> anyhow::Result<()> {
    while fleet.len() < count {
        let name = format!("{role}-{}", fleet.len() + 1);
        fleet.push(shape.start(&name, &[role]).await?);
    }
    Ok(())
}

/// GET cart and GET orders by customer at each count of query processes,
/// on the views the last projectors built.
async fn queries(args: &Args, run: &Run, history: &History) -> anyhow::Result<Vec<Role>> {
    let load = args.load.resolve(QUERIES);
    let (_, url) = run.views.last().context("a views database")?;
    let shape = Shape { views_url: url.clone(), ..run.shape.clone() };
    let carts: Vec<String> = (0..history.lifecycles.max(1)).map(|k| format!("/api/carts/k{k}")).collect();
    let orders: Vec<String> =
        (0..args.customers.max(1)).map(|u| format!("/api/customers/u{u}/orders")).collect();
    let paths = [("GET cart", Arc::new(carts)), ("GET orders by customer", Arc::new(orders))];
    let mut roles: Vec<Role> = paths
        .iter()
        .map(|(label, _)| Role { label: (*label).to_owned(), process: "query", counts: Vec::new() })
        .collect();
    let mut fixed = vec![None; paths.len()];
    let mut fleet = Vec::new();
    for &count in &args.processes {
        grow(&shape, &mut fleet, "query", count).await?;
        let clients =
            fleet.iter().map(|p| p.client(ClientKind::Hyper)).collect::<anyhow::Result<Vec<_>>>()?;
        let meter = Meter { processes: fleet.iter().collect(), postgres: &run.postgres, writes: None };
        for (((label, paths), role), fixed) in paths.iter().zip(&mut roles).zip(&mut fixed) {
            let gets =
                clients.iter().map(|client| Gets { client: client.clone(), paths: paths.clone() }).collect();
            let scaled = scale(label, &Spread::new(gets), &meter, &load, fixed, &run.sequence).await?;
            role.counts.push(scaled);
        }
    }
    processes::stop_all(fleet).await?;
    Ok(roles)
}

/// Add-item commands at each count of command processes.
async fn commands(args: &Args, run: &Run) -> anyhow::Result<Vec<Role>> {
    let load = args.load.resolve(COMMANDS);
    let plan = args.cart.plan(Then::NewCart, args.customers);
    let label = "POST add-item";
    let mut role = Role { label: label.to_owned(), process: "command", counts: Vec::new() };
    let mut fixed = None;
    let mut fleet = Vec::new();
    for &count in &args.processes {
        grow(&run.shape, &mut fleet, "command", count).await?;
        let clients =
            fleet.iter().map(|p| p.client(ClientKind::Hyper)).collect::<anyhow::Result<Vec<_>>>()?;
        let target =
            Spread::new(clients.iter().map(|client| OverHttp { client: client.clone(), plan }).collect());
        load::warm_up(&target, args.cart.carts, 64, &run.sequence).await?;
        let writes = Writes { events: &run.events, clients };
        let meter =
            Meter { processes: fleet.iter().collect(), postgres: &run.postgres, writes: Some(writes) };
        role.counts.push(scale(label, &target, &meter, &load, &mut fixed, &run.sequence).await?);
    }
    processes::stop_all(fleet).await?;
    Ok(vec![role])
}
