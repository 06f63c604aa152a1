//! The report of `scale-out`: throughput, latency and the CPU per operation
//! of every party, at each process count.

use serde_json::json;

use super::{Args, Backlog, Role, Scaled, Stage, Step, COMMANDS, QUERIES};
use crate::processes::{micros_per, CpuUse, Party, Shape, KAFKA, POSTGRES, POSTGRES_SHARED};
use crate::report::{errors, ms, rate, thousands, Report, Table};
use crate::scenarios::{ratio, Context};
use crate::workload::Then;

/// The CPU columns of a table, after its own.
const CPU_COLUMNS: [&str; 8] = [
    "CPU µs/op: shop processes (each)",
    "shop",
    "PostgreSQL backends",
    "PostgreSQL server",
    "Kafka",
    "bench",
    "all",
    "other load (cores)",
];

/// The CPU cells for `ops` operations.
fn cpu_cells(cpu: &CpuUse, ops: u64) -> Vec<String> {
    let per = |secs: f64| format!("{:.0}", micros_per(secs, ops));
    vec![
        cpu.shop_per_op(ops),
        per(cpu.of(Party::Shop)),
        per(cpu.named(POSTGRES)),
        per(cpu.named(POSTGRES_SHARED)),
        per(cpu.named(KAFKA)),
        per(cpu.of(Party::Bench)),
        per(cpu.total()),
        format!("{:.2}", cpu.others_cores()),
    ]
}

fn columns(own: &[&'static str]) -> Vec<&'static str> {
    own.iter().chain(&CPU_COLUMNS).copied().collect()
}

/// Builds the report.
pub(super) fn report(
    args: &Args,
    context: &Context,
    shape: &Shape,
    backlog: &Backlog,
    roles: &[Role],
) -> Report {
    let mut report = Report::new(
        super::NAME,
        "the distributed shape, one process per role: 1 and 2 processes of each scalable role, and the CPU \
         per operation of every process and server",
        context.machine.clone(),
    );
    parameters(&mut report, args, shape, backlog);
    summary(&mut report, backlog, roles);
    report.section(
        "Per operation, at each process count",
        operations(roles),
        vec![
            "max: the best step of the search (closed loop); fixed: the open-loop run at the same rate and \
              connections for every count. CPU µs/op: CPU time of each party over the step, per answered \
              request."
                .into(),
        ],
    );
    report.section(
        "Commands: what was written, every step",
        writes(roles),
        vec!["events: rows the step stored; positions: how far the event store's head moved (an append refused \
              for a conflict leaves the positions it took unused); appends: requests the command processes' \
              event stores committed (a command whose cached state was stale is appended again after a \
              reload); transactions: their group commits (`parallax_event_store_group_size` of each \
              process's /metrics)."
            .into()],
    );
    report.section("Backlog: the relay, then the projectors", stages(backlog), vec![backlog_note(backlog)]);
    report.section("Every search step", steps(roles), vec![stopped(roles)]);
    report.notes = notes();
    report.raw = json!({ "args": args, "backlog": backlog, "roles": roles });
    report
}

fn parameters(report: &mut Report, args: &Args, shape: &Shape, backlog: &Backlog) {
    let history = &backlog.history;
    report.parameter(
        "shape",
        format!(
            "`shop serve --role <role>` processes of {}; PostgreSQL event store and views on {} (fresh \
             databases: one for events, one for the views of each projector count); a topic of {} partitions \
             on {}; pools of {} connections per database per process",
            shape.binary.display(),
            parallax_postgres::redact(&args.postgres.postgres_url),
            shape.partitions,
            shape.brokers,
            shape.pool_size
        ),
    );
    report.parameter("process counts", format!("{:?}", args.processes));
    report.parameter(
        "backlog",
        format!(
            "{} events ({} carts k0…, orders of {} customers, {} products), appended straight into the event \
             store in {:.1} s (not measured)",
            thousands(history.head),
            thousands(history.lifecycles),
            thousands(args.customers),
            args.cart.products,
            backlog.generation_secs
        ),
    );
    report.parameter(
        "commands",
        format!(
            "{}; connections round-robin over the command processes; a warm-up of one add-item per cart slot \
             at each count (not measured)",
            args.cart.plan(Then::NewCart, args.customers).describe()
        ),
    );
    report.parameter(
        "queries",
        format!(
            "GET /api/carts/k{{0…{}}} and GET /api/customers/u{{0…{}}}/orders, round-robin over their keys, \
             connections round-robin over the query processes",
            history.lifecycles.saturating_sub(1),
            args.customers.saturating_sub(1)
        ),
    );
    let commands = args.load.resolve(COMMANDS);
    let queries = args.load.resolve(QUERIES);
    report.parameter(
        "search steps",
        format!(
            "commands {:?}, queries {:?} × {:.1} s; p99 limits {:.0} and {:.0} ms",
            commands.levels,
            queries.levels,
            commands.step.as_secs_f64(),
            commands.p99_limit.as_secs_f64() * 1000.0,
            queries.p99_limit.as_secs_f64() * 1000.0
        ),
    );
    report.parameter("fixed-rate run", format!("{:.1} s", commands.duration.as_secs_f64()));
}

/// Each count against the first: throughput and CPU per operation.
fn summary(report: &mut Report, backlog: &Backlog, roles: &[Role]) {
    for role in roles {
        let Some((base, more)) = role.counts.split_first() else { continue };
        let Some(base_best) = base.best() else { continue };
        for scaled in more {
            let Some(best) = scaled.best() else { continue };
            report.compare(
                &format!("{}/s (max), {} {} processes", role.label, scaled.processes, role.process),
                format!("{} (c={})", rate(best.stats.per_sec), best.stats.concurrency),
                format!(
                    "{} ({} process, c={})",
                    rate(base_best.stats.per_sec),
                    base.processes,
                    base_best.stats.concurrency
                ),
                ratio(best.stats.per_sec, base_best.stats.per_sec),
                "",
            );
            let (ours, theirs) = (per_op_all(best), per_op_all(base_best));
            report.compare(
                &format!("CPU µs per {} (max), every party, {} processes", role.process, scaled.processes),
                format!("{ours:.0}"),
                format!("{theirs:.0} ({} process)", base.processes),
                ratio(ours, theirs),
                "",
            );
        }
    }
    if let Some((base, more)) = backlog.projectors.split_first() {
        for stage in more {
            report.compare(
                &format!(
                    "backlog events/s absorbed, {} projector processes (from the first commit)",
                    stage.processes
                ),
                rate(stage_rate(stage)),
                format!("{} ({} process)", rate(stage_rate(base)), base.processes),
                ratio(stage_rate(stage), stage_rate(base)),
                "",
            );
            let per_event = |s: &Stage| micros_per(s.cpu.total(), s.events);
            report.compare(
                &format!("CPU µs per backlog event, every party, {} projector processes", stage.processes),
                format!("{:.0}", per_event(stage)),
                format!("{:.0} ({} process)", per_event(base), base.processes),
                ratio(per_event(stage), per_event(base)),
                "",
            );
        }
    }
}

fn per_op_all(step: &Step) -> f64 {
    micros_per(step.cpu.total(), step.stats.ok)
}

/// Events per second of a stage, from its first commit (or its start).
fn stage_rate(stage: &Stage) -> f64 {
    ratio(stage.events as f64, stage.working_secs.unwrap_or(stage.secs))
}

/// The best step and the fixed-rate run of every count, with the CPU per operation.
fn operations(roles: &[Role]) -> Table {
    let mut table =
        Table::new(&columns(&["target", "processes", "run", "answered/s", "p50 ms", "p99 ms", "errors"]));
    for (role, scaled, run, step) in every_run(roles) {
        let stats = &step.stats;
        let mut row = vec![
            role.label.clone(),
            scaled.processes.to_string(),
            run,
            rate(stats.per_sec),
            ms(stats.latency.p50_ms),
            ms(stats.latency.p99_ms),
            errors(stats),
        ];
        row.extend(cpu_cells(&step.cpu, stats.ok));
        table.row(row);
    }
    table
}

/// The best step and the fixed-rate run of every count of every role.
fn every_run(roles: &[Role]) -> impl Iterator<Item = (&Role, &Scaled, String, &Step)> {
    roles.iter().flat_map(|role| {
        role.counts.iter().flat_map(move |scaled| {
            runs(scaled).into_iter().map(move |(run, step)| (role, scaled, run, step))
        })
    })
}

/// The best step (`max, c=…`) and the fixed-rate run (`fixed …/s`) of a count.
fn runs(scaled: &Scaled) -> Vec<(String, &Step)> {
    let mut runs = Vec::new();
    if let Some(best) = scaled.best() {
        runs.push((format!("max, c={}", best.stats.concurrency), best));
    }
    if let Some(fixed) = &scaled.fixed {
        let offered = fixed.stats.offered_per_sec.unwrap_or(0.0);
        runs.push((format!("fixed {}/s, c={}", rate(offered), fixed.stats.concurrency), fixed));
    }
    runs
}

/// What the commands wrote, per run.
fn writes(roles: &[Role]) -> Table {
    let mut table = Table::new(&[
        "processes",
        "run",
        "commands/s",
        "p99 ms",
        "events per command",
        "positions per command",
        "appends per command",
        "transactions/s",
        "events per transaction",
        "PostgreSQL backends CPU µs per transaction",
    ]);
    for role in roles {
        for scaled in &role.counts {
            let searched = scaled.steps.iter().map(|step| (format!("c={}", step.stats.concurrency), step));
            let fixed = runs(scaled).into_iter().filter(|(run, _)| run.starts_with("fixed"));
            for (run, step) in searched.chain(fixed) {
                let Some(written) = step.written else { continue };
                let ok = step.stats.ok as f64;
                table.row(vec![
                    scaled.processes.to_string(),
                    run,
                    rate(step.stats.per_sec),
                    ms(step.stats.latency.p99_ms),
                    format!("{:.3}", ratio(written.events as f64, ok)),
                    format!("{:.3}", ratio(written.head as f64, ok)),
                    format!("{:.3}", ratio(written.appends, ok)),
                    rate(ratio(written.transactions, step.stats.elapsed_secs)),
                    format!("{:.1}", ratio(written.events as f64, written.transactions)),
                    format!("{:.0}", ratio(step.cpu.named(POSTGRES) * 1e6, written.transactions)),
                ]);
            }
        }
    }
    table
}

/// The relay and each projector count.
fn stages(backlog: &Backlog) -> Table {
    let mut table = Table::new(&columns(&[
        "stage",
        "processes",
        "events",
        "s from start",
        "s from first commit",
        "events/s (from first commit)",
        "view rows per event",
        "view transactions",
        "refused (conflicts)",
    ]));
    for stage in std::iter::once(&backlog.relay).chain(&backlog.projectors) {
        let mut row = vec![
            stage.role.to_owned(),
            stage.processes.to_string(),
            thousands(stage.events),
            format!("{:.2}", stage.secs),
            stage.working_secs.map_or_else(String::new, |secs| format!("{secs:.2}")),
            rate(stage_rate(stage)),
        ];
        row.extend(match stage.views {
            Some(views) => vec![
                format!("{:.2}", ratio(views.rows as f64, stage.events as f64)),
                views.transactions.to_string(),
                views.rollbacks.to_string(),
            ],
            None => vec![String::new(); 3],
        });
        row.extend(cpu_cells(&stage.cpu, stage.events));
        table.row(row);
    }
    table
}

fn backlog_note(backlog: &Backlog) -> String {
    format!(
        "CPU µs/op here is per event of the backlog ({} events). The relay reads the event store and publishes \
         every event once; each projector count absorbs the whole topic once per projection ({} consumer \
         groups, so Kafka hands out each event {} times), into a fresh views database of its own; view rows: \
         rows inserted, updated or deleted in that database (documents and checkpoints, from \
         pg_stat_database), view transactions: its commits (less the bench's reads of the checkpoints), \
         refused: its rollbacks (a batch whose checkpoint another projector moved, or whose documents it \
         changed, is rolled back and read again). s from start includes starting the processes and the \
         consumer groups' first assignment.",
        thousands(backlog.history.head),
        super::PROJECTIONS,
        super::PROJECTIONS
    )
}

/// Every step of every search, with the CPU per operation.
fn steps(roles: &[Role]) -> Table {
    let mut table = Table::new(&columns(&[
        "target",
        "processes",
        "concurrency",
        "answered/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
    ]));
    for role in roles {
        for scaled in &role.counts {
            for step in &scaled.steps {
                let stats = &step.stats;
                let mut row = vec![
                    role.label.clone(),
                    scaled.processes.to_string(),
                    stats.concurrency.to_string(),
                    rate(stats.per_sec),
                    errors(stats),
                    ms(stats.latency.p50_ms),
                    ms(stats.latency.p99_ms),
                    ms(stats.latency.p999_ms),
                ];
                row.extend(cpu_cells(&step.cpu, stats.ok));
                table.row(row);
            }
        }
    }
    table
}

fn stopped(roles: &[Role]) -> String {
    let each: Vec<String> = roles
        .iter()
        .flat_map(|role| {
            role.counts
                .iter()
                .map(move |scaled| format!("{} × {}: {}", role.label, scaled.processes, scaled.stopped))
        })
        .collect();
    format!("The searches stopped — {}.", each.join("; "))
}

fn notes() -> Vec<String> {
    vec![
        "Each role runs alone while it is measured: the relay, then the projectors (each count into a views \
         database of its own), then the query processes, then the command processes; no saga runs. So the \
         CPU of a shop process is its role's own, and a server's CPU is what that role asks of it."
            .into(),
        "CPU: each shop process from /proc/<pid>/stat; PostgreSQL backends: those of the run's databases \
         (pg_stat_activity, then /proc), so work for other databases of the server is left out; PostgreSQL \
         server: its own processes (WAL writer, checkpointer, background writer, …), which work for every \
         database; Kafka: the broker process (anything else using it counts too); bench: the load generator \
         (HTTP client) and its probes; other load: what the rest of the machine kept busy meanwhile (from \
         /proc/stat, less all of the above), in cores: above 0, other work shared the run."
            .into(),
        "The machine has two cores shared by the load generator, the servers and the shop's processes: a \
         second process of a role cannot add much throughput here. The cost per operation of each role and \
         server does not depend on the core count; docs/scaling.md turns it into a capacity model."
            .into(),
        "Search: closed loop, concurrency doubling each step; fixed rate: open loop, latency from each \
         request's intended start (no coordinated omission). See `bench/src/lib.rs`."
            .into(),
    ]
}
