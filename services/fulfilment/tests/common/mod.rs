//! The stack under test: fresh databases and topic, the shop binary (every
//! role in one process, distributed configuration), the fulfilment binary,
//! a proxy in front of the shop's ship command, and a lock on fulfilment's
//! events table. Every process is a child of the test, stopped by pid
//! (SIGKILL) when dropped; its stderr goes to a file in a temporary folder,
//! printed when a wait times out.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tokio::sync::oneshot;

const DEFAULT_POSTGRES: &str = "postgres://parallax:parallax@127.0.0.1:5432/parallax";
const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
/// How long any awaited outcome may take.
const PATIENCE: Duration = Duration::from_secs(120);

/// One stack at a time: the machine has two cores.
static SLOT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..].find('/').map_or(base.len(), |i| authority + i);
    format!("{}/{database}{}", &base[..path], query.map(|q| format!("?{q}")).unwrap_or_default())
}

/// The folder the binaries of this build live in.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_fulfilment")).parent().expect("a folder").to_owned()
}

/// The shop binary, built once per test run by `cargo build -p shop` (a
/// no-op when it is current) into this build's target folder.
fn shop_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let mut cargo = Command::new(env!("CARGO"));
            cargo.current_dir(&workspace).args(["build", "--quiet", "-p", "shop", "--bin", "shop"]);
            if !cfg!(debug_assertions) {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("run cargo build -p shop");
            assert!(status.success(), "cargo build -p shop failed: {status}");
            let shop = bin_dir().join("shop");
            assert!(shop.is_file(), "no shop binary at {}", shop.display());
            shop
        })
        .clone()
}

/// A child process that printed `listening on <url>`; SIGKILLed when dropped.
pub struct Proc {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    stderr: PathBuf,
}

impl Proc {
    fn spawn(mut command: Command, stderr: PathBuf) -> Proc {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr).expect("a log file")));
        let mut child = command.spawn().expect("start a binary");
        let stdout = child.stdout.take().expect("its stdout");
        let (sender, first_line) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = sender.send(lines.next());
            for _ in lines {}
        });
        let mut proc = Proc { child: Some(child), base: String::new(), stderr };
        match first_line.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) if line.starts_with("listening on ") => {
                proc.base = line["listening on ".len()..].to_owned();
            }
            other => {
                proc.kill();
                panic!("no `listening on` line ({other:?}); stderr:\n{}", proc.log_tail());
            }
        }
        proc
    }

    /// SIGKILL, by pid, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits an i32"));
            let _ = kill(pid, Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `command` without this process's variables starting with `prefix`
/// (settings of the caller's own shell).
fn without_env<'c>(command: &'c mut Command, prefix: &str) -> &'c mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(prefix) {
            command.env_remove(key);
        }
    }
    command
}

/// The shop's write and read databases of stack `id`.
async fn create_databases(admin_url: &str, id: &str) {
    let mut admin = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(admin_url))
        .await
        .expect("PostgreSQL answers within 10 s (scripts/services/postgres start)")
        .expect("connect to PostgreSQL (scripts/services/postgres start)");
    for side in ["write", "read"] {
        // The names are ours: hex digits and underscores.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"pxf_{id}_{side}\"")))
            .execute(&mut admin)
            .await
            .expect("create a database");
    }
    let _ = admin.close().await;
}

/// Runs a binary to its end (bounded); panics with its output if it fails.
async fn run(mut command: Command, what: &str) {
    command.stdin(Stdio::null());
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let output = tokio::time::timeout(PATIENCE, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} finishes within {PATIENCE:?}"))
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The shop, distributed on fresh databases and a fresh topic, or embedded
/// on a fresh folder.
pub struct Stack {
    pub shop: Proc,
    pub distributed: bool,
    pub admin_url: String,
    pub brokers: String,
    pub topic: String,
    pub id: String,
    write_url: String,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    _slot: tokio::sync::SemaphorePermit<'static>,
}

impl Stack {
    /// Creates the shop's databases, runs `shop migrate` (which makes the
    /// topic) and starts `shop serve` with every role.
    pub async fn start() -> Stack {
        Self::start_as(true).await
    }

    /// Starts `shop serve` embedded, on SQLite files in a fresh folder.
    pub async fn embedded() -> Stack {
        Self::start_as(false).await
    }

    async fn start_as(distributed: bool) -> Stack {
        let slot = SLOT.acquire().await.expect("never closed");
        let admin_url = env_or("PARALLAX_TEST_POSTGRES_URL", DEFAULT_POSTGRES);
        let brokers = env_or("PARALLAX_TEST_KAFKA_BROKERS", DEFAULT_BROKERS);
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        if distributed {
            create_databases(&admin_url, &id).await;
        }
        let dir = tempfile::Builder::new().prefix("fulfilment-test-").tempdir().expect("a temp folder");
        let shop_binary = tokio::task::spawn_blocking(shop_binary).await.expect("the shop is built");
        let write_url = with_database(&admin_url, &format!("pxf_{id}_write"));
        let configure = |command: &mut Command| {
            without_env(command, "SHOP_").env("RUST_LOG", "warn");
            if distributed {
                command
                    .env("SHOP__WRITE_DB__KIND", "postgres")
                    .env("SHOP__WRITE_DB__URL", &write_url)
                    .env("SHOP__READ_DB__KIND", "postgres")
                    .env("SHOP__READ_DB__URL", with_database(&admin_url, &format!("pxf_{id}_read")))
                    .env("SHOP__LOG__KIND", "kafka")
                    .env("SHOP__LOG__BROKERS", &brokers)
                    .env("SHOP__LOG__TOPIC", format!("parallax-test-{id}"))
                    .env("SHOP__LOG__PARTITIONS", "4")
                    .env("SHOP__LOG__GROUP", format!("parallax-test-{id}-shop"));
            }
        };
        if distributed {
            let mut migrate = Command::new(&shop_binary);
            migrate.arg("migrate");
            configure(&mut migrate);
            run(migrate, "shop migrate").await;
        }
        let mut serve = Command::new(&shop_binary);
        serve.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path().join("shop-data"));
        configure(&mut serve);
        let shop = Proc::spawn(serve, dir.path().join("shop.stderr"));
        Stack {
            shop,
            distributed,
            admin_url,
            brokers,
            topic: format!("parallax-test-{id}"),
            id,
            write_url,
            dir,
            http: reqwest::Client::new(),
            _slot: slot,
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_as(None, path, body).await
    }

    /// POST `path` of the shop, as `tenant` (its `Parallax-Tenant`) if given.
    pub async fn post_as(&self, tenant: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.shop.base)).json(&body);
        if let Some(tenant) = tenant {
            request = request.header("Parallax-Tenant", tenant);
        }
        let response = request.send().await.expect("the shop answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn register_product(&self, sku: &str, stock: u32) {
        let body = json!({ "sku": sku, "name": "Parcel tape", "price_cents": 250, "stock": stock });
        let (status, answer) = self.post("/api/products", body).await;
        assert_eq!(status, 201, "register {sku}: {answer}");
    }

    /// A cart with one unit of SKU-1, checked out; returns the order id once
    /// the shop's saga confirmed it.
    pub async fn confirmed_order(&self, cart: &str) -> String {
        let (status, answer) =
            self.post(&format!("/api/carts/{cart}/items"), json!({"sku": "SKU-1", "quantity": 1})).await;
        assert_eq!(status, 200, "add to {cart}: {answer}");
        let (status, answer) =
            self.post(&format!("/api/carts/{cart}/checkout"), json!({"customer_id": "zoe"})).await;
        assert_eq!(status, 202, "check out {cart}: {answer}");
        let order = answer["order_id"].as_str().expect("an order id").to_owned();
        self.order_when(&order, "confirmed").await;
        order
    }

    pub async fn pay(&self, order: &str) {
        let (status, answer) = self.post(&format!("/api/orders/{order}/pay"), json!({})).await;
        assert_eq!(status, 200, "pay {order}: {answer}");
    }

    /// The shop's order once its status is `status`.
    pub async fn order_when(&self, order: &str, status: &str) -> Value {
        self.order_of_when(None, order, status).await
    }

    /// [`Stack::order_when`] of an order of `tenant` (the default one: `None`).
    pub async fn order_of_when(&self, tenant: Option<&str>, order: &str, status: &str) -> Value {
        let url = format!("{}/api/orders/{order}", self.shop.base);
        eventually(&format!("order {order} {status} in the shop"), &[&self.shop], || async {
            let mut request = self.http.get(&url);
            if let Some(tenant) = tenant {
                request = request.header("Parallax-Tenant", tenant);
            }
            let response = request.send().await.ok()?;
            let order: Value = response.json().await.ok()?;
            (order["status"] == status).then_some(order)
        })
        .await
    }

    /// `order.shipped` events in the shop's event store, per stream.
    pub async fn shipped_events(&self) -> Vec<(String, i64)> {
        count_events(&self.write_url, "order.shipped").await
    }

    pub async fn stop(self) {
        let Stack { mut shop, distributed, admin_url, id, dir, brokers, topic, .. } = self;
        shop.kill();
        if distributed {
            let topic = parallax_kafka::KafkaConfig::new(brokers, topic, 4, "/test");
            let _ = parallax_kafka::delete_topic(&topic).await;
            let mut admin = PgConnection::connect(&admin_url).await.expect("connect to PostgreSQL");
            for side in ["write", "read", "fulfilment"] {
                let drop = format!("DROP DATABASE IF EXISTS \"pxf_{id}_{side}\" WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await;
            }
        }
        drop(dir);
    }
}

/// Events of `event_type` per stream in the event store at `url`, by stream.
async fn count_events(url: &str, event_type: &str) -> Vec<(String, i64)> {
    let mut conn = PgConnection::connect(url).await.expect("connect to an event store");
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT stream_id, count(*) FROM events WHERE event_type = $1 GROUP BY stream_id ORDER BY stream_id",
    )
    .bind(event_type)
    .fetch_all(&mut conn)
    .await
    .expect("count events");
    let _ = conn.close().await;
    rows
}

/// Polls `probe` every 50 ms until it gives a value; panics after
/// [`PATIENCE`], printing the logs of `procs`.
async fn eventually<T, F, Fut>(what: &str, procs: &[&Proc], probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            let logs: Vec<String> =
                procs.iter().map(|p| format!("{}:\n{}", p.stderr.display(), p.log_tail())).collect();
            panic!("{what}: not within {PATIENCE:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fulfilment binary on its own database and consumer group.
pub struct Fulfilment {
    pub proc: Proc,
    pub db_name: String,
    db_url: String,
    incarnation: u32,
    http: reqwest::Client,
}

impl Fulfilment {
    /// `fulfilment migrate` (which creates its database or files), then
    /// `serve` in the stack's shape, telling the shop at `shop_base`.
    pub async fn start(stack: &Stack, shop_base: &str) -> Fulfilment {
        let db_name = format!("pxf_{}_fulfilment", stack.id);
        let db_url = with_database(&stack.admin_url, &db_name);
        Self::spawn(stack, shop_base, db_name, db_url, 1).await
    }

    async fn spawn(
        stack: &Stack,
        shop_base: &str,
        db_name: String,
        db_url: String,
        incarnation: u32,
    ) -> Fulfilment {
        let configure = |command: &mut Command| {
            without_env(command, "FULFILMENT_")
                .env("RUST_LOG", "info")
                .env("FULFILMENT__SHOP_URL", shop_base)
                .env("FULFILMENT__SHOP_TIMEOUT_MS", "60000");
            if stack.distributed {
                command
                    .env("FULFILMENT__SHAPE", "distributed")
                    .env("FULFILMENT__DB__URL", &db_url)
                    .env("FULFILMENT__KAFKA__BROKERS", &stack.brokers)
                    .env("FULFILMENT__KAFKA__TOPIC", &stack.topic)
                    .env("FULFILMENT__KAFKA__GROUP", format!("parallax-test-{}-fulfilment", stack.id));
            } else {
                // The defaults' shape; the files are the test's.
                command
                    .env("FULFILMENT__SHOP_EVENTS", stack.dir.path().join("shop-data/events.db"))
                    .env("FULFILMENT__DATA_DIR", stack.dir.path().join("fulfilment-data"));
            }
        };
        let binary = env!("CARGO_BIN_EXE_fulfilment");
        let mut migrate = Command::new(binary);
        migrate.arg("migrate");
        configure(&mut migrate);
        run(migrate, "fulfilment migrate").await;
        let mut serve = Command::new(binary);
        serve.args(["serve", "--listen", "127.0.0.1:0"]);
        configure(&mut serve);
        let stderr = stack.dir.path().join(format!("fulfilment.{incarnation}.stderr"));
        let proc = Proc::spawn(serve, stderr);
        Fulfilment { proc, db_name, db_url, incarnation, http: reqwest::Client::new() }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// The same service started again (after [`Fulfilment::kill`]).
    pub async fn restart(self, stack: &Stack, shop_base: &str) -> Fulfilment {
        let Fulfilment { db_name, db_url, incarnation, .. } = self;
        Self::spawn(stack, shop_base, db_name, db_url, incarnation + 1).await
    }

    /// GET `path` of the query API: status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(None, path).await
    }

    /// [`Fulfilment::get`] as `tenant` (its `Parallax-Tenant`) if given.
    pub async fn get_as(&self, tenant: Option<&str>, path: &str) -> (u16, Value) {
        let mut request = self.http.get(format!("{}{path}", self.proc.base));
        if let Some(tenant) = tenant {
            request = request.header("Parallax-Tenant", tenant);
        }
        let response = request.send().await.expect("fulfilment answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The shipment of `order` once `done` holds for it.
    pub async fn shipment_when(&self, order: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.shipment_of_when(None, order, done).await
    }

    /// [`Fulfilment::shipment_when`] of an order of `tenant`.
    pub async fn shipment_of_when(
        &self,
        tenant: Option<&str>,
        order: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/api/shipments/{order}");
        eventually(&format!("shipment of {order}"), &[&self.proc], || async {
            let (status, shipment) = self.get_as(tenant, &path).await;
            (status == 200 && done(&shipment)).then_some(shipment)
        })
        .await
    }

    /// Events of `event_type` per stream in fulfilment's event store.
    pub async fn shipment_events(&self, event_type: &str) -> Vec<(String, i64)> {
        count_events(&self.db_url, event_type).await
    }
}

#[derive(Default)]
struct ProxyState {
    shop: String,
    http: reqwest::Client,
    calls: Mutex<HashMap<String, usize>>,
    hold: Mutex<Option<oneshot::Sender<String>>>,
}

/// An HTTP proxy in front of the shop's `POST /api/orders/{id}/ship`: it
/// counts the calls per order, and can keep the shop's answer to one call
/// from reaching the caller.
pub struct ShopProxy {
    pub base: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl ShopProxy {
    pub async fn start(shop: &str) -> ShopProxy {
        let state = Arc::new(ProxyState { shop: shop.to_owned(), ..ProxyState::default() });
        let app = axum::Router::new()
            .route("/api/orders/{order_id}/ship", axum::routing::post(forward_ship))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ShopProxy { base, state, task }
    }

    /// The next ship call goes to the shop, whose answer is then held back
    /// for ever; the receiver gets the call's order id once the shop answered.
    pub fn hold_next_answer(&self) -> oneshot::Receiver<String> {
        let (sender, receiver) = oneshot::channel();
        *self.state.hold.lock().expect("not poisoned") = Some(sender);
        receiver
    }

    /// How many ship calls for `order` reached the shop.
    pub fn calls(&self, order: &str) -> usize {
        self.state.calls.lock().expect("not poisoned").get(order).copied().unwrap_or(0)
    }
}

impl Drop for ShopProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward_ship(
    State(state): State<Arc<ProxyState>>,
    UrlPath(order_id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let mut request = state.http.post(format!("{}/api/orders/{order_id}/ship", state.shop));
    if let Some(key) = headers.get("idempotency-key") {
        request = request.header("Idempotency-Key", key);
    }
    let Ok(answer) = request.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    *state.calls.lock().expect("not poisoned").entry(order_id.clone()).or_default() += 1;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = answer.bytes().await.unwrap_or_default();
    let hold = state.hold.lock().expect("not poisoned").take();
    if let Some(hold) = hold {
        let _ = hold.send(order_id);
        std::future::pending::<()>().await;
    }
    (status, [("content-type", "application/problem+json")], body).into_response()
}

/// A transaction holding fulfilment's `events` table against writers.
pub struct LockedEvents {
    conn: PgConnection,
    admin_url: String,
    database: String,
}

impl LockedEvents {
    pub async fn lock(admin_url: &str, database: &str) -> LockedEvents {
        let mut conn = PgConnection::connect(&with_database(admin_url, database)).await.expect("connect");
        sqlx::query("BEGIN").execute(&mut conn).await.expect("begin");
        sqlx::query("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut conn)
            .await
            .expect("lock events");
        LockedEvents { conn, admin_url: admin_url.to_owned(), database: database.to_owned() }
    }

    /// Returns once a session of the database waits for the lock.
    pub async fn wait_for_a_blocked_writer(&self) {
        let admin_url = self.admin_url.clone();
        let database = self.database.clone();
        eventually("a writer blocked on fulfilment's events table", &[], || async {
            let mut conn = PgConnection::connect(&admin_url).await.ok()?;
            let blocked: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND wait_event = 'relation'",
            )
            .bind(&database)
            .fetch_one(&mut conn)
            .await
            .ok()?;
            let _ = conn.close().await;
            (blocked > 0).then_some(())
        })
        .await;
    }

    /// After the process was killed: its statements still blocked on the
    /// server are ended too (as a crash of the server-side session would
    /// end them), then the lock is let go.
    pub async fn release_after_the_crash(mut self) {
        let mut admin = PgConnection::connect(&self.admin_url).await.expect("connect");
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND wait_event = 'relation'",
        )
        .bind(&self.database)
        .execute(&mut admin)
        .await
        .expect("end the blocked statements");
        let _ = admin.close().await;
        sqlx::query("ROLLBACK").execute(&mut self.conn).await.expect("let go of the lock");
        let _ = self.conn.close().await;
    }
}
