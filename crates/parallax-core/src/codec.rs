//! ② The codec: the one place where typed events meet their stored form.
//!
//! An event enum names each variant's persisted type explicitly (serde's
//! adjacently tagged representation with `tag = "type", content = "data"` and a
//! `rename` on every variant). The codec splits that into `event_type` and
//! `payload` on the way in, and joins them on the way out, after running the
//! upcasters that bring an old `schema_version` up to the current one.
//!
//! Versions are per event type. [`DomainEvent::schema_version`] says which
//! version the code writes (and the newest it reads); the event type's own
//! [`DomainEvent::upcasters`] are in every [`Codec`] of it, so every reader
//! (command handlers hydrating aggregates, projectors, process managers,
//! consumers of the broker) upcasts the same way. A stored event older than
//! the code is upcast step by step, one version at a time; one newer than the
//! code (written by a later release) is refused with
//! [`CodecError::FutureVersion`], never guessed at.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use crate::event::{EventRecord, Metadata, NewEvent};

/// A typed event that the codec can store.
///
/// Implement it for an enum declared with
/// `#[serde(tag = "type", content = "data")]` whose variants all carry a
/// `#[serde(rename = "...")]` with their persisted type name.
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + Send + Sync + std::fmt::Debug + 'static
{
    /// Persisted type name of this event; must equal the variant's serde name.
    fn event_type(&self) -> &'static str;

    /// Current schema version of the events of type `event_type`: the
    /// version the codec writes them at, and the newest it reads. Defaults
    /// to 1. Raise it when a payload changes incompatibly, together with an
    /// upcaster from the previous version in [`DomainEvent::upcasters`].
    fn schema_version(event_type: &str) -> u32 {
        let _ = event_type;
        1
    }

    /// The upcasters every [`Codec`] of this type runs, whoever builds it.
    /// Defaults to none.
    fn upcasters() -> Vec<Arc<dyn Upcaster>> {
        Vec::new()
    }
}

/// Turns an old stored payload into the next schema version of its type.
pub trait Upcaster: Send + Sync {
    /// Whether this upcaster reads `event_type` at `schema_version`.
    fn handles(&self, event_type: &str, schema_version: u32) -> bool;
    /// Rewrites the payload; returns it with its new schema version.
    fn upcast(
        &self,
        payload: serde_json::Value,
        schema_version: u32,
    ) -> Result<(serde_json::Value, u32), CodecError>;
}

/// Why an event could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The JSON did not match the event type.
    #[error("event {event_type} v{schema_version} does not decode: {source}")]
    Json {
        /// The stored type.
        event_type: String,
        /// The stored version.
        schema_version: u32,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The event type is not one of this codec's.
    #[error("unknown event type {0}")]
    UnknownType(String),
    /// An upcaster refused the payload, or none reads its version.
    #[error("upcasting {event_type} v{schema_version}: {reason}")]
    Upcast {
        /// The stored type.
        event_type: String,
        /// The version it was at.
        schema_version: u32,
        /// Why.
        reason: String,
    },
    /// The stored version is newer than the code's: a later release wrote
    /// it, and this one cannot know what it means.
    #[error("event {event_type} v{schema_version} is newer than this code, which reads up to v{current}")]
    FutureVersion {
        /// The stored type.
        event_type: String,
        /// The stored version.
        schema_version: u32,
        /// The newest version this code reads.
        current: u32,
    },
}

/// Encodes and decodes the events of one type, with upcasters.
pub struct Codec<E> {
    upcasters: Vec<Arc<dyn Upcaster>>,
    _events: PhantomData<fn() -> E>,
}

impl<E> Clone for Codec<E> {
    fn clone(&self) -> Self {
        Self { upcasters: self.upcasters.clone(), _events: PhantomData }
    }
}

impl<E: DomainEvent> Default for Codec<E> {
    fn default() -> Self {
        Self { upcasters: E::upcasters(), _events: PhantomData }
    }
}

impl<E: DomainEvent> Codec<E> {
    /// A codec with the event type's own upcasters ([`DomainEvent::upcasters`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an upcaster after the event type's own; they run in the order
    /// added, as long as one handles the payload's current type and version.
    pub fn with_upcaster(mut self, upcaster: impl Upcaster + 'static) -> Self {
        self.upcasters.push(Arc::new(upcaster));
        self
    }

    /// The stored form of `event`: type name, schema version, JSON payload.
    pub fn encode(&self, event: &E) -> (&'static str, u32, String) {
        let event_type = event.event_type();
        let tagged = serde_json::to_string(event).expect("domain events serialize to JSON");
        // serde writes an adjacently tagged variant as {"type":<name>,"data":<payload>},
        // tag first: cut the payload out of the text instead of re-serializing it.
        let prefix = format!("{{\"type\":{},\"data\":", serde_json::Value::from(event_type));
        let payload = match tagged.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix('}')) {
            Some(payload) => payload.to_owned(),
            None if tagged == format!("{{\"type\":{}}}", serde_json::Value::from(event_type)) => {
                "null".to_owned()
            }
            None => panic!(
                "{event_type} must be an adjacently tagged enum variant named {event_type}, got {tagged}"
            ),
        };
        (event_type, E::schema_version(event_type), payload)
    }

    /// A [`NewEvent`] for `event` with a fresh id, stamped now.
    pub fn new_event(&self, event: &E, metadata: Metadata) -> NewEvent {
        let (event_type, schema_version, payload) = self.encode(event);
        NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: event_type.to_owned(),
            schema_version,
            payload,
            metadata,
            recorded_at: chrono::Utc::now(),
        }
    }

    /// Decodes a stored event, upcasting it first when it is older than the
    /// code; refuses one newer than the code ([`CodecError::FutureVersion`]).
    pub fn decode(&self, event_type: &str, schema_version: u32, payload: &str) -> Result<E, CodecError> {
        let json_error =
            |source| CodecError::Json { event_type: event_type.to_owned(), schema_version, source };
        let current = E::schema_version(event_type);
        let future = |schema_version| CodecError::FutureVersion {
            event_type: event_type.to_owned(),
            schema_version,
            current,
        };
        if schema_version > current {
            return Err(future(schema_version));
        }
        if schema_version == current {
            // Current version: parse the text once, without an intermediate tree.
            let tagged = format!("{{\"type\":{},\"data\":{payload}}}", serde_json::Value::from(event_type));
            return serde_json::from_str(&tagged).map_err(json_error);
        }
        let mut data: serde_json::Value = serde_json::from_str(payload).map_err(json_error)?;
        let mut version = schema_version;
        while version < current {
            let Some(upcaster) = self.upcasters.iter().find(|u| u.handles(event_type, version)) else {
                return Err(CodecError::Upcast {
                    event_type: event_type.to_owned(),
                    schema_version: version,
                    reason: format!("no upcaster reads v{version}; the code is at v{current}"),
                });
            };
            let (next, next_version) = upcaster.upcast(data, version)?;
            if next_version <= version {
                return Err(CodecError::Upcast {
                    event_type: event_type.to_owned(),
                    schema_version: version,
                    reason: format!("upcaster went from v{version} to v{next_version}"),
                });
            }
            if next_version > current {
                return Err(future(next_version));
            }
            data = next;
            version = next_version;
        }
        let tagged = serde_json::json!({ "type": event_type, "data": data });
        serde_json::from_value(tagged).map_err(|source| CodecError::Json {
            event_type: event_type.to_owned(),
            schema_version: version,
            source,
        })
    }

    /// Decodes a stored record.
    pub fn decode_record(&self, record: &EventRecord) -> Result<E, CodecError> {
        self.decode(&record.event_type, record.schema_version, &record.payload)
    }
}

/// The JSON Schema of one event type's payload at one schema version: what
/// a consumer of the log finds in an event's `payload` when its
/// `event_type` and `schema_version` are these. An event type has one per
/// version still in stored history, not only its current one (a stored
/// event is never rewritten: Architecture invariant 14).
///
/// The schema is a JSON Schema document (draft-07); how it is derived is the
/// contract's own business (the shop derives it from its event types). A
/// log adapter describes its messages with them
/// (`parallax_kafka::asyncapi`).
#[derive(Debug, Clone, PartialEq)]
pub struct EventSchema {
    /// Persisted type name, e.g. `cart.item_added`.
    pub event_type: String,
    /// The payload's schema version (1, 2, …).
    pub schema_version: u32,
    /// One line on what the event means.
    pub summary: String,
    /// The payload's JSON Schema.
    pub schema: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::{json, Value};

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    enum Shipment {
        /// v1 had `address` as one string; v2 splits it.
        #[serde(rename = "shipment.sent")]
        Sent { street: String, city: String },
    }

    impl DomainEvent for Shipment {
        fn event_type(&self) -> &'static str {
            "shipment.sent"
        }
        fn schema_version(_: &str) -> u32 {
            2
        }
    }

    /// The same event, with the upcaster as its own: every codec of it upcasts.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    enum OwnShipment {
        #[serde(rename = "shipment.sent")]
        Sent { street: String, city: String },
    }

    impl DomainEvent for OwnShipment {
        fn event_type(&self) -> &'static str {
            "shipment.sent"
        }
        fn schema_version(_: &str) -> u32 {
            2
        }
        fn upcasters() -> Vec<Arc<dyn Upcaster>> {
            vec![Arc::new(SplitAddress)]
        }
    }

    struct SplitAddress;

    impl Upcaster for SplitAddress {
        fn handles(&self, event_type: &str, schema_version: u32) -> bool {
            event_type == "shipment.sent" && schema_version == 1
        }
        fn upcast(&self, payload: Value, _: u32) -> Result<(Value, u32), CodecError> {
            let address = payload["address"].as_str().unwrap_or_default();
            let (street, city) = address.split_once(", ").unwrap_or((address, ""));
            Ok((json!({ "street": street, "city": city }), 2))
        }
    }

    #[test]
    fn encodes_the_persisted_name_and_version() {
        let codec = Codec::<Shipment>::new();
        let event = Shipment::Sent { street: "1 Main St".into(), city: "Springfield".into() };
        let (event_type, version, payload) = codec.encode(&event);
        assert_eq!((event_type, version), ("shipment.sent", 2));
        assert_eq!(payload, r#"{"street":"1 Main St","city":"Springfield"}"#);
        assert_eq!(codec.decode(event_type, version, &payload).expect("round trip"), event);
    }

    #[test]
    fn upcasts_old_payloads_before_decoding() {
        let codec = Codec::<Shipment>::new().with_upcaster(SplitAddress);
        let old = r#"{"address":"1 Main St, Springfield"}"#;
        let event = codec.decode("shipment.sent", 1, old).expect("upcast");
        assert_eq!(event, Shipment::Sent { street: "1 Main St".into(), city: "Springfield".into() });
        let without = Codec::<Shipment>::new().decode("shipment.sent", 1, old);
        assert!(matches!(without, Err(CodecError::Upcast { schema_version: 1, .. })), "{without:?}");
        assert_eq!(
            without.expect_err("no upcaster").to_string(),
            "upcasting shipment.sent v1: no upcaster reads v1; the code is at v2"
        );
    }

    #[test]
    fn the_event_types_own_upcasters_are_in_every_codec() {
        let old = r#"{"address":"1 Main St, Springfield"}"#;
        for codec in [Codec::<OwnShipment>::new(), Codec::default()] {
            let event = codec.decode("shipment.sent", 1, old).expect("upcast");
            assert_eq!(event, OwnShipment::Sent { street: "1 Main St".into(), city: "Springfield".into() });
        }
    }

    #[test]
    fn versions_newer_than_the_code_are_refused() {
        let codec = Codec::<OwnShipment>::new();
        let newer = codec.decode("shipment.sent", 3, r#"{"street":"1 Main St","city":"Springfield"}"#);
        assert!(
            matches!(
                &newer,
                Err(CodecError::FutureVersion { event_type, schema_version: 3, current: 2 })
                    if event_type == "shipment.sent"
            ),
            "{newer:?}"
        );
    }

    #[test]
    fn unknown_types_and_bad_json_are_errors() {
        let codec = Codec::<Shipment>::new();
        assert!(codec.decode("shipment.lost", 1, "{}").is_err());
        assert!(codec.decode("shipment.sent", 2, "{not json").is_err());
    }
}
