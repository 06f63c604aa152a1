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

use parallax_sqlite::SqliteEventStore;
use serde::Serialize;
use serde_json::json;
use shop::commands::ShopCommands;

use super::{ratio, Context};
use crate::http::{Client, Shop, ShopArgs};
use crate::load::{self, LoadArgs, LoadDefaults, Search, Sequence};
use crate::report::{ms, rate, Report, Table};
use crate::stats::Stats;
use crate::workload::{self, CartArgs, Gets, InProcess, OverHttp, Then};

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

    // Searches: GET /health first, on the idle shop, then the commands at the same steps.
    let mut health_steps = Vec::new();
    let mut search = None;
    let mut catch_ups = Vec::new();
    if load.mode.finds_max() {
        for &concurrency in &load.levels {
            health_steps
                .push(load::closed_step("GET /health", &health, concurrency, load.step, &sequence).await?);
            eprintln!(
                "  {:<28} c={concurrency:<5} {:>10.0}/s  p99 {:>8.2} ms",
                "GET /health",
                health_steps.last().map_or(0.0, |s| s.per_sec),
                health_steps.last().map_or(0.0, |s| s.latency.p99_ms)
            );
        }
        load::warm_up(&commands, args.cart.carts, 64, &sequence).await?;
        workload::wait_caught_up(&client, CATCH_UP).await?;
        let mut found = Search::new(load.p99_limit);
        for &concurrency in &load.levels {
            let stats =
                load::closed_step("POST add-item", &commands, concurrency, load.step, &sequence).await?;
            let behind = catch_up(&client).await?;
            eprintln!(
                "    the projections were {} events behind; they caught up in {:.2} s",
                behind.events, behind.secs
            );
            catch_ups.push(behind);
            if !found.push(stats) {
                break;
            }
        }
        search = Some(found);
    }

    // Fixed rate: /health and the commands at the same rate and connections.
    let mut fixed = Vec::new();
    let mut fixed_behind = None;
    if load.mode.runs_fixed() {
        if search.is_none() {
            load::warm_up(&commands, args.cart.carts, 64, &sequence).await?;
        }
        let rate = load.fixed_rate(search.as_ref(), 0.5)?;
        let concurrency = load.fixed_concurrency(search.as_ref());
        workload::wait_caught_up(&client, CATCH_UP).await?;
        fixed.push(
            load::fixed_rate("GET /health", &health, rate, concurrency, load.duration, &sequence).await?,
        );
        fixed.push(
            load::fixed_rate("POST add-item", &commands, rate, concurrency, load.duration, &sequence).await?,
        );
        fixed_behind = Some(catch_up(&client).await?);
    }
    let where_shop = shop.describe();
    shop.stop().await?;

    // The in-process path at the concurrency of the reference step.
    let reference: Stats = match (&search, fixed.get(1)) {
        (Some(search), _) if search.best().is_some() => search.best().expect("checked").clone(),
        (_, Some(stats)) => stats.clone(),
        _ => anyhow::bail!("no step qualified: nothing to compare (see the steps above)"),
    };
    let store = SqliteEventStore::open(&context.data_dir.join("in-process.db"))?;
    let in_process = InProcess { commands: Arc::new(ShopCommands::new(Arc::new(store))), plan };
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

    if let Some(search) = &search {
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
        for (step, behind) in search.steps.iter().zip(&catch_ups) {
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
    if let [health, commands] = fixed.as_slice() {
        report.compare(
            &format!(
                "p50 / p99 / p99.9 ms at {}/s (open loop)",
                rate(commands.offered_per_sec.unwrap_or(0.0))
            ),
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
        report.section("Fixed rate (open loop)", Table::of_steps(&fixed), vec![behind]);
    }
    report.section(
        "In-process path at the reference concurrency",
        Table::of_steps(std::slice::from_ref(&in_process_stats)),
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
    Ok(report)
}
