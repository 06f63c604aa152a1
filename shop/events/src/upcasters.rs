//! Schema versions of the shop's events, and the upcasters between them.
//!
//! # The rule
//!
//! A stored event is never rewritten. Its `schema_version` says which shape
//! its payload has. The code writes each event type at its current version
//! (the type's [`schema_version`](parallax_core::DomainEvent::schema_version))
//! and reads every older one through upcasters: pure functions from a
//! payload of version *n* to the payload of version *n + 1*, run by the codec
//! before serde sees the event, one step at a time (v1 → v2 → v3 …). They
//! are the event type's own
//! ([`upcasters`](parallax_core::DomainEvent::upcasters)), so every `Codec`
//! of the type has them: the command handlers hydrating aggregates, the
//! projectors (tailing the event store or consuming Kafka, where the version
//! travels as the `ce_schemaversion` header), the checkout saga, a rebuild
//! from position 0.
//! Stored history of every version therefore folds into the same aggregates
//! and views as history written today.
//!
//! A new version is needed when a payload changes incompatibly: a field
//! renamed, removed or retyped, a required field added, a field's meaning
//! changed. Adding an optional field (`#[serde(default)]`) needs none: old
//! readers ignore it, new readers default it.
//!
//! A stored version newer than the code is refused
//! ([`CodecError::FutureVersion`]), never guessed at: a projector sends the
//! event to its dead-letter table (retry it after the upgrade), the saga
//! retries it until it runs the new code. So in the distributed shape,
//! upgrade the readers (projector and saga processes) before the command
//! processes that start writing the new version.
//!
//! # Versions
//!
//! | event type | version | change from the previous version | a v1 event reads as |
//! |---|---|---|---|
//! | `cart.item_added` | 2 | `unit_price_cents` is renamed `price_cents` (the catalog's name for it, as in `product.registered`); `currency`, an ISO 4217 code, is new and required | `currency` = [`V1_CURRENCY`] (`"EUR"`) |
//! | `cart.checked_out` | 2 | `personal` is new and required: the buyer's name, e-mail and shipping address sealed under the customer's key ([`crate::personal`]), or null | `personal` = null (v1 checkouts gave no personal data) |
//! | `order.placed` | 2 | `personal` is new and required, the checkout's, as sealed there | `personal` = null |
//!
//! Every other type is at version 1.
//!
//! # Adding a version: `cart.item_added` v3, say
//!
//! 1. Freeze version 2 here: a struct `ItemAddedV2` with the variant's
//!    version-2 fields, as they are today, deriving `JsonSchema`. It never
//!    changes again, like [`ItemAddedV1`]; list its schema as version 2 in
//!    [`contract::event_schemas`](crate::contract::event_schemas), beside v1's
//!    (the contract describes every version the log carries).
//! 2. Change the `CartEvent::ItemAdded` variant to the version-3 shape and
//!    raise `"cart.item_added"` to 3 in `CartEvent`'s `schema_version`.
//! 3. Write `ItemAddedV2ToV3`: it handles `("cart.item_added", 2)`, reads
//!    the payload as `ItemAddedV2` (a precise [`CodecError::Upcast`] when it
//!    does not fit) and returns the version-3 JSON with version 3. Add it to
//!    `CartEvent`'s `upcasters` after [`ItemAddedV1ToV2`], which stays as it
//!    is: a v1 event now goes v1 → v2 → v3.
//! 4. Add its row to the table above, unit tests of the new step (and of a
//!    v1 payload read at v3), and version-2 rows to the stored-history
//!    fixture (`shop/app/tests/fixtures/`), whose test must still rebuild
//!    the same views.
//! 5. Update the producers (the aggregate that decides the event) and the
//!    consumers (its `apply`, the projections) to the new fields: the
//!    compiler lists them.

use parallax_core::{CodecError, Upcaster};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::OrderLine;

/// Persisted name of the event these upcasters read.
const ITEM_ADDED: &str = "cart.item_added";

/// The currency of every `cart.item_added` v1: v1 predates the field, and
/// the shop priced in euros from its first event (prices were euro cents).
/// History: this never changes, even if [`crate::CURRENCY`] does.
pub const V1_CURRENCY: &str = "EUR";

/// `cart.item_added` version 1, frozen: the payload exactly as v1 wrote it.
/// Its JSON Schema is the contract's for v1 ([`crate::contract`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct ItemAddedV1 {
    /// The cart, as in its stream id (`cart-{cart_id}`).
    pub cart_id: String,
    /// The product.
    pub sku: String,
    /// Its name when added.
    pub name: String,
    /// Its unit price when added, in euro cents.
    pub unit_price_cents: i64,
    /// Units added.
    pub quantity: u32,
}

/// `cart.item_added` v1 → v2: renames `unit_price_cents` to `price_cents`
/// and adds `currency` = [`V1_CURRENCY`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ItemAddedV1ToV2;

impl Upcaster for ItemAddedV1ToV2 {
    fn handles(&self, event_type: &str, schema_version: u32) -> bool {
        event_type == ITEM_ADDED && schema_version == 1
    }

    fn upcast(&self, payload: Value, schema_version: u32) -> Result<(Value, u32), CodecError> {
        let ItemAddedV1 { cart_id, sku, name, unit_price_cents, quantity } = serde_json::from_value(payload)
            .map_err(|e| CodecError::Upcast {
                event_type: ITEM_ADDED.to_owned(),
                schema_version,
                reason: e.to_string(),
            })?;
        let v2 = json!({
            "cart_id": cart_id,
            "sku": sku,
            "name": name,
            "price_cents": unit_price_cents,
            "currency": V1_CURRENCY,
            "quantity": quantity,
        });
        Ok((v2, 2))
    }
}

/// Persisted names of the events that gained `personal` in version 2.
const CHECKED_OUT: &str = "cart.checked_out";
const PLACED: &str = "order.placed";

/// `cart.checked_out` version 1, frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckedOutV1 {
    /// The cart, as in its stream id (`cart-{cart_id}`).
    pub cart_id: String,
    /// The order it becomes.
    pub order_id: Uuid,
    /// Who buys.
    pub customer_id: String,
    /// What, at which price.
    pub lines: Vec<OrderLine>,
    /// Sum of the lines.
    pub total_cents: i64,
}

/// `order.placed` version 1, frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlacedV1 {
    /// The order, as in its stream id (`order-{order_id}`).
    pub order_id: Uuid,
    /// Who buys.
    pub customer_id: String,
    /// The cart it came from.
    pub cart_id: String,
    /// What, at which price.
    pub lines: Vec<OrderLine>,
    /// Sum of the lines.
    pub total_cents: i64,
}

/// Reads a v1 payload as its frozen struct `V1` and adds `"personal": null`:
/// a v1 checkout gave no personal data.
fn without_personal<V1: DeserializeOwned + Serialize>(
    event_type: &str,
    payload: Value,
    schema_version: u32,
) -> Result<(Value, u32), CodecError> {
    let refused =
        |reason: String| CodecError::Upcast { event_type: event_type.to_owned(), schema_version, reason };
    let v1: V1 = serde_json::from_value(payload).map_err(|e| refused(e.to_string()))?;
    let mut v2 = serde_json::to_value(v1).map_err(|e| refused(e.to_string()))?;
    v2.as_object_mut().ok_or_else(|| refused("not an object".into()))?.insert("personal".into(), Value::Null);
    Ok((v2, 2))
}

/// `cart.checked_out` v1 → v2: adds `personal` = null.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckedOutV1ToV2;

impl Upcaster for CheckedOutV1ToV2 {
    fn handles(&self, event_type: &str, schema_version: u32) -> bool {
        event_type == CHECKED_OUT && schema_version == 1
    }

    fn upcast(&self, payload: Value, schema_version: u32) -> Result<(Value, u32), CodecError> {
        without_personal::<CheckedOutV1>(CHECKED_OUT, payload, schema_version)
    }
}

/// `order.placed` v1 → v2: adds `personal` = null.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlacedV1ToV2;

impl Upcaster for PlacedV1ToV2 {
    fn handles(&self, event_type: &str, schema_version: u32) -> bool {
        event_type == PLACED && schema_version == 1
    }

    fn upcast(&self, payload: Value, schema_version: u32) -> Result<(Value, u32), CodecError> {
        without_personal::<PlacedV1>(PLACED, payload, schema_version)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use parallax_core::{Codec, DomainEvent, EventRecord, Metadata};
    use uuid::Uuid;

    use super::*;
    use crate::{CartEvent, ShopCodec, ShopEvent};

    const V1: &str =
        r#"{"cart_id":"c1","sku":"KB-1","name":"Keyboard","unit_price_cents":4999,"quantity":3}"#;

    fn v2_event() -> CartEvent {
        CartEvent::ItemAdded {
            cart_id: "c1".into(),
            sku: "KB-1".into(),
            name: "Keyboard".into(),
            price_cents: 4_999,
            currency: "EUR".into(),
            quantity: 3,
        }
    }

    #[test]
    fn a_v1_payload_becomes_the_v2_payload() {
        let v1: Value = serde_json::from_str(V1).expect("json");
        let (v2, version) = ItemAddedV1ToV2.upcast(v1, 1).expect("upcast");
        assert_eq!(version, 2);
        assert_eq!(
            v2,
            json!({
                "cart_id": "c1", "sku": "KB-1", "name": "Keyboard",
                "price_cents": 4999, "currency": "EUR", "quantity": 3,
            })
        );
    }

    #[test]
    fn the_codec_reads_v1_as_v2_and_writes_v2() {
        let codec = Codec::<CartEvent>::new();
        assert_eq!(codec.decode(ITEM_ADDED, 1, V1).expect("v1 decodes"), v2_event());
        let (event_type, version, payload) = codec.encode(&v2_event());
        assert_eq!((event_type, version), (ITEM_ADDED, 2));
        assert_eq!(
            payload,
            r#"{"cart_id":"c1","sku":"KB-1","name":"Keyboard","price_cents":4999,"currency":"EUR","quantity":3}"#
        );
        assert_eq!(codec.decode(event_type, version, &payload).expect("v2 decodes"), v2_event());
    }

    #[test]
    fn a_v1_payload_missing_a_field_is_a_precise_error() {
        let codec = Codec::<CartEvent>::new();
        let missing = r#"{"cart_id":"c1","sku":"KB-1","name":"Keyboard","quantity":3}"#;
        let error = codec.decode(ITEM_ADDED, 1, missing).expect_err("no price");
        assert!(
            matches!(&error, CodecError::Upcast { event_type, schema_version: 1, .. } if event_type == ITEM_ADDED),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "upcasting cart.item_added v1: missing field `unit_price_cents`");

        let retyped =
            r#"{"cart_id":"c1","sku":"KB-1","name":"Keyboard","unit_price_cents":"49.99","quantity":3}"#;
        let error = codec.decode(ITEM_ADDED, 1, retyped).expect_err("a string price");
        assert_eq!(
            error.to_string(),
            r#"upcasting cart.item_added v1: invalid type: string "49.99", expected i64"#
        );
    }

    #[test]
    fn v2_requires_the_currency() {
        let codec = Codec::<CartEvent>::new();
        let without = r#"{"cart_id":"c1","sku":"KB-1","name":"Keyboard","price_cents":4999,"quantity":3}"#;
        let error = codec.decode(ITEM_ADDED, 2, without).expect_err("no currency");
        assert!(matches!(error, CodecError::Json { schema_version: 2, .. }), "{error:?}");
        assert!(error.to_string().contains("missing field `currency`"), "{error}");
    }

    #[test]
    fn a_version_newer_than_the_code_is_refused() {
        let codec = Codec::<CartEvent>::new();
        let (_, _, v2_payload) = codec.encode(&v2_event());
        let error = codec.decode(ITEM_ADDED, 3, &v2_payload).expect_err("v3 is the future");
        assert!(
            matches!(&error, CodecError::FutureVersion { schema_version: 3, current: 2, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "event cart.item_added v3 is newer than this code, which reads up to v2"
        );
        // The other cart events are still at version 1.
        let removed = codec.decode("cart.item_removed", 2, r#"{"cart_id":"c1","sku":"KB-1"}"#);
        assert!(matches!(removed, Err(CodecError::FutureVersion { current: 1, .. })), "{removed:?}");
    }

    #[test]
    fn every_reader_of_the_log_upcasts() {
        let record = EventRecord {
            position: 7,
            stream_id: "cart-c1".into(),
            stream_version: 1,
            event_id: Uuid::now_v7(),
            event_type: ITEM_ADDED.into(),
            schema_version: 1,
            payload: V1.into(),
            metadata: Metadata::default(),
            recorded_at: Utc::now(),
        };
        let decoded = ShopCodec::default().decode(&record).expect("decodes");
        assert_eq!(decoded, Some(ShopEvent::Cart(v2_event())));
    }

    #[test]
    fn every_old_version_has_an_upcaster() {
        fn check<E: DomainEvent>(types: &[&str]) {
            let upcasters = E::upcasters();
            for event_type in types {
                for version in 1..E::schema_version(event_type) {
                    assert!(
                        upcasters.iter().any(|u| u.handles(event_type, version)),
                        "{event_type} v{version} has no upcaster"
                    );
                }
            }
        }
        check::<CartEvent>(CartEvent::TYPES);
        check::<crate::OrderEvent>(crate::OrderEvent::TYPES);
        check::<crate::ProductEvent>(crate::ProductEvent::TYPES);
    }

    const CHECKED_OUT_V1: &str = r#"{"cart_id":"c1","order_id":"0191d6c2-7c1e-7000-8000-000000000001","customer_id":"alice","lines":[{"sku":"KB-1","name":"Keyboard","unit_price_cents":4999,"quantity":2}],"total_cents":9998}"#;

    #[test]
    fn a_v1_checkout_reads_as_v2_without_personal_data() {
        let codec = Codec::<CartEvent>::new();
        let CartEvent::CheckedOut { customer_id, total_cents, personal, lines, .. } =
            codec.decode(CHECKED_OUT, 1, CHECKED_OUT_V1).expect("v1 decodes")
        else {
            panic!("a checkout");
        };
        assert_eq!((customer_id.as_str(), total_cents, personal), ("alice", 9998, None));
        assert_eq!(lines.len(), 1);
        let (v2, version) =
            CheckedOutV1ToV2.upcast(serde_json::from_str(CHECKED_OUT_V1).expect("json"), 1).expect("upcast");
        assert_eq!((v2["personal"].clone(), version), (Value::Null, 2));
    }

    #[test]
    fn a_v1_placement_reads_as_v2_and_a_broken_one_is_a_precise_error() {
        let codec = Codec::<crate::OrderEvent>::new();
        let v1 = r#"{"order_id":"0191d6c2-7c1e-7000-8000-000000000001","customer_id":"alice","cart_id":"c1","lines":[],"total_cents":0}"#;
        let placed = codec.decode(PLACED, 1, v1).expect("v1 decodes");
        assert!(matches!(placed, crate::OrderEvent::Placed { personal: None, .. }), "{placed:?}");
        let error = codec.decode(PLACED, 1, r#"{"order_id":"x"}"#).expect_err("no uuid");
        assert!(
            matches!(&error, CodecError::Upcast { event_type, schema_version: 1, .. } if event_type == PLACED),
            "{error:?}"
        );
        // Today's events are written at v2.
        assert_eq!(crate::OrderEvent::schema_version(PLACED), 2);
        assert_eq!(CartEvent::schema_version(CHECKED_OUT), 2);
    }
}
