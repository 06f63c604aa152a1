//! ④ The topic: created once (by `shop migrate`, say) with the configured
//! partition count, and checked against it.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
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

/// Creates the configured topic with `partitions` partitions and the
/// configured replication if it is missing; checks the partition count of
/// one that exists. Idempotent, and safe to race with another caller.
///
/// # Errors
/// [`TopicError::PartitionMismatch`] if the topic has another partition
/// count; [`TopicError::Kafka`] if the cluster refuses or does not answer.
pub async fn ensure_topic(config: &KafkaConfig) -> Result<TopicStatus, TopicError> {
    let admin = admin_client(config)?;
    if let Some(actual) = read_partition_count(&admin, &config.topic).await? {
        return check(config, actual).map(|()| TopicStatus::Existed);
    }
    let replication = TopicReplication::Fixed(i32::from(config.replication));
    let partitions = i32::try_from(config.partitions)
        .map_err(|_| ConfigError::Invalid(format!("partitions is {}; too many", config.partitions)))?;
    let new_topic = NewTopic::new(&config.topic, partitions, replication);
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
        if let Some(actual) = read_partition_count(&admin, &config.topic).await? {
            check(config, actual)?;
            tracing::info!(topic = config.topic, partitions = actual, ?status, "Kafka topic ready");
            return Ok(status);
        }
        if waited.elapsed() >= VISIBLE_TIMEOUT {
            return Err(TopicError::NotVisible { topic: config.topic.clone(), waited: VISIBLE_TIMEOUT });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
        let (admin, topic) = (Arc::clone(&admin), config.topic.clone());
        let (low, high) = crate::blocking(move || {
            admin.inner().fetch_watermarks(&topic, partition as i32, REQUEST_TIMEOUT)
        })
        .await
        .map_err(reading)?;
        marks.push((partition, u64::try_from(low).unwrap_or(0), u64::try_from(high).unwrap_or(0)));
    }
    Ok(marks)
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

/// Reads the topic's metadata (a blocking librdkafka call, so off the runtime).
async fn read_partition_count(admin: &Admin, topic: &str) -> Result<Option<u32>, TopicError> {
    let reading =
        |source| TopicError::Kafka { action: "reading the metadata of", topic: topic.to_owned(), source };
    let metadata = {
        let (admin, topic) = (Arc::clone(admin), topic.to_owned());
        crate::blocking(move || admin.inner().fetch_metadata(Some(&topic), REQUEST_TIMEOUT)).await
    }
    .map_err(reading)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
    match found.error() {
        None => {}
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => return Ok(None),
        // Just created: leaders are being elected.
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) if found.partitions().is_empty() => {
            return Ok(None)
        }
        Some(code) => return Err(reading(KafkaError::MetadataFetch(code.into()))),
    }
    let count = found.partitions().len();
    Ok(if count == 0 { None } else { Some(u32::try_from(count).unwrap_or(u32::MAX)) })
}
