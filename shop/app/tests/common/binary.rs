//! The `shop` binary as a child process, embedded on a data folder.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// A running `shop serve`, killed when dropped.
pub struct Shop {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Shop {
    /// Spawns `command` (a `shop serve` without `--listen`) on a port the
    /// kernel picks, and reads the address from its `listening on` line. A
    /// port chosen beforehand may be taken by another test's shop meanwhile,
    /// and the requests meant for this shop would then reach that one.
    pub fn spawn(mut command: Command) -> Shop {
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the shop binary");
        let stdout = child.stdout.take().expect("its stdout");
        let (sender, first_line) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = sender.send(lines.next());
            // Drained to the end, so a later line never meets a closed pipe.
            for _ in lines {}
        });
        let line = match first_line.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                panic!("the shop printed no `listening on` line: {other:?}, {:?}", child.wait())
            }
        };
        let base = line.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected line {line:?}"));
        Shop { base: base.to_owned(), child }
    }
}

/// The shop binary with `args` (and `RUST_LOG=warn`), stdin closed.
pub fn shop_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
    command.args(args).env("RUST_LOG", "warn").stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SHOP_") {
            command.env_remove(key);
        }
    }
    command
}

/// Starts `shop serve` embedded on `data_dir` and waits until it answers.
pub async fn start(data_dir: &Path, client: &Client) -> Shop {
    let mut command = shop_command(["serve", "--data-dir"]);
    command.arg(data_dir);
    let shop = Shop::spawn(command);
    for _ in 0..500 {
        if let Ok(r) = client.get(format!("{}/health", shop.base)).send().await {
            if r.status() == StatusCode::OK {
                return shop;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the shop did not answer on {}", shop.base);
}

/// POSTs `body` to `url`; the command must succeed. Its JSON answer.
pub async fn post(client: &Client, url: String, body: Value) -> Value {
    let response = client.post(url).json(&body).send().await.expect("a command");
    assert!(response.status().is_success(), "{}", response.text().await.unwrap_or_default());
    response.json().await.expect("a JSON answer")
}

/// Adds `quantity` of `sku` to `cart` on the shop at `base`, then reads the
/// cart with the command's token (waiting up to 10 s for the view).
pub async fn add_then_read_cart(client: &Client, base: &str, cart: &str, sku: &str, quantity: u32) -> Value {
    let added =
        post(client, format!("{base}/api/carts/{cart}/items"), json!({"sku": sku, "quantity": quantity}))
            .await;
    let token = added["token"].as_str().expect("a token");
    client
        .get(format!("{base}/api/carts/{cart}?consistent_with={token}&wait_ms=10000"))
        .send()
        .await
        .expect("a query")
        .json()
        .await
        .expect("a cart")
}
