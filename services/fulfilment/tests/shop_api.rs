//! The ship call against a stand-in for the shop's command API that answers
//! from a script: which answers are final, which are tried again, and the
//! idempotency key every attempt carries.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use fulfilment::shipment::ShopOutcome;
use fulfilment::shop_api::{ShopAnswer, ShopApi};
use serde_json::json;
use uuid::Uuid;

/// A scripted answer: status, problem code ("" for none), detail.
type Answer = (u16, &'static str, &'static str);

#[derive(Default)]
struct Script {
    /// Answers still to give, in order: status, problem code ("" for none)
    /// and detail.
    answers: Mutex<VecDeque<Answer>>,
    /// The `Idempotency-Key` of every call received.
    keys: Mutex<Vec<String>>,
    /// The `Authorization` header of every call received ("" for none).
    authorizations: Mutex<Vec<String>>,
}

async fn ship(State(script): State<Arc<Script>>, headers: HeaderMap) -> impl IntoResponse {
    let key = headers.get("idempotency-key").and_then(|k| k.to_str().ok()).unwrap_or_default();
    script.keys.lock().expect("not poisoned").push(key.to_owned());
    let authorization = headers.get("authorization").and_then(|a| a.to_str().ok()).unwrap_or_default();
    script.authorizations.lock().expect("not poisoned").push(authorization.to_owned());
    let (status, code, detail) =
        script.answers.lock().expect("not poisoned").pop_front().expect("an answer scripted");
    let status = StatusCode::from_u16(status).expect("a status");
    let mut problem = json!({ "status": status.as_u16(), "detail": detail });
    if !code.is_empty() {
        problem["code"] = json!(code);
    }
    (status, axum::Json(problem))
}

/// Calls `ship` once against a stand-in giving `answers`: what it concluded
/// and the keys of the calls it made.
async fn ship_against(answers: &[Answer]) -> (ShopAnswer, Vec<String>, Uuid) {
    let (answer, keys, order_id, _) = ship_with_key(answers, None).await;
    (answer, keys, order_id)
}

/// As [`ship_against`], the client holding `api_key`; also the
/// `Authorization` header of each call.
async fn ship_with_key(
    answers: &[Answer],
    api_key: Option<&str>,
) -> (ShopAnswer, Vec<String>, Uuid, Vec<String>) {
    let script = Arc::new(Script::default());
    script.answers.lock().expect("not poisoned").extend(answers.iter().copied());
    let app = axum::Router::new()
        .route("/api/orders/{order_id}/ship", axum::routing::post(ship))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let order_id = Uuid::now_v7();
    let shop = ShopApi::new(&base, Duration::from_secs(5), api_key).expect("a client");
    let answer =
        tokio::time::timeout(Duration::from_secs(60), shop.ship(order_id, &parallax_core::Tenant::DEFAULT))
            .await
            .expect("an answer within 60 s");
    server.abort();
    let keys = script.keys.lock().expect("not poisoned").clone();
    let authorizations = script.authorizations.lock().expect("not poisoned").clone();
    (answer, keys, order_id, authorizations)
}

#[tokio::test]
async fn every_call_carries_the_configured_key() {
    let (answer, _, _, authorizations) =
        ship_with_key(&[(401, "", "no key"), (200, "", "")], Some("s3cret")).await;
    assert_eq!(answer.outcome, ShopOutcome::Shipped);
    assert_eq!(authorizations, ["Bearer s3cret", "Bearer s3cret"]);
    let (_, _, _, authorizations) = ship_with_key(&[(200, "", "")], None).await;
    assert_eq!(authorizations, [""]);
}

#[tokio::test]
async fn passing_failures_are_tried_again_with_the_same_key() {
    let (answer, keys, order_id) = ship_against(&[
        (503, "", "starting"),
        (409, "", "concurrent changes"),
        (429, "", "busy"),
        (200, "", ""),
    ])
    .await;
    assert_eq!(answer, ShopAnswer { outcome: ShopOutcome::Shipped, detail: None });
    assert_eq!(keys, vec![ShopApi::idempotency_key(order_id); 4]);
}

#[tokio::test]
async fn an_order_shipped_by_someone_else_counts_as_shipped_already() {
    let detail = "order 1 has already shipped";
    let (answer, keys, _) = ship_against(&[(500, "", "down"), (422, "order-already-shipped", detail)]).await;
    assert_eq!(answer, ShopAnswer { outcome: ShopOutcome::AlreadyShipped, detail: Some(detail.into()) });
    assert_eq!(keys.len(), 2);
}

/// The refusal's code decides, not its words: a detail saying "already
/// shipped" under another code is a refusal, and the code under other
/// words is a shipment made before.
#[tokio::test]
async fn the_problem_code_not_its_detail_says_shipped_already() {
    let (answer, _, _) = ship_against(&[(422, "order-cancelled", "order 1 has already shipped")]).await;
    assert_eq!(answer.outcome, ShopOutcome::Refused);
    let (answer, _, _) = ship_against(&[(422, "order-already-shipped", "order 1 left the warehouse")]).await;
    assert_eq!(answer.outcome, ShopOutcome::AlreadyShipped);
}

#[tokio::test]
async fn a_refusal_for_good_is_final() {
    let detail = "order 1 was cancelled";
    let (answer, keys, _) = ship_against(&[(422, "", detail)]).await;
    assert_eq!(answer, ShopAnswer { outcome: ShopOutcome::Refused, detail: Some(detail.into()) });
    assert_eq!(keys.len(), 1);
    let (answer, _, _) = ship_against(&[(404, "", "order not found")]).await;
    assert_eq!(answer.outcome, ShopOutcome::Refused);
}
