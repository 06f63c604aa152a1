//! The shop's cart as a cqrs-es aggregate: add an item (priced from the
//! catalog), check out (the order's lines and total). The rules are the
//! shop's (`shop_domain::Cart`): a positive quantity of a known product, at
//! most 1,000 units per line, nothing after the checkout, no empty
//! checkout; the events carry the same fields, so their payloads are about
//! the same size.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use bench_load::plan::{price_cents, product_name, sku};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most units of one product in a cart, as in the shop.
const MAX_LINE_QUANTITY: i64 = 1_000;

/// Products by SKU: name and unit price. The shop looks them up in its
/// product aggregates (cached in memory after the first load); here they
/// are in memory from the start.
#[derive(Debug, Default)]
pub struct Catalog(HashMap<String, (String, i64)>);

impl Catalog {
    /// The bench's catalog of `count` products.
    pub fn new(count: u64) -> Self {
        Self((0..count).map(|i| (sku(i), (product_name(i), price_cents(i)))).collect())
    }

    fn get(&self, sku: &str) -> Option<&(String, i64)> {
        self.0.get(sku)
    }
}

/// A cart command.
#[derive(Debug, Clone)]
pub enum CartCommand {
    /// Put units of a product in the cart.
    AddItem {
        /// The cart.
        cart_id: String,
        /// The product.
        sku: String,
        /// Units.
        quantity: i64,
    },
    /// Turn the cart into an order.
    CheckOut {
        /// The cart.
        cart_id: String,
        /// The order it becomes.
        order_id: Uuid,
        /// Who buys.
        customer_id: String,
    },
}

/// A line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product.
    pub sku: String,
    /// Its name at checkout.
    pub name: String,
    /// Its unit price at checkout.
    pub unit_price_cents: i64,
    /// How many.
    pub quantity: u32,
}

/// What happened to a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CartEvent {
    /// Units of a product were put in the cart.
    ItemAdded {
        /// The cart.
        cart_id: String,
        /// The product.
        sku: String,
        /// Its name when added.
        name: String,
        /// Its price when added.
        unit_price_cents: i64,
        /// Units added.
        quantity: u32,
    },
    /// The cart became an order.
    CheckedOut {
        /// The cart.
        cart_id: String,
        /// The order.
        order_id: Uuid,
        /// Who buys.
        customer_id: String,
        /// What, at which price.
        lines: Vec<OrderLine>,
        /// Sum of the lines.
        total_cents: i64,
    },
}

impl DomainEvent for CartEvent {
    fn event_type(&self) -> String {
        match self {
            CartEvent::ItemAdded { .. } => "cart.item_added".into(),
            CartEvent::CheckedOut { .. } => "cart.checked_out".into(),
        }
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}

/// Why a cart refused a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartError {
    /// The quantity is not positive, or the line would pass the maximum.
    Quantity(i64),
    /// No such product.
    UnknownProduct(String),
    /// Nothing to check out: the cart does not exist or is empty.
    Empty,
    /// The cart was checked out already.
    CheckedOut,
}

impl fmt::Display for CartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CartError::Quantity(quantity) => write!(f, "quantity {quantity} is not allowed"),
            CartError::UnknownProduct(sku) => write!(f, "product {sku} not found"),
            CartError::Empty => f.write_str("the cart is empty"),
            CartError::CheckedOut => f.write_str("the cart was checked out"),
        }
    }
}

impl std::error::Error for CartError {}

/// A line of a cart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Line {
    name: String,
    unit_price_cents: i64,
    quantity: u32,
}

/// A cart: its lines by SKU, and the order it became.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cart {
    lines: BTreeMap<String, Line>,
    order_id: Option<Uuid>,
}

impl Aggregate for Cart {
    const TYPE: &'static str = "cart";

    type Command = CartCommand;
    type Event = CartEvent;
    type Error = CartError;
    type Services = Catalog;

    async fn handle(
        &mut self,
        command: CartCommand,
        catalog: &Catalog,
        sink: &EventSink<Self>,
    ) -> Result<(), CartError> {
        if self.order_id.is_some() {
            return Err(CartError::CheckedOut);
        }
        let event = match command {
            CartCommand::AddItem { cart_id, sku, quantity } => {
                let held = self.lines.get(&sku).map_or(0, |line| i64::from(line.quantity));
                if quantity <= 0 || held + quantity > MAX_LINE_QUANTITY {
                    return Err(CartError::Quantity(quantity));
                }
                let Some((name, unit_price_cents)) = catalog.get(&sku) else {
                    return Err(CartError::UnknownProduct(sku));
                };
                let quantity = u32::try_from(quantity).map_err(|_| CartError::Quantity(quantity))?;
                CartEvent::ItemAdded {
                    cart_id,
                    name: name.clone(),
                    unit_price_cents: *unit_price_cents,
                    sku,
                    quantity,
                }
            }
            CartCommand::CheckOut { cart_id, order_id, customer_id } => {
                if self.lines.is_empty() {
                    return Err(CartError::Empty);
                }
                let mut lines = Vec::with_capacity(self.lines.len());
                for (sku, line) in &self.lines {
                    let Some((name, unit_price_cents)) = catalog.get(sku) else {
                        return Err(CartError::UnknownProduct(sku.clone()));
                    };
                    lines.push(OrderLine {
                        sku: sku.clone(),
                        name: name.clone(),
                        unit_price_cents: *unit_price_cents,
                        quantity: line.quantity,
                    });
                }
                let total_cents = lines.iter().map(|l| l.unit_price_cents * i64::from(l.quantity)).sum();
                CartEvent::CheckedOut { cart_id, order_id, customer_id, lines, total_cents }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: CartEvent) {
        match event {
            CartEvent::ItemAdded { sku, name, unit_price_cents, quantity, .. } => {
                let line = self.lines.entry(sku).or_default();
                line.name = name;
                line.unit_price_cents = unit_price_cents;
                line.quantity = line.quantity.saturating_add(quantity);
            }
            CartEvent::CheckedOut { order_id, .. } => self.order_id = Some(order_id),
        }
    }
}
