//! The projectors' source: round trip, seeks, and a consumer group's rebalances.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use parallax_core::{
    partition_for, Checkpoint, EventRecord, EventSink, EventSource, Partition, SourcedEvent,
};
use parallax_kafka::{KafkaConfig, KafkaSink, KafkaSource};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::common::{brokers, error_chain, events, fresh_name, fresh_topic, linked, within};

const POLL: Duration = Duration::from_millis(200);

/// Polls `source`, seeking newly assigned partitions to `start(partition)`,
/// until `done` says so; returns what was delivered.
async fn drive(
    source: &mut KafkaSource,
    start: impl Fn(Partition) -> Checkpoint,
    mut done: impl FnMut(&[SourcedEvent]) -> bool,
) -> Vec<SourcedEvent> {
    let mut delivered = Vec::new();
    while !done(&delivered) {
        let batch = source.next_batch(100, POLL).await.expect("next batch");
        for &partition in &batch.assigned {
            source.seek(partition, start(partition)).await.expect("seek");
        }
        delivered.extend(batch.events);
    }
    delivered
}

async fn publish(config: &KafkaConfig, events: &[EventRecord]) {
    let sink = KafkaSink::new(config.clone()).expect("sink");
    let outgoing = linked(events, config.partitions);
    within("publishing", Duration::from_secs(60), sink.publish(&outgoing)).await.expect("published");
}

fn by_partition(events: &[SourcedEvent]) -> BTreeMap<Partition, Vec<&SourcedEvent>> {
    let mut map: BTreeMap<Partition, Vec<&SourcedEvent>> = BTreeMap::new();
    for event in events {
        map.entry(event.partition).or_default().push(event);
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_come_back_as_published_and_seeks_skip_what_is_below() {
    const PARTITIONS: u32 = 3;
    let config = fresh_topic("source", PARTITIONS).await;
    // A message that is not a Parallax event, first in partition 0: skipped.
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("plain producer");
    producer
        .send(
            FutureRecord::<str, str>::to(&config.topic).partition(0).key("x").payload("not an event"),
            Duration::ZERO,
        )
        .await
        .expect("foreign message sent");
    let published = events(30, 300);
    publish(&config, &published).await;

    let mut source = KafkaSource::new(&config, &fresh_name("group")).expect("source");
    let delivered = within("reading everything", Duration::from_secs(60), async {
        drive(&mut source, |_| Checkpoint::default(), |d| d.len() >= published.len()).await
    })
    .await;
    assert_eq!(delivered.len(), published.len());
    assert_eq!(source.assignment(), vec![0, 1, 2]);
    let mut got: Vec<EventRecord> = delivered.iter().map(|s| s.event.clone()).collect();
    got.sort_by_key(|e| e.position);
    assert_eq!(got, published, "every field survives the round trip");
    let links = linked(&published, PARTITIONS);
    for sourced in &delivered {
        assert_eq!(sourced.partition, partition_for(&sourced.event.stream_id, PARTITIONS));
        let sent = links.iter().find(|o| o.event.position == sourced.event.position).expect("published");
        assert_eq!(sourced.previous, sent.previous, "the link of position {}", sourced.event.position);
    }
    let partitions = by_partition(&delivered);
    for (partition, events) in &partitions {
        let offsets: Vec<u64> = events.iter().map(|e| e.offset).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "partition {partition} out of order: {offsets:?}");
        let first = if *partition == 0 { 1 } else { 0 };
        assert_eq!(offsets[0], first, "partition {partition} starts after the foreign message");
    }

    // A second group resumes each partition halfway through.
    let resume: BTreeMap<Partition, u64> =
        partitions.iter().map(|(p, events)| (*p, events[events.len() / 2].offset)).collect();
    let expected: usize = partitions.values().map(|events| events.len() - events.len() / 2).sum();
    let mut second = KafkaSource::new(&config, &fresh_name("group")).expect("source");
    let start = |p: Partition| Checkpoint { position: 0, offset: resume[&p] };
    let resumed = within("reading from checkpoints", Duration::from_secs(60), async {
        drive(&mut second, start, |d| d.len() >= expected).await
    })
    .await;
    assert_eq!(resumed.len(), expected);
    for (partition, events) in by_partition(&resumed) {
        assert_eq!(events[0].offset, resume[&partition], "partition {partition} resumes at its checkpoint");
        assert!(events.iter().all(|e| e.offset >= resume[&partition]));
    }

    // Seeking back replays a partition from there, in order.
    let first_of_1 = partitions[&1][0].offset;
    let count_of_1 = partitions[&1].len();
    source.seek(1, Checkpoint { position: 0, offset: first_of_1 }).await.expect("seek back");
    let replayed = within("replaying partition 1", Duration::from_secs(60), async {
        drive(&mut source, |_| Checkpoint::default(), |d| d.len() >= count_of_1).await
    })
    .await;
    let offsets: Vec<u64> = replayed.iter().map(|e| e.offset).collect();
    let expected_offsets: Vec<u64> = partitions[&1].iter().map(|e| e.offset).collect();
    assert_eq!(offsets, expected_offsets);

    // Seeking forward over what was already fetched skips it.
    let last_two = partitions[&2][partitions[&2].len() - 2].offset;
    source.seek(2, Checkpoint { position: 0, offset: 0 }).await.expect("seek to the start");
    source.seek(2, Checkpoint { position: 0, offset: last_two }).await.expect("seek forward");
    let tail = within("reading the tail of partition 2", Duration::from_secs(60), async {
        drive(&mut source, |_| Checkpoint::default(), |d| d.len() >= 2).await
    })
    .await;
    assert_eq!(tail.iter().map(|e| e.offset).collect::<Vec<_>>(), vec![last_two, last_two + 1]);
    let quiet = source.next_batch(100, Duration::from_millis(500)).await.expect("next batch");
    assert!(quiet.events.is_empty(), "nothing below a seek comes later: {:?}", quiet.events);

    // Only owned partitions can be sought.
    let error = source.seek(7, Checkpoint::default()).await.expect_err("partition 7 is not ours");
    assert!(error_chain(&error).contains("partition 7") && error_chain(&error).contains("not assigned"));
    source.close().await;
    second.close().await;
}

/// Polls the members (each must keep polling for a cooperative rebalance to
/// finish) until `done` holds for their assignments; returns the partitions
/// each member had revoked meanwhile.
async fn rebalance(
    members: &mut [&mut KafkaSource],
    owned: &mut [BTreeSet<Partition>],
    done: impl Fn(&[BTreeSet<Partition>]) -> bool,
) -> Vec<BTreeSet<Partition>> {
    let mut revoked = vec![BTreeSet::new(); members.len()];
    while !done(owned) {
        for ((member, owned), revoked) in members.iter_mut().zip(owned.iter_mut()).zip(revoked.iter_mut()) {
            let batch = member.next_batch(100, Duration::from_millis(50)).await.expect("next batch");
            for partition in &batch.revoked {
                assert!(owned.remove(partition), "revoked {partition}, which was not reported assigned");
                revoked.insert(*partition);
            }
            for &partition in &batch.assigned {
                assert!(owned.insert(partition), "assigned {partition} twice");
                member.seek(partition, Checkpoint::default()).await.expect("seek");
            }
            for event in &batch.events {
                assert!(owned.contains(&event.partition), "event of partition {} not owned", event.partition);
            }
            assert_eq!(member.assignment(), owned.iter().copied().collect::<Vec<_>>());
        }
    }
    revoked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_splits_the_partitions_and_takes_them_back() {
    let config = fresh_topic("group", 4).await;
    publish(&config, &events(40, 200)).await;
    let group = fresh_name("group");
    let mut first = KafkaSource::new(&config, &group).expect("source");
    let all: BTreeSet<Partition> = (0..4).collect();

    let mut owned = vec![BTreeSet::new(), BTreeSet::new()];
    within("the first member takes all partitions", Duration::from_secs(60), async {
        rebalance(&mut [&mut first], &mut owned[..1], |o| o[0] == all).await
    })
    .await;

    // Joins now (a member that joins also takes part in the first assignment).
    let mut second = KafkaSource::new(&config, &group).expect("source");
    let revoked = within("two members split the partitions", Duration::from_secs(60), async {
        rebalance(&mut [&mut first, &mut second], &mut owned, |o| {
            !o[0].is_empty() && !o[1].is_empty() && o[0].is_disjoint(&o[1]) && o[0].len() + o[1].len() == 4
        })
        .await
    })
    .await;
    // Cooperative rebalancing: the first member gave up only what moved.
    assert_eq!(revoked[0], owned[1], "the first member kept {:?}", owned[0]);

    second.close().await;
    within("the remaining member takes all partitions back", Duration::from_secs(60), async {
        rebalance(&mut [&mut first], &mut owned[..1], |o| o[0] == all).await
    })
    .await;
    first.close().await;
}

/// Retention deleted the start of a partition: a consumer that seeks below
/// the earliest offset left starts there, and the first message says which
/// position came before it, so a projector can tell the hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_below_deleted_records_starts_at_the_earliest_with_its_link() {
    const PARTITIONS: u32 = 2;
    let config = fresh_topic("retention", PARTITIONS).await;
    let published = events(10, 100);
    publish(&config, &published).await;
    let links = linked(&published, PARTITIONS);
    let in_0: Vec<&parallax_core::Outgoing<'_>> =
        links.iter().filter(|o| partition_for(&o.event.stream_id, PARTITIONS) == 0).collect();
    assert!(in_0.len() > 10, "partition 0 holds {} events", in_0.len());

    let earliest = within(
        "deleting records",
        Duration::from_secs(30),
        parallax_kafka::delete_records(&config, &[(0, 10)]),
    )
    .await
    .expect("records deleted");
    assert_eq!(earliest, vec![(0, 10)]);
    let starts = parallax_kafka::start_offsets(&config).await.expect("start offsets");
    assert_eq!(starts, vec![(0, 10), (1, 0)]);

    let mut source = KafkaSource::new(&config, &fresh_name("group")).expect("source");
    let expected = published.len() - 10;
    let delivered = within("reading what is left", Duration::from_secs(60), async {
        drive(&mut source, |_| Checkpoint::default(), |d| d.len() >= expected).await
    })
    .await;
    assert_eq!(delivered.len(), expected);
    let first = by_partition(&delivered)[&0][0].clone();
    assert_eq!(first.offset, 10, "partition 0 starts at the earliest offset left");
    assert_eq!(first.event.position, in_0[10].event.position);
    assert_eq!(first.previous, Some(in_0[9].event.position), "the link names the last deleted event");
    source.close().await;
}

/// With a gather time, a batch that has its first event keeps reading for
/// the rest of that time: an event published well after the first joins the
/// same batch (without one, the batch returns with what was ready).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gathering_batch_waits_for_events_after_its_first() {
    let config = fresh_topic("gather", 1).await;
    let gather = Duration::from_secs(5);
    let mut source = KafkaSource::new(&config, &fresh_name("group")).expect("source").with_gather(gather);
    within("joining the group", Duration::from_secs(60), async {
        while source.assignment().is_empty() {
            let batch = source.next_batch(100, POLL).await.expect("next batch");
            assert!(batch.events.is_empty(), "nothing is published yet");
            for &partition in &batch.assigned {
                source.seek(partition, Checkpoint::default()).await.expect("seek");
            }
        }
    })
    .await;

    let published = events(1, 2);
    let sink = KafkaSink::new(config.clone()).expect("sink");
    let outgoing = linked(&published, 1);
    within("publishing the first event", Duration::from_secs(60), sink.publish(&outgoing[..1]))
        .await
        .expect("the first event published");
    // The second, 300 ms after the first is in the topic (and so ready for
    // the batch below at once).
    let later = {
        let second = published[1].clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let outgoing = [parallax_core::Outgoing { event: &second, previous: Some(1) }];
            sink.publish(&outgoing).await.expect("the second event published");
        })
    };
    let batch =
        within("one batch", Duration::from_secs(60), source.next_batch(100, Duration::from_secs(30))).await;
    later.await.expect("the second publish");
    let positions: Vec<u64> = batch.expect("a batch").events.iter().map(|e| e.event.position).collect();
    assert_eq!(positions, vec![1, 2], "the event published 300 ms after the first joined its batch");
    source.close().await;
}
