//! The key store on SQLite: the `key_store` contract, and a forgotten key's
//! bytes searched for in every file of the database.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parallax_core::{AppendRequest, EventStore, ExpectedVersion, KeyStore};
use parallax_sqlite::{SqliteEventStore, SqliteKeyStore};
use parallax_testing::event_store::new_event;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_store_contract() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let opened = AtomicUsize::new(0);
    parallax_testing::key_store::run_all(|| {
        let path = dir.path().join(format!("events-{}.db", opened.fetch_add(1, Ordering::Relaxed)));
        async move { Arc::new(SqliteKeyStore::open(&path).expect("open a fresh key store")) as Arc<dyn KeyStore> }
    })
    .await;
}

/// The bytes of the database file and its write-ahead log.
fn files_of(db: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).expect("read the database file");
    let wal = db.with_extension("db-wal");
    if wal.exists() {
        bytes.extend(std::fs::read(&wal).expect("read the write-ahead log"));
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

async fn append(store: &SqliteEventStore, stream: &str) {
    let event = new_event("test.happened", serde_json::json!({ "n": 1 }));
    store.append(AppendRequest::new(stream, ExpectedVersion::Any, vec![event])).await.expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_key_leaves_no_byte_in_the_files() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("events.db");
    let events = SqliteEventStore::open(&path).expect("open the event store");
    let keys = SqliteKeyStore::open(&path).expect("open the key store in the same file");
    append(&events, "order-1").await;
    let alice = keys.key_for("alice").await.expect("alice's key");
    let bob = keys.key_for("bob").await.expect("bob's key");
    append(&events, "order-2").await;
    // Folded into the file, as a long-running process would have it.
    keys.forget("nobody").await.expect("a checkpoint");
    let before = files_of(&path);
    assert!(contains(&before, alice.as_bytes()), "the search finds a stored key");
    assert!(contains(&before, bob.as_bytes()));

    assert!(keys.forget("alice").await.expect("forget alice"));
    append(&events, "order-3").await;
    let after = files_of(&path);
    assert!(!contains(&after, alice.as_bytes()), "alice's key is in no byte of the files");
    assert!(contains(&after, bob.as_bytes()), "bob's key is still there");
    assert_eq!(keys.key("bob").await.expect("read"), Some(bob));
    assert_eq!(events.read_all(0, 10).await.expect("read").len(), 3, "the events are untouched");
}
