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
//! The command process may be restarted on a new port while the driver runs:
//! [`Target::set`] points the clients at it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use parallax_core::ConsistencyToken;
use reqwest::Client;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// The SKU every hot cart is filled with.
pub const HOT_SKU: &str = "A";

/// Where the clients send their commands; changes when the command process
/// is restarted.
#[derive(Clone)]
pub struct Target(Arc<RwLock<String>>);

impl Target {
    pub fn new(base: String) -> Self {
        Self(Arc::new(RwLock::new(base)))
    }

    pub fn set(&self, base: String) {
        *self.0.write().expect("the target lock") = base;
    }

    fn get(&self) -> String {
        self.0.read().expect("the target lock").clone()
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
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            writers: 12,
            hot_carts: 4,
            checkouts: 2,
            timeout: Duration::from_secs(2),
            think: Duration::from_millis(2),
        }
    }
}

/// What the clients were told, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
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
}

impl Recorder {
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
    /// Records the invocation of `f` on cart `cart` (with the SKU and
    /// quantity of an `add_item`).
    fn invoke(
        recorder: &'a Recorder,
        run: &str,
        worker: usize,
        f: &str,
        cart: &str,
        item: Option<(&str, u32)>,
    ) -> Self {
        let id = recorder.next_id.fetch_add(1, Ordering::Relaxed);
        let mut base = json!({
            "id": id, "worker": worker, "f": f, "stream": format!("cart-{cart}"), "cart": cart,
            "key": format!("{run}-{id}"),
        });
        if let Some((sku, quantity)) = item {
            base["sku"] = json!(sku);
            base["quantity"] = json!(quantity);
        }
        let mut line = base.clone();
        line["type"] = json!("invoke");
        line["at_us"] = json!(recorder.at_us());
        recorder.write(&line);
        Self { recorder, base }
    }

    fn key(&self) -> String {
        self.base["key"].as_str().expect("a key").to_owned()
    }

    fn complete(self, outcome: Outcome) {
        let mut line = self.base;
        line["at_us"] = json!(self.recorder.at_us());
        match outcome {
            Outcome::Ok(position) => {
                line["type"] = json!("ok");
                line["position"] = json!(position);
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
}

enum Outcome {
    Ok(u64),
    Fail(u16, String),
    Info(String),
}

impl Outcome {
    /// How long the client waits before its next request: longer while the
    /// command process cannot be reached (it is being restarted).
    fn pause(&self, think: Duration) -> Duration {
        match self {
            Outcome::Fail(0, _) => think.max(Duration::from_millis(50)),
            _ => think,
        }
    }
}

/// Sends one command and classifies what came back.
async fn send(client: &Client, url: String, key: &str, body: Value) -> Outcome {
    let response = client.post(url).header("idempotency-key", key).json(&body).send().await;
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
        let position = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|body| body["token"].as_str().map(str::to_owned))
            .and_then(|token| token.parse::<ConsistencyToken>().ok())
            .map(|token| token.position);
        match position {
            Some(position) => Outcome::Ok(position),
            None => Outcome::Info(format!("{status} without a token: {text}")),
        }
    } else if status.is_client_error() {
        Outcome::Fail(status.as_u16(), text)
    } else {
        Outcome::Info(format!("{status}: {text}"))
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
        });
        let stop = Arc::new(AtomicBool::new(false));
        let client = Client::builder()
            .timeout(shape.timeout)
            .connect_timeout(shape.timeout)
            .build()
            .expect("an HTTP client");
        let mut tasks = Vec::new();
        for worker in 0..shape.writers {
            let (recorder, stop, client, target, run) =
                (recorder.clone(), stop.clone(), client.clone(), target.clone(), run.to_owned());
            let carts = shape.hot_carts.max(1);
            let think = shape.think;
            tasks.push(tokio::spawn(async move {
                let mut round = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // A fresh set of hot carts every 200 rounds, so no line
                    // reaches the cart's limit of 1,000 units.
                    let cart = format!("hot-{run}-{}-{}", round / 200, (worker + round) % carts);
                    round += 1;
                    let op = Op::invoke(&recorder, &run, worker, "add_item", &cart, Some((HOT_SKU, 1)));
                    let url = format!("{}/api/carts/{cart}/items", target.get());
                    let outcome =
                        send(&client, url, &op.key(), json!({ "sku": HOT_SKU, "quantity": 1 })).await;
                    let pause = outcome.pause(think);
                    op.complete(outcome);
                    tokio::time::sleep(pause).await;
                }
            }));
        }
        for index in 0..shape.checkouts {
            let worker = shape.writers + index;
            let (recorder, stop, client, target, run) =
                (recorder.clone(), stop.clone(), client.clone(), target.clone(), run.to_owned());
            let think = shape.think;
            tasks.push(tokio::spawn(async move {
                let mut round = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let cart = format!("buy-{run}-{worker}-{round}");
                    round += 1;
                    let mut filled = false;
                    for sku in ["B", "D"] {
                        let op = Op::invoke(&recorder, &run, worker, "add_item", &cart, Some((sku, 1)));
                        let url = format!("{}/api/carts/{cart}/items", target.get());
                        let outcome =
                            send(&client, url, &op.key(), json!({ "sku": sku, "quantity": 1 })).await;
                        filled |= matches!(outcome, Outcome::Ok(_));
                        op.complete(outcome);
                    }
                    if filled {
                        let op = Op::invoke(&recorder, &run, worker, "checkout", &cart, None);
                        let url = format!("{}/api/carts/{cart}/checkout", target.get());
                        let outcome = send(
                            &client,
                            url,
                            &op.key(),
                            json!({ "customer_id": format!("c-{run}-{worker}") }),
                        )
                        .await;
                        op.complete(outcome);
                    }
                    tokio::time::sleep(think).await;
                }
            }));
        }
        Self { recorder, stop, tasks, path: path.to_owned() }
    }

    /// What the clients were told so far.
    pub fn tally(&self) -> Tally {
        Tally {
            ok: self.recorder.ok.load(Ordering::Relaxed),
            fail: self.recorder.fail.load(Ordering::Relaxed),
            info: self.recorder.info.load(Ordering::Relaxed),
        }
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
        let tally = Tally {
            ok: self.recorder.ok.load(Ordering::Relaxed),
            fail: self.recorder.fail.load(Ordering::Relaxed),
            info: self.recorder.info.load(Ordering::Relaxed),
        };
        (self.path, tally)
    }
}
