//! Given/when/then for every aggregate of the shop, and the checkout saga
//! walked end to end over in-memory states.

mod cart;
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
