//! The poison-event suite of `parallax-testing` against a real PostgreSQL
//! server: bounded attempts, dead letters and their retry.

mod common;

use std::sync::Arc;

use parallax_postgres::{PgEventStore, PgReadStore, PgStoreOptions};
use parallax_testing::dead_letters::DeadLetterFixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_attempted_dead_lettered_and_retried() {
    parallax_testing::dead_letters::run_all(|| async {
        let (_, pool) = common::fresh_database().await;
        let store = PgEventStore::new(pool.clone(), PgStoreOptions::default());
        DeadLetterFixture {
            log: Arc::new(store.log()),
            store: Arc::new(store),
            views: Arc::new(PgReadStore::new(pool)),
        }
    })
    .await;
}
