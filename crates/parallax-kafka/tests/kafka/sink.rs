//! The relay's sink, checked with a plain rdkafka consumer (not `KafkaSource`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::DateTime;
use parallax_core::{partition_for, EventRecord, EventSink};
use parallax_kafka::KafkaSink;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use uuid::Uuid;

use crate::common::{
    brokers, error_chain, events, fresh_name, fresh_topic, linked, record, unlinked, within,
};

/// Reads `count` messages from every partition of `topic`, from the beginning.
async fn read_all(topic: &str, partitions: u32, count: usize) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", fresh_name("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("plain consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment.add_partition_offset(topic, partition, Offset::Beginning).expect("offset");
    }
    consumer.assign(&assignment).expect("assign");
    let mut messages = Vec::with_capacity(count);
    within(&format!("reading {count} messages from {topic}"), Duration::from_secs(60), async {
        while messages.len() < count {
            messages.push(consumer.recv().await.expect("a message").detach());
        }
    })
    .await;
    // Exactly `count`: the idempotent producer wrote nothing twice.
    let mut total = 0;
    for partition in 0..partitions as i32 {
        let (low, high) =
            consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)).expect("watermarks");
        total += high - low;
    }
    assert_eq!(total, count as i64, "messages in {topic}");
    messages
}

fn header<'m>(message: &'m OwnedMessage, key: &str) -> Option<&'m str> {
    let headers = message.headers()?;
    let found: Vec<_> = headers.iter().filter(|h| h.key == key).collect();
    assert!(found.len() <= 1, "header {key} appears {} times", found.len());
    found.first().map(|h| std::str::from_utf8(h.value.expect("header value")).expect("UTF-8 header"))
}

/// Every CloudEvents attribute of `message` carries `event`.
fn assert_cloudevent(message: &OwnedMessage, event: &EventRecord) {
    let get =
        |key| header(message, key).unwrap_or_else(|| panic!("header {key} missing at {}", event.position));
    assert_eq!(get("ce_specversion"), "1.0");
    assert_eq!(Uuid::parse_str(get("ce_id")).expect("ce_id is a UUID"), event.event_id);
    assert_eq!(get("ce_source"), "/test");
    assert_eq!(get("ce_type"), event.event_type);
    let time = get("ce_time");
    assert!(time.ends_with('Z') && time.len() == "2026-05-01T08:00:00.000000Z".len(), "ce_time {time}");
    assert_eq!(DateTime::parse_from_rfc3339(time).expect("ce_time is RFC 3339"), event.recorded_at);
    assert_eq!(get("ce_subject"), event.stream_id);
    assert_eq!(get("content-type"), "application/json");
    assert_eq!(get("ce_position"), event.position.to_string());
    assert_eq!(get("ce_streamversion"), event.stream_version.to_string());
    assert_eq!(get("ce_schemaversion"), event.schema_version.to_string());
    assert_eq!(Uuid::parse_str(get("ce_correlationid")).unwrap(), event.metadata.correlation_id);
    assert_eq!(Uuid::parse_str(get("ce_causationid")).unwrap(), event.metadata.causation_id);
    assert_eq!(Uuid::parse_str(get("ce_commandid")).unwrap(), event.metadata.command_id);
    assert_eq!(header(message, "ce_actor"), event.metadata.actor.as_deref());
    assert!(header(message, "ce_previousposition")
        .is_none_or(|p| p.parse::<u64>().is_ok_and(|p| p < event.position)));
    let key = std::str::from_utf8(message.key().expect("a key")).expect("UTF-8 key");
    assert_eq!(key, event.stream_id);
    let body = std::str::from_utf8(message.payload().expect("a body")).expect("UTF-8 body");
    assert_eq!(body, event.payload);
    serde_json::from_str::<serde_json::Value>(body).expect("the body is JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_are_cloudevents_placed_by_stream() {
    const PARTITIONS: u32 = 6;
    let config = fresh_topic("sink", PARTITIONS).await;
    let sink = KafkaSink::new(config.clone()).expect("sink");
    let published = events(50, 1_000);
    let outgoing = linked(&published, PARTITIONS);
    let previous_of: HashMap<u64, u64> =
        outgoing.iter().map(|o| (o.event.position, o.previous.expect("linked"))).collect();
    // In relay-sized batches.
    for chunk in outgoing.chunks(250) {
        within("publishing", Duration::from_secs(60), sink.publish(chunk)).await.expect("published");
    }

    let messages = read_all(&config.topic, PARTITIONS, published.len()).await;
    let by_position: HashMap<u64, &EventRecord> = published.iter().map(|e| (e.position, e)).collect();
    let mut partitions_of: HashMap<&str, BTreeSet<i32>> = HashMap::new();
    let mut versions_of: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut seen = BTreeSet::new();
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for message in &messages {
        let position: u64 = header(message, "ce_position").expect("ce_position").parse().expect("decimal");
        let event = by_position[&position];
        assert!(seen.insert(position), "position {position} delivered twice");
        assert_cloudevent(message, event);
        let previous = previous_of[&position].to_string();
        assert_eq!(header(message, "ce_previousposition"), Some(previous.as_str()), "link of {position}");
        assert_eq!(
            message.partition() as u32,
            partition_for(&event.stream_id, PARTITIONS),
            "{}",
            event.stream_id
        );
        // Messages of a partition arrive in offset order.
        let previous = offsets.insert(message.partition(), message.offset());
        assert!(previous.is_none_or(|p| p < message.offset()), "offsets out of order");
        partitions_of.entry(&event.stream_id).or_default().insert(message.partition());
        versions_of.entry(&event.stream_id).or_default().push(event.stream_version);
    }
    assert_eq!(seen.len(), 1_000);
    assert_eq!(partitions_of.len(), 50);
    for (stream, partitions) in &partitions_of {
        assert_eq!(partitions.len(), 1, "stream {stream} spread over partitions {partitions:?}");
    }
    for (stream, versions) in &versions_of {
        let expected: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(versions, &expected, "versions of {stream} in partition order");
    }
    assert!(offsets.len() > 1, "50 streams use more than one of {PARTITIONS} partitions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_a_missing_partition_fails_the_publish() {
    // The topic has 2 partitions; the sink believes 8.
    let actual = fresh_topic("short", 2).await;
    let config = parallax_kafka::KafkaConfig { partitions: 8, ..actual.clone() };
    let sink = KafkaSink::new(config).expect("sink");
    let stream = (0..).map(|i| format!("order-{i}")).find(|s| partition_for(s, 8) >= 2).expect("a stream");
    let error =
        within("publishing", Duration::from_secs(60), sink.publish(&unlinked(&[record(1, &stream, 1)])))
            .await
            .expect_err("an event for partition >= 2 is refused");
    let text = error_chain(&error);
    assert!(text.contains("1 of 1 events not acknowledged"), "{text}");
    assert!(
        text.contains(&format!("position 1 (stream {stream}, partition {})", partition_for(&stream, 8))),
        "{text}"
    );

    // The sink goes on working for partitions that exist.
    let fine = (0..).map(|i| format!("order-{i}")).find(|s| partition_for(s, 8) < 2).expect("a stream");
    within("publishing", Duration::from_secs(60), sink.publish(&unlinked(&[record(2, &fine, 1)])))
        .await
        .expect("an event for partition < 2 is published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_fatal_error_the_next_publish_starts_a_new_session() {
    // A topic that refuses messages over 2 KiB: the broker's permanent
    // rejection would leave a gap, so the gapless producer fails fatally.
    let config = crate::common::fresh_config("fatal", 1);
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &config.brokers).create().expect("admin client");
    let topic = NewTopic::new(&config.topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "2048");
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let created =
        within("creating a topic", Duration::from_secs(30), admin.create_topics([&topic], &options))
            .await
            .unwrap_or_else(|e| panic!("{}", crate::common::broker_trouble(&config, &e)));
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    assert_eq!(
        parallax_kafka::ensure_topic(&config).await.expect("topic"),
        parallax_kafka::TopicStatus::Existed
    );

    let sink = KafkaSink::new(config.clone()).expect("sink");
    let mut big = record(1, "cart-big", 1);
    // Random text, so that compression cannot bring it under the limit.
    let noise: String = (0..200).map(|_| Uuid::new_v4().simple().to_string()).collect();
    big.payload = format!(r#"{{"noise":"{noise}"}}"#);
    let error = within("publishing", Duration::from_secs(60), sink.publish(&unlinked(&[big])))
        .await
        .expect_err("too large");
    let text = error_chain(&error);
    assert!(text.contains("fatal error") && text.contains("replaced"), "{text}");

    let small = record(2, "cart-small", 1);
    within("publishing", Duration::from_secs(60), sink.publish(&unlinked(std::slice::from_ref(&small))))
        .await
        .expect("a fresh producer publishes");
    let messages = read_all(&config.topic, 1, 1).await;
    assert_cloudevent(&messages[0], &small);
}
