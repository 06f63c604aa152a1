//! # bench
//!
//! The load generator of Parallax: it drives the shop's own code paths
//! (in-process through `shop::commands::ShopCommands`, or over HTTP against
//! `shop serve`) and puts every figure beside a baseline measured **in the same
//! run**, on the same machine, a few seconds apart. Absolute figures move with
//! whatever else the machine is doing (two cores, the load generator on the
//! same machine, sometimes a build beside it); the ratio to a baseline taken
//! under the same conditions moves much less, and it says what the figure
//! means: how far the shop is from the physical limit of the path it uses.
//!
//! ```text
//! cargo run --release -p bench -- commands-embedded      # or: commands-http, queries,
//! cargo run --release -p bench -- --help                 #     projection-rebuild, freshness,
//!                                                        #     commands-postgres, scale-out,
//!                                                        #     pipeline, read-heavy
//! ```
//!
//! Each scenario prints a Markdown report and writes it, with the raw figures
//! as JSON, to `bench/results/<report>.md` and `.json` (overwritten by the
//! latest run; `--results-dir` to write elsewhere). The report is named after
//! the scenario, and after the store or path too where it is not the
//! default: `projection-rebuild-postgres`, `projection-rebuild-cassandra`,
//! `freshness-kafka`, `freshness-cassandra`, `pipeline-cassandra`.
//!
//! ## Method
//!
//! **The machine** is named at the top of every report: cores, CPU, memory,
//! and the measured fsync rate — 4 KiB `write` + `fdatasync` appended to a
//! file in the bench's data folder, repeated for about a second
//! ([`machine`]). A durable commit costs at least one fsync, so this rate
//! bounds every durable figure that does not batch.
//!
//! **Latency** is recorded in HdrHistogram (microsecond resolution, three
//! significant digits) and reported as p50, p90, p99, p99.9 and max, per
//! step ([`stats`]). Beside each step: the whole machine's CPU use meanwhile
//! (`CPU busy (cores)`, from `/proc/stat`, every process counted: the shop,
//! the load generator, anything else), which tells a CPU-bound step from one
//! that waits on something; and, for open-loop runs, the worst latency per
//! 100 ms in the JSON (`timeline`), which shows when a stall happened. The
//! machine line also says how busy the machine was just before the run.
//!
//! **Fixed rate (open loop)**: requests are scheduled at their intended start
//! times (`start + i / rate`), and many workers (connections, tasks) take the
//! next slot as soon as they are free. Latency is measured from the intended
//! start, not from when the request was actually sent: when the system falls
//! behind, the requests that waited for a free worker count their wait, so
//! stalls are not hidden (no *coordinated omission*). tokio's timer has a
//! 1 ms resolution: a worker wakes up to 1 ms before its slot and sends at
//! once; such a request is measured from when it left. The achieved rate is
//! reported beside the offered one; an achieved rate below the offered one
//! means the system (or the worker count, `--concurrency`) could not keep up.
//! A run stops sending after twice its duration; requests still due then
//! are reported as `unsent`.
//!
//! **Find the maximum (closed loop)**: concurrency steps up (doubling from
//! `--min-concurrency` to `--max-concurrency`), each worker sending its next
//! request as soon as the previous one is answered, for `--step-secs` per
//! step. The search stops when throughput has not grown by 5 % for two steps,
//! when p99 passes `--p99-limit-ms`, or when more than 1 % of requests fail.
//! The best sustained throughput among the steps within the p99 limit is
//! reported with its p99 ([`load::Search`]).
//!
//! **Baselines in the same run**: each scenario measures, right beside its own
//! figure, the limit of the layer underneath (plain batched SQLite or
//! PostgreSQL inserts of the same rows with the same settings; `GET /health`
//! through the same HTTP stack at the same concurrency; the in-process code
//! path; the query alone), and reports `ours / baseline`. A ratio of 1.0 means the shop's path costs
//! nothing over the layer it runs on; 0.25 means it reaches a quarter of
//! what that layer allows. For latencies the ratio is `ours / lower bound`
//! (1.0 is the floor; higher is worse).
//!
//! **A peer in the same run**: `commands-postgres` also runs the same cart
//! commands written with another framework (cqrs-es over postgres-es,
//! [`peer`]) against the same server, at the same concurrency steps and the
//! same fixed rate, and reports `ours / peer`. The peer is a process of its
//! own, driven by the same load generator ([`bench_load`], the crate under
//! `bench/load` that holds [`load`], [`stats`] and the cart plan), so its
//! figures are measured exactly as the shop's are.
//!
//! **Processes of their own**: `commands-http` and `queries` start `shop
//! serve`; `scale-out` starts one per role and process of the distributed
//! shape ([`processes`]), and reads each one's CPU time from
//! `/proc/<pid>/stat`.
//!
//! **Servers**: the PostgreSQL, Kafka and Cassandra scenarios run against
//! `--postgres-url`, `--kafka-brokers` and `--cassandra-nodes` (by default
//! those of `scripts/services/`), in databases, a topic and keyspaces made
//! for the run and removed afterwards ([`servers`]); the servers' CPU time
//! is read from `/proc`, so they are expected on the same machine.
//!
//! ## Scenarios
//!
//! | scenario | what | baseline |
//! |---|---|---|
//! | [`scenarios::commands_embedded`] | add-item and checkout commands in-process, durable ack | batched INSERTs of the same rows, same batch size |
//! | [`scenarios::commands_postgres`] | the same over the PostgreSQL event store | batched INSERTs of the same rows into PostgreSQL, same batch size and writers; the cqrs-es peer |
//! | [`scenarios::commands_http`] | add-item over HTTP against `shop serve` | `GET /health`; the in-process path |
//! | [`scenarios::queries`] | GET cart, GET orders by customer over HTTP | `GET /health` |
//! | [`scenarios::projection_rebuild`] | every shop view rebuilt from the event store into SQLite, PostgreSQL or Cassandra (`--store`) | batched upserts of as many documents into the same store (Cassandra: the store's own timestamped writes in its batch shape; unlogged and single writes beside) |
//! | [`scenarios::freshness`] | command acknowledged → query shows it, embedded, through Kafka, or through Kafka into Cassandra (`--via`) | the query alone |
//! | [`scenarios::scale_out`] | the distributed shape as `shop serve` processes per role: commands, queries, the relay's and the projectors' catch-up of a backlog, with the CPU per operation of every process and server | the same role with one process |
//! | [`scenarios::pipeline`] | open-loop commands into the distributed shape as processes (event store, relay, Kafka, saga, projectors into PostgreSQL or Cassandra, `--store`) at rising rates: the lag of every event from its append to its view, the CPU of every process and of PostgreSQL per client | `commands-postgres`'s maximum |
//! | [`scenarios::read_heavy`] | 95 % reads, 5 % writes at rising rates against Parallax's views, with the staleness they pay | the same data in a normalized schema, reads answered with joins and an aggregate |
//!
//! Where a scenario needs it, wrappers around the ports ([`probes`]) count
//! and time what the projectors ask of the log and the read store, and the
//! command scenarios read the event store writer thread's CPU time: a
//! breakdown of where the time goes that needs no profiler.
//!
//! A scenario is a module with its `Args` (clap) and an async `run` that
//! returns a [`report::Report`]; [`Scenario`] lists them. Another store or
//! path slots in as a further module, or as a variant of a scenario's
//! choice (`projection_rebuild::Store`, `freshness::Via`).

pub mod machine;
pub use bench_load::{load, stats};
pub mod report;
pub mod http;
pub mod workload;
pub mod history;
pub mod probes;
pub mod servers;
pub mod processes;
pub mod peer;
pub mod scenarios;

use std::path::{Path, PathBuf};

pub use scenarios::Scenario;

/// Options every scenario takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Where the Markdown and JSON results go [default: bench/results in the workspace].
    #[arg(long, global = true)]
    pub results_dir: Option<PathBuf>,
    /// Folder under which each run makes its temporary data folder (databases,
    /// the fsync probe); it should be on the disk being measured [default: the
    /// system's temporary folder].
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// How long to measure the fsync rate, in seconds.
    #[arg(long, global = true, default_value_t = 1.0)]
    pub fsync_secs: f64,
}

impl Common {
    /// The results folder.
    pub fn results_dir(&self) -> PathBuf {
        self.results_dir.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results"))
    }

    /// A fresh data folder for one run, removed when dropped.
    pub fn make_data_dir(&self) -> anyhow::Result<tempfile::TempDir> {
        let root = self.data_dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&root)?;
        Ok(tempfile::Builder::new().prefix("parallax-bench-").tempdir_in(root)?)
    }
}

/// The workspace's root folder (the bench crate's parent).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ lies in the workspace").to_owned()
}

/// Runs one scenario: measures the machine, runs the scenario, prints its
/// report and writes it under the results folder.
pub async fn run(scenario: Scenario, common: &Common) -> anyhow::Result<report::Written> {
    let data = common.make_data_dir()?;
    let machine = machine::Machine::measure(data.path(), common.fsync_secs).await?;
    eprintln!("{}: {}", scenario.name(), machine.describe());
    if machine.busy_before_cores > 0.3 {
        eprintln!(
            "warning: {:.2} cores were busy with other work before the run; the figures share the machine",
            machine.busy_before_cores
        );
    }
    let context = scenarios::Context { machine, data_dir: data.path().to_owned() };
    let report = scenario.run(&context).await?;
    let written = report.write(&common.results_dir())?;
    println!("{}", written.markdown);
    eprintln!("wrote {} and {}", written.markdown_path.display(), written.json_path.display());
    drop(data);
    Ok(written)
}
