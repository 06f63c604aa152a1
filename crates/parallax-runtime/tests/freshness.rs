//! Waiting for a consistency token: woken by this process's projectors, or
//! by the store's checkpoint when another process moved it.

use std::sync::Arc;
use std::time::Duration;

use parallax_core::{Checkpoint, CheckpointMove, ConsistencyToken, ReadStore, ViewBatch};
use parallax_runtime::{Freshness, Progress, WaitError};
use parallax_sqlite::SqliteReadStore;

const VIEW: &str = "carts";

fn at(position: u64) -> Checkpoint {
    Checkpoint { position, offset: position }
}

fn token(position: u64) -> ConsistencyToken {
    ConsistencyToken { partition: 0, position }
}

fn setup() -> (tempfile::TempDir, Arc<dyn ReadStore>, Arc<Progress>, Freshness) {
    let dir = tempfile::tempdir().expect("temp folder");
    let store: Arc<dyn ReadStore> =
        Arc::new(SqliteReadStore::open(&dir.path().join("views.db")).expect("open"));
    let progress = Arc::new(Progress::default());
    let freshness = Freshness::new(store.clone(), progress.clone());
    (dir, store, progress, freshness)
}

fn spawn_wait(freshness: &Freshness, position: u64) -> tokio::task::JoinHandle<Result<(), WaitError>> {
    let freshness = freshness.clone();
    tokio::spawn(async move { freshness.wait(VIEW, token(position), Duration::from_secs(30)).await })
}

/// Wakes waiters by the position each needs: a commit below it leaves it
/// waiting, the commit that reaches it ends the wait.
#[tokio::test]
async fn a_waiter_wakes_when_its_position_is_reached_and_not_before() {
    let (_dir, _store, progress, freshness) = setup();
    let waiting = spawn_wait(&freshness, 10);
    let near = spawn_wait(&freshness, 5);
    tokio::time::sleep(Duration::from_millis(30)).await;
    progress.advance(VIEW, 0, at(5));
    near.await.expect("task").expect("5 is reached");
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!waiting.is_finished(), "position 5 does not absorb a token at 10");
    // Another partition or view moving does not absorb it either.
    progress.advance(VIEW, 1, at(50));
    progress.advance("orders", 0, at(50));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!waiting.is_finished());
    progress.advance(VIEW, 0, at(12));
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken within the timeout, long before the wait's own 30 s")
        .expect("task")
        .expect("12 absorbs 10");
    assert_eq!(progress.reached(VIEW, 0), 12);
}

#[tokio::test]
async fn a_token_already_absorbed_returns_at_once_and_one_never_reached_times_out() {
    let (_dir, _store, progress, freshness) = setup();
    progress.advance(VIEW, 0, at(7));
    freshness.wait(VIEW, token(7), Duration::ZERO).await.expect("7 is absorbed");
    let late = freshness.wait(VIEW, token(8), Duration::from_millis(40)).await;
    match late {
        Err(WaitError::NotCaughtUp { reached, needed, .. }) => assert_eq!((reached, needed), (7, 8)),
        other => panic!("expected NotCaughtUp, got {other:?}"),
    }
    // The waiter that gave up left nothing behind for the next commit to wake.
    progress.advance(VIEW, 0, at(9));
    freshness.wait(VIEW, token(8), Duration::ZERO).await.expect("9 absorbs 8");
}

/// A projector in another process moves the checkpoint in the store only;
/// the waiter reads it there within a poll interval.
#[tokio::test]
async fn a_checkpoint_moved_by_another_process_ends_the_wait() {
    let (_dir, store, progress, freshness) = setup();
    let waiting = spawn_wait(&freshness, 3);
    tokio::time::sleep(Duration::from_millis(30)).await;
    store
        .commit(ViewBatch {
            projection: VIEW.to_owned(),
            checkpoints: vec![CheckpointMove { partition: 0, from: at(0), to: at(4) }],
            reads: Vec::new(),
            writes: Vec::new(),
            dead_letters: Vec::new(),
            resolved_dead_letters: Vec::new(),
        })
        .await
        .expect("commit");
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("seen in the store within the timeout")
        .expect("task")
        .expect("4 absorbs 3");
    assert_eq!(progress.reached(VIEW, 0), 4, "the waiter put what it read on the board");
}
