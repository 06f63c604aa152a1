//! Group commit's wait for company: a lone append waits up to
//! `PgStoreOptions::gather` for others to share its transaction, and commits
//! alone when none come.

mod common;

use std::time::Duration;

use parallax_core::{AppendOutcome, AppendRequest, EventStore, ExpectedVersion, Position};
use parallax_postgres::{PgEventStore, PgStoreOptions};
use sqlx::postgres::PgPool;

async fn append(store: &PgEventStore, stream: &str) -> Position {
    let request = AppendRequest {
        stream_id: stream.into(),
        expected_version: ExpectedVersion::Any,
        events: vec![common::event(0)],
        idempotency: None,
        reads: Vec::new(),
    };
    match store.append(request).await.expect("append") {
        AppendOutcome::Appended { last_position, .. } => last_position,
        other => panic!("expected an append, got {other:?}"),
    }
}

/// The transaction that wrote the event at `position`.
async fn transaction_of(pool: &PgPool, position: Position) -> String {
    sqlx::query_scalar("SELECT tx_id::text FROM events WHERE position = $1")
        .bind(i64::try_from(position).expect("a position fits in bigint"))
        .fetch_one(pool)
        .await
        .expect("the event's transaction")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_append_waits_for_company_and_shares_its_commit() {
    let (_, pool) = common::fresh_database().await;
    // A wait far above the gap between the two appends, so that the second
    // always arrives while the first waits.
    let options = PgStoreOptions { gather: Duration::from_secs(2), ..PgStoreOptions::default() };
    let store = PgEventStore::new(pool.clone(), options);

    let first = tokio::spawn({
        let store = store.clone();
        async move { append(&store, "cart-first").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = append(&store, "cart-second").await;
    let first = first.await.expect("the first append's task");

    assert_ne!(first, second);
    assert_eq!(
        transaction_of(&pool, first).await,
        transaction_of(&pool, second).await,
        "the second append joined the first one's transaction"
    );

    // Alone for the whole wait: it still commits, in a transaction of its own.
    let third = append(&store, "cart-third").await;
    assert_ne!(transaction_of(&pool, third).await, transaction_of(&pool, first).await);
}
