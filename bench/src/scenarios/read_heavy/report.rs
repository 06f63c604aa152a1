//! The report of `read-heavy`: both sides at each rate, the data, and when
//! CQRS pays.

use serde_json::json;

use super::mix::Kind;
use super::{Args, Data, Run, Side};
use crate::report::{errors, ms, rate, thousands, Report, Table};
use crate::scenarios::{ratio, Context};
use crate::stats::Percentiles;

/// Builds the report.
pub(super) fn report(args: &Args, context: &Context, data: &Data, runs: &[Run]) -> Report {
    let mut report = Report::new(
        super::NAME,
        "95 % reads, 5 % writes at rising rates: a normalized schema answering with joins, against Parallax's \
         views, on the same PostgreSQL",
        context.machine.clone(),
    );
    parameters(&mut report, args, data);
    summary(&mut report, runs);
    report.section("Each rate, side by side", side_by_side(runs), vec![side_note(args)]);
    report.section("The data", data_table(data), vec![data_note()]);
    report.notes = notes();
    report.raw = json!({ "args": args, "data": data, "runs": runs });
    report
}

fn parameters(report: &mut Report, args: &Args, data: &Data) {
    let load = args.load.resolve(super::DEFAULTS);
    report.parameter(
        "data",
        format!(
            "{} events ({} carts k0…, orders of {} customers, {} products, one to {} lines a cart), {} order \
             lines",
            thousands(data.history.head),
            thousands(data.history.lifecycles),
            thousands(args.customers),
            args.cart.products,
            args.lines_per_cart,
            thousands(data.loaded.rows_of("order_lines"))
        ),
    );
    report.parameter(
        "mix",
        format!(
            "per 1,000 requests: {} writes ({}), {} sales reports, the rest half a customer's newest {} orders, \
             half a cart of the history",
            args.writes_per_mille,
            args.cart.plan(crate::workload::Then::Checkout, args.customers).describe(),
            args.sales_per_mille,
            args.orders_page
        ),
    );
    report.parameter(
        "rates",
        format!(
            "{:?} requests/s, {:.1} s per side, {} workers; a side passes with 95 % answered, < 1 % errors and \
             reads' p99 ≤ {:.0} ms",
            args.rates,
            load.duration.as_secs_f64(),
            load.concurrency.unwrap_or(load.fixed_floor),
            load.p99_limit.as_secs_f64() * 1000.0
        ),
    );
    report.parameter(
        "pools",
        format!("{} connections per side (Parallax: views and event store each)", args.postgres.pool_size),
    );
}

fn summary(report: &mut Report, runs: &[Run]) {
    let best = |side: Side| {
        runs.iter()
            .filter(|run| run.side == side && run.passed)
            .map(|run| run.stats.per_sec)
            .fold(0.0, f64::max)
    };
    let (ours, theirs) = (best(Side::Parallax), best(Side::Relational));
    report.compare(
        "highest rate passed (requests/s)",
        rate(ours),
        format!("{} (relational, joins)", rate(theirs)),
        ratio(ours, theirs),
        "",
    );
    for parallax in runs.iter().filter(|run| run.side == Side::Parallax) {
        let offered = parallax.stats.offered_per_sec.unwrap_or(0.0);
        let Some(relational) = runs
            .iter()
            .find(|run| run.side == Side::Relational && run.stats.offered_per_sec == Some(offered))
        else {
            continue;
        };
        report.compare(
            &format!("at {}/s: reads p99 ms", rate(offered)),
            ms(parallax.reads.p99_ms),
            ms(relational.reads.p99_ms),
            ratio(parallax.reads.p99_ms, relational.reads.p99_ms),
            "",
        );
        let write = |run: &Run| kind(run, Kind::Write).map_or(0.0, |p| p.p99_ms);
        report.compare(
            &format!("at {}/s: writes p99 ms", rate(offered)),
            ms(write(parallax)),
            ms(write(relational)),
            ratio(write(parallax), write(relational)),
            "",
        );
        if let Some(staleness) = &parallax.staleness {
            report.compare(
                &format!("at {}/s: staleness p50 / p99 ms (Parallax only)", rate(offered)),
                format!("{} / {}", ms(staleness.p50_ms), ms(staleness.p99_ms)),
                "0 (reads see the last commit)".to_owned(),
                0.0,
                "",
            );
        }
    }
}

fn kind(run: &Run, wanted: Kind) -> Option<&Percentiles> {
    run.kinds.iter().find(|(kind, _, _)| *kind == wanted).map(|(_, _, p)| p)
}

fn side_by_side(runs: &[Run]) -> Table {
    let mut table = Table::new(&[
        "offered/s",
        "side",
        "answered/s",
        "errors",
        "reads p50 ms",
        "reads p99 ms",
        "customer's orders p99 ms",
        "cart p99 ms",
        "sales p50 / p99 ms",
        "writes p50 / p99 ms",
        "staleness p50 / p99 ms",
        "PostgreSQL cores",
        "bench cores",
        "passed",
    ]);
    for run in runs {
        let both = |p: Option<&Percentiles>| {
            p.map_or_else(String::new, |p| format!("{} / {}", ms(p.p50_ms), ms(p.p99_ms)))
        };
        let p99 = |k: Kind| kind(run, k).map_or_else(String::new, |p| ms(p.p99_ms));
        let secs = run.stats.elapsed_secs;
        table.row(vec![
            rate(run.stats.offered_per_sec.unwrap_or(0.0)),
            format!("{:?}", run.side),
            rate(run.stats.per_sec),
            errors(&run.stats),
            ms(run.reads.p50_ms),
            ms(run.reads.p99_ms),
            p99(Kind::CustomerOrders),
            p99(Kind::Cart),
            both(kind(run, Kind::Sales)),
            both(kind(run, Kind::Write)),
            match &run.staleness {
                Some(s) if run.unseen > 0 => format!("{} ({} unseen)", both(Some(s)), run.unseen),
                Some(s) => both(Some(s)),
                None => "0".to_owned(),
            },
            format!("{:.2}", ratio(run.postgres_secs, secs)),
            format!("{:.2}", ratio(run.bench_secs, secs)),
            if run.passed { "yes" } else { "no" }.to_owned(),
        ]);
    }
    table
}

fn side_note(args: &Args) -> String {
    format!(
        "Latency from each request's intended start (open loop), by kind; reads: the three reads together. \
         Staleness (Parallax): from a write's acknowledgement until the carts view has absorbed it \
         (Freshness::wait on its consistency token, woken by the projector's commit): how old a read of that \
         cart may be. The relational side's reads see every committed write at once. PostgreSQL cores: every \
         postgres process of the machine over the run (both sides' databases are on it; the other side idles \
         meanwhile); bench cores: this process (load generator, and on Parallax's side the relay, the \
         projectors and the Kafka client). A side that fails a rate (answered < 95 %, errors ≥ 1 %, reads' \
         p99 > {:.0} ms) is not offered the higher ones.",
        args.load.resolve(super::DEFAULTS).p99_limit.as_secs_f64() * 1000.0
    )
}

fn data_table(data: &Data) -> Table {
    let mut table = Table::new(&["what", "rows / events", "size MB", "seconds"]);
    let mb = |bytes: i64| format!("{:.0}", bytes as f64 / 1e6);
    table.row(vec![
        "history appended to the event store (relay and projectors running)".into(),
        thousands(data.history.head),
        mb(data.events_bytes),
        format!("{:.1}", data.generation_secs),
    ]);
    table.row(vec![
        "Parallax's views built from it (until every projection absorbed the last event)".into(),
        thousands(data.history.head),
        mb(data.views_bytes),
        format!("{:.1} ({:.1} after the last append)", data.views_secs, data.views_after_secs),
    ]);
    for (table_name, rows) in &data.loaded.rows {
        table.row(vec![format!("relational: {table_name}"), thousands(*rows), String::new(), String::new()]);
    }
    table.row(vec![
        "relational: copied from the event store, then indexed".into(),
        String::new(),
        mb(data.loaded.bytes),
        format!("{:.1} + {:.1}", data.loaded.copy_secs, data.loaded.index_secs),
    ]);
    table
}

fn data_note() -> String {
    "Both sides hold the same shop: the relational tables are copied from the very events the views are built \
     from (products as registered, orders with their status after their last event, lines priced at \
     checkout, carts with the lines their last events left). Sizes: pg_database_size of each database."
        .into()
}

fn notes() -> Vec<String> {
    vec![
        "When CQRS pays: a read that a relational schema answers with joins over many rows (a customer's \
         orders with lines and names) or an aggregate over every order line (sales per product) is, in the \
         views, one precomputed document or one short partition scan, so its cost does not grow with the \
         data. When it does not: a read that is one indexed row either way (a cart by id) gains little; every \
         write costs more (an event appended, relayed, published and projected into four views, against one \
         transaction); and every read may be stale by the staleness shown, which a relational read never is. \
         The figures above say how much of each, on this machine."
            .into(),
        "Both sides run in this process, called through the same load generator (the relational side through \
         a sqlx pool, Parallax through ShopCommands and ShopQueries), so neither pays for HTTP; Parallax's \
         relay, projectors and Kafka client also run here, and Kafka beside it."
            .into(),
        "Writes follow the cart plan of the command scenarios on new carts (c…): items added, then a checkout; \
         no saga runs on either side (no stock reserved, orders stay placed), so both do the same work."
            .into(),
    ]
}
