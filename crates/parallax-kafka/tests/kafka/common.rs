//! Shared test setup: the broker, fresh topics, hand-made events, bounded waits.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use parallax_core::{partition_for, EventRecord, Metadata, Outgoing, Partition, Position};
use parallax_kafka::{ensure_topic, KafkaConfig, TopicStatus};
use uuid::Uuid;

/// The broker under test: `PARALLAX_TEST_KAFKA_BROKERS`, else the one
/// `scripts/services/kafka start` runs.
pub fn brokers() -> String {
    std::env::var("PARALLAX_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// The three-broker cluster: `PARALLAX_TEST_KAFKA_CLUSTER_BROKERS`, else the
/// one `scripts/services/kafka start --brokers 3` runs.
pub fn cluster_brokers() -> String {
    std::env::var("PARALLAX_TEST_KAFKA_CLUSTER_BROKERS")
        .ok()
        .filter(|brokers| !brokers.is_empty())
        .unwrap_or_else(|| "127.0.0.1:9192,127.0.0.1:9193,127.0.0.1:9194".to_owned())
}

/// The failure message of a test that could not use the cluster.
pub fn cluster_trouble(config: &KafkaConfig, error: &dyn std::error::Error) -> String {
    format!(
        "cannot use topic {} on the Kafka cluster at {} ({}): start it with `scripts/services/kafka start \
         --brokers 3`, or point PARALLAX_TEST_KAFKA_CLUSTER_BROKERS at one",
        config.topic,
        config.brokers,
        error_chain(error)
    )
}

/// A name no other test (or earlier run) uses.
pub fn fresh_name(prefix: &str) -> String {
    format!("parallax-test-{prefix}-{}", Uuid::new_v4().simple())
}

/// A config for a fresh topic, not created yet.
pub fn fresh_config(prefix: &str, partitions: u32) -> KafkaConfig {
    KafkaConfig::new(brokers(), fresh_name(prefix), partitions, "/test")
}

/// A fresh topic with `partitions` partitions, created.
pub async fn fresh_topic(prefix: &str, partitions: u32) -> KafkaConfig {
    let config = fresh_config(prefix, partitions);
    match ensure_topic(&config).await {
        Ok(TopicStatus::Created) => config,
        Ok(other) => panic!("fresh topic {} was {other:?}, not Created", config.topic),
        Err(error) => panic!("{}", broker_trouble(&config, &error)),
    }
}

/// The failure message of a test that could not use the broker.
pub fn broker_trouble(config: &KafkaConfig, error: &dyn std::error::Error) -> String {
    format!(
        "cannot use topic {} on the Kafka broker at {} ({}): start one with `scripts/services/kafka start`, \
         or point PARALLAX_TEST_KAFKA_BROKERS at one",
        config.topic,
        config.brokers,
        error_chain(error)
    )
}

/// An error with its causes, for assertion messages.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Fails the test if `future` takes longer than `limit`.
pub async fn within<F: Future>(what: &str, limit: Duration, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// A microsecond-precise timestamp (what the event store keeps).
fn at(position: u64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap()
        + chrono::Duration::microseconds(position as i64 * 1_234_567)
}

/// One event, filled in by hand.
pub fn record(position: u64, stream_id: &str, stream_version: u64) -> EventRecord {
    EventRecord {
        position,
        stream_id: stream_id.to_owned(),
        stream_version,
        event_id: Uuid::now_v7(),
        event_type: if stream_version == 1 { "cart.opened".into() } else { "cart.item_added".into() },
        schema_version: 1 + (position % 3) as u32,
        payload: format!(r#"{{"sku":"SKU-{position}","quantity":{stream_version},"note":"ü \"quoted\""}}"#),
        metadata: Metadata {
            correlation_id: Uuid::new_v4(),
            causation_id: Uuid::new_v4(),
            command_id: Uuid::new_v4(),
            actor: (position % 2 == 1).then(|| format!("user-{}", position % 7)),
            traceparent: (!position.is_multiple_of(3)).then(parallax_core::TraceParent::new_root),
            tenant: None,
        },
        recorded_at: at(position),
    }
}

/// `count` events over `streams` streams, interleaved as concurrent commands
/// would write them: positions 1..=count, each stream's versions 1, 2, ...
pub fn events(streams: usize, count: usize) -> Vec<EventRecord> {
    let prefix = Uuid::new_v4().simple().to_string();
    let mut versions = vec![0u64; streams];
    (0..count)
        .map(|i| {
            let stream = i % streams;
            versions[stream] += 1;
            record(i as u64 + 1, &format!("cart-{prefix}-{stream}"), versions[stream])
        })
        .collect()
}

/// `events` linked as the relay links them: each to the previous event of
/// its partition among `partitions` (0 for the first).
pub fn linked(events: &[EventRecord], partitions: u32) -> Vec<Outgoing<'_>> {
    let mut last: BTreeMap<Partition, Position> = BTreeMap::new();
    events
        .iter()
        .map(|event| {
            let partition = partition_for(&event.stream_id, partitions);
            Outgoing { event, previous: Some(last.insert(partition, event.position).unwrap_or(0)) }
        })
        .collect()
}

/// `events` without links, as a relay sends what it cannot link.
pub fn unlinked(events: &[EventRecord]) -> Vec<Outgoing<'_>> {
    events.iter().map(|event| Outgoing { event, previous: None }).collect()
}
