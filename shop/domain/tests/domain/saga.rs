use std::collections::{BTreeMap, VecDeque};

use shop_domain::{react, Aggregate, Order, OrderCommand, OrderStatus, Product, ProductCommand, SagaCommand};
use shop_events::{CartEvent, OrderEvent, OrderLine, ProductEvent, ShopEvent};
use uuid::Uuid;

use crate::{cart_id, customer_id, line, order_id};

/// The write side in memory: one state per stream, and everything recorded.
#[derive(Default)]
struct World {
    products: BTreeMap<String, Product>,
    orders: BTreeMap<Uuid, Order>,
    log: Vec<ShopEvent>,
}

impl World {
    fn with_stock(stock: &[(&str, u32)]) -> Self {
        let mut world = World::default();
        for (sku, stock) in stock {
            let register = ProductCommand::Register {
                sku: crate::sku(sku),
                name: format!("Product {sku}"),
                price_cents: 100,
                stock: i64::from(*stock),
            };
            world.send(SagaCommand::Product { sku: sku.to_string(), command: register });
        }
        world.log.clear();
        world
    }

    /// Handles a command on its stream and records what it decided.
    fn send(&mut self, command: SagaCommand) -> Vec<ShopEvent> {
        let events: Vec<ShopEvent> = match command {
            SagaCommand::Product { sku, command } => {
                let product = self.products.entry(sku).or_default();
                decide(product, &command).into_iter().map(ShopEvent::Product).collect()
            }
            SagaCommand::Order { order_id, command } => {
                let order = self.orders.entry(order_id).or_default();
                decide(order, &command).into_iter().map(ShopEvent::Order).collect()
            }
        };
        self.log.extend(events.iter().cloned());
        events
    }

    /// Runs the saga from `event` until nothing more happens, handing every
    /// event to the saga `deliveries` times (the log delivers at least once).
    fn run(&mut self, event: ShopEvent, deliveries: usize) {
        let mut queue = VecDeque::from([event]);
        let mut steps = 0;
        while let Some(event) = queue.pop_front() {
            steps += 1;
            assert!(steps < 1000, "the saga does not settle; log: {:#?}", self.log);
            for _ in 0..deliveries {
                for command in react(&event) {
                    queue.extend(self.send(command));
                }
            }
        }
    }

    fn product(&self, sku: &str) -> &Product {
        &self.products[sku]
    }

    fn order(&self) -> &Order {
        &self.orders[&order_id()]
    }

    fn event_types(&self) -> Vec<&'static str> {
        self.log
            .iter()
            .map(|event| match event {
                ShopEvent::Product(e) => parallax_core::DomainEvent::event_type(e),
                ShopEvent::Cart(e) => parallax_core::DomainEvent::event_type(e),
                ShopEvent::Order(e) => parallax_core::DomainEvent::event_type(e),
            })
            .collect()
    }
}

fn decide<A: Aggregate>(state: &mut A, command: &A::Command) -> Vec<A::Event>
where
    A::Error: std::fmt::Debug,
{
    let events = state.handle(command).expect("the saga's commands are accepted");
    events.iter().for_each(|event| state.apply(event));
    events
}

fn checked_out(lines: Vec<OrderLine>) -> ShopEvent {
    let total_cents = lines.iter().map(OrderLine::total_cents).sum();
    ShopEvent::Cart(CartEvent::CheckedOut {
        personal: None,
        cart_id: "c1".into(),
        order_id: order_id(),
        customer_id: "u1".into(),
        lines,
        total_cents,
    })
}

#[test]
fn a_checkout_with_enough_stock_ends_confirmed_with_stock_reserved() {
    let mut world = World::with_stock(&[("A", 10), ("B", 5)]);
    world.run(checked_out(vec![line("A", 100, 3), line("B", 100, 2)]), 1);

    assert_eq!(world.order().status(), Some(OrderStatus::Confirmed));
    assert_eq!(world.product("A").stock(), 7);
    assert_eq!(world.product("B").stock(), 3);
    assert_eq!(world.product("A").reserved_for(order_id()), Some(3));
    assert_eq!(world.product("B").reserved_for(order_id()), Some(2));
    assert_eq!(
        world.event_types(),
        [
            "order.placed",
            "order.stock_requested",
            "product.stock_reserved",
            "order.line_reserved",
            "order.stock_requested",
            "product.stock_reserved",
            "order.line_reserved",
            "order.confirmed",
        ]
    );
}

#[test]
fn a_line_short_of_stock_rejects_the_order_and_releases_the_lines_before_it() {
    let mut world = World::with_stock(&[("A", 10), ("B", 1), ("C", 4)]);
    world.run(checked_out(vec![line("A", 100, 3), line("B", 100, 2), line("C", 100, 1)]), 1);

    assert_eq!(world.order().status(), Some(OrderStatus::Rejected));
    assert_eq!(world.order().rejection_reason(), Some("product B has 1 units, order needs 2"));
    assert_eq!(world.product("A").stock(), 10, "A's reservation is released");
    assert_eq!(world.product("A").reserved_for(order_id()), None);
    assert_eq!(world.product("B").stock(), 1);
    assert_eq!(world.product("C").stock(), 4, "C is never asked");
    assert_eq!(
        world.event_types(),
        [
            "order.placed",
            "order.stock_requested",
            "product.stock_reserved",
            "order.line_reserved",
            "order.stock_requested",
            "product.stock_reservation_rejected",
            "order.rejected",
            "product.stock_released",
        ]
    );
}

#[test]
fn cancelling_a_confirmed_order_gives_all_its_stock_back() {
    let mut world = World::with_stock(&[("A", 10), ("B", 5)]);
    world.run(checked_out(vec![line("A", 100, 3), line("B", 100, 2)]), 1);
    let cancelled = world.send(SagaCommand::Order { order_id: order_id(), command: OrderCommand::Cancel });
    for event in cancelled {
        world.run(event, 1);
    }

    assert_eq!(world.order().status(), Some(OrderStatus::Cancelled));
    assert_eq!(world.product("A").stock(), 10);
    assert_eq!(world.product("B").stock(), 5);
    assert_eq!(world.product("A").reserved(), 0);
    assert_eq!(world.product("B").reserved(), 0);
}

#[test]
fn every_event_delivered_twice_ends_the_same() {
    for (stock_b, status) in [(5, OrderStatus::Confirmed), (1, OrderStatus::Rejected)] {
        let lines = vec![line("A", 100, 3), line("B", 100, 2)];
        let mut once = World::with_stock(&[("A", 10), ("B", stock_b)]);
        once.run(checked_out(lines.clone()), 1);
        let mut twice = World::with_stock(&[("A", 10), ("B", stock_b)]);
        twice.run(checked_out(lines), 2);

        assert_eq!(twice.order().status(), Some(status));
        assert_eq!(twice.orders, once.orders);
        assert_eq!(twice.products, once.products);
        // Every duplicate decides nothing, except a repeated `Reserve` that
        // was rejected: the product has no memory of rejections, so it records
        // the rejection again, right after the first. Harmless (the order
        // ignores the stale answer), and the runtime's idempotency keys keep
        // even that duplicate out.
        let mut deduped = twice.log.clone();
        deduped.dedup();
        assert_eq!(deduped, once.log);
        let repeated = twice.log.len() - once.log.len();
        assert_eq!(repeated, usize::from(status == OrderStatus::Rejected));
    }
}

mod react {
    use super::*;

    fn product(sku: &str, command: ProductCommand) -> SagaCommand {
        SagaCommand::Product { sku: sku.into(), command }
    }

    fn order(command: OrderCommand) -> SagaCommand {
        SagaCommand::Order { order_id: order_id(), command }
    }

    #[test]
    fn a_checked_out_cart_places_an_order() {
        let lines = vec![line("A", 100, 3)];
        assert_eq!(
            react(&checked_out(lines.clone())),
            [order(OrderCommand::Place {
                personal: None,
                order_id: order_id(),
                customer_id: customer_id("u1"),
                cart_id: cart_id("c1"),
                lines
            })]
        );
    }

    #[test]
    fn requested_stock_is_reserved() {
        let event = OrderEvent::StockRequested { order_id: order_id(), sku: "A".into(), quantity: 3 };
        assert_eq!(
            react(&ShopEvent::Order(event)),
            [product("A", ProductCommand::Reserve { order_id: order_id(), quantity: 3 })]
        );
    }

    #[test]
    fn a_reservation_is_recorded_on_the_order() {
        let event =
            ProductEvent::StockReserved { sku: "A".into(), order_id: order_id(), quantity: 3, stock: 7 };
        assert_eq!(
            react(&ShopEvent::Product(event)),
            [order(OrderCommand::RecordReservation { sku: "A".into() })]
        );
    }

    #[test]
    fn a_rejected_reservation_is_recorded_on_the_order_with_its_reason() {
        let event = ProductEvent::StockReservationRejected {
            sku: "A".into(),
            order_id: order_id(),
            requested: 5,
            available: 3,
        };
        assert_eq!(
            react(&ShopEvent::Product(event)),
            [order(OrderCommand::RecordReservationFailure {
                sku: "A".into(),
                reason: "product A has 3 units, order needs 5".into()
            })]
        );
    }

    #[test]
    fn rejected_and_cancelled_orders_release_each_line() {
        let release = vec![line("A", 100, 3), line("B", 100, 2)];
        let expected = [
            product("A", ProductCommand::Release { order_id: order_id() }),
            product("B", ProductCommand::Release { order_id: order_id() }),
        ];
        let rejected =
            OrderEvent::Rejected { order_id: order_id(), reason: "no".into(), release: release.clone() };
        assert_eq!(react(&ShopEvent::Order(rejected)), expected);
        let cancelled = OrderEvent::Cancelled { order_id: order_id(), release };
        assert_eq!(react(&ShopEvent::Order(cancelled)), expected);
        let nothing_to_release =
            OrderEvent::Rejected { order_id: order_id(), reason: "no".into(), release: vec![] };
        assert_eq!(react(&ShopEvent::Order(nothing_to_release)), []);
    }

    #[test]
    fn everything_else_calls_for_nothing() {
        let id = order_id();
        let events = [
            ShopEvent::Cart(CartEvent::ItemAdded {
                cart_id: "c1".into(),
                sku: "A".into(),
                name: "A".into(),
                price_cents: 1,
                currency: "EUR".into(),
                quantity: 1,
            }),
            ShopEvent::Cart(CartEvent::ItemRemoved { cart_id: "c1".into(), sku: "A".into() }),
            ShopEvent::Product(ProductEvent::Registered {
                sku: "A".into(),
                name: "A".into(),
                price_cents: 1,
                stock: 1,
            }),
            ShopEvent::Product(ProductEvent::Renamed { sku: "A".into(), name: "B".into() }),
            ShopEvent::Product(ProductEvent::Repriced { sku: "A".into(), price_cents: 2 }),
            ShopEvent::Product(ProductEvent::Restocked { sku: "A".into(), quantity: 1, stock: 2 }),
            ShopEvent::Product(ProductEvent::StockReleased {
                sku: "A".into(),
                order_id: id,
                quantity: 1,
                stock: 2,
            }),
            ShopEvent::Order(OrderEvent::Placed {
                personal: None,
                order_id: id,
                customer_id: "u1".into(),
                cart_id: "c1".into(),
                lines: vec![line("A", 1, 1)],
                total_cents: 1,
            }),
            ShopEvent::Order(OrderEvent::LineReserved { order_id: id, sku: "A".into(), quantity: 1 }),
            ShopEvent::Order(OrderEvent::Confirmed {
                order_id: id,
                customer_id: "u1".into(),
                lines: vec![line("A", 1, 1)],
                total_cents: 1,
            }),
            ShopEvent::Order(OrderEvent::Paid { order_id: id, amount_cents: 1 }),
            ShopEvent::Order(OrderEvent::Shipped { order_id: id }),
        ];
        for event in events {
            assert_eq!(react(&event), [], "{event:?}");
        }
    }

    #[test]
    fn commands_name_their_stream() {
        assert_eq!(
            product("MUG-1", ProductCommand::Release { order_id: order_id() }).stream_id(),
            "product-MUG-1"
        );
        assert_eq!(order(OrderCommand::Pay).stream_id(), format!("order-{}", order_id()));
    }
}

/// The sealed personal data of a checkout reaches `order.placed` as it was
/// sealed: the saga and the order pass it on without opening it.
#[test]
fn the_sealed_personal_data_travels_from_checkout_to_placement() {
    let sealed = shop_events::PersonalData {
        name: "pax1.name".into(),
        email: "pax1.email".into(),
        address: "pax1.address".into(),
    };
    let ShopEvent::Cart(CartEvent::CheckedOut { cart_id, order_id, customer_id, lines, total_cents, .. }) =
        checked_out(vec![line("A", 100, 3)])
    else {
        unreachable!("a checkout");
    };
    let checkout = CartEvent::CheckedOut {
        cart_id,
        order_id,
        customer_id,
        lines,
        total_cents,
        personal: Some(sealed.clone()),
    };
    let [SagaCommand::Order { command, .. }] =
        <[SagaCommand; 1]>::try_from(react(&ShopEvent::Cart(checkout))).expect("one command")
    else {
        panic!("an order command");
    };
    assert!(matches!(&command, OrderCommand::Place { personal: Some(p), .. } if *p == sealed), "{command:?}");
    let events = Order::default().handle(&command).expect("placed");
    assert!(matches!(&events[0], OrderEvent::Placed { personal: Some(p), .. } if *p == sealed), "{events:?}");
}
