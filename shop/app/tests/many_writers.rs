//! Two `ShopCommands` over one event store, as two command processes are:
//! each decides with its own caches, on what the other wrote.

#[path = "common/values.rs"]
mod values;

use std::sync::Arc;

use parallax_core::EventStore;
use parallax_runtime::{CommandContext, Executed};
use parallax_sqlite::SqliteEventStore;
use parallax_testing::memory::MemKeyStore;
use serde_json::Value;
use shop::commands::ShopCommands;
use shop_domain::{ProductCommand, Sku};
use uuid::Uuid;
use values::{cart, customer, sku, units};

fn store() -> (tempfile::TempDir, Arc<dyn EventStore>) {
    let dir = tempfile::tempdir().expect("temp folder");
    let store = SqliteEventStore::open(&dir.path().join("events.db")).expect("open");
    (dir, Arc::new(store))
}

async fn register(commands: &ShopCommands, sku: &str, price_cents: i64) {
    let command = ProductCommand::Register {
        sku: Sku::parse(sku).expect("a SKU"),
        name: format!("Product {sku}"),
        price_cents,
        stock: 100,
    };
    commands.product(sku, command, &CommandContext::new()).await.expect("register");
}

/// The payload of a stream's last event.
async fn last_payload(store: &dyn EventStore, stream: &str) -> (String, Value) {
    let events = store.read_stream(stream, 0).await.expect("read");
    let last = events.last().expect("an event");
    (last.event_type.clone(), serde_json::from_str(&last.payload).expect("JSON"))
}

/// Writer B checks out a cart whose cached state lacks the line writer A
/// just added: the append conflicts, and the retry must price the cart as
/// it now is, not with the prices of the first attempt (which lack A's SKU,
/// so the retry refused it as a product that "no longer exists").
#[tokio::test]
async fn a_checkout_retried_after_a_conflict_prices_the_cart_again() {
    let (_dir, store) = store();
    let (a, b) = (
        ShopCommands::new(store.clone(), Arc::new(MemKeyStore::new())),
        ShopCommands::new(store.clone(), Arc::new(MemKeyStore::new())),
    );
    register(&a, "X", 100).await;
    register(&a, "Y", 250).await;
    b.add_item(&cart("c1"), &sku("X"), units(1), &CommandContext::new()).await.expect("B adds X");
    a.add_item(&cart("c1"), &sku("Y"), units(2), &CommandContext::new()).await.expect("A adds Y");

    let checkout =
        b.check_out(&cart("c1"), &customer("trent"), None, Uuid::now_v7(), &CommandContext::new()).await;
    assert!(matches!(checkout, Ok(Executed::Appended { .. })), "{checkout:?}");
    let (event_type, payload) = last_payload(&*store, "cart-c1").await;
    assert_eq!(event_type, "cart.checked_out");
    let lines = payload["lines"].as_array().unwrap_or_else(|| panic!("lines in {payload}"));
    let priced: Vec<(&str, i64)> = lines
        .iter()
        .map(|l| (l["sku"].as_str().expect("sku"), l["unit_price_cents"].as_i64().expect("price")))
        .collect();
    assert_eq!(priced, [("X", 100), ("Y", 250)], "{payload}");
}

/// The product writer B looked up is repriced through writer A: B prices
/// its next line at the new price.
#[tokio::test]
async fn a_line_is_priced_as_the_store_has_the_product_not_as_another_writer_cached_it() {
    let (_dir, store) = store();
    let (a, b) = (
        ShopCommands::new(store.clone(), Arc::new(MemKeyStore::new())),
        ShopCommands::new(store.clone(), Arc::new(MemKeyStore::new())),
    );
    register(&a, "MW-1", 1_000).await;
    b.add_item(&cart("c1"), &sku("MW-1"), units(1), &CommandContext::new()).await.expect("B adds");
    let reprice = ProductCommand::Reprice { price_cents: 2_000 };
    a.product("MW-1", reprice, &CommandContext::new()).await.expect("A reprices");
    b.add_item(&cart("c2"), &sku("MW-1"), units(1), &CommandContext::new()).await.expect("B adds again");
    let (_, payload) = last_payload(&*store, "cart-c2").await;
    assert_eq!(payload["price_cents"], 2_000, "{payload}");
}
