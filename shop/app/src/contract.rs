//! The shop's event contract as an AsyncAPI 3.0 document of its Kafka topic:
//! the topic, partitions and retention of the configuration, one message
//! per event type and schema version (`shop_events::contract`), the
//! CloudEvents headers and key the relay's sink writes
//! (`parallax_kafka::asyncapi`). Served at `GET /asyncapi.json` and printed
//! by `shop contract`; `scripts/asyncapi/validate` checks it with the
//! AsyncAPI project's parser, and the distributed tests validate every
//! message they read from the topic against it.

use serde_json::Value;

use crate::app::kafka_config;
use crate::config::Settings;

/// What the document says besides the topic and the events.
const CONTRACT: parallax_kafka::asyncapi::Contract<'static> = parallax_kafka::asyncapi::Contract {
    title: "Parallax shop events",
    version: env!("CARGO_PKG_VERSION"),
    description: "The events of the Parallax reference shop (products, carts, orders), as its relay publishes them to Kafka in the distributed shape (`log.kind = \"kafka\"`). The event types and their payloads are the `shop-events` crate's; a payload changes incompatibly only in a new schema version of its type.",
    payload_text: "UTF-8 JSON text of one object. The event store is PostgreSQL (a Kafka log needs it), which keeps payloads as `jsonb` and hands them out in its own text form: keys ordered by length, then bytewise, not in the order the shop wrote them, with a space after each `:` and `,`. Parse the JSON; do not compare bytes.",
};

/// The document for the topic `settings` name.
pub fn asyncapi(settings: &Settings) -> Value {
    parallax_kafka::asyncapi::document(
        &CONTRACT,
        &kafka_config(settings),
        &shop_events::contract::event_schemas(),
    )
}
