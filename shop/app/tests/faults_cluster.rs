//! The faults only clusters have (`CLUSTER` in `common/faults.rs`), each on
//! a cluster of one engine started by its `scripts/services/NAME` cluster
//! mode. `cargo test` (so `scripts/test` and CI) runs the subset
//! `CLUSTER_CI`, the Kafka partition leader's kill on three brokers;
//! `scripts/faults cluster` runs every one (`PARALLAX_FAULTS_CLUSTER=all`).
//!
//! `PARALLAX_FAULTS_ONLY=<text>` keeps only the scenarios whose name
//! contains it; `PARALLAX_FAULTS_DOCS=<file>` writes their table between the
//! file's `<!-- faults-cluster:begin -->` and `<!-- faults-cluster:end -->`
//! lines.

mod common;

use common::faults::{report, run, Outcome, CLUSTER, CLUSTER_CI};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_cluster_fault_scenario() {
    let all = std::env::var("PARALLAX_FAULTS_CLUSTER").is_ok_and(|which| which == "all");
    let only = std::env::var("PARALLAX_FAULTS_ONLY").unwrap_or_default();
    let scenarios = if all { CLUSTER } else { CLUSTER_CI };
    let mut outcomes: Vec<Outcome> = Vec::new();
    for scenario in scenarios.iter().filter(|s| s.name.contains(&only)) {
        outcomes.push(run(*scenario).await);
    }
    assert!(!outcomes.is_empty(), "no cluster scenario matches PARALLAX_FAULTS_ONLY={only:?}");
    report(&outcomes, "faults-cluster");
}
