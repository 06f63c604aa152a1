//! A broker's topic against the event store.

use std::collections::{HashMap, HashSet};

use parallax_core::{partition_for, EventRecord, Partition, Position, SourcedEvent};
use serde_json::Value;
use uuid::Uuid;

/// A message of the topic, as far as a check needs it: the CloudEvents
/// attributes the relay publishes (`ce_…`) and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMessage {
    /// Its partition.
    pub partition: Partition,
    /// Its offset there.
    pub offset: u64,
    /// Its key: the stream id.
    pub key: Option<String>,
    /// `ce_position`.
    pub position: Position,
    /// `ce_streamversion`.
    pub stream_version: u64,
    /// `ce_id`.
    pub event_id: Uuid,
    /// `ce_type`.
    pub event_type: String,
    /// `ce_schemaversion`.
    pub schema_version: u32,
    /// The body.
    pub payload: String,
}

impl TopicMessage {
    /// The message a source delivered (its key is the event's stream).
    pub fn delivered(sourced: SourcedEvent) -> Self {
        let event = sourced.event;
        Self {
            partition: sourced.partition,
            offset: sourced.offset,
            key: Some(event.stream_id),
            position: event.position,
            stream_version: event.stream_version,
            event_id: event.event_id,
            event_type: event.event_type,
            schema_version: event.schema_version,
            payload: event.payload,
        }
    }

    fn place(&self) -> String {
        format!("message {}@{}", self.partition, self.offset)
    }

    /// Why the message does not carry `event` in the partition of its stream.
    fn differs_from(&self, event: &EventRecord, partitions: u32) -> Option<String> {
        let expected_partition = partition_for(&event.stream_id, partitions);
        let same_payload = serde_json::from_str::<Value>(&self.payload).ok()
            == serde_json::from_str::<Value>(&event.payload).ok();
        let field = if self.key.as_deref() != Some(event.stream_id.as_str()) {
            format!("key {:?}, the stream is {}", self.key, event.stream_id)
        } else if self.stream_version != event.stream_version {
            format!("stream version {}, stored {}", self.stream_version, event.stream_version)
        } else if self.event_id != event.event_id {
            format!("event id {}, stored {}", self.event_id, event.event_id)
        } else if self.event_type != event.event_type {
            format!("type {}, stored {}", self.event_type, event.event_type)
        } else if self.schema_version != event.schema_version {
            format!("schema version {}, stored {}", self.schema_version, event.schema_version)
        } else if !same_payload {
            format!("payload {}, stored {}", self.payload, event.payload)
        } else if self.partition != expected_partition {
            format!("{} belongs in partition {expected_partition}", event.stream_id)
        } else {
            return None;
        };
        Some(format!("{} (position {}): {field}", self.place(), self.position))
    }
}

/// The topic against the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicFindings {
    /// Distinct events of the store carried.
    pub distinct: usize,
    /// Messages repeating an event already carried (allowed: at-least-once).
    pub duplicates: usize,
    /// Events of the store up to the head carried by no message, one line each.
    pub missing: Vec<String>,
    /// First occurrences after a higher position of their partition, one
    /// line each: a consumer skips by position, so it would skip them.
    pub order_violations: Vec<String>,
    /// Messages that carry no event of the store, one line each.
    pub unknown: Vec<String>,
}

/// Compares `messages` (in any order) with the store's `events` (in position
/// order): every event up to `head` must be carried; every message must carry
/// an event of `events` unchanged (its payload compared as JSON), in its
/// stream's partition among `partitions`; in each partition, first
/// occurrences come in position order.
pub fn compare_topic(
    events: &[EventRecord],
    head: Position,
    messages: &[TopicMessage],
    partitions: u32,
) -> TopicFindings {
    let by_position: HashMap<Position, &EventRecord> =
        events.iter().map(|event| (event.position, event)).collect();
    let mut ordered: Vec<&TopicMessage> = messages.iter().collect();
    ordered.sort_by_key(|message| (message.partition, message.offset));
    let mut findings = TopicFindings::default();
    let mut carried: HashSet<Position> = HashSet::new();
    let mut highest: HashMap<Partition, (Position, u64)> = HashMap::new();
    for message in ordered {
        let Some(event) = by_position.get(&message.position) else {
            findings.unknown.push(format!(
                "{} carries position {}, which the event store does not have",
                message.place(),
                message.position
            ));
            continue;
        };
        if let Some(difference) = message.differs_from(event, partitions) {
            findings.unknown.push(difference);
            continue;
        }
        if !carried.insert(message.position) {
            findings.duplicates += 1;
            continue;
        }
        match highest.get(&message.partition) {
            Some(&(above, at)) if above > message.position => {
                findings.order_violations.push(format!(
                    "{} ({}@{}, position {}) comes after position {above} at offset {at}",
                    message.place(),
                    event.stream_id,
                    event.stream_version,
                    message.position
                ));
            }
            _ => {
                highest.insert(message.partition, (message.position, message.offset));
            }
        }
    }
    findings.distinct = carried.len();
    for event in events.iter().take_while(|event| event.position <= head) {
        if !carried.contains(&event.position) {
            findings.missing.push(format!(
                "position {} ({}@{}, {}) is on no partition",
                event.position, event.stream_id, event.stream_version, event.event_type
            ));
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::events::tests::event;

    fn message(event: &EventRecord, offset: u64) -> TopicMessage {
        TopicMessage {
            partition: partition_for(&event.stream_id, 4),
            offset,
            key: Some(event.stream_id.clone()),
            position: event.position,
            stream_version: event.stream_version,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
        }
    }

    #[test]
    fn duplicates_are_allowed_and_the_rest_named() {
        let events = vec![event(1, "cart-a", 1), event(2, "cart-a", 2), event(3, "cart-a", 3)];
        let clean: Vec<TopicMessage> = events.iter().zip(0..).map(|(e, offset)| message(e, offset)).collect();
        let findings = compare_topic(&events, 3, &clean, 4);
        assert_eq!(findings, TopicFindings { distinct: 3, ..TopicFindings::default() });

        let mut repeated = clean.clone();
        repeated.push(message(&events[1], 3));
        repeated.push(message(&events[2], 4));
        assert_eq!(compare_topic(&events, 3, &repeated, 4).duplicates, 2);

        // Version 2 after version 3, and version 1 missing.
        let swapped = vec![message(&events[2], 0), message(&events[1], 1)];
        let findings = compare_topic(&events, 3, &swapped, 4);
        assert_eq!(findings.order_violations.len(), 1, "{findings:?}");
        assert_eq!(findings.missing.len(), 1, "{findings:?}");

        let mut foreign = clean.clone();
        foreign.push(TopicMessage { position: 9, offset: 3, ..clean[0].clone() });
        foreign.push(TopicMessage { payload: "{}".into(), offset: 4, ..clean[1].clone() });
        foreign.push(TopicMessage { partition: clean[2].partition + 1, ..clean[2].clone() });
        assert_eq!(compare_topic(&events, 3, &foreign, 4).unknown.len(), 3);
    }
}
