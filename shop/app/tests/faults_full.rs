//! The whole fault suite: every scenario of `common/faults.rs` in turn; each
//! must pass the check, and the negative control must fail it. `cargo test`
//! (so `scripts/test` and CI) runs it; `scripts/faults` runs it alone.
//!
//! `PARALLAX_FAULTS_ONLY=<text>` runs only the scenarios whose name contains
//! it; `PARALLAX_FAULTS_DOCS=<file>` writes the table between the file's
//! `<!-- faults:begin -->` and `<!-- faults:end -->` lines.

mod common;

use common::faults::{run, Outcome, FULL};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_scenario() {
    let only = std::env::var("PARALLAX_FAULTS_ONLY").unwrap_or_default();
    let mut outcomes: Vec<Outcome> = Vec::new();
    for scenario in FULL.iter().filter(|s| s.name.contains(&only)) {
        outcomes.push(run(*scenario).await);
    }
    assert!(!outcomes.is_empty(), "no scenario matches PARALLAX_FAULTS_ONLY={only:?}");
    let table = format!(
        "{}\n{}\n",
        Outcome::HEADER,
        outcomes.iter().map(Outcome::row).collect::<Vec<_>>().join("\n")
    );
    println!("\n{table}");
    if let Ok(path) = std::env::var("PARALLAX_FAULTS_DOCS") {
        write_table(&path, &table);
    }
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|o| o.passed() == o.scenario.must_fail())
        .map(|o| format!("{}\n  {}", o.row(), o.report["details"]))
        .collect();
    assert!(wrong.is_empty(), "scenarios with the wrong verdict:\n{}", wrong.join("\n"));
}

/// Replaces what stands between the markers of `path` with `table`.
fn write_table(path: &str, table: &str) {
    const BEGIN: &str = "<!-- faults:begin -->";
    const END: &str = "<!-- faults:end -->";
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        panic!("{path} has no {BEGIN} … {END} markers");
    };
    let machine = format!(
        "Measured {} on {} cores.\n\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let updated = format!("{}{BEGIN}\n{machine}{table}{}", &text[..begin], &text[end..]);
    std::fs::write(path, updated).unwrap_or_else(|e| panic!("write {path}: {e}"));
}
