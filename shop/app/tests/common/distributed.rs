//! The distributed shape under test: real PostgreSQL, real Kafka, and every
//! role of the shop a separate OS process of the `shop` binary.
//!
//! A [`Deployment`] owns two fresh databases (write and read), a fresh topic
//! and consumer-group prefix, the shop's processes, and an in-process reverse
//! proxy that routes by method (POST/PUT/DELETE round-robin to the command
//! processes, or to the one a client names with [`super::WRITER_HEADER`];
//! GET/HEAD round-robin to the query processes), so [`Deployment::app`]
//! speaks to the whole deployment as to one shop. Each process's stderr goes
//! to a file of its own; when a test panics, the deployment kills every
//! process it started (by pid), prints the tail of each log and keeps the
//! folder.
//!
//! Deployments run one at a time (the machine has two cores, and the
//! take-over test measures time).
//!
//! The views live in PostgreSQL, or in Apache Cassandra (a fresh keyspace)
//! with [`Deployment::start_with`] and [`ReadDb::Cassandra`].
//!
//! Services: `PARALLAX_TEST_POSTGRES_URL` (a superuser: it creates
//! databases), `PARALLAX_TEST_KAFKA_BROKERS` and, for Cassandra,
//! `PARALLAX_TEST_CASSANDRA_NODES`; `kcat` reads the topic as an external
//! client would, and every message it reads is checked against the shop's
//! AsyncAPI document ([`contract_findings`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use parallax_cassandra::{CassandraConfig, CassandraReadStore};
use parallax_core::{partition_for, EventLog, EventRecord, EventStore, Partition, Position, ReadStore};
use parallax_postgres::{PgEventStore, PgLog, PgReadStore};
use parallax_runtime::generations::GENERATIONS_VIEW;
use parallax_runtime::CancellationToken;
use parallax_testing::contract::{KafkaMessage, MessageValidator};
use serde_json::Value;
use shop::check::{Documents, TopicMessage};
use shop::config::{DbKind, DbSettings, LogKind, LogSettings};
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;
use tokio::sync::{oneshot, Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;

use super::TestApp;

/// Partitions of every test topic.
pub const PARTITIONS: u32 = 8;

const DEFAULT_POSTGRES: &str = "postgres://parallax:parallax@127.0.0.1:5432/parallax";
const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
const DEFAULT_CASSANDRA: &str = "127.0.0.1:9042";

/// Where a deployment keeps its views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadDb {
    /// A fresh PostgreSQL database.
    Postgres,
    /// A fresh Cassandra keyspace.
    Cassandra,
}

/// How long a process may take to print its `listening on` line.
const STARTUP: Duration = Duration::from_secs(60);
/// How long projectors may take to absorb everything, and the relay to publish it.
const CATCH_UP: Duration = Duration::from_secs(90);

/// The distributed shape of the design: one process per role, two of the
/// scalable ones (two command processes, as behind a round-robin load
/// balancer, and the saga in a process of its own: writers of the same
/// streams that must decide on the write DB's state).
pub const STANDARD: &[(&str, &[&str])] = &[
    ("command-1", &["command"]),
    ("command-2", &["command"]),
    ("relay", &["relay"]),
    ("projector-1", &["projector"]),
    ("projector-2", &["projector"]),
    ("saga", &["saga"]),
    ("query-1", &["query"]),
    ("query-2", &["query"]),
];

/// One deployment at a time, across the tests of a binary.
static SLOT: Semaphore = Semaphore::const_new(1);

/// Where the servers are.
#[derive(Debug, Clone)]
pub struct Services {
    /// An admin URL (superuser) of the PostgreSQL server.
    pub postgres: String,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Cassandra contact points.
    pub cassandra: String,
    /// The event store's server when it is not `postgres`: a primary and
    /// its standby as a host list (`scripts/services/postgres start
    /// --standby`); the views stay on `postgres`.
    pub write_postgres: Option<String>,
}

impl Services {
    /// An admin URL of the event store's server.
    pub fn write_server(&self) -> &str {
        self.write_postgres.as_deref().unwrap_or(&self.postgres)
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

/// The services from the environment; fails the test, naming the script
/// that starts them, if PostgreSQL or Kafka does not answer.
pub async fn services() -> Services {
    let postgres = env_or("PARALLAX_TEST_POSTGRES_URL", DEFAULT_POSTGRES);
    let brokers = env_or("PARALLAX_TEST_KAFKA_BROKERS", DEFAULT_BROKERS);
    let shown = parallax_postgres::redact(&postgres);
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&postgres)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
        }
        Ok(Err(error)) => panic!(
            "PostgreSQL does not answer at {shown} ({error}): start it with `scripts/services/postgres start` \
             (or set PARALLAX_TEST_POSTGRES_URL)"
        ),
        Err(_) => panic!(
            "PostgreSQL at {shown} did not answer within 10 s: start it with `scripts/services/postgres start` \
             (or set PARALLAX_TEST_POSTGRES_URL)"
        ),
    }
    let metadata = tokio::process::Command::new("kcat")
        .args(["-L", "-b", &brokers, "-m", "5", "-J"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(20), metadata).await {
        Ok(Ok(output)) if output.status.success() => {}
        Ok(Ok(output)) => panic!(
            "Kafka does not answer at {brokers} ({}): start it with `scripts/services/kafka start` \
             (or set PARALLAX_TEST_KAFKA_BROKERS)",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Ok(Err(error)) => {
            panic!("cannot run kcat ({error}); `scripts/services/kafka start` installs it and starts Kafka")
        }
        Err(_) => panic!(
            "Kafka at {brokers} did not answer within 20 s: start it with `scripts/services/kafka start`"
        ),
    }
    let cassandra = env_or("PARALLAX_TEST_CASSANDRA_NODES", DEFAULT_CASSANDRA);
    Services { postgres, brokers, cassandra, write_postgres: None }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..].find('/').map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{database}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// One process of the deployment.
struct Proc {
    name: String,
    roles: Vec<String>,
    child: Option<Child>,
    /// Its HTTP API (`http://IP:PORT`); empty until it is listening.
    url: String,
    /// How many times it was started.
    incarnation: u32,
    /// The current incarnation's stderr.
    stderr: PathBuf,
    /// Lines the current incarnation printed to stdout.
    stdout_lines: Arc<AtomicUsize>,
}

/// A message of the topic, as `kcat -J` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub partition: u32,
    pub offset: u64,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub payload: Option<String>,
}

impl Message {
    /// The value of the header `name`, if it occurs exactly once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let first = values.next()?;
        values.next().is_none().then_some(first)
    }

    fn place(&self) -> String {
        format!("message {}@{} (key {:?})", self.partition, self.offset, self.key)
    }
}

/// What the topic holds, once checked against the event store.
#[derive(Debug, Clone, Copy)]
pub struct TopicReport {
    /// Messages read.
    pub messages: usize,
    /// Messages that repeat an earlier one (same position).
    pub duplicates: usize,
    /// Distinct events (= events in the store).
    pub events: usize,
    /// Streams.
    pub streams: usize,
}

/// A running distributed shop.
pub struct Deployment {
    /// The shop through the proxy: commands to the command process, queries
    /// to the query processes.
    pub app: TestApp,
    pub services: Services,
    /// The event store's database.
    pub write_url: String,
    /// The views' database (PostgreSQL).
    pub read_url: String,
    /// Where the views live.
    pub read_db: ReadDb,
    /// The views' keyspace (Cassandra).
    pub keyspace: String,
    pub topic: String,
    /// Consumer-group prefix.
    pub group: String,
    /// `RUST_LOG` of the processes (default: `PARALLAX_TEST_LOG`, or info with
    /// `parallax_kafka` at debug).
    log_filter: Option<String>,
    databases: Vec<String>,
    /// More environment for the processes started from now on.
    pub extra_env: Vec<(String, String)>,
    procs: Vec<Proc>,
    proxy: CancellationToken,
    dir: Option<TempDir>,
    cleaned: bool,
    _slot: SemaphorePermit<'static>,
}

impl Deployment {
    /// Creates fresh databases and a fresh topic (`shop migrate`), starts one
    /// process per entry of `layout` (name, roles), all at once, waits until
    /// each listens, and puts the proxy in front of them. The command process
    /// and the query processes are the proxy's backends and are not meant to
    /// be killed; every other process can be.
    pub async fn start(layout: &[(&str, &[&str])]) -> Self {
        Self::start_with(layout, ReadDb::Postgres).await
    }

    /// [`Deployment::start`] with the views in `read_db`.
    pub async fn start_with(layout: &[(&str, &[&str])], read_db: ReadDb) -> Self {
        Self::start_logging(layout, read_db, None).await
    }

    /// [`Deployment::start_with`], the processes logging as `RUST_LOG =
    /// log_filter` says.
    pub async fn start_logging(
        layout: &[(&str, &[&str])],
        read_db: ReadDb,
        log_filter: Option<&str>,
    ) -> Self {
        Self::start_on(layout, read_db, log_filter, services().await).await
    }

    /// [`Deployment::start_logging`] on `services` rather than the
    /// single-node servers of the environment (a cluster's, say).
    pub async fn start_on(
        layout: &[(&str, &[&str])],
        read_db: ReadDb,
        log_filter: Option<&str>,
        services: Services,
    ) -> Self {
        let slot = SLOT.acquire().await.expect("the deployment semaphore is never closed");
        let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let name = format!("pxt_{id}");
        let databases = vec![format!("{name}_write"), format!("{name}_read")];
        for (database, server) in databases.iter().zip([services.write_server(), &services.postgres]) {
            // A pool: the write server may be a host list.
            let admin = parallax_postgres::pool(server, 1).await.expect("connect to PostgreSQL");
            // The names are ours: hex digits and underscores.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{database}\"")))
                .execute(&admin)
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {database}: {e}"));
            admin.close().await;
        }
        let dir = tempfile::Builder::new().prefix("parallax-distributed-").tempdir().expect("a temp folder");
        let mut deployment = Self {
            app: TestApp::remote(String::new()),
            write_url: with_database(services.write_server(), &databases[0]),
            read_url: with_database(&services.postgres, &databases[1]),
            read_db,
            keyspace: name.clone(),
            topic: format!("parallax-test-{id}"),
            group: format!("parallax-test-{id}"),
            log_filter: log_filter.map(str::to_owned),
            services,
            databases,
            extra_env: Vec::new(),
            procs: Vec::new(),
            proxy: CancellationToken::new(),
            dir: Some(dir),
            cleaned: false,
            _slot: slot,
        };
        deployment.migrate().await;

        let mut pending = Vec::new();
        for (name, roles) in layout {
            let (proc, listening) =
                deployment.spawn(name, roles.iter().map(|r| (*r).to_owned()).collect(), 1);
            deployment.procs.push(proc);
            pending.push((*name, listening));
        }
        for (name, listening) in pending {
            deployment.await_listening(name, listening).await;
        }

        let with_role = |role: &str| -> Vec<String> {
            deployment
                .procs
                .iter()
                .filter(|p| p.roles.iter().any(|r| r == role))
                .map(|p| p.url.clone())
                .collect()
        };
        let commands = with_role("command");
        assert!(!commands.is_empty(), "a layout with a command process");
        let queries = with_role("query");
        assert!(!queries.is_empty(), "a layout with a query process");
        let proxy = start_proxy(commands, queries, deployment.proxy.clone()).await;
        deployment.app = TestApp::remote(proxy);
        deployment
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the deployment's folder").path()
    }

    /// The deployment's folder: the processes' logs and data (removed when
    /// the deployment stops, kept when a test panics).
    pub fn folder(&self) -> &Path {
        self.dir()
    }

    /// The environment of the distributed configuration (`SHOP__…`).
    fn configure(&self, command: &mut Command) {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SHOP_") {
                command.env_remove(key);
            }
        }
        command.env("SHOP__WRITE_DB__KIND", "postgres").env("SHOP__WRITE_DB__URL", &self.write_url);
        match self.read_db {
            ReadDb::Postgres => {
                command.env("SHOP__READ_DB__KIND", "postgres").env("SHOP__READ_DB__URL", &self.read_url);
            }
            ReadDb::Cassandra => {
                command
                    .env("SHOP__READ_DB__KIND", "cassandra")
                    .env("SHOP__READ_DB__NODES", &self.services.cassandra)
                    .env("SHOP__READ_DB__KEYSPACE", &self.keyspace);
            }
        }
        command
            .env("SHOP__LOG__KIND", "kafka")
            .env("SHOP__LOG__BROKERS", &self.services.brokers)
            .env("SHOP__LOG__TOPIC", &self.topic)
            .env("SHOP__LOG__PARTITIONS", PARTITIONS.to_string())
            .env("SHOP__LOG__GROUP", &self.group)
            // parallax_kafka's debug lines tell when a consumer was given partitions.
            .env(
                "RUST_LOG",
                self.log_filter
                    .clone()
                    .unwrap_or_else(|| env_or("PARALLAX_TEST_LOG", "info,parallax_kafka=debug")),
            );
    }

    /// Runs `shop <args>` with the deployment's configuration; its stdout.
    pub async fn shop(&self, args: &[&str]) -> String {
        let output = self.shop_output(args).await;
        assert!(
            output.status.success(),
            "shop {args:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Runs `shop <args>` with the deployment's configuration; what it
    /// printed and how it exited, whatever that was.
    pub async fn shop_output(&self, args: &[&str]) -> std::process::Output {
        self.run_shop(args, true).await
    }

    /// [`Deployment::shop_output`] as an operator runs it: without the
    /// harness's `RUST_LOG`, so with the binary's own default logging.
    pub async fn shop_output_as_operator(&self, args: &[&str]) -> std::process::Output {
        self.run_shop(args, false).await
    }

    async fn run_shop(&self, args: &[&str], harness_logging: bool) -> std::process::Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
        command.args(args).stdin(Stdio::null());
        self.configure(&mut command);
        if !harness_logging {
            command.env_remove("RUST_LOG");
        }
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        tokio::time::timeout(Duration::from_secs(180), command.output())
            .await
            .unwrap_or_else(|_| panic!("shop {args:?} finishes within 180 s"))
            .expect("run the shop binary")
    }

    /// The deployment's configuration as settings, for the library's
    /// operator tools (`shop::check::check`) run in this process.
    pub fn settings(&self) -> shop::Settings {
        let postgres = |url: &str| DbSettings {
            kind: DbKind::Postgres,
            url: Some(url.to_owned()),
            max_connections: 4,
            nodes: None,
            keyspace: None,
            replication_factor: None,
            consistency: None,
        };
        let mut settings =
            shop::Settings::embedded("127.0.0.1:0".parse().expect("an address"), self.dir().join("settings"));
        settings.write_db = postgres(&self.write_url);
        settings.read_db = match self.read_db {
            ReadDb::Postgres => postgres(&self.read_url),
            ReadDb::Cassandra => DbSettings {
                kind: DbKind::Cassandra,
                url: None,
                max_connections: 4,
                nodes: Some(self.services.cassandra.clone()),
                keyspace: Some(self.keyspace.clone()),
                replication_factor: None,
                consistency: None,
            },
        };
        settings.log = LogSettings {
            kind: LogKind::Kafka,
            brokers: self.services.brokers.clone(),
            topic: self.topic.clone(),
            partitions: PARTITIONS,
            group: self.group.clone(),
            ..LogSettings::default()
        };
        settings
    }

    /// `shop migrate`: the schemas of both databases and the topic.
    pub async fn migrate(&self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
        command.arg("migrate").stdin(Stdio::null());
        self.configure(&mut command);
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .expect("shop migrate finishes within 120 s")
            .expect("run shop migrate");
        assert!(
            output.status.success(),
            "shop migrate failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts a process; the receiver gets its URL once it prints `listening on`.
    fn spawn(&self, name: &str, roles: Vec<String>, incarnation: u32) -> (Proc, oneshot::Receiver<String>) {
        let stderr = self.dir().join(format!("{name}.{incarnation}.stderr"));
        let data_dir = self.dir().join("data").join(name);
        let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
        command.arg("serve");
        for role in &roles {
            command.args(["--role", role]);
        }
        command.args(["--listen", "127.0.0.1:0", "--data-dir"]).arg(&data_dir);
        self.configure(&mut command);
        command.envs(self.extra_env.iter().map(|(key, value)| (key, value)));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(File::create(&stderr).expect("create a log file")));
        let mut child = command.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().expect("a piped stdout");
        let (tx, rx) = oneshot::channel();
        let stdout_lines = Arc::new(AtomicUsize::new(0));
        let lines = stdout_lines.clone();
        // Reads stdout to its end, so the process never blocks on it.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.fetch_add(1, Ordering::Relaxed);
                if let Some(url) = line.strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_owned());
                    }
                }
            }
        });
        (
            Proc {
                name: name.to_owned(),
                roles,
                child: Some(child),
                url: String::new(),
                incarnation,
                stderr,
                stdout_lines,
            },
            rx,
        )
    }

    async fn await_listening(&mut self, name: &str, listening: oneshot::Receiver<String>) {
        let url = match tokio::time::timeout(STARTUP, listening).await {
            Ok(Ok(url)) => url,
            Ok(Err(_)) => {
                let status = self.proc_mut(name).child.as_mut().and_then(|c| c.wait().ok());
                panic!("{name} exited ({status:?}) without listening:\n{}", self.tail(name, 60))
            }
            Err(_) => {
                panic!("{name} did not print `listening on` within {STARTUP:?}:\n{}", self.tail(name, 60))
            }
        };
        assert!(url.starts_with("http://"), "{name} printed `listening on {url}`");
        self.proc_mut(name).url = url;
    }

    fn proc(&self, name: &str) -> &Proc {
        self.procs.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no process {name}"))
    }

    fn proc_mut(&mut self, name: &str) -> &mut Proc {
        self.procs.iter_mut().find(|p| p.name == name).unwrap_or_else(|| panic!("no process {name}"))
    }

    /// Starts one more process.
    pub async fn add(&mut self, name: &str, roles: &[&str]) {
        assert!(self.procs.iter().all(|p| p.name != name), "{name} exists");
        let (proc, listening) = self.spawn(name, roles.iter().map(|r| (*r).to_owned()).collect(), 1);
        self.procs.push(proc);
        self.await_listening(name, listening).await;
    }

    /// SIGKILL to one process this deployment started (by its pid), and reaps it.
    pub fn kill(&mut self, name: &str) {
        let proc = self.proc_mut(name);
        let mut child = proc.child.take().unwrap_or_else(|| panic!("{name} is not running"));
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
        kill(pid, Signal::SIGKILL).unwrap_or_else(|e| panic!("kill -9 {name} ({pid}): {e}"));
        child.wait().unwrap_or_else(|e| panic!("reap {name}: {e}"));
    }

    /// Starts a killed process again (a new log file per incarnation).
    pub async fn restart(&mut self, name: &str) {
        let (roles, incarnation) = {
            let proc = self.proc(name);
            assert!(proc.child.is_none(), "{name} is still running");
            (proc.roles.clone(), proc.incarnation + 1)
        };
        let (fresh, listening) = self.spawn(name, roles, incarnation);
        *self.proc_mut(name) = fresh;
        self.await_listening(name, listening).await;
    }

    /// The HTTP API of one process (`http://IP:PORT`).
    pub fn url(&self, name: &str) -> String {
        self.proc(name).url.clone()
    }

    /// Sends `signal` to one running process of the deployment, by its pid
    /// (SIGSTOP and SIGCONT for the fault suite's pauses).
    pub fn signal(&self, name: &str, signal: Signal) {
        let child = self.proc(name).child.as_ref().unwrap_or_else(|| panic!("{name} is not running"));
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
        kill(pid, signal).unwrap_or_else(|e| panic!("{signal} to {name} ({pid}): {e}"));
    }

    /// The current incarnation's stderr.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(&self.proc(name).stderr).unwrap_or_default()
    }

    /// The last `lines` lines of a process's stderr.
    pub fn tail(&self, name: &str, lines: usize) -> String {
        tail(&self.proc(name).stderr, lines)
    }

    /// Waits until the current incarnation of `name` logs `needle`; returns
    /// how long that took.
    pub async fn wait_for_log(&self, name: &str, needle: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.log(name).contains(needle) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{name} did not log {needle:?} within {within:?}:\n{}",
                self.tail(name, 40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many non-empty partition assignments the current incarnation of a
    /// projector process has logged (one per consumer group and rebalance).
    pub fn assignments(&self, name: &str) -> usize {
        self.log(name)
            .lines()
            .filter(|line| line.contains("Kafka partitions assigned") && !line.contains("partitions=[]"))
            .count()
    }

    /// Waits until a projector process has logged `at_least` non-empty assignments.
    pub async fn wait_for_assignments(&self, name: &str, at_least: usize) {
        let start = Instant::now();
        while self.assignments(name) < at_least {
            assert!(
                start.elapsed() < CATCH_UP,
                "{name} logged {} partition assignments in {CATCH_UP:?}, not {at_least}:\n{}",
                self.assignments(name),
                self.tail(name, 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails if a process that was not killed by the test has exited, or
    /// printed anything but its `listening on` line to stdout.
    pub fn assert_running(&mut self) {
        let mut exited = Vec::new();
        for proc in &mut self.procs {
            if let Some(child) = proc.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited.push(format!("{} ({status})", proc.name));
                }
                let lines = proc.stdout_lines.load(Ordering::Relaxed);
                assert_eq!(
                    lines, 1,
                    "{} printed {lines} lines to stdout, not just `listening on`",
                    proc.name
                );
            }
        }
        assert!(exited.is_empty(), "processes exited on their own: {exited:?}");
    }

    /// Kills every process, checks none had died on its own, drops the databases.
    pub async fn stop(mut self) {
        self.assert_running();
        self.kill_all();
        drop_databases(&self.services.postgres, &self.databases).await;
        if let Some(write) = &self.services.write_postgres {
            drop_databases(write, &self.databases[..1]).await;
        }
        delete_topic(&self.services.brokers, &self.topic).await;
        if self.read_db == ReadDb::Cassandra {
            drop_keyspace(&self.cassandra_config()).await;
        }
        self.cleaned = true;
    }

    fn kill_all(&mut self) {
        self.proxy.cancel();
        for proc in &mut self.procs {
            if let Some(mut child) = proc.child.take() {
                // Child::kill sends SIGKILL to this child's pid.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    // ---- the event store, the topic, the views ----

    /// The event store (its own pool and writer tasks, on this runtime).
    pub async fn event_store(&self) -> PgEventStore {
        PgEventStore::connect(&self.write_url).await.expect("connect to the event store")
    }

    fn cassandra_config(&self) -> CassandraConfig {
        CassandraConfig::new(self.services.cassandra.split(','), &self.keyspace)
    }

    /// The read store the deployment's views live in, as queries see it
    /// (each projection's active generation).
    pub async fn read_store(&self) -> Arc<dyn ReadStore> {
        let raw = self.raw_read_store().await;
        Arc::new(parallax_runtime::ActiveGenerations::new(raw, &shop_read::all_projections()))
    }

    /// The read store the deployment's views live in, as stored.
    pub async fn raw_read_store(&self) -> Arc<dyn ReadStore> {
        match self.read_db {
            ReadDb::Postgres => {
                Arc::new(PgReadStore::connect(&self.read_url).await.expect("connect to the read store"))
            }
            ReadDb::Cassandra => Arc::new(self.cassandra().await),
        }
    }

    /// The Cassandra read store of the deployment.
    pub async fn cassandra(&self) -> CassandraReadStore {
        CassandraReadStore::connect(&self.cassandra_config(), shop::app::shop_view_specs())
            .await
            .expect("connect to the Cassandra read store")
    }

    /// How far the projections have got: the sum of their checkpoints.
    pub async fn progress(&self) -> u64 {
        let views = self.read_store().await;
        let mut sum = 0;
        for projection in shop_read::all_projections() {
            for (_, checkpoint) in views.checkpoints(projection.name()).await.expect("checkpoints") {
                sum += checkpoint.position;
            }
        }
        sum
    }

    /// Waits until the projections move beyond `since`; returns where they are.
    pub async fn wait_progress(&self, since: u64) -> u64 {
        let start = Instant::now();
        loop {
            let now = self.progress().await;
            if now > since {
                return now;
            }
            assert!(start.elapsed() < Duration::from_secs(90), "projections made no progress in 90 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every document of every view, as the read DB holds it, under the
    /// views' names (a rebuilt generation's `<view>_g<n>` as `<view>`).
    pub async fn documents(&self) -> Documents {
        let stored = match self.read_db {
            ReadDb::Postgres => {
                let read =
                    parallax_postgres::pool(&self.read_url, 2).await.expect("connect to the read store");
                let documents = postgres_documents(&read).await;
                read.close().await;
                documents
            }
            ReadDb::Cassandra => cassandra_documents(&self.cassandra().await).await,
        };
        stored
            .into_iter()
            .map(|((view, partition, clustering), body)| {
                let logical = match view.rsplit_once("_g") {
                    Some((name, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                        name.to_owned()
                    }
                    _ => view,
                };
                ((logical, partition, clustering), body)
            })
            .collect()
    }

    /// Every committed event, in position order.
    pub async fn events(&self) -> Vec<EventRecord> {
        let pool = parallax_postgres::pool(&self.write_url, 2).await.expect("connect to the event store");
        let log = PgLog::standalone(pool.clone(), Duration::from_millis(10));
        let mut events: Vec<EventRecord> = Vec::new();
        loop {
            let after = events.last().map_or(0, |e| e.position);
            let batch = log.read(after, 5_000).await.expect("read the event store");
            if batch.is_empty() {
                break;
            }
            events.extend(batch);
        }
        pool.close().await;
        events
    }

    /// Every message of the topic, from the beginning, as an external
    /// consumer sees it (`kcat -C -e -J`), each checked against the shop's
    /// AsyncAPI document ([`contract_findings`]).
    pub async fn read_topic(&self) -> Vec<Message> {
        let messages = read_messages(&self.services.brokers, &self.topic).await;
        let findings = contract_findings(&messages);
        assert!(
            findings.is_empty(),
            "messages on topic {} that the shop's AsyncAPI document does not describe:\n{}",
            self.topic,
            findings.join("\n")
        );
        messages
    }

    /// Waits until the topic holds exactly the events of the store (every
    /// committed event, nothing else), then checks every message: CloudEvents
    /// binary-mode headers, key and partition, payload, identical duplicates,
    /// and per stream the versions 1..n in order.
    pub async fn assert_topic_carries_the_store(&self) -> TopicReport {
        let start = Instant::now();
        loop {
            let messages = self.read_topic().await;
            let events = self.events().await;
            let published: BTreeSet<Position> =
                messages.iter().filter_map(|m| m.header("ce_position")?.parse().ok()).collect();
            let stored: BTreeSet<Position> = events.iter().map(|e| e.position).collect();
            if published == stored {
                return check_topic(&messages, &events);
            }
            if start.elapsed() > CATCH_UP {
                let missing: Vec<_> = stored.difference(&published).take(20).collect();
                let extra: Vec<_> = published.difference(&stored).take(20).collect();
                panic!(
                    "after {CATCH_UP:?} the topic does not hold the store's events: {} stored, {} published; \
                     missing (first 20): {missing:?}; not in the store (first 20): {extra:?}\nrelay logs:\n{}",
                    stored.len(),
                    published.len(),
                    self.role_tails("relay", 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn role_tails(&self, role: &str, lines: usize) -> String {
        self.procs
            .iter()
            .filter(|p| p.roles.iter().any(|r| r == role))
            .map(|p| format!("---- {} ----\n{}", p.name, tail(&p.stderr, lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until every projection has absorbed, in every partition, each
    /// event up to `head` (its checkpoint there is at or beyond the highest
    /// position of the partition's streams).
    pub async fn wait_caught_up(&self, head: Position) {
        let write = parallax_postgres::pool(&self.write_url, 2).await.expect("connect to the event store");
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT stream_id, max(position) FROM events WHERE position <= $1 GROUP BY stream_id",
        )
        .bind(i64::try_from(head).expect("a position"))
        .fetch_all(&write)
        .await
        .expect("read the streams' last positions");
        write.close().await;
        let mut needed: BTreeMap<Partition, Position> = BTreeMap::new();
        for (stream, position) in rows {
            let position = u64::try_from(position).expect("a position");
            let slot = needed.entry(partition_for(&stream, PARTITIONS)).or_default();
            *slot = (*slot).max(position);
        }
        let views = self.read_store().await;
        let start = Instant::now();
        loop {
            let mut behind = Vec::new();
            for projection in shop_read::all_projections() {
                let name = projection.name();
                let checkpoints: BTreeMap<Partition, Position> = views
                    .checkpoints(name)
                    .await
                    .expect("read checkpoints")
                    .into_iter()
                    .map(|(partition, checkpoint)| (partition, checkpoint.position))
                    .collect();
                for (partition, position) in &needed {
                    let at = checkpoints.get(partition).copied().unwrap_or(0);
                    if at < *position {
                        behind.push(format!("{name}[{partition}] at {at}, needs {position}"));
                    }
                }
            }
            if behind.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < CATCH_UP,
                "projections did not catch up with position {head} within {CATCH_UP:?}: {behind:?}\n{}",
                self.role_tails("projector", 30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Views equal the fold of the event store: every projection rebuilt from
    /// the PostgreSQL event store into a fresh SQLite read store, in this
    /// process (`shop::check::fold`), and every document of every view
    /// compared with the read DB, once the projectors have caught up. No dead
    /// letters either.
    /// The suite's two tenants with the same ids, then: their events carry
    /// `ce_tenant` on the topic (and only theirs), every view equals the
    /// fold of the event store (each tenant's partitions included), and
    /// `shop check` finds nothing.
    pub async fn assert_tenants_apart_on_the_topic_and_in_the_views(&self) {
        super::suite::two_tenants_with_the_same_ids_never_see_or_change_each_others(&self.app).await;
        self.assert_views_equal_the_fold().await;
        let mut tenants = std::collections::BTreeSet::new();
        for message in self.read_topic().await {
            let subject = message.header("ce_subject").expect("a subject").to_owned();
            let tenant = subject.split_once('/').map(|(tenant, _)| tenant);
            assert_eq!(message.header("ce_tenant"), tenant, "{subject}");
            tenants.extend(tenant.map(str::to_owned));
        }
        assert_eq!(tenants, ["acme".to_owned(), "bolt".to_owned()].into(), "both tenants on the topic");
        let output = self.shop_output(&["check", "--json"]).await;
        assert!(output.status.success(), "shop check: {}", String::from_utf8_lossy(&output.stdout));
    }

    pub async fn assert_views_equal_the_fold(&self) {
        let store = self.event_store().await;
        let start = Instant::now();
        loop {
            let head = store.head().await.expect("the head");
            self.wait_caught_up(head).await;

            let events: Vec<EventRecord> =
                self.events().await.into_iter().take_while(|event| event.position <= head).collect();
            let complete = events.last().map_or(0, |event| event.position) == head;
            let fold = shop::check::fold(Arc::new(events)).await.expect("fold the event store");
            let expected = fold.documents;
            let actual = self.documents().await;
            if !complete || store.head().await.expect("the head") != head {
                // Something was appended meanwhile (the saga at work): again.
                assert!(start.elapsed() < CATCH_UP, "the event store never stood still for a comparison");
                continue;
            }
            let mut diff = shop::check::differences(&expected, &actual);
            diff.truncate(20);
            assert!(
                diff.is_empty(),
                "the views differ from the fold of the event store (head {head}; {} documents in the fold, \
                 {} in the read DB):\n{}",
                expected.len(),
                actual.len(),
                diff.join("\n")
            );
            assert!(!expected.is_empty(), "nothing to compare: the fold is empty");
            let views = self.read_store().await;
            for projection in shop_read::all_projections() {
                let dead = views.dead_letters(projection.name()).await.expect("list dead letters");
                assert!(dead.is_empty(), "dead letters of {} in the read DB: {dead:?}", projection.name());
            }
            eprintln!("views equal the fold: {} documents, head {head}", expected.len());
            return;
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.kill_all();
        if std::thread::panicking() {
            for proc in &self.procs {
                eprintln!(
                    "\n---- {} (incarnation {}) stderr, last lines of {} ----\n{}",
                    proc.name,
                    proc.incarnation,
                    proc.stderr.display(),
                    tail(&proc.stderr, 40)
                );
            }
            if let Some(dir) = self.dir.take() {
                eprintln!("logs kept in {}", dir.keep().display());
            }
        }
        if !self.cleaned {
            let admin = self.services.postgres.clone();
            let write_admin = self.services.write_postgres.clone();
            let databases = self.databases.clone();
            let (brokers, topic) = (self.services.brokers.clone(), self.topic.clone());
            let cassandra = (self.read_db == ReadDb::Cassandra).then(|| self.cassandra_config());
            // Best effort, on a runtime of its own (this may run while a panic unwinds).
            let _ = std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    runtime.block_on(async {
                        drop_databases(&admin, &databases).await;
                        if let Some(write) = &write_admin {
                            drop_databases(write, &databases[..1]).await;
                        }
                        delete_topic(&brokers, &topic).await;
                        if let Some(config) = cassandra {
                            drop_keyspace(&config).await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// Deletes a test topic (best effort).
async fn delete_topic(brokers: &str, topic: &str) {
    let config = parallax_kafka::KafkaConfig::new(brokers, topic, PARTITIONS, shop::EVENT_SOURCE);
    if let Err(error) = parallax_kafka::delete_topic(&config).await {
        eprintln!("could not delete test topic {topic}: {error}");
    }
}

/// Drops a test keyspace (best effort).
async fn drop_keyspace(config: &CassandraConfig) {
    if let Err(error) = CassandraReadStore::drop_keyspace(config).await {
        eprintln!("could not drop test keyspace {}: {error}", config.keyspace);
    }
}

async fn drop_databases(admin: &str, databases: &[String]) {
    // A pool: `admin` may be a host list (Services::write_postgres).
    let Ok(pool) = parallax_postgres::pool(admin, 1).await else { return };
    for database in databases {
        let drop = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
    }
    pool.close().await;
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- the proxy ----

struct Proxy {
    client: reqwest::Client,
    commands: Vec<String>,
    queries: Vec<String>,
    next_command: AtomicUsize,
    next_query: AtomicUsize,
}

/// Starts the method-routing reverse proxy on a free port; returns its URL.
async fn start_proxy(commands: Vec<String>, queries: Vec<String>, cancel: CancellationToken) -> String {
    let proxy = Arc::new(Proxy {
        client: super::http_client(),
        commands,
        queries,
        next_command: AtomicUsize::new(0),
        next_query: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
    let addr = listener.local_addr().expect("the proxy's address");
    let router = axum::Router::new().fallback(forward).with_state(proxy);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).with_graceful_shutdown(cancel.cancelled_owned()).await;
    });
    format!("http://{addr}")
}

/// Headers that belong to one connection, not to the message.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in
        ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"]
    {
        headers.remove(name);
    }
    headers.remove("host");
    headers.remove("content-length");
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let round_robin = |backends: &[String], next: &AtomicUsize| {
        backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()].clone()
    };
    let named = parts.headers.get(super::WRITER_HEADER).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let backend = if parts.method == Method::GET || parts.method == Method::HEAD {
        round_robin(&proxy.queries, &proxy.next_query)
    } else if let Some(n) = named {
        proxy.commands[n % proxy.commands.len()].clone()
    } else {
        round_robin(&proxy.commands, &proxy.next_command)
    };
    let target = format!("{backend}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, format!("proxy: read the body: {error}")).into_response()
        }
    };
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(super::WRITER_HEADER);
    let answer = proxy.client.request(parts.method, &target).headers(headers).body(body).send().await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => return (StatusCode::BAD_GATEWAY, format!("proxy: {target}: {error}")).into_response(),
    };
    let status = answer.status();
    let mut headers = answer.headers().clone();
    strip_hop_by_hop(&mut headers);
    match answer.bytes().await {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(error) => (StatusCode::BAD_GATEWAY, format!("proxy: {target}: {error}")).into_response(),
    }
}

// ---- checks ----

/// Every message of `topic` on `brokers`, from the beginning, as an external
/// consumer sees it (`kcat -C -e -J`).
pub async fn read_messages(brokers: &str, topic: &str) -> Vec<Message> {
    let command = tokio::process::Command::new("kcat")
        .args(["-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-J", "-q"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), command)
        .await
        .expect("kcat reads the topic within 60 s")
        .expect("run kcat");
    assert!(
        output.status.success(),
        "kcat failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("kcat prints UTF-8")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_message)
        .collect()
}

/// What is wrong with `messages` by the shop's AsyncAPI document
/// (`shop contract`): each must be one of its messages (by `ce_type` and
/// `ce_schemaversion`), with that message's headers, key and payload
/// schema. Empty: all of them are.
pub fn contract_findings(messages: &[Message]) -> Vec<String> {
    static VALIDATOR: std::sync::LazyLock<MessageValidator> = std::sync::LazyLock::new(|| {
        let document = shop::contract::asyncapi(&shop::Settings::default());
        MessageValidator::new(&document).expect("the shop's AsyncAPI document compiles")
    });
    messages
        .iter()
        .filter_map(|message| {
            let place = message.place();
            let checked = VALIDATOR.validate(&KafkaMessage {
                place: &place,
                key: message.key.as_deref(),
                headers: &message.headers,
                payload: message.payload.as_deref(),
            });
            checked.err()
        })
        .flatten()
        .collect()
}

fn parse_message(line: &str) -> Message {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("kcat printed {line:?}: {e}"));
    let text = |field: &str| value[field].as_str().map(str::to_owned);
    let number = |field: &str| value[field].as_u64().unwrap_or_else(|| panic!("no {field} in {line}"));
    let headers = match &value["headers"] {
        Value::Array(flat) => flat
            .chunks(2)
            .map(|pair| {
                let name = pair[0].as_str().unwrap_or_else(|| panic!("a header name in {line}")).to_owned();
                let value = pair.get(1).and_then(Value::as_str).unwrap_or_default().to_owned();
                (name, value)
            })
            .collect(),
        _ => Vec::new(),
    };
    Message {
        partition: u32::try_from(number("partition")).expect("a partition"),
        offset: number("offset"),
        key: text("key"),
        headers,
        payload: text("payload"),
    }
}

/// Checks one message's CloudEvents binary-mode headers (and its time
/// against the stored event at its position, if any); returns what the
/// library's topic check compares with the store.
fn check_message(message: &Message, events: &BTreeMap<Position, &EventRecord>) -> TopicMessage {
    let at = message.place();
    let header = |name: &str| -> &str {
        message
            .header(name)
            .unwrap_or_else(|| panic!("{at}: no single {name} header in {:?}", message.headers))
    };
    let number = |name: &str| -> u64 {
        header(name).parse().unwrap_or_else(|e| panic!("{at}: {name} {:?}: {e}", header(name)))
    };
    assert_eq!(header("ce_specversion"), "1.0", "{at}");
    let id = header("ce_id");
    let event_id =
        uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("{at}: ce_id {id:?} is not a UUID: {e}"));
    assert!(!header("ce_source").is_empty(), "{at}: empty ce_source");
    assert!(!header("ce_type").is_empty(), "{at}: empty ce_type");
    let time = header("ce_time");
    let time =
        chrono::DateTime::parse_from_rfc3339(time).unwrap_or_else(|e| panic!("{at}: ce_time {time:?}: {e}"));
    assert_eq!(header("content-type"), "application/json", "{at}");
    let key = message.key.as_deref().unwrap_or_else(|| panic!("{at}: no key"));
    assert_eq!(header("ce_subject"), key, "{at}: ce_subject is the key");
    let position = number("ce_position");
    if let Some(event) = events.get(&position) {
        assert_eq!(time, event.recorded_at, "{at}: ce_time is when the event was recorded");
    }
    TopicMessage {
        partition: message.partition,
        offset: message.offset,
        key: message.key.clone(),
        position,
        stream_version: number("ce_streamversion"),
        event_id,
        event_type: header("ce_type").to_owned(),
        schema_version: u32::try_from(number("ce_schemaversion")).expect("a schema version"),
        payload: message.payload.clone().unwrap_or_default(),
    }
}

/// The topic against the store: see [`Deployment::assert_topic_carries_the_store`].
/// Each message's headers are checked here; what it carries against the
/// store, by `shop::check::compare_topic`.
fn check_topic(messages: &[Message], events: &[EventRecord]) -> TopicReport {
    let by_position: BTreeMap<Position, &EventRecord> = events.iter().map(|e| (e.position, e)).collect();
    let carried: Vec<TopicMessage> = messages.iter().map(|m| check_message(m, &by_position)).collect();
    let head = events.last().map_or(0, |e| e.position);
    let findings = shop::check::compare_topic(events, head, &carried, PARTITIONS);
    assert!(
        findings.unknown.is_empty(),
        "messages that carry no event of the store as stored:\n{}",
        findings.unknown.join("\n")
    );
    assert!(
        findings.order_violations.is_empty(),
        "events out of position order in their partition (a consumer would skip them):\n{}",
        findings.order_violations.join("\n")
    );
    assert!(findings.missing.is_empty(), "events not on the topic:\n{}", findings.missing.join("\n"));
    let streams: BTreeSet<&str> = events.iter().map(|e| e.stream_id.as_str()).collect();
    TopicReport {
        messages: messages.len(),
        duplicates: findings.duplicates,
        events: findings.distinct,
        streams: streams.len(),
    }
}

async fn postgres_documents(pool: &sqlx::PgPool) -> Documents {
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT view, partition, clustering, body::text FROM documents WHERE view <> $1 ORDER BY 1, 2, 3",
    )
    .bind(GENERATIONS_VIEW)
    .fetch_all(pool)
    .await
    .expect("read the views");
    rows.into_iter()
        .map(|(view, partition, clustering, body)| {
            ((view, partition, clustering), serde_json::from_str(&body).expect("a JSON body"))
        })
        .collect()
}

async fn cassandra_documents(store: &CassandraReadStore) -> Documents {
    let mut documents = Documents::new();
    for spec in shop::app::shop_view_specs().into_iter().filter(|spec| spec.name != GENERATIONS_VIEW) {
        let query = format!("SELECT p, c, body FROM {}.v_{}", store.keyspace(), spec.name);
        let mut rows = store
            .session()
            .query_iter(query, ())
            .await
            .expect("read a view")
            .rows_stream::<(String, String, Option<String>)>()
            .expect("rows of a view");
        while let Some(row) = futures::StreamExt::next(&mut rows).await {
            let (partition, clustering, body) = row.expect("a row");
            if let Some(body) = body {
                documents.insert(
                    (spec.name.clone(), partition, clustering),
                    serde_json::from_str(&body).expect("a JSON body"),
                );
            }
        }
    }
    documents
}

// ---- load ----

/// Products the load buys: plenty of A, B and D; C runs out, so later orders
/// are rejected and their reservations released.
pub async fn seed_catalog(app: &TestApp) {
    app.register("A", "Apple", 120, 1_000_000).await;
    app.register("B", "Banana", 45, 1_000_000).await;
    app.register("C", "Cherry", 990, 40).await;
    app.register("D", "Date", 310, 1_000_000).await;
}

/// Carts that grow for as long as a load runs (each client adds to one of
/// two every round), so their versions move all along; a new pair every 100
/// rounds, so no line reaches a cart's limit of 1,000 units.
fn long_lived_cart(client: usize, round: usize) -> String {
    format!("long-lived-{}-{}", client % 2, round / 100)
}

/// Concurrent clients filling carts and checking them out until stopped.
pub struct Load {
    stop: CancellationToken,
    clients: Vec<JoinHandle<()>>,
    /// Carts created so far, oldest first.
    pub carts: Arc<Mutex<Vec<String>>>,
    /// The long-lived carts used so far, oldest first.
    pub long_lived: Arc<Mutex<Vec<String>>>,
    /// Orders placed so far, oldest first.
    pub orders: Arc<Mutex<Vec<String>>>,
    /// Commands acknowledged.
    pub commands: Arc<AtomicUsize>,
}

impl Load {
    /// Starts `clients` clients of `app` (through the proxy). Every command
    /// must succeed: the command process is never the one killed.
    pub fn start(app: &TestApp, clients: usize) -> Self {
        let load = Self {
            stop: CancellationToken::new(),
            clients: Vec::new(),
            carts: Arc::default(),
            long_lived: Arc::default(),
            orders: Arc::default(),
            commands: Arc::default(),
        };
        let clients = (0..clients)
            .map(|client| {
                let app = app.detached();
                let stop = load.stop.clone();
                let carts = load.carts.clone();
                let long_lived = load.long_lived.clone();
                let orders = load.orders.clone();
                let commands = load.commands.clone();
                tokio::spawn(async move {
                    let skus = ["A", "B", "C", "D"];
                    let mut n = 0usize;
                    while !stop.is_cancelled() {
                        let cart = format!("load-{client}-{n}");
                        carts.lock().expect("carts").push(cart.clone());
                        for line in 0..4 {
                            app.add(&cart, skus[(client + n + line) % 4], 1 + ((n + line) % 3) as i64).await;
                            commands.fetch_add(1, Ordering::Relaxed);
                        }
                        if n.is_multiple_of(3) {
                            let sku = skus[(client + n) % 4];
                            let removed = app
                                .send(Method::DELETE, &format!("/api/carts/{cart}/items/{sku}"), None, None)
                                .await;
                            assert_eq!(
                                removed.status.as_u16(),
                                200,
                                "remove {sku} from {cart}: {}",
                                removed.body
                            );
                            commands.fetch_add(1, Ordering::Relaxed);
                        }
                        let long = long_lived_cart(client, n);
                        {
                            let mut used = long_lived.lock().expect("long-lived carts");
                            if !used.contains(&long) {
                                used.push(long.clone());
                            }
                        }
                        app.add(&long, "B", 1).await;
                        commands.fetch_add(1, Ordering::Relaxed);
                        let placed = app.check_out(&cart, &format!("customer-{client}")).await;
                        commands.fetch_add(1, Ordering::Relaxed);
                        let order = placed.body["order_id"].as_str().expect("an order id").to_owned();
                        orders.lock().expect("orders").push(order);
                        n += 1;
                    }
                })
            })
            .collect();
        Self { clients, ..load }
    }

    /// Stops the clients and waits for them (a client's failure fails the test).
    pub async fn finish(self) -> Vec<String> {
        self.stop.cancel();
        for client in self.clients {
            client.await.expect("a load client failed");
        }
        let orders = self.orders.lock().expect("orders").clone();
        orders
    }
}

/// Waits until every order is confirmed or rejected (the saga is done with it).
pub async fn wait_orders_settled(app: &TestApp, orders: &[String]) {
    for order in orders {
        app.eventually(&format!("/api/orders/{order}"), |o| {
            o["status"] == "confirmed" || o["status"] == "rejected"
        })
        .await;
    }
}

/// Polls carts and orders of a load while it runs (the long-lived carts, the
/// first and the newest orders, the newest carts), and fails if a view row's
/// `version` ever goes down.
pub struct VersionWatch {
    stop: CancellationToken,
    task: JoinHandle<(usize, usize)>,
}

impl VersionWatch {
    pub fn start(app: &TestApp, load: &Load) -> Self {
        let stop = CancellationToken::new();
        let app = app.detached();
        let carts = load.carts.clone();
        let long_lived = load.long_lived.clone();
        let orders = load.orders.clone();
        let cancel = stop.clone();
        let task = tokio::spawn(async move {
            let mut seen: HashMap<String, u64> = HashMap::new();
            let (mut observations, mut increases) = (0, 0);
            while !cancel.is_cancelled() {
                let first_orders: Vec<String> =
                    orders.lock().expect("orders").iter().take(4).cloned().collect();
                let carts = newest(&long_lived, 2).into_iter().chain(newest(&carts, 2));
                let orders = first_orders.into_iter().chain(newest(&orders, 4));
                let paths: Vec<String> = carts
                    .map(|cart| format!("/api/carts/{cart}"))
                    .chain(orders.map(|order| format!("/api/orders/{order}")))
                    .collect();
                for path in paths {
                    let answer = app.get(&path).await;
                    if answer.status.as_u16() == 404 {
                        continue;
                    }
                    assert_eq!(answer.status.as_u16(), 200, "GET {path}: {}", answer.body);
                    let version = answer.body["version"]
                        .as_u64()
                        .unwrap_or_else(|| panic!("GET {path}: no `version` field: {}", answer.body));
                    observations += 1;
                    if let Some(before) = seen.insert(path.clone(), version) {
                        assert!(version >= before, "{path}: version went back from {before} to {version}");
                        if version > before {
                            increases += 1;
                        }
                    }
                }
            }
            (observations, increases)
        });
        Self { stop, task }
    }

    /// Stops polling; returns (observations, increases seen).
    pub async fn finish(self) -> (usize, usize) {
        self.stop.cancel();
        self.task.await.expect("the version watch failed")
    }
}

fn newest(list: &Mutex<Vec<String>>, n: usize) -> Vec<String> {
    let list = list.lock().expect("a list");
    list[list.len().saturating_sub(n)..].to_vec()
}
