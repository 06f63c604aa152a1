//! The poison-event suite of `parallax-testing` against SQLite files: bounded
//! attempts, dead letters and their retry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parallax_sqlite::{SqliteEventStore, SqliteReadStore};
use parallax_testing::dead_letters::DeadLetterFixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_attempted_dead_lettered_and_retried() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let opened = AtomicUsize::new(0);
    parallax_testing::dead_letters::run_all(|| {
        let n = opened.fetch_add(1, Ordering::Relaxed);
        let (events, views) =
            (dir.path().join(format!("events-{n}.db")), dir.path().join(format!("views-{n}.db")));
        async move {
            let store = SqliteEventStore::open(&events).expect("open a fresh event store");
            DeadLetterFixture {
                log: Arc::new(store.log()),
                store: Arc::new(store),
                views: Arc::new(SqliteReadStore::open(&views).expect("open a fresh read store")),
            }
        }
    })
    .await;
}
