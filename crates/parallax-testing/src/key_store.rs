//! The [`KeyStore`] contract, run by every adapter against its real backend:
//!
//! ```no_run
//! use std::sync::Arc;
//! use parallax_core::KeyStore;
//! use parallax_testing::memory::MemKeyStore;
//!
//! // In a `#[tokio::test(flavor = "multi_thread")]`:
//! # async fn keys() {
//! parallax_testing::key_store::run_all(|| async { Arc::new(MemKeyStore::new()) as Arc<dyn KeyStore> }).await;
//! # }
//! ```
//!
//! Whether a forgotten key's bytes also left the storage's files is the
//! adapter's own test: only it knows its files (`parallax-sqlite`'s
//! `tests/keys.rs`).

use std::future::Future;
use std::sync::Arc;

use parallax_core::keys::{open, seal};
use parallax_core::KeyStore;

/// Runs every case, each against a fresh store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn KeyStore>>,
{
    a_key_is_created_once_and_read_back(make().await).await;
    subjects_have_keys_of_their_own(make().await).await;
    forget_destroys_the_key(make().await).await;
    concurrent_first_uses_agree_on_one_key(make().await).await;
}

async fn a_key_is_created_once_and_read_back(keys: Arc<dyn KeyStore>) {
    assert_eq!(keys.key("alice").await.expect("read"), None, "no key before the first use");
    let first = keys.key_for("alice").await.expect("create");
    let again = keys.key_for("alice").await.expect("get");
    assert_eq!(first, again, "key_for returns the key it created");
    assert_eq!(keys.key("alice").await.expect("read"), Some(first.clone()));
    let sealed = seal(&first, "alice", "email", "alice@example.com");
    let read = keys.key("alice").await.expect("read").expect("a key");
    assert_eq!(open(&read, "alice", "email", &sealed).as_deref(), Ok("alice@example.com"));
}

async fn subjects_have_keys_of_their_own(keys: Arc<dyn KeyStore>) {
    let alice = keys.key_for("alice").await.expect("create");
    let bob = keys.key_for("bob").await.expect("create");
    assert_ne!(alice, bob);
    assert!(keys.forget("bob").await.expect("forget"));
    assert_eq!(keys.key("alice").await.expect("read"), Some(alice), "forgetting bob leaves alice");
    // Subjects are compared exactly.
    assert_eq!(keys.key("Alice").await.expect("read"), None);
    assert_eq!(keys.key("alice ").await.expect("read"), None);
}

async fn forget_destroys_the_key(keys: Arc<dyn KeyStore>) {
    let old = keys.key_for("alice").await.expect("create");
    let sealed = seal(&old, "alice", "name", "Alice");
    assert!(keys.forget("alice").await.expect("forget"), "there was a key");
    assert_eq!(keys.key("alice").await.expect("read"), None, "gone");
    assert!(!keys.forget("alice").await.expect("forget again"), "nothing left to forget");
    assert!(!keys.forget("nobody").await.expect("forget"), "never had one");
    let new = keys.key_for("alice").await.expect("a new key");
    assert_ne!(new, old, "a key after forget is a new one");
    assert!(open(&new, "alice", "name", &sealed).is_err(), "the new key opens nothing sealed before");
}

async fn concurrent_first_uses_agree_on_one_key(keys: Arc<dyn KeyStore>) {
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.key_for("carol").await.expect("create or get") })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.expect("task"));
    }
    assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "every caller got the same key");
    assert_eq!(keys.key("carol").await.expect("read").as_ref(), seen.first());
}
