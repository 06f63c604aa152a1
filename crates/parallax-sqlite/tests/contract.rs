//! The port contracts of `parallax-testing`, run against SQLite files.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parallax_core::ReadStore;
use parallax_sqlite::{SqliteEventStore, SqliteReadStore};
use parallax_testing::event_store::EventStoreFixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_store_contract() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let opened = AtomicUsize::new(0);
    parallax_testing::event_store::run_all(|| {
        let path = dir.path().join(format!("events-{}.db", opened.fetch_add(1, Ordering::Relaxed)));
        async move {
            let store = SqliteEventStore::open(&path).expect("open a fresh event store");
            EventStoreFixture { log: Arc::new(store.log()), store: Arc::new(store) }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_store_contract() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let opened = AtomicUsize::new(0);
    parallax_testing::read_store::run_all(|| {
        let path = dir.path().join(format!("views-{}.db", opened.fetch_add(1, Ordering::Relaxed)));
        async move {
            Arc::new(SqliteReadStore::open(&path).expect("open a fresh read store")) as Arc<dyn ReadStore>
        }
    })
    .await;
}
