//! ② The codec: the one place where typed events meet their stored form.
//!
//! An event enum names each variant's persisted type explicitly (serde's
//! adjacently tagged representation with `tag = "type", content = "data"` and a
//! `rename` on every variant). The codec splits that into `event_type` and
//! `payload` on the way in, and joins them on the way out, after running the
//! upcasters that bring an old `schema_version` up to the current one.

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
    /// Current schema version of this event type. Defaults to 1.
    fn schema_version(&self) -> u32 {
        1
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
    /// An upcaster refused the payload.
    #[error("upcasting {event_type} v{schema_version}: {reason}")]
    Upcast {
        /// The stored type.
        event_type: String,
        /// The version it was at.
        schema_version: u32,
        /// Why.
        reason: String,
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

impl<E> Default for Codec<E> {
    fn default() -> Self {
        Self { upcasters: Vec::new(), _events: PhantomData }
    }
}

impl<E: DomainEvent> Codec<E> {
    /// A codec without upcasters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an upcaster; they run in the order added, as long as one handles
    /// the payload's current type and version.
    pub fn with_upcaster(mut self, upcaster: impl Upcaster + 'static) -> Self {
        self.upcasters.push(Arc::new(upcaster));
        self
    }

    /// The stored form of `event`: type name, schema version, JSON payload.
    pub fn encode(&self, event: &E) -> (&'static str, u32, String) {
        let event_type = event.event_type();
        let value = serde_json::to_value(event).expect("domain events serialize to JSON");
        let payload = match value {
            serde_json::Value::Object(mut map) => map.remove("data").unwrap_or(serde_json::Value::Null),
            other => panic!("domain event {event_type} must be an adjacently tagged enum, got {other}"),
        };
        (event_type, event.schema_version(), payload.to_string())
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

    /// Decodes a stored event, upcasting it first when it is older than the code.
    pub fn decode(&self, event_type: &str, schema_version: u32, payload: &str) -> Result<E, CodecError> {
        let json_error =
            |source| CodecError::Json { event_type: event_type.to_owned(), schema_version, source };
        let mut data: serde_json::Value = serde_json::from_str(payload).map_err(json_error)?;
        let mut version = schema_version;
        while let Some(upcaster) = self.upcasters.iter().find(|u| u.handles(event_type, version)) {
            let (next, next_version) = upcaster.upcast(data, version)?;
            if next_version <= version {
                return Err(CodecError::Upcast {
                    event_type: event_type.to_owned(),
                    schema_version: version,
                    reason: format!("upcaster went from v{version} to v{next_version}"),
                });
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
