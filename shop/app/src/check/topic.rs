//! Step 4 of `shop check`: the Kafka topic, read from offset 0 to its end,
//! against the event store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use parallax_core::{Checkpoint, EventLog, EventRecord, EventSource as _, Partition, Position, SourcedEvent};
use parallax_kafka::{KafkaConfig, KafkaSource};
use parallax_runtime::check::{compare_topic, read_events, TopicMessage};
use uuid::Uuid;

use super::report::{CheckReport, Details};
use crate::app::kafka_config;
use crate::config::Settings;

/// How long reading the topic to its end offsets may take.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(120);
/// With every partition assigned, how long the topic may stay silent below
/// its end offsets (messages that are not Parallax events are skipped) before
/// the read ends.
const TOPIC_IDLE: Duration = Duration::from_secs(3);
/// Messages per poll of the topic.
const PAGE: usize = 5_000;

/// Reads the topic of `settings` as a consumer group of its own and compares
/// it with the store's `events` up to `head`, reading on in `log` for events
/// appended since.
pub(super) async fn check_topic(
    settings: &Settings,
    log: &dyn EventLog,
    events: &[EventRecord],
    head: Position,
    report: &mut CheckReport,
    details: &mut Details,
) -> anyhow::Result<()> {
    report.topic_checked = true;
    let config = kafka_config(settings);
    let group = format!("{}.check-{}", settings.log.group, Uuid::new_v4().simple());
    let topic = read_topic(&config, &group).await?;
    // Events appended since the head was read may be on the topic too.
    let mut known = events.to_vec();
    read_events(log, &mut known, Position::MAX).await.context("read the event store")?;
    let findings = compare_topic(&known, head, &topic.messages, settings.partitions());
    report.topic_messages = (topic.messages.len() as u64) + topic.unreadable.len() as u64;
    report.topic_duplicates = findings.duplicates as u64;
    report.topic_missing = findings.missing.len() as u64;
    report.topic_order_violations = findings.order_violations.len() as u64;
    report.topic_unknown = (findings.unknown.len() + topic.unreadable.len()) as u64;
    for line in findings.missing {
        details.violation("topic missing", line);
    }
    for line in findings.order_violations {
        details.violation("topic order", line);
    }
    for line in topic.unreadable.into_iter().chain(findings.unknown) {
        details.violation("topic unknown", line);
    }
    if findings.duplicates > 0 {
        details.note(format!(
            "the topic repeats {} events (allowed: at-least-once delivery)",
            findings.duplicates
        ));
    }
    Ok(())
}

/// What a read of the topic found.
#[derive(Debug, Clone, Default)]
pub struct TopicRead {
    /// Messages that are Parallax events, by partition and offset.
    pub messages: Vec<TopicMessage>,
    /// Offsets below the end that delivered nothing (not Parallax events),
    /// one line each.
    pub unreadable: Vec<String>,
}

/// Reads every partition of the topic from offset 0 to the end offsets it
/// has when the read begins, as consumer group `group` (which commits
/// nothing: use a fresh one).
///
/// # Errors
/// When the topic does not exist, or cannot be read to its end within two
/// minutes.
pub async fn read_topic(config: &KafkaConfig, group: &str) -> anyhow::Result<TopicRead> {
    let topic = &config.topic;
    let ends: BTreeMap<Partition, u64> = parallax_kafka::end_offsets(config)
        .await
        .with_context(|| format!("read the end offsets of topic {topic}"))?
        .into_iter()
        .collect();
    anyhow::ensure!(!ends.is_empty(), "topic {topic} does not exist");
    let mut source = KafkaSource::new(config, group).with_context(|| format!("consume topic {topic}"))?;
    let mut read = TopicProgress::new(ends);
    let result = read.read_to_the_end(&mut source, topic).await;
    source.close().await;
    result?;
    Ok(read.finish())
}

/// How far a read of the topic has got.
struct TopicProgress {
    /// Per partition, its end offset when the read began.
    ends: BTreeMap<Partition, u64>,
    /// Per partition, where to read on from.
    next: BTreeMap<Partition, u64>,
    /// Per partition, the offsets delivered below its end.
    delivered: BTreeMap<Partition, BTreeSet<u64>>,
    /// Partitions assigned to the reader and sought to where to read on from.
    sought: BTreeSet<Partition>,
    messages: Vec<TopicMessage>,
}

impl TopicProgress {
    fn new(ends: BTreeMap<Partition, u64>) -> Self {
        let next = ends.keys().map(|&partition| (partition, 0)).collect();
        Self { ends, next, delivered: BTreeMap::new(), sought: BTreeSet::new(), messages: Vec::new() }
    }

    /// Reads until every partition is at its end, or every partition is
    /// assigned and the topic has stayed silent for [`TOPIC_IDLE`].
    async fn read_to_the_end(&mut self, source: &mut KafkaSource, topic: &str) -> anyhow::Result<()> {
        let began = Instant::now();
        let mut quiet_since = Instant::now();
        loop {
            if self.ends.iter().all(|(partition, end)| self.next[partition] >= *end) {
                return Ok(());
            }
            if self.sought.len() == self.ends.len() && quiet_since.elapsed() >= TOPIC_IDLE {
                // What is left below the end offsets is not Parallax events.
                return Ok(());
            }
            if began.elapsed() >= TOPIC_TIMEOUT {
                return Err(self.timed_out(topic));
            }
            let batch = source
                .next_batch(PAGE, Duration::from_millis(200))
                .await
                .with_context(|| format!("read topic {topic}"))?;
            for partition in &batch.revoked {
                self.sought.remove(partition);
            }
            self.seek(source, &batch.assigned, topic).await?;
            if !batch.events.is_empty() || !batch.assigned.is_empty() {
                quiet_since = Instant::now();
            }
            self.absorb(batch.events);
        }
    }

    /// Resumes each of `assigned` where the read has got to in it.
    async fn seek(
        &mut self,
        source: &mut KafkaSource,
        assigned: &[Partition],
        topic: &str,
    ) -> anyhow::Result<()> {
        for &partition in assigned {
            let offset = self.next.get(&partition).copied().unwrap_or(0);
            source
                .seek(partition, Checkpoint { position: 0, offset })
                .await
                .with_context(|| format!("seek partition {partition} of {topic}"))?;
            self.sought.insert(partition);
        }
        Ok(())
    }

    /// Keeps the first delivery of each offset below its partition's end.
    fn absorb(&mut self, events: Vec<SourcedEvent>) {
        for sourced in events {
            let partition = sourced.partition;
            let Some(&end) = self.ends.get(&partition) else { continue };
            let slot = self.next.entry(partition).or_default();
            *slot = (*slot).max(sourced.offset + 1);
            if sourced.offset < end && self.delivered.entry(partition).or_default().insert(sourced.offset) {
                self.messages.push(TopicMessage::delivered(sourced));
            }
        }
    }

    fn timed_out(&self, topic: &str) -> anyhow::Error {
        let behind: Vec<String> = self
            .ends
            .iter()
            .filter(|(partition, end)| self.next[partition] < **end)
            .map(|(partition, end)| format!("partition {partition} at {} of {end}", self.next[partition]))
            .collect();
        anyhow::anyhow!(
            "could not read topic {topic} to its end within {TOPIC_TIMEOUT:?}: {}",
            behind.join(", ")
        )
    }

    /// The messages by partition and offset, and a line for every offset
    /// below the end that delivered nothing.
    fn finish(mut self) -> TopicRead {
        let mut unreadable = Vec::new();
        for (partition, end) in &self.ends {
            let seen = self.delivered.get(partition);
            let skipped = (0..*end).filter(|offset| !seen.is_some_and(|seen| seen.contains(offset)));
            for offset in skipped {
                unreadable.push(format!("message {partition}@{offset} is not a Parallax event"));
            }
        }
        self.messages.sort_by_key(|message| (message.partition, message.offset));
        TopicRead { messages: self.messages, unreadable }
    }
}
