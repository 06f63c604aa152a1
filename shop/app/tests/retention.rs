//! The broker's retention deleted events a projector had not read yet: the
//! projector stops those partitions and says so on `/ready` and `/metrics`
//! (`parallax_worker_failing`), `shop status` sees it, a rebuild from
//! the topic refuses to build from what is left, and `shop rebuild
//! --from-store` builds every projection from the event store, after which
//! the topic takes over and the views equal the fold (Architecture
//! invariant 21). Real PostgreSQL and Kafka, each role a process of its own
//! (see `common/distributed.rs`).

mod common;

use std::time::{Duration, Instant};

use common::distributed::{seed_catalog, wait_orders_settled, Deployment};
use parallax_core::EventStore;
use reqwest::StatusCode;
use serde_json::Value;

/// The projectors in a process of their own, to stop while retention runs.
const LAYOUT: &[(&str, &[&str])] =
    &[("front", &["command", "relay", "saga", "query"]), ("projector", &["projector"])];

/// Fills `count` carts named `{prefix}-{n}` through the front process.
async fn fill_carts(deployment: &Deployment, prefix: &str, count: usize) {
    for n in 0..count {
        deployment.app.add(&format!("{prefix}-{n}"), "A", 1).await;
        deployment.app.add(&format!("{prefix}-{n}"), "D", 2).await;
    }
}

/// Waits until the topic's end offsets add up to the event store's events
/// (deleted messages keep their offsets): the relay published everything.
async fn wait_published(deployment: &Deployment) -> Vec<(u32, u64)> {
    let config = shop::app::kafka_config(&deployment.settings());
    let start = Instant::now();
    loop {
        let events = deployment.events().await.len() as u64;
        let ends = parallax_kafka::end_offsets(&config).await.expect("end offsets");
        if ends.iter().map(|(_, end)| end).sum::<u64>() >= events {
            return ends;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the relay did not publish {events} events in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/ready` of the projector process, until `done` holds for it.
async fn ready_until(deployment: &Deployment, done: impl Fn(StatusCode, &Value) -> bool) -> Value {
    let client = common::http_client();
    let start = Instant::now();
    loop {
        let answer =
            client.get(format!("{}/ready", deployment.url("projector"))).send().await.expect("/ready");
        let status = answer.status();
        let body: Value = answer.json().await.expect("JSON");
        if done(status, &body) {
            return body;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "/ready never got there; last {status}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_history_stops_the_projectors_and_a_rebuild_from_the_store_restores_the_views() {
    let mut deployment = Deployment::start(LAYOUT).await;
    seed_catalog(&deployment.app).await;
    fill_carts(&deployment, "before", 6).await;
    let head = deployment.event_store().await.head().await.expect("the head");
    deployment.wait_caught_up(head).await;

    // The projectors are down while events come and retention deletes
    // every message the topic holds; then the same carts change again, so
    // their partitions' next messages follow deleted ones.
    deployment.kill("projector");
    fill_carts(&deployment, "unread", 8).await;
    let ends = wait_published(&deployment).await;
    let config = shop::app::kafka_config(&deployment.settings());
    let earliest = parallax_kafka::delete_records(&config, &ends).await.expect("records deleted");
    assert_eq!(earliest, ends, "every message is gone");
    fill_carts(&deployment, "unread", 8).await;
    wait_published(&deployment).await;

    // Back up, each projector finds the hole before the first message left
    // in a partition it had not read to the end: it stops there and says so.
    deployment.restart("projector").await;
    let body = ready_until(&deployment, |status, body| {
        status == StatusCode::SERVICE_UNAVAILABLE
            && body["roles"]["projector"]["workers"].as_array().is_some_and(|workers| {
                workers.iter().any(|w| w["name"] == "carts" && w["state"] == "failing")
            })
    })
    .await;
    let carts = body["roles"]["projector"]["workers"]
        .as_array()
        .and_then(|workers| workers.iter().find(|w| w["name"] == "carts"))
        .expect("the carts worker")
        .clone();
    let error = carts["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("carts stopped partition ") && error.contains("are missing from the source"),
        "{body}"
    );

    let metrics = reqwest::get(format!("{}/metrics", deployment.url("projector")))
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("the metrics");
    let failing = metrics.lines().find(|line| {
        line.starts_with("parallax_worker_failing{")
            && line.contains(r#"kind="projector""#)
            && line.contains(r#"name="carts""#)
    });
    assert!(failing.is_some_and(|line| line.ends_with(" 1")), "{metrics}");

    // `shop status` tells from the read DB and the topic alone.
    let status: Value = serde_json::from_str(&deployment.shop(&["status", "--json"]).await).expect("JSON");
    let carts = status.as_array().and_then(|all| all.iter().find(|p| p["name"] == "carts")).expect("carts");
    assert_eq!(carts["state"], "missing events", "{status}");
    assert!(!carts["deleted"].as_array().expect("deleted").is_empty(), "{status}");
    let table = deployment.shop(&["status"]).await;
    assert!(table.contains("lost messages at offsets") && table.contains("--from-store carts"), "{table}");

    // A rebuild from the topic cannot build from what is left.
    let refused = deployment.shop_output(&["rebuild", "carts"]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a rebuild from the topic succeeded: {stderr}");
    assert!(
        stderr.contains("stopped partition") && stderr.contains("shop rebuild --from-store carts"),
        "{stderr}"
    );

    // From the event store: every projection, then the topic takes over.
    for projection in shop_read::all_projections() {
        let name = projection.name();
        let rebuilt = deployment.shop(&["rebuild", "--from-store", name]).await;
        // Switched here, or by the projector process's supervisor first.
        assert!(
            rebuilt.starts_with(&format!("{name}: generation ")) && rebuilt.contains(" serves;"),
            "{rebuilt}"
        );
    }
    ready_until(&deployment, |status, _| status == StatusCode::OK).await;
    let order = deployment.app.check_out("unread-0", "zoe").await;
    let order_id = order.body["order_id"].as_str().expect("an order id").to_owned();
    wait_orders_settled(&deployment.app, &[order_id]).await;
    deployment.assert_views_equal_the_fold().await;
    let status: Value = serde_json::from_str(&deployment.shop(&["status", "--json"]).await).expect("JSON");
    for projection in status.as_array().expect("projections") {
        assert_eq!(projection["state"], "caught up", "{status}");
    }
    deployment.stop().await;
}
