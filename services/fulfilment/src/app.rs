//! Wiring: fulfilment's stores and the shop's events (embedded: SQLite
//! files and the shop's event store tailed read-only; distributed:
//! PostgreSQL and the shop's Kafka topic), the intake, the warehouse, the
//! projector and the query API, all in one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use parallax_core::{EventLog, EventSource, EventStore, Leases, LogSource, ReadStore};
use parallax_kafka::{KafkaConfig, KafkaSource};
use parallax_postgres::{PgEventStore, PgLeases, PgReadStore, PgStoreOptions};
use parallax_runtime::{CancellationToken, CommandHandler, ProcessRunner, Projector};
use parallax_sqlite::{SqliteEventStore, SqliteLog, SqliteReadStore};
use tokio::task::JoinSet;

use crate::config::{Settings, Shape};
use crate::intake::Intake;
use crate::shop_api::ShopApi;
use crate::views::Shipments;
use crate::warehouse::Warehouse;

/// `url` with its database replaced by `database`, and the database it names.
fn split_database(url: &str) -> anyhow::Result<(String, String)> {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let slash =
        base[authority..].find('/').map(|i| authority + i).context("the database URL names no database")?;
    let database = base[slash + 1..].to_owned();
    let admin = format!("{}/postgres{}", &base[..slash], query.map(|q| format!("?{q}")).unwrap_or_default());
    Ok((admin, database))
}

/// Embedded: creates fulfilment's files and their schemas. Distributed:
/// creates fulfilment's database if it does not exist, then its event
/// store's and views' schemas (both in that one database).
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    if settings.shape == Shape::Embedded {
        let dir = settings.data_dir.clone();
        return tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            SqliteEventStore::open(&dir.join("events.db"))?;
            SqliteReadStore::open(&dir.join("views.db"))?;
            Ok(())
        })
        .await?;
    }
    let url = &settings.db.url;
    let (admin_url, database) = split_database(url)?;
    anyhow::ensure!(
        !database.is_empty() && database.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database name {database:?}: letters, digits and underscores only"
    );
    let admin = parallax_postgres::pool(&admin_url, 1).await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&database)
        .fetch_optional(&admin)
        .await
        .context("look the database up")?;
    if exists.is_none() {
        // The name was checked above: letters, digits and underscores.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{database}\"")))
            .execute(&admin)
            .await
            .with_context(|| format!("create database {database}"))?;
        tracing::info!(database, "database created");
    }
    admin.close().await;
    let pool = parallax_postgres::pool(url, 2).await?;
    parallax_postgres::migrate_write(&pool).await?;
    parallax_postgres::migrate_read(&pool).await?;
    tracing::info!(url = %parallax_postgres::redact(url), "schemas are current");
    Ok(())
}

/// A running service: its workers and its HTTP server.
pub struct Running {
    address: SocketAddr,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// Where the query API listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until Ctrl-C or SIGTERM, then stops every worker.
    pub async fn run_until_signal(mut self) {
        let terminate = async {
            #[cfg(unix)]
            if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                signal.recv().await;
                return;
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
            _ = self.tasks.join_next() => tracing::error!("a worker stopped on its own; stopping"),
        }
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }
}

/// What a shape gives the workers: fulfilment's stores, and the shop's events.
struct Sides {
    store: Arc<dyn EventStore>,
    log: Arc<dyn EventLog>,
    views: Arc<dyn ReadStore>,
    source: Box<dyn EventSource>,
    /// One warehouse across processes, where the store has leases.
    leases: Option<Arc<dyn Leases>>,
}

/// SQLite files of fulfilment's own, and the embedded shop's event store
/// tailed read-only.
async fn open_embedded(settings: &Settings) -> anyhow::Result<Sides> {
    let (dir, shop) = (settings.data_dir.clone(), settings.shop_events.clone());
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let store = SqliteEventStore::open(&dir.join("events.db"))?;
        let views = SqliteReadStore::open(&dir.join("views.db"))?;
        let shop_log = SqliteLog::open(&shop)
            .context("open the embedded shop's event store (start the shop first, or set shop_events)")?;
        Ok(Sides {
            log: Arc::new(store.log()),
            store: Arc::new(store),
            views: Arc::new(views),
            source: Box::new(LogSource::new(Arc::new(shop_log))),
            leases: None,
        })
    })
    .await?
}

/// Fulfilment's PostgreSQL database, and the shop's Kafka topic as consumer
/// group `kafka.group`.
async fn open_distributed(settings: &Settings) -> anyhow::Result<Sides> {
    let pool = parallax_postgres::pool(&settings.db.url, settings.db.max_connections).await?;
    let store = PgEventStore::new(pool.clone(), PgStoreOptions::default());
    let kafka = KafkaConfig::new(&settings.kafka.brokers, &settings.kafka.topic, 1, "/fulfilment");
    let source = KafkaSource::new(&kafka, &settings.kafka.group).context("join the shop's topic")?;
    Ok(Sides {
        log: Arc::new(store.log()),
        store: Arc::new(store),
        views: Arc::new(PgReadStore::new(pool.clone())),
        source: Box::new(source),
        leases: Some(Arc::new(PgLeases::new(pool))),
    })
}

/// Opens fulfilment's stores and the shop's events as `settings.shape`
/// says, starts the workers and the query API on `settings.listen`.
pub async fn start(settings: &Settings) -> anyhow::Result<Running> {
    let Sides { store, log, views, source, leases } = match settings.shape {
        Shape::Embedded => open_embedded(settings).await?,
        Shape::Distributed => open_distributed(settings).await?,
    };
    let intake = Intake::new(source, store.clone());
    let shop = ShopApi::new(
        &settings.shop_url,
        Duration::from_millis(settings.shop_timeout_ms),
        settings.shop_api_key.as_ref().map(|key| key.0.as_str()),
    )?;
    let shipments = Arc::new(CommandHandler::new(store.clone()));
    let warehouse = Warehouse::new(shipments, shop, settings.warehouse.delays());
    let warehouse = ProcessRunner::new(Arc::new(warehouse), log.clone(), store);
    let projector = Projector::new(Arc::new(Shipments::new()), log, views.clone());

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(intake.run(cancel.clone()));
    let stop = cancel.clone();
    tasks.spawn(async move {
        match leases {
            Some(leases) => warehouse.run_leased(leases, stop).await,
            None => warehouse.run(stop).await,
        }
    });
    let stop = cancel.clone();
    tasks.spawn(async move { projector.run(stop).await });
    let stop = cancel.clone();
    let app = crate::http::router(views);
    tasks.spawn(async move {
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(%error, "the query API stopped");
        }
    });
    Ok(Running { address, cancel, tasks })
}

#[cfg(test)]
mod tests {
    use super::split_database;

    #[test]
    fn the_admin_url_is_the_same_server_s_postgres_database() {
        let (admin, database) = split_database("postgres://u:p@127.0.0.1:5432/fulfilment?sslmode=disable")
            .expect("a database URL");
        assert_eq!(admin, "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable");
        assert_eq!(database, "fulfilment");
        assert!(split_database("postgres://u:p@127.0.0.1:5432").is_err());
    }
}
