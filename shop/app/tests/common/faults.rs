//! The fault suite's scenarios: a distributed deployment under the load
//! driver ([`super::history`]), one kind of fault injected again and again,
//! then `shop check` over everything that was stored and everything the
//! clients were told.
//!
//! A scenario passes when the checker finds nothing: no acknowledged event
//! lost, none applied twice, no refused command present, every stream's
//! history linearizable, the topic carrying the store, every view equal to a
//! rebuild. The negative control runs the write DB with
//! `synchronous_commit = off` and must fail the check: it shows the checker
//! sees a loss when there is one. The mutation control runs the projectors
//! with the test-only switch that turns off their skip of positions at or
//! below the checkpoint, and sets the relay's checkpoint back (duplicates on
//! the topic): it must fail the check too, with events applied twice.
//!
//! Faults end only what the suite started: the shop's processes by their
//! pids, the servers through `scripts/services/NAME kill|pause|resume`,
//! which signal the pid their own `start` recorded.

#![allow(clippy::too_many_lines, reason = "a scenario's driver reads as one run, deployment to report")]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use super::distributed::{seed_catalog, services, Deployment, ReadDb, Services};
use super::history::{Driver, Shape, Tally, Target};

mod cassandra_ring;
mod kafka_cluster;
mod postgres_standby;

/// The processes of a fault scenario: every role in a process of its own,
/// two projectors (so a paused one loses its partitions to the other).
pub const LAYOUT: &[(&str, &[&str])] = &[
    ("command", &["command"]),
    ("relay", &["relay"]),
    ("projector-1", &["projector"]),
    ("projector-2", &["projector"]),
    ("saga", &["saga"]),
    ("query", &["query"]),
];

/// [`LAYOUT`] with a standby relay and a standby saga, each waiting for the
/// lease its twin holds.
pub const LAYOUT_WITH_STANDBYS: &[(&str, &[&str])] = &[
    ("command", &["command"]),
    ("relay", &["relay"]),
    ("relay-2", &["relay"]),
    ("projector-1", &["projector"]),
    ("projector-2", &["projector"]),
    ("saga", &["saga"]),
    ("saga-2", &["saga"]),
    ("query", &["query"]),
];

/// How long a scenario may take to make progress again after a fault.
const RECOVERY: Duration = Duration::from_secs(90);

/// One kind of fault.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// SIGKILL to a process of [`LAYOUT`], then start it again.
    Kill(&'static str),
    /// SIGSTOP to a process of [`LAYOUT`] for a while, then SIGCONT.
    Pause(&'static str, Duration),
    /// SIGSTOP for a while to whichever of a leased role's two processes
    /// (`relay`/`relay-2`, `saga`/`saga-2`) holds the lease, then SIGCONT;
    /// the other must take the lease over while the leader is frozen.
    PauseLeader(&'static str, Duration),
    /// PostgreSQL's immediate shutdown (no checkpoint), then start.
    PostgresRestart,
    /// SIGKILL to the Kafka broker, then start.
    KafkaKill,
    /// SIGSTOP to the Kafka broker for a while, then SIGCONT.
    KafkaPause(Duration),
    /// SIGKILL to the Cassandra node, then start.
    CassandraKill,
    /// SIGKILL to one node of the Cassandra ring; while it is dead the
    /// projections and queries must go on at quorum; then start it:
    /// [`cassandra_ring`].
    CassandraNodeKill,
    /// SIGKILL to the Kafka broker leading most of the topic's partitions
    /// (its followers frozen for a while before, if given), then start it
    /// again once the lag is back under 1 s: [`kafka_cluster`].
    KafkaLeaderKill { freeze_followers: Option<Duration> },
    /// SIGKILL to the PostgreSQL primary and all its processes, its
    /// standby promoted, then the old primary built again as the new one's
    /// standby: [`postgres_standby`].
    PostgresPrimaryKill,
    /// A transaction held open on the write DB while the load commits.
    LongTransaction(Duration),
    /// Nothing but the load for a while (with impatient clients: timeouts
    /// are the fault).
    Nothing(Duration),
    /// SIGKILL to the relay, its checkpoint set back by this many positions
    /// (a checkpoint save lost), then start it: it publishes again what the
    /// topic already carries, duplicates the projectors must skip.
    RelayRewound(u64),
}

/// A scenario of the suite.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub fault: Fault,
    /// How many times the fault is injected.
    pub rounds: u32,
    pub read_db: ReadDb,
    /// The negative control: the write DB acknowledges before it is durable.
    pub unsafe_commits: bool,
    /// The hot-cart writers' timeout, when they are impatient
    /// ([`Shape::impatient_writers`]); the other clients keep the load
    /// driver's default (2 s).
    pub client_timeout: Option<Duration>,
    /// [`LAYOUT_WITH_STANDBYS`] rather than [`LAYOUT`].
    pub standbys: bool,
    /// The mutation control: the projectors run with
    /// `PARALLAX_TEST_MUTATION_NO_SKIP` (they apply duplicates again).
    pub mutation_no_skip: bool,
    /// The servers the deployment runs on.
    pub engines: Engines,
}

/// The servers a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engines {
    /// The single nodes of `scripts/services/NAME start` (the environment's
    /// `PARALLAX_TEST_*`).
    Single,
    /// Kafka as three brokers (`scripts/services/kafka start --brokers 3`),
    /// the topic replicated three times with two in sync.
    KafkaCluster,
    /// [`Engines::KafkaCluster`] as the negative control runs it: the relay
    /// publishes with `acks=1`, the topic takes `min.insync.replicas=1` and
    /// unclean leader elections ([`kafka_cluster::make_unsafe`]).
    KafkaClusterLeaderAcks,
    /// The event store on a PostgreSQL primary with a synchronous standby
    /// (`scripts/services/postgres start --standby`), reached through a
    /// host list; the views on the single node.
    PostgresStandby,
    /// The views on a ring of three Cassandra nodes
    /// (`scripts/services/cassandra start --nodes 3`), three replicas,
    /// read and written at `LOCAL_QUORUM`.
    CassandraRing,
}

impl Engines {
    /// The services of a deployment on these engines.
    pub async fn services(self) -> Services {
        match self {
            Engines::Single => services().await,
            Engines::KafkaCluster | Engines::KafkaClusterLeaderAcks => kafka_cluster::services().await,
            Engines::PostgresStandby => postgres_standby::services().await,
            Engines::CassandraRing => cassandra_ring::services().await,
        }
    }
}

impl Scenario {
    pub const fn new(name: &'static str, fault: Fault, rounds: u32) -> Self {
        Self {
            name,
            fault,
            rounds,
            read_db: ReadDb::Postgres,
            unsafe_commits: false,
            client_timeout: None,
            standbys: matches!(fault, Fault::PauseLeader(..)),
            mutation_no_skip: false,
            engines: Engines::Single,
        }
    }

    /// The scenario on other servers than the single nodes.
    pub const fn on(mut self, engines: Engines) -> Self {
        self.engines = engines;
        self
    }

    /// A control that must fail the check: the negative or the mutation one.
    pub const fn must_fail(&self) -> bool {
        self.unsafe_commits
            || self.mutation_no_skip
            || matches!(self.engines, Engines::KafkaClusterLeaderAcks)
    }

    /// Hot-cart writers that give up after `timeout`: many outcomes unknown.
    pub const fn impatient(mut self, timeout: Duration) -> Self {
        self.client_timeout = Some(timeout);
        self
    }

    pub const fn on_cassandra(mut self) -> Self {
        self.read_db = ReadDb::Cassandra;
        self
    }

    pub const fn negative_control(mut self) -> Self {
        self.unsafe_commits = true;
        self
    }
}

/// The scenarios `scripts/test` runs (a few minutes in all).
pub const QUICK: &[Scenario] = &[
    Scenario::new("SIGKILL projector", Fault::Kill("projector-1"), 3),
    Scenario::new("SIGKILL command", Fault::Kill("command"), 2),
    Scenario::new("SIGSTOP relay 4 s", Fault::Pause("relay", Duration::from_secs(4)), 2),
    Scenario::new("PostgreSQL immediate restart", Fault::PostgresRestart, 1),
];

/// Every scenario (`scripts/faults`).
pub const FULL: &[Scenario] = &[
    Scenario::new("SIGKILL command", Fault::Kill("command"), 3),
    Scenario::new("SIGKILL relay", Fault::Kill("relay"), 3),
    Scenario::new("SIGKILL projector", Fault::Kill("projector-1"), 3),
    Scenario::new("SIGKILL saga", Fault::Kill("saga"), 3),
    Scenario::new("SIGKILL query", Fault::Kill("query"), 3),
    Scenario::new("SIGSTOP command 5 s", Fault::Pause("command", Duration::from_secs(5)), 2),
    Scenario::new("SIGSTOP relay 5 s", Fault::Pause("relay", Duration::from_secs(5)), 2),
    // Longer than the consumer's session timeout (6 s): its partitions move
    // to the other projector, and the paused one wakes up with a stale batch.
    Scenario::new("SIGSTOP projector 10 s", Fault::Pause("projector-1", Duration::from_secs(10)), 2),
    Scenario::new("SIGSTOP saga 5 s", Fault::Pause("saga", Duration::from_secs(5)), 2),
    // Longer than the lease's expiry (5 s): the standby takes over while the
    // leader is frozen, and the leader wakes up fenced.
    Scenario::new("SIGSTOP leading relay 60 s", Fault::PauseLeader("relay", Duration::from_secs(60)), 1),
    Scenario::new("SIGSTOP leading saga 60 s", Fault::PauseLeader("saga", Duration::from_secs(60)), 1),
    Scenario::new("SIGSTOP query 5 s", Fault::Pause("query", Duration::from_secs(5)), 2),
    Scenario::new("PostgreSQL immediate restart", Fault::PostgresRestart, 3),
    Scenario::new("SIGKILL Kafka", Fault::KafkaKill, 2),
    Scenario::new("SIGSTOP Kafka 5 s", Fault::KafkaPause(Duration::from_secs(5)), 2),
    // Longer than the producer's message timeout (30 s): the relay's sends
    // fail and it must publish again from its checkpoint.
    Scenario::new("SIGSTOP Kafka 35 s", Fault::KafkaPause(Duration::from_secs(35)), 1),
    Scenario::new("SIGKILL Cassandra", Fault::CassandraKill, 2).on_cassandra(),
    Scenario::new("SIGKILL projector, Cassandra", Fault::Kill("projector-1"), 3).on_cassandra(),
    // The hot-cart writers give up after 40 ms and never send again (on
    // this machine, loaded, 40 ms is often below what any command takes, so
    // they may see no answer at all); the checkout clients are patient, and
    // must keep being served meanwhile.
    Scenario::new("client timeouts of 40 ms on hot carts", Fault::Nothing(Duration::from_secs(10)), 1)
        .impatient(Duration::from_millis(40)),
    Scenario::new("PostgreSQL transaction open 20 s", Fault::LongTransaction(Duration::from_secs(20)), 1),
    // The relay publishes 200 positions again: the projectors must skip
    // them (the mutation control below, which does not, must fail).
    Scenario::new("SIGKILL relay, checkpoint set back 200 positions", Fault::RelayRewound(200), 2),
    NEGATIVE_CONTROL,
    MUTATION_CONTROL,
];

/// The faults only clusters have: each scenario runs on a cluster of one
/// engine ([`Engines`]), started by its `scripts/services/NAME` cluster mode
/// (`scripts/faults cluster`).
pub const CLUSTER: &[Scenario] = &[
    KAFKA_LEADER_KILL,
    KAFKA_LEADER_ACKS_CONTROL,
    KAFKA_FROZEN_FOLLOWERS,
    POSTGRES_PRIMARY_KILL,
    CASSANDRA_NODE_KILL,
];

/// The cluster scenarios `cargo test` (and so `scripts/test` and CI) runs:
/// `faults_cluster.rs`. The others run by hand (`scripts/faults cluster`).
pub const CLUSTER_CI: &[Scenario] = &[KAFKA_LEADER_KILL];

/// The Kafka broker leading most partitions killed under load: commands
/// keep being acknowledged, the relay and projectors follow the new
/// leaders, nothing lost or applied twice; reports how long the lag took to
/// be under 1 s again.
pub const KAFKA_LEADER_KILL: Scenario = Scenario::new(
    "SIGKILL Kafka partition leader, 3 brokers",
    Fault::KafkaLeaderKill { freeze_followers: None },
    2,
)
.on(Engines::KafkaCluster);

/// The leader's followers frozen for 45 s (fenced after 9 s: the leader
/// leads every partition alone), then the leader killed and the followers
/// thawed: with `acks=all` and two replicas in sync, the leader
/// acknowledged nothing alone, so nothing acknowledged dies with it.
pub const KAFKA_FROZEN_FOLLOWERS: Scenario = Scenario::new(
    "SIGSTOP Kafka followers 45 s, SIGKILL their leader, 3 brokers",
    Fault::KafkaLeaderKill { freeze_followers: Some(Duration::from_secs(45)) },
    1,
)
.on(Engines::KafkaCluster);

/// The PostgreSQL primary killed under load and its synchronous standby
/// promoted: no acknowledged command lost, the relay goes on from its
/// checkpoint on the new primary; reports how long until commands are
/// accepted again.
pub const POSTGRES_PRIMARY_KILL: Scenario =
    Scenario::new("SIGKILL PostgreSQL primary, standby promoted", Fault::PostgresPrimaryKill, 2)
        .on(Engines::PostgresStandby);

/// One node of a Cassandra ring of three killed under load, and started
/// again after 20 s at least: projections and queries go on at quorum,
/// views equal the rebuild; reports how long the slowest projection took
/// to pass the head the event store had at the kill.
pub const CASSANDRA_NODE_KILL: Scenario =
    Scenario::new("SIGKILL one Cassandra node of 3, restart", Fault::CassandraNodeKill, 2)
        .on_cassandra()
        .on(Engines::CassandraRing);

/// The negative control of the cluster: the same kill as
/// [`KAFKA_FROZEN_FOLLOWERS`] with `acks=1`, `min.insync.replicas=1` and
/// unclean leader elections: the leader acknowledges events only it holds,
/// dies with them, and the check must say so.
pub const KAFKA_LEADER_ACKS_CONTROL: Scenario = Scenario::new(
    "negative control: acks=1, min.insync.replicas=1, unclean election; SIGSTOP Kafka followers 45 s, SIGKILL their leader",
    Fault::KafkaLeaderKill { freeze_followers: Some(Duration::from_secs(45)) },
    1,
)
.on(Engines::KafkaClusterLeaderAcks);

/// PostgreSQL with `synchronous_commit = off`, restarted at once: commits
/// acknowledged but not yet on disk are gone, and the check must say so.
pub const NEGATIVE_CONTROL: Scenario = Scenario::new(
    "negative control: synchronous_commit=off, PostgreSQL immediate restart",
    Fault::PostgresRestart,
    2,
)
.negative_control();

/// The mutation control: projectors that do not skip positions at or below
/// their checkpoint (a test-only switch of `parallax-runtime`'s projector),
/// and a relay that publishes again what the topic carries: the duplicates
/// are applied twice, and the check must say so.
pub const MUTATION_CONTROL: Scenario = Scenario {
    mutation_no_skip: true,
    ..Scenario::new(
        "mutation control: projectors without the skip of absorbed positions, relay checkpoint set back",
        Fault::RelayRewound(200),
        2,
    )
};

/// A time a fault's injection measured, shown in the scenario's row as
/// "(what in 1.2 s)".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Measured {
    pub took: Duration,
    pub what: &'static str,
}

/// What a scenario did and what the checker found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    pub faults: u32,
    pub tally: Tally,
    /// `shop check --json`.
    pub report: Value,
    pub elapsed: Duration,
    /// A time the fault's injection measured (the longest over its rounds).
    pub measured: Option<Measured>,
}

impl Outcome {
    pub fn count(&self, field: &str) -> u64 {
        self.report[field].as_u64().unwrap_or_else(|| panic!("no {field} in the report: {}", self.report))
    }

    /// Events applied twice, by any of the checker's measures.
    pub fn duplicated(&self) -> u64 {
        self.count("duplicated")
    }

    pub fn passed(&self) -> bool {
        self.report["ok"].as_bool() == Some(true)
    }

    /// A line of the reliability table.
    pub fn row(&self) -> String {
        format!(
            "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} s |",
            self.scenario.name,
            self.measured
                .map(|m| format!(" ({} in {:.1} s)", m.what, m.took.as_secs_f64()))
                .unwrap_or_default(),
            self.faults,
            self.tally.operations(),
            self.tally.ok,
            self.tally.info,
            self.count("events"),
            self.count("lost"),
            self.duplicated(),
            self.count("view_differences"),
            if self.passed() { "pass" } else { "**fail**" },
            self.elapsed.as_secs_f64(),
        )
    }

    /// The reads, retries and the model, as the checker counted them.
    pub fn reads(&self) -> String {
        format!(
            "-- {}: reads {} (answered with a token {}; checked {}); read-your-writes violations {}, monotonic \
             read violations {}, reads unlike the events {}; retried keys {}, applied twice in the store {}; \
             documents unlike the model {}",
            self.scenario.name,
            self.tally.reads,
            self.tally.token_reads,
            self.report["reads"],
            self.count("read_your_writes_violations"),
            self.count("monotonic_read_violations"),
            self.count("reads_unlike_model"),
            self.count("retried_keys"),
            self.count("applied_twice_in_store"),
            self.count("model_differences"),
        )
    }

    pub const HEADER: &'static str = "| scenario | faults | operations | acknowledged | unknown | events | lost | applied twice | views ≠ rebuild | check | time |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|";
}

/// Prints the table of `outcomes`, writes it into `PARALLAX_FAULTS_DOCS`
/// (when set) between that file's `<!-- {markers}:begin -->` and
/// `<!-- {markers}:end -->` lines, and fails the test if a scenario had the
/// wrong verdict (a control that passed, any other that failed).
pub fn report(outcomes: &[Outcome], markers: &str) {
    let rows: Vec<String> = outcomes.iter().map(Outcome::row).collect();
    let table = format!("{}\n{}\n", Outcome::HEADER, rows.join("\n"));
    println!("\n{table}");
    if let Ok(path) = std::env::var("PARALLAX_FAULTS_DOCS") {
        write_table(&path, markers, &table);
    }
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|o| o.passed() == o.scenario.must_fail())
        .map(|o| format!("{}\n  {}", o.row(), o.report["details"]))
        .collect();
    assert!(wrong.is_empty(), "scenarios with the wrong verdict:\n{}", wrong.join("\n"));
}

/// Replaces what stands between the `markers` lines of `path` with `table`.
fn write_table(path: &str, markers: &str, table: &str) {
    let (begin, end) = (format!("<!-- {markers}:begin -->"), format!("<!-- {markers}:end -->"));
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let (Some(from), Some(to)) = (text.find(&begin), text.find(&end)) else {
        panic!("{path} has no {begin} … {end} markers");
    };
    let machine = format!(
        "Measured {} on {} cores.\n\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let updated = format!("{}{begin}\n{machine}{table}{}", &text[..from], &text[to..]);
    std::fs::write(path, updated).unwrap_or_else(|e| panic!("write {path}: {e}"));
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services").join(name)
}

/// `scripts/services/<service> <verb>`; fails the scenario if the script does.
async fn service(name: &str, verb: &str) {
    service_with(name, &[verb]).await;
}

/// `scripts/services/<service> <args…>` (a cluster's verbs take options);
/// fails the scenario if the script does. Returns what it printed.
async fn service_with(name: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new(script(name))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run scripts/services/{name} {args:?}: {e}"));
    assert!(
        output.status.success(),
        "scripts/services/{name} {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A cluster of one engine, run by its service script's cluster mode:
/// `scripts/services/NAME VERB SIZE_OPTION SIZE [--node I]`.
#[derive(Debug, Clone, Copy)]
struct Cluster {
    service: &'static str,
    /// The option naming the cluster's size: `--brokers`, `--nodes`.
    size_option: &'static str,
    size: u32,
    /// The variable naming the cluster's addresses, when not the script's.
    addresses_env: &'static str,
    /// The addresses of the script's nodes.
    script_addresses: &'static str,
}

impl Cluster {
    /// The cluster's addresses, comma-separated: `addresses_env`, else the
    /// script's nodes.
    fn addresses(self) -> String {
        std::env::var(self.addresses_env)
            .ok()
            .filter(|addresses| !addresses.is_empty())
            .unwrap_or_else(|| self.script_addresses.to_owned())
    }

    /// `verb` on the whole cluster, or on its node `node`; fails the
    /// scenario if the script does.
    async fn run(self, verb: &str, node: Option<u32>) {
        let (size, node) = (self.size.to_string(), node.map(|node| node.to_string()));
        let mut args = vec![verb, self.size_option, &size];
        if let Some(node) = &node {
            args.extend(["--node", node]);
        }
        service_with(self.service, &args).await;
    }
}

/// Runs one scenario from a fresh deployment to the checker's report.
pub async fn run(scenario: Scenario) -> Outcome {
    let started = Instant::now();
    eprintln!("\n== fault scenario: {}", scenario.name);
    let layout = if scenario.standbys { LAYOUT_WITH_STANDBYS } else { LAYOUT };
    let services = scenario.engines.services().await;
    let mut deployment = Deployment::start_on(layout, scenario.read_db, None, services).await;
    seed_catalog(&deployment.app).await;
    if scenario.unsafe_commits {
        // Both databases: a synchronous commit to the read DB would flush
        // the write DB's pending commits with it (the server has one WAL).
        let mut admin = PgConnection::connect(&deployment.services.postgres).await.expect("connect");
        for url in [&deployment.write_url, &deployment.read_url] {
            let database = url.rsplit('/').next().and_then(|d| d.split('?').next()).expect("a database");
            // The name is the harness's own: hex digits and underscores.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE \"{database}\" SET synchronous_commit = off"
            )))
            .execute(&mut admin)
            .await
            .expect("synchronous_commit = off");
        }
        let _ = admin.close().await;
        // New connections take the setting.
        for name in ["command", "relay", "projector-1", "projector-2", "saga"] {
            deployment.kill(name);
            deployment.restart(name).await;
        }
    }
    if scenario.engines == Engines::KafkaClusterLeaderAcks {
        kafka_cluster::make_unsafe(&mut deployment).await;
    }
    if scenario.mutation_no_skip {
        deployment.extra_env.push(("PARALLAX_TEST_MUTATION_NO_SKIP".into(), "1".into()));
        for name in ["projector-1", "projector-2"] {
            deployment.kill(name);
            deployment.restart(name).await;
        }
    }

    let target = Target::new(deployment.url("command"));
    target.set_queries(deployment.url("query"));
    let history = deployment.folder().join("history.jsonl");
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let shape = Shape { impatient_writers: scenario.client_timeout, ..Shape::default() };
    let driver = Driver::start(target.clone(), &shape, &run_id, &history);
    assert!(
        driver.wait_acknowledged(200, RECOVERY).await,
        "the load never got going: {:?}\n{}",
        driver.tally(),
        deployment.tail("command", 30)
    );

    let mut faults = 0;
    let mut measured: Option<Measured> = None;
    for round in 0..scenario.rounds {
        eprintln!("-- {} round {} ({:?})", scenario.name, round + 1, driver.tally());
        if let Some(this) = inject(&mut deployment, &target, scenario.fault).await {
            measured = measured.max(Some(this));
        }
        faults += 1;
        // The system must work again before the next fault.
        assert!(
            driver.wait_acknowledged(100, RECOVERY).await,
            "no progress within {RECOVERY:?} after {}: {:?}",
            scenario.name,
            driver.tally()
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (history, tally) = driver.finish().await;
    eprintln!("-- {}: load done ({tally:?}); checking", scenario.name);

    let path = history.to_str().expect("a UTF-8 path");
    let output = deployment.shop_output(&["check", "--history", path, "--json"]).await;
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "shop check printed no report ({e}; {}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let outcome = Outcome { scenario, faults, tally, report, elapsed: started.elapsed(), measured };
    eprintln!("{}", outcome.row());
    eprintln!("{}", outcome.reads());
    if scenario.client_timeout.is_none() {
        // Patient clients: read-your-writes was put to the test.
        assert!(outcome.tally.token_reads > 0, "{}: no read with a token was answered", scenario.name);
    }
    if !outcome.passed() {
        eprintln!("details: {}", outcome.report["details"]);
    }
    if outcome.passed() == scenario.must_fail() {
        // Keep the deployment's logs and the history for a look.
        let kept = std::env::temp_dir().join(format!("parallax-faults-{run_id}"));
        let copied = std::process::Command::new("cp")
            .arg("-r")
            .arg(deployment.folder())
            .arg(&kept)
            .status()
            .is_ok_and(|status| status.success());
        if copied {
            eprintln!("logs and history kept in {}", kept.display());
        }
    }
    deployment.stop().await;
    outcome
}

/// Injects one fault; returns what it measured, if anything (for a frozen
/// leader, how long its standby took to take the lease over).
async fn inject(deployment: &mut Deployment, target: &Target, fault: Fault) -> Option<Measured> {
    if let Fault::PauseLeader(role, hold) = fault {
        let took = pause_leader(deployment, role, hold).await;
        return Some(Measured { took, what: "standby took over" });
    }
    match fault {
        Fault::Kill(name) => {
            deployment.kill(name);
            tokio::time::sleep(Duration::from_millis(500)).await;
            deployment.restart(name).await;
            if name == "command" {
                target.set(deployment.url("command"));
            }
            if name == "query" {
                target.set_queries(deployment.url("query"));
            }
        }
        Fault::Pause(name, hold) => {
            deployment.signal(name, Signal::SIGSTOP);
            tokio::time::sleep(hold).await;
            deployment.signal(name, Signal::SIGCONT);
        }
        Fault::PostgresRestart => {
            service("postgres", "kill").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            service("postgres", "start").await;
        }
        Fault::KafkaKill => {
            service("kafka", "kill").await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            service("kafka", "start").await;
        }
        Fault::KafkaPause(hold) => {
            service("kafka", "pause").await;
            tokio::time::sleep(hold).await;
            service("kafka", "resume").await;
        }
        Fault::CassandraKill => {
            service("cassandra", "kill").await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            service("cassandra", "start").await;
        }
        Fault::KafkaLeaderKill { freeze_followers } => {
            return kafka_cluster::kill_leader(deployment, freeze_followers).await;
        }
        Fault::PostgresPrimaryKill => return Some(postgres_standby::kill_primary(deployment).await),
        Fault::CassandraNodeKill => return Some(cassandra_ring::kill_node(deployment).await),
        Fault::Nothing(hold) => tokio::time::sleep(hold).await,
        Fault::RelayRewound(back) => {
            deployment.kill("relay");
            let mut write =
                PgConnection::connect(&deployment.write_url).await.expect("connect to the write DB");
            let rewound =
                sqlx::query("UPDATE leases SET position = GREATEST(position - $1, 0) WHERE name = 'relay'")
                    .bind(i64::try_from(back).expect("a small number"))
                    .execute(&mut write)
                    .await
                    .expect("set the relay's checkpoint back");
            assert_eq!(rewound.rows_affected(), 1, "the relay's lease");
            let _ = write.close().await;
            deployment.restart("relay").await;
        }
        Fault::PauseLeader(..) => unreachable!("handled above"),
        Fault::LongTransaction(hold) => {
            let mut held =
                PgConnection::connect(&deployment.write_url).await.expect("connect to the write DB");
            sqlx::query("BEGIN").execute(&mut held).await.expect("BEGIN");
            // A transaction id: the event store's tail must wait for it.
            sqlx::query("SELECT pg_current_xact_id()").execute(&mut held).await.expect("take an xid");
            tokio::time::sleep(hold).await;
            sqlx::query("COMMIT").execute(&mut held).await.expect("COMMIT");
            let _ = held.close().await;
        }
    }
    None
}

/// What a leased role's process logs when it takes the lease.
fn active_line(role: &str) -> &'static str {
    match role {
        "relay" => "relay active",
        "saga" => "process manager active",
        other => panic!("{other} holds no lease"),
    }
}

/// The highest lease epoch a process has logged taking, if any.
fn epoch_taken(deployment: &Deployment, name: &str, role: &str) -> Option<u64> {
    deployment
        .log(name)
        .lines()
        .filter(|line| line.contains(active_line(role)))
        .filter_map(|line| line.split("epoch=").nth(1)?.split_whitespace().next()?.parse().ok())
        .max()
}

/// Freezes the leader of `role` for `hold`; the standby must take the lease
/// over before the leader thaws. Returns how long that took.
async fn pause_leader(deployment: &mut Deployment, role: &'static str, hold: Duration) -> Duration {
    let pair = match role {
        "relay" => ["relay", "relay-2"],
        "saga" => ["saga", "saga-2"],
        other => panic!("{other} holds no lease"),
    };
    let epochs = pair.map(|name| epoch_taken(deployment, name, role));
    let (leader, standby, held) = match epochs {
        [Some(a), b] if b.is_none_or(|b| a > b) => (pair[0], pair[1], a),
        [_, Some(b)] => (pair[1], pair[0], b),
        _ => panic!("neither {} nor {} holds the {role} lease", pair[0], pair[1]),
    };
    deployment.signal(leader, Signal::SIGSTOP);
    let frozen = Instant::now();
    let took = loop {
        if epoch_taken(deployment, standby, role).is_some_and(|epoch| epoch > held) {
            break frozen.elapsed();
        }
        if frozen.elapsed() >= hold {
            deployment.signal(leader, Signal::SIGCONT);
            panic!(
                "{standby} did not take the {role} lease over while {leader} was frozen for {hold:?}:\n{}",
                deployment.tail(standby, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("-- {standby} took the {role} lease over {took:?} after {leader} froze");
    tokio::time::sleep(hold.saturating_sub(frozen.elapsed())).await;
    deployment.signal(leader, Signal::SIGCONT);
    took
}
