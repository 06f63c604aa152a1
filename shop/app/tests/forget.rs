//! Crypto-shredding, embedded: a checkout with personal data, read back
//! opened; `POST /api/customers/{id}/forget`; the same orders read as
//! erased, a rebuild gives the same erased views, totals and sales are
//! unchanged, the events still carry the ciphertext (which the forgotten
//! key opened and nothing opens now); and the plaintext is in no byte of
//! the SQLite files, before the forget or after it, nor the key after it.

mod common;

use std::path::Path;

use common::shred::{self, contains, plaintexts, ADDRESS, EMAIL, NAME};
use common::TestApp;
use parallax_core::{EventLog, KeyStore, ERASED};
use parallax_sqlite::{SqliteKeyStore, SqliteLog};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shop::ops::{rebuild, RebuildFrom};
use shop::Settings;
use shop_events::{CartEvent, Contact, OrderEvent, ShopCodec, ShopEvent};

/// The bytes of each database of the data folder: its file, write-ahead
/// log and shared memory together, under the database's name.
fn databases(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("list the data folder")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut databases: Vec<(String, Vec<u8>)> = Vec::new();
    for path in files {
        let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
        let database = name.split_once(".db").map_or(name.clone(), |(stem, _)| format!("{stem}.db"));
        let bytes = std::fs::read(&path).expect("read a data file");
        match databases.iter_mut().find(|(name, _)| *name == database) {
            Some((_, all)) => all.extend(bytes),
            None => databases.push((database, bytes)),
        }
    }
    databases
}

/// The event store's and the read store's files, checked by
/// [`shred::assert_nowhere`].
#[track_caller]
fn assert_nowhere(dir: &Path, needles: &[Vec<u8>], when: &str) {
    let databases = databases(dir);
    let names: Vec<&str> = databases.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["events.db", "views.db"], "the data folder's databases");
    shred::assert_nowhere(&databases, needles, when);
}

async fn place_order(app: &TestApp, cart: &str, customer: &str, contact: Option<Value>) -> (String, Value) {
    app.add(cart, "LAMP", 2).await;
    let mut body = json!({ "customer_id": customer });
    if let Some(contact) = contact {
        body["contact"] = contact;
    }
    let checkout = app.post(&format!("/api/carts/{cart}/checkout"), body).await;
    assert_eq!(checkout.status, StatusCode::ACCEPTED, "{}", checkout.body);
    let order_id = checkout.body["order_id"].as_str().expect("an order id").to_owned();
    app.order_status(&order_id, "confirmed").await;
    (order_id, checkout.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_customer_reads_as_erased_and_leaves_no_plaintext() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let settings = Settings::embedded("127.0.0.1:0".parse().expect("an address"), dir.path().into());
    let running = shop::start(settings.clone()).await.expect("start the shop");
    let app = TestApp::remote(running.url());
    app.register("LAMP", "Desk lamp", 2_500, 100).await;

    let (zelda_order, _) = place_order(&app, "z1", "zelda", Some(shred::contact())).await;
    let other = json!({ "name": "Oskar Other", "email": "oskar@example.org", "address": "2 Main St" });
    let (oskar_order, _) = place_order(&app, "o1", "oskar", Some(other)).await;
    let (plain_order, _) = place_order(&app, "p1", "zelda", None).await;

    let order = app.get(&format!("/api/orders/{zelda_order}")).await.body;
    assert_eq!(order["contact"], shred::contact(), "opened with the key: {order}");
    assert!(order.get("personal").is_none(), "the sealed form stays inside: {order}");
    let listed = app.get("/api/customers/zelda/orders").await.body;
    let listed = listed["orders"].as_array().expect("orders");
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|o| o["contact"] == shred::contact()), "{listed:?}");
    assert!(
        listed.iter().any(|o| o.get("contact").is_none()),
        "an order without contact has none: {listed:?}"
    );
    let sales_before = app.get("/api/reports/sales").await.body;

    // The checkout's data is sealed everywhere it is stored.
    assert_nowhere(dir.path(), &plaintexts(), "before forget");
    let keys = SqliteKeyStore::open(&settings.events_path()).expect("open the key table");
    let key = keys.key("zelda").await.expect("read").expect("zelda has a key");
    let stored = databases(dir.path()).iter().any(|(_, bytes)| contains(bytes, key.as_bytes()));
    assert!(stored, "the search finds the key while it exists");

    let forgotten = app.post("/api/customers/zelda/forget", json!(null)).await;
    assert_eq!(forgotten.status, StatusCode::OK, "{}", forgotten.body);
    assert_eq!(forgotten.body, json!({ "customer_id": "zelda", "key_destroyed": true }));
    let again = app.post("/api/customers/zelda/forget", json!(null)).await;
    assert_eq!(again.body["key_destroyed"], false, "idempotent: {}", again.body);

    let erased = json!({ "name": ERASED, "email": ERASED, "address": ERASED });
    let after = app.get(&format!("/api/orders/{zelda_order}")).await.body;
    assert_eq!(after["contact"], erased, "{after}");
    let mut unchanged = order.clone();
    unchanged["contact"] = erased.clone();
    assert_eq!(after, unchanged, "everything but the personal data is as it was");
    assert_eq!(app.get(&format!("/api/orders/{oskar_order}")).await.body["contact"]["name"], "Oskar Other");
    assert_eq!(app.get(&format!("/api/orders/{plain_order}")).await.body["total_cents"], 5_000);
    assert_eq!(app.get("/api/reports/sales").await.body, sales_before, "sales are intact");

    // A rebuild from position 0 gives the same erased views.
    let rebuilt = rebuild(&settings, "orders", RebuildFrom::Log).await.expect("rebuild the orders");
    assert_ne!(rebuilt.from, rebuilt.to);
    assert_eq!(app.get(&format!("/api/orders/{zelda_order}")).await.body, after, "the rebuilt view");
    let relisted = app.get("/api/customers/zelda/orders").await.body;
    assert!(relisted["orders"].as_array().expect("orders").iter().any(|o| o["contact"] == erased));

    // The events keep the ciphertext: the destroyed key opened it, nothing does now.
    let log = SqliteLog::open(&settings.events_path()).expect("the event store, read-only");
    let sealed = sealed_in_events(&log, "zelda").await;
    assert_eq!(sealed.len(), 2, "cart.checked_out and order.placed carry it");
    let contact = Contact { name: NAME.into(), email: EMAIL.into(), address: ADDRESS.into() };
    for personal in &sealed {
        assert_eq!(personal.open(Some(&key), "zelda"), contact);
        assert_eq!(personal.open(None, "zelda").name, ERASED);
    }

    let mut needles = plaintexts();
    needles.push(key.as_bytes().to_vec());
    assert_nowhere(dir.path(), &needles, "after forget");
    running.shutdown().await;
}

/// The sealed personal data of `customer`'s events, as any consumer of the
/// log decodes it.
async fn sealed_in_events(log: &SqliteLog, customer: &str) -> Vec<shop_events::PersonalData> {
    let codec = ShopCodec::default();
    let events = log.read(0, 10_000).await.expect("read the log");
    events
        .iter()
        .filter_map(|record| match codec.decode(record).expect("every event decodes") {
            Some(ShopEvent::Cart(CartEvent::CheckedOut { customer_id, personal, .. }))
            | Some(ShopEvent::Order(OrderEvent::Placed { customer_id, personal, .. })) => {
                personal.filter(|_| customer_id == customer)
            }
            _ => None,
        })
        .collect()
}

/// A contact that breaks its schema is refused with a precise 400, and
/// nothing is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_contact_is_refused() {
    let app = common::spawn_app().await;
    app.register("LAMP", "Desk lamp", 2_500, 100).await;
    app.add("c1", "LAMP", 1).await;
    let head = app.head().await;
    let cases = [
        (json!({ "name": " ", "email": EMAIL, "address": ADDRESS }), "contact.name"),
        (json!({ "name": NAME, "email": "no-at-sign", "address": ADDRESS }), "contact.email"),
        (json!({ "name": NAME, "email": "a@b@c", "address": ADDRESS }), "contact.email"),
        (json!({ "name": NAME, "email": EMAIL, "address": "tab\there" }), "contact.address"),
        (json!({ "name": NAME, "email": EMAIL }), "address"),
        (json!({ "name": NAME, "email": EMAIL, "address": ADDRESS, "phone": "1" }), "phone"),
        (json!(null), "null"),
    ];
    for (contact, named) in cases {
        let refused =
            app.post("/api/carts/c1/checkout", json!({ "customer_id": "zelda", "contact": contact })).await;
        refused.assert_problem(400);
        assert!(refused.body["detail"].as_str().expect("detail").contains(named), "{}", refused.body);
    }
    assert_eq!(app.head().await, head, "nothing appended");
}
