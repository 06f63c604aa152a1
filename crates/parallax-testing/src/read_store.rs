//! The [`ReadStore`] contract: one suite that every adapter runs against its
//! real backend.
//!
//! Each case is a public async function taking a *fresh, empty* store;
//! [`run_all`] runs every case against a new store from a factory:
//!
//! ```no_run
//! use std::sync::Arc;
//! use parallax_core::ReadStore;
//! use parallax_testing::read_store::run_all;
//!
//! /// The adapter under test, on a new, empty database.
//! async fn open_fresh() -> Arc<dyn ReadStore> {
//!     unimplemented!("open a new database")
//! }
//!
//! // In a `#[tokio::test(flavor = "multi_thread")]`:
//! # async fn read_store_contract() {
//! run_all(open_fresh).await;
//! # }
//! ```
//!
//! `parallax-sqlite`'s `tests/contract.rs` is a complete example.

use std::future::Future;
use std::sync::Arc;

use parallax_core::{
    Checkpoint, CheckpointMove, ClusteringRange, DeadLetter, DocKey, Page, Partition, Position, ReadGuard,
    ReadStore, ReadStoreError, ReadStoreExt, Stamp, ViewBatch, ViewSpec, ViewWrite,
};
use serde_json::{json, Value};
use tokio::sync::Barrier;
use uuid::Uuid;

/// The views the cases write. A store that declares its views up front
/// (Cassandra) declares these, with [`SHARED_VIEWS`] among them.
pub const VIEWS: [&str; 3] = ["items", "orders", "shared"];

/// The view whose documents the cases read-modify-write from several
/// writers at once (as projectors of two partitions update one sales row).
pub const SHARED_VIEWS: [&str; 1] = ["shared"];

/// Runs every case of the contract, each against a fresh store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ReadStore>>,
{
    let fresh = |case: &str| {
        eprintln!("read store contract: {case}");
        make()
    };
    absent_document_is_none(fresh("absent_document_is_none").await).await;
    documents_are_put_replaced_and_deleted(fresh("documents_are_put_replaced_and_deleted").await).await;
    scan_orders_by_clustering_key_bytes(fresh("scan_orders_by_clustering_key_bytes").await).await;
    scan_honours_bounds(fresh("scan_honours_bounds").await).await;
    paging_visits_every_document_once(fresh("paging_visits_every_document_once").await).await;
    json_text_reads_match_value_reads(fresh("json_text_reads_match_value_reads").await).await;
    views_and_partitions_are_isolated(fresh("views_and_partitions_are_isolated").await).await;
    partitions_are_listed_per_view(fresh("partitions_are_listed_per_view").await).await;
    commit_is_atomic_and_checked(fresh("commit_is_atomic_and_checked").await).await;
    concurrent_commits_from_one_checkpoint_apply_once(
        fresh("concurrent_commits_from_one_checkpoint_apply_once").await,
    )
    .await;
    checkpoints_are_per_partition(fresh("checkpoints_are_per_partition").await).await;
    read_guards_refuse_a_changed_document(fresh("read_guards_refuse_a_changed_document").await).await;
    concurrent_read_modify_writes_lose_nothing(fresh("concurrent_read_modify_writes_lose_nothing").await)
        .await;
    writes_apply_in_order(fresh("writes_apply_in_order").await).await;
    stamped_writes_never_go_back(fresh("stamped_writes_never_go_back").await).await;
    a_dropped_projection_leaves_nothing(fresh("a_dropped_projection_leaves_nothing").await).await;
    dead_letters_are_stored_and_listed(fresh("dead_letters_are_stored_and_listed").await).await;
    resolved_dead_letters_go_with_their_batch(fresh("resolved_dead_letters_go_with_their_batch").await).await;
}

// ---------------------------------------------------------------------------
// Builders

/// The projection name the cases write under when no projection matters.
const OWNER: &str = "contract-tests";

fn put(view: &str, partition: &str, clustering: &str, body: Value) -> ViewWrite {
    ViewWrite::put(view, DocKey::new(partition, clustering), body)
}

fn delete(view: &str, partition: &str, clustering: &str) -> ViewWrite {
    ViewWrite::delete(view, DocKey::new(partition, clustering))
}

/// Commits `writes` as one batch of [`OWNER`], moving its checkpoint by one.
async fn write(store: &dyn ReadStore, writes: Vec<ViewWrite>) {
    let at = position(store, OWNER).await;
    store.commit(batch(OWNER, at, at + 1, writes)).await.expect("commit a batch");
}

/// The checkpoint a batch ending at `position` leaves (the embedded log's
/// offsets are positions).
fn at(position: Position) -> Checkpoint {
    Checkpoint { position, offset: position + 1 }
}

/// Where `projection` is in partition 0.
async fn position(store: &dyn ReadStore, projection: &str) -> Position {
    store.checkpoint(projection, 0).await.expect("load a checkpoint").position
}

async fn get(store: &dyn ReadStore, view: &str, partition: &str, clustering: &str) -> Option<Value> {
    store.get(view, &DocKey::new(partition, clustering)).await.expect("get a document")
}

async fn scan(store: &dyn ReadStore, partition: &str, range: ClusteringRange, limit: usize) -> Page {
    store.scan("items", partition, &range, limit).await.expect("scan a partition")
}

fn keys(page: &Page) -> Vec<&str> {
    page.documents.iter().map(|d| d.key.clustering.as_str()).collect()
}

fn range(from: Option<&str>, to: Option<&str>, after: Option<&str>) -> ClusteringRange {
    ClusteringRange { from: from.map(Into::into), to: to.map(Into::into), after: after.map(Into::into) }
}

/// `write` as a projector applying the event at `position` of `partition` makes it.
fn stamped(write: ViewWrite, partition: Partition, position: Position) -> ViewWrite {
    let stamp = Some(Stamp { partition, position });
    match write {
        ViewWrite::Put { view, key, body, .. } => ViewWrite::Put { view, key, body, stamp },
        ViewWrite::Delete { view, key, .. } => ViewWrite::Delete { view, key, stamp },
    }
}

/// A batch of partition 0 from position `from` to `to` (0: the empty checkpoint).
fn batch(projection: &str, from: Position, to: Position, writes: Vec<ViewWrite>) -> ViewBatch {
    let checkpoint = |p| if p == 0 { Checkpoint::default() } else { at(p) };
    moving(projection, &[(0, checkpoint(from), checkpoint(to))], writes)
}

fn moving(
    projection: &str,
    moves: &[(Partition, Checkpoint, Checkpoint)],
    writes: Vec<ViewWrite>,
) -> ViewBatch {
    ViewBatch {
        projection: projection.into(),
        checkpoints: moves
            .iter()
            .map(|&(partition, from, to)| CheckpointMove { partition, from, to })
            .collect(),
        reads: Vec::new(),
        writes,
        dead_letters: Vec::new(),
        resolved_dead_letters: Vec::new(),
    }
}

fn dead_letter(projection: &str, position: Position) -> DeadLetter {
    DeadLetter {
        projection: projection.into(),
        position,
        event_id: Uuid::new_v4(),
        event_type: "cart.item_added".into(),
        error: format!("payload of event {position} does not decode: missing field `sku`"),
    }
}

/// The keys the ordering cases store, and the byte order they must come back in.
const UNORDERED: [&str; 9] = ["a", "b", "aa", "B", "10", "9", "é", "z", ""];
const BYTE_ORDER: [&str; 9] = ["", "10", "9", "B", "a", "aa", "b", "z", "é"];

async fn put_ordering_keys(store: &dyn ReadStore) {
    let writes = UNORDERED.iter().map(|k| put("items", "p", k, json!({ "key": k }))).collect();
    write(store, writes).await;
}

// ---------------------------------------------------------------------------
// Cases

/// A document never written is `None`; an empty partition scans empty.
pub async fn absent_document_is_none(store: Arc<dyn ReadStore>) {
    assert_eq!(get(&*store, "items", "p", "").await, None);
    assert_eq!(get(&*store, "items", "p", "x").await, None);
    let page = scan(&*store, "p", ClusteringRange::default(), 10).await;
    assert_eq!(page, Page { documents: Vec::new(), next_cursor: None });
    assert_eq!(store.checkpoint("nobody", 0).await.expect("checkpoint"), Checkpoint::default());
    assert!(store.checkpoints("nobody").await.expect("checkpoints").is_empty());
    assert_eq!(store.get_with_revision("items", &DocKey::new("p", "k")).await.expect("get"), None);
    assert!(store.dead_letters("nobody").await.expect("dead letters").is_empty());
}

/// Put, get, replace, delete, through committed batches.
pub async fn documents_are_put_replaced_and_deleted(store: Arc<dyn ReadStore>) {
    let body = json!({ "name": "Zoë's mug", "price_cents": 1299, "tags": ["☕", "mug"], "stock": null });
    write(&*store, vec![put("items", "p", "", body.clone())]).await;
    assert_eq!(get(&*store, "items", "p", "").await, Some(body));

    write(&*store, vec![put("items", "p", "", json!({ "name": "renamed" }))]).await;
    assert_eq!(get(&*store, "items", "p", "").await, Some(json!({ "name": "renamed" })), "a put replaces");

    store.write_one(OWNER, delete("items", "p", "")).await.expect("delete");
    assert_eq!(get(&*store, "items", "p", "").await, None);
    store.write_one(OWNER, delete("items", "p", "")).await.expect("deleting an absent document is fine");
    assert_eq!(get(&*store, "items", "p", "").await, None);
}

/// A partition scans in byte order of the UTF-8 clustering key.
pub async fn scan_orders_by_clustering_key_bytes(store: Arc<dyn ReadStore>) {
    put_ordering_keys(&*store).await;
    let page = scan(&*store, "p", ClusteringRange::default(), 100).await;
    assert_eq!(keys(&page), BYTE_ORDER);
    assert_eq!(page.next_cursor, None);
    for document in &page.documents {
        assert_eq!(document.key.partition, "p");
        assert_eq!(document.body, json!({ "key": document.key.clustering }), "each key's own body");
    }
}

/// `from` is inclusive, `to` exclusive, `after` exclusive; the tighter lower
/// bound wins.
pub async fn scan_honours_bounds(store: Arc<dyn ReadStore>) {
    put_ordering_keys(&*store).await;
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a [&'a str]);
    let cases: [Case<'_>; 10] = [
        (Some("a"), Some("b"), None, &["a", "aa"]),
        (Some("9"), None, None, &["9", "B", "a", "aa", "b", "z", "é"]),
        (None, Some("9"), None, &["", "10"]),
        (Some("ab"), None, None, &["b", "z", "é"]),
        (Some("b"), Some("b"), None, &[]),
        (Some("z"), Some("a"), None, &[]),
        (None, None, Some("a"), &["aa", "b", "z", "é"]),
        (Some("B"), None, Some("a"), &["aa", "b", "z", "é"]),
        (Some("B"), Some("b"), Some("0"), &["B", "a", "aa"]),
        (None, Some("z"), Some(""), &["10", "9", "B", "a", "aa", "b"]),
    ];
    for (from, to, after, expected) in cases {
        let page = scan(&*store, "p", range(from, to, after), 100).await;
        assert_eq!(keys(&page), expected, "from {from:?} to {to:?} after {after:?}");
        assert_eq!(page.next_cursor, None, "from {from:?} to {to:?} after {after:?}: nothing follows");
    }
}

/// Paging with `limit` and the returned cursor visits every document of the
/// range exactly once, and the last page says nothing follows.
pub async fn paging_visits_every_document_once(store: Arc<dyn ReadStore>) {
    let all: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
    // Written in reverse, so that storage order cannot stand in for key order.
    write(&*store, all.iter().rev().map(|k| put("items", "p", k, json!({ "key": k }))).collect()).await;
    write(&*store, vec![put("items", "other", "k00", json!({})), put("items", "other", "k99", json!({}))])
        .await;

    let within = |from: &str, to: &str| -> Vec<String> {
        all.iter().filter(|k| k.as_str() >= from && k.as_str() < to).cloned().collect()
    };
    let cases = [
        (None, None, 1, all.clone()),
        (None, None, 5, all.clone()),
        (None, None, 7, all.clone()),
        (None, None, 25, all.clone()),
        (None, None, 26, all.clone()),
        (Some("k05"), Some("k15"), 4, within("k05", "k15")),
        (Some("k05"), Some("k15"), 5, within("k05", "k15")),
    ];
    for (from, to, limit, expected) in cases {
        let mut visited: Vec<String> = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let page = scan(&*store, "p", range(from, to, cursor.as_deref()), limit).await;
            pages += 1;
            assert!(page.documents.len() <= limit, "a page holds at most {limit}");
            visited.extend(page.documents.iter().map(|d| d.key.clustering.clone()));
            match page.next_cursor {
                Some(next) => {
                    assert_eq!(page.documents.len(), limit, "only a full page has a cursor");
                    cursor = Some(next);
                }
                None => break,
            }
            assert!(pages <= expected.len() + 1, "paging with limit {limit} does not end");
        }
        assert_eq!(visited, expected, "limit {limit} from {from:?} to {to:?}: every document once, in order");
        assert_eq!(pages, expected.len().div_ceil(limit).max(1), "limit {limit}: no empty trailing page");
    }
}

/// `get_json` and `scan_json` return the documents `get` and `scan` do, as
/// JSON text: same keys, same cursors, bodies that parse to the same values.
pub async fn json_text_reads_match_value_reads(store: Arc<dyn ReadStore>) {
    let body = |i: usize| {
        json!({
            "key": format!("k{i}"),
            "name": "Grüße, \"quoted\" \u{2603}",
            "cents": i * 1000 + 1,
            "ratio": 0.25,
            "lines": [{ "sku": "A-1", "quantity": i }, null, true],
            "empty": {},
        })
    };
    write(&*store, (0..7).map(|i| put("items", "p", &format!("k{i}"), body(i))).collect()).await;

    for i in 0..7 {
        let key = DocKey::new("p", format!("k{i}"));
        let text = store.get_json("items", &key).await.expect("get a document as text").expect("it is there");
        let parsed: Value = serde_json::from_str(&text).expect("the text is JSON");
        assert_eq!(Some(parsed), get(&*store, "items", "p", &format!("k{i}")).await);
    }
    assert_eq!(store.get_json("items", &DocKey::new("p", "k9")).await.expect("get an absent document"), None);
    assert_eq!(store.get_json("orders", &DocKey::new("p", "k0")).await.expect("get from another view"), None);

    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let range = range(None, None, cursor.as_deref());
        let text = store.scan_json("items", "p", &range, 3).await.expect("scan a partition as text");
        let value = scan(&*store, "p", range, 3).await;
        let parsed: Vec<(String, Value)> = text
            .documents
            .iter()
            .map(|d| (d.key.clustering.clone(), serde_json::from_str(&d.body).expect("the text is JSON")))
            .collect();
        let expected: Vec<(String, Value)> =
            value.documents.iter().map(|d| (d.key.clustering.clone(), d.body.clone())).collect();
        assert_eq!(parsed, expected, "page {pages}: the same documents");
        assert_eq!(text.next_cursor, value.next_cursor, "page {pages}: the same cursor");
        pages += 1;
        match text.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3, "7 documents in pages of 3");
    let none = store.scan_json("items", "p", &ClusteringRange::default(), 0).await.expect("scan nothing");
    assert!(none.documents.is_empty() && none.next_cursor.is_none(), "a limit of 0 is an empty last page");
}

/// Views and partitions do not see each other's documents.
pub async fn views_and_partitions_are_isolated(store: Arc<dyn ReadStore>) {
    write(
        &*store,
        vec![
            put("items", "p1", "k", json!("items/p1")),
            put("items", "p2", "k", json!("items/p2")),
            put("orders", "p1", "k", json!("orders/p1")),
            put("items", "p10", "a", json!("items/p10")),
        ],
    )
    .await;
    assert_eq!(get(&*store, "items", "p1", "k").await, Some(json!("items/p1")));
    assert_eq!(get(&*store, "items", "p2", "k").await, Some(json!("items/p2")));
    assert_eq!(get(&*store, "orders", "p1", "k").await, Some(json!("orders/p1")));
    assert_eq!(get(&*store, "orders", "p2", "k").await, None);

    let page = scan(&*store, "p1", ClusteringRange::default(), 10).await;
    assert_eq!(page.documents.len(), 1, "a scan of items/p1 sees only items/p1");
    assert_eq!(page.documents[0].body, json!("items/p1"));

    store.write_one(OWNER, delete("items", "p1", "k")).await.expect("delete");
    assert_eq!(get(&*store, "items", "p1", "k").await, None);
    assert_eq!(get(&*store, "items", "p2", "k").await, Some(json!("items/p2")));
    assert_eq!(get(&*store, "orders", "p1", "k").await, Some(json!("orders/p1")));
}

/// `partitions` lists every partition of a view that holds a document, once,
/// in byte order, and none of another view's.
pub async fn partitions_are_listed_per_view(store: Arc<dyn ReadStore>) {
    assert!(store.partitions("items").await.expect("list an empty view").is_empty());
    write(
        &*store,
        vec![
            put("items", "p2", "a", json!(1)),
            put("items", "p10", "a", json!(2)),
            put("items", "p10", "b", json!(3)),
            put("items", "P1", "a", json!(4)),
            put("orders", "only-orders", "k", json!(5)),
        ],
    )
    .await;
    assert_eq!(store.partitions("items").await.expect("list items"), ["P1", "p10", "p2"]);
    assert_eq!(store.partitions("orders").await.expect("list orders"), ["only-orders"]);
}

/// A batch commits with its checkpoint only if the checkpoint is still where
/// the batch started; otherwise `CheckpointMoved` and none of it is visible.
pub async fn commit_is_atomic_and_checked(store: Arc<dyn ReadStore>) {
    let projection = "catalog";
    assert_eq!(position(&*store, projection).await, 0);

    let mut stale =
        batch(projection, 3, 8, vec![put("items", "p", "a", json!(1)), put("items", "p", "b", json!(2))]);
    stale.dead_letters.push(dead_letter(projection, 5));
    match store.commit(stale).await {
        Err(ReadStoreError::CheckpointMoved { projection: p, partition: 0, expected: 3, actual: 0 }) => {
            assert_eq!(p, projection)
        }
        other => panic!("a batch from 3 when the checkpoint is 0: expected CheckpointMoved, got {other:?}"),
    }
    assert_eq!(get(&*store, "items", "p", "a").await, None, "a refused batch writes nothing");
    assert_eq!(get(&*store, "items", "p", "b").await, None, "a refused batch writes nothing");
    assert!(store.dead_letters(projection).await.expect("dead letters").is_empty());
    assert_eq!(position(&*store, projection).await, 0);

    let first =
        batch(projection, 0, 10, vec![put("items", "p", "a", json!(1)), put("items", "p", "b", json!(2))]);
    store.commit(first).await.expect("a batch from the current checkpoint");
    assert_eq!(position(&*store, projection).await, 10);
    assert_eq!(get(&*store, "items", "p", "a").await, Some(json!(1)));

    // Applying the same events again (a redelivery) is refused.
    let replay =
        batch(projection, 0, 10, vec![put("items", "p", "a", json!(100)), delete("items", "p", "b")]);
    match store.commit(replay).await {
        Err(ReadStoreError::CheckpointMoved { expected: 0, actual: 10, .. }) => {}
        other => panic!("a replayed batch: expected CheckpointMoved 0/10, got {other:?}"),
    }
    assert_eq!(get(&*store, "items", "p", "a").await, Some(json!(1)));
    assert_eq!(get(&*store, "items", "p", "b").await, Some(json!(2)));

    store.commit(batch(projection, 10, 20, Vec::new())).await.expect("a batch without writes");
    assert_eq!(position(&*store, projection).await, 20, "the checkpoint moves alone");
    assert_eq!(position(&*store, "another-projection").await, 0, "checkpoints are per projection");
}

/// Projectors racing with batches from one checkpoint: exactly one applies.
pub async fn concurrent_commits_from_one_checkpoint_apply_once(store: Arc<dyn ReadStore>) {
    const TASKS: usize = 8;
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        tasks.spawn(async move {
            let writes = if store.commits_atomically() {
                vec![
                    put("items", "p", "winner", json!(task)),
                    put("items", "p", &format!("t{task}"), json!(task)),
                ]
            } else {
                // Without isolation, racers may all write before one moves
                // the checkpoint; as projectors replaying the same events
                // they write the same rows, stamped alike.
                vec![stamped(put("items", "p", "winner", json!("same")), 0, 5)]
            };
            barrier.wait().await;
            (task, store.commit(batch("racing", 0, 5, writes)).await)
        });
    }
    let mut winner = None;
    while let Some(result) = tasks.join_next().await {
        match result.expect("a committing task panicked") {
            (task, Ok(())) => {
                assert!(winner.replace(task).is_none(), "two batches from checkpoint 0 applied")
            }
            (_, Err(ReadStoreError::CheckpointMoved { expected: 0, actual: 5, .. })) => {}
            (task, other) => panic!("task {task}: expected Ok or CheckpointMoved 0/5, got {other:?}"),
        }
    }
    let winner = winner.expect("one batch applied");
    if store.commits_atomically() {
        assert_eq!(get(&*store, "items", "p", "winner").await, Some(json!(winner)));
        let page = scan(&*store, "p", range(Some("t"), Some("u"), None), 100).await;
        assert_eq!(keys(&page), [format!("t{winner}")], "only the winner's writes are visible");
    } else {
        assert_eq!(get(&*store, "items", "p", "winner").await, Some(json!("same")));
    }
    assert_eq!(position(&*store, "racing").await, 5);
}

/// A batch's writes apply in their order.
pub async fn writes_apply_in_order(store: Arc<dyn ReadStore>) {
    write(
        &*store,
        vec![
            put("items", "p", "put-then-delete", json!(1)),
            delete("items", "p", "put-then-delete"),
            delete("items", "p", "delete-then-put"),
            put("items", "p", "delete-then-put", json!(2)),
            put("items", "p", "put-twice", json!("first")),
            put("items", "p", "put-twice", json!("second")),
        ],
    )
    .await;
    assert_eq!(get(&*store, "items", "p", "put-then-delete").await, None);
    assert_eq!(get(&*store, "items", "p", "delete-then-put").await, Some(json!(2)));
    assert_eq!(get(&*store, "items", "p", "put-twice").await, Some(json!("second")));
}

/// Dead letters are stored with their batch and listed per projection.
pub async fn dead_letters_are_stored_and_listed(store: Arc<dyn ReadStore>) {
    let projection = "orders-by-customer";
    let letters = vec![dead_letter(projection, 7), dead_letter(projection, 4)];
    let mut first = batch(projection, 0, 9, vec![put("items", "p", "a", json!(1))]);
    first.dead_letters = letters.clone();
    store.commit(first).await.expect("a batch with dead letters");
    let mut later = batch(projection, 9, 12, Vec::new());
    later.dead_letters = vec![dead_letter(projection, 11)];
    store.commit(later.clone()).await.expect("a later batch");

    let mut expected = letters;
    expected.extend(later.dead_letters);
    expected.sort_by_key(|l| l.position);
    let mut listed = store.dead_letters(projection).await.expect("list dead letters");
    listed.sort_by_key(|l| l.position);
    assert_eq!(listed, expected);
    assert!(store.dead_letters("another-projection").await.expect("list").is_empty());
    assert_eq!(get(&*store, "items", "p", "a").await, Some(json!(1)), "the batch's writes went in too");
}

/// A batch that resolves dead letters (a retry) removes them with its
/// writes, and only if every one is still there: otherwise nothing of it is
/// applied, so of two retries of one dead letter exactly one commits. A
/// store whose commits are not atomic refuses such a batch whole.
pub async fn resolved_dead_letters_go_with_their_batch(store: Arc<dyn ReadStore>) {
    let projection = "retried";
    let mut failed = batch(projection, 0, 9, Vec::new());
    failed.dead_letters = vec![dead_letter(projection, 4), dead_letter(projection, 7)];
    store.commit(failed).await.expect("a batch with dead letters");
    let mut elsewhere = batch("bystander", 0, 9, Vec::new());
    elsewhere.dead_letters = vec![dead_letter("bystander", 4)];
    store.commit(elsewhere).await.expect("another projection's dead letter");
    let listed = |store: Arc<dyn ReadStore>, projection: &'static str| async move {
        let letters = store.dead_letters(projection).await.expect("list dead letters");
        letters.iter().map(|letter| letter.position).collect::<Vec<_>>()
    };
    let retry = |positions: Vec<Position>, value: i64| ViewBatch {
        resolved_dead_letters: positions,
        ..moving(projection, &[], vec![put("items", "p", "retried", json!(value))])
    };

    if !store.commits_atomically() {
        let refused = store.commit(retry(vec![4], 1)).await;
        assert!(matches!(refused, Err(ReadStoreError::Store { .. })), "{refused:?}");
        assert_eq!(get(&*store, "items", "p", "retried").await, None, "nothing written");
        assert_eq!(listed(store.clone(), projection).await, [4, 7], "nothing resolved");
        return;
    }

    store.commit(retry(vec![4], 1)).await.expect("resolve a dead letter");
    assert_eq!(get(&*store, "items", "p", "retried").await, Some(json!(1)));
    assert_eq!(listed(store.clone(), projection).await, [7], "the resolved one is gone");
    assert_eq!(listed(store.clone(), "bystander").await, [4], "another projection's stays");

    match store.commit(retry(vec![4], 2)).await {
        Err(ReadStoreError::DeadLetterMissing { projection: of, position }) => {
            assert_eq!((of.as_str(), position), (projection, 4));
        }
        other => panic!("resolving a resolved dead letter: expected DeadLetterMissing, got {other:?}"),
    }
    assert_eq!(get(&*store, "items", "p", "retried").await, Some(json!(1)), "nothing written");
    match store.commit(retry(vec![7, 5], 3)).await {
        Err(ReadStoreError::DeadLetterMissing { position, .. }) => assert_eq!(position, 5),
        other => panic!("one of two never dead-lettered: expected DeadLetterMissing, got {other:?}"),
    }
    assert_eq!(get(&*store, "items", "p", "retried").await, Some(json!(1)), "nothing written");
    assert_eq!(listed(store.clone(), projection).await, [7], "nothing resolved");

    // Two retries of one dead letter at once: exactly one commits.
    let barrier = Arc::new(Barrier::new(2));
    let racers = (10..12).map(|value| {
        let (store, barrier, batch) = (Arc::clone(&store), Arc::clone(&barrier), retry(vec![7], value));
        tokio::spawn(async move {
            barrier.wait().await;
            store.commit(batch).await
        })
    });
    let results: Vec<_> = futures::future::join_all(racers).await;
    let mut committed = Vec::new();
    for (value, result) in (10..12).zip(results) {
        match result.expect("a racer panicked") {
            Ok(()) => committed.push(value),
            Err(ReadStoreError::DeadLetterMissing { position: 7, .. }) => {}
            Err(other) => panic!("a racing retry: {other:?}"),
        }
    }
    assert_eq!(committed.len(), 1, "exactly one racing retry commits");
    assert_eq!(get(&*store, "items", "p", "retried").await, Some(json!(committed[0])));
    assert!(listed(store.clone(), projection).await.is_empty());
}

/// Checkpoints are kept per source partition, and a batch moves all of its
/// partitions or none.
pub async fn checkpoints_are_per_partition(store: Arc<dyn ReadStore>) {
    let projection = "orders";
    let zero = Checkpoint::default();
    let (p0, p3) = (Checkpoint { position: 7, offset: 3 }, Checkpoint { position: 9, offset: 5 });
    store
        .commit(moving(projection, &[(0, zero, p0), (3, zero, p3)], vec![put("items", "p", "a", json!(1))]))
        .await
        .expect("a batch over two partitions");
    assert_eq!(store.checkpoint(projection, 0).await.expect("checkpoint"), p0);
    assert_eq!(store.checkpoint(projection, 3).await.expect("checkpoint"), p3);
    assert_eq!(store.checkpoint(projection, 1).await.expect("checkpoint"), zero, "untouched partition");
    assert_eq!(store.checkpoints(projection).await.expect("checkpoints"), vec![(0, p0), (3, p3)]);

    // Partition 3 is where the batch expects, partition 0 is not: nothing moves.
    let later = Checkpoint { position: 20, offset: 9 };
    let stale =
        moving(projection, &[(3, p3, later), (0, zero, later)], vec![put("items", "p", "a", json!(2))]);
    match store.commit(stale).await {
        Err(ReadStoreError::CheckpointMoved { partition: 0, expected: 0, actual: 7, .. }) => {}
        other => panic!("a batch with one stale partition: expected CheckpointMoved in 0, got {other:?}"),
    }
    assert_eq!(store.checkpoint(projection, 3).await.expect("checkpoint"), p3, "no partition moved");
    assert_eq!(get(&*store, "items", "p", "a").await, Some(json!(1)), "nothing written");

    // The offset is part of the checkpoint: a batch from the right position
    // but another offset is refused too.
    let other_offset = Checkpoint { position: 9, offset: 4 };
    assert!(matches!(
        store.commit(moving(projection, &[(3, other_offset, later)], Vec::new())).await,
        Err(ReadStoreError::CheckpointMoved { partition: 3, .. })
    ));
}

/// A batch computed from a document that changed since is refused whole.
pub async fn read_guards_refuse_a_changed_document(store: Arc<dyn ReadStore>) {
    let key = DocKey::new("p", "counter");
    write(&*store, vec![put("shared", "p", "counter", json!(1))]).await;
    let (body, first) = store.get_with_revision("shared", &key).await.expect("get").expect("present");
    assert_eq!(body, json!(1));
    assert_ne!(first, 0, "a present document has a non-zero revision");
    write(&*store, vec![put("shared", "p", "counter", json!(2))]).await;
    let (_, second) = store.get_with_revision("shared", &key).await.expect("get").expect("present");
    assert_ne!(first, second, "every write gives a fresh revision");

    let guarded = |revision, writes| ViewBatch {
        reads: vec![ReadGuard { view: "shared".into(), key: key.clone(), revision }],
        ..moving("sales", &[], writes)
    };
    match store
        .commit(guarded(
            first,
            vec![put("shared", "p", "counter", json!(10)), put("shared", "p", "x", json!(1))],
        ))
        .await
    {
        Err(ReadStoreError::Conflict { view, partition, clustering }) => {
            assert_eq!((view.as_str(), partition.as_str(), clustering.as_str()), ("shared", "p", "counter"))
        }
        other => panic!("a batch read at a stale revision: expected Conflict, got {other:?}"),
    }
    assert_eq!(get(&*store, "shared", "p", "counter").await, Some(json!(2)), "nothing written");
    assert_eq!(get(&*store, "shared", "p", "x").await, None, "nothing written");

    store
        .commit(guarded(second, vec![put("shared", "p", "counter", json!(3))]))
        .await
        .expect("a current read");
    assert_eq!(get(&*store, "shared", "p", "counter").await, Some(json!(3)));

    // Read as absent (revision 0), created since: refused.
    let absent = DocKey::new("p", "fresh");
    write(&*store, vec![put("shared", "p", "fresh", json!(1))]).await;
    let refused = ViewBatch {
        reads: vec![ReadGuard { view: "shared".into(), key: absent, revision: 0 }],
        ..moving("sales", &[], vec![put("shared", "p", "fresh", json!(100))])
    };
    assert!(matches!(store.commit(refused).await, Err(ReadStoreError::Conflict { .. })));
    assert_eq!(get(&*store, "shared", "p", "fresh").await, Some(json!(1)));
}

/// Writers that read-modify-write one document concurrently (projectors of
/// different partitions updating one sales row) lose no update when they
/// retry on `Conflict`.
pub async fn concurrent_read_modify_writes_lose_nothing(store: Arc<dyn ReadStore>) {
    const TASKS: u64 = 6;
    const INCREMENTS: u64 = 25;
    let key = DocKey::new("p", "total");
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (store, key) = (Arc::clone(&store), key.clone());
        tasks.spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..INCREMENTS {
                loop {
                    let (total, revision) = match store.get_with_revision("shared", &key).await.expect("get")
                    {
                        Some((body, revision)) => (body.as_u64().expect("a number"), revision),
                        None => (0, 0),
                    };
                    let batch = ViewBatch {
                        reads: vec![ReadGuard { view: "shared".into(), key: key.clone(), revision }],
                        ..moving(
                            &format!("writer-{task}"),
                            &[],
                            vec![put("shared", "p", "total", json!(total + 1))],
                        )
                    };
                    match store.commit(batch).await {
                        Ok(()) => break,
                        Err(ReadStoreError::Conflict { .. }) => conflicts += 1,
                        Err(other) => panic!("task {task}: {other:?}"),
                    }
                }
            }
            conflicts
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("a writer panicked");
    }
    assert_eq!(get(&*store, "shared", "p", "total").await, Some(json!(TASKS * INCREMENTS)), "no update lost");
}

/// In a store whose commits are not atomic, a write stamped with an older
/// position never overwrites a newer one (a replay arriving late), and each
/// document keeps the last position it absorbed per source partition (its
/// marks). Stores whose commits are atomic ignore stamps: nothing to check.
pub async fn stamped_writes_never_go_back(store: Arc<dyn ReadStore>) {
    if store.commits_atomically() {
        eprintln!("  (atomic commits: stamps are not used)");
        return;
    }
    let key = DocKey::new("p", "doc");
    let marks = |store: Arc<dyn ReadStore>| {
        let key = key.clone();
        async move {
            let found = store.get_many_stored(&[("items".into(), key)]).await.expect("read marks");
            found.into_iter().next().flatten().map(|stored| stored.marks)
        }
    };
    write(&*store, vec![stamped(put("items", "p", "doc", json!("at 10")), 2, 10)]).await;
    write(&*store, vec![stamped(put("items", "p", "doc", json!("at 5")), 2, 5)]).await;
    assert_eq!(get(&*store, "items", "p", "doc").await, Some(json!("at 10")), "an older write loses");
    assert_eq!(marks(Arc::clone(&store)).await, Some(vec![Stamp { partition: 2, position: 10 }]));

    write(&*store, vec![stamped(put("items", "p", "doc", json!("at 12 from 1")), 1, 12)]).await;
    assert_eq!(
        marks(Arc::clone(&store)).await,
        Some(vec![Stamp { partition: 1, position: 12 }, Stamp { partition: 2, position: 10 }]),
        "marks are kept per source partition"
    );

    write(&*store, vec![stamped(delete("items", "p", "doc"), 2, 11)]).await;
    assert_eq!(get(&*store, "items", "p", "doc").await, Some(json!("at 12 from 1")), "an older delete loses");
    write(&*store, vec![stamped(delete("items", "p", "doc"), 2, 20)]).await;
    assert_eq!(get(&*store, "items", "p", "doc").await, None, "a newer delete wins");
    write(&*store, vec![stamped(put("items", "p", "doc", json!("at 15")), 2, 15)]).await;
    assert_eq!(get(&*store, "items", "p", "doc").await, None, "a replayed put does not bring it back");
}

/// A view declared at run time can be written at once; dropping a
/// projection removes its views' documents, its checkpoints and dead
/// letters, and nothing else.
pub async fn a_dropped_projection_leaves_nothing(store: Arc<dyn ReadStore>) {
    store
        .declare_views(&[
            ViewSpec::owned("items").in_generation(2),
            ViewSpec::shared("shared").in_generation(2),
        ])
        .await
        .expect("declare views at run time");
    let mut old =
        batch("old", 0, 4, vec![put("items_g2", "p", "a", json!(1)), put("shared_g2", "p", "b", json!(2))]);
    old.dead_letters.push(dead_letter("old", 3));
    store.commit(old).await.expect("a batch of the old generation");
    store.commit(batch("kept", 0, 6, vec![put("items", "p", "a", json!("kept"))])).await.expect("another");

    store
        .drop_projection("old", &["items_g2".to_owned(), "shared_g2".to_owned()])
        .await
        .expect("drop the old generation");
    assert!(store.checkpoints("old").await.expect("checkpoints").is_empty(), "its checkpoints are gone");
    assert!(store.dead_letters("old").await.expect("dead letters").is_empty(), "its dead letters are gone");
    assert_eq!(position(&*store, "kept").await, 6, "other projections keep theirs");
    assert_eq!(get(&*store, "items", "p", "a").await, Some(json!("kept")), "other views keep theirs");

    // Declared again (a later generation under the same name would not be,
    // but a store must not keep stale rows): empty.
    store.declare_views(&[ViewSpec::owned("items").in_generation(2)]).await.expect("declare again");
    assert_eq!(get(&*store, "items_g2", "p", "a").await, None, "its documents are gone");
}
