//! The check of an append's reads (the other streams its decision read)
//! looks each one up by its key: its cost does not grow with the number of
//! streams in the store. A sequential scan of `streams` per request did, and
//! was most of the server's CPU in the pipeline benchmark.

mod common;

use serde_json::{json, Value};
use sqlx::Connection;

/// Streams in the store besides the ones the request reads, as many as the
/// benchmark's carts: a join of the reads (which the planner takes for 100
/// rows, as it does any JSON array) to `streams` hashed the whole table here.
const OTHER_STREAMS: i64 = 10_000;

/// One request of `parallax_append`'s batch: an event for `stream` after a
/// decision that read `reads` at the given versions.
fn request(stream: &str, reads: &[(&str, i64)]) -> Value {
    json!({
        "stream_id": stream,
        "expected": null,
        "key": null,
        "reads": reads.iter().map(|(id, version)| json!({ "stream_id": id, "version": version })).collect::<Vec<_>>(),
        "events": [{
            "event_id": uuid::Uuid::now_v7(),
            "event_type": "cart.item_added",
            "schema_version": 1,
            "payload": { "sku": "p-1" },
            "metadata": {},
            "recorded_at": "2026-12-07T09:00:00Z",
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_checked_by_key_without_scanning_every_stream() {
    let (url, pool) = common::fresh_database().await;
    sqlx::query(
        "INSERT INTO streams (stream_id, version) \
         SELECT 'cart-' || i, 5 FROM generate_series(1, $1) AS i",
    )
    .bind(OTHER_STREAMS)
    .execute(&pool)
    .await
    .expect("many streams");
    sqlx::query("INSERT INTO streams (stream_id, version) VALUES ('product-1', 3), ('product-2', 7)")
        .execute(&pool)
        .await
        .expect("the products read");
    sqlx::query("ANALYZE streams").execute(&pool).await.expect("statistics");

    let mut connection = sqlx::PgConnection::connect(&url).await.expect("a connection");
    let mut tx = connection.begin().await.expect("a transaction");
    let batch = json!([
        request("cart-new-1", &[("product-1", 3), ("product-2", 7)]),
        request("cart-new-2", &[("product-1", 2)]),
        request("cart-new-3", &[("product-9", 0)]),
    ]);
    let outcomes: sqlx::types::Json<Value> = sqlx::query_scalar("SELECT parallax_append($1)")
        .bind(&batch)
        .fetch_one(&mut *tx)
        .await
        .expect("append");
    let outcomes = outcomes.0;
    assert_eq!(outcomes[0]["outcome"], "appended", "{outcomes}");
    assert_eq!(
        outcomes[1],
        json!({ "outcome": "conflict", "stream": "product-1", "expected": 2, "actual": 3 }),
        "a read that moved"
    );
    assert_eq!(outcomes[2]["outcome"], "appended", "a stream read as absent is still absent: {outcomes}");

    let (seq_scans, index_scans): (i64, i64) = sqlx::query_as(
        "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = 'streams'",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("this transaction's scans of streams");
    assert_eq!(seq_scans, 0, "no request scanned every stream ({index_scans} index scans)");
    assert!(index_scans > 0, "the reads were looked up by key");
    tx.rollback().await.expect("rollback");
}
