//! `read-heavy`: the case for CQRS, and against it. The same shop data two
//! ways on the same PostgreSQL server, under the same mix of 95 % reads and
//! 5 % writes at rising rates:
//!
//! - **relational**: a normalized schema (module `relational`: products,
//!   customers, orders, order lines, carts, cart lines), the query API's
//!   reads answered with joins — a customer's newest orders with their
//!   lines and the products' names, a cart with names and prices — and
//!   sales per product as an aggregate over every order line; each write
//!   one transaction on those rows;
//! - **Parallax**: the distributed shape's path in this process (the
//!   freshness scenario's wiring: PostgreSQL event store, relay, Kafka, the
//!   four projectors as consumer groups into PostgreSQL views), commands
//!   through `ShopCommands`, reads through `ShopQueries` on the views; no
//!   saga, so neither side reserves stock and checkouts stay placed.
//!
//! Both are called in-process by the same load generator (open loop,
//! latency from each request's intended start), one side after the other
//! at each rate. Parallax pays for its reads with staleness: each write's
//! time from its acknowledgement until the carts view has absorbed it
//! (module `mix`), reported beside the latencies.
//!
//! The data: a history of `--events` events ([`crate::history`], carts of
//! one to `--lines-per-cart` lines, orders of `--customers` customers) is
//! appended to the event store while the relay and the projectors run; the
//! views are built from it (timed until every projection has absorbed the
//! last event), then the relational tables are copied from the same events
//! (timed: the copy, then the indexes). The report says how many order
//! lines that made (the default aims past 1,000,000).
//!
//! A side passes a rate when it answers 95 % of it, fewer than 1 % of its
//! requests fail and its reads' p99 stays within `--p99-limit-ms` (default
//! 100 ms); a side that fails a rate is not offered the higher ones.

mod mix;
mod relational;
mod report;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use self::mix::{Common, Keys, Kind, Mix, Mixed, Parallax, Recorded, Relational, KINDS};
use self::relational::Loaded;
use super::freshness::wiring::{Scratch, Shop};
use super::freshness::Via;
use super::Context;
use crate::history::{self, History};
use crate::load::{self, LoadArgs, LoadDefaults, Sequence, Target};
use crate::machine::{own_cpu_secs, process_cpu_secs};
use crate::report::Report;
use crate::servers::{KafkaArgs, PostgresArgs, RunId, ScratchDb, ScratchTopic};
use crate::stats::{Latencies, Percentiles, Stats};
use crate::workload::{CartArgs, Then};

const NAME: &str = "read-heavy";

/// Requests each side gets before the rates, not measured.
const WARM_UP: u64 = 2_000;

/// How long the projectors may take to build the views from the history.
const BUILD: Duration = Duration::from_secs(3600);

/// Options of `read-heavy`.
///
/// Defaults: 16 workers per run (as many as each side's pool has
/// connections: more only wait for one, and past 10 s fail), reads' p99
/// limit 100 ms.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Args {
    /// Events of the history both sides are filled from (at least; the
    /// last round is whole).
    #[arg(long, default_value_t = 5_600_000)]
    pub events: u64,
    /// Lines a cart of the history gets at most (one to this many).
    #[arg(long, default_value_t = 8)]
    pub lines_per_cart: u64,
    /// Customers of the history's orders (and of the reads).
    #[arg(long, default_value_t = 10_000)]
    pub customers: u64,
    /// The writes' carts (new ones, `c…`) and the catalog (`--products`).
    #[command(flatten)]
    #[serde(flatten)]
    pub cart: CartArgs,
    /// Offered rates, requests/s, ascending; each runs --duration-secs per side.
    #[arg(long, value_delimiter = ',', default_value = "100,300,1000,3000,10000")]
    pub rates: Vec<f64>,
    /// Writes per 1,000 requests.
    #[arg(long, default_value_t = 50)]
    pub writes_per_mille: u64,
    /// Sales reports per 1,000 requests (the rest of the reads: half
    /// customers' orders, half carts).
    #[arg(long, default_value_t = 10)]
    pub sales_per_mille: u64,
    /// Orders per page of a customer's orders.
    #[arg(long, default_value_t = 10)]
    pub orders_page: usize,
    /// Where PostgreSQL is; `--pool-size` is each side's pool.
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

const DEFAULTS: LoadDefaults =
    LoadDefaults { min_concurrency: 16, max_concurrency: 256, fixed_concurrency: 16, p99_limit_ms: 100.0 };

/// The two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum Side {
    Relational,
    Parallax,
}

/// One side's run at one rate.
#[derive(Debug, Clone, Serialize)]
struct Run {
    side: Side,
    stats: Stats,
    /// Latency of each kind, in [`KINDS`]' order.
    kinds: Vec<(Kind, u64, Percentiles)>,
    /// The three reads together.
    reads: Percentiles,
    /// Parallax: each write's staleness.
    staleness: Option<Percentiles>,
    /// Parallax: writes whose staleness was not known within 30 s.
    unseen: u64,
    /// CPU seconds of every postgres process and of the bench over the run.
    postgres_secs: f64,
    bench_secs: f64,
    passed: bool,
}

/// The data both sides hold, and how long it took to make.
#[derive(Debug, Clone, Serialize)]
struct Data {
    history: History,
    generation_secs: f64,
    /// From the last append until every projection had absorbed it.
    views_after_secs: f64,
    /// From the first append.
    views_secs: f64,
    loaded: Loaded,
    views_bytes: i64,
    events_bytes: i64,
}

/// Runs the scenario on databases and a topic of its own, removed afterwards.
pub async fn run(args: Args, context: &Context) -> anyhow::Result<Report> {
    anyhow::ensure!(
        !args.rates.is_empty() && args.rates[0] > 0.0 && args.rates.windows(2).all(|w| w[0] < w[1]),
        "--rates takes ascending positive rates"
    );
    anyhow::ensure!(
        args.writes_per_mille + args.sales_per_mille <= 1000,
        "the mix takes at most 1,000 per mille"
    );
    let run = RunId::new();
    let mut scratch = Scratch::default();
    let report = async {
        let url = &args.postgres.postgres_url;
        for role in ["events", "views", "relational"] {
            scratch.databases.push(ScratchDb::create(url, &run, role).await?);
        }
        scratch.topic = Some(ScratchTopic::create(&args.kafka, &run).await?);
        let shop = Shop::over_kafka(
            (Via::Kafka, args.postgres.pool_size, false),
            &scratch,
            &run,
            Duration::from_millis(10),
        )
        .await?;
        let measured = measure(&args, &scratch, &shop).await;
        shop.stop().await;
        let (data, runs) = measured?;
        Ok(report::report(&args, context, &data, &runs))
    }
    .await;
    scratch.remove().await;
    report
}

/// Fills both sides, then runs the rates.
async fn measure(args: &Args, scratch: &Scratch, shop: &Shop) -> anyhow::Result<(Data, Vec<Run>)> {
    let data = fill(args, scratch, shop).await?;
    let relational = parallax_postgres::pool(&scratch.databases[2].url, args.postgres.pool_size).await?;
    let plan = args.cart.plan(Then::Checkout, args.customers);
    let keys = Keys {
        customers: args.customers,
        carts: data.history.lifecycles,
        orders_page: args.orders_page,
        sales_page: args.cart.products as usize,
    };
    let common = |recorded: &Arc<Recorded>| Common {
        mix: Mix { writes: args.writes_per_mille, sales: args.sales_per_mille },
        keys,
        plan,
        writes: Arc::new(AtomicU64::new(0)),
        recorded: recorded.clone(),
    };
    let (recorded_r, recorded_p) = (Arc::new(Recorded::default()), Arc::new(Recorded::default()));
    let relational = Mixed { answers: Relational { pool: relational }, common: common(&recorded_r) };
    let parallax = Mixed {
        answers: Parallax {
            commands: shop.commands.clone(),
            queries: shop.queries.clone(),
            freshness: shop.freshness.clone(),
            partitions: shop.partitions,
            recorded: recorded_p.clone(),
        },
        common: common(&recorded_p),
    };
    let load = args.load.resolve(DEFAULTS);
    let concurrency = load.concurrency.unwrap_or(load.fixed_floor);
    let sequence = Sequence::default();
    // Connections opened, caches and plans warm on both sides (not measured).
    load::warm_up(&relational, WARM_UP, concurrency.min(64), &sequence).await?;
    load::warm_up(&parallax, WARM_UP, concurrency.min(64), &sequence).await?;
    recorded_r.finish().await;
    recorded_p.finish().await;
    let mut runs = Vec::new();
    let (mut relational_on, mut parallax_on) = (true, true);
    for &rate in &args.rates {
        if relational_on {
            let run =
                side(Side::Relational, &relational, &recorded_r, rate, concurrency, &load, &sequence).await?;
            relational_on = run.passed;
            runs.push(run);
        }
        if parallax_on {
            let run =
                side(Side::Parallax, &parallax, &recorded_p, rate, concurrency, &load, &sequence).await?;
            parallax_on = run.passed;
            runs.push(run);
        }
        if !relational_on && !parallax_on {
            break;
        }
    }
    Ok((data, runs))
}

/// The history into the event store (while the relay and projectors run),
/// the views built from it, and the relational tables copied from it.
async fn fill(args: &Args, scratch: &Scratch, shop: &Shop) -> anyhow::Result<Data> {
    let shape = history::Shape {
        lines_per_cart: args.lines_per_cart,
        ..history::Shape::new(args.events, args.cart.products, args.customers)
    };
    let began = Instant::now();
    let reported = AtomicU64::new(0);
    let history = history::generate_reporting(shop.events.as_ref(), shape, &|head| {
        if head / 500_000 > reported.swap(head, Ordering::Relaxed) / 500_000 {
            eprintln!("  history: {head} events appended ({:.0} s)", began.elapsed().as_secs_f64());
        }
    })
    .await?;
    let generation_secs = began.elapsed().as_secs_f64();
    let views_after_secs = shop.caught_up_within(BUILD).await?.as_secs_f64();
    let views_secs = began.elapsed().as_secs_f64();
    eprintln!(
        "  history: {} events in {generation_secs:.1} s; views built {views_after_secs:.1} s after the last append",
        history.head
    );
    let events = parallax_postgres::pool(&scratch.databases[0].url, 4).await?;
    let relational = parallax_postgres::pool(&scratch.databases[2].url, 4).await?;
    let loaded = relational::load(&events, &relational).await?;
    eprintln!(
        "  relational: {} order lines; copied in {:.1} s, indexed in {:.1} s",
        loaded.rows_of("order_lines"),
        loaded.copy_secs,
        loaded.index_secs
    );
    let size = |db: &ScratchDb| {
        let name = db.name.clone();
        let events = events.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT pg_database_size($1)").bind(name).fetch_one(&events).await
        }
    };
    let events_bytes = size(&scratch.databases[0]).await?;
    let views_bytes = size(&scratch.databases[1]).await?;
    Ok(Data { history, generation_secs, views_after_secs, views_secs, loaded, views_bytes, events_bytes })
}

/// One side at one rate.
async fn side<T: Target>(
    side: Side,
    target: &T,
    recorded: &Recorded,
    rate: f64,
    concurrency: usize,
    load: &load::Load,
    sequence: &Sequence,
) -> anyhow::Result<Run> {
    let label = format!("{side:?} at {rate:.0}/s");
    let (postgres, bench) = (process_cpu_secs("postgres"), own_cpu_secs());
    let stats = load::fixed_rate(&label, target, rate, concurrency, load.duration, sequence).await?;
    let (postgres_secs, bench_secs) = (process_cpu_secs("postgres") - postgres, own_cpu_secs() - bench);
    let (kinds, staleness, unseen) = recorded.finish().await;
    let mut reads = Latencies::default();
    for latencies in &kinds[1..] {
        reads.merge(latencies);
    }
    let reads = reads.summary();
    let passed = stats.per_sec >= 0.95 * rate
        && stats.error_rate() <= 0.01
        && stats.unsent == 0
        && reads.p99_ms <= load.p99_limit.as_secs_f64() * 1000.0;
    let staleness = (side == Side::Parallax).then(|| staleness.summary());
    if let Some(staleness) = &staleness {
        eprintln!(
            "    staleness p50 {:.1} ms, p99 {:.1} ms, unseen {unseen}",
            staleness.p50_ms, staleness.p99_ms
        );
    }
    Ok(Run {
        side,
        kinds: KINDS.iter().zip(&kinds).map(|(kind, l)| (*kind, l.len(), l.summary())).collect(),
        stats,
        reads,
        staleness,
        unseen,
        postgres_secs,
        bench_secs,
        passed,
    })
}
