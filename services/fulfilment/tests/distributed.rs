//! Fulfilment beside the distributed shop, on real PostgreSQL and Kafka:
//! the shop's `shop` binary with every role in one process, and the
//! `fulfilment` binary, each on databases and a topic of the test's own;
//! and beside the embedded shop, each on SQLite files of its own. Nobody but
//! fulfilment sends `ship`.
//!
//! Services: `PARALLAX_TEST_POSTGRES_URL` (a superuser: it creates
//! databases) and `PARALLAX_TEST_KAFKA_BROKERS`; `scripts/services/postgres
//! start` and `scripts/services/kafka start` run them. The shop binary is
//! built by `cargo build -p shop` into the same target folder.

mod common;

use std::time::Duration;

use common::{Fulfilment, Stack};
use serde_json::json;

/// The whole path: paid in the shop, shipped by fulfilment, told back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_is_shipped_and_the_shop_is_told() {
    let stack = Stack::start().await;
    let fulfilment = Fulfilment::start(&stack, &stack.shop.base).await;
    stack.register_product("SKU-1", 100).await;
    let order = stack.confirmed_order("cart-1").await;
    stack.pay(&order).await;

    let shipment = fulfilment.shipment_when(&order, |s| s["shop"] == "shipped").await;
    assert_eq!(shipment["status"], "dispatched", "{shipment}");
    assert_eq!(shipment["amount_cents"], 250, "{shipment}");
    let shop_order = stack.order_when(&order, "shipped").await;
    assert_eq!(shop_order["order_id"], order.as_str());

    // The query API: by status, its refusals, and an unknown order.
    let dispatched = fulfilment.get("/api/shipments?status=dispatched").await;
    assert_eq!(dispatched.0, 200);
    let listed: Vec<&str> = dispatched.1["shipments"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["order_id"].as_str())
        .collect();
    assert_eq!(listed, [order.as_str()]);
    assert_eq!(fulfilment.get("/api/shipments?status=opened").await.1["shipments"], serde_json::json!([]));
    assert_eq!(fulfilment.get("/api/shipments?status=shipped").await.0, 400);
    assert_eq!(fulfilment.get("/api/shipments").await.0, 400);
    assert_eq!(fulfilment.get(&format!("/api/shipments/{}", uuid::Uuid::new_v4())).await.0, 404);
    assert_eq!(fulfilment.get("/api/shipments/not-a-uuid").await.0, 400);
    assert_eq!(fulfilment.get("/health").await.0, 200);

    assert_eq!(stack.shipped_events().await, vec![(format!("order-{order}"), 1)]);
    assert_eq!(fulfilment.shipment_events("shipment.opened").await, vec![(format!("shipment-{order}"), 1)]);
    stack.stop().await;
}

/// Fulfilment is killed (SIGKILL) twice at its two dangerous moments, and
/// every paid order still ends shipped once:
///
/// 1. after the shop took a ship call and before fulfilment recorded the
///    answer (a proxy in front of the shop holds the answer back): the
///    restarted warehouse must call again with the same idempotency key and
///    get the shop's first answer, `shipped` (a call without it would be
///    refused as "already shipped");
/// 2. while the intake's `shipment.opened` for freshly paid orders is
///    blocked in fulfilment's event store (the test holds a lock on its
///    events table, and the blocked statements die with the process): the
///    restarted intake must get those `order.paid` again, which it does
///    only if their offsets were not stored before the effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_paid_order_ships_once_across_kills() {
    let stack = Stack::start().await;
    let proxy = common::ShopProxy::start(&stack.shop.base).await;
    let mut fulfilment = Fulfilment::start(&stack, &proxy.base).await;
    stack.register_product("SKU-1", 1_000).await;
    let mut orders = Vec::new();
    for n in 0..6 {
        orders.push(stack.confirmed_order(&format!("cart-{n}")).await);
    }
    let (first, second) = orders.split_at(3);

    // 1. A kill between the shop's answer and its record.
    let held = proxy.hold_next_answer();
    for order in first {
        stack.pay(order).await;
    }
    let held_order = tokio::time::timeout(Duration::from_secs(120), held)
        .await
        .expect("a ship call reaches the shop within 120 s")
        .expect("the proxy reports it");
    fulfilment.kill();
    let fulfilment_db = fulfilment.db_name.clone();
    let mut fulfilment = fulfilment.restart(&stack, &proxy.base).await;
    for order in first {
        fulfilment.shipment_when(order, |s| s["shop"].is_string()).await;
    }
    assert!(proxy.calls(&held_order) >= 2, "the restarted warehouse called the shop again for {held_order}");

    // 2. A kill while the intake's effects are not durable yet.
    let lock = common::LockedEvents::lock(&stack.admin_url, &fulfilment_db).await;
    for order in second {
        stack.pay(order).await;
    }
    lock.wait_for_a_blocked_writer().await;
    fulfilment.kill();
    lock.release_after_the_crash().await;
    fulfilment = fulfilment.restart(&stack, &proxy.base).await;

    for order in &orders {
        let shipment = fulfilment.shipment_when(order, |s| s["shop"].is_string()).await;
        assert_eq!(
            (shipment["status"].as_str(), shipment["shop"].as_str()),
            (Some("dispatched"), Some("shipped")),
            "the shop took fulfilment's own call for {order} (idempotent): {shipment}"
        );
        stack.order_when(order, "shipped").await;
    }
    let mut expected: Vec<(String, i64)> = orders.iter().map(|o| (format!("order-{o}"), 1)).collect();
    expected.sort();
    assert_eq!(stack.shipped_events().await, expected, "one order.shipped per order in the shop");
    for event_type in ["shipment.opened", "shipment.dispatched", "shipment.shop_answered"] {
        let mut expected: Vec<(String, i64)> = orders.iter().map(|o| (format!("shipment-{o}"), 1)).collect();
        expected.sort();
        assert_eq!(fulfilment.shipment_events(event_type).await, expected, "one {event_type} per order");
    }
    let dispatched = fulfilment.get("/api/shipments?status=dispatched").await.1;
    assert_eq!(dispatched["shipments"].as_array().map(Vec::len), Some(orders.len()), "{dispatched}");
    drop(fulfilment);
    stack.stop().await;
}

/// The embedded shape: fulfilment's own SQLite files, the embedded shop's
/// event store tailed read-only, and the ship call back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_the_embedded_shop_a_paid_order_is_shipped() {
    let stack = Stack::embedded().await;
    let mut fulfilment = Fulfilment::start(&stack, &stack.shop.base).await;
    stack.register_product("SKU-1", 100).await;
    let (first, second) = (stack.confirmed_order("cart-1").await, stack.confirmed_order("cart-2").await);
    stack.pay(&first).await;
    let shipment = fulfilment.shipment_when(&first, |s| s["shop"].is_string()).await;
    assert_eq!(
        (shipment["status"].as_str(), shipment["shop"].as_str()),
        (Some("dispatched"), Some("shipped"))
    );
    stack.order_when(&first, "shipped").await;

    // Killed and started again, it resumes where it was: the next order ships too.
    fulfilment.kill();
    stack.pay(&second).await;
    let fulfilment = fulfilment.restart(&stack, &stack.shop.base).await;
    let shipment = fulfilment.shipment_when(&second, |s| s["shop"].is_string()).await;
    assert_eq!(
        (shipment["status"].as_str(), shipment["shop"].as_str()),
        (Some("dispatched"), Some("shipped"))
    );
    stack.order_when(&second, "shipped").await;
    let dispatched = fulfilment.get("/api/shipments?status=dispatched").await.1;
    assert_eq!(dispatched["shipments"].as_array().map(Vec::len), Some(2), "{dispatched}");
    drop(fulfilment);
    stack.stop().await;
}

/// A tenant's paid order ships in its tenant: fulfilment keeps the shipment
/// in the tenant's partition (its query API finds it with the tenant's
/// header only) and tells the shop the order's tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_paid_order_ships_in_its_tenant() {
    let stack = Stack::embedded().await;
    let fulfilment = Fulfilment::start(&stack, &stack.shop.base).await;
    let acme = Some("acme");
    let tape = json!({ "sku": "SKU-1", "name": "Tape", "price_cents": 250, "stock": 5 });
    assert_eq!(stack.post_as(acme, "/api/products", tape).await.0, 201);
    let item = json!({ "sku": "SKU-1", "quantity": 1 });
    assert_eq!(stack.post_as(acme, "/api/carts/c1/items", item).await.0, 200);
    let (status, checkout) =
        stack.post_as(acme, "/api/carts/c1/checkout", json!({ "customer_id": "zoe" })).await;
    assert_eq!(status, 202, "{checkout}");
    let order = checkout["order_id"].as_str().expect("an order id").to_owned();
    stack.order_of_when(acme, &order, "confirmed").await;
    assert_eq!(stack.post_as(acme, &format!("/api/orders/{order}/pay"), json!({})).await.0, 200);

    let shipment = fulfilment.shipment_of_when(acme, &order, |s| s["shop"].is_string()).await;
    assert_eq!(
        (shipment["status"].as_str(), shipment["shop"].as_str()),
        (Some("dispatched"), Some("shipped"))
    );
    stack.order_of_when(acme, &order, "shipped").await;
    // Not the default tenant's, nor another's.
    assert_eq!(fulfilment.get(&format!("/api/shipments/{order}")).await.0, 404);
    assert_eq!(fulfilment.get_as(Some("bolt"), &format!("/api/shipments/{order}")).await.0, 404);
    let dispatched = fulfilment.get_as(acme, "/api/shipments?status=dispatched").await.1;
    assert_eq!(dispatched["shipments"].as_array().map(Vec::len), Some(1), "{dispatched}");
    assert_eq!(fulfilment.get("/api/shipments?status=dispatched").await.1["shipments"], json!([]));
    drop(fulfilment);
    stack.stop().await;
}
