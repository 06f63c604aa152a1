//! The `shop` binary: `shop serve` (the default) runs the shop; `shop
//! migrate` creates the schemas and the topic the configuration names.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use shop::{Role, Settings};
use tracing_subscriber::EnvFilter;

/// The Parallax reference shop: CQRS and event sourcing, embedded on SQLite
/// by default, or distributed over PostgreSQL and Kafka with one process per
/// role.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// A TOML configuration file (see the README); `SHOP__…` environment
    /// variables override it.
    #[arg(long, global = true, env = "SHOP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the shop (the default).
    Serve(ServeArgs),
    /// Create or update the PostgreSQL schemas and the Kafka topic, then exit.
    Migrate,
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    /// Address of the HTTP API [default: 127.0.0.1:8080].
    #[arg(long, env = "SHOP_LISTEN")]
    listen: Option<SocketAddr>,
    /// Folder of the embedded databases [default: ./data].
    #[arg(long, env = "SHOP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A role this process plays; repeat for several [default: all].
    #[arg(long = "role", value_enum)]
    roles: Vec<Role>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    let args = match cli.command {
        Some(Command::Migrate) => return shop::migrate(&settings).await,
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if let Some(data_dir) = args.data_dir {
        settings.data_dir = data_dir;
    }
    if !args.roles.is_empty() {
        settings.roles = args.roles.into_iter().collect();
    }
    let app = shop::start(settings).await?;
    // The one line on stdout: scripts and tests read the address from it.
    println!("listening on {}", app.url());
    app.run_until_signal().await;
    Ok(())
}
