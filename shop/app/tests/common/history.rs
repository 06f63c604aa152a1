//! The fault suite's load driver: concurrent clients on a few hot carts that
//! write down what they were told, as a history of operations in JSON lines
//! (the format `shop check --history` reads).
//!
//! Every operation is one `POST /api/carts/{cart}/items` with an
//! `Idempotency-Key` of its own and a client timeout. Its completion says what
//! the client knows:
//! - `ok`: acknowledged (2xx); `position` is the position the token names;
//! - `fail`: refused for certain: a 4xx, or a connection that could not be
//!   opened (the request never left);
//! - `info`: unknown: a timeout, a 5xx, a connection lost mid-request. The
//!   command may or may not have been committed.
//!
//! Some clients also check out carts of their own (`checkout`), so the saga
//! and the order views work under the faults too.
//!
//! A command whose outcome is unknown (`info`) is sent again with the same
//! idempotency key after [`RETRY_AFTER`], up to [`Shape::retries`] times while it
//! stays unknown (or the command process cannot be reached), each send an
//! operation of its own with `retry_of` naming the first: the checker
//! verifies the key took effect exactly once.
//!
//! The clients also read, from the query process: every fourth round a
//! hot-cart client reads the cart it just added to with the token of that
//! add (`read_cart` with `token`), two rounds later without a token; a
//! checkout client reads the order its acknowledged checkout named, with the
//! checkout's token and then without. A read's `ok` records what it was
//! shown (`found`, `version`, a cart's `units` per SKU, an order's
//! `status`); a 503 (the token not reached in time) or another status is a
//! `fail`, a timeout an `info`. The checker verifies read-your-writes and
//! monotonic reads per client.
//!
//! The command and query processes may be restarted on new ports while the
//! driver runs: [`Target::set`] and [`Target::set_queries`] point the
//! clients at them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use parallax_core::{Aggregate, ConsistencyToken};
use reqwest::Client;
use serde_json::{json, Value};
use shop_domain::{Cart, Order};
use tokio::task::JoinHandle;

/// The SKU every hot cart is filled with.
pub const HOT_SKU: &str = "A";

/// How often a command of unknown outcome is sent again with its key.
pub const RETRIES: usize = 3;

/// How long a client waits before it sends a command again: the server may
/// still be working on the send it gave up on.
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// How long a read waits for its token (`wait_ms`): below the client's
/// timeout, so a token not reached answers 503 rather than nothing.
const READ_WAIT_MS: u64 = 1_500;

/// Where the clients send their commands and their reads; changes when the
/// command or the query process is restarted.
#[derive(Clone)]
pub struct Target {
    commands: Arc<RwLock<String>>,
    queries: Arc<RwLock<Option<String>>>,
}

impl Target {
    /// Commands to `base`; no reads until [`Target::set_queries`].
    pub fn new(base: String) -> Self {
        Self { commands: Arc::new(RwLock::new(base)), queries: Arc::new(RwLock::new(None)) }
    }

    pub fn set(&self, base: String) {
        *self.commands.write().expect("the target lock") = base;
    }

    /// Reads to `base` (the query process).
    pub fn set_queries(&self, base: String) {
        *self.queries.write().expect("the target lock") = Some(base);
    }

    fn get(&self) -> String {
        self.commands.read().expect("the target lock").clone()
    }

    fn queries(&self) -> Option<String> {
        self.queries.read().expect("the target lock").clone()
    }
}

/// How the load is shaped.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Clients adding to the hot carts.
    pub writers: usize,
    /// Hot carts they share (contention: concurrent appends to one stream).
    pub hot_carts: usize,
    /// Clients that fill a cart of their own and check it out, in turns.
    pub checkouts: usize,
    /// The client gives up on a request after this long (an `info`).
    pub timeout: Duration,
    /// Pause between two requests of one client.
    pub think: Duration,
    /// How often a command of unknown outcome is sent again ([`RETRIES`]).
    pub retries: usize,
    /// Hot-cart writers that give up after this long and never send a
    /// command again, beside checkout clients of the usual patience: the
    /// patient ones show whether the server keeps serving while the
    /// impatient ones leave work behind.
    pub impatient_writers: Option<Duration>,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            writers: 12,
            hot_carts: 4,
            checkouts: 2,
            timeout: Duration::from_secs(2),
            think: Duration::from_millis(2),
            retries: RETRIES,
            impatient_writers: None,
        }
    }
}

/// What the clients were told, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Reads sent (not among the operations).
    pub reads: u64,
    /// Token reads answered.
    pub token_reads: u64,
}

impl Tally {
    pub fn operations(&self) -> u64 {
        self.ok + self.fail + self.info
    }
}

/// The history file, shared by the clients.
struct Recorder {
    out: Mutex<BufWriter<File>>,
    started: Instant,
    next_id: AtomicU64,
    ok: AtomicU64,
    fail: AtomicU64,
    info: AtomicU64,
    reads: AtomicU64,
    token_reads: AtomicU64,
}

impl Recorder {
    fn tally(&self) -> Tally {
        Tally {
            ok: self.ok.load(Ordering::Relaxed),
            fail: self.fail.load(Ordering::Relaxed),
            info: self.info.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
            token_reads: self.token_reads.load(Ordering::Relaxed),
        }
    }

    fn at_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn write(&self, line: &Value) {
        let mut out = self.out.lock().expect("the history lock");
        serde_json::to_writer(&mut *out, line).expect("write the history");
        out.write_all(b"\n").expect("write the history");
    }
}

/// One operation of a client, from invocation to completion.
struct Op<'a> {
    recorder: &'a Recorder,
    base: Value,
}

impl<'a> Op<'a> {
    /// Records the invocation of `f` on `stream`, with `fields` (a
    /// command's SKU and quantity, a retry's key; a read's token); with
    /// `new_key` (the run), a key of its own: `<run>-<id>`.
    fn invoke(
        recorder: &'a Recorder,
        worker: usize,
        f: &str,
        stream: &str,
        fields: Value,
        new_key: Option<&str>,
    ) -> Self {
        let id = recorder.next_id.fetch_add(1, Ordering::Relaxed);
        let mut base = json!({ "id": id, "worker": worker, "f": f, "stream": stream });
        if let (Some(base), Value::Object(fields)) = (base.as_object_mut(), fields) {
            base.extend(fields);
        }
        if let Some(run) = new_key {
            base["key"] = json!(format!("{run}-{id}"));
        }
        let mut line = base.clone();
        line["type"] = json!("invoke");
        line["at_us"] = json!(recorder.at_us());
        recorder.write(&line);
        Self { recorder, base }
    }

    fn id(&self) -> u64 {
        self.base["id"].as_u64().expect("an id")
    }

    fn key(&self) -> String {
        self.base["key"].as_str().expect("a key").to_owned()
    }

    fn complete(self, outcome: &Outcome) {
        let mut line = self.base;
        line["at_us"] = json!(self.recorder.at_us());
        match outcome {
            Outcome::Ok(answer) => {
                line["type"] = json!("ok");
                line["position"] = json!(answer.position);
                if let Some(order) = &answer.order_id {
                    line["order_id"] = json!(order);
                }
                self.recorder.ok.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Fail(status, error) => {
                line["type"] = json!("fail");
                line["status"] = json!(status);
                line["error"] = json!(error);
                self.recorder.fail.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Info(error) => {
                line["type"] = json!("info");
                line["error"] = json!(error);
                self.recorder.info.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.recorder.write(&line);
    }

    /// Completes a read: `Ok(shown)` answered (`found` or not), `Err` with
    /// the completion's type and error otherwise.
    fn complete_read(self, answer: Result<Value, (&str, String)>) {
        let mut line = self.base;
        line["at_us"] = json!(self.recorder.at_us());
        match answer {
            Ok(shown) => {
                line["type"] = json!("ok");
                line["read"] = shown;
                if line.get("token").is_some() {
                    self.recorder.token_reads.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err((kind, error)) => {
                line["type"] = json!(kind);
                line["error"] = json!(error);
            }
        }
        self.recorder.reads.fetch_add(1, Ordering::Relaxed);
        self.recorder.write(&line);
    }
}

/// An acknowledged command.
struct Answer {
    position: u64,
    token: String,
    order_id: Option<String>,
}

enum Outcome {
    Ok(Answer),
    Fail(u16, String),
    Info(String),
}

impl Outcome {
    /// How long the client waits before its next request: longer while the
    /// command process cannot be reached (it is being restarted), and after
    /// a request it gave up on, as a client with a timeout backs off: a
    /// server that is slower than the clients' patience then drains what
    /// they left it, instead of every client piling a new request on a queue
    /// that only grows (with 40 ms clients that never backed off, a run
    /// acknowledged nothing for 90 s).
    fn pause(&self, think: Duration) -> Duration {
        match self {
            Outcome::Fail(0, _) => think.max(Duration::from_millis(50)),
            Outcome::Info(_) => think.max(Duration::from_millis(100)),
            _ => think,
        }
    }

    /// Whether the command may have been applied without the client
    /// knowing: unknown, or unreachable since (worth sending again).
    fn unknown(&self) -> bool {
        matches!(self, Outcome::Info(_) | Outcome::Fail(0, _))
    }

    fn answer(&self) -> Option<&Answer> {
        match self {
            Outcome::Ok(answer) => Some(answer),
            _ => None,
        }
    }
}

/// Sends one command and classifies what came back.
async fn send(client: &Client, url: String, key: &str, body: &Value) -> Outcome {
    let response = client.post(url).header("idempotency-key", key).json(body).send().await;
    let response = match response {
        Ok(response) => response,
        // The connection was never opened: the request never left.
        Err(error) if error.is_connect() => return Outcome::Fail(0, format!("connect: {error}")),
        Err(error) if error.is_timeout() => return Outcome::Info("timeout".into()),
        Err(error) => return Outcome::Info(format!("{error}")),
    };
    let status = response.status();
    let text = match response.text().await {
        Ok(text) => text,
        Err(error) if error.is_timeout() => return Outcome::Info("timeout".into()),
        Err(error) => return Outcome::Info(format!("reading the answer: {error}")),
    };
    if status.is_success() {
        let body = serde_json::from_str::<Value>(&text).unwrap_or_default();
        let token = body["token"].as_str().map(str::to_owned);
        let position = token.as_deref().and_then(|token| token.parse::<ConsistencyToken>().ok());
        match (token, position) {
            (Some(token), Some(parsed)) => Outcome::Ok(Answer {
                position: parsed.position,
                token,
                order_id: body["order_id"].as_str().map(str::to_owned),
            }),
            _ => Outcome::Info(format!("{status} without a token: {text}")),
        }
    } else if status.is_client_error() {
        Outcome::Fail(status.as_u16(), text)
    } else {
        Outcome::Info(format!("{status}: {text}"))
    }
}

/// What one client needs to send and record.
#[derive(Clone)]
struct Session {
    recorder: Arc<Recorder>,
    client: Client,
    target: Target,
    run: String,
    worker: usize,
    think: Duration,
    retries: usize,
}

impl Session {
    /// Sends command `f` on cart `cart` (`path` under it) with a key of its
    /// own, again with the same key while its outcome stays unknown; every
    /// send recorded. The last send's outcome.
    async fn command(
        &self,
        f: &str,
        cart: &str,
        path: &str,
        item: Option<(&str, u32)>,
        body: Value,
    ) -> Outcome {
        let stream = Cart::stream_id(cart);
        let mut fields = json!({ "cart": cart });
        if let Some((sku, quantity)) = item {
            fields["sku"] = json!(sku);
            fields["quantity"] = json!(quantity);
        }
        let mut first: Option<(u64, String)> = None;
        for attempt in 0..=self.retries {
            let mut fields = fields.clone();
            let op = match &first {
                None => {
                    let op = Op::invoke(&self.recorder, self.worker, f, &stream, fields, Some(&self.run));
                    first = Some((op.id(), op.key()));
                    op
                }
                Some((original, key)) => {
                    fields["key"] = json!(key);
                    fields["retry_of"] = json!(original);
                    Op::invoke(&self.recorder, self.worker, f, &stream, fields, None)
                }
            };
            let key = op.key();
            let url = format!("{}/api/carts/{cart}{path}", self.target.get());
            let outcome = send(&self.client, url, &key, &body).await;
            let (unknown, pause) = (outcome.unknown(), outcome.pause(self.think));
            op.complete(&outcome);
            if !unknown || attempt == self.retries {
                return outcome;
            }
            tokio::time::sleep(pause.max(RETRY_AFTER)).await;
        }
        unreachable!("the last attempt returns")
    }

    /// Reads `path` (a cart or an order) from the query process, with
    /// `token` if given, and records what it was shown; `shown` turns the
    /// document into the history's `read`.
    async fn read(&self, f: &str, stream: &str, path: &str, token: Option<&str>, shown: fn(&Value) -> Value) {
        let Some(queries) = self.target.queries() else { return };
        let fields = token.map_or_else(|| json!({}), |token| json!({ "token": token }));
        let op = Op::invoke(&self.recorder, self.worker, f, stream, fields, None);
        let mut request = self.client.get(format!("{queries}{path}"));
        if let Some(token) = token {
            request = request
                .query(&[("consistent_with", token.to_owned()), ("wait_ms", READ_WAIT_MS.to_string())]);
        }
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status();
                match response.text().await {
                    Ok(_) if status == reqwest::StatusCode::NOT_FOUND => Ok(json!({ "found": false })),
                    Ok(text) if status.is_success() => match serde_json::from_str::<Value>(&text) {
                        Ok(document) => Ok(shown(&document)),
                        Err(error) => Err(("info", format!("{status} unreadable: {error}"))),
                    },
                    Ok(text) => Err(("fail", format!("{status}: {text}"))),
                    Err(error) => Err(("info", format!("reading the answer: {error}"))),
                }
            }
            Err(error) if error.is_connect() => Err(("fail", format!("connect: {error}"))),
            Err(error) => Err(("info", format!("{error}"))),
        };
        op.complete_read(answer);
    }

    /// A hot-cart client: adds to the shared carts in turn, reading back
    /// every fourth round with the add's token, two rounds later without.
    async fn fill_hot_carts(&self, carts: usize, stop: &AtomicBool) {
        let mut round = 0usize;
        while !stop.load(Ordering::Relaxed) {
            // A fresh set of hot carts every 200 rounds, so no line
            // reaches the cart's limit of 1,000 units.
            let cart = format!("hot-{}-{}-{}", self.run, round / 200, (self.worker + round) % carts);
            let body = json!({ "sku": HOT_SKU, "quantity": 1 });
            let outcome = self.command("add_item", &cart, "/items", Some((HOT_SKU, 1)), body).await;
            match (round % 4, outcome.answer()) {
                (0, Some(answer)) => self.read_cart(&cart, Some(&answer.token)).await,
                (2, Some(_)) => self.read_cart(&cart, None).await,
                _ => {}
            }
            round += 1;
            tokio::time::sleep(outcome.pause(self.think)).await;
        }
    }

    /// A checkout client: fills a cart of its own, checks it out, reads the
    /// order with the checkout's token, then without.
    async fn check_out_carts(&self, stop: &AtomicBool) {
        let mut round = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let cart = format!("buy-{}-{}-{round}", self.run, self.worker);
            round += 1;
            let mut filled = false;
            for sku in ["B", "D"] {
                let body = json!({ "sku": sku, "quantity": 1 });
                filled |=
                    self.command("add_item", &cart, "/items", Some((sku, 1)), body).await.answer().is_some();
            }
            if filled {
                let body = json!({ "customer_id": format!("c-{}-{}", self.run, self.worker) });
                let outcome = self.command("checkout", &cart, "/checkout", None, body).await;
                if let Some(Answer { order_id: Some(order), token, .. }) = outcome.answer() {
                    self.read_order(order, Some(token)).await;
                    self.read_order(order, None).await;
                }
            }
            tokio::time::sleep(self.think).await;
        }
    }

    async fn read_cart(&self, cart: &str, token: Option<&str>) {
        let (stream, path) = (Cart::stream_id(cart), format!("/api/carts/{cart}"));
        self.read("read_cart", &stream, &path, token, |cart| {
            let mut units = serde_json::Map::new();
            for item in cart["items"].as_array().into_iter().flatten() {
                let (sku, quantity) = (item["sku"].as_str().unwrap_or_default(), item["quantity"].as_u64());
                let before = units.get(sku).and_then(Value::as_u64).unwrap_or(0);
                units.insert(sku.to_owned(), json!(before + quantity.unwrap_or(0)));
            }
            json!({ "found": true, "version": cart["version"], "units": units })
        })
        .await;
    }

    async fn read_order(&self, order: &str, token: Option<&str>) {
        let (stream, path) = (Order::stream_id(order), format!("/api/orders/{order}"));
        self.read(
            "read_order",
            &stream,
            &path,
            token,
            |order| json!({ "found": true, "version": order["version"], "status": order["status"] }),
        )
        .await;
    }
}

/// Clients running until [`Driver::finish`].
pub struct Driver {
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    path: PathBuf,
}

impl Driver {
    /// Starts the clients of `shape` against `target`, writing the history to
    /// `path`. `run` makes the carts and keys unique.
    pub fn start(target: Target, shape: &Shape, run: &str, path: &Path) -> Self {
        let file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let recorder = Arc::new(Recorder {
            out: Mutex::new(BufWriter::new(file)),
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            fail: AtomicU64::new(0),
            info: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            token_reads: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let client = |timeout| {
            Client::builder().timeout(timeout).connect_timeout(timeout).build().expect("an HTTP client")
        };
        let patient = client(shape.timeout);
        let session = |worker, client: &Client, retries| Session {
            recorder: recorder.clone(),
            client: client.clone(),
            target: target.clone(),
            run: run.to_owned(),
            worker,
            think: shape.think,
            retries,
        };
        let writers = match shape.impatient_writers {
            Some(timeout) => session(0, &client(timeout), 0),
            None => session(0, &patient, shape.retries),
        };
        let mut tasks = Vec::new();
        for worker in 0..shape.writers {
            let session = Session { worker, ..writers.clone() };
            let (stop, carts) = (stop.clone(), shape.hot_carts.max(1));
            tasks.push(tokio::spawn(async move { session.fill_hot_carts(carts, &stop).await }));
        }
        for index in 0..shape.checkouts {
            let (session, stop) = (session(shape.writers + index, &patient, shape.retries), stop.clone());
            tasks.push(tokio::spawn(async move { session.check_out_carts(&stop).await }));
        }
        Self { recorder, stop, tasks, path: path.to_owned() }
    }

    /// What the clients were told so far.
    pub fn tally(&self) -> Tally {
        self.recorder.tally()
    }

    /// Waits until at least `more` further operations were acknowledged, for
    /// at most `within`; false if they were not.
    pub async fn wait_acknowledged(&self, more: u64, within: Duration) -> bool {
        let target = self.tally().ok + more;
        let deadline = Instant::now() + within;
        while self.tally().ok < target {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Stops the clients, lets the pending requests finish, flushes the
    /// history; its path and the tally.
    pub async fn finish(self) -> (PathBuf, Tally) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a client task");
        }
        self.recorder.out.lock().expect("the history lock").flush().expect("flush the history");
        let tally = self.recorder.tally();
        (self.path, tally)
    }
}
