//! The domain's values from literals, for tests that call the command side
//! in-process (the HTTP API parses them at the edge).
#![allow(dead_code)]

use shop_domain::{CartId, CustomerId, Quantity, Sku};

pub fn cart(id: &str) -> CartId {
    CartId::parse(id).expect("a cart id")
}

pub fn sku(id: &str) -> Sku {
    Sku::parse(id).expect("a SKU")
}

pub fn customer(id: &str) -> CustomerId {
    CustomerId::parse(id).expect("a customer id")
}

pub fn units(units: i64) -> Quantity {
    Quantity::parse(units).expect("units")
}
