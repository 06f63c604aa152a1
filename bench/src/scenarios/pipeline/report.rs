//! The report of `pipeline`: each rate's commands, lag and events, the CPU
//! of every process, where PostgreSQL's CPU goes, and the baseline.

use std::collections::BTreeSet;

use serde_json::json;

use super::{Args, Level, Measured, Store, PROCESSES};
use crate::processes::{micros_per, Party, BENCH, KAFKA, POSTGRES, POSTGRES_SHARED};
use crate::report::{errors, ms, rate, Report, Table};
use crate::scenarios::{ratio, Context};

/// Builds the report.
pub(super) fn report(args: &Args, context: &Context, measured: &Measured) -> Report {
    let name = match args.store {
        Store::Postgres => super::NAME.to_owned(),
        Store::Cassandra => format!("{}-cassandra", super::NAME),
    };
    let mut report = Report::new(
        &name,
        "open-loop commands through the PostgreSQL event store, the relay, Kafka and the projectors into the \
         views, at rising rates: the highest rate whose per-event lag p99 stays under the limit",
        context.machine.clone(),
    );
    parameters(&mut report, args, measured);
    summary(&mut report, args, measured);
    report.section("Each rate", rates(args, &measured.levels), vec![rates_note(args)]);
    report.section(
        "CPU of every process, cores over each run",
        cpu(&measured.levels),
        vec![
            "Cores: CPU seconds over the run ÷ its length; µs per command: every party's CPU ÷ the commands \
              acknowledged. Cassandra only with --store cassandra."
                .into(),
        ],
    );
    report.section(
        "Where PostgreSQL's CPU goes",
        postgres(&measured.levels),
        vec!["Each shop process names its connections after itself (application_name), so each backend's \
              CPU (/proc/<pid>/stat, found in pg_stat_activity) is its client's: command → events is the \
              command process's appends and reads, relay → events the relay's tail and checkpoint, saga → \
              events the saga's tail and its commands, projector → views the projectors' batches and \
              checkpoints (PostgreSQL views only). Commits/s: pg_stat_database's xact_commit of each \
              database over the run (the bench's own few reads included)."
            .into()],
    );
    report.section(
        "Appends of the command and saga processes",
        appends(&measured.levels),
        vec!["Append requests and group commits of each process's event store over the run \
              (parallax_event_store_group_size of its /metrics), per command acknowledged. A command whose \
              cached state, or a product it looked up, was moved by another writer (the saga reserves stock on \
              the products the carts price from) is appended again after a reload (ARCHITECTURE.md \
              invariant 5): the command process's requests per command above 1."
            .into()],
    );
    if let Some(search) = &measured.baseline {
        report.section(
            "Baseline: commands-postgres's search (in-process, event store only)",
            Table::of_steps(&search.steps),
            vec![format!("The search stopped: {}.", search.stopped)],
        );
    }
    report.notes = notes();
    report.raw = json!({ "args": args, "levels": measured.levels, "baseline": measured.baseline });
    report
}

fn parameters(report: &mut Report, args: &Args, measured: &Measured) {
    let views = match args.store {
        Store::Postgres => "PostgreSQL views (a database of the run's own)".to_owned(),
        Store::Cassandra => {
            format!("Cassandra views on {} (a keyspace of the run's own)", args.cassandra.cassandra_nodes)
        }
    };
    let processes: Vec<&str> = PROCESSES.iter().map(|(name, _)| *name).collect();
    report.parameter(
        "shape",
        format!(
            "`shop serve --role <role>` processes ({}); PostgreSQL event store on {}; a topic of {} partitions on \
             {}; {views}; pools of {} connections per database per process",
            processes.join(", "),
            parallax_postgres::redact(&args.postgres.postgres_url),
            args.kafka.partitions,
            args.kafka.kafka_brokers,
            args.postgres.pool_size
        ),
    );
    report.parameter(
        "commands",
        format!(
            "over HTTP to the command process, {} connections, open loop; {}; products registered and one \
             command per cart slot first (not measured, {:.1} s)",
            measured.concurrency,
            args.cart.plan(args.then, args.customers).describe(),
            measured.warm_up_secs
        ),
    );
    if !args.settings.is_empty() {
        let settings: Vec<String> =
            args.settings.iter().map(|(key, value)| format!("`{key}={value}`")).collect();
        report.parameter("settings", format!("every shop process: {}", settings.join(", ")));
    }
    let load = args.load.resolve(super::DEFAULTS);
    report.parameter(
        "rates",
        format!(
            "{:?} commands/s, {:.1} s each, stopping {} after the first that fails; lag limit p99 < {} s; \
             drain at most {} s",
            args.rates,
            load.duration.as_secs_f64(),
            args.past_limit,
            args.lag_limit_secs,
            args.drain_secs
        ),
    );
}

fn summary(report: &mut Report, args: &Args, measured: &Measured) {
    let best = measured
        .levels
        .iter()
        .filter(|level| level.passed)
        .max_by(|a, b| a.stats.per_sec.total_cmp(&b.stats.per_sec));
    let limit = measured.baseline.as_ref().and_then(|search| search.best());
    let (limit_text, limit_rate) = match limit {
        Some(best) => (
            format!(
                "commands-postgres max {}/s, p99 {} ms (c={})",
                rate(best.per_sec),
                ms(best.latency.p99_ms),
                best.concurrency
            ),
            best.per_sec,
        ),
        None => ("not measured".to_owned(), 0.0),
    };
    let ours = match best {
        Some(level) => format!(
            "{} commands/s acknowledged (offered {}), lag p99 {:.0} ms",
            rate(level.stats.per_sec),
            rate(level.stats.offered_per_sec.unwrap_or(0.0)),
            level.lag.quantile(0.99) * 1000.0
        ),
        None => "none of the rates".to_owned(),
    };
    report.compare(
        &format!("highest rate with the lag p99 under {} s", args.lag_limit_secs),
        ours,
        limit_text,
        ratio(best.map_or(0.0, |level| level.stats.per_sec), limit_rate),
        "",
    );
    let base = measured.baseline_postgres_per_command;
    for level in &measured.levels {
        let commands = level.stats.ok;
        let postgres = level.cpu.named(POSTGRES) + level.cpu.named(POSTGRES_SHARED);
        let ours = micros_per(postgres, commands);
        report.compare(
            &format!(
                "at {}/s: PostgreSQL CPU µs per command",
                rate(level.stats.offered_per_sec.unwrap_or(0.0))
            ),
            format!("{ours:.0} ({:.2} cores)", cores(postgres, level)),
            base.map_or_else(
                || "not measured".to_owned(),
                |base| format!("{base:.0} (commands-postgres's search)"),
            ),
            ratio(ours, base.unwrap_or(0.0)),
            "",
        );
    }
}

fn appends(levels: &[Level]) -> Table {
    let mut table = Table::new(&[
        "offered/s",
        "process",
        "append requests per command",
        "group commits/s",
        "requests per group commit",
    ]);
    for level in levels {
        for (process, requests, groups) in &level.appends {
            table.row(vec![
                rate(level.stats.offered_per_sec.unwrap_or(0.0)),
                process.clone(),
                format!("{:.2}", ratio(*requests, level.stats.ok as f64)),
                rate(ratio(*groups, level.stats.elapsed_secs)),
                format!("{:.2}", ratio(*requests, *groups)),
            ]);
        }
    }
    table
}

fn cores(secs: f64, level: &Level) -> f64 {
    ratio(secs, level.cpu.elapsed_secs)
}

fn rates(args: &Args, levels: &[Level]) -> Table {
    let mut table = Table::new(&[
        "offered/s",
        "acknowledged/s",
        "errors",
        "command p50 ms",
        "command p99 ms",
        "events appended/s",
        "events projected/s",
        "lag p50 ms",
        "lag p99 ms",
        "lag mean ms",
        &format!("within {} s", args.lag_limit_secs),
        "drain s",
        "passed",
    ]);
    for level in levels {
        let stats = &level.stats;
        let projected = ratio(level.lag.count(), stats.elapsed_secs + level.drain_secs);
        table.row(vec![
            rate(stats.offered_per_sec.unwrap_or(0.0)),
            rate(stats.per_sec),
            errors(stats),
            ms(stats.latency.p50_ms),
            ms(stats.latency.p99_ms),
            rate(ratio(level.events as f64, stats.elapsed_secs)),
            rate(projected),
            lag_ms(level.lag.quantile(0.5)),
            lag_ms(level.lag.quantile(0.99)),
            lag_ms(level.lag.mean()),
            format!("{:.2} %", level.lag.fraction_within(args.lag_limit_secs) * 100.0),
            format!("{:.1}{}", level.drain_secs, if level.drained { "" } else { " (not drained)" }),
            if level.passed { "yes" } else { "no" }.to_owned(),
        ]);
    }
    table
}

fn lag_ms(secs: f64) -> String {
    if secs.is_infinite() {
        "> 60,000".to_owned()
    } else {
        format!("{:.1}", secs * 1000.0)
    }
}

fn rates_note(args: &Args) -> String {
    format!(
        "Lag: per event and per projection that handles it, from the event's recorded_at (stamped by the \
         command process as its handler decided it, just before the append's commit) to the commit of the \
         projector batch that applied it (the projector process's histogram \
         parallax_projector_event_lag_seconds, read before the run and after the drain; quantiles \
         interpolated within its buckets, and the share within {} s exact, it being a bucket bound). Events \
         projected/s: those applications (an event counts once per projection that handles it) over the \
         run and the drain. Events appended/s: the commands' events and the saga's, over the run. A rate \
         passes with at least 95 % of the offered rate acknowledged, at most 1 % errors, every event absorbed \
         within {} s after the run and at least 99 % of the lags within the limit.",
        args.lag_limit_secs, args.drain_secs
    )
}

fn cpu(levels: &[Level]) -> Table {
    let shop: Vec<&str> = PROCESSES.iter().map(|(name, _)| *name).collect();
    let mut columns = vec!["offered/s"];
    columns.extend(&shop);
    columns.extend([
        POSTGRES,
        POSTGRES_SHARED,
        KAFKA,
        "Cassandra",
        BENCH,
        "all",
        "other load",
        "µs per command, all",
    ]);
    let mut table = Table::new(&columns);
    for level in levels {
        let cpu = &level.cpu;
        let mut row = vec![rate(level.stats.offered_per_sec.unwrap_or(0.0))];
        row.extend(shop.iter().map(|name| format!("{:.2}", cores(cpu.named(name), level))));
        let cassandra = level.cassandra_secs.unwrap_or(0.0);
        row.extend([
            format!("{:.2}", cores(cpu.named(POSTGRES), level)),
            format!("{:.2}", cores(cpu.named(POSTGRES_SHARED), level)),
            format!("{:.2}", cores(cpu.named(KAFKA), level)),
            level.cassandra_secs.map_or_else(String::new, |_| format!("{:.2}", cores(cassandra, level))),
            format!("{:.2}", cores(cpu.of(Party::Bench), level)),
            format!("{:.2}", cores(cpu.total() + cassandra, level)),
            format!("{:.2}", cpu.others_cores()),
            format!("{:.0}", micros_per(cpu.total() + cassandra, level.stats.ok)),
        ]);
        table.row(row);
    }
    table
}

fn postgres(levels: &[Level]) -> Table {
    let clients: BTreeSet<&String> =
        levels.iter().flat_map(|level| level.cpu.postgres_by_client.keys()).collect();
    let databases: Vec<&String> =
        levels.first().map(|l| l.databases.iter().map(|(role, _)| role).collect()).unwrap_or_default();
    let mut columns = vec!["offered/s".to_owned(), "measure".to_owned()];
    columns.extend(clients.iter().map(|client| short(client)));
    columns.push("server's own".to_owned());
    columns.extend(databases.iter().map(|db| format!("{db} commits/s")));
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut table = Table::new(&columns);
    for level in levels {
        for per_command in [false, true] {
            let value = |secs: f64| match per_command {
                false => format!("{:.2}", cores(secs, level)),
                true => format!("{:.0}", micros_per(secs, level.stats.ok)),
            };
            let mut row = vec![
                rate(level.stats.offered_per_sec.unwrap_or(0.0)),
                if per_command { "µs per command" } else { "cores" }.to_owned(),
            ];
            row.extend(
                clients
                    .iter()
                    .map(|client| value(level.cpu.postgres_by_client.get(*client).copied().unwrap_or(0.0))),
            );
            row.push(value(level.cpu.named(POSTGRES_SHARED)));
            row.extend(level.databases.iter().map(|(_, activity)| match per_command {
                false => rate(ratio(activity.transactions as f64, level.stats.elapsed_secs)),
                true => {
                    format!("{:.2} per command", ratio(activity.transactions as f64, level.stats.ok as f64))
                }
            }));
            table.row(row);
        }
    }
    table
}

/// `command → parallax_bench_1a2b3c4d_events` as `command → events`; the
/// bench's own connections (no application name) as `bench`.
fn short(client: &str) -> String {
    let (application, database) = client.split_once(" → ").unwrap_or((client, ""));
    let database = database.rsplit('_').next().unwrap_or(database);
    let application = if application.is_empty() { "bench" } else { application };
    format!("{application} → {database}")
}

fn notes() -> Vec<String> {
    vec![
        "Every role runs in a `shop serve` process of its own, as an operator runs the distributed shape: \
         command, relay (leased), saga (leased), and one projector process with the four projections, each a \
         consumer group of the topic. The bench sends the commands over HTTP (hyper, one connection per \
         worker) and reads the projector's /metrics."
            .into(),
        "Open loop: commands are due at start + i / rate and their latency counts from then (no \
         coordinated omission); a run that falls behind sends nothing after twice its length (unsent)."
            .into(),
        "The baseline is commands-postgres's measure, made in the same run after the pipeline's processes \
         stopped: the same commands in-process on the PostgreSQL event store alone (closed loop, concurrency \
         doubling). The pipeline's figure is below it by what the relay, Kafka, the projectors, the saga and \
         HTTP cost on the same two cores."
            .into(),
    ]
}
