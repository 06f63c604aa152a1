//! Crypto-shredding in the distributed shape, the hard way: a customer's
//! name, e-mail and address are in no byte of the write database
//! (`pg_dump`), the read database (`pg_dump`, or every row of every table of
//! the Cassandra keyspace) or the Kafka topic (read from offset 0), before
//! `forget` and after it; after it the orders read as erased in the query
//! processes, a rebuild from the topic gives the same, and the key is in no
//! dump.
//!
//! Needs `scripts/services/postgres start`, `kafka start` and `cassandra
//! start`, as `tests/distributed.rs` and `tests/cassandra.rs` do.

mod common;

use common::distributed::{Deployment, Message, ReadDb, STANDARD};
use common::shred::{self, contains, plaintexts, CUSTOMER};
use parallax_core::{EventStore, KeyStore, ERASED};
use parallax_postgres::PgKeyStore;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The plain SQL dump of the database at `url`.
async fn pg_dump(url: &str) -> Vec<u8> {
    let output = tokio::process::Command::new("pg_dump")
        .args(["--no-owner", "--no-privileges", url])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run pg_dump");
    assert!(output.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// Every byte a consumer of the topic reads: keys, headers and payloads.
fn topic_bytes(messages: &[Message]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for message in messages {
        bytes.extend(message.key.as_deref().unwrap_or_default().as_bytes());
        for (name, value) in &message.headers {
            bytes.extend(format!("{name}={value}\n").into_bytes());
        }
        bytes.extend(message.payload.as_deref().unwrap_or_default().as_bytes());
        bytes.push(b'\n');
    }
    bytes
}

/// What the deployment stores, by where: the write database's dump, the
/// views (a dump, or every row of every Cassandra table), the topic.
async fn stored(deployment: &Deployment) -> Vec<(String, Vec<u8>)> {
    let views = match deployment.read_db {
        ReadDb::Postgres => ("pg_dump of the read database".to_owned(), pg_dump(&deployment.read_url).await),
        ReadDb::Cassandra => {
            ("every row of the Cassandra keyspace".to_owned(), cassandra_rows(deployment).await)
        }
    };
    vec![
        ("pg_dump of the write database".to_owned(), pg_dump(&deployment.write_url).await),
        views,
        ("the Kafka topic from offset 0".to_owned(), topic_bytes(&deployment.read_topic().await)),
    ]
}

/// Every row of every table of the deployment's keyspace (whatever
/// generation of a view it holds), as `SELECT JSON` shows it.
async fn cassandra_rows(deployment: &Deployment) -> Vec<u8> {
    let store = deployment.cassandra().await;
    let session = store.session();
    let strings = |query: String| async move {
        let mut rows = session
            .query_iter(query.clone(), ())
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .rows_stream::<(String,)>()
            .expect("rows of text");
        let mut all = Vec::new();
        while let Some(row) = futures::StreamExt::next(&mut rows).await {
            all.push(row.expect("a row").0);
        }
        all
    };
    let keyspace = store.keyspace();
    let tables =
        strings(format!("SELECT table_name FROM system_schema.tables WHERE keyspace_name = '{keyspace}'"))
            .await;
    assert!(tables.len() > 3, "the keyspace's tables: {tables:?}");
    let mut bytes = Vec::new();
    for table in tables {
        for row in strings(format!("SELECT JSON * FROM {keyspace}.{table}")).await {
            bytes.extend(format!("{table}: {row}\n").into_bytes());
        }
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn forget_leaves_no_plaintext(read_db: ReadDb) {
    let deployment = Deployment::start_with(STANDARD, read_db).await;
    let app = &deployment.app;
    app.register("LAMP", "Desk lamp", 2_500, 1_000).await;
    app.add("z1", "LAMP", 2).await;
    let body = json!({ "customer_id": CUSTOMER, "contact": shred::contact() });
    let checkout = app.post("/api/carts/z1/checkout", body).await;
    assert_eq!(checkout.status, StatusCode::ACCEPTED, "{}", checkout.body);
    let order_id = checkout.body["order_id"].as_str().expect("an order id").to_owned();
    let path = format!("/api/orders/{order_id}");
    app.order_status(&order_id, "confirmed").await;
    let order = app.eventually(&path, |order| order["contact"] == shred::contact()).await;
    let head = deployment.event_store().await.head().await.expect("the head");
    deployment.wait_caught_up(head).await;

    let pool = parallax_postgres::pool(&deployment.write_url, 2).await.expect("the write database");
    let key = PgKeyStore::new(pool.clone()).key(CUSTOMER).await.expect("read").expect("a key");
    let before = stored(&deployment).await;
    assert!(contains(&before[0].1, hex(key.as_bytes()).as_bytes()), "the dump shows a stored key");
    shred::assert_nowhere(&before, &plaintexts(), "before forget");

    let forgotten = app.post(&format!("/api/customers/{CUSTOMER}/forget"), json!(null)).await;
    assert_eq!(forgotten.status, StatusCode::OK, "{}", forgotten.body);
    assert_eq!(forgotten.body["key_destroyed"], true, "{}", forgotten.body);
    // Both query processes read the key store: neither shows the data again.
    let erased = json!({ "name": ERASED, "email": ERASED, "address": ERASED });
    let mut expected = order.clone();
    expected["contact"] = erased;
    for _ in 0..4 {
        assert_eq!(app.get(&path).await.body, expected, "erased, and otherwise as it was");
    }

    let rebuilt = deployment.shop(&["rebuild", "orders"]).await;
    assert!(rebuilt.starts_with("orders: generation 2 serves"), "{rebuilt}");
    assert_eq!(app.get(&path).await.body, expected, "the rebuilt view");
    let listed: Value = app.get(&format!("/api/customers/{CUSTOMER}/orders")).await.body;
    assert_eq!(listed["orders"][0], expected, "{listed}");

    let mut needles = plaintexts();
    needles.push(hex(key.as_bytes()).into_bytes());
    needles.push(key.as_bytes().to_vec());
    shred::assert_nowhere(&stored(&deployment).await, &needles, "after forget");
    pool.close().await;
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_leaves_no_plaintext_in_postgres_and_kafka() {
    forget_leaves_no_plaintext(ReadDb::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_leaves_no_plaintext_in_cassandra() {
    forget_leaves_no_plaintext(ReadDb::Cassandra).await;
}
