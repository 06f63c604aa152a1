use std::collections::BTreeMap;

use parallax_testing::given::given;
use shop_domain::{Cart, CartCommand, CartError, ProductInfo, Refusal};
use shop_events::{CartEvent, OrderLine};

use crate::{cart_id, customer_id, order_id, sku, units};

fn info(name: &str, unit_price_cents: i64) -> ProductInfo {
    ProductInfo { name: name.into(), unit_price_cents }
}

fn add(id: &str, quantity: i64) -> CartCommand {
    CartCommand::AddItem {
        cart_id: cart_id("c1"),
        sku: sku(id),
        quantity: units(quantity),
        product: Some(info(&format!("Product {id}"), 100)),
    }
}

fn added(sku: &str, quantity: u32) -> CartEvent {
    CartEvent::ItemAdded {
        cart_id: "c1".into(),
        sku: sku.into(),
        name: format!("Product {sku}"),
        price_cents: 100,
        currency: "EUR".into(),
        quantity,
    }
}

fn removed(sku: &str) -> CartEvent {
    CartEvent::ItemRemoved { cart_id: "c1".into(), sku: sku.into() }
}

fn check_out(customer: &str, prices: &[(&str, &str, i64)]) -> CartCommand {
    CartCommand::CheckOut {
        personal: None,
        cart_id: cart_id("c1"),
        order_id: order_id(),
        customer_id: customer_id(customer),
        prices: prices.iter().map(|(sku, name, price)| (sku.to_string(), info(name, *price))).collect(),
    }
}

fn checked_out() -> CartEvent {
    CartEvent::CheckedOut {
        personal: None,
        cart_id: "c1".into(),
        order_id: order_id(),
        customer_id: "u1".into(),
        lines: vec![OrderLine {
            sku: "A".into(),
            name: "Product A".into(),
            unit_price_cents: 100,
            quantity: 1,
        }],
        total_cents: 100,
    }
}

fn is(kind: Refusal) -> impl FnOnce(&CartError) -> bool {
    move |e| e.kind() == kind
}

mod add_item {
    use super::*;

    #[test]
    fn creates_the_cart() {
        given::<Cart>([]).when(add("A", 2)).then([added("A", 2)]).then_state(|cart| {
            assert!(cart.exists());
            assert_eq!(cart.cart_id(), "c1");
            assert_eq!(cart.skus().collect::<Vec<_>>(), ["A"]);
            assert_eq!(cart.line("A").map(|line| line.quantity), Some(2));
            assert_eq!(cart.order_id(), None);
        });
    }

    #[test]
    fn adds_to_a_sku_already_in_the_cart_at_its_new_price() {
        let command = CartCommand::AddItem {
            cart_id: cart_id("c1"),
            sku: sku("A"),
            quantity: units(3),
            product: Some(info("Renamed A", 150)),
        };
        given::<Cart>([added("A", 2), added("B", 1)])
            .when(command)
            .then([CartEvent::ItemAdded {
                cart_id: "c1".into(),
                sku: "A".into(),
                name: "Renamed A".into(),
                price_cents: 150,
                currency: "EUR".into(),
                quantity: 3,
            }])
            .then_state(|cart| {
                let line = cart.line("A").expect("A is in the cart");
                assert_eq!((line.name.as_str(), line.unit_price_cents, line.quantity), ("Renamed A", 150, 5));
                assert_eq!(cart.skus().collect::<Vec<_>>(), ["A", "B"]);
            });
    }

    #[test]
    fn refuses_an_unknown_product() {
        given::<Cart>([])
            .when(CartCommand::AddItem {
                cart_id: cart_id("c1"),
                sku: sku("B"),
                quantity: units(1),
                product: None,
            })
            .then_error(is(Refusal::NotFound))
            .then_error_message("product B not found")
            .then_state(|cart| assert!(!cart.exists()));
    }

    #[test]
    fn a_line_holds_up_to_1000_units() {
        given::<Cart>([]).when(add("A", 1000)).then([added("A", 1000)]);
        given::<Cart>([added("A", 600)]).when(add("A", 400)).then([added("A", 400)]);
        given::<Cart>([added("A", 600)])
            .when(add("A", 401))
            .then_error(is(Refusal::RuleViolated))
            .then_error_message("a cart line holds at most 1000 units; A would have 1001");
        given::<Cart>([added("A", 1000)])
            .when(add("A", 1000))
            .then_error(|e| matches!(e, CartError::LineTooLarge { quantity: 2000, .. }));
    }

    #[test]
    fn refuses_a_checked_out_cart() {
        given::<Cart>([added("A", 1), checked_out()])
            .when(add("B", 1))
            .then_error(is(Refusal::RuleViolated))
            .then_error_message(&format!("cart c1 is already checked out (order {})", order_id()));
    }
}

mod remove_item {
    use super::*;

    #[test]
    fn removes_all_units_of_a_sku() {
        given::<Cart>([added("A", 2), added("B", 1)])
            .when(CartCommand::RemoveItem { cart_id: cart_id("c1"), sku: sku("A") })
            .then([removed("A")])
            .then_state(|cart| assert_eq!(cart.skus().collect::<Vec<_>>(), ["B"]));
    }

    #[test]
    fn refuses_an_unknown_cart() {
        given::<Cart>([])
            .when(CartCommand::RemoveItem { cart_id: cart_id("c1"), sku: sku("A") })
            .then_error(is(Refusal::NotFound))
            .then_error_message("cart c1 not found");
    }

    #[test]
    fn refuses_a_sku_not_in_the_cart() {
        given::<Cart>([added("A", 2)])
            .when(CartCommand::RemoveItem { cart_id: cart_id("c1"), sku: sku("B") })
            .then_error(is(Refusal::NotFound))
            .then_error_message("cart c1 has no item B");
        given::<Cart>([added("A", 2), removed("A")])
            .when(CartCommand::RemoveItem { cart_id: cart_id("c1"), sku: sku("A") })
            .then_error(|e| matches!(e, CartError::ItemNotInCart { .. }));
    }

    #[test]
    fn refuses_a_checked_out_cart() {
        given::<Cart>([added("A", 1), checked_out()])
            .when(CartCommand::RemoveItem { cart_id: cart_id("c1"), sku: sku("A") })
            .then_error(is(Refusal::RuleViolated))
            .then_error_message(&format!("cart c1 is already checked out (order {})", order_id()));
    }
}

mod check_out {
    use super::*;

    #[test]
    fn prices_every_line_at_the_current_price_in_sku_order() {
        given::<Cart>([added("B", 2), added("A", 1), added("C", 1), removed("C")])
            .when(check_out("u1", &[("A", "Mug", 1200), ("B", "Plate", 350), ("Z", "Unused", 1)]))
            .then([CartEvent::CheckedOut {
                personal: None,
                cart_id: "c1".into(),
                order_id: order_id(),
                customer_id: "u1".into(),
                lines: vec![
                    OrderLine { sku: "A".into(), name: "Mug".into(), unit_price_cents: 1200, quantity: 1 },
                    OrderLine { sku: "B".into(), name: "Plate".into(), unit_price_cents: 350, quantity: 2 },
                ],
                total_cents: 1900,
            }])
            .then_state(|cart| {
                assert!(cart.is_checked_out());
                assert_eq!(cart.order_id(), Some(order_id()));
            });
    }

    #[test]
    fn refuses_an_unknown_cart() {
        given::<Cart>([])
            .when(check_out("u1", &[]))
            .then_error(is(Refusal::NotFound))
            .then_error_message("cart c1 not found");
    }

    #[test]
    fn refuses_an_empty_cart() {
        given::<Cart>([added("A", 1), removed("A")])
            .when(check_out("u1", &[("A", "Mug", 1200)]))
            .then_error(is(Refusal::RuleViolated))
            .then_error_message("cart c1 is empty");
    }

    #[test]
    fn refuses_a_checked_out_cart() {
        given::<Cart>([added("A", 1), checked_out()])
            .when(check_out("u1", &[("A", "Mug", 1200)]))
            .then_error(is(Refusal::RuleViolated))
            .then_error_message(&format!("cart c1 is already checked out (order {})", order_id()));
    }

    #[test]
    fn refuses_a_product_gone_from_the_catalog() {
        given::<Cart>([added("A", 1), added("B", 1)])
            .when(check_out("u1", &[("A", "Mug", 1200)]))
            .then_error(is(Refusal::NotFound))
            .then_error_message("product B not found")
            .then_state(|cart| assert!(!cart.is_checked_out()));
    }

    #[test]
    fn refuses_a_total_beyond_i64() {
        given::<Cart>([added("A", 2)])
            .when(check_out("u1", &[("A", "Gold", i64::MAX / 2 + 1)]))
            .then_error(is(Refusal::RuleViolated))
            .then_error_message("the total of cart c1 is too large");
    }
}

#[test]
fn check_out_prices_what_skus_lists() {
    let cart = given::<Cart>([added("B", 1), added("A", 1)]);
    let skus: Vec<&str> = cart.state().skus().collect();
    assert_eq!(skus, ["A", "B"]);
    let prices: BTreeMap<String, ProductInfo> = skus.iter().map(|id| (id.to_string(), info(id, 1))).collect();
    let command = CartCommand::CheckOut {
        personal: None,
        cart_id: cart_id("c1"),
        order_id: order_id(),
        customer_id: customer_id("u1"),
        prices,
    };
    assert!(cart.when(command).into_result().is_ok());
}
