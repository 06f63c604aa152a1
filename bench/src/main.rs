//! The `bench` binary: `bench <scenario> [options]`. See the crate docs
//! (`bench/src/lib.rs`) for the method.

use bench::{Common, Scenario};
use clap::Parser;

/// Parallax's load generator. Each scenario drives the shop's own code paths,
/// measures a baseline in the same run (the layer underneath: plain SQLite or
/// PostgreSQL writes, GET /health, the in-process path, the query alone; for
/// commands-postgres also a cqrs-es peer), and reports HdrHistogram
/// percentiles and the ratio ours / baseline. Results go to
/// bench/results/<report>.md and .json.
///
/// Two modes per scenario: find the maximum (closed loop, concurrency doubling
/// until throughput stops growing or p99 passes a limit) and a fixed rate
/// (open loop: latency from each request's intended start, no coordinated
/// omission). Run with `cargo run --release -p bench -- <scenario>`.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    #[command(flatten)]
    common: Common,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    bench::run(cli.scenario, &cli.common).await?;
    Ok(())
}
