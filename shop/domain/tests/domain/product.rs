use parallax_testing::given::given;
use shop_domain::{Product, ProductCommand, ProductError, Refusal};
use shop_events::ProductEvent;
use uuid::Uuid;

use crate::{order_id, sku};

fn registered(stock: u32) -> ProductEvent {
    ProductEvent::Registered { sku: "A".into(), name: "Mug".into(), price_cents: 1200, stock }
}

fn register(id: &str, name: &str, price_cents: i64, stock: i64) -> ProductCommand {
    ProductCommand::Register { sku: sku(id), name: name.into(), price_cents, stock }
}

fn reserved(quantity: u32, stock: u32) -> ProductEvent {
    ProductEvent::StockReserved { sku: "A".into(), order_id: order_id(), quantity, stock }
}

fn is(kind: Refusal) -> impl FnOnce(&ProductError) -> bool {
    move |e| e.kind() == kind
}

mod register {
    use super::*;

    #[test]
    fn registers_a_new_product() {
        given::<Product>([]).when(register("A", "Mug", 1200, 3)).then([registered(3)]).then_state(
            |product| {
                assert!(product.is_registered());
                assert_eq!(product.sku(), "A");
                assert_eq!(product.name(), "Mug");
                assert_eq!(product.price_cents(), 1200);
                assert_eq!(product.stock(), 3);
            },
        );
    }

    #[test]
    fn accepts_the_limits() {
        let sku = "a".repeat(64);
        let name = "é".repeat(200);
        given::<Product>([]).when(register(&sku, &name, 0, u32::MAX.into())).then([
            ProductEvent::Registered {
                sku: sku.clone(),
                name: name.clone(),
                price_cents: 0,
                stock: u32::MAX,
            },
        ]);
        given::<Product>([]).when(register("Az09._-", "x", 1, 0)).then([ProductEvent::Registered {
            sku: "Az09._-".into(),
            name: "x".into(),
            price_cents: 1,
            stock: 0,
        }]);
    }

    #[test]
    fn refuses_a_registered_product() {
        given::<Product>([registered(3)])
            .when(register("A", "Other mug", 900, 1))
            .then_error(is(Refusal::AlreadyExists))
            .then_error_message("product A is already registered")
            .then_state(|product| assert_eq!(product.name(), "Mug"));
    }

    #[test]
    fn refuses_negative_stock() {
        given::<Product>([])
            .when(register("A", "Mug", 1200, -1))
            .then_error(is(Refusal::RuleViolated))
            .then_error_message("stock cannot be negative (got -1)")
            .then_state(|product| assert!(!product.is_registered()));
    }

    #[test]
    fn refuses_stock_beyond_u32() {
        given::<Product>([])
            .when(register("A", "Mug", 1200, i64::from(u32::MAX) + 1))
            .then_error(is(Refusal::Invalid))
            .then_error_message("stock 4294967296 is above the maximum of 4294967295");
    }

    #[test]
    fn refuses_a_negative_price() {
        given::<Product>([])
            .when(register("A", "Mug", -1, 3))
            .then_error(is(Refusal::RuleViolated))
            .then_error_message("price cannot be negative (got -1 cents)");
    }

    #[test]
    fn refuses_malformed_names() {
        for (name, problem) in [
            ("", "must not be blank"),
            (" \t ", "must not be blank"),
            (&"x".repeat(201), "must be at most 200 characters"),
            ("Mug\n", "must not contain control characters"),
        ] {
            given::<Product>([])
                .when(register("A", name, 1200, 3))
                .then_error(is(Refusal::Invalid))
                .then_error_message(&format!("invalid product name {name:?}: {problem}"));
        }
    }
}

mod rename {
    use super::*;

    #[test]
    fn renames() {
        given::<Product>([registered(3)])
            .when(ProductCommand::Rename { name: "Big mug".into() })
            .then([ProductEvent::Renamed { sku: "A".into(), name: "Big mug".into() }])
            .then_state(|product| assert_eq!(product.name(), "Big mug"));
    }

    #[test]
    fn the_same_name_changes_nothing() {
        given::<Product>([registered(3)]).when(ProductCommand::Rename { name: "Mug".into() }).then_nothing();
    }

    #[test]
    fn refuses_an_unknown_product() {
        given::<Product>([])
            .when(ProductCommand::Rename { name: "Mug".into() })
            .then_error(is(Refusal::NotFound))
            .then_error_message("product not found");
    }

    #[test]
    fn refuses_a_malformed_name() {
        given::<Product>([registered(3)])
            .when(ProductCommand::Rename { name: " ".into() })
            .then_error(is(Refusal::Invalid))
            .then_error_message("invalid product name \" \": must not be blank");
        given::<Product>([registered(3)])
            .when(ProductCommand::Rename { name: "x".repeat(201) })
            .then_error(|e| matches!(e, ProductError::InvalidName { .. }));
    }
}

mod reprice {
    use super::*;

    #[test]
    fn reprices() {
        given::<Product>([registered(3)])
            .when(ProductCommand::Reprice { price_cents: 1500 })
            .then([ProductEvent::Repriced { sku: "A".into(), price_cents: 1500 }])
            .then_state(|product| assert_eq!(product.price_cents(), 1500));
        given::<Product>([registered(3)])
            .when(ProductCommand::Reprice { price_cents: 0 })
            .then([ProductEvent::Repriced { sku: "A".into(), price_cents: 0 }]);
    }

    #[test]
    fn the_same_price_changes_nothing() {
        given::<Product>([registered(3)]).when(ProductCommand::Reprice { price_cents: 1200 }).then_nothing();
    }

    #[test]
    fn refuses_a_negative_price() {
        given::<Product>([registered(3)])
            .when(ProductCommand::Reprice { price_cents: -5 })
            .then_error(is(Refusal::RuleViolated))
            .then_error_message("price cannot be negative (got -5 cents)");
    }

    #[test]
    fn refuses_an_unknown_product() {
        given::<Product>([])
            .when(ProductCommand::Reprice { price_cents: 100 })
            .then_error(is(Refusal::NotFound))
            .then_error_message("product not found");
    }
}

mod restock {
    use super::*;

    #[test]
    fn adds_units() {
        given::<Product>([registered(3)])
            .when(ProductCommand::Restock { quantity: 5 })
            .then([ProductEvent::Restocked { sku: "A".into(), quantity: 5, stock: 8 }])
            .then_state(|product| assert_eq!(product.stock(), 8));
    }

    #[test]
    fn refuses_nothing_or_less() {
        for quantity in [0, -1, i64::MIN] {
            given::<Product>([registered(3)])
                .when(ProductCommand::Restock { quantity })
                .then_error(is(Refusal::RuleViolated))
                .then_error_message(&format!("restock quantity must be positive (got {quantity})"));
        }
    }

    #[test]
    fn may_fill_up_to_the_maximum() {
        given::<Product>([registered(u32::MAX - 2)])
            .when(ProductCommand::Restock { quantity: 2 })
            .then([ProductEvent::Restocked { sku: "A".into(), quantity: 2, stock: u32::MAX }]);
    }

    #[test]
    fn refuses_an_overflow() {
        given::<Product>([registered(u32::MAX - 2)])
            .when(ProductCommand::Restock { quantity: 3 })
            .then_error(is(Refusal::RuleViolated))
            .then_error_message(
                "restocking 3 units onto 4294967293 on hand would exceed the maximum of 4294967295",
            );
        given::<Product>([registered(0)])
            .when(ProductCommand::Restock { quantity: i64::from(u32::MAX) + 1 })
            .then_error(is(Refusal::RuleViolated));
    }

    #[test]
    fn counts_reserved_units_as_on_hand() {
        // 10 units reserved come back on release: restocking must leave room for them.
        given::<Product>([registered(u32::MAX), reserved(10, u32::MAX - 10)])
            .when(ProductCommand::Restock { quantity: 1 })
            .then_error(|e| matches!(e, ProductError::StockOverflow { on_hand, quantity: 1 } if *on_hand == u64::from(u32::MAX)));
    }

    #[test]
    fn refuses_an_unknown_product() {
        given::<Product>([]).when(ProductCommand::Restock { quantity: 1 }).then_error(is(Refusal::NotFound));
    }
}

mod reserve {
    use super::*;

    #[test]
    fn reserves_available_units() {
        given::<Product>([registered(5)])
            .when(ProductCommand::Reserve { order_id: order_id(), quantity: 3 })
            .then([reserved(3, 2)])
            .then_state(|product| {
                assert_eq!(product.stock(), 2);
                assert_eq!(product.reserved_for(order_id()), Some(3));
                assert_eq!(product.reserved(), 3);
            });
    }

    #[test]
    fn may_reserve_the_last_unit() {
        given::<Product>([registered(3)])
            .when(ProductCommand::Reserve { order_id: order_id(), quantity: 3 })
            .then([reserved(3, 0)]);
    }

    #[test]
    fn records_a_rejection_when_short() {
        given::<Product>([registered(3)])
            .when(ProductCommand::Reserve { order_id: order_id(), quantity: 5 })
            .then([ProductEvent::StockReservationRejected {
                sku: "A".into(),
                order_id: order_id(),
                requested: 5,
                available: 3,
            }])
            .then_state(|product| {
                assert_eq!(product.stock(), 3);
                assert_eq!(product.reserved_for(order_id()), None);
            });
    }

    #[test]
    fn a_second_reserve_for_the_same_order_changes_nothing() {
        given::<Product>([registered(5), reserved(3, 2)])
            .when(ProductCommand::Reserve { order_id: order_id(), quantity: 3 })
            .then_nothing();
    }

    #[test]
    fn other_orders_reserve_separately() {
        let other = Uuid::from_u128(2);
        given::<Product>([registered(5), reserved(3, 2)])
            .when(ProductCommand::Reserve { order_id: other, quantity: 2 })
            .then([ProductEvent::StockReserved { sku: "A".into(), order_id: other, quantity: 2, stock: 0 }]);
    }

    #[test]
    fn refuses_zero_units() {
        given::<Product>([registered(5)])
            .when(ProductCommand::Reserve { order_id: order_id(), quantity: 0 })
            .then_error(is(Refusal::Invalid))
            .then_error_message("reservation quantity must be positive");
    }

    #[test]
    fn refuses_an_unknown_product() {
        given::<Product>([])
            .when(ProductCommand::Reserve { order_id: order_id(), quantity: 1 })
            .then_error(is(Refusal::NotFound));
    }
}

mod release {
    use super::*;

    #[test]
    fn gives_back_what_the_order_reserved() {
        given::<Product>([registered(5), reserved(3, 2)])
            .when(ProductCommand::Release { order_id: order_id() })
            .then([ProductEvent::StockReleased {
                sku: "A".into(),
                order_id: order_id(),
                quantity: 3,
                stock: 5,
            }])
            .then_state(|product| {
                assert_eq!(product.stock(), 5);
                assert_eq!(product.reserved_for(order_id()), None);
            });
    }

    #[test]
    fn without_a_reservation_changes_nothing() {
        given::<Product>([registered(5)])
            .when(ProductCommand::Release { order_id: order_id() })
            .then_nothing();
        let released =
            ProductEvent::StockReleased { sku: "A".into(), order_id: order_id(), quantity: 3, stock: 5 };
        given::<Product>([registered(5), reserved(3, 2), released])
            .when(ProductCommand::Release { order_id: order_id() })
            .then_nothing();
    }

    #[test]
    fn refuses_an_unknown_product() {
        given::<Product>([])
            .when(ProductCommand::Release { order_id: order_id() })
            .then_error(is(Refusal::NotFound));
    }
}
