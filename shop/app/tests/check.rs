//! `shop check` (`shop::check`) against real stores: a clean run is ok with
//! every count right, and each fault, injected alone, is named.
//!
//! The distributed cases need `scripts/services/postgres start` and
//! `scripts/services/kafka start`; each runs on a deployment of its own
//! (fresh databases and topic), with stream names of its own besides.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parallax_core::{ConsistencyToken, EventLog as _, EventStore};
use parallax_sqlite::{SqliteEventStore, SqliteReadStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shop::check::{check, CheckOptions, CheckReport, Model};

use common::distributed::{Deployment, STANDARD};
use common::TestApp;

/// One `add_item` as the history recorded it.
#[derive(Debug, Clone)]
struct Recorded {
    id: u64,
    cart: String,
    key: String,
    sku: String,
    quantity: i64,
    invoked_at: u64,
    /// Acknowledged: the position of the answer's token.
    position: Option<u64>,
    /// Acknowledged: the answer's token.
    token: Option<String>,
    completed_at: u64,
}

/// One `read_cart` as the history records it: what the query answered.
#[derive(Debug, Clone)]
struct Read {
    id: u64,
    cart: String,
    token: Option<String>,
    invoked_at: u64,
    completed_at: u64,
    /// `found`, `version`, `units` per SKU.
    shown: Value,
}

impl Read {
    fn lines(&self) -> Vec<Value> {
        let mut invoke = json!({
            "id": self.id, "worker": 0, "type": "invoke", "f": "read_cart",
            "stream": format!("cart-{}", self.cart), "at_us": self.invoked_at,
        });
        if let Some(token) = &self.token {
            invoke["token"] = json!(token);
        }
        let ok = json!({ "id": self.id, "worker": 0, "type": "ok", "at_us": self.completed_at, "read": self.shown });
        vec![invoke, ok]
    }
}

impl Recorded {
    fn invoke(&self, at: u64) -> Value {
        json!({
            "id": self.id, "worker": 0, "type": "invoke", "f": "add_item",
            "stream": format!("cart-{}", self.cart), "key": self.key, "sku": self.sku,
            "quantity": self.quantity, "at_us": at,
        })
    }

    fn ok(&self, at: u64) -> Value {
        json!({ "id": self.id, "worker": 0, "type": "ok", "at_us": at, "position": self.position })
    }

    fn fail(&self, at: u64, status: u16) -> Value {
        json!({ "id": self.id, "worker": 0, "type": "fail", "at_us": at, "status": status, "error": "refused" })
    }

    /// Its two lines as they happened.
    fn lines(&self) -> Vec<Value> {
        let completion = match self.position {
            Some(_) => self.ok(self.completed_at),
            None => self.fail(self.completed_at, 422),
        };
        vec![self.invoke(self.invoked_at), completion]
    }
}

/// A load driver in miniature: `add_item` commands with idempotency keys,
/// each recorded as the fault suite's driver records it.
struct Driver {
    clock: Instant,
    next: u64,
    ops: Vec<Recorded>,
}

impl Driver {
    fn new() -> Self {
        Self { clock: Instant::now(), next: 1, ops: Vec::new() }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_micros()).expect("microseconds fit")
    }

    /// Adds `quantity` × `sku` to `cart` with key `<cart>-<id>`; returns what was recorded.
    async fn add(&mut self, app: &TestApp, cart: &str, sku: &str, quantity: i64) -> Recorded {
        let id = self.next;
        self.next += 1;
        let key = format!("{cart}-{id}");
        let invoked_at = self.now();
        let answer = app
            .send(
                reqwest::Method::POST,
                &format!("/api/carts/{cart}/items"),
                Some(json!({ "sku": sku, "quantity": quantity })),
                Some(&key),
            )
            .await;
        let completed_at = self.now();
        let (position, token) = match answer.status {
            StatusCode::OK => {
                let token: ConsistencyToken = answer.token().parse().expect("a consistency token");
                (Some(token.position), Some(answer.token()))
            }
            status => {
                assert!(status.is_client_error(), "add {sku} to {cart}: {status} {}", answer.body);
                (None, None)
            }
        };
        let op = Recorded {
            id,
            cart: cart.to_owned(),
            key,
            sku: sku.to_owned(),
            quantity,
            invoked_at,
            position,
            token,
            completed_at,
        };
        self.ops.push(op.clone());
        op
    }

    /// Reads `cart` (with `token`, if given) as the fault suite's driver
    /// does; returns what it recorded.
    async fn read(&mut self, app: &TestApp, cart: &str, token: Option<&str>) -> Read {
        let id = self.next;
        self.next += 1;
        let invoked_at = self.now();
        let path = format!("/api/carts/{cart}");
        let answer = match token {
            Some(token) => app.get_after(&path, token).await,
            None => app.get(&path).await,
        };
        let completed_at = self.now();
        assert_eq!(answer.status, StatusCode::OK, "read {cart}: {}", answer.body);
        let mut units = serde_json::Map::new();
        for item in answer.body["items"].as_array().expect("items") {
            units.insert(item["sku"].as_str().expect("a SKU").to_owned(), item["quantity"].clone());
        }
        let shown = json!({ "found": true, "version": answer.body["version"], "units": units });
        Read { id, cart: cart.to_owned(), token: token.map(str::to_owned), invoked_at, completed_at, shown }
    }

    /// The history as it happened.
    fn lines(&self) -> Vec<Value> {
        self.ops.iter().flat_map(Recorded::lines).collect()
    }
}

fn write_history(dir: &Path, name: &str, lines: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(&path, text).expect("write the history");
    path
}

async fn check_with(settings: &shop::Settings, history: Option<PathBuf>, wait: Duration) -> CheckReport {
    let report = check(settings, CheckOptions { history, wait }).await.expect("the check runs");
    eprintln!("{}", report.render());
    report
}

/// Registers the products the carts use.
async fn seed(app: &TestApp) {
    app.register("CHK-A", "Anvil", 1_250, 1_000_000).await;
    app.register("CHK-B", "Bucket", 300, 1_000_000).await;
}

/// Three carts, three acknowledged adds each, and one refused add (a line
/// over its maximum) on the first cart.
async fn small_history(app: &TestApp, driver: &mut Driver, prefix: &str) -> Vec<String> {
    let carts: Vec<String> = (0..3).map(|n| format!("{prefix}-{n}")).collect();
    for cart in &carts {
        driver.add(app, cart, "CHK-A", 1).await;
        driver.add(app, cart, "CHK-B", 2).await;
        driver.add(app, cart, "CHK-A", 3).await;
    }
    let refused = driver.add(app, &carts[0], "CHK-B", 5_000).await;
    assert_eq!(refused.position, None, "a line of 5000 units is refused");
    carts
}

fn assert_clean(report: &CheckReport) {
    let counts = [
        ("lost", report.lost),
        ("refused_present", report.refused_present),
        ("duplicated", report.duplicated),
        ("order_violations", report.order_violations),
        ("linearizability_violations", report.linearizability_violations),
        ("topic_missing", report.topic_missing),
        ("topic_duplicates", report.topic_duplicates),
        ("topic_order_violations", report.topic_order_violations),
        ("view_differences", report.view_differences),
        ("model_differences", report.model_differences),
        ("read_your_writes_violations", report.read_your_writes_violations),
        ("monotonic_read_violations", report.monotonic_read_violations),
        ("reads_unlike_model", report.reads_unlike_model),
        ("views_behind", report.views_behind),
        ("dead_letters", report.dead_letters),
    ];
    for (name, count) in counts {
        assert_eq!(count, 0, "{name} in a clean run: {report:#?}");
    }
    assert!(report.ok, "{report:#?}");
    assert!(report.details.is_empty(), "{:#?}", report.details);
}

/// A distributed shop with a small history driven, written down and checked:
/// the report must be clean before a test plants its fault.
struct CheckedRun {
    deployment: Deployment,
    settings: shop::Settings,
    /// Holds the history file.
    dir: tempfile::TempDir,
    driver: Driver,
    carts: Vec<String>,
    history: PathBuf,
    report: CheckReport,
}

async fn checked_clean_run(prefix: &str) -> CheckedRun {
    let deployment = Deployment::start(STANDARD).await;
    let settings = deployment.settings();
    let dir = tempfile::tempdir().expect("a temp folder");
    seed(&deployment.app).await;
    let mut driver = Driver::new();
    let carts = small_history(&deployment.app, &mut driver, prefix).await;
    let history = write_history(dir.path(), "history.jsonl", &driver.lines());
    let report = check_with(&settings, Some(history.clone()), Duration::from_secs(60)).await;
    assert_clean(&report);
    CheckedRun { deployment, settings, dir, driver, carts, history, report }
}

fn mentions(report: &CheckReport, needle: &str) -> bool {
    report.details.iter().any(|line| line.contains(needle))
}

/// A clean distributed run: the checker (in this process and as `shop check
/// --json`) says ok with every count right. Then, on the same stores,
/// histories each holding one lie the stores contradict: an acknowledged
/// add recorded as refused (refused but present), and two acknowledged adds
/// recorded in the opposite order of their positions (linearizability).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_distributed_run_is_ok_and_each_history_fault_is_named() {
    let CheckedRun { deployment, settings, dir, driver, carts, history, report } =
        checked_clean_run("chk-clean").await;
    // Two products registered, nine items added; the refused add appended nothing.
    assert_eq!((report.events, report.streams), (11, 5), "{report:#?}");
    // Two command processes: an append that conflicted (the other one moved
    // the cart) burned its positions, so the head may be past the count.
    assert!(report.head >= 11, "{report:#?}");
    assert!(report.topic_checked && report.history_checked, "{report:#?}");
    assert_eq!(report.topic_messages, 11, "one relay, no restart: each event once");
    assert_eq!((report.operations.ok, report.operations.fail, report.operations.info), (9, 1, 0));
    // Two catalog rows, three carts.
    assert_eq!(report.documents, 5, "{report:#?}");

    let output =
        deployment.shop_output(&["check", "--json", "--history", history.to_str().expect("UTF-8")]).await;
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let json: Value = serde_json::from_slice(&output.stdout).expect("the report as JSON");
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["events"], 11, "{json}");
    assert_eq!(json["operations"], json!({ "ok": 9, "fail": 1, "info": 0 }), "{json}");
    assert_eq!(json["details"], json!([]), "{json}");

    // Refused but present: the second add of the second cart recorded as a 409.
    let lied = driver.ops.iter().find(|op| op.cart == carts[1] && op.sku == "CHK-B").expect("an op").clone();
    let lines: Vec<Value> = driver
        .ops
        .iter()
        .flat_map(|op| match op.id == lied.id {
            true => vec![op.invoke(op.invoked_at), op.fail(op.completed_at, 409)],
            false => op.lines(),
        })
        .collect();
    let refused = write_history(dir.path(), "refused.jsonl", &lines);
    let report = check_with(&settings, Some(refused.clone()), Duration::from_secs(60)).await;
    assert_eq!(report.refused_present, 1, "{report:#?}");
    assert!(mentions(&report, &format!("key {}", lied.key)), "{:#?}", report.details);
    assert_eq!((report.lost, report.linearizability_violations, report.duplicated), (0, 0, 0), "{report:#?}");
    assert!(!report.ok);
    let output = deployment.shop_output(&["check", "--history", refused.to_str().expect("UTF-8")]).await;
    assert_eq!(output.status.code(), Some(1), "a violation exits with 1");
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("VIOLATIONS FOUND") && summary.contains("refused but present 1"), "{summary}");

    // Linearizability: the third cart's first two adds, the second recorded
    // as acknowledged before the first was even sent.
    let third: Vec<&Recorded> = driver.ops.iter().filter(|op| op.cart == carts[2]).collect();
    let (first, second) = (third[0], third[1]);
    assert!(first.position < second.position);
    let lines: Vec<Value> = driver
        .ops
        .iter()
        .flat_map(|op| match op.id {
            id if id == second.id => vec![op.invoke(1), op.ok(2)],
            id if id == first.id => vec![op.invoke(3), op.ok(4)],
            _ => op.lines(),
        })
        .collect();
    let swapped = write_history(dir.path(), "swapped.jsonl", &lines);
    let report = check_with(&settings, Some(swapped), Duration::from_secs(60)).await;
    assert_eq!(report.linearizability_violations, 1, "{report:#?}");
    assert!(mentions(&report, &format!("operation {} (invoked at 3 µs)", first.id)), "{:#?}", report.details);
    assert_eq!((report.lost, report.refused_present, report.duplicated), (0, 0, 0), "{report:#?}");
    assert!(!report.ok);

    // A history that does not parse is an error running the check: 2.
    let broken = write_history(dir.path(), "broken.jsonl", &[json!({ "id": 1, "type": "maybe" })]);
    let output = deployment.shop_output(&["check", "--history", broken.to_str().expect("UTF-8")]).await;
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    deployment.stop().await;
}

/// An acknowledged add whose event and key are deleted from the write DB is
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_add_deleted_from_the_write_db_is_lost() {
    let deployment = Deployment::start(STANDARD).await;
    let app = &deployment.app;
    let dir = tempfile::tempdir().expect("a temp folder");
    seed(app).await;
    let mut driver = Driver::new();
    small_history(app, &mut driver, "chk-lost").await;
    let head = deployment.event_store().await.head().await.expect("the head");
    deployment.wait_caught_up(head).await;

    // The last add of the last cart: the last event of its stream.
    let victim =
        driver.ops.iter().rev().find(|op| op.position.is_some()).expect("an acknowledged op").clone();
    let position = i64::try_from(victim.position.expect("acknowledged")).expect("a position");
    let pool = parallax_postgres::pool(&deployment.write_url, 1).await.expect("connect to the write DB");
    let deleted = sqlx::query("DELETE FROM events WHERE position = $1").bind(position).execute(&pool).await;
    assert_eq!(deleted.expect("delete the event").rows_affected(), 1);
    let deleted =
        sqlx::query("DELETE FROM idempotency_keys WHERE key = $1").bind(&victim.key).execute(&pool).await;
    assert_eq!(deleted.expect("delete the key").rows_affected(), 1);
    pool.close().await;

    let history = write_history(dir.path(), "history.jsonl", &driver.lines());
    let report = check_with(&deployment.settings(), Some(history), Duration::from_secs(60)).await;
    assert_eq!(report.lost_acknowledged, 1, "{report:#?}");
    assert!(report.lost >= 1 && !report.ok, "{report:#?}");
    assert!(mentions(&report, &format!("key {}", victim.key)), "{:#?}", report.details);
    assert_eq!((report.refused_present, report.linearizability_violations), (0, 0), "{report:#?}");
    // The views and the topic still hold what the store no longer does.
    assert_eq!(report.events, 10, "{report:#?}");
    assert_eq!(report.topic_unknown, 1, "{report:#?}");
    assert_eq!(report.applied_twice, 1, "{report:#?}");
    deployment.stop().await;
}

/// Faults of the read DB, each alone and undone before the next: a cart
/// row altered, a cart row deleted (lost in the views), a cart's quantity
/// doubled (applied twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_deleted_and_doubled_view_rows_are_named() {
    let CheckedRun { deployment, settings, carts, history, dir: _dir, .. } =
        checked_clean_run("chk-views").await;

    let read = parallax_postgres::pool(&deployment.read_url, 1).await.expect("connect to the read DB");
    let body = |cart: &str| {
        sqlx::query_scalar::<_, String>(
            "SELECT body::text FROM documents WHERE view = 'cart' AND partition = $1 AND clustering = ''",
        )
        .bind(cart.to_owned())
        .fetch_one(&read)
    };
    let put = |cart: &str, body: String| {
        sqlx::query(
            "INSERT INTO documents (view, partition, clustering, body, revision) VALUES ('cart', $1, '', $2::jsonb, 1) \
             ON CONFLICT (view, partition, clustering) DO UPDATE SET body = EXCLUDED.body",
        )
        .bind(cart.to_owned())
        .bind(body)
        .execute(&read)
    };

    // Altered: the first cart's status.
    let original = body(&carts[0]).await.expect("the first cart's row");
    let mut altered: Value = serde_json::from_str(&original).expect("JSON");
    altered["status"] = json!("tampered");
    put(&carts[0], altered.to_string()).await.expect("alter the row");
    let report = check_with(&settings, Some(history.clone()), Duration::from_secs(60)).await;
    assert_eq!((report.view_differences, report.model_differences), (1, 1), "{report:#?}");
    assert!(mentions(&report, &format!("differs cart/{}", carts[0])), "{:#?}", report.details);
    assert!(
        mentions(
            &report,
            &format!("model: differs cart/{}: status is \"tampered\", the events give \"open\"", carts[0])
        ),
        "{:#?}",
        report.details
    );
    assert_eq!((report.lost, report.duplicated), (0, 0), "the quantities are right: {report:#?}");
    assert!(!report.ok);
    put(&carts[0], original).await.expect("restore the row");
    assert_clean(&check_with(&settings, Some(history.clone()), Duration::from_secs(60)).await);

    // Deleted: the second cart.
    let original = body(&carts[1]).await.expect("the second cart's row");
    sqlx::query("DELETE FROM documents WHERE view = 'cart' AND partition = $1")
        .bind(&carts[1])
        .execute(&read)
        .await
        .expect("delete the row");
    let report = check_with(&settings, Some(history.clone()), Duration::from_secs(60)).await;
    assert_eq!((report.view_differences, report.model_differences), (1, 1), "{report:#?}");
    assert!(mentions(&report, &format!("missing cart/{}", carts[1])), "{:#?}", report.details);
    assert_eq!(report.lost_in_views, 2, "both SKUs of the cart: {report:#?}");
    assert_eq!((report.lost_acknowledged, report.duplicated), (0, 0), "{report:#?}");
    put(&carts[1], original).await.expect("restore the row");

    // Doubled: the third cart's first line.
    let original = body(&carts[2]).await.expect("the third cart's row");
    let mut doubled: Value = serde_json::from_str(&original).expect("JSON");
    let quantity = doubled["items"][0]["quantity"].as_u64().expect("a quantity");
    doubled["items"][0]["quantity"] = json!(quantity * 2);
    let sku = doubled["items"][0]["sku"].as_str().expect("a SKU").to_owned();
    put(&carts[2], doubled.to_string()).await.expect("double the line");
    let report = check_with(&settings, Some(history), Duration::from_secs(60)).await;
    assert_eq!((report.applied_twice, report.duplicated), (1, 1), "{report:#?}");
    assert!(
        mentions(&report, &format!("cart {} shows {} × {sku}", carts[2], quantity * 2)),
        "{:#?}",
        report.details
    );
    assert_eq!((report.view_differences, report.model_differences), (1, 1), "{report:#?}");
    assert_eq!(report.lost, 0, "{report:#?}");
    put(&carts[2], original).await.expect("restore the row");

    // Stray: a cart no event ever touched, in a partition of its own.
    put("chk-views-stray", json!({ "cart_id": "chk-views-stray", "items": [] }).to_string())
        .await
        .expect("plant a stray row");
    let report = check_with(&settings, None, Duration::from_secs(60)).await;
    assert_eq!((report.view_differences, report.model_differences), (1, 1), "{report:#?}");
    assert!(mentions(&report, "extra cart/chk-views-stray"), "{:#?}", report.details);
    assert!(mentions(&report, "model: extra cart/chk-views-stray"), "{:#?}", report.details);
    read.close().await;
    deployment.stop().await;
}

/// With the relay stopped, an acknowledged command's event is in the store
/// but never on the topic: missing from the topic (and the views, which read
/// the topic, behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_relay_never_published_is_missing_from_the_topic() {
    let mut deployment = Deployment::start(STANDARD).await;
    seed(&deployment.app).await;
    let mut driver = Driver::new();
    small_history(&deployment.app, &mut driver, "chk-topic").await;
    let head = deployment.event_store().await.head().await.expect("the head");
    deployment.wait_caught_up(head).await;
    deployment.assert_topic_carries_the_store().await;

    deployment.kill("relay");
    let unpublished = driver.add(&deployment.app, "chk-topic-unpublished", "CHK-A", 1).await;
    let position = unpublished.position.expect("acknowledged");
    let report = check_with(&deployment.settings(), None, Duration::from_secs(3)).await;
    assert_eq!(report.topic_missing, 1, "{report:#?}");
    assert!(
        mentions(&report, &format!("position {position} (cart-chk-topic-unpublished@1")),
        "{:#?}",
        report.details
    );
    assert_eq!((report.topic_unknown, report.topic_order_violations), (0, 0), "{report:#?}");
    assert!(report.views_behind > 0, "nothing brings the event to the views: {report:#?}");
    assert_eq!((report.events, report.topic_messages), (12, 11), "{report:#?}");
    assert!(!report.ok);
    deployment.stop().await;
}

/// The embedded shape (SQLite, no topic): a clean run is ok; a cart line
/// doubled in the views file is applied twice, and `shop check` exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_shape_is_checked_too() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let data = dir.path().join("data");
    let settings = shop::Settings::embedded("127.0.0.1:0".parse().expect("an address"), data.clone());
    let running = shop::start(settings.clone()).await.expect("start the shop");
    let app = TestApp::remote(running.url());
    seed(&app).await;
    let mut driver = Driver::new();
    let carts = small_history(&app, &mut driver, "chk-embedded").await;
    let history = write_history(dir.path(), "history.jsonl", &driver.lines());

    let report = check_with(&settings, Some(history.clone()), Duration::from_secs(60)).await;
    assert_clean(&report);
    assert_eq!((report.events, report.streams, report.documents), (11, 5, 5), "{report:#?}");
    assert!(!report.topic_checked && report.history_checked, "{report:#?}");
    assert_eq!((report.topic_messages, report.operations.ok, report.operations.fail), (0, 9, 1));

    let views = rusqlite::Connection::open(settings.views_path()).expect("open the views");
    views.busy_timeout(Duration::from_secs(5)).expect("a busy timeout");
    let body: String = views
        .query_row(
            "SELECT body FROM documents WHERE view = 'cart' AND partition = ?1 AND clustering = ''",
            [&carts[0]],
            |row| row.get(0),
        )
        .expect("the first cart's row");
    let mut doubled: Value = serde_json::from_str(&body).expect("JSON");
    let quantity = doubled["items"][0]["quantity"].as_u64().expect("a quantity");
    doubled["items"][0]["quantity"] = json!(quantity * 2);
    views
        .execute(
            "UPDATE documents SET body = ?2 WHERE view = 'cart' AND partition = ?1 AND clustering = ''",
            [&carts[0], &doubled.to_string()],
        )
        .expect("double the line");
    drop(views);

    let report = check_with(&settings, Some(history.clone()), Duration::from_secs(60)).await;
    assert_eq!((report.applied_twice, report.view_differences, report.lost), (1, 1, 0), "{report:#?}");
    assert_eq!(report.model_differences, 1, "{report:#?}");
    assert!(!report.ok);
    let output = common::binary::shop_command(["check", "--json", "--history"])
        .arg(&history)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run shop check");
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let json: Value = serde_json::from_slice(&output.stdout).expect("the report as JSON");
    assert_eq!((json["ok"].clone(), json["applied_twice"].clone()), (json!(false), json!(1)), "{json}");
    running.shutdown().await;
}

/// An embedded shop (SQLite, no topic) with the products seeded.
struct Embedded {
    /// Holds the data and the histories.
    dir: tempfile::TempDir,
    settings: shop::Settings,
    running: shop::RunningApp,
    app: TestApp,
}

impl Embedded {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp folder");
        let settings =
            shop::Settings::embedded("127.0.0.1:0".parse().expect("an address"), dir.path().join("data"));
        let running = shop::start(settings.clone()).await.expect("start the shop");
        let app = TestApp::remote(running.url());
        seed(&app).await;
        Self { dir, settings, running, app }
    }
}

/// Writes `lines` as the history `name` and checks it.
async fn check_lines(settings: &shop::Settings, dir: &Path, name: &str, lines: &[Value]) -> CheckReport {
    check_with(settings, Some(write_history(dir, name, lines)), Duration::from_secs(60)).await
}

/// The history's reads, on the embedded shape: reads with the token of the
/// client's own add and without it are clean when told the truth. Then
/// histories each holding one lie the events contradict: a token read that
/// shows the cart before the client's acknowledged add (read-your-writes),
/// a read showing less than the same client's read before it (monotonic
/// reads), a read showing units the cart never had at its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_miss_the_clients_own_write_or_go_back_are_named() {
    let Embedded { dir, settings, running, app } = Embedded::start().await;
    let mut driver = Driver::new();
    let carts = small_history(&app, &mut driver, "chk-reads").await;
    // The first cart's last add: version 3, 4 × A and 2 × B.
    let last =
        driver.ops.iter().rev().find(|op| op.cart == carts[0] && op.position.is_some()).expect("an add");
    let token = last.token.clone().expect("acknowledged");
    let with_token = driver.read(&app, &carts[0], Some(&token)).await;
    assert_eq!(with_token.shown, json!({ "found": true, "version": 3, "units": { "CHK-A": 4, "CHK-B": 2 } }));
    let without = driver.read(&app, &carts[0], None).await;
    let history = |reads: &[&Read]| -> Vec<Value> {
        driver.lines().into_iter().chain(reads.iter().flat_map(|read| read.lines())).collect()
    };
    let report =
        check_lines(&settings, dir.path(), "truthful.jsonl", &history(&[&with_token, &without])).await;
    assert_clean(&report);
    assert_eq!((report.reads.ok, report.reads.fail, report.reads.info), (2, 0, 0), "{report:#?}");
    assert_eq!((report.operations.ok, report.operations.fail), (9, 1), "reads are not commands");

    // The token read shown the cart at version 2 (as it truly was then).
    let stale = Read {
        shown: json!({ "found": true, "version": 2, "units": { "CHK-A": 1, "CHK-B": 2 } }),
        ..with_token.clone()
    };
    let report = check_lines(&settings, dir.path(), "stale.jsonl", &history(&[&stale])).await;
    assert_eq!(report.read_your_writes_violations, 1, "{report:#?}");
    assert!(
        mentions(&report, &format!("operation {} (read_cart of cart-{}", stale.id, carts[0])),
        "{:#?}",
        report.details
    );
    assert_eq!((report.monotonic_read_violations, report.reads_unlike_model), (0, 0), "{report:#?}");
    assert!(!report.ok);
    // Not found at all, with the token.
    let missing = Read { shown: json!({ "found": false }), ..with_token.clone() };
    let report = check_lines(&settings, dir.path(), "missing.jsonl", &history(&[&missing])).await;
    assert_eq!(report.read_your_writes_violations, 1, "{report:#?}");
    // The same stale answer without a token promises nothing of the kind.
    let untokened = Read { token: None, ..stale.clone() };
    let report = check_lines(&settings, dir.path(), "untokened.jsonl", &history(&[&untokened])).await;
    assert_clean(&report);

    // The read without a token shows version 2 after the token read showed 3.
    let back = Read { shown: stale.shown.clone(), ..without.clone() };
    let report = check_lines(&settings, dir.path(), "back.jsonl", &history(&[&with_token, &back])).await;
    assert_eq!(report.monotonic_read_violations, 1, "{report:#?}");
    assert!(
        mentions(&report, &format!("after operation {} of the same client showed version 3", with_token.id)),
        "{:#?}",
        report.details
    );
    assert_eq!((report.read_your_writes_violations, report.reads_unlike_model), (0, 0), "{report:#?}");

    // Version 3 with a unit of A more than the events gave it.
    let wrong = Read {
        shown: json!({ "found": true, "version": 3, "units": { "CHK-A": 5, "CHK-B": 2 } }),
        ..without.clone()
    };
    let report = check_lines(&settings, dir.path(), "wrong.jsonl", &history(&[&wrong])).await;
    assert_eq!(report.reads_unlike_model, 1, "{report:#?}");
    assert_eq!((report.read_your_writes_violations, report.monotonic_read_violations), (0, 0), "{report:#?}");
    running.shutdown().await;
}

/// Retries, on the embedded shape: an add of unknown outcome sent again with
/// its key is one command (clean, though both sends are in the history and
/// the key is present). Then the same history over a store where the add
/// took effect twice (a second event for it, under a key the history does
/// not know): the cart holds more events and units than the present keys
/// added, which the old count (each send of a present key once) took for
/// right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_add_must_take_effect_exactly_once() {
    let Embedded { dir, settings, running, app } = Embedded::start().await;
    let mut driver = Driver::new();
    let cart = "chk-retry";
    let first = driver.add(&app, cart, "CHK-A", 2).await;
    let repeat = app
        .send(
            reqwest::Method::POST,
            &format!("/api/carts/{cart}/items"),
            Some(json!({ "sku": "CHK-A", "quantity": 2 })),
            Some(&first.key),
        )
        .await;
    assert_eq!(repeat.status, StatusCode::OK, "{}", repeat.body);
    assert_eq!(
        repeat.token(),
        first.token.clone().expect("acknowledged"),
        "a repeat answers the first answer"
    );
    // The first send recorded as unknown, the retry as acknowledged.
    let lines = |first: &Recorded| -> Vec<Value> {
        let retry_id = first.id + 100;
        vec![
            first.invoke(first.invoked_at),
            json!({ "id": first.id, "worker": 0, "type": "info", "at_us": first.completed_at, "error": "timeout" }),
            json!({
                "id": retry_id, "worker": 0, "type": "invoke", "f": "add_item", "stream": format!("cart-{cart}"),
                "key": first.key, "retry_of": first.id, "sku": first.sku, "quantity": first.quantity,
                "at_us": first.completed_at + 1,
            }),
            json!({ "id": retry_id, "worker": 0, "type": "ok", "at_us": first.completed_at + 2, "position": first.position }),
        ]
    };
    let history = write_history(dir.path(), "retried.jsonl", &lines(&first));
    let report = check_with(&settings, Some(history.clone()), Duration::from_secs(60)).await;
    assert_clean(&report);
    assert_eq!((report.retried_keys, report.operations.ok, report.operations.info), (1, 1, 1), "{report:#?}");

    // The add applied a second time: an event the history has no key for.
    let twice = driver.add(&app, cart, "CHK-A", 2).await;
    assert!(twice.position.is_some());
    let report = check_with(&settings, Some(history), Duration::from_secs(60)).await;
    assert_eq!(report.applied_twice_in_store, 1, "{report:#?}");
    assert!(
        mentions(&report, &format!("cart-{cart} holds 2 cart.item_added events for 1 present keys")),
        "{:#?}",
        report.details
    );
    assert_eq!(report.applied_twice, 1, "4 units shown, 2 added: {report:#?}");
    assert_eq!((report.duplicated, report.lost), (2, 0), "{report:#?}");
    assert!(!report.ok);
    running.shutdown().await;
}

/// The model does not trust the projections. On the embedded shape, a cart
/// line's name altered in the views file is named by the rebuild comparison
/// and by the model; altered in the rebuild as well, as a deterministic bug
/// of the cart projection would alter both, the rebuild comparison finds
/// nothing and the model still names the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_names_a_document_the_rebuild_agrees_with() {
    let Embedded { dir: _dir, settings, running, app } = Embedded::start().await;
    let mut driver = Driver::new();
    let carts = small_history(&app, &mut driver, "chk-model").await;
    assert_clean(&check_with(&settings, None, Duration::from_secs(60)).await);
    running.shutdown().await;

    let views = rusqlite::Connection::open(settings.views_path()).expect("open the views");
    let renamed = views
        .execute(
            "UPDATE documents SET body = json_set(body, '$.items[0].name', 'Tampered') \
             WHERE view = 'cart' AND partition = ?1 AND clustering = ''",
            [&carts[0]],
        )
        .expect("rename the line");
    assert_eq!(renamed, 1);
    drop(views);
    let report = check_with(&settings, None, Duration::from_secs(60)).await;
    assert_eq!((report.view_differences, report.model_differences), (1, 1), "{report:#?}");
    let line =
        format!("model: differs cart/{}: items[0].name is \"Tampered\", the events give \"Anvil\"", carts[0]);
    assert!(mentions(&report, &line), "{:#?}", report.details);
    assert_eq!((report.lost, report.duplicated), (0, 0), "the units are right: {report:#?}");

    // The rebuild made to agree: the same name in its document.
    let store = SqliteEventStore::open(&settings.events_path()).expect("open the event store");
    let events = store.log().read(0, 10_000).await.expect("read the events");
    assert_eq!(events.len(), 11);
    let mut rebuilt = shop::check::fold(Arc::new(events.clone())).await.expect("the rebuild");
    let key = ("cart".to_owned(), carts[0].clone(), String::new());
    rebuilt.documents.get_mut(&key).expect("the first cart")["items"][0]["name"] = json!("Tampered");
    let read = SqliteReadStore::open(&settings.views_path()).expect("open the views");
    let actual = shop::check::documents(&read, &rebuilt.partitions).await.expect("read the views");
    assert_eq!(shop::check::differences(&rebuilt.documents, &actual), Vec::<String>::new());
    let differences = Model::fold(&events).differences(&actual);
    assert_eq!(differences, vec![line.trim_start_matches("model: ").to_owned()]);
}
