//! The service ring's harness: a client of the shop's HTTP API ([`TestApp`]),
//! the embedded shop on port 0 over a fresh data folder ([`spawn_app`]), the
//! black-box [`suite`], and the distributed shape ([`distributed`]).
#![allow(dead_code)]

pub mod suite;
pub mod distributed;
pub mod binary;
pub mod faults;
pub mod history;
pub mod contract;
pub mod shred;

use std::time::{Duration, Instant};

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use shop::{RunningApp, Settings};
use tempfile::TempDir;

/// A shop seen through its HTTP API at `base`.
pub struct TestApp {
    pub client: Client,
    pub base: String,
    /// Which command process a proxy in front of several should send this
    /// client's writes to ([`TestApp::writer`]); `None`: any.
    writer: Option<usize>,
    /// The tenant this client acts for (`Parallax-Tenant`); `None`: the default one.
    tenant: Option<String>,
    /// The embedded shop this process runs, if any.
    shop: Option<RunningApp>,
    dir: Option<TempDir>,
}

/// The header that asks the distributed test proxy for one command process
/// ([`TestApp::writer`]); a shop itself ignores it.
pub const WRITER_HEADER: &str = "x-test-writer";

/// How long [`TestApp::eventually`] polls.
const EVENTUALLY: Duration = Duration::from_secs(20);

/// An HTTP client that drops a pooled connection after a second unused.
/// The shop closes a kept-alive connection after 5 s without a byte
/// (`http.idle_timeout_secs`); a client that keeps it longer can send a
/// request on it just as the server closes it, and gets a transport error
/// where an answer was due (a non-idempotent command cannot be resent).
pub fn http_client() -> Client {
    Client::builder().pool_idle_timeout(Duration::from_secs(1)).build().expect("an HTTP client")
}

/// Starts a shop in this process on a free port with a fresh data folder.
pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("create a temp folder");
    let settings = Settings::embedded("127.0.0.1:0".parse().expect("an address"), dir.path().into());
    let app = shop::start(settings).await.expect("start the shop");
    TestApp {
        base: app.url(),
        writer: None,
        tenant: None,
        shop: Some(app),
        client: http_client(),
        dir: Some(dir),
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
}

impl Answer {
    pub fn token(&self) -> String {
        self.body["token"].as_str().unwrap_or_else(|| panic!("no token in {}", self.body)).to_owned()
    }

    #[track_caller]
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.content_type, "application/problem+json", "body: {}", self.body);
        assert_eq!(self.body["status"], json!(status), "body: {}", self.body);
        for field in ["type", "title", "detail"] {
            assert!(self.body[field].is_string(), "problem without {field}: {}", self.body);
        }
    }

    /// A problem with `status` whose `code` says the aggregate refused for `code`.
    #[track_caller]
    pub fn assert_refusal(&self, status: u16, code: &str) {
        self.assert_problem(status);
        assert_eq!(self.body["code"], json!(code), "body: {}", self.body);
    }
}

async fn answer(response: Response) -> Answer {
    let status = response.status();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = response.text().await.expect("read the body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, content_type, body }
}

impl TestApp {
    /// A client of the shop at `base`, which runs elsewhere.
    pub fn remote(base: String) -> Self {
        Self { client: http_client(), base, writer: None, tenant: None, shop: None, dir: None }
    }

    /// Another client of the same shop, for concurrent tasks (it does not own the shop).
    pub fn detached(&self) -> Self {
        Self {
            client: self.client.clone(),
            base: self.base.clone(),
            writer: self.writer,
            tenant: self.tenant.clone(),
            shop: None,
            dir: None,
        }
    }

    /// A client of the same shop acting for tenant `name` (an open shop, or
    /// one whose keys are operator keys, takes the tenant from the header).
    pub fn as_tenant(&self, name: &str) -> Self {
        Self { tenant: Some(name.to_owned()), ..self.detached() }
    }

    /// A client whose writes go to command process `n` (modulo their number)
    /// when a proxy stands before several: as two clients of a round-robin
    /// load balancer that happened to land on different processes. One
    /// process (embedded) serves every `n`.
    pub fn writer(&self, n: usize) -> Self {
        Self { writer: Some(n), ..self.detached() }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>, key: Option<&str>) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(writer) = self.writer {
            request = request.header(WRITER_HEADER, writer);
        }
        if let Some(tenant) = &self.tenant {
            request = request.header("Parallax-Tenant", tenant);
        }
        answer(request.send().await.expect("send the request")).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body), None).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        answer(request.send().await.expect("send the request")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, None).await
    }

    /// GET that waits for `token` (the bounded wait of the API itself).
    pub async fn get_after(&self, path: &str, token: &str) -> Answer {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.get(&format!("{path}{sep}consistent_with={token}&wait_ms=10000")).await
    }

    /// Position of the event store's head: how much has ever been appended.
    pub async fn head(&self) -> u64 {
        let answer = self.get("/api/admin/projections").await;
        answer.body["head"].as_u64().unwrap_or_else(|| panic!("no head in {}", answer.body))
    }

    /// Polls `path` until `done` holds (the saga works asynchronously), for at most 20 s.
    pub async fn eventually(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            let answer = self.get(path).await;
            if answer.status == StatusCode::OK && done(&answer.body) {
                return answer.body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not reach the expected state within {EVENTUALLY:?}; last: {}",
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn register(&self, sku: &str, name: &str, price_cents: i64, stock: i64) -> Answer {
        let answer = self
            .post(
                "/api/products",
                json!({ "sku": sku, "name": name, "price_cents": price_cents, "stock": stock }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "register {sku}: {}", answer.body);
        answer
    }

    pub async fn add(&self, cart: &str, sku: &str, quantity: i64) -> Answer {
        let answer =
            self.post(&format!("/api/carts/{cart}/items"), json!({ "sku": sku, "quantity": quantity })).await;
        assert_eq!(answer.status, StatusCode::OK, "add {sku} to {cart}: {}", answer.body);
        answer
    }

    pub async fn check_out(&self, cart: &str, customer: &str) -> Answer {
        let answer =
            self.post(&format!("/api/carts/{cart}/checkout"), json!({ "customer_id": customer })).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "check out {cart}: {}", answer.body);
        answer
    }

    pub async fn order_status(&self, order_id: &str, status: &str) -> Value {
        self.eventually(&format!("/api/orders/{order_id}"), |order| order["status"] == status).await
    }

    /// Stops the embedded shop, if this client runs one.
    pub async fn stop(&mut self) {
        if let Some(app) = self.shop.take() {
            app.shutdown().await;
        }
    }
}
