//! The distributed shape: real PostgreSQL, real Kafka, each role of the shop
//! a separate OS process (see `common/distributed.rs`).
//!
//! Needs `scripts/services/postgres start` and `scripts/services/kafka start`
//! (the tests fail, naming them, when a server does not answer). Deployments
//! run one at a time; each test stops the processes it started.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parallax_core::EventStore;

use common::contract::{item_added_headers, V2};
use common::distributed::{
    contract_findings, read_messages, seed_catalog, services, wait_orders_settled, Deployment, Load,
    VersionWatch, PARTITIONS, STANDARD,
};
use reqwest::StatusCode;
use serde_json::json;

/// The black-box suite, each case on a fresh distributed deployment.
mod suite_cases {
    use crate::common::distributed::{Deployment, STANDARD};
    use crate::common::suite;

    macro_rules! distributed {
        ($case:ident) => {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let deployment = Deployment::start(STANDARD).await;
                suite::$case(&deployment.app).await;
                deployment.stop().await;
            }
        };
    }

    suite::for_each_case!(distributed);
}

/// A little of everything: products, carts, orders confirmed and rejected,
/// one paid and shipped.
async fn small_workload(deployment: &Deployment) {
    let app = &deployment.app;
    seed_catalog(app).await;
    let mut orders = Vec::new();
    for n in 0..6 {
        let cart = format!("small-{n}");
        app.add(&cart, "A", 1 + n).await;
        app.add(&cart, "C", 9).await;
        app.add(&cart, "B", 2).await;
        orders.push(app.check_out(&cart, "zoe").await.body["order_id"].as_str().expect("an id").to_owned());
    }
    wait_orders_settled(app, &orders).await;
    let first = &orders[0];
    let paid = app.post(&format!("/api/orders/{first}/pay"), json!({})).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    let shipped = app.post(&format!("/api/orders/{first}/ship"), json!({})).await;
    assert_eq!(shipped.status, StatusCode::OK, "{}", shipped.body);
    let order = app.get_after(&format!("/api/orders/{first}"), &shipped.token()).await;
    assert_eq!(order.body["status"], "shipped", "{}", order.body);
}

/// An external Kafka client (kcat) reads every event with valid CloudEvents
/// binary-mode headers, keyed and partitioned by stream, in stream order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_kafka_client_reads_every_event_as_a_cloudevent() {
    let deployment = Deployment::start(STANDARD).await;
    // `shop migrate` is idempotent: again on the migrated databases and topic.
    deployment.migrate().await;
    small_workload(&deployment).await;

    let report = deployment.assert_topic_carries_the_store().await;
    eprintln!("topic: {report:?}");
    assert_eq!(report.duplicates, 0, "no relay crashed, yet a message repeats");
    assert!(report.streams > 10, "products, carts and orders: {report:?}");
    let partitions: std::collections::BTreeSet<u32> =
        deployment.read_topic().await.iter().map(|m| m.partition).collect();
    assert!(
        partitions.len() > 1,
        "{} streams all in partitions {partitions:?} of {PARTITIONS}",
        report.streams
    );
    deployment.assert_views_equal_the_fold().await;
    deployment.stop().await;
}

/// The check every message read from the topic goes through reports one
/// whose payload is off its schema: two messages produced with kcat to a
/// topic of their own, one as the relay writes it and one with its quantity
/// as a string, read back as the tests read the shop's topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_off_its_schema_on_the_topic_is_reported() {
    let services = services().await;
    let topic = format!("contract-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let config = parallax_kafka::KafkaConfig::new(&services.brokers, &topic, 1, shop::EVENT_SOURCE);
    parallax_kafka::ensure_topic(&config).await.expect("create the topic");
    let off = V2.replace(r#""quantity": 3"#, r#""quantity": "3""#);
    for payload in [V2, off.as_str()] {
        produce(&services.brokers, &topic, "cart-c1", &item_added_headers("2"), payload).await;
    }
    let messages = read_messages(&services.brokers, &topic).await;
    let findings = contract_findings(&messages);
    parallax_kafka::delete_topic(&config).await.expect("delete the topic");
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[1].payload.as_deref(), Some(off.as_str()));
    assert_eq!(
        findings,
        [
            r#"message 0@1 (key Some("cart-c1")): payload, as message cart.item_added.v2: at /quantity: "3" is not of type "integer""#
        ],
    );
}

/// Produces one message with `kcat -P`.
async fn produce(brokers: &str, topic: &str, key: &str, headers: &[(String, String)], payload: &str) {
    use tokio::io::AsyncWriteExt as _;
    let mut command = tokio::process::Command::new("kcat");
    command.args(["-P", "-b", brokers, "-t", topic, "-k", key]);
    for (name, value) in headers {
        command.arg("-H").arg(format!("{name}={value}"));
    }
    let mut kcat =
        command.stdin(std::process::Stdio::piped()).kill_on_drop(true).spawn().expect("run kcat -P");
    let mut stdin = kcat.stdin.take().expect("its stdin");
    stdin.write_all(payload.as_bytes()).await.expect("write the payload");
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(60), kcat.wait())
        .await
        .expect("kcat produces within 60 s")
        .expect("kcat runs");
    assert!(status.success(), "kcat -P: {status}");
}

/// The relay is killed with SIGKILL eight times while clients send
/// commands, each time while it is active, and restarted; in the end every
/// committed event is on the topic and the views equal the fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_again_and_again_loses_no_event() {
    let mut deployment = Deployment::start(STANDARD).await;
    seed_catalog(&deployment.app).await;
    let load = Load::start(&deployment.app, 4);
    // Kill schedule: 300-700 ms after the relay took the lease.
    let pauses_ms = [310, 640, 450, 700, 380, 530, 300, 590];
    for pause in pauses_ms {
        deployment.wait_for_log("relay", "relay active", Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        deployment.kill("relay");
        deployment.restart("relay").await;
    }
    let commands = load.commands.load(Ordering::Relaxed);
    let orders = load.finish().await;
    wait_orders_settled(&deployment.app, &orders).await;

    let report = deployment.assert_topic_carries_the_store().await;
    eprintln!("{commands} commands, {} orders, 8 relay kills; topic: {report:?}", orders.len());
    assert!(orders.len() > 10, "the load placed only {} orders", orders.len());
    let epochs = pauses_ms.len() as i64 + 1;
    assert_eq!(relay_leases(&deployment).await, [("relay".to_owned(), epochs)], "one epoch per relay start");
    deployment.assert_views_equal_the_fold().await;
    deployment.stop().await;
}

/// Projectors killed with SIGKILL while events flow, and the consumer group
/// rebalanced between two of them: the views equal the fold (no event lost
/// or applied twice), and no view row's version ever goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projectors_killed_and_rebalanced_apply_every_event_once() {
    let one_projector: Vec<(&str, &[&str])> =
        STANDARD.iter().copied().filter(|(name, _)| *name != "projector-2").collect();
    let mut deployment = Deployment::start(&one_projector).await;
    seed_catalog(&deployment.app).await;
    let load = Load::start(&deployment.app, 2);
    let watch = VersionWatch::start(&deployment.app, &load);

    // Each projection is a consumer group; a projector process is a member
    // of all four, so "taken into the groups" is four assignments.
    let groups = shop_read::all_projections().len();
    let began = Instant::now();
    let step = |what: &str| eprintln!("{:>6.1} s  {what}", began.elapsed().as_secs_f64());
    let mut at = deployment.wait_progress(0).await;
    step("projector-1 projects; start projector-2: a rebalance under load");
    deployment.add("projector-2", &["projector"]).await;
    deployment.wait_for_assignments("projector-2", groups).await;
    at = deployment.wait_progress(at).await;
    step("projector-2 has partitions of every group; kill -9 projector-1 and restart it");
    deployment.kill("projector-1");
    deployment.restart("projector-1").await;
    deployment.wait_for_assignments("projector-1", groups).await;
    at = deployment.wait_progress(at).await;
    step("projector-1 is back in every group; kill -9 projector-2");
    let before = deployment.assignments("projector-1");
    deployment.kill("projector-2");
    deployment.wait_for_assignments("projector-1", before + groups).await;
    at = deployment.wait_progress(at).await;
    step("projector-1 took projector-2's partitions; restart projector-2");
    deployment.restart("projector-2").await;
    deployment.wait_for_assignments("projector-2", groups).await;
    deployment.wait_progress(at).await;
    step("projector-2 is back in every group; stop the load");

    let commands = load.commands.load(Ordering::Relaxed);
    let orders = load.finish().await;
    wait_orders_settled(&deployment.app, &orders).await;
    let (observations, increases) = watch.finish().await;
    eprintln!(
        "{commands} commands, {} orders; versions observed {observations} times, {increases} increases",
        orders.len()
    );
    assert!(
        increases > 10,
        "the watch saw versions move only {increases} times in {observations} observations"
    );
    deployment.assert_views_equal_the_fold().await;
    deployment.stop().await;
}

/// Two relays start at once; one takes the lease and publishes, the other
/// stands by. The active one is killed with SIGKILL; the other takes over,
/// and an event committed after the kill is in a view within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_relay_takes_over_within_five_seconds() {
    let layout: Vec<(&str, &[&str])> = STANDARD
        .iter()
        .copied()
        .flat_map(|(name, roles)| match name {
            "relay" => vec![("relay-1", roles), ("relay-2", roles)],
            _ => vec![(name, roles)],
        })
        .collect();
    let mut deployment = Deployment::start(&layout).await;
    let start = Instant::now();
    let (active, standby) = loop {
        match (
            deployment.log("relay-1").contains("relay active"),
            deployment.log("relay-2").contains("relay active"),
        ) {
            (true, true) => panic!("both relays are active"),
            (true, false) => break ("relay-1", "relay-2"),
            (false, true) => break ("relay-2", "relay-1"),
            (false, false) => {
                assert!(start.elapsed() < Duration::from_secs(30), "no relay became active in 30 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    deployment.wait_for_log(standby, "standing by", Duration::from_secs(10)).await;
    small_workload(&deployment).await;
    let report = deployment.assert_topic_carries_the_store().await;
    assert_eq!(report.duplicates, 0, "only one relay publishes: {report:?}");
    assert!(!deployment.log(standby).contains("relay active"), "{standby} became active too");
    assert_eq!(relay_leases(&deployment).await, [("relay".to_owned(), 1)], "one relay ever took the lease");

    deployment.kill(active);
    let killed = Instant::now();
    let added = deployment.app.add("after-kill", "A", 1).await;
    let token = added.token();
    let (took_lease, visible) = tokio::join!(
        async {
            deployment.wait_for_log(standby, "relay active", Duration::from_secs(30)).await;
            killed.elapsed()
        },
        async {
            loop {
                let cart = deployment
                    .app
                    .get(&format!("/api/carts/after-kill?consistent_with={token}&wait_ms=1000"))
                    .await;
                if cart.status == StatusCode::OK {
                    assert_eq!(cart.body["items"][0]["quantity"], 1, "{}", cart.body);
                    return killed.elapsed();
                }
                assert_eq!(cart.status, StatusCode::SERVICE_UNAVAILABLE, "{}", cart.body);
                assert!(killed.elapsed() < Duration::from_secs(30), "the event never reached the view");
            }
        }
    );
    eprintln!(
        "take-over: {standby} active {took_lease:?} after the kill of {active}; \
         an event committed after the kill was in the cart view {visible:?} after the kill"
    );
    assert!(visible < Duration::from_secs(5), "take-over took {visible:?}");
    assert_eq!(
        relay_leases(&deployment).await,
        [("relay".to_owned(), 2)],
        "the standby took the lease's next epoch"
    );
    deployment.assert_topic_carries_the_store().await;
    deployment.assert_views_equal_the_fold().await;
    deployment.stop().await;
}

async fn relay_leases(deployment: &Deployment) -> Vec<(String, i64)> {
    let pool = parallax_postgres::pool(&deployment.write_url, 1).await.expect("connect to the write DB");
    let rows = sqlx::query_as("SELECT name, epoch FROM leases WHERE name LIKE '%relay%' ORDER BY name")
        .fetch_all(&pool)
        .await
        .expect("read the leases");
    pool.close().await;
    rows
}

/// The operator commands against the distributed shape: `shop status` sees
/// every projection caught up in the topic's partitions, and `shop rebuild`
/// builds a new generation of the orders views from the topic (a consumer
/// group of its own) while the old one serves, after which the views still
/// equal the fold and new orders keep arriving in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_rebuild_work_across_processes() {
    let deployment = Deployment::start(STANDARD).await;
    small_workload(&deployment).await;
    let head = deployment.event_store().await.head().await.expect("the head");
    deployment.wait_caught_up(head).await;

    let status: serde_json::Value =
        serde_json::from_str(&deployment.shop(&["status", "--json"]).await).expect("status as JSON");
    for projection in status.as_array().expect("projections") {
        assert_eq!(projection["state"], "caught up", "{projection}");
        assert_eq!(projection["partitions"].as_array().expect("partitions").len(), PARTITIONS as usize);
    }

    let rebuilt = deployment.shop(&["rebuild", "orders"]).await;
    assert!(rebuilt.starts_with("orders: generation 2 serves"), "{rebuilt}");
    let app = &deployment.app;
    app.add("after-rebuild", "A", 1).await;
    let checkout = app.check_out("after-rebuild", "zoe").await;
    let order_id = checkout.body["order_id"].as_str().expect("an order id").to_owned();
    wait_orders_settled(app, &[order_id]).await;
    deployment.assert_views_equal_the_fold().await;
    deployment.stop().await;
}

/// Readiness and the admin view judge a projection by its worst partition:
/// every projection at the end of every partition but one partition of the
/// catalog, which a stuck consumer left at its start. Measured from the
/// furthest partition, as it was, the query side called itself ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_partition_keeps_the_query_side_unready() {
    use parallax_core::{Checkpoint, CheckpointMove, ViewBatch};
    use shop_read::projections::CatalogProjection;

    // Commands and a relay, no projector: the checkpoints are ours to set.
    let mut deployment = Deployment::start(&[("front", &["command", "relay", "query"])]).await;
    seed_catalog(&deployment.app).await;
    let head = deployment.event_store().await.head().await.expect("the head");
    let config = shop::app::kafka_config(&deployment.settings());
    let ends = loop {
        let ends = parallax_kafka::end_offsets(&config).await.expect("end offsets");
        if ends.iter().map(|(_, end)| end).sum::<u64>() >= head {
            break ends;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (stuck, stuck_end) = *ends.iter().find(|(_, end)| *end > 0).expect("a partition with messages");
    let views = deployment.raw_read_store().await;
    for projection in shop_read::all_projections() {
        let name = projection.name();
        let checkpoints = ends
            .iter()
            .filter(|(partition, _)| name != CatalogProjection::NAME || *partition != stuck)
            .map(|&(partition, end)| CheckpointMove {
                partition,
                from: Checkpoint::default(),
                to: Checkpoint { position: head, offset: end },
            })
            .collect();
        views.commit(ViewBatch { checkpoints, ..ViewBatch::empty(name) }).await.expect("set the checkpoints");
    }

    deployment.extra_env.push(("SHOP__READINESS__MAX_LAG".into(), "0".into()));
    deployment.add("query-2", &["query"]).await;
    let client = common::http_client();
    let ready = client.get(format!("{}/ready", deployment.url("query-2"))).send().await.expect("/ready");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = ready.json().await.expect("JSON");
    let query = &body["roles"]["query"];
    let reason = query["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("catalog is {stuck_end} behind in partition {stuck}")), "{body}");
    let catalog = query["projections"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "catalog"))
        .expect("the catalog")
        .clone();
    assert_eq!(catalog["lag"], json!(stuck_end), "{body}");
    let others_ready = query["projections"]
        .as_array()
        .expect("projections")
        .iter()
        .all(|p| p["name"] == "catalog" || p["ready"] == true);
    assert!(others_ready, "{body}");

    let admin: serde_json::Value = client
        .get(format!("{}/api/admin/projections", deployment.url("query-2")))
        .send()
        .await
        .expect("admin view")
        .json()
        .await
        .expect("JSON");
    let catalog = admin["projections"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "catalog"))
        .expect("the catalog")
        .clone();
    assert_eq!(catalog["lag"], json!(stuck_end), "{admin}");
    let row = catalog["partitions"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["partition"] == stuck))
        .expect("the stuck partition")
        .clone();
    assert_eq!((row["position"].clone(), row["lag"].clone()), (json!(0), json!(stuck_end)), "{admin}");
    deployment.stop().await;
}

/// Tenants on PostgreSQL: two with the same ids, each apart on the topic
/// (`ce_tenant`) and in the views, which equal the fold of the event store
/// per tenant; `shop check` is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_stay_apart_on_the_topic_and_in_views_that_equal_the_fold() {
    let deployment = Deployment::start(STANDARD).await;
    deployment.assert_tenants_apart_on_the_topic_and_in_the_views().await;
    deployment.stop().await;
}
