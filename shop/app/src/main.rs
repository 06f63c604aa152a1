//! The `shop` binary: `shop serve` (the default) runs the shop; `shop
//! migrate` creates the schemas and the topic the configuration names;
//! `shop status` and `shop events tail` look at a running (or stopped) shop;
//! `shop contract` prints the AsyncAPI document of its events.

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
    /// Folder of the embedded databases [default: ./data].
    #[arg(long, global = true, env = "SHOP_DATA_DIR")]
    data_dir: Option<PathBuf>,
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
    /// Each projection's position, lag and dead letters, per partition.
    Status {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Events of the event store.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Dead letters: events a projection could not apply.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Rebuild a projection's views from position 0 in a new generation
    /// while the current one keeps serving; switch when it has caught up,
    /// then drop the old one.
    Rebuild {
        /// The projection (catalog, carts, orders, sales).
        projection: String,
        /// Build from the event store (the write DB) instead of the topic,
        /// then let the topic take over from where the event store left
        /// off: for a topic whose retention deleted the start of the history.
        #[arg(long)]
        from_store: bool,
    },
    /// Check the stores against each other and a history of client
    /// operations (lost, duplicated or misordered events, views against a
    /// rebuild); exit status 0 ok, 1 violations found, 2 the check could not
    /// run.
    Check(shop::check::CheckArgs),
    /// Print the AsyncAPI 3.0 document of the events the shop publishes to
    /// its Kafka topic (as the configuration names it): one message per
    /// event type and schema version, its headers, key and payload schema.
    /// The same document as `GET /asyncapi.json`.
    Contract,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Every projection's dead letters: id, projection, position, event
    /// type, event id and error.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only this tenant's dead letters (`default`: the default tenant's).
        #[arg(long)]
        tenant: Option<TenantArg>,
    },
    /// Apply a dead letter's event again, with this code, on the views as
    /// they are now, and remove the dead letter; if the projection still
    /// fails on it, change nothing and exit with an error.
    Retry {
        /// The dead letter, `<projection>@<position>` (see `shop dlq list`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Print events as they are committed, one line each.
    Tail {
        /// Only this stream's events (e.g. `cart-c1`; within `--tenant`'s).
        #[arg(long)]
        stream: Option<String>,
        /// Only this tenant's events (`default`: the default tenant's)
        /// [default: every tenant's].
        #[arg(long)]
        tenant: Option<TenantArg>,
        /// Start after this position [default: the head: only new events].
        #[arg(long)]
        after: Option<u64>,
        /// Print what is there and exit instead of waiting for more.
        #[arg(long)]
        no_follow: bool,
    },
}

/// A tenant on the command line: its name, or `default`.
#[derive(Debug, Clone)]
struct TenantArg(parallax_core::Tenant);

impl std::str::FromStr for TenantArg {
    type Err = parallax_core::TenantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(Self(parallax_core::Tenant::DEFAULT)),
            name => parallax_core::Tenant::parse(name).map(Self),
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    /// Address of the HTTP API [default: 127.0.0.1:8080].
    #[arg(long, env = "SHOP_LISTEN")]
    listen: Option<SocketAddr>,
    /// A role this process plays; repeat for several [default: all].
    #[arg(long = "role", value_enum)]
    roles: Vec<Role>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.command);
    if let Some(Command::Check(args)) = &cli.command {
        let status = shop::check::run(cli.config.as_deref(), cli.data_dir.clone(), args).await;
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::process::exit(status);
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(data_dir) = cli.data_dir {
        settings.data_dir = data_dir;
    }
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
        Some(command) => return operate(command, &settings).await,
    };
    if let Some(listen) = args.listen {
        settings.listen = listen;
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

/// A server logs what it does; an operator command prints its output, and
/// only warnings beside it (not the drivers' connection logs). RUST_LOG
/// overrides either.
fn init_tracing(command: &Option<Command>) {
    let serving = matches!(command, None | Some(Command::Serve(_)));
    let default_filter = if serving { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)))
        .init();
}

/// Runs an operator command, printing its output on stdout.
async fn operate(command: Command, settings: &Settings) -> anyhow::Result<()> {
    match command {
        Command::Migrate => shop::migrate(settings).await,
        Command::Status { json } => {
            let statuses = shop::ops::status(settings).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                print!("{}", shop::ops::render_status(&statuses));
            }
            Ok(())
        }
        Command::Rebuild { projection, from_store } => {
            let from =
                if from_store { shop::ops::RebuildFrom::EventStore } else { shop::ops::RebuildFrom::Log };
            let rebuilt = shop::ops::rebuild(settings, &projection, from).await?;
            println!(
                "{projection}: generation {} serves; generation {} {}",
                rebuilt.to.generation,
                rebuilt.from.generation,
                if rebuilt.switched_here { "dropped" } else { "replaced by another process" }
            );
            Ok(())
        }
        Command::Dlq(DlqCommand::List { json, tenant }) => {
            let letters = shop::ops::dead_letters(settings, tenant.map(|TenantArg(t)| t).as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else {
                print!("{}", shop::ops::render_dead_letters(&letters));
            }
            Ok(())
        }
        Command::Dlq(DlqCommand::Retry { id }) => {
            println!("{}", shop::ops::retry_dead_letter(settings, &id).await?);
            Ok(())
        }
        Command::Events(EventsCommand::Tail { stream, tenant, after, no_follow }) => {
            let after = match after {
                Some(after) => after,
                None => shop::ops::head(settings).await?,
            };
            let mut out = std::io::stdout();
            let only = shop::ops::Only { tenant: tenant.map(|TenantArg(t)| t), stream };
            shop::ops::tail_events(settings, &only, after, !no_follow, &mut out).await
        }
        Command::Contract => {
            println!("{}", serde_json::to_string_pretty(&shop::contract::asyncapi(settings))?);
            Ok(())
        }
        Command::Check(_) => unreachable!("`shop check` exits in main"),
        Command::Serve(_) => unreachable!("main serves"),
    }
}
