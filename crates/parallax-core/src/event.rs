//! ② Events as the stores and the log move them: type-erased records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::tenant::Tenant;
use crate::trace::TraceParent;

/// A global position in the event store: strictly increasing in commit order,
/// starting at 1. Position 0 means "before the first event".
pub type Position = u64;

/// A stream's identity: its tenant, its category (the aggregate type,
/// `"cart"`) and the id within it (`"42"`), written `"{category}-{id}"`
/// (`"cart-42"`) in the default tenant and `"{tenant}/{category}-{id}"`
/// (`"acme/cart-42"`) in another (see [`Tenant`]): the category ends at the
/// first `-`, so categories have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId<'a> {
    /// The tenant's name; `None` for the default tenant.
    pub tenant: Option<&'a str>,
    /// The aggregate type.
    pub category: &'a str,
    /// The aggregate's id within it.
    pub id: &'a str,
}

impl<'a> StreamId<'a> {
    /// The stream of aggregate `id` of `category` in `tenant`.
    pub fn new(tenant: &'a Tenant, category: &'a str, id: &'a str) -> Self {
        Self { tenant: tenant.name(), category, id }
    }

    /// Reads a stream id written `"[{tenant}/]{category}-{id}"`; `None`
    /// without a `-`.
    pub fn parse(stream_id: &'a str) -> Option<Self> {
        let (tenant, rest) = Tenant::split(stream_id);
        let (category, id) = rest.split_once('-')?;
        let tenant = (!tenant.is_default()).then(|| &stream_id[..stream_id.len() - rest.len() - 1]);
        Some(Self { tenant, category, id })
    }

    /// The id, if the stream is of `category`.
    pub fn id_in(self, category: &str) -> Option<&'a str> {
        (self.category == category).then_some(self.id)
    }

    /// The stream's tenant.
    pub fn tenant(self) -> Tenant {
        self.tenant.map_or(Tenant::DEFAULT, |name| Tenant::parse(name).expect("a parsed tenant"))
    }
}

impl std::fmt::Display for StreamId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(tenant) = self.tenant {
            write!(f, "{tenant}/")?;
        }
        write!(f, "{}-{}", self.category, self.id)
    }
}

/// Context recorded with every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Ties together everything one user request caused, across aggregates.
    pub correlation_id: Uuid,
    /// The event or command that directly caused this event.
    pub causation_id: Uuid,
    /// The command that produced this event.
    pub command_id: Uuid,
    /// Who asked, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The W3C trace context of the operation that produced the event (absent
    /// in events recorded before traces were kept; a malformed stored value
    /// reads as absent).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::trace::lenient")]
    pub traceparent: Option<TraceParent>,
    /// The tenant whose event it is, as its stream id names it (absent for
    /// the default tenant), for consumers that read metadata only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id of the event (UUIDv7).
    pub event_id: Uuid,
    /// Persisted name of the event type, e.g. `"cart.item_added"`.
    pub event_type: String,
    /// Schema version of `payload`.
    pub schema_version: u32,
    /// The event as JSON text.
    pub payload: String,
    /// Context.
    pub metadata: Metadata,
    /// When the command handler recorded it.
    pub recorded_at: DateTime<Utc>,
}

/// An event as stored: a [`NewEvent`] with its place in its stream and in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Global position (see [`Position`]).
    pub position: Position,
    /// The stream the event belongs to, e.g. `"cart-42"` (see [`StreamId`]).
    pub stream_id: String,
    /// 1-based version of the stream after this event.
    pub stream_version: u64,
    /// Unique id of the event.
    pub event_id: Uuid,
    /// Persisted name of the event type.
    pub event_type: String,
    /// Schema version of `payload`.
    pub schema_version: u32,
    /// The event as JSON text.
    pub payload: String,
    /// Context.
    pub metadata: Metadata,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

impl EventRecord {
    /// The event's stream, as category and id; `None` for a stream id not
    /// written `"{category}-{id}"`.
    pub fn stream(&self) -> Option<StreamId<'_>> {
        StreamId::parse(&self.stream_id)
    }

    /// The id of the event's aggregate, if its stream is of `category`.
    pub fn stream_in(&self, category: &str) -> Option<&str> {
        self.stream()?.id_in(category)
    }

    /// The tenant whose event it is, by its stream id.
    pub fn tenant(&self) -> Tenant {
        Tenant::split(&self.stream_id).0
    }
}

#[cfg(test)]
mod tests {
    use super::StreamId;

    #[test]
    fn a_stream_id_splits_at_its_first_dash() {
        let stream = StreamId::parse("order-0191-a7").expect("a dash");
        assert_eq!((stream.category, stream.id), ("order", "0191-a7"));
        assert_eq!(stream.id_in("order"), Some("0191-a7"));
        assert_eq!(stream.id_in("cart"), None);
        assert_eq!(stream.to_string(), "order-0191-a7");
        assert_eq!(StreamId::parse("nodash"), None);
    }

    #[test]
    fn a_tenant_prefixes_the_stream_id() {
        let acme = crate::Tenant::parse("acme").unwrap();
        let stream = StreamId::parse("acme/order-0191-a7").expect("a dash");
        assert_eq!((stream.tenant, stream.category, stream.id), (Some("acme"), "order", "0191-a7"));
        assert_eq!(stream.tenant(), acme);
        assert_eq!(stream.to_string(), "acme/order-0191-a7");
        assert_eq!(StreamId::new(&acme, "cart", "a/b").to_string(), "acme/cart-a/b");
        let plain = StreamId::parse("cart-a/b").expect("a dash");
        assert_eq!((plain.tenant, plain.id), (None, "a/b"));
        assert_eq!(StreamId::parse("acme/nodash"), None);
    }
}
