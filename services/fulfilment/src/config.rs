//! Settings: defaults, then a TOML file, then `FULFILMENT__SECTION__KEY`
//! environment variables (`FULFILMENT__DB__URL`, `FULFILMENT__KAFKA__TOPIC`).
//!
//! The defaults are the embedded shape beside the embedded shop started in
//! the same folder (`cargo run --release`: its files in `./data`, its API on
//! 8080); `config/fulfilment.toml` is the distributed shape on one machine,
//! beside a shop run with `config/distributed.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::warehouse::Delays;

/// Everything the service is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Which stores and which source.
    pub shape: Shape,
    /// Where the query API listens.
    pub listen: SocketAddr,
    /// The shop's command API, told of every dispatch.
    pub shop_url: String,
    /// How long a call to the shop may take before it is tried again.
    pub shop_timeout_ms: u64,
    /// A key of the shop's with the `command` scope, sent as
    /// `Authorization: Bearer`; none for a shop whose API is open. Set it
    /// from the environment (`FULFILMENT__SHOP_API_KEY`) rather than a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop_api_key: Option<ApiKey>,
    /// Embedded: the shop's event store file, read only.
    pub shop_events: PathBuf,
    /// Embedded: fulfilment's own files (`events.db`, `views.db`).
    pub data_dir: PathBuf,
    /// Distributed: fulfilment's own database, its event store and views.
    pub db: DbSettings,
    /// Distributed: the shop's topic.
    pub kafka: KafkaSettings,
    /// How long the warehouse takes for each step.
    pub warehouse: WarehouseSettings,
}

/// A secret that never appears in logs: its `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<hidden>)")
    }
}

/// Where fulfilment keeps its events and views, and what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// SQLite files of its own in `data_dir`; the embedded shop's event
    /// store (`shop_events`) tailed read-only, by polling.
    Embedded,
    /// PostgreSQL (`db`) and the shop's Kafka topic (`kafka`).
    Distributed,
}

/// Fulfilment's PostgreSQL database (`fulfilment migrate` creates it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbSettings {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
}

/// The shop's Kafka topic, read as consumer group `group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// The shop's topic (`log.topic` of the shop's configuration).
    pub topic: String,
    /// Fulfilment's consumer group: its own, never one of the shop's.
    pub group: String,
}

/// Delays of the warehouse's steps, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseSettings {
    /// Before picking.
    pub pick_ms: u64,
    /// Before packing.
    pub pack_ms: u64,
    /// Before dispatching.
    pub dispatch_ms: u64,
}

impl WarehouseSettings {
    /// The delays as durations.
    pub fn delays(&self) -> Delays {
        Delays {
            pick: Duration::from_millis(self.pick_ms),
            pack: Duration::from_millis(self.pack_ms),
            dispatch: Duration::from_millis(self.dispatch_ms),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            shape: Shape::Embedded,
            listen: SocketAddr::from(([127, 0, 0, 1], 8091)),
            shop_url: "http://127.0.0.1:8080".into(),
            shop_timeout_ms: 5_000,
            shop_api_key: None,
            shop_events: PathBuf::from("data/events.db"),
            data_dir: PathBuf::from("fulfilment-data"),
            db: DbSettings {
                url: "postgres://parallax:parallax@127.0.0.1:5432/fulfilment".into(),
                max_connections: 8,
            },
            kafka: KafkaSettings {
                brokers: "127.0.0.1:9092".into(),
                topic: "shop.events".into(),
                group: "fulfilment".into(),
            },
            warehouse: WarehouseSettings::default(),
        }
    }
}

impl Settings {
    /// The defaults, overridden by `file` (if given) and the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            anyhow::ensure!(file.is_file(), "config file {} does not exist", file.display());
            figment = figment.merge(Toml::file(file));
        }
        let settings: Settings = figment.merge(Env::prefixed("FULFILMENT__").split("__")).extract()?;
        anyhow::ensure!(!settings.kafka.group.is_empty(), "kafka.group is empty");
        anyhow::ensure!(
            settings.shop_url.starts_with("http://") || settings.shop_url.starts_with("https://"),
            "shop_url {:?} is not an http(s) URL",
            settings.shop_url
        );
        Ok(settings)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return its large error
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_is_the_defaults_distributed() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/fulfilment.toml");
        let from_file: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            .extract()
            .expect("config/fulfilment.toml is valid");
        assert_eq!(from_file, Settings { shape: Shape::Distributed, ..Settings::default() });
    }

    #[test]
    fn the_shop_key_comes_from_the_environment_and_stays_out_of_logs() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FULFILMENT__SHOP_API_KEY", "s3cret");
            let settings = Settings::load(None).expect("valid settings");
            assert_eq!(settings.shop_api_key, Some(ApiKey("s3cret".into())));
            assert!(!format!("{settings:?}").contains("s3cret"));
            Ok(())
        });
    }
}
