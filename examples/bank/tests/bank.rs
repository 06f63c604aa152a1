//! The example service through its HTTP API: a deposit, a refused
//! withdrawal, a read of one's own write, and the views surviving a restart.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// The service on `dir`, on a port the kernel picks; its base URL.
async fn serve(dir: &std::path::Path, stop: parallax_runtime::CancellationToken) -> String {
    let app = bank_example::service(dir, stop).expect("open the service");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn send(client: &Client, base: &str, account: &str, command: Value) -> (StatusCode, Value) {
    let response =
        client.post(format!("{base}/accounts/{account}")).json(&command).send().await.expect("send");
    (response.status(), response.json().await.expect("a JSON answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_refuses_to_go_below_zero_and_reads_its_own_writes() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let client = Client::new();
    let stop = parallax_runtime::CancellationToken::new();
    let base = serve(dir.path(), stop.clone()).await;

    let (status, _) = send(&client, &base, "ada", json!({ "deposit": { "cents": 500 } })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = send(&client, &base, "ada", json!({ "withdraw": { "cents": 900 } })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["error"], "the balance is 500 cents");
    let (status, done) = send(&client, &base, "ada", json!({ "withdraw": { "cents": 200 } })).await;
    assert_eq!(status, StatusCode::OK);

    let position = done["position"].as_u64().expect("a position");
    let read = client.get(format!("{base}/accounts/ada?after={position}")).send().await.expect("a query");
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.json::<Value>().await.expect("JSON"), json!({ "cents": 300, "movements": 2 }));
    let unknown = client.get(format!("{base}/accounts/bob")).send().await.expect("a query");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    stop.cancel();

    // Another process on the same files: the events decide, the view is kept.
    let base = serve(dir.path(), parallax_runtime::CancellationToken::new()).await;
    let (status, refused) = send(&client, &base, "ada", json!({ "withdraw": { "cents": 301 } })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let read = client.get(format!("{base}/accounts/ada")).send().await.expect("a query");
    assert_eq!(read.json::<Value>().await.expect("JSON"), json!({ "cents": 300, "movements": 2 }));
}
