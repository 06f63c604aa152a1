//! `projection-rebuild`: every shop view rebuilt from position 0 of a SQLite
//! event store into a fresh read store (`--store`: SQLite, the default, or
//! PostgreSQL) — one `Projector` per
//! projection of `shop_read::all_projections()`, each `catch_up()` on a
//! task of its own, all concurrently (as `shop serve` runs them), or one
//! after the other with `--sequential`. Events per second = events in the
//! log / wall time until the last projector is done.
//!
//! The history (`--events`, default 1,000,000) is generated fast and
//! realistically: the shop's own aggregates (`shop_domain`) run in memory —
//! products registered, restocked and repriced; carts filled with one to
//! three lines, sometimes an item removed, most checked out; the checkout
//! saga's reactions (`shop_domain::react`) fed back until each order is
//! confirmed or rejected; most confirmed orders paid, most of those
//! shipped, a few cancelled (and released). The events they decide are
//! encoded with the shop's codec and appended through `SqliteEventStore`
//! (`synchronous=NORMAL` for speed: generation is not measured), one
//! request per stream per round of a few thousand lifecycles, hundreds of
//! requests in flight, so the writer's group commit takes big batches.
//!
//! The events are generated into a SQLite event store whichever the read
//! store: the source is not what is measured (reading the log shows in the
//! breakdown of the projectors' time), the read store's writes are.
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
//!   own views).
//!
//! `ours / limit` is the fraction of the read store's raw write rate the
//! rebuild reaches. A PostgreSQL run makes databases of its own on
//! `--postgres-url` and drops them afterwards; its report is
//! `projection-rebuild-postgres`.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt, TryStreamExt};
use parallax_core::{
    Aggregate, AppendRequest, Codec, EventStore, ExpectedVersion, Metadata, NewEvent, ReadStore,
};
use parallax_postgres::PgReadStore;
use parallax_runtime::Projector;
use parallax_sqlite::{SqliteEventStore, SqliteReadStore, SqliteStoreOptions};
use rusqlite::{params, Connection};
use serde::Serialize;
use serde_json::json;
use shop_domain::{
    react, Cart, CartCommand, Order, OrderCommand, OrderStatus, Product, ProductCommand, ProductInfo,
    SagaCommand,
};
use shop_events::{ShopCodec, ShopEvent};
use sqlx::PgPool;
use uuid::Uuid;

use super::{ratio, Context};
use crate::probes::{Counted, TimedLog};
use crate::report::{rate, thousands, Report, Table};
use crate::servers::{self, PostgresArgs, RunId, ScratchDb};
use crate::workload;

const NAME: &str = "projection-rebuild";

/// The read store's schema, so the baseline's file is the same.
const READ_STORE_SCHEMA: &str = include_str!("../../../crates/parallax-sqlite/src/sql/read_store.sql");

/// Lifecycles simulated per round of appends.
const LIFECYCLES_PER_ROUND: u64 = 2_000;

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
}

impl Store {
    /// The report's name: `projection-rebuild`, followed by the store's
    /// name unless SQLite.
    fn report_name(self) -> String {
        match self {
            Store::Sqlite => NAME.to_owned(),
            Store::Postgres => format!("{NAME}-postgres"),
        }
    }

    /// The store, as the report names it.
    fn title(self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres => "PostgreSQL",
        }
    }

    /// The databases a run needs on the server (made and dropped around it).
    fn databases(self) -> &'static [&'static str] {
        match self {
            Store::Sqlite => &[],
            Store::Postgres => &["views", "limit"],
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
}

impl Views {
    /// Opens the read stores of kind `args.store`, in `databases` for PostgreSQL.
    async fn open(args: &Args, context: &Context, databases: &[ScratchDb]) -> anyhow::Result<Self> {
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
        })
    }

    fn read_store(&self) -> Arc<dyn ReadStore> {
        match self {
            Views::Sqlite { store, .. } => Arc::new(store.clone()),
            Views::Postgres { store, .. } => Arc::new(store.clone()),
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
        }
    }

    /// Upserts `count` of `docs`, `batch` per transaction, over `connections`
    /// (SQLite: one thread), into the empty store of the same kind.
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
        }
    }

    async fn close(self) {
        if let Views::Postgres { store, limit, .. } = self {
            store.pool().close().await;
            limit.close().await;
        }
    }
}

/// Runs the scenario; with PostgreSQL, in databases of its own, dropped afterwards.
pub async fn run(args: Args, context: &Context) -> anyhow::Result<Report> {
    let run = RunId::new();
    let mut databases = Vec::new();
    let report = async {
        for role in args.store.databases() {
            databases.push(ScratchDb::create(&args.postgres.postgres_url, &run, role).await?);
        }
        let views = Views::open(&args, context, &databases).await?;
        let report = rebuild(&args, context, &views).await;
        views.close().await;
        report
    }
    .await;
    servers::clean_up(databases, None).await;
    report
}

/// Generates the history, rebuilds the views into `views`, measures the baseline.
async fn rebuild(args: &Args, context: &Context, views: &Views) -> anyhow::Result<Report> {
    let events_path = context.data_dir.join("events.db");
    let store = SqliteEventStore::open_with(
        &events_path,
        SqliteStoreOptions { max_batch: 512, synchronous_full: false },
    )?;
    let generated = Instant::now();
    let head = generate(&store, args).await?;
    let generation_secs = generated.elapsed().as_secs_f64();
    eprintln!("  generated {head} events in {generation_secs:.1} s");
    let mix = event_mix(&events_path)?;

    // The rebuild.
    let read = views.read_store();
    let counted = Arc::new(Counted::new(read.clone()));
    let log = Arc::new(TimedLog::new(Arc::new(store.log())));
    let projections = shop_read::all_projections();
    let started = Instant::now();
    let mut finished = Vec::new();
    if args.sequential {
        for projection in projections {
            let name = projection.name();
            let projector =
                Projector::new(projection, log.clone(), counted.clone()).with_batch_size(args.batch_size);
            projector.catch_up().await?;
            finished.push((name, started.elapsed()));
        }
    } else {
        let mut tasks = tokio::task::JoinSet::new();
        for projection in projections {
            let name = projection.name();
            let projector =
                Projector::new(projection, log.clone(), counted.clone()).with_batch_size(args.batch_size);
            tasks.spawn(async move { projector.catch_up().await.map(|()| (name, started.elapsed())) });
        }
        while let Some(done) = tasks.join_next().await {
            finished.push(done??);
        }
    }
    let wall = started.elapsed();
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
    let counts = counted.counts();
    drop(read);
    drop(store);

    // The baseline: as many plain upserts, in batches of the same size.
    let batch = ratio(counts.writes as f64, counts.commits as f64).round().max(1.0) as usize;
    let writes = counts.writes;
    let connections = if args.sequential { 1 } else { finished.len().max(1) };
    let limit = views.upsert_limit(documents, writes, batch, connections).await?;
    let limit_secs = writes as f64 / limit.per_sec;
    let limit_events_per_sec = head as f64 / limit_secs;

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
    report.compare(
        "events/s, rebuild of all views",
        rate(per_sec),
        format!("{} (plain upserts of as many documents)", rate(limit_events_per_sec)),
        ratio(per_sec, limit_events_per_sec),
        "200,000/s",
    );
    let mut timeline = Table::new(&["projection", "done after s", "dead letters"]);
    for (name, at) in &finished {
        let dead = checks.iter().find(|(n, _)| n == name).map_or(0, |(_, d)| *d);
        timeline.row(vec![(*name).to_owned(), format!("{:.2}", at.as_secs_f64()), dead.to_string()]);
    }
    report.section("Projectors", timeline, vec![]);
    let mut work = Table::new(&["what", "count", "busy s (sum over projectors)", "share of projector time"]);
    let projector_secs: f64 = if args.sequential {
        wall.as_secs_f64()
    } else {
        finished.iter().map(|(_, at)| at.as_secs_f64()).sum()
    };
    let log_busy = log.busy();
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
        Table::new(&["documents upserted", "batch", "documents/s", "would rebuild at events/s"]);
    baseline.row(vec![thousands(writes), batch.to_string(), rate(limit.per_sec), rate(limit_events_per_sec)]);
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
    report.notes = vec![
        "ours / baseline: the fraction of the read store's raw write rate (plain upserts of as many \
         documents, in batches of the same size) that the rebuild reaches; the rebuild also reads the log, \
         decodes, applies, reads documents back and checks checkpoints and revisions."
            .into(),
        "The history is generated by the shop's own aggregates and saga decisions run in memory, then \
         appended through SqliteEventStore (not measured), whichever the read store."
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
        "log_read_busy_secs": log_busy.as_secs_f64(),
        "counts": counts,
        "limit": limit,
        "limit_events_per_sec": limit_events_per_sec,
    });
    Ok(report)
}

// ---------------------------------------------------------------------------
// The history

/// The shop in memory: aggregates, and the events they decided this round.
struct Sim {
    codec: ShopCodec,
    products: Vec<Product>,
    round: BTreeMap<String, Vec<NewEvent>>,
    queue: VecDeque<ShopEvent>,
    rng: u64,
    customers: u64,
}

impl Sim {
    fn random(&mut self, below: u64) -> u64 {
        // xorshift64*: deterministic, fast, good enough to spread choices.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % below.max(1)
    }

    /// Decides `command` on `state`; records and applies what it decides.
    fn decide<A: Aggregate>(
        state: &mut A,
        command: &A::Command,
        stream: String,
        codec: &Codec<A::Event>,
        round: &mut BTreeMap<String, Vec<NewEvent>>,
        metadata: &Metadata,
    ) -> Vec<A::Event> {
        let Ok(events) = state.handle(command) else { return Vec::new() };
        let records = round.entry(stream).or_default();
        for event in &events {
            state.apply(event);
            records.push(codec.new_event(event, metadata.clone()));
        }
        events
    }

    fn product(&mut self, index: usize, command: ProductCommand, metadata: &Metadata) {
        let stream = Product::stream_id(&workload::sku(index as u64));
        let events = Self::decide(
            &mut self.products[index],
            &command,
            stream,
            &self.codec.product,
            &mut self.round,
            metadata,
        );
        self.queue.extend(events.into_iter().map(ShopEvent::Product));
    }

    fn order(&mut self, order: &mut Order, id: Uuid, command: OrderCommand, metadata: &Metadata) {
        let stream = Order::stream_id(&id.to_string());
        let events = Self::decide(order, &command, stream, &self.codec.order, &mut self.round, metadata);
        self.queue.extend(events.into_iter().map(ShopEvent::Order));
    }

    /// Runs the saga's reactions until nothing more follows.
    fn settle(&mut self, order: &mut Order, order_id: Uuid, metadata: &Metadata) {
        while let Some(event) = self.queue.pop_front() {
            for command in react(&event) {
                match command {
                    SagaCommand::Product { sku, command } => {
                        let index = sku.trim_start_matches("SKU-").parse::<usize>().unwrap_or(0);
                        self.product(index, command, metadata);
                    }
                    SagaCommand::Order { order_id: id, command } if id == order_id => {
                        self.order(order, id, command, metadata);
                    }
                    SagaCommand::Order { .. } => {}
                }
            }
        }
    }

    /// One customer's visit: a cart, usually an order, and what follows.
    fn lifecycle(&mut self, k: u64) {
        let metadata = Metadata {
            correlation_id: Uuid::now_v7(),
            causation_id: Uuid::now_v7(),
            command_id: Uuid::now_v7(),
            actor: None,
        };
        let cart_id = format!("k{k}");
        let cart_stream = Cart::stream_id(&cart_id);
        let mut cart = Cart::default();
        let lines = 1 + self.random(3);
        for _ in 0..lines {
            let index = self.random(self.products.len() as u64) as usize;
            if self.products[index].stock() < 100 {
                self.product(index, ProductCommand::Restock { quantity: 10_000 }, &metadata);
            }
            if self.random(200) == 0 {
                let price_cents = workload::price_cents(self.random(1_000));
                self.product(index, ProductCommand::Reprice { price_cents }, &metadata);
            }
            self.queue.clear();
            let quantity = 1 + self.random(3) as i64;
            let product = &self.products[index];
            let command = CartCommand::AddItem {
                cart_id: cart_id.clone(),
                sku: product.sku().to_owned(),
                quantity,
                product: Some(ProductInfo {
                    name: product.name().to_owned(),
                    unit_price_cents: product.price_cents(),
                }),
            };
            Self::decide(
                &mut cart,
                &command,
                cart_stream.clone(),
                &self.codec.cart,
                &mut self.round,
                &metadata,
            );
        }
        if self.random(10) == 0 {
            let first = cart.skus().next().map(str::to_owned);
            if let Some(sku) = first {
                let command = CartCommand::RemoveItem { cart_id: cart_id.clone(), sku };
                Self::decide(
                    &mut cart,
                    &command,
                    cart_stream.clone(),
                    &self.codec.cart,
                    &mut self.round,
                    &metadata,
                );
            }
        }
        if self.random(10) >= 8 {
            return; // abandoned
        }
        let prices = cart
            .skus()
            .filter_map(|sku| {
                let index = sku.trim_start_matches("SKU-").parse::<usize>().ok()?;
                let product = self.products.get(index)?;
                Some((
                    sku.to_owned(),
                    ProductInfo { name: product.name().to_owned(), unit_price_cents: product.price_cents() },
                ))
            })
            .collect();
        let order_id = Uuid::now_v7();
        let command = CartCommand::CheckOut {
            cart_id: cart_id.clone(),
            order_id,
            customer_id: format!("u{}", k % self.customers.max(1)),
            prices,
        };
        let events =
            Self::decide(&mut cart, &command, cart_stream, &self.codec.cart, &mut self.round, &metadata);
        self.queue.extend(events.into_iter().map(ShopEvent::Cart));
        let mut order = Order::default();
        self.settle(&mut order, order_id, &metadata);
        if order.status() != Some(OrderStatus::Confirmed) {
            return;
        }
        let next = match self.random(100) {
            0..=4 => vec![OrderCommand::Cancel],
            5..=29 => vec![],
            30..=49 => vec![OrderCommand::Pay],
            _ => vec![OrderCommand::Pay, OrderCommand::Ship],
        };
        for command in next {
            self.order(&mut order, order_id, command, &metadata);
            self.settle(&mut order, order_id, &metadata);
        }
    }
}

/// Generates the history and appends it; returns the head.
async fn generate(store: &SqliteEventStore, args: &Args) -> anyhow::Result<u64> {
    let mut sim = Sim {
        codec: ShopCodec::default(),
        products: vec![Product::default(); args.products.max(1) as usize],
        round: BTreeMap::new(),
        queue: VecDeque::new(),
        rng: 0x9e37_79b9_7f4a_7c15,
        customers: args.customers,
    };
    let metadata = Metadata::default();
    for i in 0..sim.products.len() {
        let command = ProductCommand::Register {
            sku: workload::sku(i as u64),
            name: workload::product_name(i as u64),
            price_cents: workload::price_cents(i as u64),
            stock: 1_000,
        };
        sim.product(i, command, &metadata);
    }
    sim.queue.clear();
    let mut head = append_round(store, std::mem::take(&mut sim.round)).await?;
    let mut k = 0;
    while head < args.events {
        for _ in 0..LIFECYCLES_PER_ROUND {
            sim.lifecycle(k);
            k += 1;
        }
        head = append_round(store, std::mem::take(&mut sim.round)).await?;
    }
    Ok(head)
}

/// Appends one request per stream, many in flight; returns the head.
async fn append_round(
    store: &SqliteEventStore,
    round: BTreeMap<String, Vec<NewEvent>>,
) -> anyhow::Result<u64> {
    stream::iter(round)
        .map(|(stream_id, events)| {
            store.append(AppendRequest {
                stream_id,
                expected_version: ExpectedVersion::Any,
                events,
                idempotency: None,
            })
        })
        .buffer_unordered(512)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(store.head().await?)
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
    /// Upserts per second.
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
    Ok(UpsertLimit { distinct: docs.len() as u64, per_sec: count as f64 / start.elapsed().as_secs_f64() })
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
    Ok(UpsertLimit { distinct, per_sec: count as f64 / start.elapsed().as_secs_f64() })
}
