//! Access: API keys with scopes on an embedded shop, and the refusal to
//! serve an open API beyond loopback.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::binary::shop_command;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shop::config::{ApiKeySettings, Scope};
use shop::{RunningApp, Settings};
use tempfile::TempDir;

const COMMAND_KEY: &str = "command-key-1b7f";
const QUERY_KEY: &str = "query-key-93ac";
const ADMIN_KEY: &str = "admin-key-5e20";

fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

fn api_key(name: &str, key: &str, scopes: &[Scope]) -> ApiKeySettings {
    ApiKeySettings {
        name: name.into(),
        key_sha256: sha256_hex(key),
        scopes: scopes.iter().copied().collect(),
        tenant: None,
    }
}

/// An embedded shop that asks for keys.
struct Guarded {
    app: RunningApp,
    client: Client,
    _dir: TempDir,
}

impl Guarded {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("create a temp folder");
        let mut settings = Settings::embedded("127.0.0.1:0".parse().expect("an address"), dir.path().into());
        settings.api_keys = vec![
            api_key("writer", COMMAND_KEY, &[Scope::Command]),
            api_key("reader", QUERY_KEY, &[Scope::Query]),
            api_key("ops", ADMIN_KEY, &[Scope::Admin]),
        ];
        let app = shop::start(settings).await.expect("start the shop");
        Self { app, client: common::http_client(), _dir: dir }
    }

    async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.app.url()));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send the request");
        let status = response.status();
        let header = |name: &str| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
        };
        let (content_type, authenticate) = (header("content-type"), header("www-authenticate"));
        let text = response.text().await.expect("read the body");
        Answer { status, content_type, authenticate, text }
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    authenticate: String,
    text: String,
}

impl Answer {
    #[track_caller]
    fn assert_status(&self, status: StatusCode) {
        assert_eq!(self.status, status, "body: {}", self.text);
    }

    #[track_caller]
    fn assert_problem(&self, status: StatusCode) {
        self.assert_status(status);
        assert_eq!(self.content_type, "application/problem+json", "body: {}", self.text);
        let body: Value = serde_json::from_str(&self.text).expect("a JSON problem");
        assert_eq!(body["status"], json!(status.as_u16()), "{body}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(self.authenticate, "Bearer");
        }
    }
}

fn product() -> Value {
    json!({ "sku": "tea", "name": "Tea", "price_cents": 450, "stock": 10 })
}

#[tokio::test]
async fn routes_ask_for_a_key_with_their_scope() {
    let shop = Guarded::start().await;

    // No key, or a wrong one: 401 on commands and queries alike.
    shop.call(Method::POST, "/api/products", None, Some(product()))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
    shop.call(Method::GET, "/api/products", None, None).await.assert_problem(StatusCode::UNAUTHORIZED);
    shop.call(Method::GET, "/api/products", Some("not-a-key"), None)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
    shop.call(Method::GET, "/api/products", Some(&sha256_hex(QUERY_KEY)), None)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
    shop.call(Method::GET, "/metrics", None, None).await.assert_problem(StatusCode::UNAUTHORIZED);

    // A query key reads but does not write.
    shop.call(Method::GET, "/api/products", Some(QUERY_KEY), None).await.assert_status(StatusCode::OK);
    shop.call(Method::POST, "/api/products", Some(QUERY_KEY), Some(product()))
        .await
        .assert_problem(StatusCode::FORBIDDEN);

    // A command key writes, but neither reads nor administers.
    shop.call(Method::POST, "/api/products", Some(COMMAND_KEY), Some(product()))
        .await
        .assert_status(StatusCode::CREATED);
    shop.call(Method::GET, "/api/products", Some(COMMAND_KEY), None)
        .await
        .assert_problem(StatusCode::FORBIDDEN);
    shop.call(Method::GET, "/api/admin/projections", Some(QUERY_KEY), None)
        .await
        .assert_problem(StatusCode::FORBIDDEN);

    // The admin key administers.
    shop.call(Method::GET, "/api/admin/projections", Some(ADMIN_KEY), None)
        .await
        .assert_status(StatusCode::OK);
    let metrics = shop.call(Method::GET, "/metrics", Some(ADMIN_KEY), None).await;
    metrics.assert_status(StatusCode::OK);
    assert!(metrics.content_type.starts_with("text/plain"), "{}", metrics.content_type);

    // Probes and the dashboard page are open.
    shop.call(Method::GET, "/health", None, None).await.assert_status(StatusCode::OK);
    shop.call(Method::GET, "/ready", None, None).await.assert_status(StatusCode::OK);
    shop.call(Method::GET, "/", None, None).await.assert_status(StatusCode::OK);
    shop.call(Method::GET, "/dashboard.js", None, None).await.assert_status(StatusCode::OK);

    shop.app.shutdown().await;
}

#[tokio::test]
async fn the_live_stream_takes_the_key_in_its_query_too() {
    let shop = Guarded::start().await;
    let stream = |query: &str| {
        let url = format!("{}/api/events/stream{query}", shop.app.url());
        let client = shop.client.clone();
        async move { client.get(url).send().await.expect("open the stream").status() }
    };
    assert_eq!(stream("").await, StatusCode::UNAUTHORIZED);
    assert_eq!(stream("?api_key=wrong").await, StatusCode::UNAUTHORIZED);
    assert_eq!(stream(&format!("?api_key={COMMAND_KEY}")).await, StatusCode::FORBIDDEN);
    assert_eq!(stream(&format!("?after=0&api_key={QUERY_KEY}")).await, StatusCode::OK);
    // Only the stream: elsewhere the query parameter is no key.
    let products = shop
        .client
        .get(format!("{}/api/products?api_key={QUERY_KEY}", shop.app.url()))
        .send()
        .await
        .expect("a query");
    assert_eq!(products.status(), StatusCode::UNAUTHORIZED);
    shop.app.shutdown().await;
}

/// `shop serve --listen 0.0.0.0:0`: its exit status and stderr, or the
/// address it listens on (then it is killed).
fn serve_on_every_interface(keys: Option<String>) -> Result<String, (Option<i32>, String)> {
    let dir = tempfile::tempdir().expect("create a temp folder");
    let mut command = shop_command(["serve", "--listen", "0.0.0.0:0", "--data-dir"]);
    command.arg(dir.path()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(keys) = keys {
        command.env("SHOP__API_KEYS", keys);
    }
    let mut child = command.spawn().expect("start the shop binary");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read stdout");
    if line.starts_with("listening on ") {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(line.trim().to_owned());
    }
    let output = child.wait_with_output().expect("wait for the shop");
    Err((output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned()))
}

#[test]
fn an_open_api_is_refused_beyond_loopback() {
    let (code, stderr) = serve_on_every_interface(None).expect_err("an open API on 0.0.0.0");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0 without api_keys"), "{stderr}");

    let keys = format!(r#"[{{name="ops",key_sha256="{}",scopes=["admin"]}}]"#, sha256_hex(ADMIN_KEY));
    let listening = serve_on_every_interface(Some(keys)).expect("a guarded API on 0.0.0.0");
    assert!(listening.starts_with("listening on http://0.0.0.0:"), "{listening}");
}
