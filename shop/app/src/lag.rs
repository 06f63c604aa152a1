//! How far behind each projection is, partition by partition.
//!
//! A projection is as stale as its worst partition: a stuck partition must
//! not hide behind a healthy one, so `shop status`, `/ready` and
//! `/api/admin/projections` measure the lag of every partition against where
//! that partition ends (the event store's head in the embedded shape, where
//! the log is one partition of positions; the topic's end offset with
//! Kafka, in messages) and judge by the largest.

use std::collections::BTreeMap;
use std::sync::Arc;

use parallax_core::{Checkpoint, EventStore, Partition, Position};
use parallax_kafka::KafkaConfig;
use serde::Serialize;

/// Where the log ends could not be read.
#[derive(Debug, thiserror::Error)]
#[error("where the log ends is unknown: {0}")]
pub struct EndsUnknown(String);

/// Where the log's partitions end.
#[derive(Clone)]
pub enum LogEnds {
    /// The embedded log: one partition, ending at the event store's head.
    Head(Arc<dyn EventStore>),
    /// A Kafka topic: each partition ends at its end offset.
    Kafka(KafkaConfig),
}

impl LogEnds {
    /// The end of every partition, by partition.
    pub async fn read(&self) -> Result<BTreeMap<Partition, u64>, EndsUnknown> {
        match self {
            LogEnds::Head(store) => store
                .head()
                .await
                .map(|head| BTreeMap::from([(0, head)]))
                .map_err(|e| EndsUnknown(parallax_runtime::error_chain(&e))),
            LogEnds::Kafka(config) => parallax_kafka::end_offsets(config)
                .await
                .map(|ends| ends.into_iter().collect())
                .map_err(|e| EndsUnknown(parallax_runtime::error_chain(&e))),
        }
    }

    /// Whether checkpoints are compared by offset (Kafka) or by position.
    pub fn by_offset(&self) -> bool {
        matches!(self, LogEnds::Kafka(_))
    }
}

/// One projection in one source partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionStatus {
    /// The source partition (0 in the embedded shape).
    pub partition: Partition,
    /// The highest position absorbed.
    pub position: Position,
    /// The log offset to resume from (Kafka), or the position (embedded).
    pub offset: u64,
    /// The end of the partition: the head (embedded) or the topic's end offset (Kafka).
    pub end: Option<u64>,
    /// Events (embedded) or messages (Kafka) still to absorb.
    pub lag: Option<u64>,
}

/// A projection's partitions: every partition it has a checkpoint in and
/// every partition of the log (a partition it never read lags by all its
/// messages), with their lag when the ends are known.
pub fn partitions(
    by_offset: bool,
    checkpoints: &[(Partition, Checkpoint)],
    known_ends: Option<&BTreeMap<Partition, u64>>,
) -> Vec<PartitionStatus> {
    let checkpoints: BTreeMap<Partition, Checkpoint> = checkpoints.iter().copied().collect();
    let mut all: Vec<Partition> = checkpoints.keys().copied().collect();
    all.extend(known_ends.into_iter().flat_map(|ends| ends.keys().copied()));
    all.sort_unstable();
    all.dedup();
    all.into_iter()
        .map(|partition| {
            let checkpoint = checkpoints.get(&partition).copied().unwrap_or_default();
            let offset = if by_offset { checkpoint.offset } else { checkpoint.position };
            let end = known_ends.and_then(|ends| ends.get(&partition).copied());
            PartitionStatus {
                partition,
                position: checkpoint.position,
                offset,
                end,
                lag: end.map(|end| end.saturating_sub(offset)),
            }
        })
        .collect()
}

/// The lag of the worst partition (`None` when any is unknown).
pub fn worst(partitions: &[PartitionStatus]) -> Option<u64> {
    partitions.iter().map(|row| row.lag).try_fold(0, |worst, lag| lag.map(|lag| worst.max(lag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: Position, offset: u64) -> Checkpoint {
        Checkpoint { position, offset }
    }

    #[test]
    fn a_stuck_partition_is_the_lag_however_far_the_others_got() {
        let known = BTreeMap::from([(0, 500), (1, 400), (2, 7)]);
        let rows = partitions(true, &[(0, at(9_000, 500)), (1, at(120, 40))], Some(&known));
        let lags: Vec<_> = rows.iter().map(|row| (row.partition, row.lag)).collect();
        assert_eq!(lags, [(0, Some(0)), (1, Some(360)), (2, Some(7))]);
        assert_eq!(worst(&rows), Some(360));
        assert_eq!(worst(&partitions(true, &[(0, at(9_000, 500))], None)), None);
    }

    #[test]
    fn the_embedded_log_lags_by_positions() {
        let rows = partitions(false, &[(0, at(90, 90))], Some(&BTreeMap::from([(0, 100)])));
        assert_eq!(worst(&rows), Some(10));
    }
}
