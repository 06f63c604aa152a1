//! Where the log lives in Kafka, and the librdkafka settings each client
//! gets from it.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::ClientConfig;

use crate::error::ConfigError;

/// The topic that carries the log, and how to reach it.
///
/// The partition count is part of the contract: streams are placed by
/// [`partition_for`](parallax_core::partition_for)`(stream, partitions)`, and
/// consistency tokens name partitions, so every relay and projector of a
/// system must agree on it and the topic must have exactly that many
/// partitions ([`ensure_topic`](crate::ensure_topic) checks).
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port` (`"127.0.0.1:9092"`).
    pub brokers: String,
    /// The topic, e.g. `"shop.events"`.
    pub topic: String,
    /// The topic's partition count (at least 1).
    pub partitions: u32,
    /// The CloudEvents `source` of every event published, e.g. `"/shop"`.
    pub source: String,
    /// Replication factor used when [`ensure_topic`](crate::ensure_topic)
    /// creates the topic; `None`: 3 when the cluster has at least 3
    /// brokers, else 1 (decided from the cluster's metadata then).
    pub replication: Option<u16>,
    /// The topic's `min.insync.replicas`: how many replicas must hold a
    /// message before an `acks=all` publish is acknowledged. `None`: 2, or
    /// the replication when that is lower. Never above the replication.
    pub min_insync_replicas: Option<u16>,
    /// The topic's `retention.ms`; `None`: -1, kept forever (the topic is
    /// a copy of the event store, and projectors stop at a hole that
    /// retention made: Architecture invariant 21).
    pub retention_ms: Option<i64>,
    /// librdkafka settings passed through to every client (security, timeouts,
    /// tuning), applied over this crate's defaults. The settings the delivery
    /// guarantees rest on are fixed and cannot be overridden here.
    pub client_options: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// A config for `topic` with `partitions` partitions on `brokers`,
    /// publishing with CloudEvents source `source`; replication,
    /// `min.insync.replicas` and retention as their fields say for `None`.
    pub fn new(
        brokers: impl Into<String>,
        topic: impl Into<String>,
        partitions: u32,
        source: impl Into<String>,
    ) -> Self {
        Self {
            brokers: brokers.into(),
            topic: topic.into(),
            partitions,
            source: source.into(),
            replication: None,
            min_insync_replicas: None,
            retention_ms: None,
            client_options: BTreeMap::new(),
        }
    }

    /// Sets the replication factor used when the topic is created.
    pub fn with_replication(mut self, replication: u16) -> Self {
        self.replication = Some(replication);
        self
    }

    /// Sets the topic's `min.insync.replicas`.
    pub fn with_min_insync_replicas(mut self, replicas: u16) -> Self {
        self.min_insync_replicas = Some(replicas);
        self
    }

    /// Sets the topic's `retention.ms` (-1: forever).
    pub fn with_retention_ms(mut self, retention_ms: i64) -> Self {
        self.retention_ms = Some(retention_ms);
        self
    }

    /// Adds a librdkafka setting for every client.
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client_options.insert(key.into(), value.into());
        self
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.brokers.trim().is_empty() {
            return invalid("brokers is empty; expected host:port[,host:port...]".to_owned());
        }
        if let Err(reason) = check_topic_name(&self.topic) {
            return invalid(format!("topic {:?} {reason}", self.topic));
        }
        if self.partitions == 0 || i32::try_from(self.partitions).is_err() {
            return invalid(format!("partitions is {}; expected 1..={}", self.partitions, i32::MAX));
        }
        if self.source.is_empty() {
            return invalid("source (the CloudEvents source, e.g. \"/shop\") is empty".to_owned());
        }
        if self.replication == Some(0) {
            return invalid("replication is 0; expected at least 1".to_owned());
        }
        match (self.min_insync_replicas, self.replication) {
            (Some(0), _) => return invalid("min_insync_replicas is 0; expected at least 1".to_owned()),
            (Some(min), Some(replication)) if min > replication => {
                return invalid(format!(
                    "min_insync_replicas is {min}, above the replication ({replication}): no publish could \
                     ever be acknowledged"
                ))
            }
            _ => {}
        }
        if let Some(retention) = self.retention_ms.filter(|&ms| ms == 0 || ms < -1) {
            return invalid(format!(
                "retention_ms is {retention}; expected -1 (keep every message) or a positive number of \
                 milliseconds"
            ));
        }
        Ok(())
    }

    /// `defaults`, then the pass-through options, then `fixed` (refusing a
    /// pass-through option that contradicts one of them).
    pub(crate) fn client_config(
        &self,
        defaults: &[(&str, &str)],
        fixed: &[(&str, &str)],
    ) -> Result<ClientConfig, ConfigError> {
        self.validate()?;
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers).set("client.id", "parallax");
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.client_options {
            config.set(key, value);
        }
        for (key, value) in fixed {
            if let Some(given) = self.client_options.get(*key) {
                if given != value {
                    return Err(ConfigError::Invalid(format!(
                        "librdkafka option {key}={given} is not allowed: parallax-kafka's delivery \
                         guarantees need {key}={value}"
                    )));
                }
            }
            config.set(*key, *value);
        }
        Ok(config)
    }
}

/// Kafka's rules for topic names.
fn check_topic_name(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        return Err("is empty");
    }
    if topic.len() > 249 {
        return Err("is longer than 249 characters");
    }
    if topic == "." || topic == ".." {
        return Err("is not a legal topic name");
    }
    if !topic.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err("may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

impl fmt::Debug for KafkaConfig {
    /// Pass-through option values are left out: they may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .field("source", &self.source)
            .field("replication", &self.replication)
            .field("min_insync_replicas", &self.min_insync_replicas)
            .field("retention_ms", &self.retention_ms)
            .field("client_options", &self.client_options.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> KafkaConfig {
        KafkaConfig::new("127.0.0.1:9092", "shop.events", 8, "/shop")
    }

    #[test]
    fn a_complete_config_is_valid() {
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn unusable_settings_are_refused_precisely() {
        let cases = [
            (KafkaConfig { partitions: 0, ..valid() }, "partitions is 0"),
            (KafkaConfig { topic: "shop events".into(), ..valid() }, "may contain only"),
            (KafkaConfig { topic: String::new(), ..valid() }, "is empty"),
            (KafkaConfig { brokers: " ".into(), ..valid() }, "brokers is empty"),
            (KafkaConfig { source: String::new(), ..valid() }, "source"),
            (valid().with_replication(0), "replication is 0"),
            (valid().with_min_insync_replicas(0), "min_insync_replicas is 0"),
            (valid().with_replication(2).with_min_insync_replicas(3), "min_insync_replicas is 3, above"),
            (valid().with_retention_ms(0), "retention_ms is 0"),
            (valid().with_retention_ms(-2), "retention_ms is -2"),
        ];
        for (config, expected) in cases {
            let error = config.validate().expect_err("invalid config accepted").to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
    }

    #[test]
    fn fixed_options_cannot_be_overridden() {
        let config = valid().with_option("acks", "1");
        let error = config.client_config(&[], &[("acks", "all")]).expect_err("acks=1 accepted").to_string();
        assert!(error.contains("acks=1") && error.contains("acks=all"), "{error}");
        let same = valid().with_option("acks", "all");
        assert!(same.client_config(&[], &[("acks", "all")]).is_ok());
    }

    #[test]
    fn pass_through_options_override_defaults() {
        let config = valid().with_option("linger.ms", "50");
        let client = config.client_config(&[("linger.ms", "5")], &[]).expect("valid");
        assert_eq!(client.get("linger.ms"), Some("50"));
        assert_eq!(client.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    }

    #[test]
    fn debug_leaves_option_values_out() {
        let config = valid().with_option("sasl.password", "hunter2");
        let debug = format!("{config:?}");
        assert!(debug.contains("sasl.password") && !debug.contains("hunter2"), "{debug}");
    }
}
