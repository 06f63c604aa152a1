//! The port contracts, against a real PostgreSQL server.

mod common;

use std::sync::Arc;

use parallax_core::{EventLog, EventStore, ReadStore};
use parallax_postgres::{PgEventStore, PgReadStore, PgStoreOptions};
use parallax_testing::event_store::EventStoreFixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_store_contract() {
    parallax_testing::event_store::run_all(|| async {
        let (_, pool) = common::fresh_database().await;
        let store = PgEventStore::new(pool, PgStoreOptions::default());
        let log: Arc<dyn EventLog> = Arc::new(store.log());
        EventStoreFixture { store: Arc::new(store) as Arc<dyn EventStore>, log }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_store_contract() {
    parallax_testing::read_store::run_all(|| async {
        let (_, pool) = common::fresh_database().await;
        Arc::new(PgReadStore::new(pool)) as Arc<dyn ReadStore>
    })
    .await;
}
