//! The decode entry point that the fuzz target (`fuzz/`, cargo-fuzz, nightly)
//! and the stable property test (`tests/decode.rs`) share. Not part of the
//! event contract.

use chrono::{DateTime, Utc};
use parallax_core::{EventRecord, Metadata};
use uuid::Uuid;

use std::sync::LazyLock;

use crate::{CartEvent, OrderEvent, ProductEvent, ShopCodec, ShopEvent};

/// Every persisted event type name of the shop.
pub static EVENT_TYPES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| [ProductEvent::TYPES, CartEvent::TYPES, OrderEvent::TYPES].concat());

/// Decodes a stored event as every reader of the log does. Errors are fine;
/// panics are bugs, and so is an event that decodes as another type than it
/// was stored under or does not survive a trip through the codec (this
/// function panics then, for the fuzzer and the property test to report).
pub fn decode(event_type: &str, schema_version: u32, payload: &str) -> Option<ShopEvent> {
    let codec = ShopCodec::default();
    let record = EventRecord {
        position: 1,
        stream_id: "fuzz-1".to_owned(),
        stream_version: 1,
        event_id: Uuid::nil(),
        event_type: event_type.to_owned(),
        schema_version,
        payload: payload.to_owned(),
        metadata: Metadata::default(),
        recorded_at: DateTime::<Utc>::UNIX_EPOCH,
    };
    let event = codec.decode(&record).ok()??;
    let (stored_as, version, payload) = match &event {
        ShopEvent::Product(event) => codec.product.encode(event),
        ShopEvent::Cart(event) => codec.cart.encode(event),
        ShopEvent::Order(event) => codec.order.encode(event),
    };
    assert_eq!(stored_as, event_type, "stored as {event_type}, decoded as {stored_as}: {event:?}");
    let again = codec
        .decode(&EventRecord { schema_version: version, payload, ..record })
        .expect("an event the codec wrote decodes");
    assert_eq!(again.as_ref(), Some(&event), "the event changed on a trip through the codec");
    Some(event)
}

/// [`decode`] of raw bytes: the first byte picks the event type (one of
/// [`EVENT_TYPES`], or for values past them the type name is read from the
/// input up to a NUL), the second the schema version, the rest is the payload
/// (lossily UTF-8, as the stores hold text).
pub fn decode_bytes(data: &[u8]) -> Option<ShopEvent> {
    let (&pick, rest) = data.split_first()?;
    let (&version, rest) = rest.split_first().unwrap_or((&0, &[]));
    let (event_type, payload) = match EVENT_TYPES.get(usize::from(pick)) {
        Some(event_type) => ((*event_type).to_owned(), rest),
        None => {
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let payload = rest.get(end + 1..).unwrap_or_default();
            (String::from_utf8_lossy(&rest[..end]).into_owned(), payload)
        }
    };
    decode(&event_type, u32::from(version % 4), &String::from_utf8_lossy(payload))
}
