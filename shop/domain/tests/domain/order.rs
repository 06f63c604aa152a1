use parallax_testing::given::given;
use shop_domain::{Order, OrderCommand, OrderError, OrderStatus, Refusal};
use shop_events::{OrderEvent, OrderLine};

use crate::{cart_id, customer_id, line, order_id};

fn lines() -> Vec<OrderLine> {
    vec![line("A", 1200, 1), line("B", 350, 2)]
}

fn place_with(lines: Vec<OrderLine>) -> OrderCommand {
    OrderCommand::Place {
        personal: None,
        order_id: order_id(),
        customer_id: customer_id("u1"),
        cart_id: cart_id("c1"),
        lines,
    }
}

fn placed() -> OrderEvent {
    OrderEvent::Placed {
        personal: None,
        order_id: order_id(),
        customer_id: "u1".into(),
        cart_id: "c1".into(),
        lines: lines(),
        total_cents: 1900,
    }
}

fn requested(sku: &str, quantity: u32) -> OrderEvent {
    OrderEvent::StockRequested { order_id: order_id(), sku: sku.into(), quantity }
}

fn line_reserved(sku: &str, quantity: u32) -> OrderEvent {
    OrderEvent::LineReserved { order_id: order_id(), sku: sku.into(), quantity }
}

fn confirmed() -> OrderEvent {
    OrderEvent::Confirmed {
        order_id: order_id(),
        customer_id: "u1".into(),
        lines: lines(),
        total_cents: 1900,
    }
}

fn rejected(release: Vec<OrderLine>) -> OrderEvent {
    OrderEvent::Rejected {
        order_id: order_id(),
        reason: "product B has 1 units, order needs 2".into(),
        release,
    }
}

fn paid() -> OrderEvent {
    OrderEvent::Paid { order_id: order_id(), amount_cents: 1900 }
}

fn shipped() -> OrderEvent {
    OrderEvent::Shipped { order_id: order_id() }
}

fn cancelled() -> OrderEvent {
    OrderEvent::Cancelled { order_id: order_id(), release: lines() }
}

/// The history of an order in each status.
fn history(status: OrderStatus) -> Vec<OrderEvent> {
    let placing = vec![placed(), requested("A", 1)];
    let confirming = [line_reserved("A", 1), requested("B", 2), line_reserved("B", 2), confirmed()];
    let confirmed: Vec<OrderEvent> = placing.iter().cloned().chain(confirming).collect();
    let then = |more: &[OrderEvent]| confirmed.iter().cloned().chain(more.iter().cloned()).collect();
    match status {
        OrderStatus::Placed => placing,
        OrderStatus::Confirmed => confirmed.clone(),
        OrderStatus::Rejected => placing.into_iter().chain([rejected(vec![])]).collect(),
        OrderStatus::Paid => then(&[paid()]),
        OrderStatus::Shipped => then(&[paid(), shipped()]),
        OrderStatus::Cancelled => then(&[cancelled()]),
    }
}

fn is(kind: Refusal) -> impl FnOnce(&OrderError) -> bool {
    move |e| e.kind() == kind
}

#[test]
fn each_history_folds_into_its_status() {
    use OrderStatus::*;
    for status in [Placed, Confirmed, Rejected, Paid, Shipped, Cancelled] {
        given::<Order>(history(status))
            .when(OrderCommand::Place {
                personal: None,
                order_id: order_id(),
                customer_id: customer_id("u1"),
                cart_id: cart_id("c1"),
                lines: lines(),
            })
            .then_nothing()
            .then_state(|order| assert_eq!(order.status(), Some(status)));
    }
}

mod place {
    use super::*;

    #[test]
    fn places_and_requests_the_first_line() {
        given::<Order>([]).when(place_with(lines())).then([placed(), requested("A", 1)]).then_state(
            |order| {
                assert!(order.exists());
                assert_eq!(order.status(), Some(OrderStatus::Placed));
                assert_eq!(order.order_id(), order_id());
                assert_eq!(order.customer_id(), "u1");
                assert_eq!(order.cart_id(), "c1");
                assert_eq!(order.lines(), lines());
                assert_eq!(order.total_cents(), 1900);
                assert_eq!(order.requested_line(), Some(&lines()[0]));
                assert!(order.reserved_lines().is_empty());
            },
        );
    }

    #[test]
    fn a_placed_order_changes_nothing() {
        given::<Order>([placed(), requested("A", 1)]).when(place_with(lines())).then_nothing();
        given::<Order>(history(OrderStatus::Shipped)).when(place_with(vec![])).then_nothing();
    }

    #[test]
    fn refuses_an_order_without_lines() {
        given::<Order>([])
            .when(place_with(vec![]))
            .then_error(is(Refusal::RuleViolated))
            .then_error_message(&format!("order {} has no lines", order_id()))
            .then_state(|order| assert!(!order.exists()));
    }

    #[test]
    fn refuses_malformed_lines() {
        for (lines, message) in [
            (vec![line("A", 100, 1), line("B", 100, 0)], "invalid order line B: quantity must be positive"),
            (vec![line("A", -1, 1)], "invalid order line A: price cannot be negative"),
            (
                vec![line("A", 1, 1), line("B", 1, 1), line("A", 1, 2)],
                "invalid order line A: an order has one line per sku",
            ),
        ] {
            given::<Order>([])
                .when(place_with(lines))
                .then_error(is(Refusal::Invalid))
                .then_error_message(message);
        }
    }

    #[test]
    fn refuses_a_total_beyond_i64() {
        given::<Order>([])
            .when(place_with(vec![line("A", i64::MAX, 1), line("B", 1, 1)]))
            .then_error(is(Refusal::RuleViolated))
            .then_error_message(&format!("the total of order {} is too large", order_id()));
    }
}

mod record_reservation {
    use super::*;

    #[test]
    fn reserves_a_line_and_requests_the_next() {
        given::<Order>([placed(), requested("A", 1)])
            .when(OrderCommand::RecordReservation { sku: "A".into() })
            .then([line_reserved("A", 1), requested("B", 2)])
            .then_state(|order| {
                assert_eq!(order.status(), Some(OrderStatus::Placed));
                assert_eq!(order.reserved_lines(), &lines()[..1]);
                assert_eq!(order.requested_line(), Some(&lines()[1]));
            });
    }

    #[test]
    fn the_last_line_confirms_the_order() {
        given::<Order>([placed(), requested("A", 1), line_reserved("A", 1), requested("B", 2)])
            .when(OrderCommand::RecordReservation { sku: "B".into() })
            .then([line_reserved("B", 2), confirmed()])
            .then_state(|order| {
                assert_eq!(order.status(), Some(OrderStatus::Confirmed));
                assert_eq!(order.reserved_lines(), lines());
                assert_eq!(order.requested_line(), None);
            });
    }

    #[test]
    fn a_duplicate_or_stale_answer_changes_nothing() {
        given::<Order>([placed(), requested("A", 1), line_reserved("A", 1), requested("B", 2)])
            .when(OrderCommand::RecordReservation { sku: "A".into() })
            .then_nothing();
        given::<Order>([placed(), requested("A", 1)])
            .when(OrderCommand::RecordReservation { sku: "B".into() })
            .then_nothing();
        given::<Order>([placed(), requested("A", 1)])
            .when(OrderCommand::RecordReservation { sku: "Z".into() })
            .then_nothing();
        given::<Order>(history(OrderStatus::Confirmed))
            .when(OrderCommand::RecordReservation { sku: "B".into() })
            .then_nothing();
        given::<Order>(history(OrderStatus::Rejected))
            .when(OrderCommand::RecordReservation { sku: "A".into() })
            .then_nothing();
    }

    #[test]
    fn refuses_an_unknown_order() {
        given::<Order>([])
            .when(OrderCommand::RecordReservation { sku: "A".into() })
            .then_error(is(Refusal::NotFound))
            .then_error_message("order not found");
    }
}

mod record_reservation_failure {
    use super::*;

    fn failure(sku: &str) -> OrderCommand {
        OrderCommand::RecordReservationFailure {
            sku: sku.into(),
            reason: "product B has 1 units, order needs 2".into(),
        }
    }

    #[test]
    fn rejects_and_releases_the_lines_reserved_so_far() {
        given::<Order>([placed(), requested("A", 1), line_reserved("A", 1), requested("B", 2)])
            .when(failure("B"))
            .then([rejected(vec![line("A", 1200, 1)])])
            .then_state(|order| {
                assert_eq!(order.status(), Some(OrderStatus::Rejected));
                assert_eq!(order.rejection_reason(), Some("product B has 1 units, order needs 2"));
                assert_eq!(order.requested_line(), None);
            });
    }

    #[test]
    fn a_failure_on_the_first_line_releases_nothing() {
        given::<Order>([placed(), requested("A", 1)]).when(failure("A")).then([rejected(vec![])]);
    }

    #[test]
    fn a_duplicate_or_stale_answer_changes_nothing() {
        given::<Order>([placed(), requested("A", 1)]).when(failure("B")).then_nothing();
        given::<Order>(history(OrderStatus::Rejected)).when(failure("A")).then_nothing();
        given::<Order>(history(OrderStatus::Confirmed)).when(failure("B")).then_nothing();
    }

    #[test]
    fn refuses_an_unknown_order() {
        given::<Order>([]).when(failure("A")).then_error(is(Refusal::NotFound));
    }
}

mod pay {
    use super::*;

    #[test]
    fn pays_a_confirmed_order() {
        given::<Order>(history(OrderStatus::Confirmed))
            .when(OrderCommand::Pay)
            .then([paid()])
            .then_state(|order| assert_eq!(order.status(), Some(OrderStatus::Paid)));
    }

    #[test]
    fn refuses_every_other_status() {
        let id = order_id();
        for (status, message) in [
            (
                OrderStatus::Placed,
                format!("order {id} is not confirmed yet: its stock is still being reserved"),
            ),
            (OrderStatus::Rejected, format!("order {id} was rejected: product B has 1 units, order needs 2")),
            (OrderStatus::Paid, format!("order {id} is already paid")),
            (OrderStatus::Shipped, format!("order {id} is already paid")),
            (OrderStatus::Cancelled, format!("order {id} was cancelled")),
        ] {
            given::<Order>(history(status))
                .when(OrderCommand::Pay)
                .then_error(is(Refusal::RuleViolated))
                .then_error_message(&message);
        }
    }

    #[test]
    fn refuses_an_unknown_order() {
        given::<Order>([]).when(OrderCommand::Pay).then_error(is(Refusal::NotFound));
    }
}

mod ship {
    use super::*;

    #[test]
    fn ships_a_paid_order() {
        given::<Order>(history(OrderStatus::Paid))
            .when(OrderCommand::Ship)
            .then([shipped()])
            .then_state(|order| assert_eq!(order.status(), Some(OrderStatus::Shipped)));
    }

    #[test]
    fn refuses_every_other_status() {
        let id = order_id();
        for (status, message) in [
            (OrderStatus::Placed, format!("order {id} is not paid yet")),
            (OrderStatus::Confirmed, format!("order {id} is not paid yet")),
            (OrderStatus::Rejected, format!("order {id} was rejected: product B has 1 units, order needs 2")),
            (OrderStatus::Shipped, format!("order {id} has already shipped")),
            (OrderStatus::Cancelled, format!("order {id} was cancelled")),
        ] {
            given::<Order>(history(status))
                .when(OrderCommand::Ship)
                .then_error(is(Refusal::RuleViolated))
                .then_error_message(&message);
        }
    }

    #[test]
    fn refuses_an_unknown_order() {
        given::<Order>([]).when(OrderCommand::Ship).then_error(is(Refusal::NotFound));
    }
}

mod cancel {
    use super::*;

    #[test]
    fn cancels_a_confirmed_or_paid_order_and_releases_every_line() {
        for status in [OrderStatus::Confirmed, OrderStatus::Paid] {
            given::<Order>(history(status))
                .when(OrderCommand::Cancel)
                .then([cancelled()])
                .then_state(|order| assert_eq!(order.status(), Some(OrderStatus::Cancelled)));
        }
    }

    #[test]
    fn refuses_every_other_status() {
        let id = order_id();
        for (status, message) in [
            (OrderStatus::Placed, format!("order {id} is still reserving stock; try again")),
            (OrderStatus::Rejected, format!("order {id} was rejected: product B has 1 units, order needs 2")),
            (OrderStatus::Shipped, format!("order {id} has already shipped")),
            (OrderStatus::Cancelled, format!("order {id} was cancelled")),
        ] {
            given::<Order>(history(status))
                .when(OrderCommand::Cancel)
                .then_error(is(Refusal::RuleViolated))
                .then_error_message(&message);
        }
    }

    #[test]
    fn refuses_an_unknown_order() {
        given::<Order>([])
            .when(OrderCommand::Cancel)
            .then_error(is(Refusal::NotFound))
            .then_error_message("order not found");
    }
}
