//! Runs every scenario of the `bench` binary very briefly and checks that it
//! writes its Markdown report and its JSON. No timing is asserted: on a
//! debug build, with the other tests beside it, the figures mean nothing;
//! this only keeps the scenarios working. The HTTP scenarios start the shop
//! inside the bench process (`--in-process`), so no release binary is needed.
//!
//! The PostgreSQL, Kafka and Cassandra scenarios run against the servers of
//! `scripts/test` (`PARALLAX_TEST_POSTGRES_URL`, `PARALLAX_TEST_KAFKA_BROKERS`,
//! `PARALLAX_TEST_CASSANDRA_NODES`, which it exports); without them they are
//! skipped, saying so. They make databases, a topic and keyspaces of their
//! own and remove them. `commands-postgres`
//! builds its peer (`bench/peer-cqrs-es`, a debug build under
//! `target/peer-cqrs-es`) the first time; `scale-out` and `pipeline` start
//! `shop serve` processes, building the debug `shop` binary first (`cargo
//! build -p shop`, quick once the bench's own build made its dependencies).

use std::path::Path;
use std::process::Command;

/// Options that keep any search short and let no slow step end it.
const BRIEF: &[&str] = &[
    "--step-secs",
    "0.2",
    "--duration-secs",
    "0.2",
    "--min-concurrency",
    "2",
    "--max-concurrency",
    "4",
    "--concurrency",
    "8",
    "--p99-limit-ms",
    "60000",
];

fn run(scenario: &str, args: &[&str]) {
    run_reporting(scenario, scenario, args);
}

/// Runs `scenario`, whose report is named `report`.
fn run_reporting(scenario: &str, report: &str, args: &[&str]) {
    let results = tempfile::tempdir().expect("a results folder");
    let data = tempfile::tempdir().expect("a data folder");
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg(scenario)
        .args(args)
        .arg("--results-dir")
        .arg(results.path())
        .arg("--data-dir")
        .arg(data.path())
        .args(["--fsync-secs", "0.05"])
        .output()
        .expect("the bench binary starts");
    assert!(
        output.status.success(),
        "{scenario} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    check_results(results.path(), report);
}

fn check_results(dir: &Path, scenario: &str) {
    let markdown = std::fs::read_to_string(dir.join(format!("{scenario}.md"))).expect("the Markdown report");
    assert!(markdown.starts_with(&format!("# {scenario} — ")), "{markdown}");
    assert!(markdown.contains("Machine: "), "{markdown}");
    assert!(markdown.contains("fsync"), "the machine line names the fsync rate:\n{markdown}");
    assert!(markdown.contains("| measure | ours | baseline | ours / baseline | goal |"), "{markdown}");
    let json = std::fs::read_to_string(dir.join(format!("{scenario}.json"))).expect("the JSON report");
    let json: serde_json::Value = serde_json::from_str(&json).expect("the report is JSON");
    assert_eq!(json["scenario"], scenario);
    assert!(json["machine"]["fsyncs_per_sec"].as_f64().is_some_and(|rate| rate > 0.0), "{json}");
    let rows = json["summary"]["rows"].as_array().expect("summary rows");
    assert!(!rows.is_empty(), "the summary compares at least one figure:\n{markdown}");
    assert!(!json["raw"].is_null());
}

fn with_brief<'a>(args: &[&'a str]) -> Vec<&'a str> {
    args.iter().chain(BRIEF).copied().collect()
}

/// `args` and the servers of the distributed shape: PostgreSQL at `url`
/// (pools of 4) and Kafka at `brokers` (a topic of 2 partitions).
fn distributed<'a>(url: &'a str, brokers: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let servers =
        ["--postgres-url", url, "--pool-size", "4", "--kafka-brokers", brokers, "--partitions", "2"];
    servers.iter().chain(args).copied().collect()
}

/// The value of `variable`, or `None` after saying that `test` is skipped.
fn server(variable: &str, test: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            eprintln!("skipping {test}: {variable} is not set (scripts/test sets it)");
            None
        }
    }
}

#[test]
fn commands_embedded() {
    run("commands-embedded", &with_brief(&["--carts", "40", "--products", "5"]));
}

#[test]
fn commands_http() {
    run("commands-http", &with_brief(&["--in-process", "--carts", "40", "--products", "5"]));
}

#[test]
fn queries() {
    run(
        "queries",
        &with_brief(&[
            "--in-process",
            "--products",
            "5",
            "--carts",
            "20",
            "--customers",
            "3",
            "--orders-per-customer",
            "2",
        ]),
    );
}

#[test]
fn projection_rebuild() {
    run("projection-rebuild", &["--events", "2000", "--products", "20", "--customers", "10"]);
}

#[test]
fn freshness() {
    run("freshness", &with_brief(&["--carts", "40", "--products", "5", "--fractions", "0.5"]));
}

#[test]
fn commands_postgres() {
    let Some(url) = server("PARALLAX_TEST_POSTGRES_URL", "commands-postgres") else { return };
    run(
        "commands-postgres",
        &with_brief(&["--carts", "40", "--products", "5", "--pool-size", "4", "--postgres-url", &url]),
    );
}

#[test]
fn projection_rebuild_postgres() {
    let Some(url) = server("PARALLAX_TEST_POSTGRES_URL", "projection-rebuild --store postgres") else {
        return;
    };
    run_reporting(
        "projection-rebuild",
        "projection-rebuild-postgres",
        &[
            "--store",
            "postgres",
            "--postgres-url",
            &url,
            "--pool-size",
            "4",
            "--events",
            "2000",
            "--products",
            "20",
            "--customers",
            "10",
        ],
    );
}

#[test]
fn freshness_kafka() {
    let Some(url) = server("PARALLAX_TEST_POSTGRES_URL", "freshness --via kafka") else { return };
    let Some(brokers) = server("PARALLAX_TEST_KAFKA_BROKERS", "freshness --via kafka") else { return };
    run_reporting(
        "freshness",
        "freshness-kafka",
        &with_brief(&distributed(
            &url,
            &brokers,
            &["--via", "kafka", "--carts", "40", "--products", "5", "--fractions", "0.5"],
        )),
    );
}

#[test]
fn projection_rebuild_cassandra() {
    let Some(nodes) = server("PARALLAX_TEST_CASSANDRA_NODES", "projection-rebuild --store cassandra") else {
        return;
    };
    run_reporting(
        "projection-rebuild",
        "projection-rebuild-cassandra",
        &[
            "--store",
            "cassandra",
            "--cassandra-nodes",
            &nodes,
            "--events",
            "2000",
            "--products",
            "20",
            "--customers",
            "10",
        ],
    );
}

#[test]
fn freshness_cassandra() {
    let test = "freshness --via cassandra";
    let Some(url) = server("PARALLAX_TEST_POSTGRES_URL", test) else { return };
    let Some(brokers) = server("PARALLAX_TEST_KAFKA_BROKERS", test) else { return };
    let Some(nodes) = server("PARALLAX_TEST_CASSANDRA_NODES", test) else { return };
    run_reporting(
        "freshness",
        "freshness-cassandra",
        &with_brief(&distributed(
            &url,
            &brokers,
            &[
                "--via",
                "cassandra",
                "--cassandra-nodes",
                &nodes,
                "--carts",
                "40",
                "--products",
                "5",
                "--fractions",
                "0.5",
            ],
        )),
    );
}

#[test]
fn scale_out() {
    let test = "scale-out";
    let Some(url) = server("PARALLAX_TEST_POSTGRES_URL", test) else { return };
    let Some(brokers) = server("PARALLAX_TEST_KAFKA_BROKERS", test) else { return };
    run(
        "scale-out",
        &with_brief(&distributed(
            &url,
            &brokers,
            &["--backlog", "2000", "--customers", "10", "--carts", "40", "--products", "5"],
        )),
    );
}

#[test]
fn pipeline() {
    let test = "pipeline";
    let Some(url) = server("PARALLAX_TEST_POSTGRES_URL", test) else { return };
    let Some(brokers) = server("PARALLAX_TEST_KAFKA_BROKERS", test) else { return };
    run(
        "pipeline",
        &with_brief(&distributed(
            &url,
            &brokers,
            &["--rates", "20,40", "--carts", "40", "--products", "5", "--customers", "10"],
        )),
    );
}

#[test]
fn pipeline_cassandra() {
    let test = "pipeline --store cassandra";
    let Some(url) = server("PARALLAX_TEST_POSTGRES_URL", test) else { return };
    let Some(brokers) = server("PARALLAX_TEST_KAFKA_BROKERS", test) else { return };
    let Some(nodes) = server("PARALLAX_TEST_CASSANDRA_NODES", test) else { return };
    run_reporting(
        "pipeline",
        "pipeline-cassandra",
        &with_brief(&distributed(
            &url,
            &brokers,
            &[
                "--store",
                "cassandra",
                "--cassandra-nodes",
                &nodes,
                "--rates",
                "20",
                "--carts",
                "40",
                "--products",
                "5",
                "--customers",
                "10",
                "--no-baseline",
            ],
        )),
    );
}

#[test]
fn read_heavy() {
    let test = "read-heavy";
    let Some(url) = server("PARALLAX_TEST_POSTGRES_URL", test) else { return };
    let Some(brokers) = server("PARALLAX_TEST_KAFKA_BROKERS", test) else { return };
    run(
        "read-heavy",
        &with_brief(&distributed(
            &url,
            &brokers,
            &[
                "--events",
                "3000",
                "--customers",
                "10",
                "--products",
                "5",
                "--carts",
                "40",
                "--rates",
                "20,40",
            ],
        )),
    );
}
