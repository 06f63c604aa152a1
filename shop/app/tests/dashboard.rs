//! The dashboard at `/` and the live event stream behind it
//! (`GET /api/events/stream`), on the embedded shop. The page itself is
//! driven in a browser by `shop/app/tests/browser/` (scripts/browser/test).

mod common;

use std::time::Duration;

use common::{spawn_app, TestApp};
use reqwest::{Response, StatusCode};
use serde_json::Value;

/// How long a test waits for the stream's next bytes.
const READ_WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let app = spawn_app().await;
    for (path, content_type, marker) in [
        ("/", "text/html", r#"<script src="/dashboard.js""#),
        ("/dashboard.js", "text/javascript", "new EventSource(`/api/events/stream"),
        ("/dashboard.css", "text/css", "#lag-chart"),
    ] {
        let response = app.client.get(format!("{}{path}", app.base)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let got = response.headers()["content-type"].to_str().expect("ascii").to_owned();
        assert!(got.starts_with(content_type), "{path}: content-type {got}");
        let body = response.text().await.expect("body");
        assert!(body.contains(marker), "{path} lacks {marker:?}");
        // Nothing is fetched from elsewhere: the page works without the internet.
        assert!(!body.contains("https://") && !body.contains("//cdn"), "{path} refers to another host");
    }
}

/// One SSE message: its `id` field and its JSON data.
#[derive(Debug)]
struct Message {
    id: String,
    data: Value,
}

/// An open event stream and what has arrived of it.
struct Stream {
    response: Response,
    buffer: String,
}

impl Stream {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<&str>) -> Self {
        let mut request = app.client.get(format!("{}/api/events/stream{query}", app.base));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("open the stream");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self { response, buffer: String::new() }
    }

    /// The next message with data (comments and the retry hint are skipped).
    async fn next(&mut self) -> Message {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id: ") {
                        id = value.to_owned();
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push_str(value);
                    }
                }
                if !data.is_empty() {
                    let data = serde_json::from_str(&data).expect("data is JSON");
                    return Message { id, data };
                }
                continue;
            }
            let chunk = tokio::time::timeout(READ_WAIT, self.response.chunk())
                .await
                .expect("the stream sent nothing in time")
                .expect("read the stream")
                .expect("the stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// Messages up to and including the first of `event_type`.
    async fn until(&mut self, event_type: &str) -> Vec<Message> {
        let mut messages = Vec::new();
        loop {
            let message = self.next().await;
            let done = message.data["event_type"] == event_type;
            messages.push(message);
            if done {
                return messages;
            }
        }
    }
}

fn types(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.data["event_type"].as_str().expect("a type")).collect()
}

#[tokio::test]
async fn the_stream_sends_events_committed_after_connecting_in_order_with_positions() {
    let app = spawn_app().await;
    app.register("OLD-1", "Before", 100, 1).await;
    let head = app.head().await;

    let mut stream = Stream::open(&app, "", None).await;
    let registered = app.register("KB-1", "Keyboard", 4999, 10).await;
    app.add("c1", "KB-1", 2).await;
    let checkout = app.check_out("c1", "alice").await;
    let order_id = checkout.body["order_id"].as_str().expect("an order id").to_owned();
    let messages = stream.until("order.confirmed").await;

    // Only what came after connecting, every position once, in order, no gap.
    let positions: Vec<u64> =
        messages.iter().map(|m| m.data["position"].as_u64().expect("a position")).collect();
    let expected: Vec<u64> = (head + 1..=head + messages.len() as u64).collect();
    assert_eq!(positions, expected, "types: {:?}", types(&messages));
    for message in &messages {
        assert_eq!(message.id, message.data["position"].to_string(), "the SSE id is the position");
    }
    let first = &messages[0].data;
    assert_eq!(first["event_type"], "product.registered");
    assert_eq!(first["stream_id"], "product-KB-1");
    assert_eq!(first["stream_version"], 1);
    assert_eq!(first["payload"]["name"], "Keyboard", "the payload is JSON, not a string");
    assert_eq!(first["token"], registered.token(), "the event's token is its command's");

    let seen = types(&messages);
    let order =
        ["product.registered", "cart.item_added", "cart.checked_out", "order.placed", "order.confirmed"];
    let at: Vec<usize> = order
        .iter()
        .map(|t| seen.iter().position(|s| s == t).unwrap_or_else(|| panic!("no {t} in {seen:?}")))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order: {seen:?}");
    let checked_out = &messages[at[2]].data;
    assert_eq!(checked_out["token"], checkout.token());
    assert_eq!(messages[at[3]].data["stream_id"], format!("order-{order_id}"));
    // The saga's events carry the checkout's correlation.
    assert_eq!(messages[at[4]].data["correlation_id"], checked_out["correlation_id"]);

    // The token an event carries makes a query wait for that event.
    let confirmed = messages[at[4]].data["token"].as_str().expect("a token");
    let order_view = app.get_after(&format!("/api/orders/{order_id}"), confirmed).await;
    assert_eq!(order_view.body["status"], "confirmed", "{}", order_view.body);
}

#[tokio::test]
async fn the_stream_resumes_after_a_position_or_the_last_event_id() {
    let app = spawn_app().await;
    app.register("A", "First", 100, 1).await;
    app.register("B", "Second", 200, 1).await;
    app.register("C", "Third", 300, 1).await;

    let mut stream = Stream::open(&app, "?after=1", None).await;
    assert_eq!(stream.next().await.data["stream_id"], "product-B");
    assert_eq!(stream.next().await.data["stream_id"], "product-C");

    // A reconnecting browser repeats the URL; its Last-Event-ID wins.
    let mut stream = Stream::open(&app, "?after=0", Some("2")).await;
    let message = stream.next().await;
    assert_eq!((message.id.as_str(), &message.data["stream_id"]), ("3", &Value::from("product-C")));

    for bad in ["?after=-1", "?after=x"] {
        let answer = app.get(&format!("/api/events/stream{bad}")).await;
        answer.assert_problem(400);
    }
}

#[tokio::test]
async fn an_open_stream_does_not_hold_up_shutdown() {
    let mut app = spawn_app().await;
    let _stream = Stream::open(&app, "?after=0", None).await;
    // Bounded only so that a regression fails instead of hanging the suite.
    tokio::time::timeout(Duration::from_secs(30), app.stop())
        .await
        .expect("the shop stops with a stream open");
}
