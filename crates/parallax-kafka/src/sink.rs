//! ③ The relay's sink: an idempotent, gapless Kafka producer.
//!
//! Semantics: `publish` returns `Ok` only once the broker has acknowledged
//! every event with `acks=all`. Within one producer session (one idempotent
//! producer id) librdkafka keeps each partition's messages in order, without
//! duplicates from its own retries, and — with `enable.gapless.guarantee` —
//! without gaps: a failure that would leave a gap is a fatal error instead.
//! After a fatal error the sink starts a new session for the next `publish`;
//! the relay republishes from its checkpoint, so a partition may carry an
//! event twice, but only positions at or below what it already carried, in
//! order — which projectors skip by position.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use parallax_core::{partition_for, EventRecord, EventSink, LogError, Outgoing, Partition};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use crate::cloudevents;
use crate::config::KafkaConfig;
use crate::error::{ConfigError, TopicError};
use crate::topic::{self, TopicStatus};

/// Producer settings this crate chooses; pass-through options may change them.
const PRODUCER_DEFAULTS: &[(&str, &str)] =
    &[("linger.ms", "5"), ("compression.type", "lz4"), ("message.timeout.ms", "30000")];

/// Producer settings the delivery guarantees rest on; they cannot be changed.
const PRODUCER_FIXED: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("enable.gapless.guarantee", "true"),
    ("max.in.flight.requests.per.connection", "5"),
];

/// The negative control's producer (`PARALLAX_TEST_KAFKA_LEADER_ACKS`):
/// acknowledged by the partition's leader alone, without idempotence, so a
/// leader that dies before its followers copied a message takes it along.
const PRODUCER_LEADER_ACKS: &[(&str, &str)] = &[
    ("enable.idempotence", "false"),
    ("acks", "1"),
    ("enable.gapless.guarantee", "false"),
    ("max.in.flight.requests.per.connection", "5"),
];

/// Whether this process publishes with [`PRODUCER_LEADER_ACKS`]: only a
/// debug build with `PARALLAX_TEST_KAFKA_LEADER_ACKS` set (read once), for
/// the fault suite's negative control, which must lose acknowledged events
/// when a leader dies; a release build never does.
fn leader_acks_only() -> bool {
    static LEADER_ACKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    cfg!(debug_assertions)
        && *LEADER_ACKS.get_or_init(|| std::env::var_os("PARALLAX_TEST_KAFKA_LEADER_ACKS").is_some())
}

/// How long to wait before enqueueing again when librdkafka's queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// Publishes events to the configured topic: key = stream id, partition =
/// [`partition_for`]`(stream id, partitions)`, body = JSON payload,
/// CloudEvents headers (see the crate docs).
pub struct KafkaSink {
    config: KafkaConfig,
    client_config: ClientConfig,
    /// The current producer session; replaced after a fatal error.
    producer: Mutex<Arc<FutureProducer>>,
}

impl KafkaSink {
    /// A sink for `config`. Connects lazily: a broker that does not answer
    /// shows up as a `publish` error, not here.
    ///
    /// # Errors
    /// If `config` is invalid or librdkafka refuses the producer settings.
    pub fn new(config: KafkaConfig) -> Result<Self, ConfigError> {
        let fixed = if leader_acks_only() {
            tracing::warn!(
                topic = config.topic,
                "PARALLAX_TEST_KAFKA_LEADER_ACKS: publishing with acks=1 and no idempotence (a negative control \
                 that loses events)"
            );
            PRODUCER_LEADER_ACKS
        } else {
            PRODUCER_FIXED
        };
        let client_config = config.client_config(PRODUCER_DEFAULTS, fixed)?;
        let producer = create_producer(&client_config)?;
        Ok(Self { config, client_config, producer: Mutex::new(Arc::new(producer)) })
    }

    /// The configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// [`ensure_topic`](crate::ensure_topic) for this sink's topic.
    pub async fn ensure_topic(&self) -> Result<TopicStatus, TopicError> {
        topic::ensure_topic(&self.config).await
    }

    /// [`partition_count`](crate::partition_count) of this sink's topic.
    pub async fn partition_count(&self) -> Result<Option<u32>, TopicError> {
        topic::partition_count(&self.config).await
    }

    fn current(&self) -> Arc<FutureProducer> {
        Arc::clone(&self.producer.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// If `used` hit a fatal error, puts a fresh producer (a new idempotent
    /// session) in its place; returns the fatal error's description.
    async fn replace_if_fatal(&self, used: Arc<FutureProducer>) -> Option<String> {
        let (code, reason) = used.client().fatal_error()?;
        let description = format!("{code}: {reason}");
        let retired = match create_producer(&self.client_config) {
            Ok(fresh) => {
                let mut current = self.producer.lock().unwrap_or_else(PoisonError::into_inner);
                // Another publish may have replaced it already.
                Arc::ptr_eq(&current, &used).then(|| std::mem::replace(&mut *current, Arc::new(fresh)))
            }
            Err(error) => {
                tracing::error!(%error, "could not create a fresh Kafka producer after a fatal error");
                None
            }
        };
        if retired.is_some() {
            tracing::warn!(
                topic = self.config.topic,
                fatal = description,
                "Kafka producer replaced after a fatal error"
            );
        }
        // Dropping a producer purges its queue and joins its polling thread: not on the runtime.
        crate::blocking(move || drop((used, retired))).await;
        Some(description)
    }
}

fn create_producer(client_config: &ClientConfig) -> Result<FutureProducer, ConfigError> {
    client_config.create().map_err(|source| ConfigError::Client { client: "producer", source })
}

/// The first event that was not acknowledged, and why.
struct Failure<'a> {
    event: &'a EventRecord,
    partition: Partition,
    error: KafkaError,
}

#[async_trait]
impl EventSink for KafkaSink {
    fn partition_of(&self, stream_id: &str) -> Partition {
        partition_for(stream_id, self.config.partitions)
    }

    async fn publish(&self, events: &[Outgoing<'_>]) -> Result<(), LogError> {
        if events.is_empty() {
            return Ok(());
        }
        let producer = self.current();
        let topic = self.config.topic.as_str();
        // Enqueue everything first (librdkafka batches and pipelines), then await.
        let mut deliveries = Vec::with_capacity(events.len());
        let mut failure = None;
        for &Outgoing { event, previous } in events {
            let partition = self.partition_of(&event.stream_id);
            let mut record = FutureRecord::to(topic)
                .key(event.stream_id.as_str())
                .payload(event.payload.as_str())
                .partition(i32::try_from(partition).expect("validated: partitions fit an i32"))
                .headers(cloudevents::encode(event, previous, &self.config.source));
            let enqueued = loop {
                match producer.send_result(record) {
                    Ok(delivery) => break Ok(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                    }
                    Err((error, _)) => break Err(error),
                }
            };
            match enqueued {
                Ok(delivery) => deliveries.push((event, partition, delivery)),
                Err(error) => {
                    failure = Some(Failure { event, partition, error });
                    break;
                }
            }
        }
        let enqueued = deliveries.len();
        let outcomes = futures::future::join_all(
            deliveries
                .into_iter()
                .map(|(event, partition, delivery)| async move { (event, partition, delivery.await) }),
        )
        .await;
        let mut unacknowledged = events.len() - enqueued;
        for (event, partition, outcome) in outcomes {
            let error = match outcome {
                Ok(Ok(_)) => continue,
                Ok(Err((error, _message))) => error,
                Err(_canceled) => KafkaError::Canceled,
            };
            unacknowledged += 1;
            // Report the lowest position: the first one the relay must republish.
            if failure.as_ref().is_none_or(|first| event.position < first.event.position) {
                failure = Some(Failure { event, partition, error });
            }
        }
        let Some(Failure { event, partition, error }) = failure else { return Ok(()) };
        let mut message = format!(
            "Kafka topic {topic}: {unacknowledged} of {} events not acknowledged; first at position {} \
             (stream {}, partition {partition})",
            events.len(),
            event.position,
            event.stream_id,
        );
        if let Some(fatal) = self.replace_if_fatal(producer).await {
            message.push_str(&format!(
                "; the producer hit a fatal error ({fatal}) and was replaced: the next publish starts a new \
                 idempotent session"
            ));
        }
        Err(LogError::new(message, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_is_idempotent_and_waits_for_every_in_sync_replica() {
        let config =
            KafkaConfig::new("127.0.0.1:9092", "shop.events", 8, "/shop").with_option("linger.ms", "1");
        let sink = KafkaSink::new(config).expect("a valid config");
        for (key, value) in
            [("enable.idempotence", "true"), ("acks", "all"), ("enable.gapless.guarantee", "true")]
        {
            assert_eq!(sink.client_config.get(key), Some(value), "{key}");
        }
        assert_eq!(sink.client_config.get("linger.ms"), Some("1"));
        let unsafe_acks =
            KafkaConfig::new("127.0.0.1:9092", "shop.events", 8, "/shop").with_option("acks", "1");
        assert!(KafkaSink::new(unsafe_acks).is_err(), "acks=1 through the pass-through options");
    }
}
