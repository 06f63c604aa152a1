//! ④→⑤ The projectors' source: one member of a Kafka consumer group.
//!
//! Semantics: at-least-once, in order within each partition. Offsets are
//! never committed to Kafka: a projector keeps them in the read DB, in the
//! same transaction as its view changes, and [`seek`](EventSource::seek)s
//! every partition it is given to the offset after its checkpoint. Until
//! then the partition is paused and none of its messages are delivered.
//!
//! Rebalances use the cooperative-sticky assignor: when a member joins or
//! leaves, only the partitions that move are revoked, and the others keep
//! flowing (no stop-the-world, no reseek of partitions a member keeps).
//! Assignment changes are reported by [`next_batch`](EventSource::next_batch)
//! before any message that depends on them; once a partition is reported
//! revoked, none of its messages are delivered.
//!
//! Seeks are exact: after `seek(partition, checkpoint)`, no message of the
//! partition below `checkpoint.offset` is delivered, and until the next seek
//! no offset is delivered twice. Three things make it so: a new partition
//! starts at the absolute offset 0, never at a logical one (librdkafka would
//! look that up at the broker, and an answer arriving after the seek undoes
//! it); librdkafka discards what it fetched before a seek; and the source
//! itself drops any message below the partition's next expected offset.
//!
//! A seek below the partition's earliest offset (retention deleted the
//! messages there) is no error: the consumer starts at the earliest offset
//! held (`auto.offset.reset=earliest`). Offsets are not dense anyway, so the
//! source does not judge the jump; it hands on each message's link to the
//! previous event of its partition ([`SourcedEvent::previous`], from the
//! `ce_previousposition` header), by which the projector finds the hole.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use parallax_core::{Checkpoint, EventSource, LogError, Partition, SourceBatch, SourcedEvent};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use crate::cloudevents;
use crate::config::KafkaConfig;
use crate::error::ConfigError;

/// Consumer settings this crate chooses; pass-through options may change them.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("partition.assignment.strategy", "cooperative-sticky"),
    // The broker's smallest allowed session by default: a consumer that dies
    // without leaving (SIGKILL) hands its partitions over after 6 s.
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
    ("fetch.wait.max.ms", "10"),
    ("enable.partition.eof", "false"),
    // Statistics carry each partition's end offset (`hi_offset`): the lag a
    // projector reports, without a broker round trip of its own.
    ("statistics.interval.ms", "1000"),
];

/// Consumer settings the exactly-once effect rests on: offsets live in the
/// read DB, never in Kafka.
const CONSUMER_FIXED: &[(&str, &str)] =
    &[("enable.auto.commit", "false"), ("enable.auto.offset.store", "false")];

/// How long a seek may wait for a newly assigned partition's fetcher to start.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// An assignment change seen by the rebalance callback.
#[derive(Debug)]
enum Change {
    Assigned(Vec<Partition>),
    Revoked(Vec<Partition>),
    /// A rebalance failed and the whole assignment was dropped.
    RevokedAll,
}

/// Rebalance callbacks run inside the consumer's poll (in `next_batch`); they
/// apply the assignment and record it for `next_batch` to report.
struct SourceContext {
    topic: String,
    changes: Arc<Mutex<Vec<Change>>>,
    /// Each partition's end offset (the offset its next message will get),
    /// from the latest statistics.
    ends: Arc<Mutex<BTreeMap<Partition, u64>>>,
}

impl SourceContext {
    fn record(&self, change: Change) {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner).push(change);
    }

    fn ours(&self, list: &TopicPartitionList) -> Vec<Partition> {
        list.elements_for_topic(&self.topic)
            .iter()
            .filter_map(|element| Partition::try_from(element.partition()).ok())
            .collect()
    }
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else { return };
        let mut ends = self.ends.lock().unwrap_or_else(PoisonError::into_inner);
        for (partition, stats) in &topic.partitions {
            // -1 is librdkafka's "unknown" (the internal partition is -1 too).
            if let (Ok(partition), Ok(end)) =
                (Partition::try_from(*partition), u64::try_from(stats.hi_offset))
            {
                ends.insert(partition, end);
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, list: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Offsets live in the read DB: ignore any committed offset.
                // Start at the absolute offset 0, not the logical "beginning":
                // resolving a logical offset is a broker round trip, and a seek
                // made while it is in flight is undone when the (outdated)
                // answer arrives (librdkafka 2.12 restarts the lookup).
                if let Err(error) = list.set_all_offsets(Offset::Offset(0)) {
                    tracing::warn!(%error, "could not set the start offsets of an assignment");
                }
                // Paused until the owner seeks, so nothing is fetched that the
                // seek would discard: before the assignment, so the fetcher never
                // starts unpaused, and after it, for partitions librdkafka did
                // not know yet. Only an optimisation: `next_batch` drops messages
                // of partitions not sought yet.
                let _ = consumer.pause(list);
                let assigned =
                    if cooperative { consumer.incremental_assign(list) } else { consumer.assign(list) };
                if let Err(error) = assigned {
                    tracing::error!(topic = self.topic, %error, "could not take a Kafka partition assignment");
                    return;
                }
                if let Err(error) = consumer.pause(list) {
                    tracing::warn!(topic = self.topic, %error, "could not pause newly assigned partitions");
                }
                let partitions = self.ours(list);
                tracing::debug!(topic = self.topic, ?partitions, "Kafka partitions assigned");
                self.record(Change::Assigned(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions = self.ours(list);
                let lost = consumer.assignment_lost();
                let revoked =
                    if cooperative { consumer.incremental_unassign(list) } else { consumer.unassign() };
                if let Err(error) = revoked {
                    tracing::error!(topic = self.topic, %error, "could not give up Kafka partitions");
                }
                tracing::debug!(topic = self.topic, ?partitions, lost, "Kafka partitions revoked");
                self.record(Change::Revoked(partitions));
            }
            other => {
                let code = RDKafkaErrorCode::from(other);
                tracing::error!(topic = self.topic, error = %code, "Kafka rebalance failed; dropping the assignment");
                if let Err(error) = consumer.unassign() {
                    tracing::error!(topic = self.topic, %error, "could not drop the Kafka assignment");
                }
                self.record(Change::RevokedAll);
            }
        }
    }
}

/// What this member knows of a partition it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owned {
    /// Assigned, not sought yet: its messages are not delivered.
    AwaitingSeek,
    /// Sought: messages from offset `next` on are delivered; it is the
    /// sought offset, then the offset after the last message delivered, so
    /// that nothing is delivered twice between two seeks (librdkafka may
    /// fetch again from an earlier offset when it resets a position).
    Reading { next: u64 },
}

/// One member of a consumer group reading the configured topic.
///
/// [`next_batch`](EventSource::next_batch) reports the partitions given and
/// taken since the last call, then the events of the partitions that were
/// sought. A message that is not a Parallax event is logged and skipped.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer<SourceContext>>,
    topic: String,
    group_id: String,
    changes: Arc<Mutex<Vec<Change>>>,
    owned: BTreeMap<Partition, Owned>,
    ends: Arc<Mutex<BTreeMap<Partition, u64>>>,
    gather: Duration,
}

impl KafkaSource {
    /// Joins consumer group `group_id` (one group per projection) on
    /// `config`'s topic. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// If `config` is invalid, `group_id` is empty, or librdkafka refuses
    /// the consumer settings.
    pub fn new(config: &KafkaConfig, group_id: &str) -> Result<Self, ConfigError> {
        if group_id.is_empty() {
            return Err(ConfigError::Invalid("consumer group id is empty".to_owned()));
        }
        let mut client_config = config.client_config(CONSUMER_DEFAULTS, CONSUMER_FIXED)?;
        client_config.set("group.id", group_id);
        let changes = Arc::new(Mutex::new(Vec::new()));
        let ends = Arc::new(Mutex::new(BTreeMap::new()));
        let context = SourceContext {
            topic: config.topic.clone(),
            changes: Arc::clone(&changes),
            ends: Arc::clone(&ends),
        };
        let consumer: StreamConsumer<SourceContext> = client_config
            .create_with_context(context)
            .map_err(|source| ConfigError::Client { client: "consumer", source })?;
        consumer
            .subscribe(&[&config.topic])
            .map_err(|source| ConfigError::Client { client: "consumer", source })?;
        Ok(Self {
            consumer: Arc::new(consumer),
            topic: config.topic.clone(),
            group_id: group_id.to_owned(),
            changes,
            owned: BTreeMap::new(),
            ends,
            gather: Duration::ZERO,
        })
    }

    /// Lets a batch gather: once its first event has arrived, `next_batch`
    /// keeps reading for up to `gather` (or until the batch is full) instead
    /// of returning what was ready at once. Fewer, bigger batches cost the
    /// read store fewer commits and checkpoints per event, for at most
    /// `gather` more lag. Zero (the default): no wait.
    pub fn with_gather(mut self, gather: Duration) -> Self {
        self.gather = gather;
        self
    }

    /// The partitions this member owns now (as last reported by `next_batch`).
    pub fn assignment(&self) -> Vec<Partition> {
        self.owned.keys().copied().collect()
    }

    /// Leaves the group now, handing this member's partitions to the others
    /// (dropping the source does the same, blocking the current thread).
    pub async fn close(self) {
        let consumer = self.consumer;
        crate::blocking(move || drop(consumer)).await;
    }
}

/// One step of reading the consumer.
enum Polled<'a> {
    Message(KafkaResult<BorrowedMessage<'a>>),
    /// The assignment changed; report it before reading on.
    Changed,
    /// Nothing more now (or the wait is over).
    Idle,
}

/// The assignment changes since the last call, folded into `batch`.
struct Assignment<'s> {
    owned: &'s mut BTreeMap<Partition, Owned>,
    /// What was owned when the batch began.
    before: BTreeSet<Partition>,
}

impl Assignment<'_> {
    fn apply(&mut self, changes: &Mutex<Vec<Change>>, batch: &mut SourceBatch) {
        let changes = std::mem::take(&mut *changes.lock().unwrap_or_else(PoisonError::into_inner));
        for change in changes {
            match change {
                Change::Assigned(partitions) => {
                    for partition in partitions {
                        self.owned.insert(partition, Owned::AwaitingSeek);
                        if !batch.assigned.contains(&partition) {
                            batch.assigned.push(partition);
                        }
                    }
                }
                Change::Revoked(partitions) => partitions.into_iter().for_each(|p| self.revoke(p, batch)),
                Change::RevokedAll => {
                    let all: Vec<Partition> = self.owned.keys().copied().collect();
                    all.into_iter().for_each(|p| self.revoke(p, batch));
                }
            }
        }
    }

    fn revoke(&mut self, partition: Partition, batch: &mut SourceBatch) {
        self.owned.remove(&partition);
        batch.events.retain(|event| event.partition != partition);
        // Given and taken within this batch: the caller never needs to know.
        batch.assigned.retain(|&p| p != partition);
        if self.before.contains(&partition) && !batch.revoked.contains(&partition) {
            batch.revoked.push(partition);
        }
    }
}

fn changes_pending(changes: &Mutex<Vec<Change>>) -> bool {
    !changes.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
}

#[async_trait]
impl EventSource for KafkaSource {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<SourceBatch, LogError> {
        let deadline = tokio::time::Instant::now() + wait;
        let Self { consumer, topic, changes, owned, gather, .. } = self;
        let mut assignment = Assignment { before: owned.keys().copied().collect(), owned };
        let mut batch = SourceBatch::default();
        let mut stream = consumer.stream();
        // Set by the batch's first event: until then the wait is `deadline`'s.
        let mut gathered_by = None;
        loop {
            assignment.apply(changes, &mut batch);
            if batch.events.len() >= max {
                break;
            }
            let quiet = batch.events.is_empty() && batch.assigned.is_empty() && batch.revoked.is_empty();
            let changed = !batch.assigned.is_empty() || !batch.revoked.is_empty();
            // Quiet: wait (until the deadline) for a message or an assignment
            // change. Gathering: the same, until the gather time is up. Else
            // take only what is ready now.
            let wait_until = if quiet { Some(deadline) } else { gathered_by.filter(|_| !changed) };
            let polled = match wait_until {
                Some(until) => {
                    let next = std::future::poll_fn(|cx| match stream.poll_next_unpin(cx) {
                        Poll::Ready(Some(message)) => Poll::Ready(Polled::Message(message)),
                        Poll::Ready(None) => Poll::Ready(Polled::Idle),
                        Poll::Pending if changes_pending(changes) => Poll::Ready(Polled::Changed),
                        Poll::Pending => Poll::Pending,
                    });
                    tokio::time::timeout_at(until, next).await.unwrap_or(Polled::Idle)
                }
                None => match stream.next().now_or_never() {
                    Some(Some(message)) => Polled::Message(message),
                    _ if changes_pending(changes) => Polled::Changed,
                    _ => Polled::Idle,
                },
            };
            let message = match polled {
                Polled::Message(message) => message,
                Polled::Changed => continue,
                Polled::Idle => break,
            };
            match message {
                Ok(message) => {
                    if let Some(event) = accept(topic, assignment.owned, &message) {
                        batch.events.push(event);
                        if gathered_by.is_none() && !gather.is_zero() {
                            gathered_by = Some(tokio::time::Instant::now() + *gather);
                        }
                    }
                }
                Err(error) => {
                    if let Some((code, reason)) = consumer.client().fatal_error() {
                        return Err(LogError::new(
                            format!("Kafka consumer of topic {topic} hit a fatal error ({code}: {reason})"),
                            error,
                        ));
                    }
                    // librdkafka recovers from the others (a broker restarting, say).
                    tracing::warn!(topic = %topic, %error, "Kafka consumer error");
                    if quiet && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(
                            Duration::from_millis(10).min(deadline - tokio::time::Instant::now()),
                        )
                        .await;
                    }
                }
            }
        }
        Ok(batch)
    }

    async fn seek(&mut self, partition: Partition, checkpoint: Checkpoint) -> Result<(), LogError> {
        let topic = self.topic.clone();
        if !self.owned.contains_key(&partition) {
            return Err(LogError::msg(format!(
                "cannot seek partition {partition} of Kafka topic {topic}: it is not assigned to this member of \
                 consumer group {}",
                self.group_id
            )));
        }
        let offset = i64::try_from(checkpoint.offset).map_err(|_| {
            LogError::msg(format!(
                "cannot seek partition {partition} of Kafka topic {topic} to offset {}: too large",
                checkpoint.offset
            ))
        })?;
        let index = i32::try_from(partition).expect("a Kafka partition index fits an i32");
        let consumer = Arc::clone(&self.consumer);
        let seek_topic = topic.clone();
        crate::blocking(move || seek_and_resume(&consumer, &seek_topic, index, offset)).await.map_err(
            |error| {
                LogError::new(
                    format!("seeking partition {partition} of Kafka topic {topic} to offset {offset}"),
                    error,
                )
            },
        )?;
        self.owned.insert(partition, Owned::Reading { next: checkpoint.offset });
        Ok(())
    }

    /// Messages between each checkpoint's offset and the partition's end
    /// offset in the consumer's latest statistics (at most a second old).
    async fn lag(&mut self, checkpoints: &[(Partition, Checkpoint)]) -> Vec<(Partition, u64)> {
        let ends = self.ends.lock().unwrap_or_else(PoisonError::into_inner);
        checkpoints
            .iter()
            .filter_map(|(partition, at)| Some((*partition, ends.get(partition)?.saturating_sub(at.offset))))
            .collect()
    }
}

/// Points `partition` at `offset`, then lets it fetch. Right after an
/// assignment the partition's fetcher may not have started yet (librdkafka
/// answers "erroneous state"): that is retried briefly. A successful seek
/// also discards whatever was fetched for the partition before it.
fn seek_and_resume(
    consumer: &StreamConsumer<SourceContext>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> KafkaResult<()> {
    let started = std::time::Instant::now();
    loop {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        let sought = consumer.seek_partitions(list, Duration::from_secs(1))?;
        let result = sought.find_partition(topic, partition).map_or(Ok(()), |element| element.error());
        match result {
            Ok(()) => break,
            Err(KafkaError::OffsetFetch(RDKafkaErrorCode::State | RDKafkaErrorCode::PreviousInProgress))
                if started.elapsed() < SEEK_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(KafkaError::OffsetFetch(code)) => return Err(KafkaError::Seek(code.to_string())),
            Err(error) => return Err(error),
        }
    }
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    consumer.resume(&list)
}

/// The event a message carries, if it is one this member should deliver.
fn accept(
    topic: &str,
    owned: &mut BTreeMap<Partition, Owned>,
    message: &BorrowedMessage<'_>,
) -> Option<SourcedEvent> {
    let partition = Partition::try_from(message.partition()).ok()?;
    let offset = u64::try_from(message.offset()).ok()?;
    if message.topic() != topic {
        return None;
    }
    match owned.get_mut(&partition) {
        // Revoked, or fetched before the seek: not ours to deliver.
        None | Some(Owned::AwaitingSeek) => return None,
        // Below the seek, or delivered already.
        Some(Owned::Reading { next }) if offset < *next => return None,
        Some(Owned::Reading { next }) => *next = offset + 1,
    }
    match cloudevents::decode(message.headers(), message.payload()) {
        Ok((event, previous)) => Some(SourcedEvent { partition, offset, event, previous }),
        Err(error) => {
            tracing::error!(topic, partition, offset, %error, "skipping a Kafka message that is not a Parallax event");
            None
        }
    }
}
