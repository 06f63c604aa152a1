//! `commands-http`: add-item commands over HTTP against `shop serve` (the
//! release binary as a separate process, every role running: command API,
//! projectors, saga, query API), many keep-alive connections.
//!
//! Baselines, same run:
//! - `GET /health` at the same concurrency steps and the same fixed rate:
//!   what the HTTP stack (hyper/axum in the shop, the client here, the
//!   loopback) allows with no command behind it. Measured first, on the idle
//!   shop.
//! - The in-process path of `commands-embedded` (`ShopCommands` over a
//!   SQLite event store of the bench's own, durable), at the concurrency of
//!   the best HTTP step, once the shop's projectors have caught up.
//!
//! `ours / health` is the fraction of the HTTP stack's limit a command
//! reaches; `ours / in-process` what HTTP and the shop's other roles cost a
//! command.

use std::sync::Arc;
use std::time::Duration;

use parallax_sqlite::{SqliteEventStore, SqliteKeyStore};
use serde::Serialize;
use serde_json::json;
use shop::commands::ShopCommands;

use super::{ratio, Context};
use crate::http::{Client, Shop, ShopArgs};
use crate::load::{self, Load, LoadArgs, LoadDefaults, Search, Sequence};
use crate::report::{ms, rate, Report, Table};
use crate::stats::Stats;
use crate::workload::{self, CartArgs, CartPlan, Gets, InProcess, OverHttp, Then};

const NAME: &str = "commands-http";

/// Options of `commands-http`.
///
/// Defaults: concurrency steps 8 to 1024, p99 limit 100 ms, at least 128
/// connections at the fixed rate.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub cart: CartArgs,
    /// What a cart slot does after its cart's last item: check it out (the
    /// checkout also sets the saga to work, where it runs), or start a new cart.
    #[arg(long, value_enum, default_value_t = Then::NewCart)]
    pub then: Then,
    #[command(flatten)]
    #[serde(flatten)]
    pub shop: ShopArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
}

/// How long the projections may take to catch up.
const CATCH_UP: Duration = Duration::from_secs(300);

/// How far the projections were behind after a step, and how long they took to catch up.
#[derive(Debug, Clone, Copy, Serialize)]
struct Behind {
    /// Events not yet absorbed by the slowest projection, right after the step.
    events: u64,
    /// Seconds until every projection had absorbed the head.
    secs: f64,
}

async fn catch_up(client: &crate::http::Client) -> anyhow::Result<Behind> {
    let events = workload::projection_lag(client).await?;
    let began = std::time::Instant::now();
    workload::wait_caught_up(client, CATCH_UP).await?;
    Ok(Behind { events, secs: began.elapsed().as_secs_f64() })
}

const DEFAULTS: LoadDefaults =
    LoadDefaults { min_concurrency: 8, max_concurrency: 1024, fixed_concurrency: 128, p99_limit_ms: 100.0 };

/// Runs the scenario.
pub async fn run(args: Args, context: &Context) -> anyhow::Result<Report> {
    let load = args.load.resolve(DEFAULTS);
    let plan = args.cart.plan(args.then, 1000);
    let shop = Shop::start(&args.shop, &context.data_dir.join("shop")).await?;
    let client = Client::new(shop.addr(), args.shop.client)?;
    workload::register_products_http(&client, args.cart.products).await?;
    let health = Gets { client: client.clone(), paths: Arc::new(vec!["/health".to_owned()]) };
    let commands = OverHttp { client: client.clone(), plan };
    let sequence = Sequence::default();
    let targets = Targets { client, health, commands, sequence };

    // Searches: GET /health first, on the idle shop, then the commands at the same steps.
    let (mut health_steps, mut search, mut catch_ups) = (Vec::new(), None, Vec::new());
    if load.mode.finds_max() {
        health_steps = health_search(&load, &targets).await?;
        let (found, behind) = command_search(&args, &load, &targets).await?;
        (search, catch_ups) = (Some(found), behind);
    }

    // Fixed rate: /health and the commands at the same rate and connections.
    let (mut fixed, mut fixed_behind) = (Vec::new(), None);
    if load.mode.runs_fixed() {
        let (runs, behind) = fixed_runs(&args, &load, &targets, search.as_ref()).await?;
        (fixed, fixed_behind) = (runs, Some(behind));
    }
    let where_shop = shop.describe();
    shop.stop().await?;

    // The in-process path at the concurrency of the reference step.
    let reference: Stats = match (&search, fixed.get(1)) {
        (Some(search), _) if search.best().is_some() => search.best().expect("checked").clone(),
        (_, Some(stats)) => stats.clone(),
        _ => anyhow::bail!("no step qualified: nothing to compare (see the steps above)"),
    };
    let in_process_stats = in_process(&args, &load, context, plan, &reference).await?;
    let measured = Measured {
        args: &args,
        load: &load,
        plan,
        where_shop,
        health_steps,
        search,
        catch_ups,
        fixed,
        fixed_behind,
        in_process_stats,
    };
    Ok(report(context, &measured))
}

/// The shop's client and what the scenario sends through it.
struct Targets {
    client: Client,
    /// `GET /health`: the HTTP stack's own limit.
    health: Gets,
    /// The add-item commands.
    commands: OverHttp,
    sequence: Sequence,
}

/// `GET /health` at each step of the search, on the idle shop.
async fn health_search(load: &Load, targets: &Targets) -> anyhow::Result<Vec<Stats>> {
    let Targets { health, sequence, .. } = targets;
    let mut health_steps = Vec::new();
    for &concurrency in &load.levels {
        health_steps.push(load::closed_step("GET /health", health, concurrency, load.step, sequence).await?);
        eprintln!(
            "  {:<28} c={concurrency:<5} {:>10.0}/s  p99 {:>8.2} ms",
            "GET /health",
            health_steps.last().map_or(0.0, |s| s.per_sec),
            health_steps.last().map_or(0.0, |s| s.latency.p99_ms)
        );
    }
    Ok(health_steps)
}

/// The add-item search (after the warm-up), the projections' catch-up
/// timed after each step.
async fn command_search(
    args: &Args,
    load: &Load,
    targets: &Targets,
) -> anyhow::Result<(Search, Vec<Behind>)> {
    let Targets { client, commands, sequence, .. } = targets;
    let mut catch_ups = Vec::new();
    load::warm_up(commands, args.cart.carts, 64, sequence).await?;
    workload::wait_caught_up(client, CATCH_UP).await?;
    let mut found = Search::new(load.p99_limit);
    for &concurrency in &load.levels {
        let stats = load::closed_step("POST add-item", commands, concurrency, load.step, sequence).await?;
        let behind = catch_up(client).await?;
        eprintln!(
            "    the projections were {} events behind; they caught up in {:.2} s",
            behind.events, behind.secs
        );
        catch_ups.push(behind);
        if !found.push(stats) {
            break;
        }
    }
    Ok((found, catch_ups))
}

/// `GET /health` and the add-item commands at the same fixed rate and
/// connections, the projections' catch-up timed after them.
async fn fixed_runs(
    args: &Args,
    load: &Load,
    targets: &Targets,
    search: Option<&Search>,
) -> anyhow::Result<(Vec<Stats>, Behind)> {
    let Targets { client, health, commands, sequence } = targets;
    let mut fixed = Vec::new();
    if search.is_none() {
        load::warm_up(commands, args.cart.carts, 64, sequence).await?;
    }
    let rate = load.fixed_rate(search, 0.5)?;
    let concurrency = load.fixed_concurrency(search);
    workload::wait_caught_up(client, CATCH_UP).await?;
    fixed.push(load::fixed_rate("GET /health", health, rate, concurrency, load.duration, sequence).await?);
    fixed
        .push(load::fixed_rate("POST add-item", commands, rate, concurrency, load.duration, sequence).await?);
    Ok((fixed, catch_up(client).await?))
}

/// The same add-items through `ShopCommands` over a SQLite event store of
/// the bench's own, at the concurrency of `reference` (after the shop stopped).
async fn in_process(
    args: &Args,
    load: &Load,
    context: &Context,
    plan: CartPlan,
    reference: &Stats,
) -> anyhow::Result<Stats> {
    let path = context.data_dir.join("in-process.db");
    let (store, keys) = (SqliteEventStore::open(&path)?, SqliteKeyStore::open(&path)?);
    let in_process =
        InProcess { commands: Arc::new(ShopCommands::new(Arc::new(store), Arc::new(keys))), plan };
    workload::register_products(&in_process.commands, args.cart.products).await?;
    let in_sequence = Sequence::default();
    load::warm_up(&in_process, args.cart.carts, 64, &in_sequence).await?;
    let in_process_stats = load::closed_step(
        "in-process add-item",
        &in_process,
        reference.concurrency,
        if reference.offered_per_sec.is_some() { load.duration } else { load.step },
        &in_sequence,
    )
    .await?;
    eprintln!(
        "  {:<28} c={:<5} {:>10.0}/s  p99 {:>8.2} ms",
        in_process_stats.label,
        in_process_stats.concurrency,
        in_process_stats.per_sec,
        in_process_stats.latency.p99_ms
    );
    Ok(in_process_stats)
}

/// What a run measured, and how.
struct Measured<'a> {
    args: &'a Args,
    load: &'a Load,
    plan: CartPlan,
    /// Where the shop ran.
    where_shop: &'a str,
    /// `GET /health` at the steps of the search.
    health_steps: Vec<Stats>,
    search: Option<Search>,
    /// The projections' catch-up after each step of the search.
    catch_ups: Vec<Behind>,
    /// `GET /health`, then the add-items, at the fixed rate.
    fixed: Vec<Stats>,
    /// The projections' catch-up after the fixed-rate run.
    fixed_behind: Option<Behind>,
    /// The in-process path at the reference concurrency.
    in_process_stats: Stats,
}

/// The report of `measured`.
fn report(context: &Context, measured: &Measured<'_>) -> Report {
    let Measured {
        args,
        load,
        plan,
        where_shop,
        ref health_steps,
        ref search,
        ref catch_ups,
        ref fixed,
        fixed_behind,
        ref in_process_stats,
    } = *measured;
    let mut report = Report::new(NAME, "add-item commands over HTTP, durable ack", context.machine.clone());
    report.parameter("workload", plan.describe());
    report.parameter("shop", format!("{where_shop}, every role, embedded SQLite, synchronous=FULL"));
    report.parameter("client", format!("{:?}, one keep-alive connection per worker", args.shop.client));
    report.parameter(
        "warm-up",
        format!("one add-item per cart slot ({} requests, not measured)", args.cart.carts),
    );
    report.parameter("search steps", format!("{:?} × {:.1} s", load.levels, load.step.as_secs_f64()));
    report.parameter("fixed-rate run", format!("{:.1} s", load.duration.as_secs_f64()));

    if let Some(search) = search {
        search_compares(&mut report, search, health_steps, in_process_stats);
        search_section(&mut report, search, health_steps, catch_ups);
    }
    fixed_section(&mut report, fixed, fixed_behind);
    report.section(
        "In-process path at the reference concurrency",
        Table::of_steps(std::slice::from_ref(in_process_stats)),
        vec!["ShopCommands over a SQLite event store of the bench's own (durable), the same add-items, \
              after the shop was stopped."
            .into()],
    );
    report.notes = vec![
        "add-item / health: the fraction of the HTTP stack's own limit (GET /health through the same \
         server, client and connections, same concurrency or rate) that a command reaches."
            .into(),
        "add-item / in-process: what the HTTP hop, JSON and the shop's other roles (projectors, saga, \
         in the same process) cost the command path."
            .into(),
        "The load generator runs on the same two cores as the shop: every request costs client CPU too, \
         the same for /health as for a command."
            .into(),
        "Search: closed loop, concurrency doubling each step; fixed rate: open loop, latency from each \
         request's intended start (no coordinated omission). See `bench/src/lib.rs`."
            .into(),
    ];
    report.raw = json!({
        "args": args,
        "health_steps": health_steps,
        "catch_ups": catch_ups,
        "fixed_catch_up": fixed_behind,
        "search": search,
        "fixed": fixed,
        "in_process": in_process_stats,
    });
    report
}

/// The best add-item step beside `GET /health` and the in-process path at its concurrency.
fn search_compares(report: &mut Report, search: &Search, health_steps: &[Stats], in_process_stats: &Stats) {
    if let Some(best) = search.best() {
        let health_there = health_steps.iter().find(|h| h.concurrency == best.concurrency);
        if let Some(health) = health_there {
            report.compare(
                &format!("add-item/s (max, c={})", best.concurrency),
                rate(best.per_sec),
                format!("{} (GET /health, same c)", rate(health.per_sec)),
                ratio(best.per_sec, health.per_sec),
                "30,000/s",
            );
        }
        report.compare(
            &format!("add-item/s (max, c={})", best.concurrency),
            rate(best.per_sec),
            format!("{} (in-process, same c)", rate(in_process_stats.per_sec)),
            ratio(best.per_sec, in_process_stats.per_sec),
            "30,000/s",
        );
        if let Some(health) = health_there {
            report.compare(
                "p99 ms at the max",
                ms(best.latency.p99_ms),
                format!("{} (GET /health, same c)", ms(health.latency.p99_ms)),
                ratio(best.latency.p99_ms, health.latency.p99_ms),
                "",
            );
        }
    }
}

/// The add-item search, with `GET /health` and the projections' catch-up at each step.
fn search_section(report: &mut Report, search: &Search, health_steps: &[Stats], catch_ups: &[Behind]) {
    let mut table = Table::new(&[
        "concurrency",
        "add-item/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "GET /health/s",
        "p50 ms",
        "p99 ms",
        "add-item / health",
        "projections behind after (events)",
        "their catch-up s",
        "pipeline events/s",
        "CPU busy (cores)",
    ]);
    for (step, behind) in search.steps.iter().zip(catch_ups) {
        let health = health_steps.iter().find(|h| h.concurrency == step.concurrency);
        table.row(vec![
            step.concurrency.to_string(),
            rate(step.per_sec),
            ms(step.latency.p50_ms),
            ms(step.latency.p99_ms),
            ms(step.latency.p999_ms),
            step.errors.to_string(),
            health.map_or_else(String::new, |h| rate(h.per_sec)),
            health.map_or_else(String::new, |h| ms(h.latency.p50_ms)),
            health.map_or_else(String::new, |h| ms(h.latency.p99_ms)),
            health.map_or_else(String::new, |h| format!("{:.2}", ratio(step.per_sec, h.per_sec))),
            behind.events.to_string(),
            format!("{:.2}", behind.secs),
            rate(ratio(step.ok as f64, step.elapsed_secs + behind.secs)),
            format!("{:.2}", step.cpu_busy_cores),
        ]);
    }
    report.section(
        "Find the maximum (closed loop), GET /health at the same steps",
        table,
        vec![format!(
            "The add-item search stopped: {}. After each step the projections (running in the shop) \
             were behind by the given number of events; the next step began once they had caught up. \
             The pipeline rate is the step's events over the step and that catch-up: what commands and \
             projections sustain together.",
            search.stopped
        )],
    );
}

/// The fixed-rate run beside `GET /health` at the same rate.
fn fixed_section(report: &mut Report, fixed: &[Stats], fixed_behind: Option<Behind>) {
    let [health, commands] = fixed else { return };
    report.compare(
        &format!("p50 / p99 / p99.9 ms at {}/s (open loop)", rate(commands.offered_per_sec.unwrap_or(0.0))),
        format!(
            "{} / {} / {}",
            ms(commands.latency.p50_ms),
            ms(commands.latency.p99_ms),
            ms(commands.latency.p999_ms)
        ),
        format!("{} (GET /health p99, same rate)", ms(health.latency.p99_ms)),
        ratio(commands.latency.p99_ms, health.latency.p99_ms),
        "",
    );
    let behind = fixed_behind.map_or_else(String::new, |b| {
        format!(
            "After the add-item run the projections were {} events behind and took {:.2} s to catch up.",
            b.events, b.secs
        )
    });
    report.section("Fixed rate (open loop)", Table::of_steps(fixed), vec![behind]);
}
