//! Probes: wrappers around the ports that count and time what a projector
//! asks of them, for a breakdown of where its time goes without a profiler;
//! and what a relay published where, to tell when projectors over a broker
//! have caught up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parallax_core::{
    partition_for, DocKey, EventLog, EventRecord, EventSink, LogError, Outgoing, Partition, Position,
    ReadStore, ReadStoreError, ReadStoreLayer, Revision, StoredDocument, ViewBatch,
};
use serde::Serialize;

/// The log, timing its reads.
pub struct TimedLog {
    inner: Arc<dyn EventLog>,
    busy: AtomicU64,
}

impl TimedLog {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn EventLog>) -> Self {
        Self { inner, busy: AtomicU64::new(0) }
    }

    /// Wall time spent in `read`, summed over the callers.
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy.load(Ordering::Relaxed))
    }
}

#[async_trait]
impl EventLog for TimedLog {
    async fn read(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, LogError> {
        let began = Instant::now();
        let events = self.inner.read(after, limit).await;
        self.busy.fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
        events
    }

    async fn wait_beyond(&self, after: Position, timeout: Duration) {
        self.inner.wait_beyond(after, timeout).await;
    }

    async fn head(&self) -> Result<Position, LogError> {
        self.inner.head().await
    }
}

/// What the projectors asked of the read store.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    /// Reads: `get_with_revision`, `get_many` and `get_many_stored` calls.
    pub gets: u64,
    /// Wall time in them, summed over the callers.
    pub get_busy: Duration,
    /// Batches committed.
    pub commits: u64,
    /// Document writes in them.
    pub writes: u64,
    /// Read guards checked in them.
    pub guards: u64,
    /// Wall time in `commit`, summed over the callers.
    pub commit_busy: Duration,
}

impl Counts {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            gets: self.gets - earlier.gets,
            get_busy: self.get_busy.saturating_sub(earlier.get_busy),
            commits: self.commits - earlier.commits,
            writes: self.writes - earlier.writes,
            guards: self.guards - earlier.guards,
            commit_busy: self.commit_busy.saturating_sub(earlier.commit_busy),
        }
    }
}

impl Counts {
    /// `self` and `other` together (two projectors' counts).
    pub fn plus(&self, other: &Counts) -> Counts {
        Counts {
            gets: self.gets + other.gets,
            get_busy: self.get_busy + other.get_busy,
            commits: self.commits + other.commits,
            writes: self.writes + other.writes,
            guards: self.guards + other.guards,
            commit_busy: self.commit_busy + other.commit_busy,
        }
    }
}

/// The read store, counting and timing gets and commits.
pub struct Counted {
    inner: Arc<dyn ReadStore>,
    gets: AtomicU64,
    get_nanos: AtomicU64,
    commits: AtomicU64,
    writes: AtomicU64,
    guards: AtomicU64,
    commit_nanos: AtomicU64,
}

impl Counted {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ReadStore>) -> Self {
        Self {
            inner,
            gets: AtomicU64::new(0),
            get_nanos: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            guards: AtomicU64::new(0),
            commit_nanos: AtomicU64::new(0),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            gets: self.gets.load(Ordering::Relaxed),
            get_busy: Duration::from_nanos(self.get_nanos.load(Ordering::Relaxed)),
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            guards: self.guards.load(Ordering::Relaxed),
            commit_busy: Duration::from_nanos(self.commit_nanos.load(Ordering::Relaxed)),
        }
    }
}

#[async_trait]
impl ReadStoreLayer for Counted {
    fn inner(&self) -> &dyn ReadStore {
        self.inner.as_ref()
    }

    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(serde_json::Value, Revision)>, ReadStoreError> {
        let began = Instant::now();
        let got = self.inner.get_with_revision(view, key).await;
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.get_nanos.fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
        got
    }

    async fn get_many(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<(serde_json::Value, Revision)>>, ReadStoreError> {
        let began = Instant::now();
        let got = self.inner.get_many(keys).await;
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.get_nanos.fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
        got
    }

    /// What a projector's batch reads: forwarded as is, so a store that keeps
    /// marks (Cassandra) hands them to the projector.
    async fn get_many_stored(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<StoredDocument>>, ReadStoreError> {
        let began = Instant::now();
        let got = self.inner.get_many_stored(keys).await;
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.get_nanos.fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
        got
    }

    async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError> {
        let (writes, guards) = (batch.writes.len() as u64, batch.reads.len() as u64);
        let began = Instant::now();
        let done = self.inner.commit(batch).await;
        self.commit_nanos.fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if done.is_ok() {
            self.commits.fetch_add(1, Ordering::Relaxed);
            self.writes.fetch_add(writes, Ordering::Relaxed);
            self.guards.fetch_add(guards, Ordering::Relaxed);
        }
        done
    }
}

/// The relay's sink, keeping the highest position it published to each
/// partition of the log (placed as the sink places them: `partition_for`).
pub struct Published {
    inner: Arc<dyn EventSink>,
    last: Vec<AtomicU64>,
}

impl Published {
    /// Wraps `inner`, which publishes to `partitions` partitions.
    pub fn new(inner: Arc<dyn EventSink>, partitions: u32) -> Self {
        Self { inner, last: (0..partitions.max(1)).map(|_| AtomicU64::new(0)).collect() }
    }

    /// The highest position published to each partition (0: none yet).
    pub fn last(&self) -> Vec<Position> {
        self.last.iter().map(|at| at.load(Ordering::Relaxed)).collect()
    }

    /// The highest position published.
    pub fn furthest(&self) -> Position {
        self.last().into_iter().max().unwrap_or(0)
    }
}

#[async_trait]
impl EventSink for Published {
    fn partition_of(&self, stream_id: &str) -> Partition {
        self.inner.partition_of(stream_id)
    }

    async fn publish(&self, events: &[Outgoing<'_>]) -> Result<(), LogError> {
        self.inner.publish(events).await?;
        let partitions = u32::try_from(self.last.len()).unwrap_or(u32::MAX);
        for &Outgoing { event, .. } in events {
            let partition = partition_for(&event.stream_id, partitions) as usize;
            self.last[partition].fetch_max(event.position, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parallax_core::read_store::recorder::{assert_forwards, Recorder};

    use super::Counted;

    #[tokio::test]
    async fn the_counting_store_forwards_every_method() {
        let recorder = Arc::new(Recorder::default());
        assert_forwards(&Counted::new(recorder.clone()), &recorder, &[]).await;
    }
}
