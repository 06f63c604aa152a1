//! The port contracts of `parallax-testing`, run against the stores in memory.

use std::sync::Arc;

use parallax_core::{KeyStore, ReadStore};
use parallax_testing::dead_letters::DeadLetterFixture;
use parallax_testing::event_store::EventStoreFixture;
use parallax_testing::memory::{MemEventStore, MemKeyStore, MemReadStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_store_contract() {
    parallax_testing::event_store::run_all(|| async {
        let store = MemEventStore::new();
        EventStoreFixture { log: Arc::new(store.log()), store: Arc::new(store) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_store_contract() {
    parallax_testing::read_store::run_all(|| async { Arc::new(MemReadStore::new()) as Arc<dyn ReadStore> })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letter_suite() {
    parallax_testing::dead_letters::run_all(|| async {
        let store = MemEventStore::new();
        DeadLetterFixture {
            log: Arc::new(store.log()),
            store: Arc::new(store),
            views: Arc::new(MemReadStore::new()),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_store_contract() {
    parallax_testing::key_store::run_all(|| async { Arc::new(MemKeyStore::new()) as Arc<dyn KeyStore> })
        .await;
}
