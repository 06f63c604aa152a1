//! The databases and the log: `[write_db]`, `[read_db]` and `[log]`.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Which database a side uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    /// A file under the data folder.
    Sqlite,
    /// A PostgreSQL database at `url`.
    Postgres,
    /// An Apache Cassandra keyspace (`keyspace` at `nodes`); read side only.
    Cassandra,
}

/// A database.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbSettings {
    /// Which kind.
    pub kind: DbKind,
    /// Where (PostgreSQL). The host may be a list, `host1:5433,host2:5434`:
    /// connections then go to whichever is the primary
    /// (`parallax_postgres::hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Pool size (PostgreSQL).
    #[serde(default = "default_connections")]
    pub max_connections: u32,
    /// Contact points, `host:port`, comma-separated (Cassandra).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
    /// Keyspace of the views (Cassandra).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    /// Replicas of a keyspace `shop migrate` creates (Cassandra); unset: 3
    /// on a ring of at least 3 nodes, else 1. An existing keyspace keeps its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u32>,
    /// The consistency level of every read and write of the views
    /// (Cassandra), by its CQL name; unset: `LOCAL_QUORUM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn default_connections() -> u32 {
    16
}

/// The URL's password is redacted: settings get logged.
impl std::fmt::Debug for DbSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSettings")
            .field("kind", &self.kind)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("max_connections", &self.max_connections)
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("replication_factor", &self.replication_factor)
            .field("consistency", &self.consistency)
            .finish()
    }
}

/// `url` without its password, whether in the authority (`user:pw@`) or in
/// a `password=` parameter.
pub fn redact_url(url: &str) -> String {
    let mut redacted = parallax_postgres::redact(url);
    if let Some(query) = redacted.find('?') {
        let params: Vec<String> = redacted[query + 1..]
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                _ => param.to_owned(),
            })
            .collect();
        redacted = format!("{}?{}", &redacted[..query], params.join("&"));
    }
    redacted
}

impl DbSettings {
    pub(super) fn sqlite() -> Self {
        Self {
            kind: DbKind::Sqlite,
            url: None,
            max_connections: default_connections(),
            nodes: None,
            keyspace: None,
            replication_factor: None,
            consistency: None,
        }
    }

    /// Cassandra's contact points.
    pub fn cassandra_nodes(&self) -> Vec<String> {
        self.nodes
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Cassandra's keyspace (default `shop`).
    pub fn cassandra_keyspace(&self) -> String {
        self.keyspace.clone().unwrap_or_else(|| "shop".to_owned())
    }

    /// The Cassandra read store's configuration, or why `consistency` names
    /// no level it can use.
    pub fn cassandra_config(&self) -> Result<parallax_cassandra::CassandraConfig, ConfigError> {
        let mut config =
            parallax_cassandra::CassandraConfig::new(self.cassandra_nodes(), self.cassandra_keyspace());
        config.replication_factor = self.replication_factor;
        if let Some(name) = &self.consistency {
            config.consistency = parallax_cassandra::parse_consistency(name)
                .map_err(|e| ConfigError(format!("read_db.consistency = {name:?}: {e}")))?;
        }
        Ok(config)
    }
}

/// How events travel from the write side to the read side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogKind {
    /// Projectors tail the event store.
    Embedded,
    /// The relay publishes to a Kafka topic; projectors consume it.
    Kafka,
}

/// The log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Which kind.
    pub kind: LogKind,
    /// Kafka bootstrap brokers.
    pub brokers: String,
    /// Kafka topic.
    pub topic: String,
    /// The topic's partition count (consistency tokens name partitions).
    pub partitions: u32,
    /// Consumer group prefix: each projection is group `<group>.<projection>`.
    pub group: String,
    /// Replicas of each of the topic's partitions, set when `shop migrate`
    /// creates it; unset: 3 when the cluster has at least 3 brokers, else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<u16>,
    /// The topic's `min.insync.replicas` (replicas holding a message before
    /// the relay's `acks=all` publish is acknowledged); unset: 2, or the
    /// replication when that is lower. Never above the replication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_insync_replicas: Option<u16>,
    /// The topic's `retention.ms`; unset: -1, every message kept (the topic
    /// is a copy of the event store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<i64>,
    /// How long, in milliseconds, a projector's batch keeps reading the
    /// topic after its first event, so that its commit and checkpoints are
    /// shared by more events (`parallax_kafka::KafkaSource::with_gather`);
    /// 0: a batch takes what is ready and commits.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub batch_gather_ms: u64,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            kind: LogKind::Embedded,
            brokers: "127.0.0.1:9092".into(),
            topic: "shop.events".into(),
            partitions: 8,
            group: "shop".into(),
            replication: None,
            min_insync_replicas: None,
            retention_ms: None,
            batch_gather_ms: 0,
        }
    }
}
