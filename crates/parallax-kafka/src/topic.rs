//! ④ The topic: created once (by `shop migrate`, say) with the configured
//! partition count, replication, `min.insync.replicas` and retention, and
//! checked against them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::{ConfigError, TopicError};

/// How long one metadata request or topic creation may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a created topic may take to appear in the cluster metadata.
const VISIBLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`ensure_topic`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicStatus {
    /// The topic did not exist and was created.
    Created,
    /// The topic existed, with the configured partition count.
    Existed,
}

/// The settings a topic is created with, decided for one cluster from a
/// [`KafkaConfig`] and the number of brokers the cluster has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSettings {
    /// Replicas of each partition.
    pub replication: u16,
    /// `min.insync.replicas`: replicas that must hold a message before an
    /// `acks=all` publish is acknowledged.
    pub min_insync_replicas: u16,
    /// `retention.ms` (-1: forever).
    pub retention_ms: i64,
}

impl TopicSettings {
    /// What `config` asks for on a cluster of `brokers` brokers: the
    /// configured values, else replication 3 with at least 3 brokers (1
    /// otherwise), `min.insync.replicas` 2 (the replication when lower),
    /// retention forever.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `min.insync.replicas` would be above
    /// the replication: no publish could be acknowledged.
    pub fn decide(config: &KafkaConfig, brokers: usize) -> Result<Self, ConfigError> {
        let replication = config.replication.unwrap_or(if brokers >= 3 { 3 } else { 1 });
        let min_insync_replicas = config.min_insync_replicas.unwrap_or(2.min(replication));
        if min_insync_replicas > replication {
            return Err(ConfigError::Invalid(format!(
                "min_insync_replicas is {min_insync_replicas}, above the replication ({replication}{}): no \
                 publish could ever be acknowledged",
                if config.replication.is_none() {
                    format!(", for a cluster of {brokers} brokers")
                } else {
                    String::new()
                }
            )));
        }
        Ok(Self { replication, min_insync_replicas, retention_ms: config.retention_ms.unwrap_or(-1) })
    }
}

/// A setting an existing topic has other than the configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDifference {
    /// Kafka's name of the setting: `replication`, `min.insync.replicas`, `retention.ms`.
    pub setting: &'static str,
    /// What the topic has.
    pub topic_has: String,
    /// What the configuration asks for.
    pub configured: String,
}

impl fmt::Display for TopicDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {} on the topic, {} configured", self.setting, self.topic_has, self.configured)
    }
}

/// Creates the configured topic with `partitions` partitions and the
/// [`TopicSettings`] decided for the cluster if it is missing; checks the
/// partition count of one that exists, and logs a warning naming each of
/// its settings that differs from the configuration (the topic is left as
/// it is: changing its replication is an operator's reassignment).
/// Idempotent, and safe to race with another caller.
///
/// # Errors
/// [`TopicError::PartitionMismatch`] if the topic has another partition
/// count; [`TopicError::Kafka`] if the cluster refuses or does not answer.
pub async fn ensure_topic(config: &KafkaConfig) -> Result<TopicStatus, TopicError> {
    let admin = admin_client(config)?;
    let (found, brokers) = read_topic(&admin, &config.topic).await?;
    if let Some(shape) = found {
        check(config, shape.partitions)?;
        warn_differences(config, &admin).await?;
        return Ok(TopicStatus::Existed);
    }
    let settings = TopicSettings::decide(config, brokers)?;
    let replication = TopicReplication::Fixed(i32::from(settings.replication));
    let partitions = i32::try_from(config.partitions)
        .map_err(|_| ConfigError::Invalid(format!("partitions is {}; too many", config.partitions)))?;
    let (min_insync, retention) =
        (settings.min_insync_replicas.to_string(), settings.retention_ms.to_string());
    let new_topic = NewTopic::new(&config.topic, partitions, replication)
        .set("min.insync.replicas", &min_insync)
        .set("retention.ms", &retention);
    let options =
        AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)).request_timeout(Some(REQUEST_TIMEOUT));
    let creating = |source| TopicError::Kafka { action: "creating", topic: config.topic.clone(), source };
    let results = admin.create_topics([&new_topic], &options).await.map_err(creating)?;
    let mut status = TopicStatus::Created;
    for result in results {
        match result {
            Ok(_) => {}
            // Another caller created it meanwhile: check it like an existing one.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => status = TopicStatus::Existed,
            Err((_, code)) => return Err(creating(KafkaError::AdminOp(code))),
        }
    }
    let waited = tokio::time::Instant::now();
    loop {
        if let (Some(shape), _) = read_topic(&admin, &config.topic).await? {
            check(config, shape.partitions)?;
            if status == TopicStatus::Existed {
                warn_differences(config, &admin).await?;
            }
            tracing::info!(
                topic = config.topic,
                partitions = shape.partitions,
                replication = shape.replication,
                ?status,
                "Kafka topic ready"
            );
            return Ok(status);
        }
        if waited.elapsed() >= VISIBLE_TIMEOUT {
            return Err(TopicError::NotVisible { topic: config.topic.clone(), waited: VISIBLE_TIMEOUT });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each setting of the existing configured topic that differs from the
/// [`TopicSettings`] the configuration asks for on this cluster (none when
/// the topic does not exist).
///
/// # Errors
/// [`TopicError::Kafka`] if the cluster refuses or does not answer.
pub async fn topic_differences(config: &KafkaConfig) -> Result<Vec<TopicDifference>, TopicError> {
    let admin = admin_client(config)?;
    differences(config, &admin).await
}

async fn warn_differences(config: &KafkaConfig, admin: &Admin) -> Result<(), TopicError> {
    for difference in differences(config, admin).await? {
        tracing::warn!(
            topic = config.topic,
            setting = difference.setting,
            topic_has = difference.topic_has,
            configured = difference.configured,
            "Kafka topic {} differs from the configuration: {difference}; it is left as it is",
            config.topic
        );
    }
    Ok(())
}

async fn differences(config: &KafkaConfig, admin: &Admin) -> Result<Vec<TopicDifference>, TopicError> {
    let (Some(shape), brokers) = read_topic(admin, &config.topic).await? else { return Ok(Vec::new()) };
    let wanted = TopicSettings::decide(config, brokers)?;
    let describing = |source| TopicError::Kafka {
        action: "describing the settings of",
        topic: config.topic.clone(),
        source,
    };
    let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(&config.topic)], &options)
        .await
        .map_err(describing)?;
    let resource = described
        .into_iter()
        .next()
        .ok_or(describing(KafkaError::AdminOpCreation("no answer for the topic".to_owned())))?
        .map_err(|code| describing(KafkaError::AdminOp(code)))?;
    let value = |name: &str| resource.get(name).and_then(|entry| entry.value.clone()).unwrap_or_default();
    let mut found = Vec::new();
    let mut compare = |setting: &'static str, topic_has: String, configured: String| {
        if topic_has != configured {
            found.push(TopicDifference { setting, topic_has, configured });
        }
    };
    compare("replication", shape.replication.to_string(), wanted.replication.to_string());
    compare("min.insync.replicas", value("min.insync.replicas"), wanted.min_insync_replicas.to_string());
    compare("retention.ms", value("retention.ms"), wanted.retention_ms.to_string());
    Ok(found)
}

/// Replaces the configured topic's settings with `settings` (Kafka's
/// AlterConfigs: a setting not given returns to the broker's default). For
/// tests and tools, such as the fault suite's negative control.
pub async fn alter_topic_settings(config: &KafkaConfig, settings: &[(&str, &str)]) -> Result<(), TopicError> {
    let admin = admin_client(config)?;
    let altering = |source| TopicError::Kafka {
        action: "altering the settings of",
        topic: config.topic.clone(),
        source,
    };
    let alter = settings
        .iter()
        .fold(AlterConfig::new(ResourceSpecifier::Topic(&config.topic)), |alter, (key, value)| {
            alter.set(key, value)
        });
    let options =
        AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)).request_timeout(Some(REQUEST_TIMEOUT));
    for result in admin.alter_configs([&alter], &options).await.map_err(altering)? {
        result.map_err(|(_, code)| altering(KafkaError::AdminOp(code)))?;
    }
    Ok(())
}

/// Deletes the configured topic and everything on it; a missing topic is
/// fine. For tests and tools: a running system keeps its topic.
pub async fn delete_topic(config: &KafkaConfig) -> Result<(), TopicError> {
    let admin = admin_client(config)?;
    let options =
        AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)).request_timeout(Some(REQUEST_TIMEOUT));
    let deleting = |source| TopicError::Kafka { action: "deleting", topic: config.topic.clone(), source };
    let results = admin.delete_topics(&[config.topic.as_str()], &options).await.map_err(deleting)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((_, code)) => return Err(deleting(KafkaError::AdminOp(code))),
        }
    }
    Ok(())
}

/// Deletes the messages of each given partition of the configured topic
/// below the given offset, as the broker's retention would; returns each
/// partition's earliest offset after it. For tests and tools: it loses
/// events for good.
pub async fn delete_records(
    config: &KafkaConfig,
    below: &[(u32, u64)],
) -> Result<Vec<(u32, u64)>, TopicError> {
    let admin = admin_client(config)?;
    let deleting =
        |source| TopicError::Kafka { action: "deleting records of", topic: config.topic.clone(), source };
    let mut offsets = TopicPartitionList::new();
    for &(partition, offset) in below {
        let (partition, offset) = (
            i32::try_from(partition).map_err(|_| ConfigError::Invalid(format!("partition {partition}")))?,
            i64::try_from(offset).map_err(|_| ConfigError::Invalid(format!("offset {offset}")))?,
        );
        offsets.add_partition_offset(&config.topic, partition, Offset::Offset(offset)).map_err(deleting)?;
    }
    let options =
        AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)).request_timeout(Some(REQUEST_TIMEOUT));
    let deleted = admin.delete_records(&offsets, &options).await.map_err(deleting)?;
    deleted
        .elements()
        .iter()
        .map(|element| {
            element.error().map_err(deleting)?;
            let earliest = match element.offset() {
                Offset::Offset(offset) => u64::try_from(offset).unwrap_or(0),
                _ => 0,
            };
            Ok((u32::try_from(element.partition()).unwrap_or(0), earliest))
        })
        .collect()
}

/// The partition count of the configured topic, or `None` if it does not exist.
pub async fn partition_count(config: &KafkaConfig) -> Result<Option<u32>, TopicError> {
    let admin = admin_client(config)?;
    read_partition_count(&admin, &config.topic).await
}

/// The end offset (high watermark: the offset the next message will get) of
/// each partition of the configured topic, by partition: how far a consumer
/// whose checkpoint holds an offset is behind, in messages.
pub async fn end_offsets(config: &KafkaConfig) -> Result<Vec<(u32, u64)>, TopicError> {
    Ok(watermarks(config).await?.into_iter().map(|(partition, _, end)| (partition, end)).collect())
}

/// The earliest offset (low watermark) each partition of the configured
/// topic still holds, by partition: a consumer whose checkpoint's offset is
/// below it will never read the messages in between (retention deleted
/// them).
pub async fn start_offsets(config: &KafkaConfig) -> Result<Vec<(u32, u64)>, TopicError> {
    Ok(watermarks(config).await?.into_iter().map(|(partition, start, _)| (partition, start)).collect())
}

/// Each partition's earliest and end offsets.
async fn watermarks(config: &KafkaConfig) -> Result<Vec<(u32, u64, u64)>, TopicError> {
    let admin = admin_client(config)?;
    let partitions = read_partition_count(&admin, &config.topic).await?.unwrap_or(0);
    let mut marks = Vec::with_capacity(partitions as usize);
    for partition in 0..partitions {
        let reading = |source| TopicError::Kafka {
            action: "reading the watermarks of",
            topic: config.topic.clone(),
            source,
        };
        let (low, high) = partition_watermarks(&admin, &config.topic, partition).await.map_err(reading)?;
        marks.push((partition, u64::try_from(low).unwrap_or(0), u64::try_from(high).unwrap_or(0)));
    }
    Ok(marks)
}

/// One partition's watermarks, from its leader. On a cluster the leader may
/// have just moved (a broker died, or came back and took its preferred
/// leaderships again): the answer of a former leader is asked again, with
/// fresh metadata, for up to [`REQUEST_TIMEOUT`].
async fn partition_watermarks(admin: &Admin, topic: &str, partition: u32) -> Result<(i64, i64), KafkaError> {
    let started = tokio::time::Instant::now();
    loop {
        let (admin, topic) = (Arc::clone(admin), topic.to_owned());
        let answer = crate::blocking(move || {
            admin.inner().fetch_watermarks(&topic, partition as i32, REQUEST_TIMEOUT)
        })
        .await;
        let moving = answer.as_ref().err().and_then(KafkaError::rdkafka_error_code).is_some_and(|code| {
            matches!(
                code,
                RDKafkaErrorCode::NotLeaderForPartition
                    | RDKafkaErrorCode::LeaderNotAvailable
                    | RDKafkaErrorCode::UnknownLeaderEpoch
                    | RDKafkaErrorCode::FencedLeaderEpoch
            )
        });
        if !moving || started.elapsed() >= REQUEST_TIMEOUT {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn check(config: &KafkaConfig, actual: u32) -> Result<(), TopicError> {
    if actual == config.partitions {
        Ok(())
    } else {
        Err(TopicError::PartitionMismatch {
            topic: config.topic.clone(),
            expected: config.partitions,
            actual,
        })
    }
}

type Admin = Arc<AdminClient<DefaultClientContext>>;

fn admin_client(config: &KafkaConfig) -> Result<Admin, ConfigError> {
    // Reading metadata must never create the topic as a side effect.
    config
        .client_config(&[], &[("allow.auto.create.topics", "false")])?
        .create()
        .map(Arc::new)
        .map_err(|source| ConfigError::Client { client: "admin client", source })
}

/// A topic as the cluster's metadata shows it.
#[derive(Debug, Clone, Copy)]
struct Shape {
    partitions: u32,
    /// Replicas of its first partition.
    replication: usize,
}

async fn read_partition_count(admin: &Admin, topic: &str) -> Result<Option<u32>, TopicError> {
    Ok(read_topic(admin, topic).await?.0.map(|shape| shape.partitions))
}

/// Reads the topic's metadata (a blocking librdkafka call, so off the
/// runtime): its shape if it exists, and how many brokers the cluster has.
async fn read_topic(admin: &Admin, topic: &str) -> Result<(Option<Shape>, usize), TopicError> {
    let reading =
        |source| TopicError::Kafka { action: "reading the metadata of", topic: topic.to_owned(), source };
    let metadata = {
        let (admin, topic) = (Arc::clone(admin), topic.to_owned());
        crate::blocking(move || admin.inner().fetch_metadata(Some(&topic), REQUEST_TIMEOUT)).await
    }
    .map_err(reading)?;
    let brokers = metadata.brokers().len();
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok((None, brokers));
    };
    match found.error() {
        None => {}
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => return Ok((None, brokers)),
        // Just created: leaders are being elected.
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) if found.partitions().is_empty() => {
            return Ok((None, brokers))
        }
        Some(code) => return Err(reading(KafkaError::MetadataFetch(code.into()))),
    }
    let count = found.partitions().len();
    let replication = found.partitions().first().map_or(0, |partition| partition.replicas().len());
    let shape =
        (count > 0).then(|| Shape { partitions: u32::try_from(count).unwrap_or(u32::MAX), replication });
    Ok((shape, brokers))
}
