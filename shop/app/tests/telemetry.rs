//! Metrics, traces and readiness: `/metrics` after commands, a command's
//! `traceparent` in its events' metadata and in the projector's spans,
//! `/ready` flipping as projections catch up (embedded shops in this
//! process), and the trace crossing Kafka to a projector process (the
//! distributed shape).

#![allow(clippy::too_many_lines, reason = "each test reads as one scenario, start to end")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use common::distributed::{Deployment, ReadDb};
use parallax_core::{EventRecord, EventStore, TraceParent};
use parallax_sqlite::SqliteEventStore;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use shop::{Role, RunningApp, Settings};

/// How long a poll may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-{CALLER_SPAN}-01")
}

// ---- an embedded shop in this process ----

struct Shop {
    app: RunningApp,
    base: String,
    client: Client,
}

async fn start(dir: &Path, roles: &[Role], max_lag: u64) -> Shop {
    let mut settings = Settings::embedded("127.0.0.1:0".parse().expect("an address"), dir.into());
    if !roles.is_empty() {
        settings.roles = roles.iter().copied().collect();
    }
    settings.readiness.max_lag = max_lag;
    let app = shop::start(settings).await.expect("start the shop");
    Shop { base: app.url(), app, client: common::http_client() }
}

impl Shop {
    async fn post(&self, path: &str, body: Value, traceparent: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = request.send().await.expect("send a command");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn command(&self, path: &str, body: Value, traceparent: Option<&str>) -> String {
        let (status, answer) = self.post(path, body, traceparent).await;
        assert!(status.is_success(), "POST {path}: {status} {answer}");
        answer["token"].as_str().unwrap_or_else(|| panic!("no token in {answer}")).to_owned()
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.expect("send a query");
        (response.status(), response.text().await.expect("read the body"))
    }

    async fn json(&self, path: &str) -> (StatusCode, Value) {
        let (status, text) = self.get(path).await;
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}")))
    }

    /// Waits (through the API's own bounded wait) until the views absorbed `token`.
    async fn absorbed(&self, path: &str, token: &str) {
        let (status, body) = self.get(&format!("{path}?consistent_with={token}&wait_ms=10000")).await;
        assert_eq!(status, StatusCode::OK, "GET {path} after {token}: {body}");
    }

    async fn metrics(&self) -> Metrics {
        let response = self.client.get(format!("{}/metrics", self.base)).send().await.expect("GET /metrics");
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().expect("a text header").to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        Metrics::parse(&response.text().await.expect("read /metrics"))
    }

    /// Polls `path` until `done` holds.
    async fn eventually_json(&self, path: &str, done: impl Fn(StatusCode, &Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (status, body) = self.json(path).await;
            if done(status, &body) {
                return body;
            }
            assert!(start.elapsed() < PATIENCE, "GET {path} never got there; last: {status} {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---- the Prometheus text format, as a scraper reads it ----

/// Samples: (series name, labels) → value.
struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines().filter(|line| !line.is_empty() && !line.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|e| panic!("a sample value in {line:?}: {e}"));
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("a closing brace"))),
            };
            samples.push((name.to_owned(), labels, value));
        }
        Self(samples)
    }

    /// Every sample of `name` whose labels include `labels`.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, l, v)| (l, *v))
            .collect()
    }

    /// The one sample of `name` with exactly these labels.
    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> =
            self.find(name, labels).into_iter().filter(|(l, _)| l.len() == labels.len()).collect();
        match found.as_slice() {
            [(_, value)] => *value,
            other => panic!("{name}{labels:?}: expected one sample, found {other:?}"),
        }
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"').expect("a closing quote");
        labels.insert(key.trim_start_matches(',').to_owned(), after[..end].to_owned());
        rest = &after[end + 1..];
    }
    labels
}

// ---- logs of this process ----

/// What the projectors of this process log at debug (installed once per test binary).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("parallax_runtime::projector=debug"))
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .try_init()
            .expect("the only subscriber of this test binary");
        logs
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_lines(logs: &Mutex<Vec<u8>>, needles: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
    text.lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .map(str::to_owned)
        .collect()
}

async fn stored_events(dir: &Path) -> Vec<EventRecord> {
    let store = SqliteEventStore::open(&dir.join("events.db")).expect("open the event store");
    store.read_all(0, 10_000).await.expect("read the event store")
}

fn trace_of(event: &EventRecord) -> TraceParent {
    event.metadata.traceparent.unwrap_or_else(|| panic!("no traceparent in {event:?}"))
}

// ---- the tests ----

#[tokio::test]
async fn metrics_show_commands_group_commits_lag_dead_letters_and_requests() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let shop = start(dir.path(), &[], 1_000).await;
    let product = json!({ "sku": "M-1", "name": "Mug", "price_cents": 800, "stock": 50 });
    shop.command("/api/products", product, None).await;
    for cart in ["c1", "c2", "c3"] {
        shop.command(&format!("/api/carts/{cart}/items"), json!({ "sku": "M-1", "quantity": 1 }), None).await;
    }
    let token = shop.command("/api/products/M-1/restock", json!({ "quantity": 5 }), None).await;
    // Refused: no such product.
    let (status, _) = shop.post("/api/carts/c4/items", json!({ "sku": "nope", "quantity": 1 }), None).await;
    assert!(status.is_client_error(), "{status}");
    shop.absorbed("/api/products/M-1", &token).await;
    let (status, _) = shop.get("/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let metrics = shop.metrics().await;
    // One latency sample per command sent, by type and outcome.
    let commands = "shop_command_duration_seconds_count";
    assert_eq!(metrics.value(commands, &[("command", "product.register"), ("outcome", "ok")]), 1.0);
    assert_eq!(metrics.value(commands, &[("command", "cart.add_item"), ("outcome", "ok")]), 3.0);
    assert_eq!(metrics.value(commands, &[("command", "product.restock"), ("outcome", "ok")]), 1.0);
    assert_eq!(metrics.value(commands, &[("command", "cart.add_item"), ("outcome", "refused")]), 1.0);
    let sent: f64 = metrics.find(commands, &[]).iter().map(|(_, count)| count).sum();
    assert_eq!(sent, 6.0, "every command sent, and nothing else");
    let buckets = metrics.find("shop_command_duration_seconds_bucket", &[("command", "cart.add_item")]);
    assert!(
        buckets.iter().any(|(labels, _)| labels["le"] == "+Inf"),
        "a histogram, with buckets: {buckets:?}"
    );

    // Every append went through a group commit (the saga's checkpoints and
    // snapshots may add requests, never remove any).
    let groups = metrics.value("parallax_event_store_group_size_count", &[("store", "sqlite")]);
    let requests = metrics.value("parallax_event_store_group_size_sum", &[("store", "sqlite")]);
    assert!(groups >= 1.0 && requests >= 5.0 && requests >= groups, "{groups} groups of {requests} requests");
    assert!(metrics.value("parallax_event_store_head", &[]) >= 5.0);

    // HTTP requests by method, matched route and status.
    let http = "http_server_request_duration_seconds_count";
    let route = [("method", "POST"), ("route", "/api/carts/{cart_id}/items"), ("status", "200")];
    assert_eq!(metrics.value(http, &route), 3.0);
    let route = [("method", "POST"), ("route", "/api/carts/{cart_id}/items"), ("status", "404")];
    assert_eq!(metrics.value(http, &route), 1.0);
    assert_eq!(metrics.value(http, &[("method", "GET"), ("route", "unmatched"), ("status", "404")]), 1.0);

    // Per projection: its lag in the (one, embedded) partition, caught up
    // once its projector has stepped past the last command; no dead letters.
    let projections: BTreeSet<&str> = shop_read::all_projections().iter().map(|p| p.name()).collect();
    let start = Instant::now();
    loop {
        let metrics = shop.metrics().await;
        let lag: BTreeMap<&str, f64> = projections
            .iter()
            .map(|&name| {
                (name, metrics.value("parallax_projector_lag", &[("projection", name), ("partition", "0")]))
            })
            .collect();
        for &name in &projections {
            assert_eq!(metrics.value("parallax_projection_dead_letters", &[("projection", name)]), 0.0);
        }
        if lag.values().all(|&lag| lag == 0.0) {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "projector lag never reached 0: {lag:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.find("parallax_relay_lag", &[]).is_empty(),
        "no relay in the embedded shape, so no relay lag"
    );
    // Each event a projection applied, once, with its lag: the carts
    // projection applied the three items added (the refused command
    // appended nothing).
    let metrics = shop.metrics().await;
    let lag = "parallax_projector_event_lag_seconds";
    assert_eq!(metrics.value(&format!("{lag}_count"), &[("projection", "carts")]), 3.0);
    let buckets = metrics.find(&format!("{lag}_bucket"), &[("projection", "carts")]);
    assert!(buckets.len() > 10, "a histogram with the lag's buckets: {buckets:?}");
    shop.app.shutdown().await;
}

#[tokio::test]
async fn a_commands_traceparent_reaches_its_events_the_saga_and_the_projector() {
    let logs = captured_logs();
    let dir = tempfile::tempdir().expect("a temp folder");
    let shop = start(dir.path(), &[], 1_000).await;
    let product = json!({ "sku": "T-1", "name": "Tea", "price_cents": 350, "stock": 10 });
    let token = shop.command("/api/products", product, Some(&traceparent(TRACE))).await;
    // An invalid traceparent starts a new trace (it is not an error).
    let item = json!({ "sku": "T-1", "quantity": 2 });
    shop.command("/api/carts/t1/items", item.clone(), Some("00-NOT-A-TRACE-01")).await;
    shop.command("/api/carts/t2/items", item, None).await;
    shop.absorbed("/api/products/T-1", &token).await;

    let events = stored_events(dir.path()).await;
    assert_eq!(events.len(), 3, "{events:?}");
    let registered = trace_of(&events[0]);
    assert_eq!(registered.trace_id().to_string(), TRACE, "the caller's trace");
    assert_ne!(registered.parent_id().to_string(), CALLER_SPAN, "the command is a span of its own");
    let (second, third) = (trace_of(&events[1]), trace_of(&events[2]));
    assert_ne!(second.trace_id().to_string(), TRACE, "an invalid traceparent starts a new trace");
    assert_ne!(second.trace_id(), third.trace_id(), "every request without one starts a new trace");

    // The projector applied the registration in a span with the caller's trace id.
    let start = Instant::now();
    loop {
        let projected =
            log_lines(&logs, &["event projected", "projection=\"catalog\"", &format!("trace_id={TRACE}")]);
        if !projected.is_empty() {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "the catalog projector never logged trace {TRACE}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The saga's commands continue the checkout's trace.
    let checkout_trace = "0af7651916cd43dd8448eb211c80319c";
    let (status, placed) = shop
        .post("/api/carts/t2/checkout", json!({ "customer_id": "alice" }), Some(&traceparent(checkout_trace)))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{placed}");
    let order = placed["order_id"].as_str().expect("an order id").to_owned();
    shop.eventually_json(&format!("/api/orders/{order}"), |status, order| {
        status == StatusCode::OK && order["status"] == "confirmed"
    })
    .await;
    let events = stored_events(dir.path()).await;
    let of_order: Vec<&EventRecord> =
        events.iter().filter(|e| e.stream_id == format!("order-{order}")).collect();
    assert!(!of_order.is_empty(), "the saga placed the order");
    for event in of_order {
        assert_eq!(trace_of(event).trace_id().to_string(), checkout_trace, "{}", event.event_type);
    }
    shop.app.shutdown().await;
}

#[tokio::test]
async fn ready_waits_for_the_projections_to_catch_up() {
    let dir = tempfile::tempdir().expect("a temp folder");
    // Commands and queries, no projector: the views cannot move.
    let front = start(dir.path(), &[Role::Command, Role::Query], 0).await;
    let (status, body) = front.json("/ready").await;
    assert_eq!(status, StatusCode::OK, "nothing to absorb yet: {body}");
    let (status, _) = front.get("/health").await;
    assert_eq!(status, StatusCode::OK);

    let product = json!({ "sku": "R-1", "name": "Rice", "price_cents": 200, "stock": 3 });
    front.command("/api/products", product, None).await;
    front.command("/api/products/R-1/restock", json!({ "quantity": 2 }), None).await;
    // A measurement answers for a second: a later one sees the commands.
    let body = front.eventually_json("/ready", |status, _| status == StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["ready"], json!(false), "{body}");
    assert_eq!(body["roles"]["command"]["ready"], json!(true), "the event store answers: {body}");
    let query = &body["roles"]["query"];
    assert_eq!(query["ready"], json!(false), "{body}");
    assert!(query["reason"].as_str().is_some_and(|r| r.contains("behind")), "{body}");
    let projections = query["projections"].as_array().expect("per projection");
    assert_eq!(projections.len(), shop_read::all_projections().len(), "{body}");
    let catalog = projections.iter().find(|p| p["name"] == "catalog").expect("the catalog");
    assert_eq!((catalog["lag"].clone(), catalog["ready"].clone()), (json!(2), json!(false)), "{body}");
    let (status, _) = front.get("/health").await;
    assert_eq!(status, StatusCode::OK, "alive, though not ready");

    // A projector process over the same files: the views catch up, and both are ready.
    let back = start(dir.path(), &[Role::Projector], 0).await;
    front.eventually_json("/ready", |status, _| status == StatusCode::OK).await;
    let body = back.eventually_json("/ready", |status, _| status == StatusCode::OK).await;
    let workers = body["roles"]["projector"]["workers"].as_array().expect("the projector loops");
    assert_eq!(workers.len(), shop_read::all_projections().len(), "{body}");
    assert!(workers.iter().all(|w| w["state"] == "running"), "{body}");
    back.app.shutdown().await;
    front.app.shutdown().await;
}

/// The distributed shape: the trace of a command sent to the command
/// process travels in the event's metadata, as the Kafka message's
/// `traceparent` header, to the projector process's log; `/metrics` and
/// `/ready` of every process answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_crosses_kafka_to_the_projector_process() {
    let layout: &[(&str, &[&str])] = &[
        ("command", &["command"]),
        ("relay", &["relay"]),
        ("projector", &["projector"]),
        ("query", &["query"]),
    ];
    let log = "info,parallax_runtime::projector=debug";
    let deployment = Deployment::start_logging(layout, ReadDb::Postgres, Some(log)).await;
    let trace = "5e2f4c1d9a8b7c6d5e4f3a2b1c0d9e8f";
    let answer = deployment
        .app
        .client
        .post(format!("{}/api/products", deployment.app.base))
        .header("traceparent", traceparent(trace))
        .json(&json!({ "sku": "K-1", "name": "Kettle", "price_cents": 2500, "stock": 4 }))
        .send()
        .await
        .expect("send the command");
    assert_eq!(answer.status(), StatusCode::CREATED);
    let token =
        answer.json::<Value>().await.expect("a JSON answer")["token"].as_str().expect("a token").to_owned();
    let product = deployment.app.get_after("/api/products/K-1", &token).await;
    assert_eq!(product.status, StatusCode::OK, "{}", product.body);

    // In the event store…
    let events = deployment.events().await;
    let registered = events.iter().find(|e| e.stream_id == "product-K-1").expect("the registration");
    assert_eq!(trace_of(registered).trace_id().to_string(), trace);
    // …on the topic, as the `traceparent` header…
    let messages = deployment.read_topic().await;
    let message = messages
        .iter()
        .find(|m| m.key.as_deref() == Some("product-K-1"))
        .expect("the registration on the topic");
    let header = message.header("traceparent").unwrap_or_else(|| panic!("no traceparent: {message:?}"));
    assert_eq!(header, registered.metadata.traceparent.expect("checked").to_string());
    assert!(header.contains(trace), "{header}");
    // …and in the projector process's log.
    deployment
        .wait_for_log(
            "projector",
            &format!("trace_id={trace}}}: parallax_runtime::projector: event projected"),
            PATIENCE,
        )
        .await;

    // Every process answers /metrics and is ready.
    let client = common::http_client();
    for (name, _) in layout {
        let url = deployment.url(name);
        let start = Instant::now();
        loop {
            let response = client.get(format!("{url}/ready")).send().await.expect("GET /ready");
            let status = response.status();
            let body: Value = response.json().await.expect("a JSON body");
            if status == StatusCode::OK {
                assert_eq!(body["ready"], json!(true));
                break;
            }
            assert!(start.elapsed() < PATIENCE, "{name} is not ready: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = client.get(format!("{url}/metrics")).send().await.expect("GET /metrics").text().await;
        let metrics = Metrics::parse(&text.expect("read /metrics"));
        match *name {
            "command" => {
                let group = metrics.value("parallax_event_store_group_size_count", &[("store", "postgres")]);
                assert!(group >= 1.0, "{group}");
                let registered = [("command", "product.register"), ("outcome", "ok")];
                assert_eq!(metrics.value("shop_command_duration_seconds_count", &registered), 1.0);
            }
            "relay" => {
                assert_eq!(metrics.value("parallax_relay_active", &[("relay", "relay")]), 1.0);
                let lag = metrics.value("parallax_relay_lag", &[("relay", "relay")]);
                assert!(lag >= 0.0, "{lag}");
            }
            "projector" => {
                // The lag gauges appear once the projector has measured a
                // partition (Kafka's statistics come every second).
                let start = Instant::now();
                let mut metrics = metrics;
                while metrics.find("parallax_projector_lag", &[("projection", "catalog")]).is_empty() {
                    assert!(
                        start.elapsed() < PATIENCE,
                        "no lag gauge of the catalog: {} series",
                        metrics.0.len()
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let text =
                        client.get(format!("{url}/metrics")).send().await.expect("GET /metrics").text().await;
                    metrics = Metrics::parse(&text.expect("read /metrics"));
                }
            }
            _ => {
                let dead = metrics.value("parallax_projection_dead_letters", &[("projection", "catalog")]);
                assert_eq!(dead, 0.0);
            }
        }
    }
    deployment.stop().await;
}
