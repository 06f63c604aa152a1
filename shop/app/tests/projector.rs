//! The projector ring: views equal the fold of the event store, whatever
//! stops, crashes or concurrent projectors happen on the way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parallax_core::{
    ClusteringRange, DocKey, EventLog, EventStore, Projection, ReadStore, ReadStoreError, ReadStoreLayer,
    ViewBatch,
};
use parallax_runtime::{CommandContext, ProcessRunner, Projector};
use parallax_sqlite::{SqliteEventStore, SqliteReadStore};
use parallax_testing::memory::MemKeyStore;
use serde_json::Value;
use shop::commands::ShopCommands;
use shop::saga::CheckoutSaga;
use shop_domain::{CartId, CustomerId, ProductCommand, Quantity, Sku};
use tempfile::TempDir;
use uuid::Uuid;

const CARTS: usize = 60;

/// An event store full of shop history: products, carts, checkouts, and the
/// saga's reactions, confirmed and rejected orders among them.
async fn history(dir: &TempDir) -> (Arc<dyn EventStore>, Arc<dyn EventLog>) {
    let events = SqliteEventStore::open(&dir.path().join("events.db")).expect("open the event store");
    let log: Arc<dyn EventLog> = Arc::new(events.log());
    let store: Arc<dyn EventStore> = Arc::new(events);
    let commands = Arc::new(ShopCommands::new(store.clone(), Arc::new(MemKeyStore::new())));
    let ctx = CommandContext::new;
    for (sku, stock) in [("A", 1_000), ("B", 40), ("C", 5)] {
        let register = ProductCommand::Register {
            sku: Sku::parse(sku).expect("a SKU"),
            name: format!("Product {sku}"),
            price_cents: 250,
            stock,
        };
        commands.product(sku, register, &ctx()).await.expect("register");
    }
    for n in 0..CARTS {
        let cart = CartId::parse(format!("cart-{n}")).expect("a cart id");
        for (sku, quantity) in [("A", 1 + n as i64 % 3), ("B", 1), ("C", n as i64 % 2)] {
            if quantity > 0 {
                let (sku, quantity) =
                    (Sku::parse(sku).expect("a SKU"), Quantity::parse(quantity).expect("units"));
                commands.add_item(&cart, &sku, quantity, &ctx()).await.expect("add item");
            }
        }
        if n % 2 == 0 {
            let customer = CustomerId::parse(format!("customer-{}", n % 7)).expect("a customer id");
            commands.check_out(&cart, &customer, None, Uuid::now_v7(), &ctx()).await.expect("check out");
        }
    }
    let saga = ProcessRunner::new(Arc::new(CheckoutSaga::new(commands)), log.clone(), store.clone());
    while saga.process_batch().await.expect("saga batch") > 0 {}
    (store, log)
}

/// Every document of every shop view, in key order.
async fn dump(store: &dyn ReadStore) -> Vec<(String, String, String, Value)> {
    let mut partitions: Vec<(&str, String)> = vec![("catalog", "all".into()), ("sales", "all".into())];
    for n in 0..CARTS {
        partitions.push(("cart", format!("cart-{n}")));
    }
    for n in 0..7 {
        partitions.push(("customer_orders", format!("customer-{n}")));
    }
    let mut documents = Vec::new();
    for (view, partition) in partitions {
        let mut range = ClusteringRange::default();
        loop {
            let page = store.scan(view, &partition, &range, 7).await.expect("scan");
            for doc in page.documents {
                if view == "customer_orders" {
                    let order_id = doc.body["order_id"].as_str().expect("order id").to_owned();
                    let by_id = store.get("order", &DocKey::partition(&order_id)).await.expect("get");
                    assert_eq!(
                        by_id.as_ref(),
                        Some(&doc.body),
                        "order {order_id} differs between its two views"
                    );
                }
                documents.push((view.to_owned(), doc.key.partition, doc.key.clustering, doc.body));
            }
            match page.next_cursor {
                Some(cursor) => range.after = Some(cursor),
                None => break,
            }
        }
    }
    assert!(documents.len() > CARTS, "the history should fill the views");
    documents
}

/// The views rebuilt from position 0 in one go: the fold of the event store.
async fn rebuild(dir: &TempDir, log: &Arc<dyn EventLog>) -> Arc<dyn ReadStore> {
    let store: Arc<dyn ReadStore> =
        Arc::new(SqliteReadStore::open(&dir.path().join("rebuild.db")).expect("open the read store"));
    for projection in shop_read::all_projections() {
        Projector::new(projection, log.clone(), store.clone())
            .with_batch_size(100_000)
            .catch_up()
            .await
            .expect("rebuild");
    }
    store
}

/// A read store whose commits fail on demand: a crash between computing a
/// batch and committing it.
struct Crashing {
    inner: Arc<dyn ReadStore>,
    commits: AtomicUsize,
    fail_every: usize,
}

#[async_trait]
impl ReadStoreLayer for Crashing {
    fn inner(&self) -> &dyn ReadStore {
        self.inner.as_ref()
    }

    async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError> {
        if self.commits.fetch_add(1, Ordering::SeqCst) % self.fail_every == self.fail_every - 1 {
            return Err(ReadStoreError::msg("killed before commit"));
        }
        self.inner.commit(batch).await
    }
}

#[tokio::test]
async fn the_crashing_store_forwards_every_method() {
    let recorder = Arc::new(parallax_testing::forwarding::Recorder::default());
    let store = Crashing { inner: recorder.clone(), commits: AtomicUsize::new(0), fail_every: 1000 };
    parallax_testing::forwarding::assert_forwards(&store, &recorder, &[]).await;
}

#[tokio::test]
async fn stopped_and_crashing_projectors_end_equal_to_the_fold() {
    let dir = tempfile::tempdir().expect("temp folder");
    let (_store, log) = history(&dir).await;
    let views: Arc<dyn ReadStore> =
        Arc::new(SqliteReadStore::open(&dir.path().join("views.db")).expect("open"));
    let crashing: Arc<dyn ReadStore> =
        Arc::new(Crashing { inner: views.clone(), commits: AtomicUsize::new(0), fail_every: 3 });

    for projection in shop_read::all_projections() {
        // A first projector runs a few small batches and stops mid-stream.
        let first = Projector::new(projection.clone(), log.clone(), crashing.clone()).with_batch_size(7);
        for _ in 0..5 {
            let _ = first.project_batch().await;
        }
        let stopped_at = views.checkpoint(projection.name(), 0).await.expect("checkpoint").position;
        assert!(
            stopped_at > 0 && stopped_at < log.head().await.expect("head"),
            "{} stopped mid-stream at {stopped_at}",
            projection.name()
        );
        drop(first);
        // A second one takes over; every third commit still crashes.
        let second = Projector::new(projection.clone(), log.clone(), crashing.clone()).with_batch_size(11);
        // Crashed commits (errors) are simply retried.
        while !matches!(second.project_batch().await, Ok(0)) {}
    }
    let fold = rebuild(&dir, &log).await;
    assert_eq!(dump(views.as_ref()).await, dump(fold.as_ref()).await);
}

#[tokio::test]
async fn two_projectors_of_one_projection_never_apply_an_event_twice() {
    let dir = tempfile::tempdir().expect("temp folder");
    let (_store, log) = history(&dir).await;
    let views: Arc<dyn ReadStore> =
        Arc::new(SqliteReadStore::open(&dir.path().join("views.db")).expect("open"));
    let mut racers = Vec::new();
    for projection in shop_read::all_projections() {
        for batch_size in [5, 9] {
            let projector =
                Projector::new(projection.clone(), log.clone(), views.clone()).with_batch_size(batch_size);
            racers.push(tokio::spawn(async move {
                loop {
                    match projector.project_batch().await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(parallax_runtime::ProjectorError::ReadStore(
                            ReadStoreError::CheckpointMoved { .. },
                        )) => {}
                        Err(e) => panic!("projector failed: {e}"),
                    }
                }
            }));
        }
    }
    for racer in racers {
        racer.await.expect("projector task");
    }
    let fold = rebuild(&dir, &log).await;
    assert_eq!(dump(views.as_ref()).await, dump(fold.as_ref()).await);
    let projections: Vec<Arc<dyn Projection>> = shop_read::all_projections();
    for projection in projections {
        assert_eq!(
            views.checkpoint(projection.name(), 0).await.expect("checkpoint").position,
            log.head().await.expect("head")
        );
    }
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_and_the_projection_goes_on() {
    let dir = tempfile::tempdir().expect("temp folder");
    let (store, log) = history(&dir).await;
    let poison = parallax_core::NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "cart.item_added".into(),
        schema_version: 1,
        payload: r#"{"cart_id":"cart-0","sku":"A"}"#.into(),
        metadata: parallax_core::Metadata::default(),
        recorded_at: chrono::Utc::now(),
    };
    let appended = store
        .append(parallax_core::AppendRequest {
            stream_id: "cart-0".into(),
            expected_version: parallax_core::ExpectedVersion::Any,
            events: vec![poison.clone()],
            idempotency: None,
            reads: Vec::new(),
        })
        .await
        .expect("append the poison event");
    let parallax_core::AppendOutcome::Appended { last_position, .. } = appended else {
        panic!("{appended:?}")
    };
    // A healthy event after the poison one.
    let commands = ShopCommands::new(store.clone(), Arc::new(MemKeyStore::new()));
    let (cart, sku) = (CartId::parse("cart-1").expect("a cart id"), Sku::parse("A").expect("a SKU"));
    let one = Quantity::parse(1).expect("one unit");
    commands.add_item(&cart, &sku, one, &CommandContext::new()).await.expect("add after the poison");

    let views: Arc<dyn ReadStore> =
        Arc::new(SqliteReadStore::open(&dir.path().join("views.db")).expect("open"));
    for projection in shop_read::all_projections() {
        Projector::new(projection, log.clone(), views.clone())
            .with_batch_size(50)
            .catch_up()
            .await
            .expect("catch up");
    }
    let dead = views.dead_letters("carts").await.expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].position, dead[0].event_id), (last_position, poison.event_id));
    assert!(dead[0].error.contains("cart.item_added"), "{}", dead[0].error);
    for other in ["catalog", "orders", "sales"] {
        assert!(
            views.dead_letters(other).await.expect("dead letters").is_empty(),
            "{other} is not concerned"
        );
    }
    assert_eq!(
        views.checkpoint("carts", 0).await.expect("checkpoint").position,
        log.head().await.expect("head")
    );
    // The projection went on, and the poison event left no trace in cart-0.
    let fold_without_poison = {
        let cart_1: Value =
            views.get("cart", &DocKey::partition("cart-1")).await.expect("get").expect("cart-1");
        cart_1["items"][0]["quantity"].as_u64()
    };
    assert_eq!(fold_without_poison, Some(3), "cart-1 had 2 units of A, plus the one added after the poison");
    let cart_0: Value = views.get("cart", &DocKey::partition("cart-0")).await.expect("get").expect("cart-0");
    assert_eq!(cart_0["items"][0]["quantity"], 1);
}
