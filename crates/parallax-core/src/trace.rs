//! ①→⑤ Trace context: one W3C `traceparent` from the command that caused an
//! event, through the event's [`Metadata`](crate::Metadata) and the broker's
//! message headers, to the projector that applies it.
//!
//! The value is the header of [W3C Trace Context] level 1:
//! `00-<trace-id: 32 hex>-<parent-id: 16 hex>-<trace-flags: 2 hex>`. Parallax
//! keeps no spans of its own: it carries the trace id along and names a fresh
//! parent id at each hop that starts work ([`TraceParent::child`]), so a
//! tracing backend that reads the logs (or an OpenTelemetry layer in the
//! application) can join them.
//!
//! Parsing follows the specification's rules for a receiver: lowercase hex
//! only; version `ff`, an all-zero trace id or an all-zero parent id is
//! invalid; a version above `00` may carry more fields after a `-`, which are
//! ignored. No crate is used for this: the ones on crates.io are unmaintained
//! or pull in an HTTP stack, and the format is a few lines.
//!
//! [W3C Trace Context]: https://www.w3.org/TR/trace-context/

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A W3C `traceparent`: the trace an event belongs to and the operation that
/// produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: u128,
    parent_id: u64,
    flags: u8,
}

/// Why a `traceparent` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent {value:?}: {reason}")]
pub struct TraceParentError {
    /// The value (at most its first 64 characters).
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The trace flag "sampled" (the only flag level 1 defines).
const SAMPLED: u8 = 0x01;

impl TraceParent {
    /// The header's name, in HTTP and in Kafka message headers.
    pub const HEADER: &'static str = "traceparent";

    /// A new trace: a random trace id and parent id, sampled.
    pub fn new_root() -> Self {
        Self { trace_id: nonzero_u128(), parent_id: nonzero_u64(), flags: SAMPLED }
    }

    /// The same trace with a fresh parent id: what an operation caused by
    /// this one passes on (the flags are kept).
    pub fn child(&self) -> Self {
        Self { parent_id: nonzero_u64(), ..*self }
    }

    /// Continues the trace of an incoming header when it is valid, or starts a
    /// new one (the receiver's rule of the specification: an invalid
    /// `traceparent` is ignored).
    pub fn continue_or_start(incoming: Option<&str>) -> Self {
        incoming.and_then(|value| value.parse::<Self>().ok()).map_or_else(Self::new_root, |t| t.child())
    }

    /// The trace id (displayed as 32 lowercase hex digits).
    pub fn trace_id(&self) -> TraceId {
        TraceId(self.trace_id)
    }

    /// The parent (span) id (displayed as 16 lowercase hex digits).
    pub fn parent_id(&self) -> SpanId {
        SpanId(self.parent_id)
    }

    /// Whether the caller sampled the trace.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

/// A trace id; `Display` writes the 32 lowercase hex digits of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub u128);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A span (parent) id; `Display` writes the 16 lowercase hex digits of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub u64);

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

fn nonzero_u128() -> u128 {
    loop {
        let value = Uuid::new_v4().as_u128();
        if value != 0 {
            return value;
        }
    }
}

fn nonzero_u64() -> u64 {
    loop {
        // The low 64 bits of a v4 UUID: 62 random bits and two fixed ones.
        let value = Uuid::new_v4().as_u128() as u64;
        if value != 0 {
            return value;
        }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let refuse = |reason| TraceParentError { value: value.chars().take(64).collect(), reason };
        let hex = |field: &str, digits: usize| {
            (field.len() == digits && field.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .then(|| u128::from_str_radix(field, 16).ok())
                .flatten()
        };
        // version "-" trace-id "-" parent-id "-" trace-flags, 55 characters.
        if value.len() < 55 || !value.is_ascii() {
            return Err(refuse("expected 00-<32 hex>-<16 hex>-<2 hex>"));
        }
        let version =
            hex(&value[0..2], 2).ok_or_else(|| refuse("the version is not 2 lowercase hex digits"))?;
        if version == 0xff {
            return Err(refuse("version ff is invalid"));
        }
        if (version == 0 && value.len() != 55) || (value.len() > 55 && value.as_bytes()[55] != b'-') {
            return Err(refuse("expected 00-<32 hex>-<16 hex>-<2 hex>"));
        }
        let bytes = value.as_bytes();
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(refuse("expected 00-<32 hex>-<16 hex>-<2 hex>"));
        }
        let trace_id =
            hex(&value[3..35], 32).ok_or_else(|| refuse("the trace id is not 32 lowercase hex digits"))?;
        let parent_id =
            hex(&value[36..52], 16).ok_or_else(|| refuse("the parent id is not 16 lowercase hex digits"))?;
        let flags =
            hex(&value[53..55], 2).ok_or_else(|| refuse("the flags are not 2 lowercase hex digits"))?;
        if trace_id == 0 {
            return Err(refuse("the trace id is all zeros"));
        }
        if parent_id == 0 {
            return Err(refuse("the parent id is all zeros"));
        }
        Ok(Self { trace_id, parent_id: parent_id as u64, flags: flags as u8 })
    }
}

impl Serialize for TraceParent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceParent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads an optional `traceparent` leniently: a malformed one (written by
/// something else) is dropped rather than making the whole record unreadable.
pub(crate) fn lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<TraceParent>, D::Error> {
    let text = Option::<std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    Ok(text.and_then(|text| text.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specification_example_round_trips() {
        let parsed: TraceParent = EXAMPLE.parse().expect("valid");
        assert_eq!(parsed.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id().to_string(), "00f067aa0ba902b7");
        assert!(parsed.sampled());
        assert_eq!(parsed.to_string(), EXAMPLE);
        let json = serde_json::to_string(&parsed).expect("serializes");
        assert_eq!(json, format!("\"{EXAMPLE}\""));
        assert_eq!(serde_json::from_str::<TraceParent>(&json).expect("deserializes"), parsed);
    }

    #[test]
    fn a_child_keeps_the_trace_and_a_root_is_new() {
        let parent: TraceParent = EXAMPLE.parse().expect("valid");
        let child = parent.child();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.parent_id(), parent.parent_id());
        let continued = TraceParent::continue_or_start(Some(EXAMPLE));
        assert_eq!(continued.trace_id(), parent.trace_id());
        let root = TraceParent::new_root();
        assert_ne!(root.trace_id(), parent.trace_id());
        assert_eq!(root.to_string().parse::<TraceParent>(), Ok(root));
        let fresh = TraceParent::continue_or_start(Some("garbage"));
        assert_ne!(fresh.trace_id(), parent.trace_id());
    }

    #[test]
    fn metadata_without_or_with_a_bad_traceparent_still_reads() {
        let old = r#"{"correlation_id":"0190f1a0-0000-7000-8000-000000000001",
            "causation_id":"0190f1a0-0000-7000-8000-000000000001",
            "command_id":"0190f1a0-0000-7000-8000-000000000001"}"#;
        let metadata: crate::Metadata = serde_json::from_str(old).expect("metadata of before traces");
        assert_eq!(metadata.traceparent, None);
        assert!(!serde_json::to_string(&metadata).expect("serializes").contains("traceparent"));

        let with = old.replace('}', &format!(r#","traceparent":"{EXAMPLE}"}}"#));
        let metadata: crate::Metadata = serde_json::from_str(&with).expect("metadata with a trace");
        assert_eq!(metadata.traceparent.map(|t| t.to_string()).as_deref(), Some(EXAMPLE));
        assert!(serde_json::to_string(&metadata).expect("serializes").contains(EXAMPLE));

        let bad = old.replace('}', r#","traceparent":"nonsense"}"#);
        let metadata: crate::Metadata = serde_json::from_str(&bad).expect("a bad trace is dropped");
        assert_eq!(metadata.traceparent, None);
    }

    #[test]
    fn invalid_values_are_refused() {
        for value in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(value.parse::<TraceParent>().is_err(), "{value:?} must be refused");
        }
        // A later version may append fields.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(future.parse::<TraceParent>().is_ok());
    }
}
