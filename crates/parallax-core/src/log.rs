//! ③④ The log: events in position order, for anything downstream of the store.
//!
//! Delivery is at-least-once: a consumer may see an event again after a
//! restart, so consumers keep their own position (a checkpoint) and skip what
//! they have absorbed. In the embedded shape the log is a tail of the event
//! store itself.

use std::time::Duration;

use async_trait::async_trait;

use crate::event::{EventRecord, Position};
use crate::store::StoreError;

/// Why the log could not be read.
pub type LogError = StoreError;

/// A subscribable, ordered source of events.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Up to `limit` events after `after`, in position order, without gaps.
    async fn read(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, LogError>;

    /// Returns once an event beyond `after` may be available, or after
    /// `timeout`. Spurious wake-ups are allowed.
    async fn wait_beyond(&self, after: Position, timeout: Duration);

    /// The position of the newest event (for lag reporting).
    async fn head(&self) -> Result<Position, LogError>;
}

/// A partition of the log: events of one stream always share one. The
/// embedded log has a single partition, 0; behind a broker it is the topic's
/// partition.
pub type Partition = u32;

/// The partition of a stream among `partitions`: Kafka's default partitioner
/// (murmur2 of the key, made positive, modulo the partition count), so that a
/// Java producer keyed by stream id agrees with Parallax's relay.
///
/// # Panics
/// If `partitions` is 0.
pub fn partition_for(stream_id: &str, partitions: u32) -> Partition {
    assert!(partitions > 0, "a log has at least one partition");
    (murmur2(stream_id.as_bytes()) & 0x7fff_ffff) % partitions
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// A consumer's progress through one partition of a source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The highest global position absorbed from the partition (0: none).
    /// Records at or below it are duplicates and are skipped.
    pub position: Position,
    /// Where the source resumes in the partition: the offset after the last
    /// record absorbed (the embedded log uses the position itself).
    pub offset: u64,
}

/// An event as a source delivers it: with its place in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedEvent {
    /// The source partition.
    pub partition: Partition,
    /// The record's offset within the partition.
    pub offset: u64,
    /// The event.
    pub event: EventRecord,
    /// The position of the event before it in the same partition, as the
    /// relay knew it when it published (0: none before it); `None` when the
    /// message does not say (the embedded log, whose one partition holds
    /// every position the log reads, or a message the relay could not link).
    /// A consumer whose checkpoint in the partition is below it has missed
    /// the events in between (Architecture invariant 21).
    pub previous: Option<Position>,
}

/// What a source delivered in one poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceBatch {
    /// Partitions this consumer was given since the last poll: the caller
    /// loads their checkpoints and [`EventSource::seek`]s.
    pub assigned: Vec<Partition>,
    /// Partitions taken away since the last poll.
    pub revoked: Vec<Partition>,
    /// Events, in order within each partition.
    pub events: Vec<SourcedEvent>,
}

/// A partitioned, at-least-once feed of events for one consumer (a
/// projector): the embedded log tail, or a broker's consumer group.
#[async_trait]
pub trait EventSource: Send {
    /// Up to `max` events; waits at most `wait` for the first one. Within a
    /// partition, events come in the order they were published.
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<SourceBatch, LogError>;

    /// Resumes `partition` right after `checkpoint`: the next events of that
    /// partition start at `checkpoint.offset` (earlier deliveries may repeat).
    async fn seek(&mut self, partition: Partition, checkpoint: Checkpoint) -> Result<(), LogError>;

    /// The newest position published, where known (for lag reporting).
    async fn head(&self) -> Result<Option<Position>, LogError> {
        Ok(None)
    }

    /// How many records each of these partitions holds beyond its
    /// checkpoint, as far as the source can tell cheaply (for lag
    /// reporting): the embedded log compares with its head, a broker's
    /// consumer with the partition's end offset as last fetched. Partitions
    /// it cannot tell about are left out; a failure to tell is no error.
    async fn lag(&mut self, checkpoints: &[(Partition, Checkpoint)]) -> Vec<(Partition, u64)> {
        let _ = checkpoints;
        Vec::new()
    }

    /// Whether events come from more than one partition, so that batches of
    /// concurrent consumers may move different checkpoints and still touch
    /// the same document (then the projector guards what it read). A source
    /// with one partition serializes its consumers on that one checkpoint.
    fn partitioned(&self) -> bool {
        true
    }
}

/// An event on its way to the broker, linked to the event before it in its
/// partition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outgoing<'a> {
    /// The event.
    pub event: &'a EventRecord,
    /// The position of the previous event of the same partition in the event
    /// store (0: there is none), or `None` where the relay does not know it;
    /// carried in the message for consumers to find a hole by
    /// ([`SourcedEvent::previous`]).
    pub previous: Option<Position>,
}

/// The broker side of the relay: where events are published.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// The partition the events of `stream_id` go to (0 for a sink of one
    /// partition): the relay links each event to the previous one of that
    /// partition.
    fn partition_of(&self, stream_id: &str) -> Partition;

    /// Publishes `events` (in position order) and returns once every one is
    /// durably acknowledged. On error, any prefix may have been published;
    /// the relay publishes again from its checkpoint.
    async fn publish(&self, events: &[Outgoing<'_>]) -> Result<(), LogError>;
}

/// The embedded log as a source: one partition, offsets are positions.
pub struct LogSource {
    log: std::sync::Arc<dyn EventLog>,
    after: Option<Position>,
}

impl LogSource {
    /// A source over `log`; assigns partition 0 on its first poll.
    pub fn new(log: std::sync::Arc<dyn EventLog>) -> Self {
        Self { log, after: None }
    }
}

#[async_trait]
impl EventSource for LogSource {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<SourceBatch, LogError> {
        let Some(after) = self.after else {
            return Ok(SourceBatch { assigned: vec![0], ..SourceBatch::default() });
        };
        let mut events = self.log.read(after, max).await?;
        if events.is_empty() && !wait.is_zero() {
            self.log.wait_beyond(after, wait).await;
            events = self.log.read(after, max).await?;
        }
        if let Some(last) = events.last() {
            self.after = Some(last.position);
        }
        let events = events
            .into_iter()
            .map(|event| SourcedEvent { partition: 0, offset: event.position, event, previous: None })
            .collect();
        Ok(SourceBatch { events, ..SourceBatch::default() })
    }

    async fn seek(&mut self, partition: Partition, checkpoint: Checkpoint) -> Result<(), LogError> {
        debug_assert_eq!(partition, 0, "the embedded log has one partition");
        self.after = Some(checkpoint.position);
        Ok(())
    }

    async fn head(&self) -> Result<Option<Position>, LogError> {
        self.log.head().await.map(Some)
    }

    async fn lag(&mut self, checkpoints: &[(Partition, Checkpoint)]) -> Vec<(Partition, u64)> {
        match self.log.head().await {
            Ok(head) => checkpoints.iter().map(|(p, at)| (*p, head.saturating_sub(at.position))).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn partitioned(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            ("abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key.as_bytes()) as i32, expected, "murmur2({key:?})");
        }
    }

    #[test]
    fn a_stream_keeps_its_partition() {
        assert_eq!(partition_for("cart-1", 1), 0);
        let p = partition_for("cart-42", 8);
        assert!(p < 8);
        assert_eq!(partition_for("cart-42", 8), p);
        let spread: std::collections::BTreeSet<_> =
            (0..64).map(|i| partition_for(&format!("order-{i}"), 8)).collect();
        assert_eq!(spread.len(), 8, "64 streams spread over all 8 partitions");
    }
}
