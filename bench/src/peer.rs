//! The peer `commands-postgres` compares the shop with: the same cart
//! written with cqrs-es over postgres-es (`bench/peer-cqrs-es`), run as a
//! separate process in a database of its own.
//!
//! It is a workspace of its own: postgres-es is on sqlx 0.8, whose optional
//! SQLite driver links the native sqlite3 as this workspace's rusqlite does,
//! and Cargo allows one such link per lockfile (optional or not). It uses
//! the bench's load generator ([`bench_load`]), so the bench hands it a
//! [`Request`] — the same cart plan, concurrency steps, fixed rate and
//! workers as the shop's run — and reads back figures measured exactly as
//! the shop's are, in the process that sends the commands.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use bench_load::remote::{Answer, Request};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

/// The peer's folder, beside this crate.
const PEER_DIR: &str = "peer-cqrs-es";

/// How to get the peer.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct PeerArgs {
    /// Don't run the peer (cqrs-es over postgres-es).
    #[arg(long)]
    pub no_peer: bool,
    /// The peer's binary [default: built first into target/peer-cqrs-es with
    /// `cargo build --manifest-path bench/peer-cqrs-es/Cargo.toml`, release
    /// unless this bench is a debug build].
    #[arg(long)]
    pub peer_bin: Option<PathBuf>,
    /// Don't build the peer before starting the default binary.
    #[arg(long)]
    pub no_peer_build: bool,
}

/// The peer's binary: `--peer-bin`, or the default one, built first unless `--no-peer-build`.
pub async fn binary(args: &PeerArgs) -> anyhow::Result<PathBuf> {
    if let Some(binary) = &args.peer_bin {
        return Ok(binary.clone());
    }
    let target_dir = crate::workspace_root().join("target").join(PEER_DIR);
    // A debug bench (the smoke test) gets a debug peer: quicker to build.
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    if !args.no_peer_build {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join(PEER_DIR).join("Cargo.toml");
        // --locked: the peer's versions are the ones its Cargo.lock records.
        let mut build: Vec<OsString> =
            vec!["build".into(), "--locked".into(), "--manifest-path".into(), manifest.into()];
        build.extend(["--target-dir".into(), target_dir.clone().into()]);
        if profile == "release" {
            build.push("--release".into());
        }
        eprintln!("building the peer: cargo {}", build.join(" ".as_ref()).to_string_lossy());
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = tokio::process::Command::new(cargo)
            .args(&build)
            .stdin(Stdio::null())
            .status()
            .await
            .context("run cargo build for the peer")?;
        anyhow::ensure!(status.success(), "building the peer failed");
    }
    let binary = target_dir.join(profile).join(PEER_DIR);
    anyhow::ensure!(binary.exists(), "{} does not exist: build it, or pass --peer-bin", binary.display());
    Ok(binary)
}

/// Runs the peer on `request`; its progress goes to this process's stderr.
pub async fn run(binary: &Path, request: &Request) -> anyhow::Result<Answer> {
    let mut child = tokio::process::Command::new(binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let mut stdin = child.stdin.take().context("the peer's stdin")?;
    stdin.write_all(&serde_json::to_vec(request)?).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    anyhow::ensure!(output.status.success(), "the peer failed ({})", output.status);
    serde_json::from_slice(&output.stdout).context("read the peer's answer")
}
