//! The log tail never skips an event that commits late, and never shows one
//! that rolls back; leases elect one holder and fence the ones before.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use parallax_core::{
    AppendOutcome, AppendRequest, EventLog, EventStore, ExpectedVersion, LeaseError, Leases, Metadata,
    Position,
};
use parallax_postgres::{PgEventStore, PgLeases, PgStoreOptions};
use serde_json::json;
use sqlx::Connection;
use tokio::sync::watch;
use uuid::Uuid;

const LATER_APPENDS: usize = 1_000;

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

/// Tails `log` from 0 until `stop`, returning every position read, in order.
fn tail(log: Arc<dyn EventLog>, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<Vec<Position>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let batch = log.read(after, 100).await.expect("read the log");
            match batch.last() {
                Some(last) => {
                    after = last.position;
                    seen.extend(batch.iter().map(|e| e.position));
                }
                None if *stop.borrow() => return seen,
                None => log.wait_beyond(after, Duration::from_millis(20)).await,
            }
        }
    })
}

/// Holds an append's transaction open while `LATER_APPENDS` later appends
/// commit, then ends it with `end` ("COMMIT" or "ROLLBACK"). Returns the held
/// append's position, every position committed, and what the tailer saw.
async fn hold_one_open(end: &str) -> (Position, BTreeSet<Position>, Vec<Position>) {
    let (url, pool) = common::fresh_database().await;
    let store = PgEventStore::new(pool, PgStoreOptions::default());
    let log: Arc<dyn EventLog> = Arc::new(store.log());
    let mut committed = BTreeSet::new();
    for _ in 0..5 {
        committed.insert(append(&store, "before").await);
    }

    // The held append: the same SQL function, in a transaction left open.
    let mut held = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query("BEGIN").execute(&mut held).await.expect("begin");
    let request = json!([{
        "stream_id": "held", "expected": 0, "key": null,
        "events": [{ "event_id": Uuid::now_v7(), "event_type": "test.happened", "schema_version": 1,
                     "payload": { "n": "held" }, "metadata": Metadata::default(), "recorded_at": Utc::now() }]
    }]);
    let answer: sqlx::types::Json<serde_json::Value> = sqlx::query_scalar("SELECT parallax_append($1)")
        .bind(sqlx::types::Json(&request))
        .fetch_one(&mut held)
        .await
        .expect("append in the held transaction");
    let held_position = answer.0[0]["first"].as_u64().expect("the held append's position");

    let (stop, stopped) = watch::channel(false);
    let tailer = tail(log.clone(), stopped);
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..LATER_APPENDS {
        let store = store.clone();
        writers.spawn(async move { append(&store, &format!("later-{}", i % 50)).await });
    }
    while let Some(position) = writers.join_next().await {
        let position = position.expect("a writer panicked");
        assert!(position > held_position, "a later append got a lower position");
        committed.insert(position);
    }

    // Everything later has committed; the held one has not: the tail must
    // not have moved past it.
    let visible = log.read(0, 10_000).await.expect("read");
    assert!(
        visible.iter().all(|e| e.position < held_position),
        "the tail showed events above position {held_position} while it was still uncommitted"
    );

    sqlx::query(sqlx::AssertSqlSafe(end)).execute(&mut held).await.expect("end the held transaction");
    if end == "COMMIT" {
        committed.insert(held_position);
    }
    // Let the tailer drain, then stop it.
    let head = *committed.last().expect("events");
    tokio::time::timeout(Duration::from_secs(30), async {
        while log.read(head - 1, 1).await.expect("read").is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the tail reaches the head");
    stop.send(true).expect("stop the tailer");
    let seen =
        tokio::time::timeout(Duration::from_secs(30), tailer).await.expect("tailer ends").expect("tailer");
    (held_position, committed, seen)
}

fn assert_exactly_once_in_order(seen: &[Position], committed: &BTreeSet<Position>) {
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "the tail went backwards or repeated itself");
    let seen: BTreeSet<Position> = seen.iter().copied().collect();
    let skipped: Vec<_> = committed.difference(&seen).collect();
    let phantom: Vec<_> = seen.difference(committed).collect();
    assert!(skipped.is_empty(), "skipped {} committed events: {skipped:?}", skipped.len());
    assert!(phantom.is_empty(), "saw events that never committed: {phantom:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_never_skipped() {
    let (held, committed, seen) = hold_one_open("COMMIT").await;
    assert!(seen.contains(&held), "the held event, committed last, was skipped");
    assert_eq!(seen.len(), 5 + LATER_APPENDS + 1);
    assert_exactly_once_in_order(&seen, &committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_append_is_never_seen() {
    let (held, committed, seen) = hold_one_open("ROLLBACK").await;
    assert!(!seen.contains(&held), "the rolled-back event was seen");
    assert_eq!(seen.len(), 5 + LATER_APPENDS);
    assert_exactly_once_in_order(&seen, &committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_and_former_holders_are_fenced() {
    let (_, pool) = common::fresh_database().await;
    let leases = PgLeases::new(pool.clone()).retry(Duration::from_millis(50));
    let first = leases.acquire("relay").await.expect("the first holder");
    assert_eq!(first.epoch(), 1);
    first.save(42).await.expect("the holder saves");

    // A second worker waits while the first holds the lease.
    let contender = {
        let leases = leases.clone();
        tokio::spawn(async move { leases.acquire("relay").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!contender.is_finished(), "two holders at once");

    // The first holder's connection dies: the second takes over with a new
    // epoch and the saved checkpoint.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .execute(&pool)
    .await
    .expect("terminate the holder's connection");
    let second = tokio::time::timeout(Duration::from_secs(5), contender)
        .await
        .expect("the contender takes over within 5 s")
        .expect("contender task")
        .expect("the second holder");
    assert_eq!(second.epoch(), 2);
    assert_eq!(second.checkpoint().await.expect("checkpoint"), 42);

    // The former holder can no longer move the checkpoint, and learns it lost.
    match first.save(99).await {
        Err(LeaseError::Lost { epoch: 1, .. }) => {}
        other => panic!("a fenced holder saved: {other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(5), first.lost())
        .await
        .expect("the former holder learns it lost");
    assert_eq!(second.checkpoint().await.expect("checkpoint"), 42);
    second.save(50).await.expect("the new holder saves");
    assert_eq!(second.checkpoint().await.expect("checkpoint"), 50);
}

/// A holder frozen while it holds the lease (SIGSTOP, a paused VM: it stops
/// checking in but its connection stays open, and the kernel still answers
/// for its socket) loses the lease within the expiry bound; when it resumes
/// it learns so, and cannot save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_holder_loses_the_lease_within_the_bound() {
    let (_, pool) = common::fresh_database().await;
    let leases =
        PgLeases::new(pool.clone()).retry(Duration::from_millis(50)).expire_after(Duration::from_secs(2));
    let frozen = leases.acquire("saga").await.expect("the first holder");
    frozen.save(7).await.expect("the holder saves");
    // It never waits in `lost()` again: frozen, as far as anyone can tell.

    let taken = std::time::Instant::now();
    let second = tokio::time::timeout(Duration::from_secs(15), leases.acquire("saga"))
        .await
        .expect("a standby takes over a frozen holder's lease within 15 s")
        .expect("the second holder");
    assert!(taken.elapsed() >= Duration::from_secs(1), "taken over before the bound: {:?}", taken.elapsed());
    assert_eq!(second.epoch(), frozen.epoch() + 1);
    assert_eq!(second.checkpoint().await.expect("checkpoint"), 7);

    // The former holder resumes: it learns it lost, and is fenced.
    tokio::time::timeout(Duration::from_secs(5), frozen.lost())
        .await
        .expect("the resumed holder learns it lost");
    assert!(matches!(frozen.save(99).await, Err(LeaseError::Lost { .. })), "a fenced holder saved");
    assert_eq!(second.checkpoint().await.expect("checkpoint"), 7);
}

/// A holder that keeps checking in keeps the lease well past the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_keeps_the_lease_past_the_bound() {
    let (_, pool) = common::fresh_database().await;
    let leases =
        PgLeases::new(pool.clone()).retry(Duration::from_millis(50)).expire_after(Duration::from_secs(1));
    let holder = leases.acquire("relay").await.expect("the holder");
    let contender = {
        let leases = leases.clone();
        tokio::spawn(async move { leases.acquire("relay").await })
    };
    let kept = tokio::time::timeout(Duration::from_secs(4), holder.lost()).await;
    assert!(kept.is_err(), "a live holder lost its lease");
    assert!(!contender.is_finished(), "two holders at once");
    contender.abort();
    holder.save(3).await.expect("the live holder still saves");
}
