//! The report of a run: its parameters, the lag beside the query alone at
//! each fraction, and how the maximum was found.

use serde_json::json;

use super::measure::CpuSplit;
use super::measure::{Level, Maximum, Step};
use super::{wait_name, Args, MaxOf, Via};
use crate::load::{Load, Search};
use crate::report::{ms, rate, Report, Table};
use crate::scenarios::{ratio, Context};
use crate::workload::CartPlan;

/// Everything a run measured, and how.
pub(super) struct Measured<'a> {
    pub(super) args: &'a Args,
    pub(super) plan: CartPlan,
    pub(super) load: &'a Load,
    /// Requests in flight at most at the fixed rates.
    pub(super) concurrency: usize,
    /// The fraction nearest 50 %, which the summary compares.
    pub(super) middle: Option<f64>,
    pub(super) maximum: &'a Maximum,
    pub(super) levels: &'a [Level],
}

/// The report of `measured`.
pub(super) fn report(context: &Context, measured: &Measured<'_>) -> Report {
    let Measured { args, middle, maximum, levels, .. } = *measured;
    let Maximum { max, best_pipeline, search, steps } = maximum;
    let title = match args.via {
        Via::Embedded => "write-to-visible lag, embedded in one process",
        Via::Kafka => "write-to-visible lag through Kafka, every role in one process",
        Via::Cassandra => "write-to-visible lag through Kafka into Cassandra, every role in one process",
    };
    let mut report = Report::new(args.via.report_name(), title, context.machine.clone());
    parameters(&mut report, measured);
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
    lag_section(&mut report, args.via, levels);
    if let Some(search) = search {
        search_section(&mut report, search, steps);
    }
    report.notes = notes();
    report.raw = json!({
        "args": args,
        "max_per_sec": max,
        "pipeline_per_sec": best_pipeline,
        "search": search,
        "steps": steps,
        "levels": levels,
    });
    report
}

/// The workload, the shop's wiring, the warm-up, the maximum, each run.
fn parameters(report: &mut Report, measured: &Measured<'_>) {
    let Measured { args, plan, load, concurrency, maximum, .. } = *measured;
    let Maximum { max, best_pipeline, .. } = *maximum;
    report.parameter("workload", plan.describe());
    report.parameter("shop", shop(args));
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
}

/// How the shop is wired for `args.via`.
fn shop(args: &Args) -> String {
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
    }
}

/// The lag at each fraction, beside the query alone.
fn lag_section(report: &mut Report, via: Via, levels: &[Level]) {
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
        CpuSplit::header(via),
        "projector batches/s",
        "events per batch",
        "commit mean ms",
    ]);
    for level in levels {
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
            level.cpu.describe(via),
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
}

/// The search for the maximum, with the projectors' catch-up after each step.
fn search_section(report: &mut Report, search: &Search, steps: &[Step]) {
    let mut table = Table::of_steps(&search.steps);
    table.columns.extend(["events".into(), "catch-up after, s".into(), "pipeline events/s".into()]);
    for (row, step) in table.rows.iter_mut().zip(steps) {
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

fn notes() -> Vec<String> {
    vec![
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
    ]
}
