//! The servers the PostgreSQL, Kafka and Cassandra scenarios run against,
//! and the scratch space each run takes on them: databases of its own
//! (`parallax_bench_<run>…`, made with `CREATE DATABASE` and dropped with
//! `DROP DATABASE … WITH (FORCE)` at the end), a topic of its own
//! (`parallax-bench-<run>`, deleted at the end) and keyspaces of its own
//! (`parallax_bench_<run>_…`, made by the read store when it connects and
//! dropped at the end). Nothing else on the servers is touched, so a run
//! never sees what an earlier one left, nor the shop's own databases. A run
//! that is killed leaves its scratch behind; its names start with
//! `parallax_bench_` / `parallax-bench-`.
//!
//! The servers are expected on this machine (`scripts/services/postgres
//! start`, `scripts/services/kafka start`, `scripts/services/cassandra
//! start`): their processes' CPU time is read from `/proc`
//! ([`crate::machine::process_cpu_secs`], [`crate::machine::cmdline_cpu_secs`]).

use std::fmt;

use anyhow::Context as _;
use parallax_cassandra::{CassandraConfig, CassandraReadStore};
use parallax_kafka::KafkaConfig;
use serde::{Serialize, Serializer};
use sqlx::{Connection, PgConnection};

/// The PostgreSQL of `scripts/services/postgres`.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://parallax:parallax@127.0.0.1:5432/parallax";

/// The Kafka of `scripts/services/kafka`.
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";

/// The Cassandra of `scripts/services/cassandra`.
pub const DEFAULT_CASSANDRA_NODES: &str = "127.0.0.1:9042";

/// What names the Cassandra node's process on its command line (its
/// process is `java`, as is Kafka's).
pub const CASSANDRA_PROCESS: &str = "org.apache.cassandra.service.CassandraDaemon";

/// What names the Kafka broker's process on its command line (its main class).
pub const KAFKA_PROCESS: &str = "kafka.Kafka";

/// The CloudEvents source of the events the bench publishes.
pub const EVENT_SOURCE: &str = "/parallax/bench";

/// Where PostgreSQL is.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct PostgresArgs {
    /// PostgreSQL to run against, as a role that may create databases: each
    /// run makes databases of its own there and drops them afterwards.
    #[arg(long, env = "PARALLAX_BENCH_POSTGRES_URL", default_value = DEFAULT_POSTGRES_URL)]
    #[serde(serialize_with = "redacted")]
    pub postgres_url: String,
    /// Connections of each pool (the event store's, the read store's, the peer's).
    #[arg(long, default_value_t = 16)]
    pub pool_size: u32,
}

/// Where Kafka is.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct KafkaArgs {
    /// Kafka bootstrap brokers: each run makes a topic of its own there and
    /// deletes it afterwards.
    #[arg(long, env = "PARALLAX_BENCH_KAFKA_BROKERS", default_value = DEFAULT_KAFKA_BROKERS)]
    pub kafka_brokers: String,
    /// Partitions of the run's topic (the distributed shape's configuration has 8).
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
}

/// Where Cassandra is.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct CassandraArgs {
    /// Cassandra contact points, `host:port`, comma-separated: each run makes
    /// keyspaces of its own there and drops them afterwards.
    #[arg(long, env = "PARALLAX_BENCH_CASSANDRA_NODES", default_value = DEFAULT_CASSANDRA_NODES)]
    pub cassandra_nodes: String,
}

impl CassandraArgs {
    /// The contact points, one per entry.
    pub fn nodes(&self) -> Vec<String> {
        self.cassandra_nodes.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect()
    }
}

fn redacted<S: Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&parallax_postgres::redact(url))
}

/// One run's name on the servers: 8 random hex digits.
#[derive(Debug, Clone)]
pub struct RunId(String);

impl RunId {
    /// A fresh one.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string()[..8].to_owned())
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A database made for one run, dropped by [`ScratchDb::remove`].
#[derive(Debug)]
pub struct ScratchDb {
    /// Where it was made from (the server's URL as given).
    server: String,
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl ScratchDb {
    /// Makes database `parallax_bench_<run>_<role>` on the server of `url`.
    pub async fn create(url: &str, run: &RunId, role: &str) -> anyhow::Result<Self> {
        let name = format!("parallax_bench_{run}_{role}");
        let mut admin = PgConnection::connect(url)
            .await
            .with_context(|| format!("connect to {}", parallax_postgres::redact(url)))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("create database {name}"))?;
        admin.close().await?;
        Ok(Self { server: url.to_owned(), url: with_database(url, &name)?, name })
    }

    /// Drops the database, whoever is still connected.
    pub async fn remove(self) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(&self.server).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)))
            .execute(&mut admin)
            .await
            .with_context(|| format!("drop database {}", self.name))?;
        admin.close().await?;
        Ok(())
    }
}

/// A topic made for one run, deleted by [`ScratchTopic::remove`].
#[derive(Debug)]
pub struct ScratchTopic {
    /// The topic and how to reach it.
    pub config: KafkaConfig,
}

impl ScratchTopic {
    /// Makes topic `parallax-bench-<run>` with `args.partitions` partitions.
    pub async fn create(args: &KafkaArgs, run: &RunId) -> anyhow::Result<Self> {
        let config = KafkaConfig::new(
            &args.kafka_brokers,
            format!("parallax-bench-{run}"),
            args.partitions,
            EVENT_SOURCE,
        );
        parallax_kafka::ensure_topic(&config)
            .await
            .with_context(|| format!("create topic {} on {}", config.topic, config.brokers))?;
        Ok(Self { config })
    }

    /// Deletes the topic.
    pub async fn remove(self) -> anyhow::Result<()> {
        Ok(parallax_kafka::delete_topic(&self.config).await?)
    }
}

/// A keyspace for one run, dropped by [`ScratchKeyspace::remove`]. The read
/// store makes it (and its tables) when it connects.
#[derive(Debug)]
pub struct ScratchKeyspace {
    /// The keyspace and how to reach it.
    pub config: CassandraConfig,
}

impl ScratchKeyspace {
    /// Names keyspace `parallax_bench_<run>_<role>` on the nodes of `args`.
    pub fn new(args: &CassandraArgs, run: &RunId, role: &str) -> Self {
        Self { config: CassandraConfig::new(args.nodes(), format!("parallax_bench_{run}_{role}")) }
    }

    /// Connects a read store holding the shop's views there, making the
    /// keyspace and its tables.
    pub async fn connect(&self) -> anyhow::Result<CassandraReadStore> {
        CassandraReadStore::connect(&self.config, shop::app::shop_view_specs()).await.with_context(|| {
            format!(
                "connect to Cassandra at {} (keyspace {}); is it running? scripts/services/cassandra start",
                self.config.nodes.join(","),
                self.config.keyspace
            )
        })
    }

    /// Drops the keyspace (if it was made).
    pub async fn remove(self) -> anyhow::Result<()> {
        Ok(CassandraReadStore::drop_keyspace(&self.config).await?)
    }
}

/// Drops keyspaces, reporting (not failing on) what could not be dropped.
pub async fn drop_keyspaces(keyspaces: Vec<ScratchKeyspace>) {
    for keyspace in keyspaces {
        let name = keyspace.config.keyspace.clone();
        if let Err(error) = keyspace.remove().await {
            eprintln!("warning: could not drop keyspace {name}: {error:#}");
        }
    }
}

/// Removes scratch space, reporting (not failing on) what could not be removed.
pub async fn clean_up(databases: Vec<ScratchDb>, topic: Option<ScratchTopic>) {
    for db in databases {
        let name = db.name.clone();
        if let Err(error) = db.remove().await {
            eprintln!("warning: could not drop database {name}: {error:#}");
        }
    }
    if let Some(topic) = topic {
        let name = topic.config.topic.clone();
        if let Err(error) = topic.remove().await {
            eprintln!("warning: could not delete topic {name}: {error:#}");
        }
    }
}

/// `url` with its database replaced by `name`.
pub fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let authority = url.find("://").context("a PostgreSQL URL starts with postgres://")? + 3;
    let (before_query, query) = match url.find('?') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let path = before_query[authority..].find('/').map_or(before_query.len(), |at| authority + at);
    Ok(format!("{}/{name}{query}", &before_query[..path]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_another_database() {
        let url = |u| with_database(u, "x").expect("a URL");
        assert_eq!(url("postgres://u:p@h:5432/parallax"), "postgres://u:p@h:5432/x");
        assert_eq!(url("postgres://u:p@h:5432"), "postgres://u:p@h:5432/x");
        assert_eq!(url("postgres://h/db?sslmode=disable"), "postgres://h/x?sslmode=disable");
        assert_eq!(url("postgresql://h?application_name=b"), "postgresql://h/x?application_name=b");
    }
}
