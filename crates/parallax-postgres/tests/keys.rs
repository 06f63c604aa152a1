//! The key store on a real PostgreSQL server: the `key_store` contract, and
//! a forgotten key's bytes searched for in the table's file.

mod common;

use std::sync::Arc;

use parallax_core::KeyStore;
use parallax_postgres::PgKeyStore;
use sqlx::postgres::PgPool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_store_contract() {
    parallax_testing::key_store::run_all(|| async {
        let (_, pool) = common::fresh_database().await;
        Arc::new(PgKeyStore::new(pool)) as Arc<dyn KeyStore>
    })
    .await;
}

/// The key table's file as the server has it on disk, after a checkpoint
/// (`pg_read_binary_file`: the test server's user is a superuser).
async fn table_file(pool: &PgPool) -> Vec<u8> {
    sqlx::raw_sql("CHECKPOINT").execute(pool).await.expect("checkpoint");
    sqlx::query_scalar("SELECT pg_read_binary_file(pg_relation_filepath('subject_keys'))")
        .fetch_one(pool)
        .await
        .expect("read the key table's file")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_key_leaves_no_byte_in_the_table_file() {
    let (_, pool) = common::fresh_database().await;
    let keys = PgKeyStore::new(pool.clone());
    let alice = keys.key_for("alice").await.expect("alice's key");
    let bob = keys.key_for("bob").await.expect("bob's key");
    let before = table_file(&pool).await;
    assert!(contains(&before, alice.as_bytes()), "the search finds a stored key");

    assert!(keys.forget("alice").await.expect("forget alice"));
    let after = table_file(&pool).await;
    assert!(!contains(&after, alice.as_bytes()), "alice's key is in no byte of the table's file");
    assert!(contains(&after, bob.as_bytes()), "bob's key is still there");
    let dump: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT key FROM subject_keys").fetch_all(&pool).await.expect("live rows");
    assert_eq!(dump, vec![bob.as_bytes().to_vec()]);
}
