//! The HTTP black-box suite: the shop through its API only, whatever its shape.
//!
//! Each case is a function of a running shop; `tests/api.rs` runs every case on
//! the embedded shop, `tests/distributed.rs` on the distributed one (one OS
//! process per role, behind a method-routing proxy). [`for_each_case`] lists
//! the cases once, so neither shape can miss one.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{Answer, TestApp};

/// Expands `$test!(case)` for every case of the suite.
#[allow(unused_macros)] // test binaries that do not run the suite
macro_rules! for_each_case {
    ($test:ident) => {
        $test!(checkout_story_from_catalog_to_shipped_order);
        $test!(an_order_lacking_stock_is_rejected_and_its_reservations_released);
        $test!(cancelling_a_confirmed_order_releases_stock_and_takes_back_the_sale);
        $test!(every_token_makes_the_next_query_see_its_write);
        $test!(a_token_the_view_has_not_reached_answers_503_after_the_wait);
        $test!(an_idempotency_key_repeats_the_first_answer_and_appends_nothing);
        $test!(bad_input_is_refused_precisely_and_appends_nothing);
        $test!(customer_orders_page_newest_first_with_a_cursor);
        $test!(admin_lists_projections_with_their_lag);
        $test!(a_price_changed_through_one_writer_prices_the_next_line_on_the_other);
        $test!(an_order_the_saga_confirmed_is_paid_through_the_writer_that_saw_it_unconfirmed);
        $test!(an_order_paid_too_early_is_paid_once_confirmed);
        $test!(two_tenants_with_the_same_ids_never_see_or_change_each_others);
    };
}
#[allow(unused_imports)]
pub(crate) use for_each_case;

pub async fn checkout_story_from_catalog_to_shipped_order(app: &TestApp) {
    let keyboard = app.register("KB-1", "Keyboard", 4_999, 10).await;
    let mouse = app.register("MS-1", "Mouse", 1_500, 5).await;

    // Each token covers its own write's partition: the listing needs both.
    app.get_after("/api/products", &keyboard.token()).await;
    let catalog = app.get_after("/api/products", &mouse.token()).await;
    assert_eq!(catalog.status, StatusCode::OK);
    let skus: Vec<&str> = catalog.body["products"]
        .as_array()
        .expect("products")
        .iter()
        .map(|p| p["sku"].as_str().expect("sku"))
        .collect();
    assert_eq!(skus, ["KB-1", "MS-1"]);

    app.add("cart-1", "KB-1", 1).await;
    app.add("cart-1", "MS-1", 1).await;
    let added = app.add("cart-1", "MS-1", 2).await;
    let cart = app.get_after("/api/carts/cart-1", &added.token()).await;
    assert_eq!(cart.status, StatusCode::OK);
    assert_eq!(cart.body["status"], "open");
    assert_eq!(cart.body["items"][1]["quantity"], 3);
    assert_eq!(cart.body["items"][1]["currency"], "EUR", "cart.item_added v2 names the currency");
    assert_eq!(cart.body["total_cents"], 4_999 + 3 * 1_500);

    let checkout = app.check_out("cart-1", "alice").await;
    let order_id = checkout.body["order_id"].as_str().expect("order id").to_owned();
    // The token makes the order visible at once, though the saga is still at work.
    let order = app.get_after(&format!("/api/orders/{order_id}"), &checkout.token()).await;
    assert_eq!(order.status, StatusCode::OK, "{}", order.body);
    assert_eq!(order.body["customer_id"], "alice");
    assert_eq!(order.body["total_cents"], 4_999 + 3 * 1_500);

    let order = app.order_status(&order_id, "confirmed").await;
    assert_eq!(
        order["lines"][0],
        json!({ "sku": "KB-1", "name": "Keyboard", "unit_price_cents": 4_999, "quantity": 1 })
    );
    // The catalog is another projection: it absorbs the saga's reservations in its own time.
    let stock = app.eventually("/api/products/MS-1", |p| p["stock"] != 5).await;
    assert_eq!(stock["stock"], 2, "reserved units leave the available stock");

    let paid = app.post(&format!("/api/orders/{order_id}/pay"), json!({})).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    let shipped = app.post(&format!("/api/orders/{order_id}/ship"), json!({})).await;
    assert_eq!(shipped.status, StatusCode::OK, "{}", shipped.body);
    let order = app.get_after(&format!("/api/orders/{order_id}"), &shipped.token()).await;
    assert_eq!(order.body["status"], "shipped");
    // Shipped again: refused with a code programs can match.
    app.post(&format!("/api/orders/{order_id}/ship"), json!({}))
        .await
        .assert_refusal(422, "order-already-shipped");

    let orders = app.get_after("/api/customers/alice/orders", &shipped.token()).await;
    assert_eq!(orders.body["orders"].as_array().expect("orders").len(), 1);
    assert_eq!(orders.body["orders"][0]["status"], "shipped");
    assert_eq!(orders.body["orders"][0]["lines"][1]["name"], "Mouse");

    let sales = app.get_after("/api/reports/sales", &shipped.token()).await;
    assert_eq!(
        sales.body["sales"],
        json!([
            { "sku": "KB-1", "name": "Keyboard", "units": 1, "revenue_cents": 4_999 },
            { "sku": "MS-1", "name": "Mouse", "units": 3, "revenue_cents": 4_500 },
        ])
    );
    let cart = app.get_after("/api/carts/cart-1", &checkout.token()).await;
    assert_eq!(cart.body["status"], "checked_out");
    assert_eq!(cart.body["order_id"], order_id.as_str());
}

pub async fn an_order_lacking_stock_is_rejected_and_its_reservations_released(app: &TestApp) {
    app.register("A", "Apple", 100, 10).await;
    let banana = app.register("B", "Banana", 50, 1).await;
    app.add("c", "A", 4).await;
    app.add("c", "B", 2).await;
    let order_id = app.check_out("c", "bob").await.body["order_id"].as_str().expect("order id").to_owned();

    let order = app.order_status(&order_id, "rejected").await;
    assert!(order["rejection_reason"].as_str().expect("a reason").contains('B'), "{order}");
    let apple = app.eventually("/api/products/A", |p| p["stock"] == 10).await;
    assert_eq!(apple["stock"], 10, "the first line's reservation was released");
    // B's registration may be in another partition than A's: wait for it.
    assert_eq!(app.get_after("/api/products/B", &banana.token()).await.body["stock"], 1);

    let pay = app.post(&format!("/api/orders/{order_id}/pay"), json!({})).await;
    pay.assert_refusal(422, "order-rejected");
    let sales = app.get("/api/reports/sales").await;
    assert_eq!(sales.body["sales"], json!([]));
}

pub async fn cancelling_a_confirmed_order_releases_stock_and_takes_back_the_sale(app: &TestApp) {
    app.register("A", "Apple", 100, 10).await;
    app.add("c", "A", 3).await;
    let order_id = app.check_out("c", "carol").await.body["order_id"].as_str().expect("order id").to_owned();
    app.order_status(&order_id, "confirmed").await;
    app.eventually("/api/reports/sales", |s| s["sales"][0]["units"] == 3).await;

    let cancelled = app.post(&format!("/api/orders/{order_id}/cancel"), json!({})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    app.eventually("/api/products/A", |p| p["stock"] == 10).await;
    let sales = app.get_after("/api/reports/sales", &cancelled.token()).await;
    assert_eq!(sales.body["sales"][0]["units"], 0);
    assert_eq!(sales.body["sales"][0]["revenue_cents"], 0);
    app.post(&format!("/api/orders/{order_id}/ship"), json!({})).await.assert_refusal(422, "order-cancelled");
}

pub async fn every_token_makes_the_next_query_see_its_write(app: &TestApp) {
    app.register("P", "Pen", 100, 1).await;
    for price in 101..141 {
        let answer = app.post("/api/products/P/price", json!({ "price_cents": price })).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let product = app.get_after("/api/products/P", &answer.token()).await;
        assert_eq!(product.body["price_cents"], price);
    }
    for quantity in 1..21 {
        let answer = app.add("rw", "P", 1).await;
        let cart = app.get_after("/api/carts/rw", &answer.token()).await;
        assert_eq!(cart.body["items"][0]["quantity"], quantity);
    }
}

pub async fn a_token_the_view_has_not_reached_answers_503_after_the_wait(app: &TestApp) {
    app.register("P", "Pen", 100, 1).await;
    let answer = app.get("/api/products/P?consistent_with=p2.0.999999&wait_ms=50").await;
    answer.assert_problem(503);
    assert!(answer.body["detail"].as_str().expect("detail").contains("999999"), "{}", answer.body);
    app.get("/api/products?consistent_with=banana").await.assert_problem(400);
    app.get("/api/products?consistent_with=p2.0.1&wait_ms=10001").await.assert_problem(400);
    app.get("/api/products?wait_ms=-1").await.assert_problem(400);
}

pub async fn an_idempotency_key_repeats_the_first_answer_and_appends_nothing(app: &TestApp) {
    app.register("P", "Pen", 100, 5).await;
    let body = json!({ "sku": "P", "quantity": 2 });
    let first = app.send(Method::POST, "/api/carts/k/items", Some(body.clone()), Some("key-1")).await;
    assert_eq!(first.status, StatusCode::OK);
    let head = app.head().await;
    let again = app.send(Method::POST, "/api/carts/k/items", Some(body.clone()), Some("key-1")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, first.body, "same answer, same token");
    assert_eq!(app.head().await, head, "nothing appended");
    let cart = app.get_after("/api/carts/k", &again.token()).await;
    assert_eq!(cart.body["items"][0]["quantity"], 2);

    let other = app
        .send(Method::POST, "/api/carts/k/items", Some(json!({ "sku": "P", "quantity": 3 })), Some("key-1"))
        .await;
    other.assert_problem(422);
    assert_eq!(app.head().await, head);

    // A checkout repeated concurrently makes one order.
    let repeats = (0..8).map(|_| {
        app.send(
            Method::POST,
            "/api/carts/k/checkout",
            Some(json!({ "customer_id": "dan" })),
            Some("checkout-k"),
        )
    });
    let answers = futures::future::join_all(repeats).await;
    let order_ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
            a.body["order_id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(order_ids.len(), 1, "every repeat answers the first order: {order_ids:?}");
    let order_id = order_ids.into_iter().next().expect("one order");
    app.order_status(&order_id, "confirmed").await;
    let orders = app.get("/api/customers/dan/orders").await;
    assert_eq!(orders.body["orders"].as_array().expect("orders").len(), 1);
}

pub async fn bad_input_is_refused_precisely_and_appends_nothing(app: &TestApp) {
    app.register("P", "Pen", 100, 5).await;
    let full = app.add("full", "P", 1).await;
    app.add("empty", "P", 1).await;
    let removed = app.send(Method::DELETE, "/api/carts/empty/items/P", None, None).await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    let head = app.head().await;

    let cases: Vec<(Method, &str, Option<Value>, u16)> = vec![
        (Method::POST, "/api/products", Some(json!({ "sku": "Q", "name": "Q" })), 400),
        (
            Method::POST,
            "/api/products",
            Some(json!({ "sku": "Q", "name": "Q", "price_cents": "ten", "stock": 1 })),
            400,
        ),
        (
            Method::POST,
            "/api/products",
            Some(json!({ "sku": "bad sku!", "name": "Q", "price_cents": 1, "stock": 1 })),
            400,
        ),
        (
            Method::POST,
            "/api/products",
            Some(json!({ "sku": "Q", "name": "", "price_cents": 1, "stock": 1 })),
            400,
        ),
        (
            Method::POST,
            "/api/products",
            Some(json!({ "sku": "Q", "name": "Q", "price_cents": 1, "stock": -1 })),
            422,
        ),
        (
            Method::POST,
            "/api/products",
            Some(json!({ "sku": "P", "name": "Pen", "price_cents": 1, "stock": 1 })),
            409,
        ),
        (Method::POST, "/api/products/P/restock", Some(json!({ "quantity": -3 })), 422),
        (Method::POST, "/api/products/NOPE/restock", Some(json!({ "quantity": 3 })), 404),
        (Method::POST, "/api/products/NOPE/price", Some(json!({ "price_cents": 3 })), 404),
        (Method::POST, "/api/carts/c/items", Some(json!({ "sku": "NOPE", "quantity": 1 })), 404),
        (Method::POST, "/api/carts/c/items", Some(json!({ "sku": "P", "quantity": 0 })), 400),
        (Method::POST, "/api/carts/c/items", Some(json!({ "sku": "P" })), 400),
        (Method::DELETE, "/api/carts/nobody/items/P", None, 404),
        (Method::DELETE, "/api/carts/full/items/NOPE", None, 404),
        (Method::POST, "/api/carts/nobody/checkout", Some(json!({ "customer_id": "x" })), 404),
        (Method::POST, "/api/carts/empty/checkout", Some(json!({ "customer_id": "x" })), 422),
        (Method::POST, "/api/carts/full/checkout", Some(json!({})), 400),
        (Method::POST, "/api/carts/full/checkout", Some(json!({ "customer_id": "no spaces" })), 400),
        (Method::POST, "/api/orders/00000000-0000-0000-0000-000000000000/pay", None, 404),
        (Method::POST, "/api/orders/not-a-uuid/ship", None, 400),
        (Method::GET, "/api/orders/00000000-0000-0000-0000-000000000000", None, 404),
        (Method::GET, "/api/carts/nobody", None, 404),
        (Method::GET, "/api/products/NOPE", None, 404),
        (Method::GET, "/api/customers/alice/orders?limit=0", None, 400),
        (Method::GET, "/api/nowhere", None, 404),
    ];
    for (method, path, body, status) in cases {
        let answer = app.send(method.clone(), path, body.clone(), None).await;
        assert_eq!(answer.status.as_u16(), status, "{method} {path} {body:?}: {}", answer.body);
        answer.assert_problem(status);
    }
    let malformed = app.post_raw("/api/products", "{\"sku\": ").await;
    malformed.assert_problem(400);
    let huge =
        format!("{{\"sku\":\"Q\",\"name\":\"{}\",\"price_cents\":1,\"stock\":1}}", "x".repeat(70 * 1024));
    app.post_raw("/api/products", huge).await.assert_problem(413);

    assert_eq!(app.head().await, head, "refused commands appended nothing");
    let cart = app.get_after("/api/carts/full", &full.token()).await;
    assert_eq!(cart.body["items"][0]["quantity"], 1);
}

pub async fn customer_orders_page_newest_first_with_a_cursor(app: &TestApp) {
    app.register("P", "Pen", 100, 100).await;
    let mut placed = Vec::new();
    for n in 0..5 {
        let cart = format!("cart-{n}");
        app.add(&cart, "P", n + 1).await;
        placed.push(app.check_out(&cart, "erin").await);
    }
    // A token covers its own write's partition: wait for every order, not just the last.
    for checkout in &placed {
        app.get_after("/api/customers/erin/orders?limit=1", &checkout.token()).await;
    }
    let last = placed.last().expect("five orders").token();
    let mut seen = Vec::new();
    let mut path = "/api/customers/erin/orders?limit=2".to_owned();
    loop {
        let page = app.get_after(&path, &last).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for order in page.body["orders"].as_array().expect("orders") {
            seen.push(order["order_id"].as_str().expect("id").to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/customers/erin/orders?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let newest_first: Vec<String> =
        placed.iter().rev().map(|a| a.body["order_id"].as_str().expect("id").to_owned()).collect();
    assert_eq!(seen, newest_first);
}

pub async fn admin_lists_projections_with_their_lag(app: &TestApp) {
    let registered = app.register("P", "Pen", 100, 1).await;
    app.get_after("/api/products/P", &registered.token()).await;
    let answer = app.get("/api/admin/projections").await;
    assert_eq!(answer.status, StatusCode::OK);
    let rows = answer.body["projections"].as_array().expect("projections");
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["catalog", "carts", "orders", "sales"]);
    let catalog = &rows[0];
    assert_eq!(catalog["lag"], 0, "{catalog}");
    assert_eq!(app.get("/health").await.body["status"], "ok");
}

/// Two command processes (writers 0 and 1): the product writer 1 looked up
/// to price a line is repriced through writer 0; writer 1's next line and
/// checkout use the new price.
pub async fn a_price_changed_through_one_writer_prices_the_next_line_on_the_other(app: &TestApp) {
    let (a, b) = (app.writer(0), app.writer(1));
    a.register("MW-1", "Widget", 1_000, 10).await;
    b.add("mw-cart-1", "MW-1", 1).await;
    let repriced = a.post("/api/products/MW-1/price", json!({ "price_cents": 2_000 })).await;
    assert_eq!(repriced.status, StatusCode::OK, "{}", repriced.body);
    let added = b.add("mw-cart-2", "MW-1", 1).await;
    let cart = app.get_after("/api/carts/mw-cart-2", &added.token()).await;
    assert_eq!(cart.body["items"][0]["unit_price_cents"], 2_000, "priced at a price that no longer exists");
    assert_eq!(cart.body["total_cents"], 2_000);

    let repriced = a.post("/api/products/MW-1/price", json!({ "price_cents": 2_500 })).await;
    assert_eq!(repriced.status, StatusCode::OK, "{}", repriced.body);
    let checkout = b.check_out("mw-cart-2", "mallory").await;
    let order_id = checkout.body["order_id"].as_str().expect("order id");
    let order = app.get_after(&format!("/api/orders/{order_id}"), &checkout.token()).await;
    assert_eq!(order.body["total_cents"], 2_500, "{}", order.body);
}

/// Writer 1 sees the order before the saga (its own process) has placed or
/// confirmed it; once the query side shows it confirmed, writer 1 pays it,
/// writer 0 ships it, and writer 1 cannot cancel what was shipped.
pub async fn an_order_the_saga_confirmed_is_paid_through_the_writer_that_saw_it_unconfirmed(app: &TestApp) {
    let (a, b) = (app.writer(0), app.writer(1));
    a.register("MW-2", "Widget", 700, 10).await;
    a.add("mw-cart-3", "MW-2", 2).await;
    let order_id = a.check_out("mw-cart-3", "oscar").await.body["order_id"].as_str().expect("id").to_owned();
    let pay = format!("/api/orders/{order_id}/pay");
    // Right away the saga has not placed (404) or confirmed (422) it yet,
    // unless it was very quick (200): either way, both writers now cache it.
    let mut paid_early = false;
    for writer in [&a, &b] {
        let early = writer.post(&pay, json!({})).await;
        assert!([200, 404, 422].contains(&early.status.as_u16()), "{}", early.body);
        paid_early |= early.status == StatusCode::OK;
    }
    app.order_status(&order_id, if paid_early { "paid" } else { "confirmed" }).await;
    if !paid_early {
        let paid = b.post(&pay, json!({})).await;
        assert_eq!(paid.status, StatusCode::OK, "a confirmed order refused: {}", paid.body);
    }
    let shipped = a.post(&format!("/api/orders/{order_id}/ship"), json!({})).await;
    assert_eq!(shipped.status, StatusCode::OK, "{}", shipped.body);
    b.post(&format!("/api/orders/{order_id}/cancel"), json!({}))
        .await
        .assert_refusal(422, "order-already-shipped");
    let order = app.get_after(&format!("/api/orders/{order_id}"), &shipped.token()).await;
    assert_eq!(order.body["status"], "shipped", "{}", order.body);
}

/// One writer, the saga in another process: a payment refused before the
/// confirmation does not make the order unpayable after it.
pub async fn an_order_paid_too_early_is_paid_once_confirmed(app: &TestApp) {
    let a = app.writer(0);
    a.register("MW-3", "Widget", 300, 10).await;
    a.add("mw-cart-4", "MW-3", 1).await;
    let order_id = a.check_out("mw-cart-4", "peggy").await.body["order_id"].as_str().expect("id").to_owned();
    let pay = format!("/api/orders/{order_id}/pay");
    let early = a.post(&pay, json!({})).await;
    if early.status != StatusCode::OK {
        assert!([404, 422].contains(&early.status.as_u16()), "{}", early.body);
        app.order_status(&order_id, "confirmed").await;
        let paid = a.post(&pay, json!({})).await;
        assert_eq!(paid.status, StatusCode::OK, "refused again after the confirmation: {}", paid.body);
    }
    app.order_status(&order_id, "paid").await;
}

/// Two tenants (and the default one) with the same SKU, cart id, customer
/// id and idempotency key: each sees and changes its own alone.
pub async fn two_tenants_with_the_same_ids_never_see_or_change_each_others(app: &TestApp) {
    let (acme, bolt) = (app.as_tenant("acme"), app.as_tenant("bolt"));
    acme.register("T-1", "Acme tea", 100, 10).await;
    bolt.register("T-1", "Bolt tea", 300, 1).await;
    // The same idempotency key in both tenants: two different requests.
    let add = |tenant: &TestApp, quantity: i64| {
        let body = json!({ "sku": "T-1", "quantity": quantity });
        let tenant = tenant.detached();
        async move { tenant.send(Method::POST, "/api/carts/c1/items", Some(body), Some("same-key")).await }
    };
    let (acme_added, bolt_added) = (add(&acme, 2).await, add(&bolt, 1).await);
    assert_eq!(
        (acme_added.status, bolt_added.status),
        (StatusCode::OK, StatusCode::OK),
        "{}",
        bolt_added.body
    );
    assert!(acme_added.token().ends_with(".acme"), "a tenant's token names it: {}", acme_added.token());
    let acme_cart = acme.get_after("/api/carts/c1", &acme_added.token()).await.body;
    let bolt_cart = bolt.get_after("/api/carts/c1", &bolt_added.token()).await.body;
    assert_eq!(
        (&acme_cart["items"][0]["name"], &acme_cart["total_cents"]),
        (&json!("Acme tea"), &json!(200))
    );
    assert_eq!(
        (&bolt_cart["items"][0]["name"], &bolt_cart["total_cents"]),
        (&json!("Bolt tea"), &json!(300))
    );
    // Another tenant's token names no write of this tenant's: not waited for.
    bolt.get_after("/api/carts/c1", &acme_added.token()).await.assert_problem(404);
    app.get_after("/api/carts/c1", &acme_added.token()).await.assert_problem(404);
    // The default tenant has none of it.
    app.get("/api/products/T-1").await.assert_problem(404);
    app.get("/api/carts/c1").await.assert_problem(404);

    let order = |answer: Answer| answer.body["order_id"].as_str().expect("order id").to_owned();
    let acme_order = order(acme.check_out("c1", "cust").await);
    let bolt_order = order(bolt.check_out("c1", "cust").await);
    acme.order_status(&acme_order, "confirmed").await;
    bolt.order_status(&bolt_order, "confirmed").await;
    // Crossed reads and writes: another tenant's order does not exist.
    for (tenant, foreign) in [(&bolt, &acme_order), (&acme, &bolt_order), (app, &acme_order)] {
        tenant.get(&format!("/api/orders/{foreign}")).await.assert_problem(404);
        tenant
            .post(&format!("/api/orders/{foreign}/pay"), json!({}))
            .await
            .assert_refusal(404, "order-not-found");
    }
    let paid = acme.post(&format!("/api/orders/{acme_order}/pay"), json!({})).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    assert_eq!(bolt.get(&format!("/api/orders/{bolt_order}")).await.body["status"], "confirmed");

    for (tenant, order_id, name, units, revenue, stock) in
        [(&acme, &acme_order, "Acme tea", 2, 200, 8), (&bolt, &bolt_order, "Bolt tea", 1, 300, 0)]
    {
        let has_one = |o: &Value| o["orders"].as_array().is_some_and(|o| !o.is_empty());
        let orders = tenant.eventually("/api/customers/cust/orders", has_one).await;
        let ids: Vec<&Value> =
            orders["orders"].as_array().expect("orders").iter().map(|o| &o["order_id"]).collect();
        assert_eq!(ids, [&json!(order_id)], "one order per tenant");
        let sales = tenant.eventually("/api/reports/sales", |s| s["sales"][0]["units"] == units).await;
        let expected = json!([{ "sku": "T-1", "name": name, "units": units, "revenue_cents": revenue }]);
        assert_eq!(sales["sales"], expected);
        tenant.eventually("/api/products/T-1", |p| p["stock"] == stock).await;
    }
    assert_eq!(app.get("/api/customers/cust/orders").await.body["orders"], json!([]));
    assert_eq!(app.get("/api/reports/sales").await.body["sales"], json!([]));
    assert_eq!(app.get("/api/products").await.body["products"], json!([]));
}
