//! The event store's events, checked in position order.

use std::collections::HashMap;
use std::fmt;

use parallax_core::{EventRecord, Position};
use uuid::Uuid;

/// An event that breaks an invariant of the event store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventViolation {
    /// An event with the id of an earlier one.
    DuplicateEventId {
        /// The id both carry.
        event_id: Uuid,
        /// The later event's position.
        position: Position,
        /// The later event's stream.
        stream_id: String,
        /// The later event's version in its stream.
        stream_version: u64,
        /// The earlier event's position.
        first: Position,
    },
    /// An event whose version is not one more than the highest version of
    /// its stream at a lower position: a gap or a repeat.
    OutOfOrder {
        /// Its stream.
        stream_id: String,
        /// Its version.
        stream_version: u64,
        /// Its position.
        position: Position,
        /// The highest version of the stream below `position` (0: none).
        highest: u64,
    },
}

impl EventViolation {
    /// A short name of the kind, for grouping in a report.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DuplicateEventId { .. } => "duplicate event id",
            Self::OutOfOrder { .. } => "order",
        }
    }
}

impl fmt::Display for EventViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateEventId { event_id, position, stream_id, stream_version, first } => write!(
                f,
                "event {event_id} at position {position} ({stream_id}@{stream_version}) was already at position \
                 {first}"
            ),
            Self::OutOfOrder { stream_id, stream_version, position, highest } => write!(
                f,
                "{stream_id} version {stream_version} at position {position} follows version {highest} \
                 (expected {})",
                highest + 1
            ),
        }
    }
}

/// What [`check_events`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFindings {
    /// Events checked.
    pub events: u64,
    /// Streams among them.
    pub streams: u64,
    /// Violations, in the position order of the events that break them.
    pub violations: Vec<EventViolation>,
}

/// Checks `events`, read in position order: no event id twice; per stream,
/// versions 1..n, each one more than the highest before it in position order
/// (so no gap, no repeat, and positions increasing with versions).
pub fn check_events(events: &[EventRecord]) -> EventFindings {
    let mut findings = EventFindings::default();
    let mut ids: HashMap<Uuid, Position> = HashMap::with_capacity(events.len());
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for event in events {
        if let Some(first) = ids.insert(event.event_id, event.position) {
            ids.insert(event.event_id, first);
            findings.violations.push(EventViolation::DuplicateEventId {
                event_id: event.event_id,
                position: event.position,
                stream_id: event.stream_id.clone(),
                stream_version: event.stream_version,
                first,
            });
        }
        let highest = versions.entry(&event.stream_id).or_default();
        if event.stream_version != *highest + 1 {
            findings.violations.push(EventViolation::OutOfOrder {
                stream_id: event.stream_id.clone(),
                stream_version: event.stream_version,
                position: event.position,
                highest: *highest,
            });
        }
        *highest = (*highest).max(event.stream_version);
    }
    findings.events = events.len() as u64;
    findings.streams = versions.len() as u64;
    findings
}

#[cfg(test)]
pub(super) mod tests {
    use chrono::Utc;
    use parallax_core::Metadata;

    use super::*;

    /// An event of `stream` at `position`, with a fresh id.
    pub(in crate::check) fn event(position: Position, stream: &str, version: u64) -> EventRecord {
        EventRecord {
            position,
            stream_id: stream.to_owned(),
            stream_version: version,
            event_id: Uuid::new_v4(),
            event_type: "cart.item_added".to_owned(),
            schema_version: 2,
            payload: format!(r#"{{"n":{position}}}"#),
            metadata: Metadata::default(),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn gaps_repeats_and_duplicate_ids_are_named() {
        let mut events = vec![event(1, "cart-a", 1), event(2, "cart-a", 2), event(3, "cart-b", 1)];
        let findings = check_events(&events);
        assert_eq!((findings.events, findings.streams, findings.violations.len()), (3, 2, 0));

        events.push(event(4, "cart-a", 4)); // a gap
        events.push(event(5, "cart-b", 1)); // a repeat
        let mut again = event(6, "cart-c", 1);
        again.event_id = events[0].event_id;
        events.push(again);
        let kinds: Vec<&str> = check_events(&events).violations.iter().map(EventViolation::kind).collect();
        assert_eq!(kinds, ["order", "order", "duplicate event id"]);
        assert_eq!(
            check_events(&events).violations[0].to_string(),
            "cart-a version 4 at position 4 follows version 2 (expected 3)"
        );
    }
}
