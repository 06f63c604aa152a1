//! The measured part of a run: the requests (command, wait until visible,
//! query, query again), the search for the maximum with the projectors'
//! catch-up after each step, and the open-loop runs at its fractions.

use std::sync::Arc;

use parallax_core::{partition_for, Aggregate, ConsistencyToken};
use parallax_runtime::{Executed, Freshness};
use serde::Serialize;
use shop::commands::ShopCommands;
use shop_domain::Cart;
use shop_read::queries::answered_by;
use shop_read::ShopQueries;
use tokio::sync::watch;
use tokio::time::Instant;

use super::wiring::Shop;
use super::{wait_name, Args, MaxOf, Via, Wait, WAIT};
use crate::load::{self, Load, Search, Sequence, Target, Worker};
use crate::machine::{cmdline_cpu_secs, own_cpu_secs, process_cpu_secs};
use crate::probes::Counts;
use crate::scenarios::ratio;
use crate::servers;
use crate::stats::{Latencies, Percentiles, Stats};
use crate::workload::{self, CartPlan, InProcess};

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
pub(super) struct Level {
    pub(super) fraction: f64,
    pub(super) wait: Wait,
    pub(super) run: Stats,
    pub(super) ack: Percentiles,
    pub(super) lag: Percentiles,
    pub(super) query: Percentiles,
    /// Events appended during the run.
    pub(super) events: u64,
    /// What the projectors did meanwhile.
    pub(super) projectors: Counts,
    /// CPU the bench process and the servers used meanwhile, in cores.
    pub(super) cpu: CpuSplit,
}

/// CPU of the bench process and of the servers on this machine the shape
/// uses: CPU seconds so far, or cores over a run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(super) struct CpuSplit {
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
    pub(super) fn header(via: Via) -> &'static str {
        match via {
            Via::Embedded => "CPU cores: bench",
            Via::Kafka => "CPU cores: bench / PostgreSQL / Kafka",
            Via::Cassandra => "CPU cores: bench / PostgreSQL / Kafka / Cassandra",
        }
    }

    /// The cell for `via`.
    pub(super) fn describe(&self, via: Via) -> String {
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
pub(super) struct Step {
    pub(super) commands: Stats,
    /// Events appended during the step.
    pub(super) events: u64,
    /// How long the projectors took to absorb them after the step.
    pub(super) catch_up_secs: f64,
}

impl Step {
    /// Events per second the whole pipeline sustained: appended, then absorbed.
    pub(super) fn pipeline_per_sec(&self) -> f64 {
        ratio(self.events as f64, self.commands.elapsed_secs + self.catch_up_secs)
    }
}

/// What every measured run needs: the shop, the load's settings, the
/// plan, the sequence of cart slots.
pub(super) struct Runs<'a> {
    pub(super) shop: &'a Shop,
    pub(super) load: &'a Load,
    pub(super) plan: CartPlan,
    pub(super) sequence: &'a Sequence,
}

/// The maximum the fractions are of, and how it was found.
pub(super) struct Maximum {
    /// The rate the fractions are of.
    pub(super) max: f64,
    /// The best pipeline rate of the search's steps.
    pub(super) best_pipeline: f64,
    /// The search, unless `--max-rate` gave the maximum.
    pub(super) search: Option<Search>,
    /// The search's steps, each with the projectors' catch-up after it.
    pub(super) steps: Vec<Step>,
}

/// The maximum: `--max-rate`, or found by a search in closed loop.
pub(super) async fn maximum(args: &Args, runs: &Runs<'_>) -> anyhow::Result<Maximum> {
    let mut steps: Vec<Step> = Vec::new();
    let mut search = None;
    if args.max_rate.is_none() {
        search = Some(search_maximum(args, runs, &mut steps).await?);
    }
    let best_pipeline = steps.iter().map(Step::pipeline_per_sec).fold(0.0, f64::max);
    let max = match (args.max_rate, args.max_of, search.as_ref().and_then(Search::best)) {
        (Some(max), _, _) => max,
        (None, MaxOf::Visible | MaxOf::Commands, Some(best)) => best.per_sec,
        (None, MaxOf::Pipeline, Some(_)) => best_pipeline,
        (None, _, None) => anyhow::bail!("no step qualified: no maximum to take fractions of"),
    };
    Ok(Maximum { max, best_pipeline, search, steps })
}

/// Steps concurrency up in closed loop, the projectors caught up before
/// each step and timed catching up after it, into `steps`.
async fn search_maximum(args: &Args, runs: &Runs<'_>, steps: &mut Vec<Step>) -> anyhow::Result<Search> {
    let Runs { shop, load, plan, sequence } = *runs;
    let commands = InProcess { commands: shop.commands.clone(), plan };
    let cycles = Visible { shop, plan, freshness: true };
    let mut found = Search::new(load.p99_limit);
    for &concurrency in &load.levels {
        shop.caught_up().await?;
        let head = shop.events.head().await?;
        let stats = match args.max_of {
            MaxOf::Visible => {
                load::closed_step("write-to-visible", &cycles, concurrency, load.step, sequence).await?
            }
            MaxOf::Commands | MaxOf::Pipeline => {
                load::closed_step("commands", &commands, concurrency, load.step, sequence).await?
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
        let pipeline_flat = args.max_of == MaxOf::Pipeline && pipeline_stopped(steps, &step);
        steps.push(step);
        if !found.push(stats) {
            break;
        }
        if pipeline_flat {
            found.stopped = "the pipeline rate grew less than 5 % for 2 steps".into();
            break;
        }
    }
    Ok(found)
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

/// One open-loop run at `fraction` of `max`, its requests waiting as `wait` says.
pub(super) async fn level(
    args: &Args,
    runs: &Runs<'_>,
    max: f64,
    concurrency: usize,
    (fraction, wait): (f64, Wait),
) -> anyhow::Result<Level> {
    let Runs { shop, load, plan, sequence } = *runs;
    shop.caught_up().await?;
    let target = Visible { shop, plan, freshness: wait == Wait::Freshness };
    let workers = load::workers(&target, concurrency).await?;
    let rate = (max * fraction).max(1.0);
    let label = format!("{:.0} % of max, {}", fraction * 100.0, wait_name(wait));
    let (head, before) = (shop.events.head().await?, shop.projected.counts());
    let cpu_before = CpuSplit::now(args.via);
    let (run, workers) = load::open_loop(&label, workers, rate, load.duration, sequence).await?;
    let cpu = CpuSplit::now(args.via).cores_since(&cpu_before, run.elapsed_secs);
    let (events, projectors) = (shop.events.head().await? - head, shop.projected.counts().since(&before));
    let (mut ack, mut lag, mut query) = (Latencies::default(), Latencies::default(), Latencies::default());
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
    Ok(level)
}
