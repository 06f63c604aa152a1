//! The checkout process manager, as pure decisions: which commands an event
//! calls for.
//!
//! ```text
//! cart.checked_out                   ─▶ order   Place
//! order.stock_requested              ─▶ product Reserve { order_id, quantity }
//! product.stock_reserved             ─▶ order   RecordReservation { sku }
//! product.stock_reservation_rejected ─▶ order   RecordReservationFailure { sku, reason }
//! order.rejected / order.cancelled   ─▶ product Release { order_id }, one per line to release
//! anything else                      ─▶ nothing
//! ```
//!
//! The saga keeps no state of its own: the order's stream is its state (which
//! line is being reserved, which lines to release), and [`react`] depends on
//! the event alone. So the runtime that consumes the log (at least once,
//! duplicates possible) can replay safely: it gives the `i`-th command that
//! [`react`] returns for the event with id `e` the idempotency key `"{e}:{i}"`,
//! always the same for the same event, and the store refuses to append a
//! second time under a key it has seen. On top of that the aggregates shrug
//! off stale or repeated saga commands on their own (`Place` on a placed
//! order, `Reserve` for an order that holds a reservation, `Release` for one
//! that holds none, an answer about a line that is not the requested one).
//!
//! A reservation that cannot be served is a recorded event, not an error,
//! so replaying the log always walks the same path.

use parallax_core::Aggregate;
use shop_events::{CartEvent, OrderEvent, OrderLine, ProductEvent, ShopEvent};
use uuid::Uuid;

use crate::order::{Order, OrderCommand};
use crate::product::{Product, ProductCommand};
use crate::values::{CartId, CustomerId};

/// A command the checkout saga sends, with the aggregate it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaCommand {
    /// For the product whose SKU is `sku` (stream `product-{sku}`).
    Product {
        /// The product.
        sku: String,
        /// What it is asked.
        command: ProductCommand,
    },
    /// For the order `order_id` (stream `order-{order_id}`).
    Order {
        /// The order.
        order_id: Uuid,
        /// What it is asked.
        command: OrderCommand,
    },
}

impl SagaCommand {
    /// The stream the command goes to, e.g. `"product-MUG-1"`.
    pub fn stream_id(&self) -> String {
        match self {
            Self::Product { sku, .. } => Product::stream_id(sku),
            Self::Order { order_id, .. } => Order::stream_id(&order_id.to_string()),
        }
    }
}

/// The event types [`react`] answers with commands: a runner need not even
/// decode the others.
pub const REACTS_TO: &[&str] = &[
    "cart.checked_out",
    "order.stock_requested",
    "product.stock_reserved",
    "product.stock_reservation_rejected",
    "order.rejected",
    "order.cancelled",
];

/// The commands `event` calls for, in the order they should be sent (the
/// order is part of each command's idempotency key; see the module docs).
pub fn react(event: &ShopEvent) -> Vec<SagaCommand> {
    match event {
        ShopEvent::Cart(CartEvent::CheckedOut {
            cart_id, order_id, customer_id, lines, personal, ..
        }) => {
            vec![SagaCommand::Order {
                order_id: *order_id,
                command: OrderCommand::Place {
                    order_id: *order_id,
                    customer_id: CustomerId::recorded(customer_id.as_str()),
                    cart_id: CartId::recorded(cart_id.as_str()),
                    lines: lines.clone(),
                    personal: personal.clone(),
                },
            }]
        }
        ShopEvent::Order(OrderEvent::StockRequested { order_id, sku, quantity }) => {
            vec![SagaCommand::Product {
                sku: sku.clone(),
                command: ProductCommand::Reserve { order_id: *order_id, quantity: *quantity },
            }]
        }
        ShopEvent::Product(ProductEvent::StockReserved { sku, order_id, .. }) => {
            vec![SagaCommand::Order {
                order_id: *order_id,
                command: OrderCommand::RecordReservation { sku: sku.clone() },
            }]
        }
        ShopEvent::Product(ProductEvent::StockReservationRejected {
            sku,
            order_id,
            requested,
            available,
        }) => {
            vec![SagaCommand::Order {
                order_id: *order_id,
                command: OrderCommand::RecordReservationFailure {
                    sku: sku.clone(),
                    reason: format!("product {sku} has {available} units, order needs {requested}"),
                },
            }]
        }
        ShopEvent::Order(
            OrderEvent::Rejected { order_id, release, .. } | OrderEvent::Cancelled { order_id, release },
        ) => release_all(*order_id, release),
        _ => vec![],
    }
}

fn release_all(order_id: Uuid, lines: &[OrderLine]) -> Vec<SagaCommand> {
    lines
        .iter()
        .map(|line| SagaCommand::Product {
            sku: line.sku.clone(),
            command: ProductCommand::Release { order_id },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use shop_events::{CartEvent, OrderEvent, ProductEvent};

    use super::REACTS_TO;

    #[test]
    fn the_saga_answers_event_types_that_exist() {
        let known: Vec<&str> = [ProductEvent::TYPES, CartEvent::TYPES, OrderEvent::TYPES]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for event_type in REACTS_TO {
            assert!(known.contains(event_type), "{event_type} is no shop event type");
        }
    }
}
