//! Hostile stored events: whatever the bytes under an event type and schema
//! version, [`ShopCodec::decode`] answers `Ok` or `Err` and never panics;
//! what it accepts re-encodes to an event of the type it was stored as.
//!
//! The stable twin of the cargo-fuzz target `fuzz/fuzz_targets/decode_event.rs`
//! (which needs nightly): both go through [`shop_events::fuzzing::decode`].

use proptest::prelude::*;
use serde_json::{json, Value};
use shop_events::fuzzing::{decode, EVENT_TYPES};

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".*".prop_map(Value::String),
        Just(json!("00000000-0000-4000-8000-000000000001")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(field(), inner, 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Field names of the shop's payloads, and others.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "sku", "name", "price_cents", "unit_price_cents", "currency", "quantity", "stock", "cart_id",
            "order_id", "customer_id", "lines", "total_cents", "reason", "release", "amount_cents",
            "requested", "available", "type", "data",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_]{0,12}",
    ]
}

fn event_type() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(EVENT_TYPES.to_vec()).prop_map(str::to_owned),
        1 => ".*",
        1 => "(product|cart|order)\\.[a-z_]{0,20}",
    ]
}

fn version() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0..=3_u32, 1 => any::<u32>()]
}

/// A payload that is close to a real one: a valid event's JSON with one
/// field replaced, removed, or added.
fn mutated() -> impl Strategy<Value = String> {
    let valid = json!({
        "sku": "KB-1", "name": "Keyboard", "price_cents": 4999, "unit_price_cents": 4999, "currency": "EUR",
        "quantity": 3, "stock": 3, "cart_id": "c1", "order_id": "00000000-0000-4000-8000-000000000001",
        "customer_id": "alice", "lines": [], "total_cents": 0, "reason": "r", "release": [],
        "amount_cents": 1, "requested": 1, "available": 0,
    });
    (field(), proptest::option::of(json_value())).prop_map(move |(field, value)| {
        let mut payload = valid.clone();
        let fields = payload.as_object_mut().expect("an object");
        match value {
            Some(value) => fields.insert(field, value),
            None => fields.remove(&field),
        };
        payload.to_string()
    })
}

fn payload() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => ".*",
        2 => json_value().prop_map(|value| value.to_string()),
        3 => mutated(),
        // Text that tries to close the payload and smuggle another tag.
        1 => (event_type(), json_value()).prop_map(|(other, data)| format!("null,\"type\":{},\"data\":{data}", Value::from(other))),
        1 => "[\\[\\]{}\",:0-9a-z\\\\]{0,64}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn decoding_any_payload_never_panics(event_type in event_type(), version in version(), payload in payload()) {
        decode(&event_type, version, &payload);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        shop_events::fuzzing::decode_bytes(&bytes);
    }
}

#[test]
fn a_payload_cannot_smuggle_another_event_type() {
    let smuggled = r#"null,"type":"cart.item_removed","data":{"cart_id":"c1","sku":"KB-1"}"#;
    for version in [1, 2] {
        assert!(
            decode("cart.item_added", version, smuggled).is_none(),
            "a cart.item_added v{version} decoded as something else"
        );
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for &event_type in EVENT_TYPES.iter() {
        for version in 0..=3 {
            assert!(decode(event_type, version, &deep).is_none());
        }
    }
}
