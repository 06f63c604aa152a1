//! Given/when/then for every aggregate of the shop, and the checkout saga
//! walked end to end over in-memory states.

mod cart;
mod codes;
mod order;
mod product;
mod saga;
mod state;

use shop_events::OrderLine;
use uuid::Uuid;

/// A fixed order id, so failure messages are readable and stable.
fn order_id() -> Uuid {
    Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001)
}

fn line(sku: &str, unit_price_cents: i64, quantity: u32) -> OrderLine {
    OrderLine { sku: sku.into(), name: format!("Product {sku}"), unit_price_cents, quantity }
}

/// A command's values, which keep their rules by their types (the rules
/// themselves are tested in `values.rs`).
fn cart_id(id: &str) -> shop_domain::CartId {
    shop_domain::CartId::parse(id).expect("a cart id")
}

fn sku(id: &str) -> shop_domain::Sku {
    shop_domain::Sku::parse(id).expect("a SKU")
}

fn customer_id(id: &str) -> shop_domain::CustomerId {
    shop_domain::CustomerId::parse(id).expect("a customer id")
}

fn units(units: i64) -> shop_domain::Quantity {
    shop_domain::Quantity::parse(units).expect("1 to 1000 units")
}
