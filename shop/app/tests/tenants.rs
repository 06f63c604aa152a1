//! Tenants on the embedded shop: keys that act for one tenant alone, and a
//! random workload over three tenants (the default one among them) with the
//! same SKUs, cart ids and customer ids, after which no query of one tenant
//! returns a document of another, `shop check` finds every tenant's views
//! equal to the rebuild from the event store and to its model, and a rebuild
//! of every projection answers every query as before. The suite's case
//! `two_tenants_with_the_same_ids_never_see_or_change_each_others` runs the
//! crossed reads and writes on PostgreSQL and Cassandra as well.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shop::check::{check, CheckOptions};
use shop::config::{ApiKeySettings, Scope};
use shop::ops::{Only, RebuildFrom};
use shop::Settings;

const ACME_KEY: &str = "acme-key-77c1";
const BOLT_KEY: &str = "bolt-key-03e9";
const OPS_KEY: &str = "ops-key-c4d2";

fn api_key(name: &str, key: &str, scopes: &[Scope], tenant: Option<&str>) -> ApiKeySettings {
    ApiKeySettings {
        name: name.into(),
        key_sha256: Sha256::digest(key.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect(),
        scopes: scopes.iter().copied().collect(),
        tenant: tenant.map(str::to_owned),
    }
}

/// One request with a key and, optionally, a `Parallax-Tenant` header.
async fn call(
    shop: &shop::RunningApp,
    (method, path): (Method, &str),
    key: &str,
    tenant: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request =
        reqwest::Client::new().request(method, format!("{}{path}", shop.url())).bearer_auth(key);
    if let Some(tenant) = tenant {
        request = request.header("Parallax-Tenant", tenant);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("send the request");
    let status = response.status();
    let text = response.text().await.expect("read the body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_key_acts_for_its_tenant_alone_and_an_operator_key_names_one() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let mut settings = Settings::embedded("127.0.0.1:0".parse().expect("an address"), dir.path().into());
    let both = [Scope::Command, Scope::Query];
    settings.api_keys = vec![
        api_key("acme", ACME_KEY, &both, Some("acme")),
        api_key("bolt", BOLT_KEY, &both, Some("bolt")),
        api_key("ops", OPS_KEY, &[Scope::Command, Scope::Query, Scope::Admin], None),
    ];
    let shop = shop::start(settings.clone()).await.expect("start the shop");
    let tea = json!({ "sku": "T-1", "name": "Acme tea", "price_cents": 100, "stock": 5 });
    let (status, registered) = call(&shop, (Method::POST, "/api/products"), ACME_KEY, None, Some(tea)).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let token = registered["token"].as_str().expect("a token").to_owned();
    assert!(token.ends_with(".acme"), "{token}");
    let product = format!("/api/products/T-1?consistent_with={token}&wait_ms=10000");
    let bolt_tea = json!({ "sku": "B-1", "name": "Bolt tea", "price_cents": 300, "stock": 1 });
    let (status, _) = call(&shop, (Method::POST, "/api/products"), BOLT_KEY, None, Some(bolt_tea)).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, body) = call(&shop, (Method::GET, &product), ACME_KEY, None, None).await;
    assert_eq!((status, &body["name"]), (StatusCode::OK, &json!("Acme tea")));
    // The same key naming its own tenant is the same; naming another, refused.
    assert_eq!(call(&shop, (Method::GET, &product), ACME_KEY, Some("acme"), None).await.0, StatusCode::OK);
    let (status, body) = call(&shop, (Method::GET, &product), ACME_KEY, Some("bolt"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["detail"].as_str().expect("a detail").contains("acts for tenant acme only"), "{body}");
    // Another tenant's key finds nothing there, nor can it change it, nor wait on its token.
    let plain = "/api/products/T-1";
    assert_eq!(call(&shop, (Method::GET, plain), BOLT_KEY, None, None).await.0, StatusCode::NOT_FOUND);
    let reprice = Some(json!({ "price_cents": 1 }));
    let (status, _) = call(&shop, (Method::POST, "/api/products/T-1/price"), BOLT_KEY, None, reprice).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&shop, (Method::GET, &product.replace("T-1", "B-1")), BOLT_KEY, None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "acme's token on bolt's query");
    // The operator key reads the tenant it names; without a header, the default tenant.
    let (status, body) = call(&shop, (Method::GET, &product), OPS_KEY, Some("acme"), None).await;
    assert_eq!((status, &body["stock"]), (StatusCode::OK, &json!(5)));
    assert_eq!(call(&shop, (Method::GET, plain), OPS_KEY, None, None).await.0, StatusCode::NOT_FOUND);
    let (status, body) = call(&shop, (Method::GET, plain), OPS_KEY, Some("Not-A-Tenant"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // `shop events tail --tenant acme` prints acme's events alone.
    let mut out = Vec::new();
    let only = Only { tenant: Some("acme".parse().expect("a tenant")), stream: None };
    shop::ops::tail_events(&settings, &only, 0, false, &mut out).await.expect("tail");
    let out = String::from_utf8(out).expect("text");
    assert!(out.contains("acme/product-T-1@1") && !out.contains("bolt/"), "{out}");
    shop.shutdown().await;
}

/// xorshift64*: the workload's choices, repeatable from the printed seed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

const SKUS: u64 = 4;
const CARTS: u64 = 5;
const CUSTOMERS: u64 = 3;

/// What one tenant did.
#[derive(Default)]
struct Done {
    orders: BTreeSet<String>,
}

/// A random workload over `tenants`, each with the same ids; every name
/// a tenant gives starts with its own mark (`tenant:`).
async fn workload(tenants: &[(&str, TestApp)], dice: &mut Dice) -> BTreeMap<String, Done> {
    let mut done: BTreeMap<String, Done> = BTreeMap::new();
    for (mark, app) in tenants {
        for sku in 0..SKUS {
            let price = 100 + i64::try_from(dice.below(900)).expect("small");
            app.register(&format!("S{sku}"), &format!("{mark}:S{sku}"), price, 1_000_000).await;
        }
        done.entry((*mark).to_owned()).or_default();
    }
    for _ in 0..150 {
        let (mark, app) = &tenants[usize::try_from(dice.below(tenants.len() as u64)).expect("small")];
        let cart = format!("c{}", dice.below(CARTS));
        match dice.below(10) {
            0..=5 => {
                let body = json!({ "sku": format!("S{}", dice.below(SKUS)), "quantity": 1 + dice.below(3) });
                app.post(&format!("/api/carts/{cart}/items"), body).await;
            }
            6 => {
                let path = format!("/api/carts/{cart}/items/S{}", dice.below(SKUS));
                app.send(Method::DELETE, &path, None, None).await;
            }
            _ => {
                let customer = format!("u{}", dice.below(CUSTOMERS));
                let answer = app
                    .post(&format!("/api/carts/{cart}/checkout"), json!({ "customer_id": customer }))
                    .await;
                if answer.status == StatusCode::ACCEPTED {
                    let order = answer.body["order_id"].as_str().expect("an order id").to_owned();
                    done.get_mut(*mark).expect("a tenant").orders.insert(order);
                }
            }
        }
    }
    done
}

/// Every answer of every query of `app`'s tenant, by path, checking that
/// each holds the tenant's documents alone (names marked `mark:`, orders
/// its own) and that the others' orders are not found.
async fn answers(app: &TestApp, mark: &str, own: &Done, others: &[&String]) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    let named = |value: &Value, path: &str| {
        let text = value.to_string();
        for name in text.split("\"name\":\"").skip(1) {
            assert!(name.starts_with(&format!("{mark}:")), "{path} of tenant {mark} holds {text}");
        }
    };
    let mut paths = vec!["/api/products".to_owned(), "/api/reports/sales?limit=500".to_owned()];
    paths.extend((0..CARTS).map(|cart| format!("/api/carts/c{cart}")));
    paths.extend((0..CUSTOMERS).map(|customer| format!("/api/customers/u{customer}/orders?limit=500")));
    paths.extend(own.orders.iter().map(|order| format!("/api/orders/{order}")));
    for path in paths {
        let answer = app.get(&path).await;
        assert!(
            answer.status == StatusCode::OK || answer.status == StatusCode::NOT_FOUND,
            "{path}: {}",
            answer.body
        );
        named(&answer.body, &path);
        if path.contains("/customers/") {
            for order in answer.body["orders"].as_array().expect("orders") {
                let id = order["order_id"].as_str().expect("an id");
                assert!(own.orders.contains(id), "{path} of tenant {mark} lists {id}, not its own");
            }
        }
        all.insert(path, answer.body);
    }
    assert_eq!(all["/api/products"]["products"].as_array().expect("products").len(), SKUS as usize);
    for order in others {
        app.get(&format!("/api/orders/{order}")).await.assert_problem(404);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_query_of_one_tenant_returns_another_tenants_documents_and_a_rebuild_changes_none() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let settings = Settings::embedded("127.0.0.1:0".parse().expect("an address"), dir.path().into());
    let shop = shop::start(settings.clone()).await.expect("start the shop");
    let base = TestApp::remote(shop.url());
    let tenants =
        [("default", base.detached()), ("acme", base.as_tenant("acme")), ("bolt", base.as_tenant("bolt"))];
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_nanos();
    let seed = u64::try_from(seed % u128::from(u64::MAX)).expect("in range") | 1;
    eprintln!("workload seed {seed}");
    let done = workload(&tenants, &mut Dice(seed)).await;
    for (mark, app) in &tenants {
        for order in &done[*mark].orders {
            let settled = |o: &Value| o["status"] != "pending" && o["status"] != "placed";
            app.eventually(&format!("/api/orders/{order}"), settled).await;
        }
    }
    // The saga is done once the head stands still.
    let mut head = base.head().await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = base.head().await;
        if now == head {
            break;
        }
        head = now;
    }
    let mut before = BTreeMap::new();
    for (mark, app) in &tenants {
        let others: Vec<&String> =
            done.iter().filter(|(other, _)| other != mark).flat_map(|(_, d)| &d.orders).collect();
        before.insert(*mark, answers(app, mark, &done[*mark], &others).await);
    }

    let report = check(&settings, CheckOptions { history: None, wait: Duration::from_secs(60) })
        .await
        .expect("the check runs");
    assert!(report.ok, "{}", report.render());
    for projection in shop_read::all_projections() {
        shop::ops::rebuild(&settings, projection.name(), RebuildFrom::Log).await.expect("rebuild");
    }
    assert_eq!(base.head().await, head, "the rebuild appended nothing");
    for (mark, app) in &tenants {
        let others: Vec<&String> =
            done.iter().filter(|(other, _)| other != mark).flat_map(|(_, d)| &d.orders).collect();
        assert_eq!(
            answers(app, mark, &done[*mark], &others).await,
            before[mark],
            "tenant {mark} after the rebuild"
        );
    }
    shop.shutdown().await;
}

/// The same customer id in two tenants is two customers with two keys:
/// forgetting one tenant's erases its orders' contact alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_customer_forgets_the_tenants_customer_alone() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let settings = Settings::embedded("127.0.0.1:0".parse().expect("an address"), dir.path().into());
    let shop = shop::start(settings).await.expect("start the shop");
    let base = TestApp::remote(shop.url());
    let mut orders = Vec::new();
    for (tenant, name) in [("acme", "Ann Acme"), ("bolt", "Bob Bolt")] {
        let app = base.as_tenant(tenant);
        app.register("LAMP", "Lamp", 900, 10).await;
        app.add("c1", "LAMP", 1).await;
        let contact = json!({ "name": name, "email": "x@example.org", "address": "1 Lane" });
        let body = json!({ "customer_id": "cust", "contact": contact });
        let checkout = app.post("/api/carts/c1/checkout", body).await;
        assert_eq!(checkout.status, StatusCode::ACCEPTED, "{}", checkout.body);
        let order = checkout.body["order_id"].as_str().expect("an order id").to_owned();
        app.order_status(&order, "confirmed").await;
        orders.push((app, order, name));
    }
    let forgotten = orders[0].0.post("/api/customers/cust/forget", json!({})).await;
    assert_eq!((forgotten.status, &forgotten.body["key_destroyed"]), (StatusCode::OK, &json!(true)));
    let contact = |app: &TestApp, order: &str| {
        let (app, path) = (app.detached(), format!("/api/orders/{order}"));
        async move { app.get(&path).await.body["contact"]["name"].clone() }
    };
    assert_eq!(contact(&orders[0].0, &orders[0].1).await, json!(parallax_core::ERASED));
    assert_eq!(contact(&orders[1].0, &orders[1].1).await, json!(orders[1].2), "bolt's cust keeps a key");
    // The default tenant's cust never had one.
    assert_eq!(base.post("/api/customers/cust/forget", json!({})).await.body["key_destroyed"], json!(false));
    shop.shutdown().await;
}
