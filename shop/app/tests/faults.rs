//! The quick subset of the fault suite, run by `scripts/test`: a projector and
//! the command process killed, the relay paused, PostgreSQL restarted at
//! once, each under load, then `shop check` over everything. The whole suite
//! (every role killed and paused, Kafka, Cassandra, a long transaction) is
//! `scripts/faults`; the scenarios live in `common/faults.rs`.

mod common;

use common::faults::{run, MUTATION_CONTROL, NEGATIVE_CONTROL, QUICK};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_faults_nothing_acknowledged_is_lost_and_nothing_is_applied_twice() {
    let mut failed = Vec::new();
    for scenario in QUICK {
        let outcome = run(*scenario).await;
        assert!(outcome.tally.ok > 0, "{}: nothing was acknowledged", scenario.name);
        if !outcome.passed() {
            failed.push(format!("{}\n  {}", outcome.row(), outcome.report["details"]));
        }
    }
    assert!(failed.is_empty(), "the check failed:\n{}", failed.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_sees_the_loss_of_a_write_db_that_acknowledges_before_it_is_durable() {
    let outcome = run(NEGATIVE_CONTROL).await;
    assert!(
        outcome.count("lost_acknowledged") > 0 && !outcome.passed(),
        "with synchronous_commit = off and an immediate restart, the check found no loss: {}",
        outcome.report
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_sees_duplicates_applied_by_projectors_that_do_not_skip_them() {
    let outcome = run(MUTATION_CONTROL).await;
    assert!(outcome.count("topic_duplicates") > 0, "the relay republished nothing: {}", outcome.report);
    let twice = outcome.count("applied_twice")
        + outcome.count("view_differences")
        + outcome.count("model_differences");
    assert!(
        twice > 0 && !outcome.passed(),
        "projectors applied duplicates again, and the check found nothing: {}",
        outcome.report
    );
}
