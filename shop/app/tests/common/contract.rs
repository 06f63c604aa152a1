//! A `cart.item_added` message as the relay writes it, for the tests of the
//! check against the shop's AsyncAPI document.

/// The headers the relay writes for a `cart.item_added` of `schema_version`
/// in stream `cart-c1` (the sink's table in `parallax-kafka`'s crate docs).
pub fn item_added_headers(schema_version: &str) -> Vec<(String, String)> {
    [
        ("ce_specversion", "1.0"),
        ("ce_id", "01938f4e-7d2a-7c4e-9a53-5d1c0b7e8f21"),
        ("ce_source", shop::EVENT_SOURCE),
        ("ce_type", "cart.item_added"),
        ("ce_time", "2026-12-07T03:30:05.123456Z"),
        ("ce_subject", "cart-c1"),
        ("content-type", "application/json"),
        ("ce_position", "42"),
        ("ce_streamversion", "1"),
        ("ce_schemaversion", schema_version),
        ("ce_correlationid", "6f1c2a9e-0b7d-4c1e-8a2f-3d4e5f607182"),
        ("ce_causationid", "6f1c2a9e-0b7d-4c1e-8a2f-3d4e5f607182"),
        ("ce_commandid", "6f1c2a9e-0b7d-4c1e-8a2f-3d4e5f607182"),
        ("ce_previousposition", "0"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

/// A v2 payload as PostgreSQL's `jsonb` hands it to the relay.
pub const V2: &str = r#"{"sku": "KB-1", "name": "Keyboard", "cart_id": "c1", "currency": "EUR", "quantity": 3, "price_cents": 4999}"#;

/// A v1 payload, likewise.
pub const V1: &str =
    r#"{"sku": "KB-1", "name": "Keyboard", "cart_id": "c1", "quantity": 3, "unit_price_cents": 4999}"#;
