//! A read-store commit is on disk when it returns: a query process may read
//! its checkpoint at once and answer a consistency token against it, so a
//! crash of the read DB must not take it back.
//!
//! Observed through the server's WAL: once `commit` has returned, the WAL is
//! flushed past every record the commit wrote, all of which come after the
//! insert position read before it. A commit made with `synchronous_commit =
//! off` returns before the flush, and the WAL writer flushes it up to
//! 3 × `wal_writer_delay` (600 ms by default) later, so right after such a
//! commit the flush position still lies at or before that insert position,
//! unless another session's synchronous commit flushed it meanwhile (then
//! the test passes without proving anything, which a concurrent run of
//! other tests can cause; it never fails a durable commit).

mod common;

use parallax_core::{Checkpoint, CheckpointMove, DocKey, ViewBatch, ViewCommitter, ViewWrite};
use parallax_postgres::PgReadStore;
use serde_json::json;
use sqlx::postgres::PgPool;

/// The server's WAL insert and flush positions, in bytes.
async fn wal(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint, \
                (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint",
    )
    .fetch_one(pool)
    .await
    .expect("read the WAL positions")
}

#[tokio::test]
async fn a_commit_is_flushed_to_the_wal_when_it_returns() {
    let (_, pool) = common::fresh_database().await;
    let store = PgReadStore::new(pool.clone());
    for round in 1..=20u64 {
        let (inserted_before, _) = wal(&pool).await;
        let batch = ViewBatch {
            checkpoints: vec![CheckpointMove {
                partition: 0,
                from: if round == 1 {
                    Checkpoint::default()
                } else {
                    Checkpoint { position: round - 1, offset: round }
                },
                to: Checkpoint { position: round, offset: round + 1 },
            }],
            writes: vec![ViewWrite::put(
                "items",
                DocKey::new("p", format!("c{round}")),
                json!({ "n": round }),
            )],
            ..ViewBatch::empty("durable")
        };
        store.commit(batch).await.expect("commit a batch");
        let (_, flushed) = wal(&pool).await;
        assert!(
            flushed > inserted_before,
            "round {round}: the WAL is flushed to {flushed}, not past {inserted_before}, where the commit's \
             records begin: the commit returned before it was durable"
        );
    }
}
