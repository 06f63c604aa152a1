//! A pool on a host list keeps to the primary: it finds it whichever host
//! is named first, refuses a list without one by name, and after the
//! primary is killed and its standby promoted, appends, the log and the
//! leases go on on the new primary with every acknowledged event there.
//!
//! After a promotion, callers that give up sooner than a connection takes
//! to open (HTTP handlers whose clients went away, on a loaded machine)
//! still get connections: the pool's follower opens them.
//!
//! Runs on a standby pair of its own (`scripts/services/postgres start
//! --standby` on ports 5435 and 5436, folder `postgres-pair-test`), which
//! the tests kill, promote and build again, one test at a time: the fault
//! suite's pair on 5433 and 5434 is never touched.
//!
//! The test process adopts the servers' orphaned processes and never reaps
//! them, as a container's first process may not (CI's does not): a killed
//! postmaster stays a zombie, which must not pass for a running server.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use parallax_core::{AppendOutcome, AppendRequest, EventLog, EventStore, ExpectedVersion, Leases};
use parallax_postgres::{migrate_write, pool, PgEventStore, PgLeases, PgStoreOptions};
use sqlx::postgres::{PgConnectOptions, PgPool};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

const PORTS: [u16; 2] = [5435, 5436];

/// The pair, one test at a time.
static PAIR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes this process the reaper of the orphans of its descendants (the
/// servers `pg_ctl` starts), which it never reaps.
fn adopt_orphans() {
    static ADOPT: std::sync::Once = std::sync::Once::new();
    ADOPT.call_once(|| nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper"));
}

/// `scripts/services/postgres <verb> [--standby]` on the test's pair; its stdout.
fn pair(verb: &str) -> String {
    adopt_orphans();
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
    let _pair = PAIR.lock().await;
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

/// A proxy on a port of its own to 127.0.0.1:`to` that holds every new
/// connection for `delay` before it connects it through: a server that
/// takes that long to open a connection, as a loaded machine's does.
async fn slow_to_connect(to: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
    let port = listener.local_addr().expect("the proxy's address").port();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut server) = TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_slower_to_connect_than_two_seconds_is_found() {
    // The test server (a primary) behind a proxy that takes 3 s to open a
    // connection, as a loaded machine's server does, after a host that
    // refuses: the pool waits up to its acquire timeout (10 s) for a host.
    let server_url = common::server_url();
    let server = PgConnectOptions::from_str(&server_url).expect("the test server's URL");
    let slow = slow_to_connect(server.get_port(), Duration::from_secs(3)).await;
    let (user, rest) = server_url.split_once('@').expect("a URL with credentials");
    let (_, database) = rest.split_once('/').expect("a URL with a database");
    let url = format!("{user}@127.0.0.1:1,127.0.0.1:{slow}/{database}");
    let slow_pool = pool(&url, 1).await.expect("the primary behind the slow proxy is found");
    assert_eq!(primary_port(&slow_pool).await, server.get_port(), "the pool is on the test server");
    slow_pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_give_up_before_a_connection_opens_are_served_after_a_promotion() {
    const OPENING: Duration = Duration::from_millis(500);
    const PATIENCE: Duration = Duration::from_millis(200);
    let _pair = PAIR.lock().await;
    pair("start");
    let admin = pool(&url(PORTS, "parallax"), 1).await.expect("a pool on the pair");
    let old = primary_port(&admin).await;
    admin.close().await;
    let standby = if old == PORTS[0] { PORTS[1] } else { PORTS[0] };
    // The standby only behind the proxy: once promoted, every connection
    // to it takes longer to open than a caller waits.
    let slow = slow_to_connect(standby, OPENING).await;
    let events = pool(&url([old, slow], "parallax"), 4).await.expect("a pool on the pair");
    assert_eq!(primary_port(&events).await, old);

    pair("kill");
    pair("promote");
    // Each caller gives up after PATIENCE, dropping whatever it was doing,
    // an acquire's connection half-opened among it. None could ever open
    // one itself.
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        let mut tries = 0_u32;
        loop {
            tries += 1;
            let asked = sqlx::query_scalar::<_, i32>("SELECT inet_server_port()").fetch_one(&events);
            if let Ok(Ok(port)) = tokio::time::timeout(PATIENCE, asked).await {
                return (port, tries);
            }
        }
    })
    .await
    .expect("a caller that waits 200 ms is served on the promoted standby within 60 s");
    eprintln!("served by port {} after {} tries", answered.0, answered.1);
    assert_eq!(answered.0, i32::from(standby), "served by the promoted standby");
    events.close().await;

    // The old primary, built again as the new one's standby.
    pair("start");
    pair("stop");
}
