//! The Cassandra fault only a ring has: one node of three dies under load
//! and comes back later (`scripts/services/cassandra start --nodes 3`, node
//! i on 127.0.0.(i+1):9042). The keyspace has three replicas and the store
//! reads and writes at `LOCAL_QUORUM` (the defaults on a ring of three), so
//! two live nodes are a quorum for every row and checkpoint.
//!
//! While the node is dead, [`kill_node`] watches what a user would see:
//! every projection must commit a checkpoint past the event store's head
//! as it was when the node died (the projectors go on at quorum), and the
//! query process must answer every read it is sent, the catalog and the
//! sales report (read at quorum; the sales rows are written by lightweight
//! transactions). It reports how long the slowest projection took to pass
//! that head. The node is started again after [`HOLD`] at the earliest,
//! and the scenario's next round waits for the load to make progress; the
//! final `shop check` compares every view with a rebuild and the history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parallax_core::{EventStore, Position};

use super::super::distributed::{services as single_services, Deployment, Services};
use super::{Cluster, Measured};

/// Nodes in the ring.
pub const NODES: u32 = 3;
/// How long a node stays dead at least.
const HOLD: Duration = Duration::from_secs(20);
/// How long a projection may take to pass the head while a node is dead.
const LIMIT: Duration = Duration::from_secs(90);
/// Between two looks at the checkpoints and two rounds of reads.
const POLL: Duration = Duration::from_millis(500);

/// `scripts/services/cassandra start --nodes 3`'s ring; its contact points
/// are `PARALLAX_TEST_CASSANDRA_RING`, else the script's three nodes.
const RING: Cluster = Cluster {
    service: "cassandra",
    size_option: "--nodes",
    size: NODES,
    addresses_env: "PARALLAX_TEST_CASSANDRA_RING",
    script_addresses: "127.0.0.2:9042,127.0.0.3:9042,127.0.0.4:9042",
};

/// The single nodes' services with the ring's contact points; starts every
/// node of the ring that is not running (a scenario that failed may have
/// left one down).
pub async fn services() -> Services {
    RING.run("start", None).await;
    Services { cassandra: RING.addresses(), ..single_services().await }
}

/// The node the next kill takes: 1, 2, 3, 1, … (node 1 is the first
/// contact point and a seed).
fn next_victim() -> u32 {
    static KILLS: AtomicU32 = AtomicU32::new(0);
    1 + KILLS.fetch_add(1, Ordering::Relaxed) % NODES
}

/// SIGKILL to one node of the ring; while it is dead, the projections must
/// pass the head the event store had when it died and the query process
/// must answer every read; then the node is started again. Returns how long
/// the slowest projection took to pass that head.
pub async fn kill_node(deployment: &Deployment) -> Measured {
    let victim = next_victim();
    // Connected while every node is up: the store's own schema checks
    // then need nothing of the dead one.
    let store = deployment.read_store().await;
    assert_eq!(replication(deployment).await, 3, "the keyspace's replication on a ring of {NODES}");
    let projections: Vec<String> =
        shop_read::all_projections().iter().map(|projection| projection.name().to_owned()).collect();
    RING.run("kill", Some(victim)).await;
    let killed = Instant::now();
    let head = deployment.event_store().await.head().await.expect("the event store's head");
    eprintln!("-- Cassandra node {victim} killed; the event store's head is at {head}");

    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("a client");
    let queries = deployment.url("query");
    let mut passed: BTreeMap<String, Duration> = BTreeMap::new();
    let (mut answered, mut failed) = (0_u64, Vec::new());
    while passed.len() < projections.len() || killed.elapsed() < HOLD {
        let pending: Vec<&String> = projections.iter().filter(|name| !passed.contains_key(*name)).collect();
        for name in pending {
            if furthest(store.as_ref(), name).await.is_some_and(|position| position > head) {
                passed.insert(name.clone(), killed.elapsed());
            }
        }
        for path in ["/api/products", "/api/reports/sales"] {
            match client.get(format!("{queries}{path}")).send().await {
                Ok(response) if response.status().is_success() => answered += 1,
                Ok(response) => failed.push(format!("{path}: {}", response.status())),
                Err(error) => failed.push(format!("{path}: {error}")),
            }
        }
        assert!(
            killed.elapsed() < LIMIT,
            "with Cassandra node {victim} dead for {LIMIT:?}, only {passed:?} of {projections:?} passed \
             position {head}:\n{}",
            deployment.tail("projector-1", 20)
        );
        tokio::time::sleep(POLL).await;
    }
    eprintln!(
        "-- with node {victim} dead {:.1} s: projections past {head} after {passed:?}; reads answered {answered}, \
         failed {}",
        killed.elapsed().as_secs_f64(),
        failed.len()
    );
    assert!(failed.is_empty(), "reads failed while Cassandra node {victim} was dead: {failed:?}");
    RING.run("start", Some(victim)).await;
    eprintln!("-- Cassandra node {victim} back after {:.1} s", killed.elapsed().as_secs_f64());
    let took = passed.values().max().copied().unwrap_or_default();
    Measured { took, what: "every projection past the head at the kill" }
}

/// The furthest position a projection's checkpoints have reached (its
/// active generation), if it could be read.
async fn furthest(store: &dyn parallax_core::ReadStore, projection: &str) -> Option<Position> {
    match store.checkpoints(projection).await {
        Ok(checkpoints) => checkpoints.iter().map(|(_, checkpoint)| checkpoint.position).max(),
        Err(error) => {
            eprintln!("-- reading the checkpoints of {projection}: {error}");
            None
        }
    }
}

/// The replication factor the deployment's keyspace was created with.
async fn replication(deployment: &Deployment) -> u32 {
    let cassandra = deployment.cassandra().await;
    let rows = cassandra
        .session()
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (cassandra.keyspace(),),
        )
        .await
        .expect("read the keyspace's replication")
        .into_rows_result()
        .expect("rows");
    let (replication,) =
        rows.first_row::<(std::collections::HashMap<String, String>,)>().expect("the keyspace's replication");
    replication["replication_factor"].parse().expect("a number")
}
