//! The store on a ring of three nodes (`scripts/services/cassandra start
//! --nodes 3`, which the tests run first: it starts only the nodes that are
//! down): a keyspace of three replicas, every statement at the configured
//! level, and exactly-once when a write at quorum failed after it reached
//! some replicas, or with a node dead (the crate docs give the reasoning).
//! The tests freeze and kill nodes of the ring, so they take turns.

mod common;

use common::{append, Counting, SHARED_TOTALS};

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use parallax_cassandra::{CassandraConfig, CassandraReadStore, Consistency};
use parallax_core::{
    ClusteringRange, DocKey, EventLog, Projection, ReadStore, ReadStoreError, ReadStoreLayer, ViewAdmin,
    ViewBatch, ViewCommitter, ViewReader,
};
use parallax_runtime::Projector;
use parallax_sqlite::SqliteEventStore;
use scylla::errors::ExecutionError;
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// One test at a time on the ring.
static RING: Mutex<()> = Mutex::const_new(());

/// The ring's contact points: `PARALLAX_TEST_CASSANDRA_RING`, else the
/// nodes of `scripts/services/cassandra start --nodes 3`.
fn ring_nodes() -> Vec<String> {
    std::env::var("PARALLAX_TEST_CASSANDRA_RING")
        .ok()
        .filter(|nodes| !nodes.is_empty())
        .unwrap_or_else(|| "127.0.0.2:9042,127.0.0.3:9042,127.0.0.4:9042".to_owned())
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// `scripts/services/cassandra <args> --nodes 3`.
fn ring(args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services/cassandra");
    let output = std::process::Command::new(&script)
        .args(args)
        .args(["--nodes", "3"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "scripts/services/cassandra {args:?} --nodes 3 failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A new keyspace on the ring, the defaults otherwise.
fn ring_config() -> CassandraConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    CassandraConfig::new(ring_nodes(), format!("parallax_ring_{}", &id[..20]))
}

/// The same keyspace read and written at `level`.
async fn at_level(config: &CassandraConfig, level: Consistency) -> CassandraReadStore {
    let mut config = config.clone();
    config.consistency = level;
    CassandraReadStore::connect(&config, Counting { shared: true }.views()).await.expect("connect")
}

async fn replication(store: &CassandraReadStore) -> String {
    let rows = store
        .session()
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (store.keyspace(),),
        )
        .await
        .expect("read the keyspace's replication")
        .into_rows_result()
        .expect("rows");
    let (replication,) = rows.first_row::<(HashMap<String, String>,)>().expect("the keyspace");
    replication["replication_factor"].clone()
}

/// Drops the test's keyspace, giving the ring the time a schema change
/// takes on a busy machine. The driver then waits (60 s at most) until
/// every node it counts alive reports the new schema; a node thawed or
/// restarted moments before can take longer (CI once saw it), and the drop
/// is still applied. This is the tests' clean-up, whose assertions are all
/// made by then: such a timeout is reported, not failed on.
async fn drop_keyspace(config: &CassandraConfig) {
    let mut config = config.clone();
    config.request_timeout = Duration::from_secs(60);
    match CassandraReadStore::drop_keyspace(&config).await {
        Ok(()) => {}
        Err(error) if awaited_schema_agreement_in_vain(&error) => {
            eprintln!("dropped keyspace {}, not yet agreed by every node: {error:?}", config.keyspace);
        }
        Err(error) => panic!("drop the keyspace: {error:?}"),
    }
}

/// Whether `error` is the driver's wait for schema agreement timing out.
fn awaited_schema_agreement_in_vain(error: &ReadStoreError) -> bool {
    matches!(
        std::error::Error::source(error).and_then(|source| source.downcast_ref::<ExecutionError>()),
        Some(ExecutionError::SchemaAgreementError(_))
    )
}

/// Projects to the log's end as the projector's loop does: a failed batch
/// is tried again (from its checkpoint), here for 60 s at most. Just after
/// a node died, its peers still count it alive for a few seconds, and a
/// logged batch whose batch log went to it times out.
async fn catch_up(projector: &Projector) {
    let started = std::time::Instant::now();
    while let Err(error) = projector.catch_up().await {
        assert!(started.elapsed() < Duration::from_secs(60), "still failing after 60 s: {error}");
        eprintln!("projecting failed, trying again: {error}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn total(store: &dyn ReadStore, view: &str) -> Option<Value> {
    store.get(view, &DocKey::partition("all")).await.expect("read a total")
}

/// The store, except that while `freeze` is set a commit runs with nodes 2
/// and 3 frozen (SIGSTOP) from after its checkpoints were checked: its rows
/// are written at quorum with one replica answering, the write times out,
/// and what the frozen replicas were sent reaches them when they thaw. The
/// commit fails with the store's own error.
struct FreezesReplicas {
    inner: Arc<dyn ReadStore>,
    freeze: AtomicBool,
    errors: StdMutex<Vec<String>>,
}

#[async_trait]
impl ReadStoreLayer for FreezesReplicas {
    fn inner(&self) -> &dyn ReadStore {
        self.inner.as_ref()
    }

    async fn commit(&self, mut batch: ViewBatch) -> Result<(), ReadStoreError> {
        if !self.freeze.load(Ordering::SeqCst) {
            return self.inner.commit(batch).await;
        }
        // The checkpoints were checked (a serial read needs a quorum, which
        // the frozen ring lacks): this commit stands for the rest of one.
        let checked = self.inner.checkpoints("counting").await?;
        assert!(batch
            .checkpoints
            .iter()
            .all(|movement| checked.contains(&(movement.partition, movement.from))));
        batch.checkpoints.clear();
        // The shared row's compare-and-set would fail before writing
        // anything (Paxos needs a quorum): only the timestamped rows go.
        batch.writes.retain(|write| write.view() != SHARED_TOTALS.name());
        ring(&["pause", "--node", "2"]);
        ring(&["pause", "--node", "3"]);
        let outcome = self.inner.commit(batch).await;
        ring(&["resume", "--node", "2"]);
        ring(&["resume", "--node", "3"]);
        let error = outcome.expect_err("a write at quorum with two of three replicas frozen");
        self.errors
            .lock()
            .expect("the errors")
            .push(format!("{error}: {:?}", std::error::Error::source(&error)));
        Err(error)
    }
}

/// A projector batch whose rows went out at quorum while two replicas were
/// frozen: the write timed out having reached one replica, and reached the
/// others when they thawed. The batch is projected again from the
/// checkpoint, which never moved: each event counts once, whichever copy
/// of the rows the replay's quorum read saw, and a read of all replicas
/// afterwards agrees (the late write, timestamped with its position, did
/// not overwrite the replay's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_write_timed_out_after_reaching_a_replica_is_applied_once() {
    let _turn = RING.lock().await;
    ring(&["start"]);
    let dir = tempfile::tempdir().expect("a temp folder");
    let events = SqliteEventStore::open(&dir.path().join("events.db")).expect("open the event store");
    let log: Arc<dyn EventLog> = Arc::new(events.log());
    let mut config = ring_config();
    // Below the default, so a request to a frozen node gives up soon.
    config.request_timeout = Duration::from_secs(5);
    let cassandra: Arc<dyn ReadStore> = Arc::new(
        CassandraReadStore::connect(&config, Counting { shared: true }.views())
            .await
            .expect("connect to the ring"),
    );
    let projection: Arc<dyn Projection> = Arc::new(Counting { shared: true });
    let freezing = Arc::new(FreezesReplicas {
        inner: Arc::clone(&cassandra),
        freeze: AtomicBool::new(false),
        errors: StdMutex::new(Vec::new()),
    });

    append(&events, "a", 3).await;
    append(&events, "b", 2).await;
    let first = Projector::new(Arc::clone(&projection), Arc::clone(&log), freezing.clone());
    first.catch_up().await.expect("project the first events");
    assert_eq!(cassandra.checkpoint("counting", 0).await.expect("checkpoint").position, 5);

    append(&events, "a", 4).await;
    freezing.freeze.store(true, Ordering::SeqCst);
    assert!(first.catch_up().await.is_err(), "the commit fails");
    drop(first);
    eprintln!("the frozen commit failed with {:?}", freezing.errors.lock().expect("the errors"));
    assert_eq!(cassandra.checkpoint("counting", 0).await.expect("checkpoint").position, 5, "not moved");

    let again = Projector::new(Arc::clone(&projection), Arc::clone(&log), Arc::clone(&cassandra));
    again.catch_up().await.expect("project again");
    assert_eq!(cassandra.checkpoint("counting", 0).await.expect("checkpoint").position, 9);
    for view in ["totals", "shared_totals"] {
        assert_eq!(total(cassandra.as_ref(), view).await, Some(json!({ "events": 9 })), "{view}: once each");
    }
    let all = at_level(&config, Consistency::All).await;
    assert_eq!(total(&all, "totals").await, Some(json!({ "events": 9 })), "every replica agrees");
    assert_eq!(all.get("last", &DocKey::partition("a")).await.expect("get"), Some(json!({ "version": 7 })));
    drop_keyspace(&config).await;
}

/// With one node of three dead, the keyspace's three replicas leave a
/// quorum: projecting, checkpoints and reads go on at `LOCAL_QUORUM`,
/// while the same keyspace at `ALL` refuses every kind of statement the
/// store makes (so each runs at the configured level). Once the node is
/// back, every replica holds what was written without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_node_dead_the_store_goes_on_at_quorum_and_every_statement_takes_the_level() {
    let _turn = RING.lock().await;
    ring(&["start"]);
    let dir = tempfile::tempdir().expect("a temp folder");
    let events = SqliteEventStore::open(&dir.path().join("events.db")).expect("open the event store");
    let log: Arc<dyn EventLog> = Arc::new(events.log());
    let config = ring_config();
    let quorum = Arc::new(
        CassandraReadStore::connect(&config, Counting { shared: true }.views()).await.expect("connect"),
    );
    assert_eq!(replication(&quorum).await, "3", "3 replicas on a ring of 3, unless configured");
    let all = at_level(&config, Consistency::All).await;
    let projection: Arc<dyn Projection> = Arc::new(Counting { shared: true });
    append(&events, "a", 3).await;
    let projector = Projector::new(Arc::clone(&projection), Arc::clone(&log), quorum.clone());
    projector.catch_up().await.expect("project");

    ring(&["kill", "--node", "3"]);
    let outcome = async {
        assert_eq!(quorum.checkpoint("counting", 0).await.expect("a checkpoint at quorum").position, 3);
        append(&events, "b", 2).await;
        catch_up(&projector).await;
        assert_eq!(quorum.checkpoint("counting", 0).await.expect("checkpoint").position, 5);
        for view in ["totals", "shared_totals"] {
            assert_eq!(total(quorum.as_ref(), view).await, Some(json!({ "events": 5 })), "{view}");
        }
        let everything = ClusteringRange::default();
        assert_eq!(quorum.scan("last", "b", &everything, 10).await.expect("scan").documents.len(), 1);

        let refused = [
            ("get", all.get("totals", &DocKey::partition("all")).await.err()),
            ("scan", all.scan("last", "a", &everything, 10).await.err()),
            ("checkpoint", all.checkpoint("counting", 0).await.err()),
            ("checkpoints", all.checkpoints("counting").await.err()),
            ("dead letters", all.dead_letters("counting").await.err()),
            ("partitions", all.partitions("last").await.err()),
        ];
        for (what, error) in refused {
            let error = error.unwrap_or_else(|| panic!("{what} at ALL with a node dead"));
            // Unavailable, or a timeout while the peers still count the
            // dead node alive: either names the level it was asked at.
            let source = format!("{:?}", std::error::Error::source(&error));
            assert!(source.contains("consistency: All"), "{what} at ALL: {error}: {source}");
        }
        append(&events, "c", 1).await;
        let at_all = Projector::new(
            Arc::clone(&projection),
            Arc::clone(&log),
            Arc::new(at_level(&config, Consistency::All).await),
        );
        assert!(at_all.catch_up().await.is_err(), "a commit at ALL with a node dead");
    };
    // The node comes back whatever the assertions found.
    let outcome = AssertUnwindSafe(outcome).catch_unwind().await;
    ring(&["start", "--node", "3"]);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    catch_up(&projector).await;
    let all = at_level(&config, Consistency::All).await;
    for view in ["totals", "shared_totals"] {
        assert_eq!(total(&all, view).await, Some(json!({ "events": 6 })), "{view} on every replica");
    }
    assert_eq!(all.checkpoint("counting", 0).await.expect("checkpoint at ALL").position, 6);
    drop_keyspace(&config).await;
}

/// The replication factor: 3 on the ring unless configured; a keyspace that
/// exists keeps its own (with a warning), and a level waiting for more
/// replicas than it keeps is refused, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyspace_keeps_the_replication_it_was_created_with() {
    ring(&["start"]);
    let mut config = ring_config();
    config.replication_factor = Some(1);
    let one =
        CassandraReadStore::connect(&config, Counting { shared: false }.views()).await.expect("connect");
    assert_eq!((one.replication_factor(), replication(&one).await.as_str()), (1, "1"));
    config.replication_factor = None;
    let again =
        CassandraReadStore::connect(&config, Counting { shared: false }.views()).await.expect("connect");
    assert_eq!(again.replication_factor(), 1, "the existing keyspace's, not the ring's 3");
    config.consistency = Consistency::Two;
    let refused = CassandraReadStore::connect(&config, Counting { shared: false }.views())
        .await
        .expect_err("TWO on one replica");
    assert!(refused.to_string().contains("waits for 2 replicas, the keyspace keeps 1"), "{refused}");
    drop_keyspace(&config).await;
}
