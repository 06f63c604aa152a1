//! HTTP: keep-alive connections to the shop, and the shop under test
//! (`shop serve` as a separate process, or in this process for the smoke test).
//!
//! The default client is hyper's HTTP/1.1 connection, one per worker: a
//! worker owns its connection and sends one request at a time on it, so N
//! workers are N keep-alive connections. `--client reqwest` uses one shared
//! reqwest client with its connection pool instead (to measure what the
//! convenience costs).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::ValueEnum;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

/// Which HTTP client the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// hyper's HTTP/1.1 connection, one per worker.
    Hyper,
    /// One reqwest client (connection pool) shared by the workers.
    Reqwest,
}

/// Makes connections to one server.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    host: String,
    reqwest: Option<reqwest::Client>,
}

impl Client {
    /// A client of `addr` of the given kind.
    pub fn new(addr: SocketAddr, kind: ClientKind) -> anyhow::Result<Self> {
        let reqwest = match kind {
            ClientKind::Hyper => None,
            ClientKind::Reqwest => Some(
                reqwest::Client::builder()
                    .pool_max_idle_per_host(usize::MAX)
                    .tcp_nodelay(true)
                    .build()
                    .context("build the reqwest client")?,
            ),
        };
        Ok(Self { addr, host: addr.to_string(), reqwest })
    }

    /// A connection (for hyper, a new TCP connection; for reqwest, a handle
    /// on the shared pool).
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        Ok(match &self.reqwest {
            Some(client) => Conn::Reqwest { client: client.clone(), base: format!("http://{}", self.host) },
            None => Conn::Hyper { sender: Some(handshake(self.addr).await?), client: self.clone() },
        })
    }
}

async fn handshake(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes the connection.
        let _ = connection.await;
    });
    Ok(sender)
}

/// One connection: one request at a time.
pub enum Conn {
    /// A hyper HTTP/1.1 connection (reopened if the server closed it).
    Hyper {
        /// The open connection.
        sender: Option<SendRequest<Full<Bytes>>>,
        /// For reconnecting.
        client: Client,
    },
    /// A handle on reqwest's pool.
    Reqwest {
        /// The shared client.
        client: reqwest::Client,
        /// `http://host:port`.
        base: String,
    },
}

impl Conn {
    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&mut self, path: &str, json: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        self.send(Method::POST, path, Some(json)).await
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        json: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        match self {
            Conn::Hyper { sender, client } => {
                let mut open = match sender.take() {
                    Some(open) if !open.is_closed() => open,
                    _ => handshake(client.addr).await?,
                };
                open.ready().await?;
                let mut request = Request::builder().method(method).uri(path).header(HOST, &client.host);
                if json.is_some() {
                    request = request.header(CONTENT_TYPE, "application/json");
                }
                let request = request.body(Full::new(json.unwrap_or_default()))?;
                let response = open.send_request(request).await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                *sender = Some(open);
                Ok((status, body))
            }
            Conn::Reqwest { client, base } => {
                let method = reqwest::Method::from_bytes(method.as_str().as_bytes())?;
                let mut request = client.request(method, format!("{base}{path}"));
                if let Some(json) = json {
                    request = request.header("content-type", "application/json").body(json);
                }
                let response = request.send().await?;
                let status = StatusCode::from_u16(response.status().as_u16())?;
                Ok((status, response.bytes().await?))
            }
        }
    }

    /// Sends a request and fails unless the answer is a success.
    pub async fn expect_ok(
        &mut self,
        method: Method,
        path: &str,
        json: Option<Bytes>,
    ) -> anyhow::Result<Bytes> {
        let (status, body) = self.send(method.clone(), path, json).await?;
        anyhow::ensure!(
            status.is_success(),
            "{method} {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }
}

/// How the shop under test is started.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct ShopArgs {
    /// The `shop` binary to start [default: target/release/shop of this
    /// workspace, built first with `cargo build --release -p shop`].
    #[arg(long)]
    pub shop_bin: Option<PathBuf>,
    /// Don't run `cargo build --release -p shop` before starting the default binary.
    #[arg(long)]
    pub no_build: bool,
    /// Run the shop inside the bench process (`shop::start`) instead of as a
    /// separate process: no binary needed (the smoke test does this), but the
    /// load generator then shares the shop's runtime.
    #[arg(long)]
    pub in_process: bool,
    /// HTTP client of the workers.
    #[arg(long, value_enum, default_value_t = ClientKind::Hyper)]
    pub client: ClientKind,
}

/// Which `shop` binary a scenario of `shop serve --role …` processes starts.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct ShopBinaryArgs {
    /// The `shop` binary (default: `target/<profile>/shop` of this
    /// workspace, the profile this bench was built in, built first with
    /// `cargo build -p shop`, `--release` for a release bench).
    #[arg(long)]
    pub shop_bin: Option<PathBuf>,
    /// Don't build the default shop binary first.
    #[arg(long)]
    pub no_build: bool,
}

impl ShopBinaryArgs {
    /// The binary: `--shop-bin`, or this workspace's, built first unless `--no-build`.
    pub async fn binary(&self) -> anyhow::Result<PathBuf> {
        shop_binary(self.shop_bin.as_deref(), self.no_build, Profile::of_the_bench()).await
    }
}

/// The shop under test.
pub enum Shop {
    /// `shop serve` as a child process.
    Process {
        /// The child; killed when dropped.
        child: tokio::process::Child,
        /// Where it listens.
        addr: SocketAddr,
    },
    /// `shop::start` in this process.
    InProcess {
        /// The running shop.
        app: shop::RunningApp,
    },
}

impl Shop {
    /// Starts a shop with its data in `data_dir`.
    pub async fn start(args: &ShopArgs, data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        if args.in_process {
            let listen: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
            let app = shop::start(shop::Settings::embedded(listen, data_dir.to_owned())).await?;
            return Ok(Shop::InProcess { app });
        }
        let binary = shop_binary(args.shop_bin.as_deref(), args.no_build, Profile::Release).await?;
        let mut command = tokio::process::Command::new(&binary);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn");
        let (child, addr) = spawn_listening(command, &data_dir.join("shop.log")).await?;
        Ok(Shop::Process { child, addr })
    }

    /// Where the shop listens.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Shop::Process { addr, .. } => *addr,
            Shop::InProcess { app } => app.addr,
        }
    }

    /// Whether the shop runs as a separate process.
    pub fn describe(&self) -> &'static str {
        match self {
            Shop::Process { .. } => "`shop serve` (release binary) as a separate process",
            Shop::InProcess { .. } => "the shop inside the bench process",
        }
    }

    /// Stops the shop.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self {
            Shop::Process { mut child, .. } => {
                child.start_kill()?;
                child.wait().await?;
            }
            Shop::InProcess { app } => app.shutdown().await,
        }
        Ok(())
    }
}

/// The workspace's target folder (`CARGO_TARGET_DIR` if set).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"))
}

/// A Cargo profile the shop binary is built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `--release`, in `target/release`.
    Release,
    /// The default, in `target/debug`.
    Debug,
}

impl Profile {
    /// The profile this bench was built in (a debug bench, the smoke test,
    /// starts a debug shop: quicker to build).
    pub fn of_the_bench() -> Self {
        if cfg!(debug_assertions) {
            Profile::Debug
        } else {
            Profile::Release
        }
    }

    fn folder(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

/// The `shop` binary: `given`, else `target/<profile>/shop` of this
/// workspace, built first with `cargo build -p shop` (`--release` for the
/// release profile) unless `no_build`.
pub async fn shop_binary(given: Option<&Path>, no_build: bool, profile: Profile) -> anyhow::Result<PathBuf> {
    let binary = match given {
        Some(binary) => binary.to_owned(),
        None => {
            if !no_build {
                build_shop(profile).await?;
            }
            target_dir().join(profile.folder()).join("shop")
        }
    };
    anyhow::ensure!(
        binary.is_file(),
        "{} does not exist: build it with `cargo build {}-p shop`, or pass --shop-bin",
        binary.display(),
        if profile == Profile::Release { "--release " } else { "" }
    );
    Ok(binary)
}

async fn build_shop(profile: Profile) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut args = vec!["build", "-p", "shop"];
    if profile == Profile::Release {
        args.insert(1, "--release");
    }
    let shown = format!("cargo {}", args.join(" "));
    eprintln!("building the shop: {shown}");
    let status = tokio::process::Command::new(cargo)
        .args(&args)
        .current_dir(crate::workspace_root())
        .stdin(Stdio::null())
        .status()
        .await
        .with_context(|| format!("run {shown}"))?;
    anyhow::ensure!(status.success(), "{shown} failed");
    Ok(())
}

/// Starts `command` (`shop serve …` with its arguments and environment),
/// its stderr into the file `log`, and waits until it prints `listening on
/// http://ADDR` on stdout (60 s at most); returns the child, killed when
/// dropped, and the address. The rest of stdout is read and dropped, so the
/// process never blocks on a full pipe.
pub async fn spawn_listening(
    mut command: tokio::process::Command,
    log: &Path,
) -> anyhow::Result<(tokio::process::Child, SocketAddr)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {:?}", command.as_std().get_program()))?;
    let stdout = child.stdout.take().context("the shop's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("the shop did not say where it listens within 60 s")??
        .with_context(|| {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            format!("the shop ended before it listened; its log:\n{log}")
        })?;
    let url =
        line.strip_prefix("listening on http://").with_context(|| format!("unexpected line {line:?}"))?;
    let addr: SocketAddr = url.trim().parse().with_context(|| format!("parse the address in {line:?}"))?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr))
}
