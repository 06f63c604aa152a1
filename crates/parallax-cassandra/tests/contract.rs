//! The read-store contract against a real Apache Cassandra.

mod common;

use std::sync::{Arc, Mutex};

use parallax_core::ReadStore;
use parallax_core::ViewSpec;
use parallax_testing::read_store::{SHARED_VIEWS, VIEWS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_store_contract() {
    let made = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&made);
    parallax_testing::read_store::run_all(move || {
        let made = Arc::clone(&keep);
        async move {
            let views = VIEWS
                .iter()
                .map(|&view| {
                    if SHARED_VIEWS.contains(&view) {
                        ViewSpec::shared(view)
                    } else {
                        ViewSpec::owned(view)
                    }
                })
                .collect();
            let (config, store) = common::fresh_store(views).await;
            made.lock().expect("keyspace list").push(config);
            Arc::new(store) as Arc<dyn ReadStore>
        }
    })
    .await;
    let made = made.lock().expect("keyspace list").clone();
    common::drop_all(&made).await;
}
