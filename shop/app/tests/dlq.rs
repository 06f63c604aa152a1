//! `shop dlq list` and `shop dlq retry` against a running embedded shop: an
//! event the carts projection cannot decode, written straight into the
//! event store, is attempted, dead-lettered, listed, counted in `/metrics`,
//! and refused precisely by a retry while the code still cannot apply it;
//! the other carts go on.

#![allow(clippy::too_many_lines, reason = "each test reads as one scenario, start to end")]

mod common;

use std::path::Path;
use std::process::Output;

use common::binary::{add_then_read_cart, post, shop_command, start};
use parallax_core::{AppendOutcome, AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent};
use parallax_sqlite::SqliteEventStore;
use reqwest::Client;
use serde_json::{json, Value};
use uuid::Uuid;

fn shop(args: &[&str], data_dir: &Path) -> Output {
    shop_command(args).arg("--data-dir").arg(data_dir).output().expect("run the shop binary")
}

#[track_caller]
fn succeeded(args: &[&str], output: Output) -> String {
    assert!(output.status.success(), "shop {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `shop dlq list --json`.
fn listed(data_dir: &Path) -> Vec<Value> {
    let args = ["dlq", "list", "--json"];
    let out = succeeded(&args, shop(&args, data_dir));
    serde_json::from_str::<Value>(&out).expect("JSON").as_array().expect("a list").clone()
}

/// Runs `shop dlq retry <id>`, which must fail; its stderr.
#[track_caller]
fn refused_retry(id: &str, data_dir: &Path) -> String {
    let output = shop(&["dlq", "retry", id], data_dir);
    assert!(!output.status.success(), "retry {id} succeeded: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The value of the sample `series` (name and labels) in `/metrics`.
async fn sample(client: &Client, base: &str, series: &str) -> Option<f64> {
    let text =
        client.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    let prefix = format!("{series} ");
    text.lines().find_map(|line| line.strip_prefix(&prefix)).map(|value| value.parse().expect("a number"))
}

/// The value of `parallax_projection_dead_letters{projection="<projection>"}`.
async fn dead_letter_gauge(client: &Client, base: &str, projection: &str) -> Option<f64> {
    sample(client, base, &format!("parallax_projection_dead_letters{{projection=\"{projection}\"}}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_event_is_dead_lettered_listed_counted_and_its_retry_refused() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let data = dir.path();
    let client = common::http_client();
    let running = start(data, &client).await;
    let base = &running.base;
    post(
        &client,
        format!("{base}/api/products"),
        json!({"sku": "P", "name": "Pen", "price_cents": 100, "stock": 50}),
    )
    .await;
    post(&client, format!("{base}/api/carts/c1/items"), json!({"sku": "P", "quantity": 2})).await;
    assert_eq!(listed(data), Vec::<Value>::new(), "no dead letter yet");
    assert_eq!(succeeded(&["dlq", "list"], shop(&["dlq", "list"], data)), "no dead letters\n");

    // An item added without its quantity, name or price: no code decodes it.
    let poison = NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "cart.item_added".into(),
        schema_version: 1,
        payload: r#"{"cart_id":"cart-c0","sku":"P"}"#.into(),
        metadata: Metadata::default(),
        recorded_at: chrono::Utc::now(),
    };
    let events = SqliteEventStore::open(&data.join("events.db")).expect("open the shop's event store");
    let appended = events
        .append(AppendRequest {
            stream_id: "cart-c0".into(),
            expected_version: ExpectedVersion::Any,
            events: vec![poison.clone()],
            idempotency: None,
            reads: Vec::new(),
        })
        .await
        .expect("append the undecodable event");
    drop(events);
    let AppendOutcome::Appended { last_position: position, .. } = appended else { panic!("{appended:?}") };

    // Another cart, after it, is projected: the carts projection went on.
    let cart = add_then_read_cart(&client, base, "c2", "P", 3).await;
    assert_eq!(cart["items"][0]["quantity"], 3, "{cart}");

    // Listed, once its attempts ran out, under its id.
    let id = format!("carts@{position}");
    let letters = listed(data);
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["id"], id.as_str());
    assert_eq!(letter["projection"], "carts");
    assert_eq!(letter["position"], position);
    assert_eq!(letter["event_type"], "cart.item_added");
    assert_eq!(letter["event_id"], poison.event_id.to_string());
    let error = letter["error"].as_str().expect("an error");
    assert!(error.contains("cart.item_added"), "{error}");
    let table = succeeded(&["dlq", "list"], shop(&["dlq", "list"], data));
    assert!(table.lines().next().is_some_and(|head| head.starts_with("id")), "{table}");
    assert!(table.lines().any(|line| line.starts_with(&id) && line.contains(error)), "{table}");
    assert_eq!(dead_letter_gauge(&client, base, "carts").await, Some(1.0));
    assert_eq!(dead_letter_gauge(&client, base, "orders").await, Some(0.0));

    // The code still cannot decode it: the retry says so and changes nothing.
    let refused = refused_retry(&id, data);
    assert!(
        refused.contains(&format!(
            "carts still fails to apply the event at position {position} (cart.item_added)"
        )) && refused.contains("the dead letter stays")
            && refused.contains(error),
        "{refused}"
    );
    assert_eq!(listed(data), letters, "still listed");
    assert_eq!(dead_letter_gauge(&client, base, "carts").await, Some(1.0));
    let unknown = refused_retry(&format!("carts@{}", position + 1000), data);
    assert!(
        unknown.contains(&format!("carts has no dead letter at position {}", position + 1000)),
        "{unknown}"
    );
    let malformed = refused_retry("carts", data);
    assert!(
        malformed.contains("\"carts\" is not a dead letter id") && malformed.contains("`orders@1234`"),
        "{malformed}"
    );
    let stranger = refused_retry("wishlists@3", data);
    assert!(stranger.contains("no projection \"wishlists\"") && stranger.contains("carts"), "{stranger}");

    // Rebuilt, the new generation dead-letters it too, under the same id.
    let args = ["rebuild", "carts"];
    let rebuilt = succeeded(&args, shop(&args, data));
    assert!(rebuilt.starts_with("carts: generation 2 serves"), "{rebuilt}");
    let letters = listed(data);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        (letters[0]["id"].as_str(), letters[0]["projection"].as_str()),
        (Some(id.as_str()), Some("carts"))
    );
    let refused = refused_retry(&id, data);
    assert!(refused.contains("carts still fails"), "{refused}");
    assert_eq!(listed(data).len(), 1);
}

/// The value of `parallax_process_dead_letters{manager="checkout_saga"}`.
async fn parked_gauge(client: &Client, base: &str) -> Option<f64> {
    sample(client, base, "parallax_process_dead_letters{manager=\"checkout_saga\"}").await
}

/// Before parking, the saga logged such an event and skipped it: the order
/// it was for stayed pending with no trace but a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_command_refused_for_good_is_parked_listed_with_its_order_and_counted() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let data = dir.path();
    let client = common::http_client();
    let running = start(data, &client).await;
    let base = &running.base;
    post(
        &client,
        format!("{base}/api/products"),
        json!({"sku": "P", "name": "Pen", "price_cents": 100, "stock": 50}),
    )
    .await;
    assert_eq!(parked_gauge(&client, base).await, Some(0.0));

    // A reservation for an order that does not exist: the saga records it
    // on the order, and the order refuses, for good.
    let order = Uuid::new_v4();
    let reserved = NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "product.stock_reserved".into(),
        schema_version: 1,
        payload: json!({"sku": "P", "order_id": order, "quantity": 1, "stock": 49}).to_string(),
        metadata: Metadata::default(),
        recorded_at: chrono::Utc::now(),
    };
    let events = SqliteEventStore::open(&data.join("events.db")).expect("open the shop's event store");
    let appended = events
        .append(AppendRequest::new("product-P", ExpectedVersion::Any, vec![reserved.clone()]))
        .await
        .expect("append the reservation");
    drop(events);
    let AppendOutcome::Appended { last_position: position, .. } = appended else { panic!("{appended:?}") };

    let id = format!("checkout_saga@{position}");
    let started = std::time::Instant::now();
    let letters = loop {
        let letters = listed(data);
        if !letters.is_empty() || started.elapsed() > std::time::Duration::from_secs(30) {
            break letters;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["id"], id.as_str());
    assert_eq!(letter["projection"], "checkout_saga");
    assert_eq!(letter["event_type"], "product.stock_reserved");
    assert_eq!(letter["event_id"], reserved.event_id.to_string());
    let error = letter["error"].as_str().expect("an error");
    assert!(error.starts_with(&format!("order {order}: ")), "{error}");
    assert_eq!(parked_gauge(&client, base).await, Some(1.0));
    let refused = refused_retry(&id, data);
    assert!(refused.contains("an event the checkout saga parked"), "{refused}");

    // The saga went on: a real checkout still confirms.
    post(&client, format!("{base}/api/carts/c9/items"), json!({"sku": "P", "quantity": 1})).await;
    let order = post(&client, format!("{base}/api/carts/c9/checkout"), json!({"customer_id": "u9"})).await;
    let order_id = order["order_id"].as_str().expect("an order id").to_owned();
    let started = std::time::Instant::now();
    loop {
        let answer = client.get(format!("{base}/api/orders/{order_id}")).send().await.expect("order");
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        if body["status"] == "confirmed" {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the order stayed {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
