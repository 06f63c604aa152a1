//! Fresh keyspaces on the test server (`PARALLAX_TEST_CASSANDRA_NODES`,
//! started by `scripts/services/cassandra start`).
#![allow(dead_code)]

use async_trait::async_trait;
use parallax_cassandra::{CassandraConfig, CassandraReadStore};
use parallax_core::{
    DocKey, EventRecord, EventStore, ExpectedVersion, Projection, ProjectionError, View, ViewSpec, ViewTx,
};
use parallax_sqlite::SqliteEventStore;
use parallax_testing::event_store::{append_request, new_event};
use serde_json::{json, Value};

/// Events counted, in one read-modify-written row.
pub const TOTALS: View<Value> = View::owned("totals");
/// Each stream's last version (a blind write).
pub const LAST: View<Value> = View::owned("last");
/// [`TOTALS`], read-modify-written from every partition at once (written
/// by compare-and-set, a lightweight transaction).
pub const SHARED_TOTALS: View<Value> = View::shared("shared_totals");

/// Counts every event (one read-modify-written total) and keeps the last
/// event of each stream (a blind write); with `shared`, counts them again
/// in [`SHARED_TOTALS`].
pub struct Counting {
    pub shared: bool,
}

#[async_trait]
impl Projection for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn views(&self) -> Vec<ViewSpec> {
        let mut views = vec![TOTALS.spec(), LAST.spec()];
        views.extend(self.shared.then(|| SHARED_TOTALS.spec()));
        views
    }

    async fn apply(&self, tx: &mut ViewTx<'_>, event: &EventRecord) -> Result<(), ProjectionError> {
        let key = DocKey::partition("all");
        let counted: &[&View<Value>] = if self.shared { &[&TOTALS, &SHARED_TOTALS] } else { &[&TOTALS] };
        for view in counted {
            let total = tx.get(view, &key).await?.and_then(|v| v["events"].as_u64()).unwrap_or(0);
            tx.put(view, key.clone(), &json!({ "events": total + 1 }));
        }
        tx.put(&LAST, DocKey::partition(&event.stream_id), &json!({ "version": event.stream_version }));
        Ok(())
    }
}

/// Appends `events` events to `stream`.
pub async fn append(store: &SqliteEventStore, stream: &str, events: usize) {
    let events = (0..events).map(|n| new_event("thing.happened", json!({ "n": n }))).collect();
    store.append(append_request(stream, ExpectedVersion::Any, events)).await.expect("append");
}

/// The server's contact points.
pub fn nodes() -> Vec<String> {
    std::env::var("PARALLAX_TEST_CASSANDRA_NODES")
        .unwrap_or_else(|_| "127.0.0.1:9042".to_owned())
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// A configuration for a new keyspace of its own.
pub fn fresh_config() -> CassandraConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    CassandraConfig::new(nodes(), format!("parallax_test_{}", &id[..20]))
}

/// A store on a new, empty keyspace holding `views`.
pub async fn fresh_store(views: Vec<ViewSpec>) -> (CassandraConfig, CassandraReadStore) {
    let config = fresh_config();
    let store = CassandraReadStore::connect(&config, views).await.unwrap_or_else(|e| {
        panic!(
            "Cassandra does not answer at {:?} ({e}: {:?}); run `scripts/services/cassandra start`",
            config.nodes,
            std::error::Error::source(&e)
        )
    });
    (config, store)
}

/// Drops the keyspaces a test made.
pub async fn drop_all(configs: &[CassandraConfig]) {
    for config in configs {
        CassandraReadStore::drop_keyspace(config).await.expect("drop a test keyspace");
    }
}
