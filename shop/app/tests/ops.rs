//! `shop status` and `shop events tail` against a running embedded shop.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::binary::{add_then_read_cart, post, shop_command, start};
use reqwest::Client;
use serde_json::{json, Value};

fn run(args: &[&str], data_dir: &std::path::Path) -> String {
    let output = shop_command(args).arg("--data-dir").arg(data_dir).output().expect("run the shop binary");
    assert!(output.status.success(), "shop {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// A shop on `data_dir` with `stock` pens (SKU `P`) registered.
async fn shop_selling_pens(data_dir: &std::path::Path, client: &Client, stock: u32) -> common::binary::Shop {
    let shop = start(data_dir, client).await;
    let product = json!({"sku": "P", "name": "Pen", "price_cents": 100, "stock": stock});
    post(client, format!("{}/api/products", shop.base), product).await;
    shop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_events_tail_see_what_the_shop_committed() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let client = common::http_client();
    let shop = shop_selling_pens(dir.path(), &client, 5).await;
    let base = &shop.base;
    post(&client, format!("{base}/api/carts/c1/items"), json!({"sku": "P", "quantity": 2})).await;
    let added = post(&client, format!("{base}/api/carts/c2/items"), json!({"sku": "P", "quantity": 1})).await;
    // The cart view holds the last command: every projection has had the time to catch up.
    let token = added["token"].as_str().expect("a token");
    let cart =
        client.get(format!("{base}/api/carts/c2?consistent_with={token}")).send().await.expect("a query");
    assert!(cart.status().is_success());

    // Events, all of them, then one stream's.
    let all = run(&["events", "tail", "--after", "0", "--no-follow"], dir.path());
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 3, "{all}");
    assert!(lines[0].contains("product-P@1") && lines[0].contains("product.registered"), "{all}");
    assert!(lines[2].trim_start().starts_with('3') && lines[2].contains("cart-c2@1"), "{all}");
    let one = run(&["events", "tail", "--after", "0", "--no-follow", "--stream", "cart-c1"], dir.path());
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(one.contains("cart.item_added") && one.contains("\"quantity\":2"), "{one}");

    // Status: every projection at the head, nothing behind, no dead letter.
    let eventually_caught_up = async {
        for _ in 0..100 {
            let status: Value = serde_json::from_str(&run(&["status", "--json"], dir.path())).expect("JSON");
            if status.as_array().expect("projections").iter().all(|p| p["state"] == "caught up") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the projections never caught up");
    };
    let status = eventually_caught_up.await;
    let names: Vec<&str> = status.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["catalog", "carts", "orders", "sales"]);
    for projection in status.as_array().unwrap() {
        assert_eq!(projection["dead_letters"], 0);
        assert_eq!(projection["partitions"][0]["position"], 3, "{projection}");
        assert_eq!(projection["partitions"][0]["lag"], 0, "{projection}");
    }
    let table = run(&["status"], dir.path());
    assert!(table.lines().next().unwrap_or_default().contains("dead letters"), "{table}");
    assert_eq!(table.lines().filter(|line| line.contains("caught up")).count(), 4, "{table}");

    // Following: a line for an event committed after the tail started.
    let mut tail = shop_command(["events", "tail", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the tail");
    let stdout = tail.stdout.take().expect("its stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.expect("a line")).is_err() {
                return;
            }
        }
    });
    // Commit until the tail (which starts at the head it finds) prints one.
    let mut seen = None;
    for n in 0..50 {
        post(&client, format!("{base}/api/carts/c3/items"), json!({"sku": "P", "quantity": 1 + n % 2})).await;
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
            seen = Some(line);
            break;
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    let line = seen.expect("the tail printed a newly committed event");
    assert!(line.contains("cart-c3@") && line.contains("cart.item_added"), "{line}");
}

/// `shop rebuild carts` on a running shop: a new generation is built and
/// served, the running projector follows it, and an unknown projection is
/// refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_switches_a_running_shop_to_a_new_generation() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let client = common::http_client();
    let shop = shop_selling_pens(dir.path(), &client, 500).await;
    let base = &shop.base;
    for cart in 0..40 {
        post(&client, format!("{base}/api/carts/c{cart}/items"), json!({"sku": "P", "quantity": 2})).await;
    }

    let rebuilt = run(&["rebuild", "carts"], dir.path());
    assert!(rebuilt.starts_with("carts: generation 2 serves; generation 1 "), "{rebuilt}");

    // The running shop serves generation 2 and keeps it up to date.
    let cart = add_then_read_cart(&client, base, "c7", "P", 1).await;
    assert_eq!(cart["items"][0]["quantity"], 3, "{cart}");
    let other: Value = client
        .get(format!("{base}/api/carts/c39"))
        .send()
        .await
        .expect("a query")
        .json()
        .await
        .expect("a cart");
    assert_eq!(other["items"][0]["quantity"], 2, "rebuilt from position 0: {other}");

    let refused = shop_command(["rebuild", "nonsense", "--data-dir"]).arg(dir.path()).output().expect("run");
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("no projection \"nonsense\"") && error.contains("carts"), "{error}");
}
