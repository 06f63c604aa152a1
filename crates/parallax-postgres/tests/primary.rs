//! A pool on a host list keeps to the primary: it finds it whichever host
//! is named first, refuses a list without one by name, and after the
//! primary is killed and its standby promoted, appends, the log and the
//! leases go on on the new primary with every acknowledged event there.
//!
//! Runs on a standby pair of its own (`scripts/services/postgres start
//! --standby` on ports 5435 and 5436, folder `postgres-pair-test`), which
//! the test kills, promotes and builds again: the fault suite's pair on
//! 5433 and 5434 is never touched.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use parallax_core::{AppendOutcome, AppendRequest, EventLog, EventStore, ExpectedVersion, Leases};
use parallax_postgres::{migrate_write, pool, PgEventStore, PgLeases, PgStoreOptions};
use sqlx::postgres::PgPool;
use uuid::Uuid;

const PORTS: [u16; 2] = [5435, 5436];

/// `scripts/services/postgres <verb> [--standby]` on the test's pair; its stdout.
fn pair(verb: &str) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services/postgres");
    let mut command = Command::new(script);
    command.arg(verb);
    if verb != "promote" {
        command.arg("--standby");
    }
    let output = command
        .env("PARALLAX_POSTGRES_PAIR_PORTS", format!("{} {}", PORTS[0], PORTS[1]))
        .env("PARALLAX_POSTGRES_PAIR_NAME", "postgres-pair-test")
        .output()
        .unwrap_or_else(|e| panic!("run scripts/services/postgres {verb}: {e}"));
    assert!(
        output.status.success(),
        "scripts/services/postgres {verb} --standby failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn url(ports: [u16; 2], database: &str) -> String {
    format!("postgres://parallax:parallax@127.0.0.1:{},127.0.0.1:{}/{database}", ports[0], ports[1])
}

/// The port of the server `pool` is connected to, which must be a primary.
async fn primary_port(pool: &PgPool) -> u16 {
    let (port, standby): (i32, bool) = sqlx::query_as("SELECT inet_server_port(), pg_is_in_recovery()")
        .fetch_one(pool)
        .await
        .expect("ask the server");
    assert!(!standby, "the pool reached a standby on port {port}");
    u16::try_from(port).expect("a port")
}

fn append_request(n: usize) -> AppendRequest {
    AppendRequest {
        stream_id: format!("test-{n}"),
        expected_version: ExpectedVersion::Any,
        events: vec![common::event(n)],
        idempotency: None,
        reads: Vec::new(),
    }
}

/// Appends until the store acknowledges (the primary may be gone for a while).
async fn append_until_acknowledged(store: &PgEventStore, n: usize) {
    let attempts = tokio::time::timeout(Duration::from_secs(120), async {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match store.append(append_request(n)).await {
                Ok(AppendOutcome::Appended { .. }) => return attempts,
                Ok(other) => panic!("expected an append, got {other:?}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("the store accepts appends again within 120 s");
    eprintln!("append {n} acknowledged after {attempts} attempt(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_on_a_host_list_follows_the_primary_through_a_promotion() {
    pair("start");
    let admin = pool(&url(PORTS, "parallax"), 1).await.expect("a pool on the pair");
    let old = primary_port(&admin).await;
    let standby = if old == PORTS[0] { PORTS[1] } else { PORTS[0] };

    // Named second, the primary is found all the same; without it, the
    // error names every host and why it is not the one.
    let reversed = pool(&url([standby, old], "parallax"), 1).await.expect("a pool, standby first");
    assert_eq!(primary_port(&reversed).await, old);
    reversed.close().await;
    let error = pool(&url([standby, 1], "parallax"), 1).await.expect_err("no primary on the list");
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{standby} is a standby")), "{message}");
    assert!(message.contains("127.0.0.1:1: "), "{message}");
    assert!(!message.contains(":parallax@"), "the password shows: {message}");

    let database = format!("parallax_test_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await
        .expect("create a test database");
    admin.close().await;
    let events = pool(&url(PORTS, &database), 8).await.expect("a pool on the test database");
    migrate_write(&events).await.expect("create the write schema");
    let store = PgEventStore::new(events.clone(), PgStoreOptions::default());
    let log = store.log();
    for n in 0..20 {
        append_until_acknowledged(&store, n).await;
    }
    let leases = PgLeases::new(events.clone()).retry(Duration::from_millis(100));
    let lease = leases.acquire("relay").await.expect("take the lease");
    lease.save(15).await.expect("save a checkpoint");

    pair("kill");
    pair("promote");
    tokio::time::timeout(Duration::from_secs(60), lease.lost())
        .await
        .expect("the lease is lost with its primary");
    append_until_acknowledged(&store, 20).await;

    assert_eq!(primary_port(&events).await, standby, "the pool follows the promoted standby");
    let read = log.read(0, 100).await.expect("read the log on the new primary");
    let numbers: Vec<u64> = read
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.payload).expect("JSON")["n"].as_u64().expect("n")
        })
        .collect();
    assert_eq!(numbers, (0..=20).collect::<Vec<u64>>(), "every acknowledged event, in order, once");
    let taken = tokio::time::timeout(Duration::from_secs(60), leases.acquire("relay"))
        .await
        .expect("the lease is free on the new primary")
        .expect("take the lease on the new primary");
    assert_eq!(taken.epoch(), lease.epoch() + 1, "the next epoch fences the holder before the loss");
    assert_eq!(taken.checkpoint().await.expect("read the checkpoint"), 15, "the checkpoint saved before");
    drop(taken);
    events.close().await;

    // The old primary, built again as the new one's standby.
    pair("start");
    let admin = pool(&url(PORTS, "parallax"), 1).await.expect("a pool on the rebuilt pair");
    assert_eq!(primary_port(&admin).await, standby);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {database} WITH (FORCE)")))
        .execute(&admin)
        .await
        .expect("drop the test database");
    admin.close().await;
    pair("stop");
}
