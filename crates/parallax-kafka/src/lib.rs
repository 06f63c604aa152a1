//! # parallax-kafka
//!
//! Parallax's log on Apache Kafka, ③④ of the data flow: the relay publishes
//! through a [`KafkaSink`] (an [`EventSink`](parallax_core::EventSink)), and
//! every projector reads through a [`KafkaSource`] (an
//! [`EventSource`](parallax_core::EventSource)), one consumer group per
//! projection. [`ensure_topic`] makes the topic.
//!
//! This crate is the only one that links librdkafka (built from source,
//! statically). It depends on `parallax-core` alone among Parallax's crates:
//! never on another adapter, nor on the runtime.
//!
//! ## Delivery semantics
//!
//! * **Publishing** uses an idempotent producer with `acks=all` and
//!   `enable.gapless.guarantee=true`: [`publish`](parallax_core::EventSink::publish)
//!   returns `Ok` once every event is acknowledged by all in-sync replicas.
//!   Within one producer session each partition carries its events in
//!   publish order, with no duplicates from retries and no gaps — a failure
//!   that would leave a gap is a *fatal* error instead.
//! * **Replication**: [`ensure_topic`] creates the topic with 3 replicas
//!   on a cluster of at least 3 brokers (1 on fewer, or as configured),
//!   `min.insync.replicas` 2 (never above the replication) and
//!   `retention.ms=-1` ([`TopicSettings`]), and names in a warning each
//!   setting an existing topic has otherwise ([`topic_differences`]). With 3
//!   replicas and 2 in sync, an acknowledged event is on two brokers: the
//!   death of any one loses nothing, and a partition whose in-sync replicas
//!   fall below 2 refuses publishes (the relay retries from its checkpoint)
//!   rather than acknowledging an event one broker holds. Unclean leader
//!   election stays off (Kafka's default), so an out-of-sync replica never
//!   becomes leader.
//! * **After an error** the relay publishes again from its checkpoint; after
//!   a fatal error the sink first replaces its producer, so the next publish
//!   starts a new idempotent session. A partition may then carry an event
//!   twice, but only an event at or below a position it already carried, and
//!   still in order per stream: projectors skip it by position.
//! * **Placement**: key = stream id, partition =
//!   [`partition_for`](parallax_core::partition_for)`(stream id, partitions)`
//!   (Kafka's own murmur2 partitioner), set explicitly, so all events of a
//!   stream share one partition, in version order.
//! * **Consuming** is at-least-once and in order per partition. Offsets are
//!   never committed to Kafka: they live in the read DB, written in the same
//!   transaction as the view changes they produced, and a projector seeks
//!   every partition it is assigned to the offset after its checkpoint. A
//!   rebalance or a restart can only repeat what the checkpoint has not
//!   absorbed, never skip it.
//! * **Retention** may delete a partition's oldest messages, and a consumer
//!   that seeks below the partition's earliest offset starts at the earliest
//!   one (`auto.offset.reset=earliest`): the offsets jump. Each message
//!   carries the position of the previous event of its partition
//!   (`ce_previousposition`, from the relay), which the source hands on as
//!   [`SourcedEvent::previous`](parallax_core::SourcedEvent::previous); a
//!   projector whose checkpoint is below it stops the partition instead of
//!   skipping the deleted events (Architecture invariant 21).
//!
//! ## Message format
//!
//! Each event is one message in CloudEvents 1.0 binary content mode (the
//! Kafka protocol binding): the body is the event's JSON payload as stored,
//! and the attributes travel as headers. The header names are constants in
//! [`cloudevents`].
//!
//! | Kafka | value | from the [`EventRecord`](parallax_core::EventRecord) |
//! |---|---|---|
//! | key | stream id | `stream_id` |
//! | partition | `partition_for(stream_id, partitions)` | `stream_id` |
//! | value (body) | JSON text | `payload` |
//! | `ce_specversion` | `1.0` | |
//! | `ce_id` | UUID | `event_id` |
//! | `ce_source` | e.g. `/shop` | [`KafkaConfig::source`] |
//! | `ce_type` | e.g. `cart.item_added` | `event_type` |
//! | `ce_time` | RFC 3339, microseconds, `Z` | `recorded_at` |
//! | `ce_subject` | stream id | `stream_id` |
//! | `content-type` | `application/json` | |
//! | `ce_position` | decimal | `position` |
//! | `ce_previousposition` | decimal, only when the relay knew it | the previous event of the partition (0: none) |
//! | `ce_streamversion` | decimal | `stream_version` |
//! | `ce_schemaversion` | decimal | `schema_version` |
//! | `ce_correlationid` | UUID | `metadata.correlation_id` |
//! | `ce_causationid` | UUID | `metadata.causation_id` |
//! | `ce_commandid` | UUID | `metadata.command_id` |
//! | `ce_actor` | text, only when present | `metadata.actor` |
//! | `ce_tenant` | text, only for a named tenant (the subject starts with `{tenant}/`) | `metadata.tenant` |
//! | `traceparent` | W3C Trace Context, only when present | `metadata.traceparent` |
//!
//! `recorded_at` travels to the microsecond (the event store keeps no more).
//! The message timestamp is the producer's clock, not `recorded_at`, so that
//! republishing old events does not make the broker's time-based retention
//! delete them early. A message that does not decode as such an event is
//! logged and skipped by [`KafkaSource`].
//!
//! [`asyncapi::document`] writes this down for consumers outside the system:
//! an AsyncAPI 3.0 document of the topic, one message per event type and
//! schema version, with these headers and the payloads' JSON Schemas.
//!
//! ## Example
//!
//! ```no_run
//! use parallax_core::{EventSink, EventSource, Outgoing};
//! use parallax_kafka::{ensure_topic, KafkaConfig, KafkaSink, KafkaSource};
//!
//! # async fn example(events: Vec<parallax_core::EventRecord>) -> Result<(), Box<dyn std::error::Error>> {
//! let config = KafkaConfig::new("127.0.0.1:9092", "shop.events", 8, "/shop");
//! ensure_topic(&config).await?;
//!
//! // The relay links each event to the previous one of its partition;
//! // events sent without a link are not checked for holes.
//! let sink = KafkaSink::new(config.clone())?;
//! let outgoing: Vec<Outgoing> = events.iter().map(|event| Outgoing { event, previous: None }).collect();
//! sink.publish(&outgoing).await?;
//!
//! let mut source = KafkaSource::new(&config, "shop.catalog")?;
//! let batch = source.next_batch(500, std::time::Duration::from_millis(500)).await?;
//! for partition in batch.assigned {
//!     source.seek(partition, Default::default()).await?;
//! }
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod config;
mod topic;
pub mod cloudevents;
pub mod asyncapi;
mod sink;
mod source;
mod error;

pub use config::KafkaConfig;
pub use error::{ConfigError, TopicError};
pub use sink::KafkaSink;
pub use source::KafkaSource;
pub use topic::{
    alter_topic_settings, delete_records, delete_topic, end_offsets, ensure_topic, partition_count,
    start_offsets, topic_differences, TopicDifference, TopicSettings, TopicStatus,
};

/// Runs a blocking librdkafka call (a metadata request, a seek, a client's
/// teardown) off the async runtime's worker threads.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(call).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}
