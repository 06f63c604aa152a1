//! Wiring: which stores, projectors and workers run, and the HTTP server.
//!
//! The embedded shape: the event store and the read store are two SQLite
//! files under the data folder; projectors and the checkout saga tail the
//! event store in this process; one HTTP server serves commands and queries.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use parallax_core::{EventLog, EventStore, ReadStore};
use parallax_runtime::{CancellationToken, Freshness, ProcessRunner, Projector};
use parallax_sqlite::{SqliteEventStore, SqliteReadStore};
use shop_read::ShopQueries;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::commands::ShopCommands;
use crate::config::Settings;
use crate::http::{router, ApiState};
use crate::saga::CheckoutSaga;

/// A running shop.
pub struct RunningApp {
    /// Where the HTTP API listens (the real port when 0 was asked for).
    pub addr: SocketAddr,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningApp {
    /// The API's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and the workers and waits for them.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until the process is asked to stop (Ctrl-C, SIGTERM), then shuts down.
    pub async fn run_until_signal(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// Opens the stores, starts the projectors, the saga and the HTTP server.
pub async fn start(settings: Settings) -> anyhow::Result<RunningApp> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("create data folder {}", settings.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&settings.data_dir).unwrap_or_else(|_| settings.data_dir.clone());
    let events = SqliteEventStore::open(&settings.events_path())
        .with_context(|| format!("open event store {}", settings.events_path().display()))?;
    let log: Arc<dyn EventLog> = Arc::new(events.log());
    let event_store: Arc<dyn EventStore> = Arc::new(events);
    let read_store: Arc<dyn ReadStore> = Arc::new(
        SqliteReadStore::open(&settings.views_path())
            .with_context(|| format!("open read store {}", settings.views_path().display()))?,
    );

    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let progress = Arc::new(Notify::new());
    let projections = shop_read::all_projections();
    for projection in &projections {
        let projector = Projector::new(projection.clone(), log.clone(), read_store.clone())
            .with_progress(progress.clone());
        let cancel = cancel.clone();
        tasks.spawn(async move { projector.run(cancel).await });
    }
    let commands = Arc::new(ShopCommands::new(event_store.clone()));
    let saga =
        ProcessRunner::new(Arc::new(CheckoutSaga::new(commands.clone())), log.clone(), event_store.clone());
    {
        let cancel = cancel.clone();
        tasks.spawn(async move { saga.run(cancel).await });
    }

    let state = ApiState {
        commands: Some(commands),
        queries: Some(ShopQueries::new(read_store.clone())),
        freshness: Some(Freshness::new(read_store.clone(), progress)),
        read_store: Some(read_store),
        event_store: Some(event_store),
        projections,
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listen on {}", settings.listen))?;
    let addr = listener.local_addr().context("read the listening address")?;
    {
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let server =
                axum::serve(listener, router(state)).with_graceful_shutdown(cancel.cancelled_owned());
            if let Err(error) = server.await {
                tracing::error!(%error, "HTTP server failed");
            }
        });
    }
    tracing::info!(%addr, data_dir = %data_dir.display(), "shop listening");
    Ok(RunningApp { addr, cancel, tasks })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
