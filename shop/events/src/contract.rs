//! The event contract, machine-readable: the JSON Schema (draft-07) of the
//! payload of every event type at every schema version a reader may meet,
//! derived from the Rust types with `schemars`, so it cannot drift from
//! what the codec writes and reads.
//!
//! The current version of each type comes from its variant in
//! [`ProductEvent`], [`CartEvent`] or [`OrderEvent`]; an older version from
//! its frozen struct in [`upcasters`](crate::upcasters) (`cart.item_added`
//! v1: [`ItemAddedV1`]; `cart.checked_out` v1: [`CheckedOutV1`];
//! `order.placed` v1: [`PlacedV1`]). A stored event is never rewritten, so the log
//! carries every version: the relay publishes an event as stored, at its
//! stored version, and a consumer upcasts.
//!
//! Each schema names every field as required and allows fields it does not
//! name: adding an optional field is not a new version
//! ([`upcasters`](crate::upcasters) has the rule), so a reader must ignore
//! what it does not know. `shop contract` and `GET /asyncapi.json` put these
//! schemas in the shop's AsyncAPI document of its Kafka topic.

use parallax_core::{DomainEvent, EventSchema};
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{Map, Value};

use crate::upcasters::{CheckedOutV1, ItemAddedV1, PlacedV1};
use crate::{CartEvent, OrderEvent, ProductEvent};

/// The `$schema` of every schema here.
pub const DIALECT: &str = "http://json-schema.org/draft-07/schema#";

/// Every event type of the shop at every schema version, in the order of
/// the types' `TYPES` lists, older versions first.
pub fn event_schemas() -> Vec<EventSchema> {
    let mut schemas = Vec::new();
    schemas.extend(variants::<ProductEvent>());
    let mut cart = variants::<CartEvent>();
    let item_added_v1 = frozen::<ItemAddedV1>(
        "cart.item_added",
        1,
        "Units of a product were put in the cart (version 1: the price in euro cents, no currency).",
    );
    cart.insert(0, item_added_v1);
    let checked_out = cart.iter().position(|s| s.event_type == "cart.checked_out").expect("a checkout");
    let checked_out_v1 = frozen::<CheckedOutV1>(
        "cart.checked_out",
        1,
        "The cart became an order (version 1: no personal data).",
    );
    cart.insert(checked_out, checked_out_v1);
    schemas.extend(cart);
    let mut order = variants::<OrderEvent>();
    let placed_v1 = frozen::<PlacedV1>(
        "order.placed",
        1,
        "The order exists; its stock is not reserved yet (version 1: no personal data).",
    );
    order.insert(0, placed_v1);
    schemas.extend(order);
    schemas
}

/// The schema of `event_type` at `schema_version`, if the contract has it.
pub fn event_schema(event_type: &str, schema_version: u32) -> Option<EventSchema> {
    event_schemas()
        .into_iter()
        .find(|schema| schema.event_type == event_type && schema.schema_version == schema_version)
}

/// The current version of each variant of `E`: schemars writes an
/// adjacently tagged enum as one alternative per variant, `{"type": <its
/// name>, "data": <its payload>}`; the payload's schema is the contract's.
fn variants<E: JsonSchema + DomainEvent>() -> Vec<EventSchema> {
    let root = Value::from(generator().into_root_schema_for::<E>());
    let alternatives = root["oneOf"].as_array().expect("an adjacently tagged enum is one of its variants");
    alternatives
        .iter()
        .map(|variant| {
            let tag = &variant["properties"]["type"];
            let event_type = tag["const"]
                .as_str()
                .or_else(|| tag["enum"][0].as_str())
                .unwrap_or_else(|| panic!("a variant without its type name: {variant}"));
            let description = variant["description"].as_str().unwrap_or_default();
            let payload = variant["properties"]["data"].clone();
            EventSchema {
                event_type: event_type.to_owned(),
                schema_version: E::schema_version(event_type),
                summary: first_sentence(description),
                schema: standalone(payload, description),
            }
        })
        .collect()
}

/// A frozen version's schema, from its struct.
fn frozen<T: JsonSchema>(event_type: &str, schema_version: u32, summary: &str) -> EventSchema {
    let mut schema = Value::from(generator().into_root_schema_for::<T>());
    if let Some(object) = schema.as_object_mut() {
        // The struct's Rust name means nothing to a consumer.
        object.remove("title");
    }
    // Its doc comment speaks of the code; the summary of the event.
    EventSchema {
        event_type: event_type.to_owned(),
        schema_version,
        summary: summary.to_owned(),
        schema: standalone(schema, summary),
    }
}

/// Draft-07, with every subschema inline: each payload's schema stands
/// alone (no `$ref` into a document it was cut out of).
fn generator() -> schemars::SchemaGenerator {
    let mut settings = SchemaSettings::draft07();
    settings.inline_subschemas = true;
    settings.into_generator()
}

/// `payload` as a schema document of its own, described by `description`,
/// its doc comments' rustdoc links as plain code.
fn standalone(payload: Value, description: &str) -> Value {
    let mut object = match payload {
        Value::Object(object) => object,
        other => panic!("a payload schema is an object: {other}"),
    };
    object.insert("description".into(), description.into());
    let mut document = Map::new();
    document.insert("$schema".into(), DIALECT.into());
    document.extend(object);
    let mut document = Value::Object(document);
    plain_descriptions(&mut document);
    document
}

/// Rustdoc's ``[`name`]`` links as `` `name` `` in every description.
fn plain_descriptions(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                match value {
                    Value::String(text) if key == "description" => {
                        *text = text.replace("[`", "`").replace("`]", "`");
                    }
                    _ => plain_descriptions(value),
                }
            }
        }
        Value::Array(values) => values.iter_mut().for_each(plain_descriptions),
        _ => {}
    }
}

/// The first sentence of a doc comment.
fn first_sentence(text: &str) -> String {
    text.split_once(". ").map_or(text, |(first, _)| first).trim_end_matches('.').to_owned() + "."
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use parallax_core::Codec;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::OrderLine;

    #[test]
    fn every_type_has_a_schema_at_every_version() {
        let listed: BTreeSet<(String, u32)> =
            event_schemas().into_iter().map(|s| (s.event_type, s.schema_version)).collect();
        let mut expected = BTreeSet::new();
        let versions = |types: &[&str], current: fn(&str) -> u32| {
            types
                .iter()
                .flat_map(move |t| (1..=current(t)).map(move |v| (t.to_string(), v)))
                .collect::<Vec<_>>()
        };
        expected.extend(versions(ProductEvent::TYPES, ProductEvent::schema_version));
        expected.extend(versions(CartEvent::TYPES, CartEvent::schema_version));
        expected.extend(versions(OrderEvent::TYPES, OrderEvent::schema_version));
        assert_eq!(listed, expected);
        assert_eq!(event_schemas().len(), expected.len(), "one schema per type and version");
        assert!(expected.contains(&("cart.item_added".to_owned(), 1)));
    }

    #[test]
    fn a_payload_schema_names_its_fields_and_their_types() {
        let v2 = event_schema("cart.item_added", 2).expect("v2").schema;
        assert_eq!(v2["$schema"], DIALECT);
        assert_eq!(v2["type"], "object");
        let required: BTreeSet<&str> =
            v2["required"].as_array().expect("required").iter().filter_map(Value::as_str).collect();
        assert_eq!(
            required,
            BTreeSet::from(["cart_id", "sku", "name", "price_cents", "currency", "quantity"])
        );
        assert_eq!(v2["properties"]["quantity"]["type"], "integer");
        assert_eq!(v2["properties"]["quantity"]["minimum"], 0);
        assert_eq!(v2["properties"]["currency"]["type"], "string");

        let v1 = event_schema("cart.item_added", 1).expect("v1").schema;
        assert!(v1["properties"]["unit_price_cents"].is_object(), "{v1}");
        assert!(v1["properties"]["currency"].is_null(), "v1 has no currency: {v1}");
        assert!(v1.get("title").is_none(), "{v1}");
        assert_eq!(v1["description"], event_schema("cart.item_added", 1).expect("v1").summary);

        // OrderLine inline: the schema stands alone.
        let placed = event_schema("order.placed", 2).expect("order.placed").schema;
        assert_eq!(placed["properties"]["lines"]["items"]["properties"]["quantity"]["type"], "integer");
        assert!(!placed.to_string().contains("$ref"), "{placed}");
        // Required, and null where the checkout gave no personal data.
        assert!(placed["required"].as_array().expect("required").contains(&json!("personal")), "{placed}");
        let personal = placed["properties"]["personal"]["anyOf"].as_array().expect("object or null");
        assert_eq!(personal[0]["required"], json!(["name", "email", "address"]), "{placed}");
        assert_eq!(personal[1], json!({ "type": "null" }), "{placed}");
        let summary = event_schema("cart.item_added", 2).expect("v2").summary;
        assert_eq!(summary, "Units of a product were put in the cart.");
        assert!(!v2.to_string().contains("[`"), "rustdoc links are plain text: {v2}");
    }

    /// What the codec writes has the fields the schema requires, of its
    /// types (the tests of the shop validate it with a JSON Schema
    /// validator on every message of the topic).
    #[test]
    fn the_codec_writes_what_the_schemas_name() {
        let line =
            OrderLine { sku: "KB-1".into(), name: "Keyboard".into(), unit_price_cents: 4999, quantity: 2 };
        let (event_type, version, payload) = Codec::<OrderEvent>::new().encode(&OrderEvent::Placed {
            order_id: Uuid::nil(),
            customer_id: "alice".into(),
            cart_id: "c1".into(),
            lines: vec![line],
            total_cents: 9998,
            personal: Some(crate::PersonalData {
                name: "pax1.n".into(),
                email: "pax1.e".into(),
                address: "pax1.a".into(),
            }),
        });
        let schema = event_schema(event_type, version).expect("a schema").schema;
        let payload: Value = serde_json::from_str(&payload).expect("JSON");
        let fields: BTreeSet<&str> =
            payload.as_object().expect("an object").keys().map(String::as_str).collect();
        let required: BTreeSet<&str> =
            schema["required"].as_array().expect("required").iter().filter_map(Value::as_str).collect();
        assert_eq!(fields, required);
        assert_eq!(schema["properties"]["order_id"]["format"], json!("uuid"));
    }
}
