//! `queries`: `GET /api/carts/{id}` and `GET /api/customers/{id}/orders`
//! over HTTP against `shop serve` (the release binary, a separate process),
//! filled first through its own API and left to settle (every projection at
//! the head, the saga done) before anything is measured.
//!
//! Fill: `--products` products; `--carts` carts of `--items-per-cart` items
//! each (the carts queried); `--customers` customers with
//! `--orders-per-customer` checked-out carts each, which the checkout saga
//! turns into confirmed orders (the orders listed, newest first, lines
//! denormalized).
//!
//! Baseline, same run: `GET /health` at the same concurrency steps and at
//! the same fixed rate — the HTTP stack's own limit, with no read store
//! behind it. The fixed rate is `--rate`, or half the lower of the two
//! queries' maxima, the same for all three targets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use hyper::Method;
use serde::Serialize;
use serde_json::json;

use super::{ratio, Context};
use crate::http::{Client, Shop, ShopArgs};
use crate::load::{self, Load, LoadArgs, LoadDefaults, Search, Sequence};
use crate::report::{ms, rate, Report, Table};
use crate::stats::Stats;
use crate::workload::{self, Gets};

const NAME: &str = "queries";

/// Options of `queries`.
///
/// Defaults: concurrency steps 1 to 512, p99 limit 50 ms, at least 64
/// connections at the fixed rate.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Args {
    /// Products.
    #[arg(long, default_value_t = 100)]
    pub products: u64,
    /// Carts filled (and queried by id).
    #[arg(long, default_value_t = 10_000)]
    pub carts: u64,
    /// Items per cart.
    #[arg(long, default_value_t = 3)]
    pub items_per_cart: u64,
    /// Customers with orders (queried for their orders).
    #[arg(long, default_value_t = 100)]
    pub customers: u64,
    /// Orders each customer placed.
    #[arg(long, default_value_t = 5)]
    pub orders_per_customer: u64,
    #[command(flatten)]
    #[serde(flatten)]
    pub shop: ShopArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
}

const DEFAULTS: LoadDefaults =
    LoadDefaults { min_concurrency: 1, max_concurrency: 512, fixed_concurrency: 64, p99_limit_ms: 50.0 };

/// Runs the scenario.
pub async fn run(args: Args, context: &Context) -> anyhow::Result<Report> {
    let load = args.load.resolve(DEFAULTS);
    let shop = Shop::start(&args.shop, &context.data_dir.join("shop")).await?;
    let client = Client::new(shop.addr(), args.shop.client)?;
    let filled = std::time::Instant::now();
    fill(&client, &args).await?;
    let head = workload::wait_caught_up(&client, Duration::from_secs(300)).await?;
    let fill_secs = filled.elapsed().as_secs_f64();
    eprintln!("  filled: {head} events in {fill_secs:.1} s, every projection caught up");

    let carts = Arc::new((0..args.carts.max(1)).map(|c| format!("/api/carts/q{c}")).collect::<Vec<_>>());
    let orders = Arc::new(
        (0..args.customers.max(1)).map(|u| format!("/api/customers/u{u}/orders")).collect::<Vec<_>>(),
    );
    let targets = [
        ("GET /health", Gets { client: client.clone(), paths: Arc::new(vec!["/health".to_owned()]) }),
        ("GET cart", Gets { client: client.clone(), paths: carts }),
        ("GET orders by customer", Gets { client: client.clone(), paths: orders }),
    ];
    let sequence = Sequence::default();
    let mut searches: Vec<Option<Search>> = Vec::new();
    for (label, target) in &targets {
        searches.push(match load.mode.finds_max() {
            true => Some(load::find_max(label, target, &load, &sequence).await?),
            false => None,
        });
    }
    let mut fixed: Vec<Stats> = Vec::new();
    if load.mode.runs_fixed() {
        fixed = fixed_runs(&load, &targets, &searches, &sequence).await?;
    }
    let where_shop = shop.describe();
    shop.stop().await?;

    let labels = targets.map(|(label, _)| label);
    let measured =
        Measured { args: &args, load: &load, head, fill_secs, where_shop, labels, searches, fixed };
    Ok(report(context, &measured))
}

/// Every target at the same fixed rate (`--rate`, else half the lower of
/// the two queries' maxima) and connections.
async fn fixed_runs(
    load: &Load,
    targets: &[(&str, Gets)],
    searches: &[Option<Search>],
    sequence: &Sequence,
) -> anyhow::Result<Vec<Stats>> {
    let mut fixed = Vec::new();
    let lowest = searches[1..]
        .iter()
        .flatten()
        .filter_map(Search::best)
        .min_by(|a, b| a.per_sec.total_cmp(&b.per_sec))
        .cloned();
    let rate = match (load.rate, &lowest) {
        (Some(rate), _) => rate,
        (None, Some(lowest)) => (lowest.per_sec * 0.5).max(1.0),
        (None, None) => anyhow::bail!("a fixed-rate run needs --rate (or a maximum found first)"),
    };
    let concurrency = load
        .concurrency
        .unwrap_or_else(|| lowest.as_ref().map_or(0, |l| l.concurrency * 2).max(load.fixed_floor));
    for (label, target) in targets {
        fixed.push(load::fixed_rate(label, target, rate, concurrency, load.duration, sequence).await?);
    }
    Ok(fixed)
}

/// What a run measured, and how.
struct Measured<'a> {
    args: &'a Args,
    load: &'a Load,
    /// Events in the filled shop.
    head: u64,
    /// How long filling it took, until every projection had caught up.
    fill_secs: f64,
    /// Where the shop ran.
    where_shop: &'a str,
    /// The targets: `GET /health`, then the queries.
    labels: [&'static str; 3],
    /// Each target's search, if made.
    searches: Vec<Option<Search>>,
    /// Each target's fixed-rate run, if made.
    fixed: Vec<Stats>,
}

/// The report of `measured`.
fn report(context: &Context, measured: &Measured<'_>) -> Report {
    let Measured { args, load, head, fill_secs, where_shop, labels, ref searches, ref fixed } = *measured;
    let mut report =
        Report::new(NAME, "queries over HTTP from the SQLite read store", context.machine.clone());
    report.parameter(
        "data",
        format!(
            "{} products, {} carts of {} items, {} customers × {} orders ({head} events; filled and settled \
             in {fill_secs:.1} s)",
            args.products, args.carts, args.items_per_cart, args.customers, args.orders_per_customer
        ),
    );
    report.parameter("shop", format!("{where_shop}, every role, embedded SQLite"));
    report.parameter("client", format!("{:?}, one keep-alive connection per worker", args.shop.client));
    report.parameter("search steps", format!("{:?} × {:.1} s", load.levels, load.step.as_secs_f64()));
    report.parameter("fixed-rate run", format!("{:.1} s", load.duration.as_secs_f64()));

    compares(&mut report, &labels, searches, fixed);
    if load.mode.finds_max() {
        search_section(&mut report, &labels, searches);
    }
    report.notes = vec![
        "query / health for a rate: the fraction of the HTTP stack's own limit (GET /health through the \
         same server, client and connections) that a query reaches; for a p99: how many times the HTTP \
         stack's own p99 at the same offered rate the query's is."
            .into(),
        "The load generator runs on the same two cores as the shop: every request costs client CPU too."
            .into(),
        "Queries carry no consistency token (no wait): they read what the views hold.".into(),
        "Search: closed loop, concurrency doubling each step; fixed rate: open loop, latency from each \
         request's intended start (no coordinated omission). See `bench/src/lib.rs`."
            .into(),
    ];
    report.raw = json!({ "args": args, "events": head, "searches": searches, "fixed": fixed });
    report
}

/// Each query beside `GET /health`: at their maxima, and at the fixed rate.
fn compares(report: &mut Report, labels: &[&str], searches: &[Option<Search>], fixed: &[Stats]) {
    let health_best = searches[0].as_ref().and_then(Search::best);
    for (label, search) in labels.iter().zip(searches).skip(1) {
        if let (Some(best), Some(health)) = (search.as_ref().and_then(Search::best), health_best) {
            report.compare(
                &format!("{label}: requests/s (max, c={})", best.concurrency),
                rate(best.per_sec),
                format!("{} (GET /health max, c={})", rate(health.per_sec), health.concurrency),
                ratio(best.per_sec, health.per_sec),
                "50,000/s",
            );
        }
    }
    if let Some((health, queries)) = fixed.split_first() {
        for query in queries {
            report.compare(
                &format!("{}: p99 ms at {}/s", query.label, rate(query.offered_per_sec.unwrap_or(0.0))),
                format!(
                    "{} (p50 {}, p99.9 {}; achieved {}/s)",
                    ms(query.latency.p99_ms),
                    ms(query.latency.p50_ms),
                    ms(query.latency.p999_ms),
                    rate(query.per_sec)
                ),
                format!("{} (GET /health, same rate)", ms(health.latency.p99_ms)),
                ratio(query.latency.p99_ms, health.latency.p99_ms),
                "< 5 ms at 50,000/s",
            );
        }
        report.section(
            "Fixed rate (open loop), every target at the same rate",
            Table::of_steps(fixed),
            vec![],
        );
    }
}

/// The searches, one after the other.
fn search_section(report: &mut Report, labels: &[&str], searches: &[Option<Search>]) {
    let steps: Vec<&Stats> = searches.iter().flatten().flat_map(|s| &s.steps).collect();
    let stopped = labels
        .iter()
        .zip(searches)
        .filter_map(|(label, s)| s.as_ref().map(|s| format!("{label}: {}", s.stopped)))
        .collect::<Vec<_>>()
        .join("; ");
    report.section(
        "Find the maximum (closed loop)",
        Table::of_steps(steps),
        vec![format!("The searches stopped — {stopped}.")],
    );
}

/// Fills the shop through its API: products, carts, checked-out carts, over
/// 64 keep-alive connections.
async fn fill(client: &Client, args: &Args) -> anyhow::Result<()> {
    workload::register_products_http(client, args.products).await?;
    let products = args.products.max(1);
    let carts = (0..args.carts).map(|c| (format!("q{c}"), c, args.items_per_cart.max(1), None));
    let orders = (0..args.customers).flat_map(|u| {
        (0..args.orders_per_customer).map(move |o| (format!("o{u}-{o}"), u * 31 + o, 1 + (o % 2), Some(u)))
    });
    let work: Vec<(String, u64, u64, Option<u64>)> = carts.chain(orders).collect();
    let next = AtomicUsize::new(0);
    let conns = stream::iter(0..64).then(|_| client.connect()).try_collect::<Vec<_>>().await?;
    let fillers = conns.into_iter().map(|mut conn| {
        let (work, next) = (&work, &next);
        async move {
            while let Some((cart_id, seed, items, customer)) = work.get(next.fetch_add(1, Ordering::Relaxed))
            {
                for item in 0..*items {
                    let sku = workload::sku((seed * 7 + item * 13) % products);
                    let body = json!({ "sku": sku, "quantity": 1 + item % 3 }).to_string();
                    let path = format!("/api/carts/{cart_id}/items");
                    conn.expect_ok(Method::POST, &path, Some(Bytes::from(body))).await?;
                }
                if let Some(customer) = customer {
                    let body = json!({ "customer_id": format!("u{customer}") }).to_string();
                    let path = format!("/api/carts/{cart_id}/checkout");
                    conn.expect_ok(Method::POST, &path, Some(Bytes::from(body))).await?;
                }
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(fillers).await?;
    Ok(())
}
