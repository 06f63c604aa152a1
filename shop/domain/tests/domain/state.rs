//! Folding is deterministic, and a state survives a snapshot.

use serde::{de::DeserializeOwned, Serialize};
use shop_domain::{Aggregate, Cart, Order, Product};
use shop_events::{CartEvent, OrderEvent, OrderLine, ProductEvent};
use uuid::Uuid;

use crate::{line, order_id};

fn fold<A: Aggregate>(events: &[A::Event]) -> A {
    let mut state = A::default();
    events.iter().for_each(|event| state.apply(event));
    state
}

/// Folding twice gives equal states, and at every point a snapshot of the
/// state (JSON round trip) plus the remaining events gives the same state
/// as folding everything.
fn check<A>(events: &[A::Event])
where
    A: Aggregate + PartialEq + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let all = fold::<A>(events);
    assert_eq!(fold::<A>(events), all);
    for split in 0..=events.len() {
        let snapshot = serde_json::to_string(&fold::<A>(&events[..split])).expect("state serializes");
        let mut state: A = serde_json::from_str(&snapshot).expect("snapshot deserializes");
        events[split..].iter().for_each(|event| state.apply(event));
        assert_eq!(state, all, "snapshot after {split} events: {snapshot}");
    }
}

#[test]
fn products() {
    let other = Uuid::from_u128(7);
    check::<Product>(&[
        ProductEvent::Registered { sku: "A".into(), name: "Mug".into(), price_cents: 1200, stock: 5 },
        ProductEvent::Renamed { sku: "A".into(), name: "Big mug".into() },
        ProductEvent::Repriced { sku: "A".into(), price_cents: 1500 },
        ProductEvent::Restocked { sku: "A".into(), quantity: 5, stock: 10 },
        ProductEvent::StockReserved { sku: "A".into(), order_id: order_id(), quantity: 3, stock: 7 },
        ProductEvent::StockReserved { sku: "A".into(), order_id: other, quantity: 2, stock: 5 },
        ProductEvent::StockReservationRejected {
            sku: "A".into(),
            order_id: Uuid::from_u128(8),
            requested: 9,
            available: 5,
        },
        ProductEvent::StockReleased { sku: "A".into(), order_id: order_id(), quantity: 3, stock: 8 },
    ]);
}

#[test]
fn carts() {
    let added = |sku: &str, quantity| CartEvent::ItemAdded {
        cart_id: "c1".into(),
        sku: sku.into(),
        name: format!("Product {sku}"),
        price_cents: 100,
        currency: "EUR".into(),
        quantity,
    };
    check::<Cart>(&[
        added("A", 1),
        added("B", 2),
        added("A", 3),
        CartEvent::ItemRemoved { cart_id: "c1".into(), sku: "B".into() },
        CartEvent::CheckedOut {
            personal: None,
            cart_id: "c1".into(),
            order_id: order_id(),
            customer_id: "u1".into(),
            lines: vec![line("A", 100, 4)],
            total_cents: 400,
        },
    ]);
}

#[test]
fn orders() {
    let id = order_id();
    let lines: Vec<OrderLine> = vec![line("A", 100, 1), line("B", 200, 2)];
    let placed = || OrderEvent::Placed {
        personal: None,
        order_id: id,
        customer_id: "u1".into(),
        cart_id: "c1".into(),
        lines: lines.clone(),
        total_cents: 500,
    };
    check::<Order>(&[
        placed(),
        OrderEvent::StockRequested { order_id: id, sku: "A".into(), quantity: 1 },
        OrderEvent::LineReserved { order_id: id, sku: "A".into(), quantity: 1 },
        OrderEvent::StockRequested { order_id: id, sku: "B".into(), quantity: 2 },
        OrderEvent::LineReserved { order_id: id, sku: "B".into(), quantity: 2 },
        OrderEvent::Confirmed {
            order_id: id,
            customer_id: "u1".into(),
            lines: lines.clone(),
            total_cents: 500,
        },
        OrderEvent::Paid { order_id: id, amount_cents: 500 },
        OrderEvent::Shipped { order_id: id },
    ]);
    check::<Order>(&[
        placed(),
        OrderEvent::StockRequested { order_id: id, sku: "A".into(), quantity: 1 },
        OrderEvent::Rejected {
            order_id: id,
            reason: "product A has 0 units, order needs 1".into(),
            release: vec![],
        },
    ]);
}

#[test]
fn stream_ids_use_the_contract_s_stream_types() {
    assert_eq!(Product::stream_id("MUG-1"), "product-MUG-1");
    assert_eq!(Cart::stream_id("c1"), "cart-c1");
    assert_eq!(Order::stream_id("42"), "order-42");
}
