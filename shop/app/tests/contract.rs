//! The event contract as an AsyncAPI document: `GET /asyncapi.json` and
//! `shop contract` give the same one, for the configured topic, naming every
//! event type at every schema version; and the check the distributed tests
//! run on every message they read from the topic reports a message its
//! document does not describe. (`scripts/asyncapi/validate` has the AsyncAPI
//! project's parser check the document itself.)

mod common;

use std::collections::BTreeSet;

use common::binary::{shop_command, Shop};
use common::contract::{item_added_headers, V1, V2};
use parallax_core::DomainEvent;
use parallax_testing::contract::{KafkaMessage, MessageValidator};
use serde_json::Value;
use shop_events::{CartEvent, OrderEvent, ProductEvent};

const TOPIC: &str = "contract.shop-events";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncapi_json_and_shop_contract_give_the_same_document_of_every_event() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let mut serve = shop_command(["serve", "--data-dir"]);
    serve.arg(dir.path()).env("SHOP__LOG__TOPIC", TOPIC);
    let shop = Shop::spawn(serve);
    let response = reqwest::get(format!("{}/asyncapi.json", shop.base)).await.expect("GET /asyncapi.json");
    assert!(response.status().is_success(), "{}", response.status());
    let served: Value = response.json().await.expect("a JSON document");

    // As an operator runs it: no RUST_LOG, so no log line either.
    let output = shop_command(["contract"])
        .env_remove("RUST_LOG")
        .env("SHOP__LOG__TOPIC", TOPIC)
        .output()
        .expect("run shop contract");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "", "shop contract logs nothing");
    let printed: Value = serde_json::from_slice(&output.stdout).expect("shop contract prints JSON");
    assert_eq!(printed, served, "shop contract and /asyncapi.json differ");

    assert_eq!(served["asyncapi"], "3.0.0");
    let channel = &served["channels"]["events"];
    assert_eq!(channel["address"], TOPIC, "the configured topic");
    assert_eq!(channel["bindings"]["kafka"]["partitions"], 8);
    let described: BTreeSet<(String, u32)> = served["components"]["messages"]
        .as_object()
        .expect("messages")
        .values()
        .map(|message| {
            let headers = &message["headers"]["properties"];
            let version = headers["ce_schemaversion"]["const"].as_str().expect("a version");
            assert_eq!(message["name"], headers["ce_type"]["const"], "{message}");
            assert_eq!(headers["ce_source"]["const"], shop::EVENT_SOURCE);
            (message["name"].as_str().expect("a name").to_owned(), version.parse().expect("a number"))
        })
        .collect();
    let mut expected = BTreeSet::new();
    for (types, current) in [
        (ProductEvent::TYPES, ProductEvent::schema_version as fn(&str) -> u32),
        (CartEvent::TYPES, CartEvent::schema_version),
        (OrderEvent::TYPES, OrderEvent::schema_version),
    ] {
        for event_type in types {
            expected.extend((1..=current(event_type)).map(|version| (event_type.to_string(), version)));
        }
    }
    assert_eq!(described, expected, "one message per event type and schema version");
    assert!(described.contains(&("cart.item_added".to_owned(), 1)), "the old version too");
    let operation = &served["operations"]["publishEvents"];
    assert_eq!(operation["action"], "send");
    assert_eq!(operation["messages"].as_array().map(Vec::len), Some(expected.len()));
    drop(shop);
}

fn check(headers: &[(String, String)], key: Option<&str>, payload: &str) -> Result<String, Vec<String>> {
    let validator = MessageValidator::new(&shop::contract::asyncapi(&shop::Settings::default()))
        .expect("the document compiles");
    let message = KafkaMessage { place: "message 0@7", key, headers, payload: Some(payload) };
    validator.validate(&message).map(str::to_owned)
}

#[test]
fn a_message_of_the_contract_passes_and_its_version_is_told_apart() {
    assert_eq!(check(&item_added_headers("2"), Some("cart-c1"), V2), Ok("cart.item_added.v2".to_owned()));
    assert_eq!(check(&item_added_headers("1"), Some("cart-c1"), V1), Ok("cart.item_added.v1".to_owned()));
}

#[test]
fn a_payload_off_its_schema_is_reported() {
    let quantity_as_text = V2.replace(r#""quantity": 3"#, r#""quantity": "3""#);
    let findings = check(&item_added_headers("2"), Some("cart-c1"), &quantity_as_text).expect_err("refused");
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0].starts_with("message 0@7: payload, as message cart.item_added.v2: at /quantity"),
        "{findings:?}"
    );
    assert!(findings[0].contains(r#""3" is not of type "integer""#), "{findings:?}");

    // A v1 payload announced as v2 lacks v2's fields.
    let findings = check(&item_added_headers("2"), Some("cart-c1"), V1).expect_err("refused");
    let text = findings.join("\n");
    assert!(text.contains("\"currency\" is a required property"), "{text}");
    assert!(text.contains("\"price_cents\" is a required property"), "{text}");

    let negative = V2.replace(r#""quantity": 3"#, r#""quantity": -3"#);
    assert!(check(&item_added_headers("2"), Some("cart-c1"), &negative).is_err(), "units are unsigned");
    let findings = check(&item_added_headers("2"), Some("cart-c1"), "{not json").expect_err("refused");
    assert!(findings[0].contains("the payload is not JSON"), "{findings:?}");
    let findings = check(&item_added_headers("2"), None, V2).expect_err("refused");
    assert_eq!(findings, ["message 0@7: no key"]);
}

#[test]
fn headers_off_the_contract_are_reported() {
    let mut future = item_added_headers("3");
    let findings = check(&future, Some("cart-c1"), V2).expect_err("no v3 yet");
    assert!(
        findings[0].starts_with("message 0@7: no message of the document has headers like"),
        "{findings:?}"
    );
    assert!(findings.iter().any(|f| f.contains("ce_schemaversion")), "{findings:?}");

    future.retain(|(name, _)| name != "ce_id");
    future.iter_mut().for_each(|(name, value)| {
        if name == "ce_schemaversion" {
            *value = "2".to_owned();
        }
    });
    let findings = check(&future, Some("cart-c1"), V2).expect_err("no ce_id");
    assert!(findings.iter().any(|f| f.contains("\"ce_id\" is a required property")), "{findings:?}");

    let mut unknown = item_added_headers("1");
    unknown.iter_mut().for_each(|(name, value)| {
        if name == "ce_type" {
            *value = "cart.abandoned".to_owned();
        }
    });
    assert!(check(&unknown, Some("cart-c1"), V1).is_err(), "no such type");
}
