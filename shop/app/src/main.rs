//! The `shop` binary: `shop serve` (the default) runs the shop.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use shop::Settings;
use tracing_subscriber::EnvFilter;

/// The Parallax reference shop: CQRS and event sourcing, embedded on SQLite.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the shop's HTTP API (the default).
    Serve(ServeArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "SHOP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Folder of the embedded databases.
    #[arg(long, env = "SHOP_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let app = shop::start(Settings { listen: args.listen, data_dir: args.data_dir }).await?;
    app.run_until_signal().await;
    Ok(())
}
