//! The load generator: closed loop (for finding the maximum) and open loop
//! at a fixed rate (for latency without coordinated omission).
//!
//! A [`Target`] makes [`Worker`]s (a connection, a task with its handles);
//! a worker sends one request per [`Worker::call`]. Every call gets a
//! sequence number, unique within a scenario ([`Sequence`]), from which the
//! workload derives what to do (which cart, which product), so the load is
//! deterministic and spreads over its keys.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cpu::CpuMeter;
use crate::stats::{Latencies, Stats};

/// tokio's timer resolution: an open-loop worker wakes this much before its
/// slot at most, and sends at once.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// Growth that counts as "throughput still grows" from one step to the next.
const PLATEAU_GROWTH: f64 = 1.05;

/// Steps without such growth after which the search stops.
const PLATEAU_STEPS: usize = 2;

/// More failures than this fraction end the search (and disqualify the step).
const MAX_ERROR_RATE: f64 = 0.01;

/// Sends requests, one at a time.
pub trait Worker: Send + 'static {
    /// Sends request number `seq`. `intended` is when it was meant to start
    /// (open loop) or when it did start (closed loop): latency the worker
    /// measures itself must count from there.
    fn call(&mut self, seq: u64, intended: Instant) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Makes workers.
pub trait Target: Sync {
    /// What it makes.
    type Worker: Worker;
    /// A new worker (a new connection, for HTTP).
    fn worker(&self) -> impl Future<Output = anyhow::Result<Self::Worker>> + Send;
}

/// Hands out sequence numbers, unique within a scenario.
#[derive(Debug, Default, Clone)]
pub struct Sequence(Arc<AtomicU64>);

impl Sequence {
    /// The next number.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }

    /// `count` consecutive numbers; returns the first.
    pub fn reserve(&self, count: u64) -> u64 {
        self.0.fetch_add(count, Ordering::Relaxed)
    }
}

/// Which measurements a scenario makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Find the maximum, then run at a fixed rate (by default half the maximum).
    Both,
    /// Find the maximum only (closed loop, concurrency steps).
    Max,
    /// Run at a fixed rate only (open loop); needs `--rate` (or `--max-rate`).
    Fixed,
}

impl Mode {
    /// Whether the maximum is searched.
    pub fn finds_max(self) -> bool {
        matches!(self, Mode::Both | Mode::Max)
    }

    /// Whether a fixed-rate run is made.
    pub fn runs_fixed(self) -> bool {
        matches!(self, Mode::Both | Mode::Fixed)
    }
}

/// How a scenario loads its target. Unset options take the scenario's defaults.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct LoadArgs {
    /// Find the maximum, run at a fixed rate, or both.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    pub mode: Mode,
    /// Seconds per concurrency step while finding the maximum.
    #[arg(long, default_value_t = 1.0)]
    pub step_secs: f64,
    /// Seconds of the fixed-rate run.
    #[arg(long, default_value_t = 3.0)]
    pub duration_secs: f64,
    /// Offered rate of the fixed-rate run, requests/s [default: half the
    /// maximum found].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Workers of the fixed-rate run: requests in flight at most [default:
    /// twice the concurrency of the best step, at least the scenario's floor].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// First concurrency step of the search [default: the scenario's].
    #[arg(long)]
    pub min_concurrency: Option<usize>,
    /// Last concurrency step of the search [default: the scenario's].
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// A step whose p99 passes this ends the search and does not count
    /// [default: the scenario's].
    #[arg(long)]
    pub p99_limit_ms: Option<f64>,
}

/// A scenario's defaults for what [`LoadArgs`] leaves unset.
#[derive(Debug, Clone, Copy)]
pub struct LoadDefaults {
    /// First concurrency step.
    pub min_concurrency: usize,
    /// Last concurrency step.
    pub max_concurrency: usize,
    /// Fewest workers of a fixed-rate run.
    pub fixed_concurrency: usize,
    /// The p99 that ends the search.
    pub p99_limit_ms: f64,
}

/// [`LoadArgs`] with the scenario's defaults filled in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Load {
    /// Which measurements.
    pub mode: Mode,
    /// Step length of the search.
    pub step: Duration,
    /// Length of a fixed-rate run.
    pub duration: Duration,
    /// Fixed rate, if given.
    pub rate: Option<f64>,
    /// Workers of a fixed-rate run, if given.
    pub concurrency: Option<usize>,
    /// Concurrency steps of the search.
    pub levels: Vec<usize>,
    /// The p99 that ends the search.
    pub p99_limit: Duration,
    /// Fewest workers of a fixed-rate run.
    pub fixed_floor: usize,
}

impl LoadArgs {
    /// With `defaults` for what is unset.
    pub fn resolve(&self, defaults: LoadDefaults) -> Load {
        let min = self.min_concurrency.unwrap_or(defaults.min_concurrency).max(1);
        let max = self.max_concurrency.unwrap_or(defaults.max_concurrency).max(min);
        let mut levels = vec![min];
        while let Some(&last) = levels.last() {
            if last >= max {
                break;
            }
            levels.push((last * 2).min(max));
        }
        Load {
            mode: self.mode,
            step: Duration::from_secs_f64(self.step_secs.max(0.01)),
            duration: Duration::from_secs_f64(self.duration_secs.max(0.01)),
            rate: self.rate,
            concurrency: self.concurrency,
            levels,
            p99_limit: Duration::from_secs_f64(self.p99_limit_ms.unwrap_or(defaults.p99_limit_ms) / 1000.0),
            fixed_floor: defaults.fixed_concurrency,
        }
    }
}

impl Load {
    /// The fixed rate: `--rate`, else `fraction` of the maximum found.
    pub fn fixed_rate(&self, search: Option<&Search>, fraction: f64) -> anyhow::Result<f64> {
        match (self.rate, search.and_then(Search::best)) {
            (Some(rate), _) => Ok(rate),
            (None, Some(best)) => Ok((best.per_sec * fraction).max(1.0)),
            (None, None) => anyhow::bail!("a fixed-rate run needs --rate (or a maximum found first)"),
        }
    }

    /// Workers of a fixed-rate run: `--concurrency`, else twice the best
    /// step's, at least the scenario's floor.
    pub fn fixed_concurrency(&self, search: Option<&Search>) -> usize {
        self.concurrency.unwrap_or_else(|| {
            let best = search.and_then(Search::best).map_or(0, |best| best.concurrency * 2);
            best.max(self.fixed_floor)
        })
    }
}

/// Width of a timeline slot.
const SLOT: Duration = Duration::from_millis(100);

/// What every worker of a step counted.
struct Tally {
    latencies: Latencies,
    errors: u64,
    first_error: Option<String>,
    /// Per [`SLOT`] of completion time: answers, and the worst latency (µs).
    timeline: Vec<(u64, u64)>,
}

impl Tally {
    fn new() -> Self {
        Self { latencies: Latencies::default(), errors: 0, first_error: None, timeline: Vec::new() }
    }

    fn add(&mut self, result: anyhow::Result<()>, latency: Duration, since_start: Duration) {
        match result {
            Ok(()) => {
                self.latencies.record(latency);
                let slot = (since_start.as_millis() / SLOT.as_millis()) as usize;
                if self.timeline.len() <= slot {
                    self.timeline.resize(slot + 1, (0, 0));
                }
                let (count, worst) = &mut self.timeline[slot];
                *count += 1;
                *worst = (*worst).max(latency.as_micros() as u64);
            }
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.merge(&other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), (0, 0));
        }
        for (mine, (count, worst)) in self.timeline.iter_mut().zip(other.timeline) {
            mine.0 += count;
            mine.1 = mine.1.max(worst);
        }
    }

    /// The worst latency in ms per 100 ms slot, space-separated.
    fn timeline(&self) -> String {
        let worst: Vec<String> =
            self.timeline.iter().map(|&(_, worst)| format!("{:.0}", worst as f64 / 1000.0)).collect();
        worst.join(" ")
    }
}

/// Makes `count` workers of `target`.
pub async fn workers<T: Target>(target: &T, count: usize) -> anyhow::Result<Vec<T::Worker>> {
    let mut workers = Vec::with_capacity(count);
    for _ in 0..count {
        workers.push(target.worker().await?);
    }
    Ok(workers)
}

/// Closed loop: every worker sends its next request as soon as the previous
/// one is answered, until `duration` has passed. Returns the step's figures
/// and the workers.
pub async fn closed_loop<W: Worker>(
    label: &str,
    workers: Vec<W>,
    duration: Duration,
    sequence: &Sequence,
) -> anyhow::Result<(Stats, Vec<W>)> {
    let concurrency = workers.len();
    let cpu = CpuMeter::start();
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for mut worker in workers {
        let sequence = sequence.clone();
        tasks.spawn(async move {
            let mut tally = Tally::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let result = worker.call(sequence.next(), sent).await;
                tally.add(result, sent.elapsed(), start.elapsed());
            }
            (worker, tally)
        });
    }
    let (tally, workers) = gather(tasks).await?;
    let mut stats = Stats::new(
        label,
        concurrency,
        None,
        &tally.latencies,
        tally.errors,
        tally.first_error,
        start.elapsed(),
    );
    stats.cpu_busy_cores = cpu.busy_cores();
    Ok((stats, workers))
}

/// Open loop at `rate` requests/s for `duration`: request `i` is due at
/// `start + i / rate`; a free worker takes the next due request, and its
/// latency counts from when it was due. A system that falls far behind does
/// not keep the run going for ever: requests not started within twice
/// `duration` are not sent, and counted as such (`unsent`).
pub async fn open_loop<W: Worker>(
    label: &str,
    workers: Vec<W>,
    rate: f64,
    duration: Duration,
    sequence: &Sequence,
) -> anyhow::Result<(Stats, Vec<W>)> {
    anyhow::ensure!(rate > 0.0, "the rate must be positive");
    let concurrency = workers.len();
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let first = sequence.reserve(total);
    let next = Arc::new(AtomicU64::new(0));
    let cpu = CpuMeter::start();
    // A short lead so that every worker is waiting before the first slot.
    let start = Instant::now() + Duration::from_millis(2);
    let cutoff = start + duration * 2;
    let unsent = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for mut worker in workers {
        let (next, unsent) = (Arc::clone(&next), Arc::clone(&unsent));
        tasks.spawn(async move {
            let mut tally = Tally::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if Instant::now() > cutoff {
                    unsent.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if due > Instant::now() + TIMER_SLACK {
                    tokio::time::sleep_until(due - TIMER_SLACK).await;
                }
                let from = due.min(Instant::now());
                let result = worker.call(first + i, from).await;
                tally.add(result, from.elapsed(), start.elapsed());
            }
            (worker, tally)
        });
    }
    let (tally, workers) = gather(tasks).await?;
    let timeline = tally.timeline();
    let mut stats = Stats::new(
        label,
        concurrency,
        Some(rate),
        &tally.latencies,
        tally.errors,
        tally.first_error,
        start.elapsed(),
    );
    stats.timeline = timeline;
    stats.cpu_busy_cores = cpu.busy_cores();
    stats.unsent = unsent.load(Ordering::Relaxed);
    Ok((stats, workers))
}

async fn gather<W: Worker>(mut tasks: JoinSet<(W, Tally)>) -> anyhow::Result<(Tally, Vec<W>)> {
    let mut total = Tally::new();
    let mut workers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (worker, tally) = done?;
        total.merge(tally);
        workers.push(worker);
    }
    Ok((total, workers))
}

/// The search for the maximum: steps in order, when to stop, which step is best.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Search {
    /// Every step measured, in order.
    pub steps: Vec<Stats>,
    /// Index of the best step in `steps`, if any qualified.
    pub best: Option<usize>,
    /// Why the search ended.
    pub stopped: String,
    #[serde(skip)]
    p99_limit: Duration,
    #[serde(skip)]
    flat_steps: usize,
}

impl Search {
    /// An empty search whose steps must keep p99 within `p99_limit`.
    pub fn new(p99_limit: Duration) -> Self {
        Self {
            steps: Vec::new(),
            best: None,
            stopped: "the last concurrency step was reached".into(),
            p99_limit,
            flat_steps: 0,
        }
    }

    /// Adds a step; returns whether the search goes on.
    pub fn push(&mut self, step: Stats) -> bool {
        eprintln!(
            "  {:<28} c={:<5} {:>10.0}/s  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}  cpu {:.2}",
            step.label,
            step.concurrency,
            step.per_sec,
            step.latency.p50_ms,
            step.latency.p99_ms,
            step.errors,
            step.cpu_busy_cores
        );
        let index = self.steps.len();
        let failing = step.error_rate() > MAX_ERROR_RATE;
        let too_slow = step.latency.p99_ms > self.p99_limit.as_secs_f64() * 1000.0;
        let per_sec = step.per_sec;
        let best_before = self.best().map_or(0.0, |best| best.per_sec);
        self.steps.push(step);
        if failing {
            self.stopped = format!("more than {:.0} % of requests failed", MAX_ERROR_RATE * 100.0);
            return false;
        }
        if too_slow {
            self.stopped = format!("p99 passed {:.0} ms", self.p99_limit.as_secs_f64() * 1000.0);
            return false;
        }
        if per_sec > best_before {
            self.best = Some(index);
        }
        if per_sec > best_before * PLATEAU_GROWTH {
            self.flat_steps = 0;
        } else {
            self.flat_steps += 1;
        }
        if self.flat_steps >= PLATEAU_STEPS {
            self.stopped = format!(
                "throughput grew less than {:.0} % for {PLATEAU_STEPS} steps",
                (PLATEAU_GROWTH - 1.0) * 100.0
            );
            return false;
        }
        true
    }

    /// The best step within the limits.
    pub fn best(&self) -> Option<&Stats> {
        self.best.map(|index| &self.steps[index])
    }
}

/// Finds the maximum of `target`: closed loop at each of `levels`, `step` long.
pub async fn find_max<T: Target>(
    label: &str,
    target: &T,
    load: &Load,
    sequence: &Sequence,
) -> anyhow::Result<Search> {
    let mut search = Search::new(load.p99_limit);
    for &concurrency in &load.levels {
        let workers = workers(target, concurrency).await?;
        let (stats, _) = closed_loop(label, workers, load.step, sequence).await?;
        if !search.push(stats) {
            break;
        }
    }
    Ok(search)
}

/// Sends `count` requests (closed loop, `concurrency` workers) without
/// measuring them: a warm-up, e.g. one request per cart so that the measured
/// steps see the steady mix rather than every cart being new at once.
pub async fn warm_up<T: Target>(
    target: &T,
    count: u64,
    concurrency: usize,
    sequence: &Sequence,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let left = Arc::new(AtomicU64::new(count));
    let mut tasks = JoinSet::new();
    for mut worker in workers(target, concurrency).await? {
        let (left, sequence) = (Arc::clone(&left), sequence.clone());
        tasks.spawn(async move {
            while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                worker.call(sequence.next(), Instant::now()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(start.elapsed())
}

/// One closed-loop step of `target` at `concurrency`.
pub async fn closed_step<T: Target>(
    label: &str,
    target: &T,
    concurrency: usize,
    duration: Duration,
    sequence: &Sequence,
) -> anyhow::Result<Stats> {
    let workers = workers(target, concurrency).await?;
    let (stats, _) = closed_loop(label, workers, duration, sequence).await?;
    Ok(stats)
}

/// One open-loop run of `target` at `rate` with `concurrency` workers.
pub async fn fixed_rate<T: Target>(
    label: &str,
    target: &T,
    rate: f64,
    concurrency: usize,
    duration: Duration,
    sequence: &Sequence,
) -> anyhow::Result<Stats> {
    let workers = workers(target, concurrency).await?;
    let (stats, _) = open_loop(label, workers, rate, duration, sequence).await?;
    eprintln!(
        "  {:<28} c={:<5} offered {:>8.0}/s achieved {:>8.0}/s  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}  \
         unsent {}  cpu {:.2}",
        stats.label,
        stats.concurrency,
        rate,
        stats.per_sec,
        stats.latency.p50_ms,
        stats.latency.p99_ms,
        stats.errors,
        stats.unsent,
        stats.cpu_busy_cores
    );
    eprintln!("    worst ms per 100 ms: {}", stats.timeline);
    Ok(stats)
}
