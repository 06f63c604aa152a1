//! The HTTP edge against clients that hold on, against the `shop` binary
//! with API keys: a request head that never completes, an idle kept-alive
//! connection and a request whose body never comes are closed or answered
//! within their timeouts; connections beyond the cap wait until one closes;
//! a consistency token naming a partition the log lacks is refused at once;
//! live event streams are capped per key and in all; `/ready` shows its
//! details to `admin` only, from one measurement a second; a client without
//! a key never makes the server read its body. And on PostgreSQL, idle live
//! streams share one tail instead of each polling the write DB.
//!
//! Bounds are generous: a timeout configured to 1 s must have closed the
//! connection within 10 s; "held" means no answer within 1 s where an
//! answer would otherwise take milliseconds.

#[path = "common/binary.rs"]
#[allow(dead_code)]
mod binary;

use std::time::Duration;

use binary::{shop_command, Shop};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const COMMAND_KEY: &str = "command-key-4c1d";
const READER_KEY: &str = "reader-key-0a9e";
const VIEWER_KEY: &str = "viewer-key-77b3";
const WATCHER_KEY: &str = "watcher-key-e5f2";
const ADMIN_KEY: &str = "admin-key-2d68";

/// What "closed" may take, for a timeout of 1 s.
const CLOSED_WITHIN: Duration = Duration::from_secs(10);
/// What "held" means, where an answer takes milliseconds.
const HELD_FOR: Duration = Duration::from_secs(1);

fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `SHOP__API_KEYS`: a command key, three query keys, an admin key.
fn api_keys() -> String {
    let keys = [
        ("writer", COMMAND_KEY, "command"),
        ("reader", READER_KEY, "query"),
        ("viewer", VIEWER_KEY, "query"),
        ("watcher", WATCHER_KEY, "query"),
        ("ops", ADMIN_KEY, "admin"),
    ];
    let keys: Vec<String> = keys
        .iter()
        .map(|(name, key, scope)| {
            format!(r#"{{name="{name}",key_sha256="{}",scopes=["{scope}"]}}"#, sha256_hex(key))
        })
        .collect();
    format!("[{}]", keys.join(","))
}

/// `shop serve` embedded on a fresh folder with the API keys and `http`
/// settings (`SHOP__HTTP__<NAME>`), once it answers `/health`.
async fn start(http: &[(&str, &str)]) -> (Shop, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temp folder");
    let mut command = shop_command(["serve", "--data-dir"]);
    command.arg(dir.path()).env("SHOP__API_KEYS", api_keys());
    for (name, value) in http {
        command.env(format!("SHOP__HTTP__{}", name.to_uppercase()), value);
    }
    let shop = Shop::spawn(command);
    // A client of its own: its kept-alive connection goes with it.
    let client = Client::new();
    for _ in 0..500 {
        if let Ok(response) = client.get(format!("{}/health", shop.base)).send().await {
            if response.status() == StatusCode::OK {
                return (shop, dir);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the shop did not answer on {}", shop.base);
}

async fn connect(shop: &Shop) -> TcpStream {
    TcpStream::connect(shop.base.trim_start_matches("http://")).await.expect("connect to the shop")
}

/// Everything the server sends until it closes the connection; `None` if it
/// is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let reading = async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(within, reading).await.is_ok();
    closed.then(|| String::from_utf8_lossy(&received).into_owned())
}

/// The status line of the answer, if it comes within `within`.
async fn status_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let reading = async {
        let mut byte = [0u8; 1];
        while !received.ends_with(b"\r\n") {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(_) => received.push(byte[0]),
            }
        }
    };
    let _ = tokio::time::timeout(within, reading).await;
    received.ends_with(b"\r\n").then(|| String::from_utf8_lossy(&received).trim_end().to_owned())
}

/// A request that is answered and leaves the connection open: the whole
/// answer to `GET /health`.
async fn health_over(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send a request");
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    // The answer is `{"status":"ok"}` with a Content-Length: done at its closing brace.
    while !received.ends_with(b"}") {
        let n = tokio::time::timeout(CLOSED_WITHIN, stream.read(&mut buffer))
            .await
            .expect("an answer to /health")
            .expect("read the answer");
        assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn a_request_head_that_does_not_arrive_in_time_closes_the_connection() {
    let (shop, _dir) = start(&[("header_read_timeout_secs", "1"), ("idle_timeout_secs", "1")]).await;

    // Part of a head, then nothing.
    let mut stream = connect(&shop).await;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.expect("send part of a head");
    assert!(closed_within(&mut stream, CLOSED_WITHIN).await.is_some(), "a silent half head was held");

    // A head that trickles in, a byte every 200 ms (never idle for 1 s): the
    // header-read timeout, not the idle one, closes it.
    let mut stream = connect(&shop).await;
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        let head = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: {}", "a".repeat(100));
        for byte in head.bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let closed = async {
        let mut buffer = [0u8; 1024];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let outcome = tokio::time::timeout(CLOSED_WITHIN, async {
        tokio::select! {
            _ = closed => true,
            _ = trickle => false,
        }
    })
    .await;
    assert_eq!(outcome, Ok(true), "a trickling head was held");

    // Whole requests are answered as ever.
    let mut stream = connect(&shop).await;
    assert!(health_over(&mut stream).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let (shop, _dir) = start(&[("header_read_timeout_secs", "60"), ("idle_timeout_secs", "1")]).await;
    let mut stream = connect(&shop).await;
    assert!(health_over(&mut stream).await.starts_with("HTTP/1.1 200"));
    assert_eq!(
        closed_within(&mut stream, CLOSED_WITHIN).await.as_deref(),
        Some(""),
        "an idle connection was held"
    );
}

#[tokio::test]
async fn a_request_whose_body_does_not_come_is_answered_503() {
    let (shop, _dir) = start(&[
        ("header_read_timeout_secs", "60"),
        ("idle_timeout_secs", "60"),
        ("request_timeout_secs", "1"),
    ])
    .await;
    let mut stream = connect(&shop).await;
    let head = format!(
        "POST /api/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {COMMAND_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"sku\": "
    );
    stream.write_all(head.as_bytes()).await.expect("send the head and part of the body");
    let status = status_within(&mut stream, CLOSED_WITHIN).await;
    assert_eq!(
        status.as_deref(),
        Some("HTTP/1.1 503 Service Unavailable"),
        "a body that never came was waited for"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (shop, _dir) =
        start(&[("max_connections", "2"), ("header_read_timeout_secs", "60"), ("idle_timeout_secs", "60")])
            .await;
    // Two kept-alive connections fill the cap (answered: so they were served).
    let mut first = connect(&shop).await;
    assert!(health_over(&mut first).await.starts_with("HTTP/1.1 200"));
    let mut second = connect(&shop).await;
    assert!(health_over(&mut second).await.starts_with("HTTP/1.1 200"));

    // A third waits in the backlog.
    let mut third = connect(&shop).await;
    third.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send a request");
    assert_eq!(status_within(&mut third, HELD_FOR).await, None, "a connection beyond the cap was served");

    // Once one closes, it is served.
    drop(first);
    let status = status_within(&mut third, CLOSED_WITHIN).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"), "the waiting connection was not served");
    assert!(health_over(&mut second).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_token_naming_a_partition_the_log_lacks_is_refused_at_once() {
    let (shop, _dir) = start(&[]).await;
    let client = Client::new();
    let query = |token: &str| {
        let url = format!("{}/api/products?consistent_with={token}&wait_ms=10000", shop.base);
        let request = client.get(url).bearer_auth(READER_KEY);
        async move { request.send().await.expect("a query") }
    };
    // The embedded log has one partition, 0.
    for token in ["p2.4096.1", "p2.1.1"] {
        let response = query(token).await;
        let status = response.status();
        let problem: Value = response.json().await.expect("a problem");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{token}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("the log has 1"), "{token}: {detail}");
    }
    assert_eq!(query("p2.0.0").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_without_a_key_never_makes_the_server_read_its_body() {
    let (shop, _dir) = start(&[]).await;
    for framing in ["Transfer-Encoding: chunked", "Content-Length: 1000000"] {
        let mut stream = connect(&shop).await;
        let head = format!(
            "POST /api/products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("send the head");
        let status = status_within(&mut stream, CLOSED_WITHIN).await;
        assert_eq!(status.as_deref(), Some("HTTP/1.1 401 Unauthorized"), "{framing}, no body");
    }
}

#[tokio::test]
async fn live_streams_are_capped_per_key_and_in_all() {
    let (shop, _dir) = start(&[("max_streams", "2"), ("max_streams_per_key", "1")]).await;
    let client = Client::new();
    let open = |key: &'static str| {
        let request = client.get(format!("{}/api/events/stream?api_key={key}", shop.base));
        async move { request.send().await.expect("open a stream") }
    };
    let reader = open(READER_KEY).await;
    assert_eq!(reader.status(), StatusCode::OK);
    let again = open(READER_KEY).await;
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS, "a second stream of one key");
    let problem: Value = again.json().await.expect("a problem");
    assert_eq!(problem["status"], 429, "{problem}");

    let viewer = open(VIEWER_KEY).await;
    assert_eq!(viewer.status(), StatusCode::OK, "another key's stream");
    let watcher = open(WATCHER_KEY).await;
    assert_eq!(watcher.status(), StatusCode::TOO_MANY_REQUESTS, "a stream beyond the cap of all");

    // A stream whose client went gives its place back.
    drop(reader);
    for attempt in 0.. {
        let reopened = open(READER_KEY).await;
        if reopened.status() == StatusCode::OK {
            break;
        }
        assert!(attempt < 100, "the place of a closed stream was not given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(viewer);
}

#[tokio::test]
async fn ready_shows_its_details_to_admin_only_from_one_measurement_a_second() {
    let (shop, _dir) = start(&[]).await;
    let client = Client::new();
    let ready = |key: Option<&'static str>| {
        let mut request = client.get(format!("{}/ready", shop.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move {
            let response = request.send().await.expect("ask /ready");
            let status = response.status();
            (status, response.json::<Value>().await.expect("a JSON answer"))
        }
    };
    for key in [None, Some("not-a-key"), Some(READER_KEY), Some(COMMAND_KEY)] {
        let (status, body) = ready(key).await;
        let object = body.as_object().expect("an object");
        assert_eq!(object.keys().collect::<Vec<_>>(), ["ready"], "{key:?}: {body}");
        assert_eq!(body["ready"] == true, status == StatusCode::OK, "{key:?}: {status} {body}");
    }
    let (_, details) = ready(Some(ADMIN_KEY)).await;
    assert!(details["roles"]["query"]["projections"].is_array(), "{details}");

    // Calls at once share a measurement (two at most: one may straddle a second).
    let calls: Vec<_> = (0..20).map(|_| ready(Some(ADMIN_KEY))).collect();
    let measured: std::collections::BTreeSet<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|(_, body)| body["measured_at"].as_str().expect("measured_at").to_owned())
        .collect();
    assert!(measured.len() <= 2, "{} measurements for 20 calls", measured.len());
}

// ---- PostgreSQL: idle streams share one tail ----

fn postgres_url() -> String {
    std::env::var("PARALLAX_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://parallax:parallax@127.0.0.1:5432/parallax".to_owned())
}

/// `url` naming `database` instead of its own.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..].find('/').map_or(base.len(), |i| authority + i);
    let query = query.map(|query| format!("?{query}")).unwrap_or_default();
    format!("{}/{database}{query}", &base[..path])
}

/// Index and sequential scans of the events table so far.
async fn scans_of_events(db: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'events'",
    )
    .fetch_one(db)
    .await
    .expect("read the events table's scans")
}

/// How many times the events table is scanned over 3 s.
async fn scans_over_a_while(db: &mut PgConnection) -> i64 {
    let before = scans_of_events(db).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    scans_of_events(db).await - before
}

#[tokio::test]
async fn idle_live_streams_on_postgresql_share_one_tail() {
    let admin_url = postgres_url();
    let database = format!("pxt_edge_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = PgConnection::connect(&admin_url).await.expect("connect to PostgreSQL");
    // The name is ours: hex digits and underscores.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{database}\"")))
        .execute(&mut admin)
        .await
        .expect("create a database");
    let url = with_database(&admin_url, &database);

    let dir = tempfile::tempdir().expect("create a temp folder");
    let mut settings =
        shop::Settings::embedded("127.0.0.1:0".parse().expect("an address"), dir.path().into());
    settings.write_db.kind = shop::config::DbKind::Postgres;
    settings.write_db.url = Some(url.clone());
    settings.write_db.max_connections = 4;
    // Only the query role: nothing else tails the log.
    settings.roles = [shop::Role::Query].into_iter().collect();
    shop::migrate(&settings).await.expect("migrate");
    let app = shop::start(settings).await.expect("start the shop");
    let mut db = PgConnection::connect(&url).await.expect("connect to the write DB");

    let client = Client::new();
    let open = || async {
        let response = client
            .get(format!("{}/api/events/stream?after=0", app.url()))
            .send()
            .await
            .expect("open a stream");
        assert_eq!(response.status(), StatusCode::OK);
        response
    };
    let mut streams = vec![open().await];
    let one = scans_over_a_while(&mut db).await;
    for _ in 0..19 {
        streams.push(open().await);
    }
    let twenty = scans_over_a_while(&mut db).await;
    assert!(one > 0, "one stream never looked at the log");
    assert!(twenty < 2 * one + 100, "20 idle streams scanned the log {twenty} times in 3 s, one {one} times");

    drop(streams);
    app.shutdown().await;
    let _ = db.close().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)")))
        .execute(&mut admin)
        .await;
}
