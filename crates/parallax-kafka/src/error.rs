//! Errors of the Kafka adapter's own operations: configuration and topic
//! administration. Publishing and consuming report the core's
//! [`LogError`](parallax_core::LogError), as their ports require.

use rdkafka::error::KafkaError;

/// Why a sink or a source could not be made from a [`KafkaConfig`](crate::KafkaConfig).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is unusable.
    #[error("invalid Kafka configuration: {0}")]
    Invalid(String),
    /// librdkafka refused the client configuration.
    #[error("creating the Kafka {client}")]
    Client {
        /// Which client: `"producer"`, `"consumer"`, `"admin client"`.
        client: &'static str,
        /// librdkafka's answer.
        #[source]
        source: KafkaError,
    },
}

/// Why the topic could not be checked or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic exists with another partition count. Streams are placed by
    /// `partition_for(stream, partitions)` and consistency tokens name
    /// partitions, so the count cannot change under a running system.
    #[error(
        "Kafka topic {topic} has {actual} partitions, but {expected} are configured: the partition count \
         places every stream and is part of the consistency-token contract, so it must match (use a new \
         topic, or configure {actual})"
    )]
    PartitionMismatch {
        /// The topic.
        topic: String,
        /// The configured partition count.
        expected: u32,
        /// The topic's partition count.
        actual: u32,
    },
    /// The broker answered with an error, or did not answer.
    #[error("{action} Kafka topic {topic}")]
    Kafka {
        /// What was being done: `"creating"`, `"reading the metadata of"`.
        action: &'static str,
        /// The topic.
        topic: String,
        /// librdkafka's answer.
        #[source]
        source: KafkaError,
    },
    /// The topic was created but did not show up in the cluster metadata in time.
    #[error("Kafka topic {topic} was created but has not appeared in the cluster metadata after {waited:?}")]
    NotVisible {
        /// The topic.
        topic: String,
        /// How long it was awaited.
        waited: std::time::Duration,
    },
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
}
