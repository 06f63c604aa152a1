//! Runs every scenario of the `bench` binary very briefly and checks that it
//! writes its Markdown report and its JSON. No timing is asserted: on a
//! debug build, with the other tests beside it, the figures mean nothing;
//! this only keeps the scenarios working. The HTTP scenarios start the shop
//! inside the bench process (`--in-process`), so no release binary is needed.

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
    check_results(results.path(), scenario);
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

fn with_brief(args: &[&'static str]) -> Vec<&'static str> {
    args.iter().chain(BRIEF).copied().collect()
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
