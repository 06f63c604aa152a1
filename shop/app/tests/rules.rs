//! The published OpenAPI document states every rule the server enforces, and
//! the server refuses exactly what the document forbids: the rules come from
//! the domain's values (`shop_domain::values`), and the document is built
//! from the same consts. `scripts/schemathesis` fuzzes the whole API against
//! the document; these are the cases it found, kept.

mod common;

use common::{spawn_app, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shop_domain::{ID_PATTERN, MAX_ID_LEN};

/// The schema of `name` among `operation`'s parameters, its `$ref` resolved.
fn parameter<'a>(spec: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    let parameters = spec["paths"][path][method]["parameters"].as_array();
    let found = parameters.into_iter().flatten().find(|p| p["name"] == name);
    let schema = &found.unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))["schema"];
    resolve(spec, schema)
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => &spec["components"]["schemas"][reference.rsplit('/').next().unwrap_or_default()],
        None => schema,
    }
}

fn has_parameter(spec: &Value, path: &str, method: &str, name: &str) -> bool {
    spec["paths"][path][method]["parameters"].as_array().into_iter().flatten().any(|p| p["name"] == name)
}

async fn spec(app: &TestApp) -> Value {
    app.get("/openapi.json").await.body
}

async fn send_with_key(app: &TestApp, path: &str, key: &str, body: Value) -> StatusCode {
    let response = app
        .client
        .post(format!("{}{path}", app.base))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("send");
    response.status()
}

#[tokio::test]
async fn ids_are_stated_once_with_their_rule_everywhere() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let id = |schema: &Value| {
        assert_eq!(schema["pattern"], ID_PATTERN, "{schema}");
        assert_eq!(schema["minLength"], 1, "{schema}");
        assert_eq!(schema["maxLength"], MAX_ID_LEN, "{schema}");
    };
    for (path, method, name) in [
        ("/api/products/{sku}", "get", "sku"),
        ("/api/products/{sku}/price", "post", "sku"),
        ("/api/products/{sku}/restock", "post", "sku"),
        ("/api/carts/{cart_id}", "get", "cart_id"),
        ("/api/carts/{cart_id}/items", "post", "cart_id"),
        ("/api/carts/{cart_id}/items/{sku}", "delete", "cart_id"),
        ("/api/carts/{cart_id}/items/{sku}", "delete", "sku"),
        ("/api/carts/{cart_id}/checkout", "post", "cart_id"),
        ("/api/customers/{customer_id}/orders", "get", "customer_id"),
    ] {
        id(parameter(&spec, path, method, name));
    }
    let schemas = &spec["components"]["schemas"];
    id(&schemas["RegisterProduct"]["properties"]["sku"]);
    id(&schemas["AddItem"]["properties"]["sku"]);
    id(&schemas["CheckOut"]["properties"]["customer_id"]);
    for path in ["/api/orders/{order_id}/pay", "/api/orders/{order_id}/ship", "/api/orders/{order_id}/cancel"]
    {
        assert_eq!(parameter(&spec, path, "post", "order_id")["format"], "uuid");
    }
    // The rule the document states is the one the server keeps.
    let long = "a".repeat(MAX_ID_LEN + 1);
    for bad in ["a%20b", "%C3%A9", long.as_str()] {
        let answer = app.get(&format!("/api/carts/{bad}")).await;
        answer.assert_problem(400);
    }
    app.get(&format!("/api/carts/{}", "a".repeat(MAX_ID_LEN))).await.assert_problem(404);
}

#[tokio::test]
async fn an_integer_may_be_written_as_an_integral_float() {
    let app = spawn_app().await;
    let registered = app
        .post("/api/products", json!({ "sku": "MUG", "name": "Mug", "price_cents": 278.0, "stock": 5e0 }))
        .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
    let product = app.get_after("/api/products/MUG", &registered.token()).await.body;
    assert_eq!((product["price_cents"].clone(), product["stock"].clone()), (json!(278), json!(5)));
    let added = app.post("/api/carts/c/items", json!({ "sku": "MUG", "quantity": 2.0 })).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    let head = app.head().await;
    // A fraction, or a float too large to be exact, is still refused, and changes nothing.
    for body in [
        json!({ "price_cents": 278.5 }),
        json!({ "price_cents": 9_007_199_254_740_994.0 }),
        json!({ "price_cents": 9_223_372_036_854_775_808_u64 }),
    ] {
        app.post("/api/products/MUG/price", body).await.assert_problem(400);
    }
    app.post("/api/carts/c/items", json!({ "sku": "MUG", "quantity": 1.5 })).await.assert_problem(400);
    assert_eq!(app.head().await, head);
}

#[tokio::test]
async fn consistency_tokens_are_stated_and_parsed_alike() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    // The embedded log has one partition: the document names only it.
    let token = parameter(&spec, "/api/products", "get", "consistent_with");
    assert_eq!(token["pattern"], "^p2\\.(0)\\.(0|[1-9][0-9]{0,17})(\\.[a-z0-9][a-z0-9_]{0,39})?$");
    let registered = app.register("P", "Pen", 100, 1).await;
    let issued = registered.token();
    assert!(issued.starts_with("p2.0."), "{issued}");
    let answer = app.get(&format!("/api/products/P?consistent_with={issued}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // A tenant's token matches the pattern; the default tenant's query
    // finds no such write (404), it does not refuse its form.
    app.get(&format!("/api/products/P?consistent_with={issued}.acme")).await.assert_problem(404);
    // What the pattern refuses, the server refuses.
    for bad in [
        "",
        "p2.",
        "p2.00.1",
        "p2.0.01",
        "p2.+0.1",
        "p2.1.1",
        "p2.0.1234567890123456789",
        "p2.0.1.",
        "p2.0.1.Acme",
    ] {
        let answer = app.get(&format!("/api/products/P?consistent_with={bad}")).await;
        answer.assert_problem(400);
    }
}

#[tokio::test]
async fn query_parameters_are_integers_and_cursors_as_documented() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let wait = parameter(&spec, "/api/products", "get", "wait_ms");
    assert_eq!(
        (wait["type"].clone(), wait["minimum"].clone(), wait["maximum"].clone()),
        (json!("integer"), json!(0), json!(10000))
    );
    let limit = parameter(&spec, "/api/products", "get", "limit");
    assert_eq!(
        (limit["minimum"].clone(), limit["maximum"].clone()),
        (json!(1), json!(shop_read::queries::MAX_LIMIT))
    );
    assert_eq!(parameter(&spec, "/api/products", "get", "cursor")["maxLength"], 512);
    // A single item has no page: its query does not offer one.
    for (path, method) in
        [("/api/products/{sku}", "get"), ("/api/carts/{cart_id}", "get"), ("/api/orders/{order_id}", "get")]
    {
        assert!(!has_parameter(&spec, path, method, "limit"), "{path}");
        assert!(!has_parameter(&spec, path, method, "cursor"), "{path}");
    }
    for bad in
        ["wait_ms=-1", "wait_ms=10001", "wait_ms=1.5", "wait_ms=true", "limit=0", "limit=x", "cursor=%00"]
    {
        app.get(&format!("/api/products?{bad}")).await.assert_problem(400);
    }
    // The cursor's limit counts characters, as maxLength does.
    let answer = app.get(&format!("/api/products?cursor={}", "%C3%A9".repeat(300))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    app.get(&format!("/api/products?cursor={}", "a".repeat(513))).await.assert_problem(400);
}

#[tokio::test]
async fn the_idempotency_key_header_states_its_rule() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let key = parameter(&spec, "/api/products", "post", "Idempotency-Key");
    assert_eq!(key["pattern"], "^[!-~]{1,255}$");
    assert_eq!(key["maxLength"], 255);
    let body = json!({ "sku": "K", "name": "Key", "price_cents": 1, "stock": 1 });
    assert_eq!(send_with_key(&app, "/api/products", "a b", body.clone()).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        send_with_key(&app, "/api/products", &"k".repeat(256), body.clone()).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(send_with_key(&app, "/api/products", "!~", body).await, StatusCode::CREATED);
}

#[tokio::test]
async fn the_event_stream_takes_positions_of_the_stores_range() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let after = parameter(&spec, "/api/events/stream", "get", "after");
    assert_eq!((after["minimum"].clone(), after["maximum"].clone()), (json!(0), json!(i64::MAX)));
    for bad in ["9223372036854775808", "-1", "x"] {
        app.get(&format!("/api/events/stream?after={bad}")).await.assert_problem(400);
    }
    let response = app
        .client
        .get(format!("{}/api/events/stream?after={}", app.base, i64::MAX))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn commands_declare_their_business_refusals() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let commands = [
        ("/api/products", "post"),
        ("/api/products/{sku}/price", "post"),
        ("/api/products/{sku}/restock", "post"),
        ("/api/carts/{cart_id}/items", "post"),
        ("/api/carts/{cart_id}/items/{sku}", "delete"),
        ("/api/carts/{cart_id}/checkout", "post"),
        ("/api/orders/{order_id}/pay", "post"),
        ("/api/orders/{order_id}/ship", "post"),
        ("/api/orders/{order_id}/cancel", "post"),
    ];
    for (path, method) in commands {
        let responses = &spec["paths"][path][method]["responses"];
        for status in ["400", "409", "413", "422", "503"] {
            assert!(responses[status].is_object(), "{method} {path} does not declare {status}");
        }
        assert_eq!(responses["404"].is_object(), path != "/api/products", "{method} {path}: 404");
    }
    // A restock past the most a product holds depends on the stock: a rule (422), not bad input.
    app.register("FULL", "Full", 1, i64::from(u32::MAX) - 1).await;
    let answer = app.post("/api/products/FULL/restock", json!({ "quantity": 2 })).await;
    answer.assert_problem(422);
    // A quantity above what a line holds is outside the documented range: bad input.
    app.register("P", "Pen", 1, 1).await;
    app.post("/api/carts/c/items", json!({ "sku": "P", "quantity": 1001 })).await.assert_problem(400);
}

#[tokio::test]
async fn command_answers_are_typed_and_keep_their_shape() {
    let app = spawn_app().await;
    let registered = app.register("P", "Pen", 100, 5).await;
    assert_eq!(keys(&registered.body), ["sku", "token"]);
    assert_eq!(registered.body["sku"], "P");
    let added = app.add("c", "P", 1).await;
    assert_eq!(keys(&added.body), ["cart_id", "token"]);
    let first = app
        .send(Method::POST, "/api/carts/c/checkout", Some(json!({ "customer_id": "ann" })), Some("once"))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(keys(&first.body), ["cart_id", "order_id", "token"]);
    // A repeat reads the stored answer back into the same type.
    let again = app
        .send(Method::POST, "/api/carts/c/checkout", Some(json!({ "customer_id": "ann" })), Some("once"))
        .await;
    assert_eq!(again.body, first.body);
    let order = first.body["order_id"].as_str().expect("an order id").to_owned();
    app.order_status(&order, "confirmed").await;
    let paid = app.send(Method::POST, &format!("/api/orders/{order}/pay"), None, None).await;
    assert_eq!(keys(&paid.body), ["order_id", "token"]);
    assert_eq!(paid.body["order_id"], json!(order));
}

fn keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body.as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}
