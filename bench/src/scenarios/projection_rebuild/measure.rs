//! The measured part of a rebuild: the history (generated, not measured),
//! the projectors catching up with it, each with probes of its own, and the
//! baseline's plain upserts of as many documents.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parallax_core::{EventLog, Projection, ReadStore};
use parallax_runtime::Projector;
use parallax_sqlite::{SqliteEventStore, SqliteStoreOptions};
use rusqlite::Connection;
use serde::Serialize;

use super::baseline::{Doc, UpsertLimit};
use super::cassandra::{cql_unit_costs, UnitCost};
use super::views::Views;
use super::{Args, CQL_BATCH_ROWS};
use crate::history;
use crate::machine::{own_cpu_secs, CpuMeter};
use crate::probes::{Counted, Counts, TimedLog};
use crate::scenarios::{ratio, Context};

/// The generated history.
pub(super) struct Generated {
    /// Events in it: the head of the log.
    pub(super) head: u64,
    pub(super) generation_secs: f64,
    pub(super) mix: Mix,
}

/// Generates the history into a SQLite event store in the run's data folder
/// (not measured).
pub(super) async fn generate(
    args: &Args,
    context: &Context,
) -> anyhow::Result<(SqliteEventStore, Generated)> {
    let events_path = context.data_dir.join("events.db");
    let store = SqliteEventStore::open_with(
        &events_path,
        SqliteStoreOptions { max_batch: 512, synchronous_full: false },
    )?;
    let generated = Instant::now();
    let shape = history::Shape::new(args.events, args.products, args.customers);
    let head = history::generate(&store, shape).await?.head;
    let generation_secs = generated.elapsed().as_secs_f64();
    eprintln!("  generated {head} events in {generation_secs:.1} s");
    let mix = event_mix(&events_path)?;
    Ok((store, Generated { head, generation_secs, mix }))
}

/// One projector's probes.
struct Probe {
    name: &'static str,
    counted: Arc<Counted>,
    log: Arc<TimedLog>,
}

/// CPU used during the rebuild, in cores (CPU seconds per second of wall time).
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct CpuUse {
    /// The whole machine (every process).
    pub(super) machine_cores: f64,
    /// The bench process: projectors, the SQLite log, the driver.
    pub(super) bench_cores: f64,
    /// The read store's server, if it is one on this machine.
    pub(super) server_cores: Option<f64>,
}

/// What the rebuild did.
pub(super) struct Rebuilt {
    /// Each projection and when it was done, first done first.
    pub(super) finished: Vec<(&'static str, Duration)>,
    /// Until the last projector was done.
    pub(super) wall: Duration,
    /// Events per second: events in the log / wall time.
    pub(super) per_sec: f64,
    pub(super) cpu: CpuUse,
    /// Each projection's dead letters.
    pub(super) dead_letters: Vec<(&'static str, usize)>,
    /// Each projection's probe counts and busy time in the log's reads.
    pub(super) per_projection: Vec<(&'static str, Counts, Duration)>,
    /// The probe counts summed over the projections.
    pub(super) counts: Counts,
    /// The busy time in the log's reads summed over the projections.
    pub(super) log_busy: Duration,
}

/// Rebuilds every view from `store` into `views`, each projector with
/// probes of its own; checks that every projection reached `head`, and
/// returns what it did and the rebuilt views' documents.
pub(super) async fn rebuild(
    args: &Args,
    views: &Views,
    store: &SqliteEventStore,
    head: u64,
) -> anyhow::Result<(Rebuilt, Vec<Doc>)> {
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
    let mut finished = catch_up(args, projections, &probes, started).await?;
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

    let dead_letters = check_heads(read.as_ref(), head).await?;
    let documents = views.documents().await?;
    let per_projection: Vec<(&'static str, Counts, Duration)> =
        probes.iter().map(|probe| (probe.name, probe.counted.counts(), probe.log.busy())).collect();
    let counts = per_projection.iter().fold(Counts::default(), |sum, (_, counts, _)| sum.plus(counts));
    let log_busy: Duration = per_projection.iter().map(|(_, _, busy)| *busy).sum();
    drop(probes);
    drop(read);
    drop(source);
    let rebuilt = Rebuilt { finished, wall, per_sec, cpu, dead_letters, per_projection, counts, log_busy };
    Ok((rebuilt, documents))
}

/// Runs one projector per projection until it has caught up, concurrently
/// or (`--sequential`) one after the other; returns when each was done,
/// since `started`.
async fn catch_up(
    args: &Args,
    projections: Vec<Arc<dyn Projection>>,
    probes: &[Probe],
    started: Instant,
) -> anyhow::Result<Vec<(&'static str, Duration)>> {
    let mut finished = Vec::new();
    if args.sequential {
        for (projection, probe) in projections.into_iter().zip(probes) {
            let projector = Projector::new(projection, probe.log.clone(), probe.counted.clone())
                .with_batch_size(args.batch_size);
            projector.catch_up().await?;
            finished.push((probe.name, started.elapsed()));
        }
    } else {
        let mut tasks = tokio::task::JoinSet::new();
        for (projection, probe) in projections.into_iter().zip(probes) {
            let name = probe.name;
            let projector = Projector::new(projection, probe.log.clone(), probe.counted.clone())
                .with_batch_size(args.batch_size);
            tasks.spawn(async move { projector.catch_up().await.map(|()| (name, started.elapsed())) });
        }
        while let Some(done) = tasks.join_next().await {
            finished.push(done??);
        }
    }
    Ok(finished)
}

/// Checks that every projection is at the head; returns how many dead
/// letters each has.
async fn check_heads(read: &dyn ReadStore, head: u64) -> anyhow::Result<Vec<(&'static str, usize)>> {
    let mut dead_letters = Vec::new();
    for projection in shop_read::all_projections() {
        let name = projection.name();
        let at = read.checkpoint(name, 0).await?.position;
        let dead = read.dead_letters(name).await?.len();
        anyhow::ensure!(at == head, "{name} stopped at {at}, the head is {head}");
        dead_letters.push((name, dead));
    }
    Ok(dead_letters)
}

/// The baseline's figures.
pub(super) struct Baseline {
    /// Documents per upsert batch: the documents per commit the projectors achieved.
    pub(super) batch: usize,
    /// Documents upserted: as many as the rebuild wrote.
    pub(super) writes: u64,
    /// Connections upserting at a time: as many as projectors committed at a time.
    pub(super) connections: usize,
    pub(super) limit: UpsertLimit,
    /// The rate at which the upserts would rebuild the log.
    pub(super) limit_events_per_sec: f64,
    /// Cassandra: what a commit's operations cost, one at a time.
    pub(super) units: Vec<UnitCost>,
}

/// The baseline: as many plain upserts of `documents` as the rebuild
/// wrote, in batches of the same size.
pub(super) async fn baseline(
    args: &Args,
    views: &Views,
    rebuilt: &Rebuilt,
    documents: Vec<Doc>,
    head: u64,
) -> anyhow::Result<Baseline> {
    let counts = rebuilt.counts;
    let batch = ratio(counts.writes as f64, counts.commits as f64).round().max(1.0) as usize;
    let writes = counts.writes;
    let connections = if args.sequential { 1 } else { rebuilt.finished.len().max(1) };
    let step = (documents.len() / CQL_BATCH_ROWS).max(1);
    let sample: Vec<Doc> = documents.iter().step_by(step).take(CQL_BATCH_ROWS).cloned().collect();
    let limit = views.upsert_limit(documents, writes, batch, connections).await?;
    let limit_secs = writes as f64 / limit.per_sec;
    let limit_events_per_sec = head as f64 / limit_secs;
    let units = match views {
        Views::Cassandra { limit, .. } => cql_unit_costs(limit, &sample).await?,
        _ => Vec::new(),
    };
    Ok(Baseline { batch, writes, connections, limit, limit_events_per_sec, units })
}

/// The kinds of events in the history.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Mix {
    product: u64,
    cart: u64,
    order: u64,
    pub(super) payload_mean: f64,
}

impl Mix {
    pub(super) fn describe(&self) -> String {
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
