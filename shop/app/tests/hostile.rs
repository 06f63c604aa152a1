//! Hostile input against the embedded shop: oversized bodies, deep JSON,
//! wrong types, unknown fields, SQL/CQL metacharacters and control
//! characters in every field of every command and in path segments. Each is
//! refused with a precise 4xx `application/problem+json`, never a 5xx, and
//! nothing is stored; a body over the limit gets 413 on every route, also on
//! those that read none. Also: the OpenAPI document at `/openapi.json` lists
//! exactly the routes the router serves, and its command schemas refuse what
//! the handlers refuse.

#![allow(clippy::too_many_lines, reason = "each test reads as one scenario, start to end")]

mod common;

use std::collections::BTreeSet;

use common::{spawn_app, Answer, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Strings that have broken query builders, parsers and terminals.
const HOSTILE: &[&str] = &[
    "'; DROP TABLE events; --",
    "' OR 1=1 --",
    "\" OR \"\"=\"",
    "1; DELETE FROM events WHERE true",
    "x' ALLOW FILTERING; --",
    "$$; TRUNCATE events; $$",
    "\0",
    "a\0b",
    "\u{202e}gpj.exe",
    "\u{7}\u{1b}[2J",
    "line\nbreak",
    "\u{feff}",
    "é",
    "",
    " ",
    "../../etc/passwd",
    "%00",
];

/// A JSON value of every wrong type for a field of type `kind`.
fn wrong_types(kind: &str) -> Vec<Value> {
    let mut values = vec![Value::Null, json!(true), json!([]), json!({}), json!([1]), json!({ "$ne": 1 })];
    match kind {
        "string" => values.extend([json!(1), json!(1.5), json!(-1)]),
        _ => values.extend([
            json!("1"),
            json!(1.5),
            json!(1e300),
            json!("' OR 1=1 --"),
            json!(u64::MAX),
            // i64::MAX + 1 does not fit the field.
            serde_json::from_str::<Value>("9223372036854775808").expect("a number"),
        ]),
    }
    values
}

/// One command: how to send it, and a body the shop accepts.
struct Command {
    method: Method,
    /// With `{}` placeholders for the path segments.
    route: &'static str,
    segments: Vec<&'static str>,
    body: Option<Value>,
    /// The component schema of the body in the OpenAPI document.
    schema: Option<&'static str>,
}

fn commands(order: &str) -> Vec<Command> {
    let order: &'static str = Box::leak(order.to_owned().into_boxed_str());
    vec![
        Command {
            method: Method::POST,
            route: "/api/products",
            segments: Vec::new(),
            body: Some(json!({ "sku": "NEW-1", "name": "New", "price_cents": 100, "stock": 1 })),
            schema: Some("RegisterProduct"),
        },
        Command {
            method: Method::POST,
            route: "/api/products/{}/price",
            segments: vec!["KB-1"],
            body: Some(json!({ "price_cents": 250 })),
            schema: Some("Reprice"),
        },
        Command {
            method: Method::POST,
            route: "/api/products/{}/restock",
            segments: vec!["KB-1"],
            body: Some(json!({ "quantity": 2 })),
            schema: Some("Restock"),
        },
        Command {
            method: Method::POST,
            route: "/api/carts/{}/items",
            segments: vec!["cart-1"],
            body: Some(json!({ "sku": "KB-1", "quantity": 1 })),
            schema: Some("AddItem"),
        },
        Command {
            method: Method::DELETE,
            route: "/api/carts/{}/items/{}",
            segments: vec!["cart-1", "KB-1"],
            body: None,
            schema: None,
        },
        Command {
            method: Method::POST,
            route: "/api/carts/{}/checkout",
            segments: vec!["cart-1"],
            body: Some(json!({ "customer_id": "alice" })),
            schema: Some("CheckOut"),
        },
        Command {
            method: Method::POST,
            route: "/api/orders/{}/pay",
            segments: vec![order],
            body: None,
            schema: None,
        },
        Command {
            method: Method::POST,
            route: "/api/orders/{}/ship",
            segments: vec![order],
            body: None,
            schema: None,
        },
        Command {
            method: Method::POST,
            route: "/api/orders/{}/cancel",
            segments: vec![order],
            body: None,
            schema: None,
        },
    ]
}

/// `route` with `segments` percent-encoded into its placeholders.
fn path(route: &str, segments: &[&str]) -> String {
    let mut out = String::new();
    let mut parts = route.split("{}");
    out.push_str(parts.next().unwrap_or_default());
    for (part, segment) in parts.zip(segments) {
        out.push_str(&encode(segment));
        out.push_str(part);
    }
    out
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn send_raw(app: &TestApp, method: Method, path: &str, body: Option<Vec<u8>>) -> Answer {
    let mut request = app.client.request(method, format!("{}{path}", app.base));
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body);
    }
    let response = request.send().await.expect("send the request");
    let status = response.status();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = response.text().await.expect("read the body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, content_type, body }
}

/// A refusal: 4xx `application/problem+json` with every member of a problem.
#[track_caller]
fn assert_refused(answer: &Answer, what: &str) {
    assert!(answer.status.is_client_error(), "{what}: expected a 4xx, got {} {}", answer.status, answer.body);
    assert_eq!(answer.content_type, "application/problem+json", "{what}: {}", answer.body);
    assert_eq!(answer.body["status"], json!(answer.status.as_u16()), "{what}: {}", answer.body);
    for field in ["type", "title", "detail"] {
        assert!(answer.body[field].is_string(), "{what}: problem without {field}: {}", answer.body);
    }
}

/// A shop with a product `KB-1`, a cart `cart-1` holding it, and a placed
/// order; the id of that order.
async fn seeded() -> (TestApp, String) {
    let app = spawn_app().await;
    app.register("KB-1", "Keyboard", 4_999, 10).await;
    app.add("cart-1", "KB-1", 1).await;
    app.add("cart-2", "KB-1", 1).await;
    let checkout = app.check_out("cart-2", "bob").await;
    let order = checkout.body["order_id"].as_str().expect("order id").to_owned();
    app.order_status(&order, "confirmed").await;
    (app, order)
}

/// The event store's head once the saga has settled.
async fn settled_head(app: &TestApp) -> u64 {
    let mut head = app.head().await;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let again = app.head().await;
        if again == head {
            return head;
        }
        head = again;
    }
}

#[tokio::test]
async fn hostile_fields_path_segments_and_bodies_are_refused_and_store_nothing() {
    let (app, order) = seeded().await;
    let head = settled_head(&app).await;
    let mut cases = 0;

    for command in commands(&order) {
        let valid_path = path(command.route, &command.segments);
        let what = |case: &str| format!("{} {} {case}", command.method, command.route);

        // Hostile strings in every path segment.
        for (i, _) in command.segments.iter().enumerate() {
            for hostile in HOSTILE.iter().copied().chain([&*"a".repeat(65), &*"x".repeat(10_000)]) {
                let mut segments = command.segments.clone();
                segments[i] = hostile;
                let body = command.body.as_ref().map(|b| b.to_string().into_bytes());
                let answer =
                    send_raw(&app, command.method.clone(), &path(command.route, &segments), body).await;
                assert_refused(&answer, &what(&format!("segment {i} = {hostile:?}")));
                cases += 1;
            }
            // Not UTF-8 once percent-decoded.
            let mut raw = command.segments.iter().map(|s| encode(s)).collect::<Vec<_>>();
            raw[i] = "%FF%FE".to_owned();
            let mut bad = command.route.to_owned();
            for segment in &raw {
                bad = bad.replacen("{}", segment, 1);
            }
            let body = command.body.as_ref().map(|b| b.to_string().into_bytes());
            let answer = send_raw(&app, command.method.clone(), &bad, body).await;
            assert_refused(&answer, &what(&format!("segment {i} not UTF-8")));
        }

        let Some(valid) = &command.body else { continue };
        let fields = valid.as_object().expect("an object");
        let send = |body: Vec<u8>| send_raw(&app, command.method.clone(), &valid_path, Some(body));

        for (field, value) in fields {
            let kind = if value.is_string() { "string" } else { "integer" };
            // Hostile strings in every field. Product names are free text: a name
            // that merely looks like SQL is a name (checked below), one with control
            // characters is not.
            for hostile in HOSTILE {
                if field == "name" && !hostile.chars().any(char::is_control) && !hostile.trim().is_empty() {
                    continue;
                }
                let mut body = fields.clone();
                body.insert(field.clone(), json!(hostile));
                assert_refused(
                    &send(Value::Object(body).to_string().into_bytes()).await,
                    &what(&format!("{field} = {hostile:?}")),
                );
                cases += 1;
            }
            for wrong in wrong_types(kind) {
                let mut body = fields.clone();
                body.insert(field.clone(), wrong.clone());
                assert_refused(
                    &send(Value::Object(body).to_string().into_bytes()).await,
                    &what(&format!("{field} = {wrong}")),
                );
                cases += 1;
            }
            // Missing.
            let mut body = fields.clone();
            body.remove(field);
            assert_refused(
                &send(Value::Object(body).to_string().into_bytes()).await,
                &what(&format!("without {field}")),
            );
            // Huge: over the body limit.
            let mut body = fields.clone();
            body.insert(field.clone(), json!("9".repeat(1 << 20)));
            let answer = send(Value::Object(body).to_string().into_bytes()).await;
            assert_refused(&answer, &what(&format!("1 MB {field}")));
            assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.body);
            cases += 2;
        }

        // Whole bodies.
        let mut unknown = fields.clone();
        unknown.insert("admin".into(), json!(true));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let deep_object = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        let bodies: Vec<(&str, Vec<u8>)> = vec![
            ("unknown field", Value::Object(unknown).to_string().into_bytes()),
            ("10,000 nested arrays", deep.into_bytes()),
            ("10,000 nested objects", deep_object.into_bytes()),
            ("empty body", Vec::new()),
            ("not JSON", b"'; DROP TABLE events; --".to_vec()),
            ("a JSON string", br#""'; DROP TABLE events; --""#.to_vec()),
            ("an array", b"[]".to_vec()),
            ("null", b"null".to_vec()),
            ("truncated", br#"{"sku": "KB"#.to_vec()),
            (
                "duplicate field",
                format!("{},{}", &valid.to_string()[..valid.to_string().len() - 1], &valid.to_string()[1..])
                    .into_bytes(),
            ),
            ("not UTF-8", vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}']),
            ("NUL byte", b"{\0}".to_vec()),
            ("over the limit", vec![b' '; 64 * 1024 + 1]),
        ];
        for (case, body) in bodies {
            let answer = send(body).await;
            assert_refused(&answer, &what(case));
            if case == "over the limit" {
                assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.body);
            }
            cases += 1;
        }
    }
    assert!(cases > 450, "only {cases} cases ran");

    // Queries: hostile path segments and parameters.
    for route in ["/api/products/{}", "/api/carts/{}", "/api/orders/{}", "/api/customers/{}/orders"] {
        for hostile in HOSTILE {
            let answer = send_raw(&app, Method::GET, &path(route, &[hostile]), None).await;
            assert_refused(&answer, &format!("GET {route} with {hostile:?}"));
        }
    }
    for param in ["consistent_with", "wait_ms", "limit", "cursor"] {
        for hostile in HOSTILE.iter().copied().chain([&*"9".repeat(10_000)]) {
            let route = format!("/api/products?{param}={}", encode(hostile));
            let answer = send_raw(&app, Method::GET, &route, None).await;
            assert!(!answer.status.is_server_error(), "GET {route}: {} {}", answer.status, answer.body);
            if answer.status != StatusCode::OK {
                assert_refused(&answer, &format!("GET {route}"));
            }
        }
    }

    // A cursor reaches the read store: control characters (PostgreSQL refuses a NUL in text) stop here.
    for cursor in ["%00", "a%00b", "%1B%5B2J", &"9".repeat(600)] {
        let answer = send_raw(&app, Method::GET, &format!("/api/products?cursor={cursor}"), None).await;
        assert_refused(&answer, &format!("cursor {cursor}"));
    }
    // Idempotency keys: visible ASCII, at most 255.
    for key in ["", "tab\there", "a b", &"k".repeat(256)] {
        let request = app
            .client
            .post(format!("{}/api/products", app.base))
            .header("Idempotency-Key", key)
            .json(&json!({ "sku": "IDEM-1", "name": "Idem", "price_cents": 1, "stock": 1 }));
        let status = request.send().await.expect("send the request").status();
        assert_eq!(status, StatusCode::BAD_REQUEST, "Idempotency-Key {key:?}");
    }

    assert_eq!(app.head().await, head, "a refused command stored something");
    let cart = app.get("/api/carts/cart-1").await;
    assert_eq!(cart.body["items"].as_array().map(Vec::len), Some(1), "{}", cart.body);
    let product = app.get("/api/products/KB-1").await;
    assert_eq!(product.body["price_cents"], 4_999, "{}", product.body);
}

/// Sends `size` bytes of JSON whitespace after `prefix` as a chunked body
/// (no `Content-Length`: the server cannot refuse it before reading) and
/// returns the answer's status line and body.
fn send_chunked(base: &str, method: &str, path: &str, prefix: &[u8], size: usize) -> (String, String) {
    use std::io::{Read, Write};

    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the shop");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("a read timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send the head");
    let mut body = prefix.to_vec();
    body.resize(size.max(prefix.len()), b' ');
    for chunk in body.chunks(8 * 1024) {
        // The server may answer and stop reading before the end.
        if write!(stream, "{:x}\r\n", chunk.len()).is_err()
            || stream.write_all(chunk).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

/// A body over the limit gets a 413 problem on every route: a query and
/// `/health` (which read no body and would answer 200), and a command whose
/// JSON would be valid without the padding; nothing is stored. Chunked
/// bodies, whose length is not declared, are refused as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_with_413_on_every_route() {
    let (app, _) = seeded().await;
    let head = settled_head(&app).await;
    let limit = shop::http::MAX_BODY_BYTES;
    let command = br#"{"sku": "KB-1", "quantity": 1}"#;
    let padded = |size: usize| {
        let mut body = command.to_vec();
        body.resize(size, b' ');
        body
    };
    let routes = [
        (Method::GET, "/api/products/KB-1"),
        (Method::GET, "/health"),
        (Method::POST, "/api/carts/cart-1/items"),
    ];
    for (method, route) in &routes {
        let what = format!("{method} {route} with a 10 MB body");
        let answer = send_raw(&app, method.clone(), route, Some(padded(10 << 20))).await;
        assert_refused(&answer, &what);
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{what}: {}", answer.body);
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&format!("at most {limit} bytes")), "{what}: {detail}");

        let what = format!("{method} {route} with a chunked body over the limit");
        let (base, method, route) = (app.base.clone(), method.to_string(), route.to_string());
        let (status, body) =
            tokio::task::spawn_blocking(move || send_chunked(&base, &method, &route, command, limit + 1))
                .await
                .expect("send a chunked body");
        assert!(status.starts_with("HTTP/1.1 413"), "{what}: {status}");
        let problem: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body:?}"));
        assert_eq!(problem["status"], 413, "{what}: {problem}");
    }
    // At the limit, routes answer as ever: the query and the probe ignore
    // the body, the command reads it.
    let at_limit = send_raw(&app, Method::GET, "/api/products/KB-1", Some(padded(limit))).await;
    assert_eq!(at_limit.status, StatusCode::OK, "{}", at_limit.body);
    let (base, body) = (app.base.clone(), command.to_vec());
    let (status, _) =
        tokio::task::spawn_blocking(move || send_chunked(&base, "GET", "/health", &body, limit))
            .await
            .expect("send a chunked body");
    assert!(status.starts_with("HTTP/1.1 200"), "a chunked body at the limit: {status}");

    assert_eq!(app.head().await, head, "a refused command stored something");
    let cart = app.get("/api/carts/cart-1").await;
    assert_eq!(cart.body["items"][0]["quantity"], 1, "{}", cart.body);
}

#[tokio::test]
async fn a_name_that_looks_like_sql_is_stored_verbatim() {
    let app = spawn_app().await;
    let head = app.head().await;
    let names =
        ["'; DROP TABLE events; --", "' OR 1=1 --", "Robert'); DROP TABLE students;--", "💥 ʻokina \u{202e}"];
    for (i, name) in names.iter().enumerate() {
        let answer = app.register(&format!("SQL-{i}"), name, 1, 1).await;
        let product = app.get_after(&format!("/api/products/SQL-{i}"), &answer.token()).await;
        assert_eq!(product.body["name"], *name, "{}", product.body);
    }
    assert_eq!(app.head().await, head + names.len() as u64);
}

// ---- The OpenAPI document ----

/// `(METHOD, path)` of every route in `src/http/mod.rs`'s router, read from
/// its source: a route added there without a `#[utoipa::path]` fails below.
fn router_routes() -> BTreeSet<(String, String)> {
    let source = include_str!("../src/http/mod.rs");
    let mut routes = BTreeSet::new();
    for chunk in source.split(".route(\"").skip(1) {
        let (path, rest) = chunk.split_once('"').expect("a route path");
        // The method router: up to the end of the statement line(s) of this route.
        let call = rest.split("\n        .").next().unwrap_or(rest);
        for method in ["get", "post", "put", "patch", "delete"] {
            for found in call.match_indices(&format!("{method}(")) {
                let before = call[..found.0].chars().last().unwrap_or(' ');
                if !before.is_alphanumeric() && before != '_' {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    routes
}

fn documented(spec: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let app = spawn_app().await;
    let answer = app.get("/openapi.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", answer.body);
    let spec = answer.body;
    let served = router_routes();
    assert!(served.len() >= 20, "the router's source did not parse: {served:?}");
    let documented = documented(&spec);
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not in /openapi.json"
    );
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in /openapi.json but not served"
    );
    // And the server agrees: every documented operation is routed (not the
    // fallback's 404, not 405).
    for (method, route) in &documented {
        if route == "/api/events/stream" {
            continue; // never ends
        }
        let concrete = route
            .replace("{order_id}", "00000000-0000-4000-8000-000000000000")
            .replace("{sku}", "NO-SUCH")
            .replace("{cart_id}", "no-such")
            .replace("{customer_id}", "nobody");
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let answer = send_raw(&app, method.clone(), &concrete, Some(b"{}".to_vec())).await;
        assert_ne!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {concrete}");
        let fallback = answer.body["detail"].as_str().is_some_and(|d| d.starts_with("no route"));
        assert!(!fallback, "{method} {concrete} is not routed: {}", answer.body);
    }
    // Every command with a body documents it; every operation documents its problems.
    for (path, item) in spec["paths"].as_object().expect("paths") {
        if let Some(post) = item.get("post") {
            // The order commands and forgetting a customer take no body.
            if !path.starts_with("/api/orders/") && !path.ends_with("/forget") {
                assert!(
                    post["requestBody"]["content"]["application/json"]["schema"].is_object(),
                    "POST {path}"
                );
            }
            assert_eq!(
                post["responses"]["400"]["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "POST {path}"
            );
        }
    }
}

/// Whether `value` satisfies `schema`, for the keywords the command schemas
/// use; the reason if not.
fn validate(spec: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return validate(spec, &spec["components"]["schemas"][name], value);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let type_ok = types.is_empty()
        || types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "null" => value.is_null(),
            _ => false,
        });
    if !type_ok {
        return Err(format!("{value} is not {types:?}"));
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let required = required.as_str().unwrap_or_default();
            if !object.contains_key(required) {
                return Err(format!("{required} is missing"));
            }
        }
        let properties = schema["properties"].as_object();
        for (key, field) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(property) => validate(spec, property, field).map_err(|e| format!("{key}: {e}"))?,
                None if schema["additionalProperties"] == json!(false) => {
                    return Err(format!("{key} is not allowed"))
                }
                None => {}
            }
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| length < min) {
            return Err("too short".into());
        }
        if schema["maxLength"].as_u64().is_some_and(|max| length > max) {
            return Err("too long".into());
        }
        if schema["pattern"] == "^[A-Za-z0-9._-]{1,64}$"
            && !text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err("does not match the pattern".into());
        }
    }
    if let Some(number) = value.as_i64() {
        if schema["minimum"].as_i64().is_some_and(|min| number < min) {
            return Err("below the minimum".into());
        }
        if schema["maximum"].as_i64().is_some_and(|max| number > max) {
            return Err("above the maximum".into());
        }
    } else if value.is_u64() && schema["maximum"].as_i64().is_some() {
        return Err("above the maximum".into());
    }
    Ok(())
}

#[tokio::test]
async fn command_schemas_refuse_what_the_handlers_refuse() {
    let (app, order) = seeded().await;
    let spec = app.get("/openapi.json").await.body;
    let head = settled_head(&app).await;
    for command in commands(&order) {
        let (Some(valid), Some(name)) = (&command.body, command.schema) else { continue };
        let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
        assert_eq!(validate(&spec, &schema, valid), Ok(()), "{name} refuses a valid body {valid}");
        let fields = valid.as_object().expect("an object");
        let mut bodies = vec![json!([]), json!(null), json!("x"), {
            let mut body = fields.clone();
            body.insert("extra".into(), json!(1));
            Value::Object(body)
        }];
        for (field, value) in fields {
            let mut without = fields.clone();
            without.remove(field);
            bodies.push(Value::Object(without));
            let wrong = if value.is_string() { json!(7) } else { json!("7") };
            for bad in [wrong, Value::Null, json!(1.5)] {
                let mut body = fields.clone();
                body.insert(field.clone(), bad);
                bodies.push(Value::Object(body));
            }
        }
        let target = path(command.route, &command.segments);
        for body in bodies {
            assert!(validate(&spec, &schema, &body).is_err(), "{name} accepts {body}");
            let answer =
                send_raw(&app, command.method.clone(), &target, Some(body.to_string().into_bytes())).await;
            assert_refused(&answer, &format!("{} {target} {body}", command.method));
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}: {}", answer.body);
        }
    }
    assert_eq!(app.head().await, head);
}
