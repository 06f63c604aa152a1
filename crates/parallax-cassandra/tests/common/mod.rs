//! Fresh keyspaces on the test server (`PARALLAX_TEST_CASSANDRA_NODES`,
//! started by `scripts/services/cassandra start`).
#![allow(dead_code)]

use parallax_cassandra::{CassandraConfig, CassandraReadStore};
use parallax_core::ViewSpec;

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
