//! `fulfilment serve [--config FILE] [--listen ADDR]` and
//! `fulfilment migrate [--config FILE]`: see the crate docs of `fulfilment`.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use fulfilment::config::Settings;
use tracing_subscriber::EnvFilter;

/// Fulfilment: ships the shop's paid orders and tells the shop. Embedded by
/// default, beside the embedded shop of this folder; distributed (the shop's
/// Kafka topic, PostgreSQL) with config/fulfilment.toml.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the service: intake, warehouse, projector and query API.
    Serve {
        /// A TOML file of settings (config/fulfilment.toml); FULFILMENT__…
        /// variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the query API listens, instead of the settings' `listen`
        /// (port 0: one the kernel picks).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Creates the database if needed and brings its schemas up to date.
    Migrate {
        /// A TOML file of settings.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Serve { .. } => "info",
        Command::Migrate { .. } => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)))
        .init();
    match cli.command {
        Command::Migrate { config } => {
            let settings = Settings::load(config.as_deref())?;
            fulfilment::app::migrate(&settings).await?;
            println!("fulfilment's database is ready");
        }
        Command::Serve { config, listen } => {
            let mut settings = Settings::load(config.as_deref())?;
            if let Some(listen) = listen {
                settings.listen = listen;
            }
            let running = fulfilment::app::start(&settings).await?;
            println!("listening on http://{}", running.address());
            running.run_until_signal().await;
        }
    }
    Ok(())
}
