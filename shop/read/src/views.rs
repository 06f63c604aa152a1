//! ⑥ The documents of the shop's views, which double as the queries' DTOs.

use chrono::{DateTime, Utc};
use parallax_core::View;
use serde::{Deserialize, Serialize};
use shop_events::{OrderLine, PersonalData};
use uuid::Uuid;

/// Every product, in partition [`ALL`] by SKU.
pub const CATALOG: View<ProductView> = View::owned("catalog");
/// Carts, one per partition (the cart id).
pub const CART: View<CartView> = View::owned("cart");
/// Orders, one per partition (the order id).
pub const ORDER: View<OrderView> = View::owned("order");
/// Orders by customer (the partition), newest first ([`OrderView::customer_key`]).
pub const CUSTOMER_ORDERS: View<OrderView> = View::owned("customer_orders");
/// Sales per product, in partition [`ALL`] by SKU: every order's lines add
/// to the same rows, whichever partition of the log they come from.
pub const SALES: View<SalesView> = View::shared("sales");
/// Partition key of the single-partition views ([`CATALOG`], [`SALES`]).
pub const ALL: &str = "all";

/// A product in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductView {
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Current price.
    pub price_cents: i64,
    /// Units available (not reserved).
    pub stock: u32,
    /// Version of the product's stream this view has absorbed.
    #[serde(default)]
    pub version: u64,
}

/// A line in a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartItemView {
    /// The product.
    pub sku: String,
    /// Its name when last added.
    pub name: String,
    /// Its price when last added.
    pub unit_price_cents: i64,
    /// ISO 4217 code of the price's currency (`cart.item_added` v2; a
    /// document written before it has none and reads as the v1 currency).
    #[serde(default = "v1_currency")]
    pub currency: String,
    /// Units.
    pub quantity: u32,
    /// `unit_price_cents × quantity`.
    pub line_total_cents: i64,
}

fn v1_currency() -> String {
    shop_events::upcasters::V1_CURRENCY.to_owned()
}

/// Where a cart is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CartStatus {
    /// Items can be added and removed.
    Open,
    /// It became an order.
    CheckedOut,
}

/// A cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartView {
    /// Its id.
    pub cart_id: String,
    /// Open, or checked out (then `order_id` names the order).
    pub status: CartStatus,
    /// Lines, by SKU.
    pub items: Vec<CartItemView>,
    /// Sum of the lines.
    pub total_cents: i64,
    /// The order it became, once checked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Uuid>,
    /// Version of the cart's stream this view has absorbed.
    #[serde(default)]
    pub version: u64,
}

/// Where an order is in its life, as the views know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// The cart was checked out; the order's own stream has not begun (the
    /// view is fed by the cart's and the order's streams, in either order).
    Pending,
    /// Its stock is being reserved.
    Placed,
    /// Every line is reserved; it can be paid.
    Confirmed,
    /// A line could not be reserved.
    Rejected,
    /// Paid.
    Paid,
    /// Shipped.
    Shipped,
    /// Cancelled; its reservations were released.
    Cancelled,
}

/// An order, with its lines as priced at checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// Its id.
    pub order_id: Uuid,
    /// Who bought.
    pub customer_id: String,
    /// The cart it came from.
    pub cart_id: String,
    /// How far it got; `rejection_reason` says why when rejected.
    pub status: OrderStatus,
    /// Lines with product names and unit prices at order time.
    pub lines: Vec<OrderLine>,
    /// Sum of the lines.
    pub total_cents: i64,
    /// When the cart was checked out.
    pub placed_at: DateTime<Utc>,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
    /// Version of the order's stream this view has absorbed (0: checked
    /// out, not yet placed).
    #[serde(default)]
    pub version: u64,
    /// The buyer's name, e-mail and address as the events carry them:
    /// sealed under the customer's key, never in the clear; the queries
    /// open them ([`crate::queries::OrderDetails`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<PersonalData>,
}

impl OrderView {
    /// Clustering key of its row in `customer_orders`: newest first (the
    /// checkout time, inverted), then the order id to break ties.
    pub fn customer_key(&self) -> String {
        let micros = self.placed_at.timestamp_micros().max(0);
        format!("{:019}-{}", i64::MAX - micros, self.order_id)
    }
}

/// Units and revenue of one product, over confirmed orders not cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesView {
    /// The product.
    pub sku: String,
    /// Its name in the latest sale.
    pub name: String,
    /// Units sold.
    pub units: i64,
    /// Revenue.
    pub revenue_cents: i64,
}
