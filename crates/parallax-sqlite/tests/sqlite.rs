//! What the contracts cannot see: durability across a reopen and a `kill -9`,
//! and group commit itself.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::pin::Pin;
use std::process::{Command, Stdio};

use parallax_core::EventLog;
use parallax_core::{
    AppendError, AppendOutcome, AppendRequest, DocKey, EventStore, ExpectedVersion, IdempotencyRecord,
    ReadStoreExt, Snapshot, ViewReader, ViewWrite,
};
use parallax_sqlite::{SqliteEventStore, SqliteLog, SqliteReadStore, SqliteStoreOptions};
use parallax_testing::event_store::{append_request, new_event};
use serde_json::json;

fn event() -> parallax_core::NewEvent {
    new_event("test.happened", json!({ "n": 1 }))
}

#[tokio::test]
async fn acknowledged_writes_are_in_a_reopened_store() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("events.db");
    let events = vec![event(), event(), event()];
    let snapshot =
        Snapshot { stream_id: "cart-1".into(), stream_version: 3, schema_version: 1, state: "{}".into() };
    let mut request = append_request("cart-1", ExpectedVersion::Exact(0), events.clone());
    request.idempotency =
        Some(IdempotencyRecord { key: "command-1".into(), fingerprint: "f".into(), response: "{}".into() });

    let last_position = {
        let store = SqliteEventStore::open(&path).expect("open");
        let outcome = store.append(request).await.expect("append");
        store.save_snapshot(snapshot.clone()).await.expect("save a snapshot");
        store.save_checkpoint("saga", 3).await.expect("save a checkpoint");
        match outcome {
            AppendOutcome::Appended { last_position, .. } => last_position,
            other => panic!("expected Appended, got {other:?}"),
        }
    };

    let store = SqliteEventStore::open(&path).expect("reopen");
    let stored = store.read_stream("cart-1", 0).await.expect("read");
    assert_eq!(
        stored.iter().map(|r| r.event_id).collect::<Vec<_>>(),
        events.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
    assert_eq!(store.head().await.expect("head"), last_position);
    assert_eq!(store.load_snapshot("cart-1").await.expect("snapshot"), Some(snapshot));
    assert_eq!(store.checkpoint("saga").await.expect("checkpoint"), 3);
    assert_eq!(
        store.idempotency("command-1").await.expect("key").map(|k| k.last_position),
        Some(last_position)
    );
    let again = store.append(append_request("cart-1", ExpectedVersion::Exact(3), vec![event()])).await;
    assert!(matches!(again, Ok(AppendOutcome::Appended { stream_version: 4, .. })), "{again:?}");
}

/// Run in a child process by [`acknowledged_appends_survive_kill_9`]: appends
/// forever, printing each acknowledged append. A no-op in a normal test run.
#[test]
fn kill_9_child() {
    let Some(path) = std::env::var_os("PARALLAX_KILL_9_DB") else { return };
    let runtime = tokio::runtime::Runtime::new().expect("start a runtime");
    runtime.block_on(async {
        let store = SqliteEventStore::open(Path::new(&path)).expect("open in the child");
        for version in 0.. {
            let event = event();
            let id = event.event_id;
            let request = append_request("killed", ExpectedVersion::Exact(version), vec![event]);
            match store.append(request).await.expect("append in the child") {
                AppendOutcome::Appended { last_position, .. } => println!("ACK {id} {last_position}"),
                other => panic!("expected Appended, got {other:?}"),
            }
        }
    });
}

#[tokio::test]
async fn acknowledged_appends_survive_kill_9() {
    const ACKS: usize = 200;
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("events.db");
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", "kill_9_child", "--nocapture", "--test-threads=1"])
        .env("PARALLAX_KILL_9_DB", &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("the child's stdout");
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the child's output");
        // libtest may print "test kill_9_child ... " on the same line.
        if let Some((_, ack)) = line.split_once("ACK ") {
            let (id, position) = ack.split_once(' ').expect("ACK <id> <position>");
            acked.push((
                id.parse::<uuid::Uuid>().expect("an event id"),
                position.parse::<u64>().expect("a position"),
            ));
            if acked.len() == ACKS {
                break;
            }
        }
    }
    assert_eq!(acked.len(), ACKS, "the child stopped early");
    child.kill().expect("kill -9 the child"); // SIGKILL on Unix
    child.wait().expect("reap the child");

    let store = SqliteEventStore::open(&path).expect("reopen after kill -9");
    let stored = store.read_stream("killed", 0).await.expect("read");
    assert!(stored.len() >= ACKS, "{} events stored, {ACKS} acknowledged", stored.len());
    for ((id, position), record) in acked.iter().zip(&stored) {
        assert_eq!((record.event_id, record.position), (*id, *position), "an acknowledged append was lost");
    }
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<AppendOutcome, AppendError>> + Send + 'a>>;

/// Queues `requests` while the writer is paused, so that they are all waiting
/// when it resumes; returns their answers in order.
async fn in_one_group(
    store: &SqliteEventStore,
    requests: Vec<AppendRequest>,
) -> Vec<Result<AppendOutcome, AppendError>> {
    let pause = store.pause_writer();
    let mut pending: Vec<Pending<'_>> = requests.into_iter().map(|r| store.append(r)).collect();
    for append in &mut pending {
        // The first poll queues the request; the paused writer cannot answer it yet.
        assert!(futures::poll!(append.as_mut()).is_pending());
    }
    drop(pause);
    futures::future::join_all(pending).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_answers_each_request_on_its_own() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = SqliteEventStore::open(&dir.path().join("events.db")).expect("open");
    let stored = event();
    store
        .append(append_request("setup", ExpectedVersion::Exact(0), vec![stored.clone()]))
        .await
        .expect("set up");
    let key = IdempotencyRecord { key: "command-1".into(), fingerprint: "f".into(), response: "{}".into() };
    let keyed = |stream: &str| AppendRequest {
        idempotency: Some(key.clone()),
        ..append_request(stream, ExpectedVersion::Exact(0), vec![event()])
    };
    let before = store.writer_stats();

    let mut requests = vec![
        append_request("same", ExpectedVersion::Exact(0), vec![event(), event()]),
        append_request("same", ExpectedVersion::Exact(0), vec![event()]), // the first one moved it to 2
        append_request("same", ExpectedVersion::Exact(2), vec![event()]), // sees the first one's writes
        append_request("bad", ExpectedVersion::Exact(0), vec![event(), stored.clone()]), // duplicate event id
        // One event, no key: appended without a savepoint; its failed insert must leave nothing either.
        append_request("bad-single", ExpectedVersion::Exact(0), vec![stored.clone()]),
        keyed("keyed-1"),
        keyed("keyed-2"),
        append_request("after-bad", ExpectedVersion::Any, vec![event()]),
    ];
    let fillers = 200 - requests.len();
    requests.extend(
        (0..fillers)
            .map(|i| append_request(&format!("filler-{i}"), ExpectedVersion::Exact(0), vec![event()])),
    );
    let answers = in_one_group(&store, requests).await;

    let after = store.writer_stats();
    assert_eq!(after.transactions - before.transactions, 1, "200 queued requests, one transaction");
    assert_eq!(after.requests - before.requests, 200);

    let mut answers = answers.into_iter();
    let mut next = || answers.next().expect("an answer per request");
    assert!(matches!(
        next(),
        Ok(AppendOutcome::Appended { stream_version: 2, first_position: 2, last_position: 3 })
    ));
    match next() {
        Err(AppendError::Conflict { stream, expected: 0, actual: 2 }) => assert_eq!(stream, "same"),
        other => panic!("expected a conflict within the group, got {other:?}"),
    }
    assert!(matches!(
        next(),
        Ok(AppendOutcome::Appended { stream_version: 3, first_position: 4, last_position: 4 })
    ));
    assert!(matches!(next(), Err(AppendError::Invalid(_))), "a duplicate event id is refused");
    assert!(matches!(next(), Err(AppendError::Invalid(_))), "alone as well");
    let keyed_position = match next() {
        Ok(AppendOutcome::Appended { last_position, .. }) => last_position,
        other => panic!("expected the keyed append, got {other:?}"),
    };
    match next() {
        Ok(AppendOutcome::Duplicate(stored)) => {
            assert_eq!((stored.record, stored.last_position), (key, keyed_position))
        }
        other => panic!("expected a duplicate within the group, got {other:?}"),
    }
    assert!(matches!(next(), Ok(AppendOutcome::Appended { stream_version: 1, .. })));
    for _ in 0..fillers {
        assert!(matches!(next(), Ok(AppendOutcome::Appended { stream_version: 1, .. })));
    }

    assert!(store.read_stream("bad", 0).await.expect("read").is_empty(), "the refused request wrote nothing");
    assert!(store.read_stream("bad-single", 0).await.expect("read").is_empty());
    assert!(store.read_stream("keyed-2", 0).await.expect("read").is_empty());
    assert_eq!(store.read_stream("same", 0).await.expect("read").len(), 3);
    // 1 set-up + 2 + 1 + 1 keyed + 1 after-bad + fillers, with no gap left by the refused request.
    let all = store.read_all(0, 1000).await.expect("read all");
    assert_eq!(all.len(), 6 + fillers);
    assert!(all.iter().enumerate().all(|(i, r)| r.position == i as u64 + 1), "positions 1..=n without gaps");
}

#[tokio::test]
async fn open_refuses_what_it_cannot_use() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    assert!(SqliteEventStore::open(&dir.path().join("missing-dir").join("events.db")).is_err());
    assert!(SqliteEventStore::open(Path::new(":memory:")).is_err(), "an in-memory database has no WAL");
    assert!(SqliteReadStore::open(&dir.path().join("missing-dir").join("views.db")).is_err());
    let normal = SqliteStoreOptions { max_batch: 1, synchronous_full: false };
    let store =
        SqliteEventStore::open_with(&dir.path().join("events.db"), normal).expect("open with options");
    store.append(append_request("s", ExpectedVersion::Exact(0), vec![event()])).await.expect("append");
}

#[tokio::test]
async fn read_store_keeps_views_across_a_reopen() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("views.db");
    {
        let views = SqliteReadStore::open(&path).expect("open");
        let write = ViewWrite::put("carts", DocKey::partition("c-1"), json!({ "items": 2 }));
        views.write_one("carts", write).await.expect("write");
    }
    let views = SqliteReadStore::open(&path).expect("reopen");
    assert_eq!(
        views.get("carts", &DocKey::partition("c-1")).await.expect("get"),
        Some(json!({ "items": 2 }))
    );
}

/// A tail opened on another writer's file reads what that writer commits,
/// and refuses (without creating it) a file that is not there.
#[tokio::test]
async fn a_tail_of_another_writer_s_store_reads_what_it_commits() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("events.db");
    assert!(SqliteLog::open(&path).is_err(), "no store at {}", path.display());
    assert!(!path.exists(), "the refused tail created no file");
    let store = SqliteEventStore::open(&path).expect("open");
    store
        .append(append_request("cart-1", ExpectedVersion::Exact(0), vec![event(), event()]))
        .await
        .expect("append");

    let tail = SqliteLog::open(&path).expect("a tail");
    let read = tail.read(0, 10).await.expect("read");
    assert_eq!(read.iter().map(|r| r.position).collect::<Vec<_>>(), vec![1, 2]);
    store.append(append_request("cart-1", ExpectedVersion::Exact(2), vec![event()])).await.expect("append");
    // No writer of its own signals it: the wait runs out, and a read finds the commit.
    tail.wait_beyond(2, std::time::Duration::from_millis(10)).await;
    assert_eq!(tail.read(2, 10).await.expect("read").len(), 1);
    assert_eq!(tail.head().await.expect("head"), 3);
}
