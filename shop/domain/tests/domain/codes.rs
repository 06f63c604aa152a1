//! Every refusal's code: one per variant, kebab-case, named after what it
//! refuses. The codes are a contract with programs (the fulfilment service
//! matches `order-already-shipped`), so a variant never shares or loses one.

use std::collections::BTreeSet;

use shop_domain::{CartError, DomainError, OrderError, ProductError};

use super::order_id;

fn assert_codes(errors: &[&dyn DomainError], prefixes: &[&str]) {
    let codes: Vec<&str> = errors.iter().map(|error| error.code()).collect();
    let distinct: BTreeSet<&str> = codes.iter().copied().collect();
    assert_eq!(distinct.len(), codes.len(), "a code names two variants: {codes:?}");
    for code in codes {
        assert!(
            code.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                && !code.starts_with('-')
                && !code.ends_with('-'),
            "{code} is not kebab-case"
        );
        assert!(
            prefixes.iter().any(|prefix| code.starts_with(prefix)),
            "{code} names no aggregate of {prefixes:?}"
        );
    }
}

#[test]
fn every_order_refusal_has_a_code_of_its_own() {
    let order_id = order_id();
    let errors = [
        OrderError::InvalidLine { sku: "A".into(), problem: "no units" },
        OrderError::NotFound,
        OrderError::NoLines { order_id },
        OrderError::TotalTooLarge { order_id },
        OrderError::NotConfirmed { order_id },
        OrderError::StillReserving { order_id },
        OrderError::WasRejected { order_id, reason: "no stock".into() },
        OrderError::AlreadyPaid { order_id },
        OrderError::NotPaid { order_id },
        OrderError::AlreadyShipped { order_id },
        OrderError::WasCancelled { order_id },
    ];
    assert_codes(&errors.iter().map(|e| e as &dyn DomainError).collect::<Vec<_>>(), &["order-"]);
    assert_eq!(OrderError::AlreadyShipped { order_id }.code(), "order-already-shipped");
}

#[test]
fn every_cart_refusal_has_a_code_of_its_own() {
    let (cart_id, sku) = (String::from("c1"), String::from("A"));
    let errors = [
        CartError::CartNotFound { cart_id: cart_id.clone() },
        CartError::ProductNotFound { sku: sku.clone() },
        CartError::ItemNotInCart { cart_id: cart_id.clone(), sku: sku.clone() },
        CartError::AlreadyCheckedOut { cart_id: cart_id.clone(), order_id: order_id() },
        CartError::LineTooLarge { sku, quantity: 1001 },
        CartError::Empty { cart_id: cart_id.clone() },
        CartError::TotalTooLarge { cart_id },
    ];
    // A cart's lookup of a product it cannot find is the product's refusal.
    assert_codes(
        &errors.iter().map(|e| e as &dyn DomainError).collect::<Vec<_>>(),
        &["cart-", "product-not-found"],
    );
}

#[test]
fn every_product_refusal_has_a_code_of_its_own() {
    let errors = [
        ProductError::InvalidName { name: String::new(), problem: "blank" },
        ProductError::StockTooLarge { stock: i64::MAX },
        ProductError::StockOverflow { on_hand: u64::MAX, quantity: 1 },
        ProductError::ZeroReservation,
        ProductError::NotFound,
        ProductError::AlreadyRegistered { sku: "A".into() },
        ProductError::NegativeStock { stock: -1 },
        ProductError::NegativePrice { price_cents: -1 },
        ProductError::RestockNotPositive { quantity: 0 },
    ];
    assert_codes(&errors.iter().map(|e| e as &dyn DomainError).collect::<Vec<_>>(), &["product-"]);
}
