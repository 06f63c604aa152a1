//! Configuration: which roles this process plays and which databases and
//! log it uses.
//!
//! Settings come from, lowest first: the defaults (the embedded shape under
//! `./data`), a TOML file (`--config`), environment variables `SHOP__…` with
//! `__` between nested keys (`SHOP__WRITE_DB__URL`), and the command line.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "./data"
//! roles = ["command", "relay", "projector", "saga", "query"]
//!
//! [write_db]           # the event store
//! kind = "postgres"    # or "sqlite" (a file under data_dir)
//! url = "postgres://parallax:parallax@127.0.0.1:5432/shop"
//! # a primary and its standbys: every process keeps to the primary
//! # url = "postgres://parallax:parallax@10.0.0.1:5432,10.0.0.2:5432/shop"
//!
//! [log]                # between write and read side
//! kind = "kafka"       # or "embedded" (projectors tail the event store)
//! brokers = "127.0.0.1:9092"
//! topic = "shop.events"
//! partitions = 8
//! group = "shop"       # each projection consumes as group "shop.<projection>"
//! # replication = 3           # set by `shop migrate` on a new topic; default: 3 on >= 3 brokers, else 1
//! # min_insync_replicas = 2   # default 2 (the replication, when lower)
//! # retention_ms = -1         # default -1: keep every message
//! # batch_gather_ms = 0        # a projector's batch reads on this long after its first event
//!
//! [read_db]            # the views
//! kind = "postgres"    # or "sqlite", or "cassandra":
//! url = "postgres://parallax:parallax@127.0.0.1:5432/shop_views"
//! # kind = "cassandra"
//! # nodes = "127.0.0.1:9042"   # contact points, comma-separated
//! # keyspace = "shop"
//! # replication_factor = 3     # of a new keyspace; default: 3 on a ring of >= 3 nodes, else 1
//! # consistency = "LOCAL_QUORUM"   # every read and write (lightweight transactions: LOCAL_SERIAL)
//!
//! [readiness]          # what `/ready` asks of each role
//! max_lag = 1000       # query: every projection within this many positions of the head
//!
//! [http]               # the server's limits (these are the defaults)
//! header_read_timeout_secs = 10   # a request's head must arrive in full within this
//! idle_timeout_secs = 5           # a connection silent this long is closed
//! request_timeout_secs = 30       # from head to answer (queries: plus their wait_ms)
//! max_connections = 4096          # served at once; more wait in the listen backlog
//! max_streams = 256               # live event streams open at once
//! max_streams_per_key = 32        # of them, per API key
//!
//! [[api_keys]]         # none: the API is open, and only a loopback `listen` is allowed
//! name = "ops"         # for the logs; the key itself is never stored
//! key_sha256 = "<64 hex digits>"   # printf %s "$KEY" | sha256sum
//! scopes = ["admin", "query"]      # of "command", "query", "admin"
//! tenant = "acme"      # the key acts for this tenant only; without one it is an
//!                      # operator key, which names a tenant per request (`Parallax-Tenant`)
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod db;
mod http;

pub use db::{redact_url, DbKind, DbSettings, LogKind, LogSettings};
pub use http::{ApiKeySettings, HttpSettings, ReadinessSettings, Scope};

/// What a process does; a process may play several roles.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The command API and the command handlers (write side).
    Command,
    /// Publishes the event store to Kafka (one active across processes).
    Relay,
    /// Keeps the views up to date.
    Projector,
    /// The checkout saga (one active across processes).
    Saga,
    /// The query API (read side).
    Query,
}

impl Role {
    /// Every role: the default.
    pub const ALL: [Role; 5] = [Role::Command, Role::Relay, Role::Projector, Role::Saga, Role::Query];
}

/// Validated settings of a shop process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Folder of the embedded databases (`events.db`, `views.db`).
    pub data_dir: PathBuf,
    /// What this process does.
    pub roles: BTreeSet<Role>,
    /// The event store.
    pub write_db: DbSettings,
    /// The views.
    pub read_db: DbSettings,
    /// Between them.
    pub log: LogSettings,
    /// What `/ready` asks.
    #[serde(default)]
    pub readiness: ReadinessSettings,
    /// The HTTP server's limits.
    #[serde(default)]
    pub http: HttpSettings,
    /// Keys the API asks for; none: the API is open (loopback only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKeySettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self::embedded("127.0.0.1:8080".parse().expect("a valid address"), PathBuf::from("./data"))
    }
}

/// Settings that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Every role, embedded, with its databases under `data_dir`.
    pub fn embedded(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            roles: Role::ALL.into_iter().collect(),
            write_db: DbSettings::sqlite(),
            read_db: DbSettings::sqlite(),
            log: LogSettings::default(),
            readiness: ReadinessSettings::default(),
            http: HttpSettings::default(),
            api_keys: Vec::new(),
        }
    }

    /// The defaults, overlaid with the TOML file `file` (if any) and the
    /// `SHOP__…` environment, validated.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        let settings: Settings = figment
            .merge(Env::prefixed("SHOP__").split("__"))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses settings that cannot work, saying why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (side, db) in [("write_db", &self.write_db), ("read_db", &self.read_db)] {
            if db.kind == DbKind::Postgres && db.url.as_deref().is_none_or(str::is_empty) {
                return Err(ConfigError(format!("{side}.kind = \"postgres\" needs {side}.url")));
            }
        }
        if self.write_db.kind == DbKind::Cassandra {
            return Err(ConfigError(
                "write_db.kind = \"cassandra\" is not supported: the event store needs PostgreSQL or SQLite \
                 (Cassandra holds the read side)"
                    .into(),
            ));
        }
        if self.read_db.kind == DbKind::Cassandra {
            if self.read_db.cassandra_nodes().is_empty() {
                return Err(ConfigError(
                    "read_db.kind = \"cassandra\" needs read_db.nodes (\"host:port,…\")".into(),
                ));
            }
            let keyspace = self.read_db.cassandra_keyspace();
            let valid = keyspace.starts_with(|c: char| c.is_ascii_lowercase())
                && keyspace.len() <= 48
                && keyspace.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(ConfigError(format!(
                    "read_db.keyspace = {keyspace:?}: start with a letter, then lowercase letters, digits or '_' (48 at most)"
                )));
            }
            if self.read_db.replication_factor == Some(0) {
                return Err(ConfigError("read_db.replication_factor = 0: a keyspace needs a replica".into()));
            }
            self.read_db.cassandra_config()?;
        }
        if self.log.kind == LogKind::Kafka {
            if self.write_db.kind != DbKind::Postgres {
                return Err(ConfigError(
                    "log.kind = \"kafka\" needs write_db.kind = \"postgres\" (the relay's lease lives there)"
                        .into(),
                ));
            }
            if self.log.partitions == 0 || self.log.brokers.is_empty() || self.log.topic.is_empty() {
                return Err(ConfigError(
                    "log.kind = \"kafka\" needs brokers, a topic and partitions >= 1".into(),
                ));
            }
            // The topic's settings, as the Kafka adapter checks them.
            crate::app::kafka_config(self).validate().map_err(|e| ConfigError(format!("log: {e}")))?;
        }
        if self.roles.is_empty() {
            return Err(ConfigError("a process needs at least one role".into()));
        }
        self.http.validate()?;
        let mut names = BTreeSet::new();
        for key in &self.api_keys {
            if key.name.is_empty() || !names.insert(key.name.as_str()) {
                return Err(ConfigError(format!(
                    "api_keys: names must be present and unique ({:?})",
                    key.name
                )));
            }
            if key.digest().is_none() {
                return Err(ConfigError(format!(
                    "api_keys {:?}: key_sha256 must be 64 hex digits (printf %s \"$KEY\" | sha256sum)",
                    key.name
                )));
            }
            if key.scopes.is_empty() {
                return Err(ConfigError(format!(
                    "api_keys {:?}: scopes must name command, query or admin",
                    key.name
                )));
            }
            if let Err(e) = key.tenant() {
                return Err(ConfigError(format!("api_keys {:?}: {e}", key.name)));
            }
        }
        Ok(())
    }

    /// Refuses to serve an open API beyond this machine: without API keys
    /// the address must be a loopback one.
    pub fn validate_exposure(&self) -> Result<(), ConfigError> {
        if self.api_keys.is_empty() && !self.listen.ip().is_loopback() {
            return Err(ConfigError(format!(
                "refusing to listen on {} without api_keys: configure [[api_keys]] (see the README, \"Access\") \
                 or listen on a loopback address such as 127.0.0.1",
                self.listen
            )));
        }
        Ok(())
    }

    /// Whether this process plays `role`.
    pub fn plays(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Partitions of the log, as consistency tokens count them.
    pub fn partitions(&self) -> u32 {
        match self.log.kind {
            LogKind::Embedded => 1,
            LogKind::Kafka => self.log.partitions,
        }
    }

    /// The write database's file (SQLite).
    pub fn events_path(&self) -> PathBuf {
        self.data_dir.join("events.db")
    }

    /// The read database's file (SQLite).
    pub fn views_path(&self) -> PathBuf {
        self.data_dir.join("views.db")
    }
}

#[cfg(test)]
// figment's `Jail` closures return its (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;
    use std::time::Duration;

    #[test]
    fn defaults_are_the_embedded_shape() {
        Jail::expect_with(|_| {
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings, Settings::default());
            assert_eq!(settings.roles.len(), 5);
            assert_eq!(settings.partitions(), 1);
            Ok(())
        });
    }

    #[test]
    fn the_environment_overrides_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "shop.toml",
                r#"
                roles = ["query"]
                [write_db]
                kind = "postgres"
                url = "postgres://u:p@127.0.0.1:5432/events"
                [log]
                kind = "kafka"
                partitions = 8
                [read_db]
                kind = "postgres"
                url = "postgres://u:p@127.0.0.1:5432/views"
                "#,
            )?;
            jail.set_env("SHOP__LOG__PARTITIONS", "4");
            jail.set_env("SHOP__READ_DB__URL", "postgres://u:p@127.0.0.1:5432/other");
            let settings = Settings::load(Some(Path::new("shop.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(settings.roles, [Role::Query].into_iter().collect());
            assert_eq!(settings.log.kind, LogKind::Kafka);
            assert_eq!(settings.partitions(), 4);
            assert_eq!(settings.write_db.url.as_deref(), Some("postgres://u:p@127.0.0.1:5432/events"));
            assert_eq!(settings.read_db.url.as_deref(), Some("postgres://u:p@127.0.0.1:5432/other"));
            Ok(())
        });
    }

    #[test]
    fn settings_that_cannot_work_are_refused_precisely() {
        Jail::expect_with(|jail| {
            jail.set_env("SHOP__WRITE_DB__KIND", "postgres");
            let error = Settings::load(None).expect_err("postgres without a URL");
            assert!(error.to_string().contains("write_db.url"), "{error}");
            jail.set_env("SHOP__WRITE_DB__URL", "postgres://u:p@127.0.0.1/e");
            jail.set_env("SHOP__LOG__KIND", "kafka");
            jail.set_env("SHOP__LOG__PARTITIONS", "0");
            let error = Settings::load(None).expect_err("zero partitions");
            assert!(error.to_string().contains("partitions"), "{error}");
            jail.set_env("SHOP__LOG__KIND", "carrier-pigeon");
            let error = Settings::load(None).expect_err("an unknown log kind");
            assert!(error.to_string().contains("carrier-pigeon"), "{error}");
            let missing = Settings::load(Some(Path::new("nowhere.toml"))).expect_err("a missing file");
            assert!(missing.to_string().contains("nowhere.toml"), "{missing}");
            Ok(())
        });
    }

    #[test]
    fn the_topic_settings_come_from_the_file_and_are_checked() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "shop.toml",
                "[write_db]\nkind = \"postgres\"\nurl = \"postgres://u:p@127.0.0.1/e\"\n\
                 [log]\nkind = \"kafka\"\nreplication = 3\nmin_insync_replicas = 2\n",
            )?;
            let settings = Settings::load(Some(Path::new("shop.toml"))).map_err(|e| e.to_string())?;
            let kafka = crate::app::kafka_config(&settings);
            assert_eq!(
                (kafka.replication, kafka.min_insync_replicas, kafka.retention_ms),
                (Some(3), Some(2), None)
            );
            let unset = Settings::default();
            assert_eq!(
                (unset.log.replication, unset.log.min_insync_replicas, unset.log.retention_ms),
                (None, None, None)
            );
            let cases = [
                (
                    "SHOP__LOG__MIN_INSYNC_REPLICAS",
                    "4",
                    "min_insync_replicas is 4, above the replication (3)",
                ),
                ("SHOP__LOG__REPLICATION", "0", "replication is 0"),
                ("SHOP__LOG__RETENTION_MS", "0", "retention_ms is 0"),
            ];
            for (key, value, expected) in cases {
                jail.set_env(key, value);
                let error = Settings::load(Some(Path::new("shop.toml"))).expect_err(key);
                assert!(
                    error.to_string().contains("log: invalid Kafka configuration")
                        && error.to_string().contains(expected),
                    "{error}"
                );
                jail.clear_env();
            }
            Ok(())
        });
    }

    #[test]
    fn cassandra_levels_and_replicas_come_from_the_settings_and_are_checked() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "shop.toml",
                "[read_db]\nkind = \"cassandra\"\nnodes = \"127.0.0.2:9042,127.0.0.3:9042\"\n",
            )?;
            let settings = Settings::load(Some(Path::new("shop.toml"))).map_err(|e| e.to_string())?;
            let config = settings.read_db.cassandra_config().map_err(|e| e.to_string())?;
            assert_eq!(config.nodes, ["127.0.0.2:9042", "127.0.0.3:9042"]);
            assert_eq!(config.replication_factor, None, "decided from the ring");
            assert_eq!(config.consistency, parallax_cassandra::Consistency::LocalQuorum);
            jail.set_env("SHOP__READ_DB__CONSISTENCY", "quorum");
            jail.set_env("SHOP__READ_DB__REPLICATION_FACTOR", "5");
            let settings = Settings::load(Some(Path::new("shop.toml"))).map_err(|e| e.to_string())?;
            let config = settings.read_db.cassandra_config().map_err(|e| e.to_string())?;
            assert_eq!(config.consistency, parallax_cassandra::Consistency::Quorum);
            assert_eq!(config.replication_factor, Some(5));
            jail.set_env("SHOP__READ_DB__CONSISTENCY", "LOCAL_QUOROM");
            let error = Settings::load(Some(Path::new("shop.toml"))).expect_err("a typo");
            assert_eq!(
                error.to_string(),
                "invalid configuration: read_db.consistency = \"LOCAL_QUOROM\": \"LOCAL_QUOROM\" is not a Cassandra consistency \
                 level; use one of ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, LOCAL_ONE"
            );
            jail.set_env("SHOP__READ_DB__CONSISTENCY", "SERIAL");
            let error = Settings::load(Some(Path::new("shop.toml"))).expect_err("a serial level");
            assert!(error.to_string().contains("SERIAL is a serial level"), "{error}");
            jail.set_env("SHOP__READ_DB__CONSISTENCY", "ONE");
            jail.set_env("SHOP__READ_DB__REPLICATION_FACTOR", "0");
            let error = Settings::load(Some(Path::new("shop.toml"))).expect_err("no replica");
            assert!(error.to_string().contains("read_db.replication_factor = 0"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn http_limits_default_and_are_checked() {
        Jail::expect_with(|jail| {
            jail.create_file("shop.toml", "[http]\nmax_connections = 64\n")?;
            jail.set_env("SHOP__HTTP__HEADER_READ_TIMEOUT_SECS", "2");
            jail.set_env("SHOP__HTTP__IDLE_TIMEOUT_SECS", "2");
            let settings = Settings::load(Some(Path::new("shop.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(settings.http.max_connections, 64);
            assert_eq!(settings.http.header_read_timeout(), Duration::from_secs(2));
            assert_eq!(settings.http.request_timeout_secs, HttpSettings::default().request_timeout_secs);

            jail.set_env("SHOP__HTTP__IDLE_TIMEOUT_SECS", "3");
            let error = Settings::load(None).expect_err("idle beyond the header-read timeout");
            assert!(error.to_string().contains("http.idle_timeout_secs (3)"), "{error}");
            jail.set_env("SHOP__HTTP__IDLE_TIMEOUT_SECS", "1");
            jail.set_env("SHOP__HTTP__MAX_STREAMS_PER_KEY", "0");
            let error = Settings::load(None).expect_err("no stream per key");
            assert!(error.to_string().contains("http.max_streams_per_key must be at least 1"), "{error}");
            Ok(())
        });
    }

    const KEY_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn api_keys_come_from_the_file_or_the_environment_and_are_checked() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "shop.toml",
                &format!(
                    r#"
                    [[api_keys]]
                    name = "ops"
                    key_sha256 = "{KEY_HASH}"
                    scopes = ["admin", "query"]
                    "#
                ),
            )?;
            let settings = Settings::load(Some(Path::new("shop.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(settings.api_keys.len(), 1);
            assert_eq!(settings.api_keys[0].scopes, [Scope::Admin, Scope::Query].into_iter().collect());
            assert!(settings.api_keys[0].digest().is_some());

            jail.set_env(
                "SHOP__API_KEYS",
                format!(r#"[{{name="ci",key_sha256="{KEY_HASH}",scopes=["command"]}}]"#),
            );
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.api_keys[0].name, "ci");
            assert_eq!(settings.api_keys[0].scopes, [Scope::Command].into_iter().collect());

            jail.set_env("SHOP__API_KEYS", r#"[{name="ci",key_sha256="abc",scopes=["command"]}]"#);
            let error = Settings::load(None).expect_err("a short hash");
            assert!(error.to_string().contains("64 hex digits"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn an_open_api_listens_on_loopback_only() {
        let mut settings = Settings::embedded("0.0.0.0:8080".parse().expect("an address"), "d".into());
        let error = settings.validate_exposure().expect_err("open on every interface");
        assert!(error.to_string().contains("refusing to listen on 0.0.0.0:8080 without api_keys"), "{error}");
        settings.listen = "[::1]:8080".parse().expect("an address");
        settings.validate_exposure().expect("loopback");
        settings.listen = "0.0.0.0:8080".parse().expect("an address");
        settings.api_keys.push(ApiKeySettings {
            name: "ops".into(),
            key_sha256: KEY_HASH.into(),
            scopes: [Scope::Admin].into_iter().collect(),
            tenant: None,
        });
        settings.validate_exposure().expect("keys configured");
    }

    #[test]
    fn debug_output_holds_no_secrets() {
        let mut settings = Settings::default();
        settings.write_db.kind = DbKind::Postgres;
        settings.write_db.url = Some("postgres://shop:hunter2@db:5432/events".into());
        settings.read_db.kind = DbKind::Postgres;
        settings.read_db.url =
            Some("postgres://db:5432/views?user=shop&password=swordfish&sslmode=require".into());
        settings.api_keys.push(ApiKeySettings {
            name: "ops".into(),
            key_sha256: KEY_HASH.into(),
            scopes: [Scope::Admin].into_iter().collect(),
            tenant: None,
        });
        for shown in [format!("{settings:?}"), format!("{settings:#?}")] {
            for secret in ["hunter2", "swordfish", KEY_HASH] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
            assert!(shown.contains("postgres://shop:***@db:5432/events"), "{shown}");
            assert!(shown.contains("password=***&sslmode=require"), "{shown}");
            assert!(shown.contains("\"ops\""), "{shown}");
        }
    }
}
