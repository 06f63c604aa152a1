//! The whole fault suite: every scenario of `common/faults.rs` in turn; each
//! must pass the check, and the negative control must fail it. `cargo test`
//! (so `scripts/test` and CI) runs it; `scripts/faults` runs it alone.
//!
//! `PARALLAX_FAULTS_ONLY=<text>` runs only the scenarios whose name contains
//! it; `PARALLAX_FAULTS_DOCS=<file>` writes the table between the file's
//! `<!-- faults:begin -->` and `<!-- faults:end -->` lines.

mod common;

use common::faults::{report, run, Outcome, FULL};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_scenario() {
    let only = std::env::var("PARALLAX_FAULTS_ONLY").unwrap_or_default();
    let mut outcomes: Vec<Outcome> = Vec::new();
    for scenario in FULL.iter().filter(|s| s.name.contains(&only)) {
        outcomes.push(run(*scenario).await);
    }
    assert!(!outcomes.is_empty(), "no scenario matches PARALLAX_FAULTS_ONLY={only:?}");
    report(&outcomes, "faults");
}
