//! Schema evolution: history stored before `cart.item_added` went to version
//! 2 still rebuilds every view and hydrates every aggregate.
//!
//! `fixtures/v1-events.jsonl` is an event store's rows as the shop wrote
//! them while every event type was at version 1 (`cart.item_added` with
//! `unit_price_cents` and no currency): one row per line, in position order,
//! payloads as stored. It was recorded once from the shop's own commands
//! and saga: products registered, repriced, renamed and restocked; alice's
//! cart with an item added twice and one removed, checked out, confirmed,
//! paid and shipped; bob's rejected for lack of stock, its reservation
//! released; carol's confirmed and then cancelled; dave's still open. It is
//! history: never regenerate it with newer code.
//!
//! The tests load those rows into a fresh event store as they are, past
//! the codec, and read them back through the code of today: the projections
//! into a fresh read store, the command handlers into aggregates.
#![allow(clippy::too_many_lines, reason = "each test reads as one scenario, start to end")]

#[path = "common/values.rs"]
mod values;

use std::sync::Arc;

use parallax_core::{
    AppendOutcome, AppendRequest, ClusteringRange, DocKey, EventLog, EventStore, ExpectedVersion, Metadata,
    NewEvent, Position, ReadStore,
};
use parallax_runtime::{CommandContext, Executed, ProcessRunner, Projector};
use parallax_sqlite::{SqliteEventStore, SqliteReadStore};
use parallax_testing::memory::MemKeyStore;
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};
use shop::commands::{ShopCommandError, ShopCommands};
use shop::saga::CheckoutSaga;
use shop_domain::Refusal;
use shop_read::views;
use tempfile::TempDir;
use uuid::Uuid;
use values::{cart, customer, sku, units};

const FIXTURE: &str = include_str!("fixtures/v1-events.jsonl");

/// The orders of the fixture.
const ALICE_ORDER: &str = "01a2212e-eaa1-7621-9295-87ebbda7fab9";
const BOB_ORDER: &str = "01a2212e-eadf-74b4-b3d0-1ecd1708f6e5";
const CAROL_ORDER: &str = "01a2212e-eb03-71cd-9ea3-4622c28216ca";

/// One stored row of the fixture.
#[derive(Deserialize)]
struct StoredRow {
    position: Position,
    stream_id: String,
    stream_version: u64,
    event_id: Uuid,
    event_type: String,
    schema_version: u32,
    payload: Box<RawValue>,
    metadata: Metadata,
    recorded_at: chrono::DateTime<chrono::Utc>,
}

fn fixture() -> Vec<StoredRow> {
    FIXTURE
        .lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("fixture line {} does not parse: {e}", n + 1))
        })
        .collect()
}

/// A fresh event store holding the fixture's rows, stored as they are.
fn open_store(dir: &TempDir) -> (Arc<dyn EventStore>, Arc<dyn EventLog>) {
    let events = SqliteEventStore::open(&dir.path().join("events.db")).expect("open the event store");
    let log: Arc<dyn EventLog> = Arc::new(events.log());
    (Arc::new(events), log)
}

/// Appends every row with its own schema version and payload text: no codec
/// sees them on the way in. Returns the position of the last.
async fn load_v1_history(store: &dyn EventStore) -> Position {
    let mut last = 0;
    for row in fixture() {
        let request = AppendRequest {
            stream_id: row.stream_id.clone(),
            expected_version: ExpectedVersion::Exact(row.stream_version - 1),
            events: vec![NewEvent {
                event_id: row.event_id,
                event_type: row.event_type,
                schema_version: row.schema_version,
                payload: row.payload.get().to_owned(),
                metadata: row.metadata,
                recorded_at: row.recorded_at,
            }],
            idempotency: None,
            reads: Vec::new(),
        };
        match store.append(request).await.expect("append a stored row") {
            AppendOutcome::Appended { last_position, .. } => {
                assert_eq!(last_position, row.position, "{} v{}", row.stream_id, row.stream_version);
                last = last_position;
            }
            other => panic!("{} v{}: {other:?}", row.stream_id, row.stream_version),
        }
    }
    last
}

/// Brings every shop projection up to the end of the log in `store`.
async fn project(log: &Arc<dyn EventLog>, store: &Arc<dyn ReadStore>) {
    for projection in shop_read::all_projections() {
        Projector::new(projection, log.clone(), store.clone()).catch_up().await.expect("project");
    }
}

fn read_store(dir: &TempDir, name: &str) -> Arc<dyn ReadStore> {
    Arc::new(SqliteReadStore::open(&dir.path().join(name)).expect("open the read store"))
}

/// Every document of a view's partition, in clustering order.
async fn partition(store: &dyn ReadStore, view: &str, partition: &str) -> Vec<Value> {
    let mut documents = Vec::new();
    let mut range = ClusteringRange::default();
    loop {
        let page = store.scan(view, partition, &range, 100).await.expect("scan");
        documents.extend(page.documents.into_iter().map(|doc| doc.body));
        match page.next_cursor {
            Some(cursor) => range.after = Some(cursor),
            None => return documents,
        }
    }
}

async fn document(store: &dyn ReadStore, view: &str, key: &str) -> Value {
    store
        .get(view, &DocKey::partition(key))
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{view} has no document {key}"))
}

fn item(sku: &str, name: &str, unit_price_cents: i64, quantity: u32) -> Value {
    json!({
        "sku": sku, "name": name, "unit_price_cents": unit_price_cents, "currency": "EUR",
        "quantity": quantity, "line_total_cents": unit_price_cents * i64::from(quantity),
    })
}

fn line(sku: &str, name: &str, unit_price_cents: i64, quantity: u32) -> Value {
    json!({ "sku": sku, "name": name, "unit_price_cents": unit_price_cents, "quantity": quantity })
}

#[test]
fn the_fixture_is_version_1_history() {
    let rows = fixture();
    assert_eq!(rows.len(), 45);
    for (n, row) in rows.iter().enumerate() {
        assert_eq!(row.position, n as u64 + 1, "rows are in position order, without gaps");
        assert_eq!(row.schema_version, 1, "row {}", row.position);
        if row.event_type == "cart.item_added" {
            let payload: Value = serde_json::from_str(row.payload.get()).expect("payload");
            assert!(payload.get("unit_price_cents").is_some(), "row {}: {payload}", row.position);
            assert!(payload.get("price_cents").is_none(), "row {}: {payload}", row.position);
            assert!(payload.get("currency").is_none(), "row {}: {payload}", row.position);
        }
    }
    let added = rows.iter().filter(|row| row.event_type == "cart.item_added").count();
    assert_eq!(added, 10);
}

#[tokio::test]
async fn version_1_history_rebuilds_every_view_with_version_2_values() {
    let dir = TempDir::new().expect("temp dir");
    let (events, log) = open_store(&dir);
    assert_eq!(load_v1_history(events.as_ref()).await, 45);
    let views = read_store(&dir, "views.db");
    project(&log, &views).await;
    let views = views.as_ref();

    // Every event applied: nothing went to a dead-letter table.
    for projection in shop_read::all_projections() {
        let dead = views.dead_letters(projection.name()).await.expect("dead letters");
        assert!(dead.is_empty(), "{}: {dead:?}", projection.name());
    }

    assert_eq!(
        partition(views, views::CATALOG.name(), "all").await,
        [
            json!({ "sku": "KB-1", "name": "Keyboard", "price_cents": 4499, "stock": 9, "version": 7 }),
            json!({ "sku": "MS-1", "name": "Mouse", "price_cents": 1500, "stock": 7, "version": 3 }),
            json!({ "sku": "PAD-1", "name": "Desk pad", "price_cents": 900, "stock": 1, "version": 3 }),
        ]
    );

    // The carts are built from v1 `cart.item_added` events: their items
    // carry the upcast price and currency.
    assert_eq!(
        document(views, "cart", "alice-1").await,
        json!({
            "cart_id": "alice-1", "status": "checked_out",
            "items": [item("KB-1", "Keyboard", 4999, 1), item("MS-1", "Mouse", 1500, 3)],
            "total_cents": 9499, "order_id": ALICE_ORDER, "version": 6,
        })
    );
    assert_eq!(
        document(views, "cart", "bob-1").await,
        json!({
            "cart_id": "bob-1", "status": "checked_out",
            "items": [item("KB-1", "Keyboard", 4499, 1), item("PAD-1", "Desk pad", 900, 2)],
            "total_cents": 6299, "order_id": BOB_ORDER, "version": 3,
        })
    );
    assert_eq!(
        document(views, "cart", "carol-1").await,
        json!({
            "cart_id": "carol-1", "status": "checked_out", "items": [item("KB-1", "Keyboard", 4499, 2)],
            "total_cents": 8998, "order_id": CAROL_ORDER, "version": 2,
        })
    );
    assert_eq!(
        document(views, "cart", "dave-1").await,
        json!({
            "cart_id": "dave-1", "status": "open",
            "items": [item("KB-1", "Keyboard", 4499, 1), item("MS-1", "Mouse", 1500, 2)],
            "total_cents": 7499, "version": 3,
        })
    );

    let alice = json!({
        "order_id": ALICE_ORDER, "customer_id": "alice", "cart_id": "alice-1", "status": "shipped",
        "lines": [line("KB-1", "Keyboard", 4999, 1), line("MS-1", "Mouse", 1500, 3)],
        "total_cents": 9499, "placed_at": "2026-11-28T08:04:12.577Z", "version": 8,
    });
    let bob = json!({
        "order_id": BOB_ORDER, "customer_id": "bob", "cart_id": "bob-1", "status": "rejected",
        "lines": [line("KB-1", "Keyboard", 4499, 1), line("PAD-1", "Desk pad", 900, 2)],
        "total_cents": 6299, "placed_at": "2026-11-28T08:04:12.639Z",
        "rejection_reason": "product PAD-1 has 1 units, order needs 2", "version": 5,
    });
    let carol = json!({
        "order_id": CAROL_ORDER, "customer_id": "carol", "cart_id": "carol-1", "status": "cancelled",
        "lines": [line("KB-1", "Keyboard", 4499, 2)],
        "total_cents": 8998, "placed_at": "2026-11-28T08:04:12.675Z", "version": 5,
    });
    for (customer, order_id, order) in
        [("alice", ALICE_ORDER, alice), ("bob", BOB_ORDER, bob), ("carol", CAROL_ORDER, carol)]
    {
        assert_eq!(document(views, "order", order_id).await, order);
        assert_eq!(partition(views, views::CUSTOMER_ORDERS.name(), customer).await, [order]);
    }

    // Carol's confirmed sale was taken back when she cancelled; bob's never happened.
    assert_eq!(
        partition(views, views::SALES.name(), "all").await,
        [
            json!({ "sku": "KB-1", "name": "Keyboard", "units": 1, "revenue_cents": 4999 }),
            json!({ "sku": "MS-1", "name": "Mouse", "units": 3, "revenue_cents": 4500 }),
        ]
    );
}

fn refusal(error: ShopCommandError) -> (Refusal, String) {
    match error {
        ShopCommandError::Refused { kind, message, .. } => (kind, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn command_handlers_hydrate_aggregates_from_version_1_events() {
    let dir = TempDir::new().expect("temp dir");
    let (events, log) = open_store(&dir);
    let end_of_history = load_v1_history(events.as_ref()).await;
    let commands = Arc::new(ShopCommands::new(events.clone(), Arc::new(MemKeyStore::new())));
    let dave = || CommandContext { actor: Some("dave".into()), ..CommandContext::new() };

    // The aggregates know what the v1 events say: dave's cart holds two
    // mice (from two v1 events) and no desk pad; alice's is checked out.
    let too_many = commands
        .add_item(&cart("dave-1"), &sku("MS-1"), units(999), &dave())
        .await
        .expect_err("over the limit");
    assert_eq!(
        refusal(too_many),
        (Refusal::RuleViolated, "a cart line holds at most 1000 units; MS-1 would have 1001".into())
    );
    let not_there =
        commands.remove_item(&cart("dave-1"), &sku("PAD-1"), &dave()).await.expect_err("not in the cart");
    assert_eq!(refusal(not_there), (Refusal::NotFound, "cart dave-1 has no item PAD-1".into()));
    let closed =
        commands.add_item(&cart("alice-1"), &sku("MS-1"), units(1), &dave()).await.expect_err("checked out");
    assert_eq!(
        refusal(closed),
        (Refusal::RuleViolated, format!("cart alice-1 is already checked out (order {ALICE_ORDER})"))
    );

    // A new item is written as version 2, after the three v1 events.
    let added =
        commands.add_item(&cart("dave-1"), &sku("PAD-1"), units(1), &dave()).await.expect("add an item");
    assert!(matches!(added, Executed::Appended { stream_version: 4, events: 1, .. }), "{added:?}");
    let stored = events.read_stream("cart-dave-1", 3).await.expect("read the cart");
    assert_eq!(
        (stored.len(), stored[0].event_type.as_str(), stored[0].schema_version),
        (1, "cart.item_added", 2)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&stored[0].payload).expect("payload"),
        json!({
            "cart_id": "dave-1", "sku": "PAD-1", "name": "Desk pad",
            "price_cents": 900, "currency": "EUR", "quantity": 1,
        })
    );

    // Checking out prices v1 and v2 lines alike; the saga takes it from there.
    let order_id = Uuid::now_v7();
    commands.check_out(&cart("dave-1"), &customer("dave"), None, order_id, &dave()).await.expect("check out");
    events.save_checkpoint(CheckoutSaga::NAME, end_of_history).await.expect("the saga has seen the history");
    let saga = ProcessRunner::new(Arc::new(CheckoutSaga::new(commands)), log.clone(), events.clone());
    while saga.process_batch().await.expect("saga batch") > 0 {}

    // Views kept up to date across the change, and views rebuilt from
    // position 0 over mixed v1 and v2 history, agree.
    let kept = read_store(&dir, "kept.db");
    project(&log, &kept).await;
    let rebuilt = read_store(&dir, "rebuilt.db");
    project(&log, &rebuilt).await;
    let order = document(kept.as_ref(), "order", &order_id.to_string()).await;
    for views in [kept.as_ref(), rebuilt.as_ref()] {
        assert_eq!(
            document(views, "cart", "dave-1").await,
            json!({
                "cart_id": "dave-1", "status": "checked_out",
                "items": [
                    item("KB-1", "Keyboard", 4499, 1),
                    item("MS-1", "Mouse", 1500, 2),
                    item("PAD-1", "Desk pad", 900, 1),
                ],
                "total_cents": 8399, "order_id": order_id, "version": 5,
            })
        );
        assert_eq!(document(views, "order", &order_id.to_string()).await, order);
        assert_eq!(
            partition(views, views::CUSTOMER_ORDERS.name(), "dave").await,
            std::slice::from_ref(&order)
        );
        assert_eq!(
            partition(views, views::SALES.name(), "all").await,
            [
                json!({ "sku": "KB-1", "name": "Keyboard", "units": 2, "revenue_cents": 9498 }),
                json!({ "sku": "MS-1", "name": "Mouse", "units": 5, "revenue_cents": 7500 }),
                json!({ "sku": "PAD-1", "name": "Desk pad", "units": 1, "revenue_cents": 900 }),
            ]
        );
        let stock: Vec<Value> = partition(views, views::CATALOG.name(), "all")
            .await
            .into_iter()
            .map(|p| p["stock"].clone())
            .collect();
        assert_eq!(stock, [json!(8), json!(5), json!(0)]);
    }
    assert_eq!(order["status"], "confirmed");
    assert_eq!(
        order["lines"],
        json!([
            line("KB-1", "Keyboard", 4499, 1),
            line("MS-1", "Mouse", 1500, 2),
            line("PAD-1", "Desk pad", 900, 1),
        ])
    );
    assert_eq!(order["total_cents"], 8399);
}
