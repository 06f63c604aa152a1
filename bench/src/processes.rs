//! The distributed shape as separate processes of the `shop` binary, as an
//! operator runs it: `shop migrate`, then one `shop serve --role …` per
//! process, configured by the `SHOP__…` environment (the keys of
//! `config/distributed.toml`) on the run's scratch databases and topic
//! ([`crate::servers`]). Each process listens on a port of its own on
//! 127.0.0.1, logs its warnings to a file in the run's data folder, and is
//! ended by its pid (SIGKILL to the child this bench started; a process left
//! behind by an error is killed when dropped).
//!
//! Where the CPU goes, from `/proc`: each shop process by its pid
//! (`/proc/<pid>/stat`: every thread, those that ended too); PostgreSQL as
//! the backends serving the run's databases, found in `pg_stat_activity`,
//! so tests against other databases of the same server are left out, and
//! apart the server's own processes (WAL writer, checkpointer, background
//! writer: those without a database), which work for every database; Kafka
//! as its broker process (shared with anything else using it); the bench
//! process (the load generator); and what the rest of the machine used
//! meanwhile (`/proc/stat`), which says how far other work shared the run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper::Method;
use serde::Serialize;
use sqlx::PgPool;

use crate::http::{spawn_listening, Client, ClientKind};
use crate::machine::{cmdline_cpu_secs, own_cpu_secs, pid_cpu_secs, process_cpu_secs, CpuMeter};
use crate::servers::KAFKA_PROCESS;

/// How a run's processes are configured.
#[derive(Debug, Clone)]
pub struct Shape {
    /// The `shop` binary.
    pub binary: PathBuf,
    /// The event store's database.
    pub events_url: String,
    /// The views' database.
    pub views_url: String,
    /// Kafka bootstrap brokers.
    pub brokers: String,
    /// The run's topic.
    pub topic: String,
    /// Its partitions.
    pub partitions: u32,
    /// The projectors' consumer-group prefix (`<group>.<projection>`).
    pub group: String,
    /// Connections of each process's pools.
    pub pool_size: u32,
    /// Where the processes' logs (and data folders) go.
    pub dir: PathBuf,
    /// The views in Cassandra instead of `views_url`: contact points and keyspace.
    pub cassandra: Option<(String, String)>,
    /// More settings of every process, as `SHOP__…` environment variables
    /// (see [`setting_env`]).
    pub settings: Vec<(String, String)>,
}

/// A setting `log.batch_gather_ms=20` as the environment variable that
/// sets it (`SHOP__LOG__BATCH_GATHER_MS`) and its value.
pub fn setting_env(setting: &str) -> Result<(String, String), String> {
    let (key, value) = setting.split_once('=').ok_or_else(|| format!("{setting:?} is not KEY=VALUE"))?;
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(format!("{key:?} is not a settings key such as log.batch_gather_ms"));
    }
    Ok((format!("SHOP__{}", key.replace('.', "__").to_ascii_uppercase()), value.to_owned()))
}

impl Shape {
    /// The binary with the shape's environment, and nothing of this
    /// process's own `SHOP_…` environment.
    fn command(&self) -> tokio::process::Command {
        self.command_as("shop")
    }

    /// [`Shape::command`] with the process's PostgreSQL connections named
    /// `application` (`pg_stat_activity.application_name`), so that the
    /// server's CPU can be told apart by process.
    fn command_as(&self, application: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.binary);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SHOP_") {
                command.env_remove(key);
            }
        }
        let pool = self.pool_size.to_string();
        command
            .env("SHOP__WRITE_DB__KIND", "postgres")
            .env("SHOP__WRITE_DB__URL", named(&self.events_url, application))
            .env("SHOP__WRITE_DB__MAX_CONNECTIONS", &pool)
            .env("SHOP__LOG__KIND", "kafka")
            .env("SHOP__LOG__BROKERS", &self.brokers)
            .env("SHOP__LOG__TOPIC", &self.topic)
            .env("SHOP__LOG__PARTITIONS", self.partitions.to_string())
            .env("SHOP__LOG__GROUP", &self.group)
            .env("RUST_LOG", "warn")
            .envs(self.settings.iter().map(|(key, value)| (key, value)));
        match &self.cassandra {
            Some((nodes, keyspace)) => command
                .env("SHOP__READ_DB__KIND", "cassandra")
                .env("SHOP__READ_DB__NODES", nodes)
                .env("SHOP__READ_DB__KEYSPACE", keyspace),
            None => command
                .env("SHOP__READ_DB__KIND", "postgres")
                .env("SHOP__READ_DB__URL", named(&self.views_url, application))
                .env("SHOP__READ_DB__MAX_CONNECTIONS", &pool),
        };
        command
    }

    /// `shop migrate`: the schemas of both databases, and the topic.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut command = self.command();
        command.arg("migrate").stdin(Stdio::null()).kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .context("shop migrate did not finish within 120 s")?
            .context("run shop migrate")?;
        anyhow::ensure!(
            output.status.success(),
            "shop migrate failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// Starts `shop serve` with `roles` as process `name`; returns once it listens.
    pub async fn start(&self, name: &str, roles: &[&str]) -> anyhow::Result<ShopProcess> {
        let mut command = self.command_as(name);
        command.arg("serve");
        for role in roles {
            command.args(["--role", role]);
        }
        command.args(["--listen", "127.0.0.1:0", "--data-dir"]).arg(self.dir.join(name));
        let log = self.dir.join(format!("{name}.log"));
        let (child, addr) =
            spawn_listening(command, &log).await.with_context(|| format!("start process {name}"))?;
        let pid = child.id().context("a running child has a pid")?;
        Ok(ShopProcess { name: name.to_owned(), child, pid, addr, log })
    }

    /// Starts `count` processes `<prefix>-1` … at once.
    pub async fn start_many(
        &self,
        prefix: &str,
        roles: &[&str],
        count: usize,
    ) -> anyhow::Result<Vec<ShopProcess>> {
        let names: Vec<String> = (1..=count).map(|i| format!("{prefix}-{i}")).collect();
        futures::future::try_join_all(names.iter().map(|name| self.start(name, roles))).await
    }
}

/// `url` with `application_name` set to `application`.
fn named(url: &str, application: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={application}")
}

/// One `shop serve` process of the run.
pub struct ShopProcess {
    /// Its name in the report (`command-1`, `relay`, …).
    pub name: String,
    child: tokio::process::Child,
    /// Its pid.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl ShopProcess {
    /// CPU seconds it has used so far.
    pub fn cpu_secs(&self) -> f64 {
        pid_cpu_secs(self.pid)
    }

    /// A client of its HTTP API.
    pub fn client(&self, kind: ClientKind) -> anyhow::Result<Client> {
        Client::new(self.addr, kind)
    }

    /// Ends it (SIGKILL to its pid) and reaps it; fails if it had already
    /// ended on its own, with the end of its log.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            anyhow::bail!("{} ended on its own ({status}); its log ends:\n{}", self.name, tail.join("\n"));
        }
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}

/// Ends every process of `processes`.
pub async fn stop_all(processes: Vec<ShopProcess>) -> anyhow::Result<()> {
    for process in processes {
        process.stop().await?;
    }
    Ok(())
}

/// The sum of the samples of a Prometheus series (every label set) in the
/// `/metrics` text of a process; 0 if it has none yet.
pub async fn scrape(client: &Client, series: &str) -> anyhow::Result<f64> {
    let body = client.connect().await?.expect_ok(Method::GET, "/metrics", None).await?;
    let text = String::from_utf8_lossy(&body);
    let mut sum = 0.0;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some(rest) = line.strip_prefix(series) else { continue };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        sum += line.rsplit(' ').next().and_then(|value| value.parse::<f64>().ok()).unwrap_or(0.0);
    }
    Ok(sum)
}

/// What a CPU figure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Party {
    /// A shop process of the run.
    Shop,
    /// A server: PostgreSQL, Kafka.
    Server,
    /// The bench process: the load generator.
    Bench,
}

/// The PostgreSQL processes that serve a run: the backends of its
/// databases and the server's own processes.
#[derive(Clone)]
pub struct PgProcesses {
    admin: PgPool,
    databases: Vec<String>,
}

impl PgProcesses {
    /// Watches the backends of `databases`, asking `admin` (a pool on the same server).
    pub fn new(admin: PgPool, databases: Vec<String>) -> Self {
        Self { admin, databases }
    }

    /// CPU seconds so far of each such process, by pid: whether it is one
    /// of the server's own (shared by every database), and whom it serves.
    async fn cpu_secs(&self) -> anyhow::Result<BTreeMap<u32, Backend>> {
        let pids: Vec<(i32, Option<String>, String)> = sqlx::query_as(
            "SELECT pid, datname::text, application_name FROM pg_stat_activity \
             WHERE datname = ANY($1) OR datname IS NULL",
        )
        .bind(&self.databases)
        .fetch_all(&self.admin)
        .await
        .context("list the PostgreSQL backends of the run")?;
        Ok(pids
            .into_iter()
            .filter_map(|(pid, database, application)| {
                Some((u32::try_from(pid).ok()?, database, application))
            })
            .map(|(pid, database, application)| {
                let serves = database.map(|database| format!("{application} → {database}"));
                (pid, Backend { serves, secs: pid_cpu_secs(pid) })
            })
            .collect())
    }
}

/// A PostgreSQL process and its CPU seconds so far.
#[derive(Debug, Clone)]
struct Backend {
    /// `<application> → <database>` for a backend, `None` for the server's own processes.
    serves: Option<String>,
    secs: f64,
}

/// Rows written (inserted, updated, deleted), transactions committed and
/// rolled back in one database, from `pg_stat_database`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DbActivity {
    /// Rows inserted, updated or deleted.
    pub rows: i64,
    /// Transactions committed.
    pub transactions: i64,
    /// Transactions rolled back (projectors: commits refused for a conflict).
    pub rollbacks: i64,
}

impl DbActivity {
    /// Reads them for `database`, asking `pool` (any database of the server).
    pub async fn of(pool: &PgPool, database: &str) -> anyhow::Result<Self> {
        let (rows, transactions, rollbacks): (i64, i64, i64) = sqlx::query_as(
            "SELECT tup_inserted + tup_updated + tup_deleted, xact_commit, xact_rollback \
             FROM pg_stat_database WHERE datname = $1",
        )
        .bind(database)
        .fetch_one(pool)
        .await
        .with_context(|| format!("read the statistics of {database}"))?;
        Ok(Self { rows, transactions, rollbacks })
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &DbActivity) -> DbActivity {
        DbActivity {
            rows: self.rows - earlier.rows,
            transactions: self.transactions - earlier.transactions,
            rollbacks: self.rollbacks - earlier.rollbacks,
        }
    }
}

/// CPU seconds used so far by every party of a run.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    shop: Vec<(String, f64)>,
    postgres: BTreeMap<u32, Backend>,
    postgres_all: f64,
    kafka: f64,
    bench: f64,
    machine: CpuMeter,
    at: Instant,
}

impl CpuSnapshot {
    /// Reads them now.
    pub async fn take(processes: &[&ShopProcess], postgres: &PgProcesses) -> anyhow::Result<Self> {
        Ok(Self {
            shop: processes.iter().map(|p| (p.name.clone(), p.cpu_secs())).collect(),
            postgres: postgres.cpu_secs().await?,
            postgres_all: process_cpu_secs("postgres"),
            kafka: cmdline_cpu_secs(KAFKA_PROCESS),
            bench: own_cpu_secs(),
            machine: CpuMeter::start(),
            at: Instant::now(),
        })
    }

    /// What each party used between `earlier` and `self`. A shop process or
    /// a PostgreSQL backend that was not there earlier counts from its start.
    pub fn since(&self, earlier: &CpuSnapshot) -> CpuUse {
        let before = |name: &str| earlier.shop.iter().find(|(n, _)| n == name).map_or(0.0, |(_, secs)| *secs);
        let mut parts: Vec<CpuPart> = self
            .shop
            .iter()
            .map(|(name, secs)| CpuPart { name: name.clone(), party: Party::Shop, secs: secs - before(name) })
            .collect();
        let before = |pid: &u32| earlier.postgres.get(pid).map_or(0.0, |backend| backend.secs);
        let postgres = |shared: bool| -> f64 {
            self.postgres
                .iter()
                .filter(|(_, backend)| backend.serves.is_none() == shared)
                .map(|(pid, backend)| backend.secs - before(pid))
                .sum()
        };
        let mut postgres_by_client = BTreeMap::new();
        for (pid, backend) in &self.postgres {
            if let Some(serves) = &backend.serves {
                *postgres_by_client.entry(serves.clone()).or_insert(0.0) += backend.secs - before(pid);
            }
        }
        parts.push(CpuPart { name: POSTGRES.into(), party: Party::Server, secs: postgres(false) });
        parts.push(CpuPart { name: POSTGRES_SHARED.into(), party: Party::Server, secs: postgres(true) });
        parts.push(CpuPart { name: KAFKA.into(), party: Party::Server, secs: self.kafka - earlier.kafka });
        parts.push(CpuPart { name: BENCH.into(), party: Party::Bench, secs: self.bench - earlier.bench });
        let elapsed_secs = (self.at - earlier.at).as_secs_f64();
        CpuUse {
            parts,
            postgres_by_client,
            postgres_all_secs: self.postgres_all - earlier.postgres_all,
            machine_busy_secs: earlier.machine.busy_cores() * elapsed_secs,
            elapsed_secs,
        }
    }
}

/// The name of the run's PostgreSQL backends.
pub const POSTGRES: &str = "PostgreSQL";
/// The name of the PostgreSQL server's own processes (WAL writer, checkpointer, …).
pub const POSTGRES_SHARED: &str = "PostgreSQL server";
/// The name of the Kafka broker.
pub const KAFKA: &str = "Kafka";
/// The name of the bench process.
pub const BENCH: &str = "bench";

/// One party's CPU seconds over a measurement.
#[derive(Debug, Clone, Serialize)]
pub struct CpuPart {
    /// `command-1`, `PostgreSQL`, `Kafka`, `bench`, …
    pub name: String,
    /// What it is.
    pub party: Party,
    /// CPU seconds.
    pub secs: f64,
}

/// The CPU every party used over a measurement.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// Each shop process, PostgreSQL (the run's backends and the server's
    /// own processes), Kafka, the bench.
    pub parts: Vec<CpuPart>,
    /// The run's PostgreSQL backends by whom they serve: `<application> →
    /// <database>` (a shop process names its connections after itself).
    pub postgres_by_client: BTreeMap<String, f64>,
    /// Every postgres process of the machine (other databases' backends too).
    pub postgres_all_secs: f64,
    /// CPU seconds the whole machine was busy meanwhile (every process).
    pub machine_busy_secs: f64,
    /// How long the measurement took.
    pub elapsed_secs: f64,
}

impl CpuUse {
    /// CPU seconds of the parties of `party`.
    pub fn of(&self, party: Party) -> f64 {
        self.parts.iter().filter(|p| p.party == party).map(|p| p.secs).sum()
    }

    /// CPU seconds of the part named `name`.
    pub fn named(&self, name: &str) -> f64 {
        self.parts.iter().filter(|p| p.name == name).map(|p| p.secs).sum()
    }

    /// CPU seconds of every party.
    pub fn total(&self) -> f64 {
        self.parts.iter().map(|p| p.secs).sum()
    }

    /// Cores the machine's other processes kept busy on average meanwhile:
    /// other tests, builds, other databases' backends.
    pub fn others_cores(&self) -> f64 {
        if self.elapsed_secs <= 0.0 {
            return 0.0;
        }
        ((self.machine_busy_secs - self.total()) / self.elapsed_secs).max(0.0)
    }

    /// The shop processes' CPU per operation, each, in µs: `command-1 212, command-2 198`.
    pub fn shop_per_op(&self, ops: u64) -> String {
        let each: Vec<String> = self
            .parts
            .iter()
            .filter(|p| p.party == Party::Shop)
            .map(|p| format!("{} {:.0}", p.name, micros_per(p.secs, ops)))
            .collect();
        each.join(", ")
    }
}

/// `secs` per `ops` in µs (0 without operations).
pub fn micros_per(secs: f64, ops: u64) -> f64 {
    if ops == 0 {
        0.0
    } else {
        secs * 1e6 / ops as f64
    }
}
