//! The report of `shop check`, and the lines naming what it found.

use std::collections::HashMap;
use std::fmt::Write as _;

use parallax_core::Position;
use serde::Serialize;

/// Lines in [`CheckReport::details`].
const MAX_DETAILS: usize = 50;
/// Lines of one kind of violation in [`CheckReport::details`].
const MAX_DETAILS_OF_A_KIND: usize = 10;

/// Operations of the history, by completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Operations {
    /// Acknowledged.
    pub ok: u64,
    /// Definitely refused.
    pub fail: u64,
    /// Outcome unknown (timeouts, and invokes without completion).
    pub info: u64,
}

/// What the checker found; the fields are documented in the [module docs](super).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// No violation.
    pub ok: bool,
    /// Events in the event store, up to `head`.
    pub events: u64,
    /// Streams among them.
    pub streams: u64,
    /// The head the check ran against.
    pub head: Position,
    /// Whether a topic was read.
    pub topic_checked: bool,
    /// Messages read from the topic.
    pub topic_messages: u64,
    /// Whether a history was checked.
    pub history_checked: bool,
    /// Write operations of the history.
    pub operations: Operations,
    /// Read operations of the history.
    pub reads: Operations,
    /// Idempotency keys the history sent more than once (retries).
    pub retried_keys: u64,
    /// Events of all-`add_item` carts beyond one per present key.
    pub applied_twice_in_store: u64,
    /// Reads with a token that miss the client's own acknowledged write.
    pub read_your_writes_violations: u64,
    /// Reads that show less than an earlier read of the same client.
    pub monotonic_read_violations: u64,
    /// Reads that show a state the events never gave their stream.
    pub reads_unlike_model: u64,
    /// `lost_acknowledged + lost_in_views`.
    pub lost: u64,
    /// Acknowledged operations not in the event store.
    pub lost_acknowledged: u64,
    /// (cart, SKU) pairs whose view holds fewer units than the history added.
    pub lost_in_views: u64,
    /// Refused operations whose key is in the store.
    pub refused_present: u64,
    /// `duplicate_event_ids + applied_twice + topic_unknown`.
    pub duplicated: u64,
    /// Events whose id an earlier event has.
    pub duplicate_event_ids: u64,
    /// (cart, SKU) pairs whose view holds more units than the history added.
    pub applied_twice: u64,
    /// Messages of the topic that carry no event of the store.
    pub topic_unknown: u64,
    /// Events out of version order in their stream.
    pub order_violations: u64,
    /// Operations ordered before one acknowledged before they began.
    pub linearizability_violations: u64,
    /// Events of the store on no partition of the topic.
    pub topic_missing: u64,
    /// Messages repeating an event already carried (allowed).
    pub topic_duplicates: u64,
    /// First occurrences after a higher position of their partition.
    pub topic_order_violations: u64,
    /// Documents and checkpoints that differ from the fold.
    pub view_differences: u64,
    /// Documents that differ from the checker's own model of the events.
    pub model_differences: u64,
    /// Checkpoints behind the store's events when the wait ended.
    pub views_behind: u64,
    /// Dead letters of the active generations.
    pub dead_letters: u64,
    /// Documents of the fold.
    pub documents: u64,
    /// Lines naming what was found.
    pub details: Vec<String>,
    /// Lines left out of `details`.
    pub details_omitted: u64,
}

impl CheckReport {
    /// Sums the totals and decides `ok`.
    pub(super) fn conclude(&mut self, details: Details) {
        self.lost = self.lost_acknowledged + self.lost_in_views;
        self.duplicated =
            self.duplicate_event_ids + self.applied_twice + self.applied_twice_in_store + self.topic_unknown;
        self.ok = [
            self.lost,
            self.refused_present,
            self.duplicated,
            self.order_violations,
            self.linearizability_violations,
            self.topic_missing,
            self.topic_order_violations,
            self.view_differences,
            self.model_differences,
            self.read_your_writes_violations,
            self.monotonic_read_violations,
            self.reads_unlike_model,
            self.views_behind,
            self.dead_letters,
        ]
        .iter()
        .all(|&count| count == 0);
        (self.details, self.details_omitted) = details.finish();
    }

    /// The report for people: one line per store, then the details.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = if self.ok { "OK" } else { "VIOLATIONS FOUND" };
        let _ = writeln!(out, "shop check: {verdict}");
        let _ = writeln!(
            out,
            "event store  {} events in {} streams (head {}); duplicate event ids {}; order violations {}",
            self.events, self.streams, self.head, self.duplicate_event_ids, self.order_violations
        );
        if self.topic_checked {
            let _ = writeln!(
                out,
                "topic        {} messages; missing {}; not in the store {}; order violations {}; \
                 duplicates {} (allowed: at-least-once)",
                self.topic_messages,
                self.topic_missing,
                self.topic_unknown,
                self.topic_order_violations,
                self.topic_duplicates
            );
        } else {
            let _ = writeln!(out, "topic        none configured");
        }
        let _ = writeln!(
            out,
            "views        {} documents compared; differences {}; unlike the model {}; checkpoints behind {}; \
             dead letters {}",
            self.documents, self.view_differences, self.model_differences, self.views_behind, self.dead_letters
        );
        if self.history_checked {
            let ops = &self.operations;
            let _ = writeln!(
                out,
                "history      {} ok, {} fail, {} info; lost {}; refused but present {}; \
                 linearizability violations {}; in the carts: applied twice {}, lost {}; \
                 retried keys {}, applied twice in the store {}",
                ops.ok,
                ops.fail,
                ops.info,
                self.lost_acknowledged,
                self.refused_present,
                self.linearizability_violations,
                self.applied_twice,
                self.lost_in_views,
                self.retried_keys,
                self.applied_twice_in_store
            );
            let reads = &self.reads;
            let _ = writeln!(
                out,
                "reads        {} ok, {} fail, {} info; read-your-writes violations {}; monotonic read \
                 violations {}; unlike the events {}",
                reads.ok,
                reads.fail,
                reads.info,
                self.read_your_writes_violations,
                self.monotonic_read_violations,
                self.reads_unlike_model
            );
        } else {
            let _ = writeln!(out, "history      none given");
        }
        for line in &self.details {
            let _ = writeln!(out, "  {line}");
        }
        if self.details_omitted > 0 {
            let _ = writeln!(out, "  … and {} more", self.details_omitted);
        }
        out
    }
}

/// Lines naming what was found: violations first (a few of each kind), then
/// informative lines, at most [`MAX_DETAILS`] in all.
#[derive(Debug, Default)]
pub(super) struct Details {
    violations: Vec<String>,
    notes: Vec<String>,
    per_kind: HashMap<&'static str, usize>,
    omitted: u64,
}

impl Details {
    pub(super) fn violation(&mut self, kind: &'static str, line: String) {
        let seen = self.per_kind.entry(kind).or_default();
        *seen += 1;
        if *seen <= MAX_DETAILS_OF_A_KIND {
            self.violations.push(format!("{kind}: {line}"));
        } else {
            self.omitted += 1;
        }
    }

    pub(super) fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    fn finish(mut self) -> (Vec<String>, u64) {
        let mut lines = self.violations;
        lines.append(&mut self.notes);
        if lines.len() > MAX_DETAILS {
            self.omitted += (lines.len() - MAX_DETAILS) as u64;
            lines.truncate(MAX_DETAILS);
        }
        (lines, self.omitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_keep_a_few_of_each_kind() {
        let mut details = Details::default();
        for n in 0..30 {
            details.violation("lost", format!("{n}"));
        }
        details.violation("order", "x".into());
        details.note("a note".into());
        let (lines, omitted) = details.finish();
        assert_eq!(lines.len(), MAX_DETAILS_OF_A_KIND + 2);
        assert_eq!(omitted, 20);
        assert_eq!(lines.last().map(String::as_str), Some("a note"));
    }
}
