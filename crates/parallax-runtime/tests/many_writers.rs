//! Two command handlers over one store, as two command processes (or a
//! command process and the saga) are: each has its own cache, and whatever
//! one writes, the other must decide on (ARCHITECTURE.md, "every writer
//! decides on the write DB's state"). Refusals, no-ops and lookups of another
//! aggregate never append, so no expected version finds a stale cache out for
//! them: these cases fail when a handler trusts its cache for them.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parallax_core::store::StoredIdempotency;
use parallax_core::{
    Aggregate, AppendError, AppendOutcome, AppendRequest, DomainEvent, EventRecord, EventStore, Position,
    Snapshot, StoreError,
};
use parallax_runtime::{CommandContext, CommandError, CommandHandler, Executed, Lookups};
use parallax_sqlite::SqliteEventStore;
use serde::{Deserialize, Serialize};

/// A price list entry: a no-op when set to the price it has.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Item {
    price: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum ItemEvent {
    #[serde(rename = "item.priced")]
    Priced { price: i64 },
}

impl DomainEvent for ItemEvent {
    fn event_type(&self) -> &'static str {
        "item.priced"
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never refused")]
struct Never;

impl Aggregate for Item {
    const STREAM_TYPE: &'static str = "item";
    type Command = i64;
    type Event = ItemEvent;
    type Error = Never;

    fn handle(&self, price: &i64) -> Result<Vec<ItemEvent>, Never> {
        Ok(if self.price == Some(*price) { vec![] } else { vec![ItemEvent::Priced { price: *price }] })
    }

    fn apply(&mut self, ItemEvent::Priced { price }: &ItemEvent) {
        self.price = Some(*price);
    }
}

/// A basket of priced lines; closing an empty one is refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Basket {
    lines: Vec<i64>,
    closed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum BasketEvent {
    #[serde(rename = "basket.added")]
    Added { price: i64 },
    #[serde(rename = "basket.closed")]
    Closed,
}

impl DomainEvent for BasketEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Added { .. } => "basket.added",
            Self::Closed => "basket.closed",
        }
    }
}

#[derive(Debug, Clone)]
enum BasketCommand {
    /// Add a line at the item's price (`None`: the item has none).
    Add {
        price: Option<i64>,
    },
    Close,
}

#[derive(Debug, thiserror::Error, PartialEq)]
enum BasketRefusal {
    #[error("the item has no price")]
    Unpriced,
    #[error("the basket is empty")]
    Empty,
}

impl Aggregate for Basket {
    const STREAM_TYPE: &'static str = "basket";
    type Command = BasketCommand;
    type Event = BasketEvent;
    type Error = BasketRefusal;

    fn handle(&self, command: &BasketCommand) -> Result<Vec<BasketEvent>, BasketRefusal> {
        match command {
            BasketCommand::Add { price: None } => Err(BasketRefusal::Unpriced),
            BasketCommand::Add { price: Some(price) } => Ok(vec![BasketEvent::Added { price: *price }]),
            BasketCommand::Close if self.lines.is_empty() => Err(BasketRefusal::Empty),
            BasketCommand::Close if self.closed => Ok(vec![]),
            BasketCommand::Close => Ok(vec![BasketEvent::Closed]),
        }
    }

    fn apply(&mut self, event: &BasketEvent) {
        match event {
            BasketEvent::Added { price } => self.lines.push(*price),
            BasketEvent::Closed => self.closed = true,
        }
    }
}

fn sqlite() -> (tempfile::TempDir, Arc<dyn EventStore>) {
    let dir = tempfile::tempdir().expect("temp folder");
    let store = SqliteEventStore::open(&dir.path().join("events.db")).expect("open");
    (dir, Arc::new(store))
}

/// One "process": its own handlers, its own caches.
struct Writer {
    items: CommandHandler<Item>,
    baskets: CommandHandler<Basket>,
}

impl Writer {
    fn new(store: Arc<dyn EventStore>) -> Self {
        Self { items: CommandHandler::new(store.clone()), baskets: CommandHandler::new(store) }
    }

    async fn price(&self, item: &str, price: i64) -> Executed {
        self.items.execute(item, &price, &CommandContext::new()).await.expect("price")
    }

    /// Adds `item` to `basket` at the price the item has, looked up.
    async fn add(&self, basket: &str, item: &str) -> Result<Executed, CommandError<BasketRefusal>> {
        self.baskets
            .execute_with(basket, &CommandContext::new(), |_, lookups: Lookups| async move {
                let item = self.items.lookup(item, &lookups).await?;
                Ok(BasketCommand::Add { price: item.state.price })
            })
            .await
    }

    async fn close(&self, basket: &str) -> Result<Executed, CommandError<BasketRefusal>> {
        self.baskets.execute(basket, &BasketCommand::Close, &CommandContext::new()).await
    }
}

#[tokio::test]
async fn a_refusal_is_decided_on_the_store_not_on_a_stale_cache() {
    let (_dir, store) = sqlite();
    let (a, b) = (Writer::new(store.clone()), Writer::new(store.clone()));
    a.price("pen", 150).await;
    let refused = b.close("basket-1").await;
    assert!(matches!(refused, Err(CommandError::Domain(BasketRefusal::Empty))), "{refused:?}");
    // B has cached the empty basket; A fills it.
    a.add("basket-1", "pen").await.expect("A adds");
    let closed = b.close("basket-1").await.expect("B sees A's line, so the basket is not empty");
    assert!(matches!(closed, Executed::Appended { stream_version: 2, .. }), "{closed:?}");
}

#[tokio::test]
async fn a_no_op_is_decided_on_the_store_not_on_a_stale_cache() {
    let (_dir, store) = sqlite();
    let (a, b) = (Writer::new(store.clone()), Writer::new(store.clone()));
    a.price("pen", 150).await;
    // B caches the price 150: setting it again changes nothing.
    assert!(matches!(b.price("pen", 150).await, Executed::Unchanged { stream_version: 1, .. }));
    a.price("pen", 200).await;
    // The store says 200: B's 150 is a change, not a no-op.
    let again = b.price("pen", 150).await;
    assert!(matches!(again, Executed::Appended { stream_version: 3, .. }), "{again:?}");
    assert_eq!(a.items.load("pen").await.expect("load").state.price, Some(150));

    // The other way: B's cache says "closed" is new, the store says done.
    a.add("basket-1", "pen").await.expect("add");
    b.close("basket-1").await.expect("B closes");
    a.close("basket-1").await.expect("A: already closed, nothing to do");
    let unchanged = b.close("basket-1").await.expect("no-op");
    assert!(matches!(unchanged, Executed::Unchanged { stream_version: 2, .. }), "{unchanged:?}");
}

#[tokio::test]
async fn a_lookup_of_another_aggregate_sees_the_store() {
    let (_dir, store) = sqlite();
    let (a, b) = (Writer::new(store.clone()), Writer::new(store.clone()));
    // B looks the pen up before it has a price: refused, and the empty item cached.
    let refused = b.add("basket-1", "pen").await;
    assert!(matches!(refused, Err(CommandError::Domain(BasketRefusal::Unpriced))), "{refused:?}");
    a.price("pen", 150).await;
    b.add("basket-1", "pen").await.expect("B finds the price A set");
    // B now caches the pen at 150; A reprices it.
    a.price("pen", 200).await;
    b.add("basket-2", "pen").await.expect("add");
    let basket = a.baskets.load("basket-2").await.expect("load");
    assert_eq!(basket.state.lines, [200], "B priced the line with a price that no longer exists");
    assert_eq!(b.items.load("pen").await.expect("load").state.price, Some(200));
}

/// Reprices the pen through another writer right before the first append
/// that reaches it: between the lookup and the append.
struct RepriceBeforeAppend {
    inner: Arc<dyn EventStore>,
    other: Arc<dyn EventStore>,
    fired: AtomicBool,
    /// Reprice before every append to a basket, not just the first.
    always: bool,
    /// The next price set.
    price: AtomicI64,
}

#[async_trait]
impl EventStore for RepriceBeforeAppend {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        if request.stream_id.starts_with("basket-")
            && (!self.fired.swap(true, Ordering::SeqCst) || self.always)
        {
            Writer::new(self.other.clone()).price("pen", self.price.fetch_add(1, Ordering::SeqCst)).await;
        }
        self.inner.append(request).await
    }
    async fn read_stream(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.read_stream(stream_id, after_version).await
    }
    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.read_all(after, limit).await
    }
    async fn head(&self) -> Result<Position, StoreError> {
        self.inner.head().await
    }
    async fn idempotency(&self, key: &str) -> Result<Option<StoredIdempotency>, StoreError> {
        self.inner.idempotency(key).await
    }
    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(stream_id).await
    }
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn checkpoint(&self, consumer: &str) -> Result<Position, StoreError> {
        self.inner.checkpoint(consumer).await
    }
    async fn save_checkpoint(&self, consumer: &str, position: Position) -> Result<(), StoreError> {
        self.inner.save_checkpoint(consumer, position).await
    }
    async fn park(&self, letter: parallax_core::DeadLetter) -> Result<(), StoreError> {
        self.inner.park(letter).await
    }
    async fn parked(&self, consumer: &str) -> Result<Vec<parallax_core::DeadLetter>, StoreError> {
        self.inner.parked(consumer).await
    }
}

#[tokio::test]
async fn a_lookup_that_moves_before_the_append_makes_the_append_conflict_and_the_decision_retry() {
    let (_dir, store) = sqlite();
    let a = Writer::new(store.clone());
    a.price("pen", 150).await;
    let racing = Arc::new(RepriceBeforeAppend {
        inner: store.clone(),
        other: store.clone(),
        fired: true.into(),
        always: false,
        price: 300.into(),
    });
    let b = Writer::new(racing.clone());
    b.add("basket-0", "pen").await.expect("B adds, and caches the pen at 150");
    racing.fired.store(false, Ordering::SeqCst);
    b.add("basket-1", "pen").await.expect("B adds, once the conflict made it look the pen up again");
    assert!(racing.fired.load(Ordering::SeqCst));
    let basket = a.baskets.load("basket-1").await.expect("load");
    assert_eq!(
        basket.state.lines,
        [300],
        "the line was priced at 150, a price replaced before it was recorded"
    );
}

/// The pen is repriced before every append to a basket (as a product's stock
/// moves under the saga's reservations): a retry looks it up afresh and does
/// not pin it, so the decision lands instead of conflicting until the retry
/// policy gives up.
#[tokio::test]
async fn a_lookup_stream_that_keeps_moving_cannot_starve_the_decision() {
    let (_dir, store) = sqlite();
    Writer::new(store.clone()).price("pen", 150).await;
    let racing = Arc::new(RepriceBeforeAppend {
        inner: store.clone(),
        other: store.clone(),
        fired: false.into(),
        always: true,
        price: 300.into(),
    });
    let b = Writer::new(racing.clone());
    b.items.load("pen").await.expect("B caches the pen");
    for n in 0..5 {
        b.add(&format!("basket-{n}"), "pen").await.expect("B adds though the pen moves every time");
    }
}
