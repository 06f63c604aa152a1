//! Waiting for the views to reach the event store's head.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parallax_core::{
    partition_for, Checkpoint, EventLog, EventRecord, LogError, Partition, Position, Projection, ReadStore,
    ReadStoreError,
};

/// Events per read of the event store.
const PAGE: usize = 5_000;

/// Where the read side stood when [`settle`] ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// The event store's head.
    pub head: Position,
    /// Checkpoints behind the store's events in their partition, one line each.
    pub behind: Vec<String>,
    /// Checkpoints beyond the last of the store's events in their partition,
    /// one line each.
    pub ahead: Vec<String>,
}

/// Why [`settle`] could not read what it compares.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettleError {
    /// The event store's head.
    #[error("read the head")]
    Head(#[source] LogError),
    /// The events.
    #[error("read the event store")]
    Events(#[source] LogError),
    /// A projection's checkpoints.
    #[error("read the checkpoints of {projection}")]
    Checkpoints {
        /// The projection.
        projection: String,
        /// The read store's error.
        #[source]
        source: ReadStoreError,
    },
}

/// Reads the store's events to its head into `events` (in position order,
/// resuming after the last one there) and waits until every one of
/// `projections` has absorbed them in every one of `partitions` log
/// partitions and the head stands still, or until `deadline`. Against a
/// store that keeps growing it ends at the deadline, with the last head it
/// saw.
///
/// # Errors
/// When the log or the read store cannot be read.
pub async fn settle(
    log: &dyn EventLog,
    read: &dyn ReadStore,
    projections: &[Arc<dyn Projection>],
    events: &mut Vec<EventRecord>,
    partitions: u32,
    deadline: Instant,
) -> Result<Settled, SettleError> {
    loop {
        let head = log.head().await.map_err(SettleError::Head)?;
        if events.last().is_some_and(|last| last.position > head) {
            // Events were removed from the store's end since: read it again.
            events.clear();
        }
        read_events(log, events, head).await.map_err(SettleError::Events)?;
        let mut reached: BTreeMap<Partition, Position> = BTreeMap::new();
        for event in events.iter() {
            reached.insert(partition_for(&event.stream_id, partitions), event.position);
        }
        let (mut behind, mut ahead) = (Vec::new(), Vec::new());
        for projection in projections {
            let name = projection.name();
            let checkpoints = read
                .checkpoints(name)
                .await
                .map_err(|source| SettleError::Checkpoints { projection: name.to_owned(), source })?;
            compare_checkpoints(name, checkpoints, &reached, &mut behind, &mut ahead);
        }
        let visible = events.last().map_or(0, |last| last.position);
        let still = log.head().await.map_err(SettleError::Head)? == head && visible >= head;
        if (behind.is_empty() && still) || Instant::now() >= deadline {
            return Ok(Settled { head, behind, ahead });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads events after the last of `events` until one at or beyond `until`,
/// or until nothing more is visible.
///
/// # Errors
/// When the log cannot be read.
pub async fn read_events(
    log: &dyn EventLog,
    events: &mut Vec<EventRecord>,
    until: Position,
) -> Result<(), LogError> {
    loop {
        let after = events.last().map_or(0, |last| last.position);
        if after >= until {
            return Ok(());
        }
        let batch = log.read(after, PAGE).await?;
        if batch.is_empty() {
            return Ok(());
        }
        events.extend(batch);
    }
}

/// One projection's checkpoints against the last position of the store's
/// events in each partition (`reached`): a line for each one behind, and
/// for each one beyond.
fn compare_checkpoints(
    name: &str,
    checkpoints: Vec<(Partition, Checkpoint)>,
    reached: &BTreeMap<Partition, Position>,
    behind: &mut Vec<String>,
    ahead: &mut Vec<String>,
) {
    let checkpoints: BTreeMap<Partition, Checkpoint> = checkpoints.into_iter().collect();
    for (partition, position) in reached {
        let at = checkpoints.get(partition).map_or(0, |checkpoint| checkpoint.position);
        if at < *position {
            behind.push(format!(
                "{name} in partition {partition} is at position {at}; the store's events there reach {position}"
            ));
        }
    }
    for (partition, checkpoint) in &checkpoints {
        let last = reached.get(partition).copied().unwrap_or(0);
        if checkpoint.position > last {
            ahead.push(format!(
                "checkpoint of {name} in partition {partition} is at position {}; the store's events there \
                 end at {last}",
                checkpoint.position
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_named_behind_and_beyond_the_events() {
        let at = |position| Checkpoint { position, offset: 0 };
        let reached = BTreeMap::from([(0, 10), (1, 20)]);
        let (mut behind, mut ahead) = (Vec::new(), Vec::new());
        compare_checkpoints(
            "cart",
            vec![(0, at(10)), (1, at(15)), (2, at(3))],
            &reached,
            &mut behind,
            &mut ahead,
        );
        assert_eq!(behind, ["cart in partition 1 is at position 15; the store's events there reach 20"]);
        assert_eq!(
            ahead,
            ["checkpoint of cart in partition 2 is at position 3; the store's events there end at 0"]
        );
    }
}
