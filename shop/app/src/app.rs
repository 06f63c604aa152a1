//! Wiring: which stores, workers and APIs this process runs, from its settings.
//!
//! The embedded shape (the default): the event store and the read store are
//! two SQLite files under the data folder, projectors and the checkout saga
//! tail the event store in this process, one HTTP server serves everything.
//! The distributed shape: the event store on PostgreSQL, the relay publishing
//! it to Kafka, projectors consuming the topic as consumer groups into a read
//! store on PostgreSQL, and each role in processes of its own. The code that
//! runs is the same; only these adapters differ.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parallax_cassandra::CassandraReadStore;
use parallax_core::{
    EventLog, EventSource, EventStore, KeyStore, Leases, LogSource, Projection, ReadStore, ViewSpec,
};
use parallax_kafka::{KafkaConfig, KafkaSink, KafkaSource};
use parallax_postgres::{PgEventStore, PgKeyStore, PgLeases, PgReadStore, PgStoreOptions};
use parallax_runtime::generations::SourceFactory;
use parallax_runtime::{
    ActiveGenerations, CancellationToken, Freshness, Generation, ProcessRunner, Progress, Relay, Supervisor,
    WorkerStatus,
};
use parallax_sqlite::{SqliteEventStore, SqliteKeyStore, SqliteReadStore};
use shop_read::ShopQueries;
use tokio::task::JoinSet;

use crate::commands::ShopCommands;
use crate::config::{DbKind, LogKind, Role, Settings};
use crate::http::{router, Access, ApiState, LiveEvents};
use crate::lag::LogEnds;
use crate::saga::CheckoutSaga;
use crate::telemetry::{Metrics, Telemetry};

/// The CloudEvents source of the shop's events.
pub const EVENT_SOURCE: &str = "/parallax/shop";

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

/// The write side as this process opened it.
pub(crate) struct WriteSide {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) log: Arc<dyn EventLog>,
    /// The keys of customers' personal data (crypto-shredding), in the
    /// write database: the command role seals with them, the query role
    /// opens with them.
    pub(crate) keys: Arc<dyn KeyStore>,
    /// Leases across processes (PostgreSQL only).
    leases: Option<Arc<dyn Leases>>,
}

pub(crate) async fn open_write_side(settings: &Settings) -> anyhow::Result<WriteSide> {
    open_write_side_recorded(settings, &Metrics::new()).await
}

/// The write side, its stores recording into `metrics`.
async fn open_write_side_recorded(settings: &Settings, metrics: &Metrics) -> anyhow::Result<WriteSide> {
    match settings.write_db.kind {
        DbKind::Sqlite => {
            let path = settings.events_path();
            let events = metrics
                .scope(|| SqliteEventStore::open(&path))
                .with_context(|| format!("open event store {}", path.display()))?;
            let keys = SqliteKeyStore::open(&path)
                .with_context(|| format!("open the key store in {}", path.display()))?;
            Ok(WriteSide {
                log: Arc::new(events.log()),
                store: Arc::new(events),
                keys: Arc::new(keys),
                leases: None,
            })
        }
        DbKind::Postgres => {
            let url = settings.write_db.url.as_deref().unwrap_or_default();
            let pool = parallax_postgres::pool(url, settings.write_db.max_connections).await?;
            let store = metrics.scope(|| PgEventStore::new(pool.clone(), PgStoreOptions::default()));
            Ok(WriteSide {
                log: Arc::new(store.log()),
                store: Arc::new(store),
                keys: Arc::new(PgKeyStore::new(pool.clone())),
                leases: Some(Arc::new(PgLeases::new(pool))),
            })
        }
        DbKind::Cassandra => anyhow::bail!("the event store cannot live in Cassandra (write_db.kind)"),
    }
}

pub(crate) async fn open_read_store(settings: &Settings) -> anyhow::Result<Arc<dyn ReadStore>> {
    Ok(match settings.read_db.kind {
        DbKind::Sqlite => {
            let path = settings.views_path();
            Arc::new(
                SqliteReadStore::open(&path)
                    .with_context(|| format!("open read store {}", path.display()))?,
            )
        }
        DbKind::Postgres => {
            let url = settings.read_db.url.as_deref().unwrap_or_default();
            Arc::new(PgReadStore::new(parallax_postgres::pool(url, settings.read_db.max_connections).await?))
        }
        DbKind::Cassandra => Arc::new(open_cassandra(settings).await?),
    })
}

/// The Cassandra read store with a table per shop view (created if missing).
async fn open_cassandra(settings: &Settings) -> anyhow::Result<CassandraReadStore> {
    let config = settings.read_db.cassandra_config()?;
    CassandraReadStore::connect(&config, shop_view_specs())
        .await
        .with_context(|| format!("open the Cassandra read store {config:?}"))
}

/// Every view of the shop's projections, shared where a projection says so.
pub fn shop_view_specs() -> Vec<ViewSpec> {
    // The projections' generation pointers: compare-and-set.
    let mut specs: Vec<ViewSpec> = vec![ViewSpec::shared(parallax_runtime::generations::GENERATIONS_VIEW)];
    for projection in shop_read::all_projections() {
        for view in projection.views() {
            if !specs.iter().any(|spec| spec.name == view.name) {
                specs.push(view);
            }
        }
    }
    specs
}

/// Opens the source each generation of a projection consumes: the event
/// store's log (embedded), or the topic as consumer group
/// `<group>.<projection>` (generation 1) or `<group>.<projection>_g<n>`.
pub(crate) fn generation_sources(
    settings: &Settings,
    log: Option<Arc<dyn EventLog>>,
    projection: &str,
) -> SourceFactory {
    let (settings, projection) = (settings.clone(), projection.to_owned());
    Arc::new(move |generation: Generation| -> Result<Box<dyn EventSource>, String> {
        match (settings.log.kind, &log) {
            (LogKind::Kafka, _) => {
                let group = format!("{}.{}", settings.log.group, generation.physical(&projection));
                KafkaSource::new(&kafka_config(&settings), &group)
                    .map(|source| source.with_gather(Duration::from_millis(settings.log.batch_gather_ms)))
                    .map(|source| Box::new(source) as Box<dyn EventSource>)
                    .map_err(|e| format!("open the Kafka source of {projection}: {e}"))
            }
            (LogKind::Embedded, Some(log)) => Ok(Box::new(LogSource::new(log.clone()))),
            (LogKind::Embedded, None) => Err("an embedded projector needs the write side's log".to_owned()),
        }
    })
}

/// The Kafka topic of `settings`' log, as every role connects to it.
pub fn kafka_config(settings: &Settings) -> KafkaConfig {
    let log = &settings.log;
    KafkaConfig {
        replication: log.replication,
        min_insync_replicas: log.min_insync_replicas,
        retention_ms: log.retention_ms,
        ..KafkaConfig::new(&log.brokers, &log.topic, log.partitions, EVENT_SOURCE)
    }
}

/// Creates what the configured databases and log need (schemas, the topic),
/// idempotently. SQLite files create their schema when opened.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    if settings.write_db.kind == DbKind::Postgres {
        let url = settings.write_db.url.as_deref().unwrap_or_default();
        let pool = parallax_postgres::pool(url, 2).await?;
        parallax_postgres::migrate_write(&pool).await?;
        tracing::info!(url = %parallax_postgres::redact(url), "event store schema is current");
    }
    if settings.read_db.kind == DbKind::Postgres {
        let url = settings.read_db.url.as_deref().unwrap_or_default();
        let pool = parallax_postgres::pool(url, 2).await?;
        parallax_postgres::migrate_read(&pool).await?;
        tracing::info!(url = %parallax_postgres::redact(url), "read store schema is current");
    }
    if settings.read_db.kind == DbKind::Cassandra {
        let store = open_cassandra(settings).await?;
        tracing::info!(keyspace = store.keyspace(), "read store schema is current");
    }
    if settings.log.kind == LogKind::Kafka {
        let status = parallax_kafka::ensure_topic(&kafka_config(settings)).await?;
        tracing::info!(topic = %settings.log.topic, ?status, "topic is ready");
    }
    Ok(())
}

/// Opens what the roles need, starts their workers and the HTTP server.
pub async fn start(settings: Settings) -> anyhow::Result<RunningApp> {
    settings.validate()?;
    settings.validate_exposure()?;
    let metrics = Arc::new(Metrics::new());
    let (write, read_store) = open_sides(&settings, &metrics).await?;

    let progress = Arc::new(Progress::default());
    let projections = shop_read::all_projections();
    let mut workers =
        Workers { cancel: CancellationToken::new(), tasks: JoinSet::new(), statuses: Vec::new() };
    if let (true, Some(read_store)) = (settings.plays(Role::Projector), &read_store) {
        metrics.scope(|| {
            workers.spawn_projectors(&settings, write.as_ref(), read_store, &projections, &progress);
        });
    }
    let kafka = settings.log.kind == LogKind::Kafka;
    if let (true, true, Some(write)) = (settings.plays(Role::Relay), kafka, &write) {
        workers.spawn_relay(&settings, write).await?;
    }
    let commands =
        write.as_ref().map(|write| Arc::new(ShopCommands::new(write.store.clone(), write.keys.clone())));
    if let (true, Some(write), Some(commands)) = (settings.plays(Role::Saga), &write, &commands) {
        workers.spawn_saga(write, commands);
    }
    let Workers { cancel, mut tasks, statuses: workers } = workers;

    let serves_queries = settings.plays(Role::Query);
    // Queries read each projection's active generation (blue/green rebuilds).
    let read_store =
        read_store.map(|store| Arc::new(ActiveGenerations::new(store, &projections)) as Arc<dyn ReadStore>);
    let state = ApiState {
        commands: commands.filter(|_| settings.plays(Role::Command)),
        queries: read_store
            .clone()
            .filter(|_| serves_queries)
            .zip(write.as_ref().map(|write| write.keys.clone()))
            .map(|(store, keys)| ShopQueries::new(store, keys)),
        freshness: read_store
            .clone()
            .filter(|_| serves_queries)
            .map(|store| Freshness::new(store, progress.clone())),
        read_store,
        event_store: write.as_ref().map(|write| write.store.clone()),
        log_ends: match settings.log.kind {
            LogKind::Kafka => Some(LogEnds::Kafka(kafka_config(&settings))),
            LogKind::Embedded => write.as_ref().map(|write| LogEnds::Head(write.store.clone())),
        },
        projections,
        partitions: settings.partitions(),
        live: write.as_ref().filter(|_| serves_queries).map(|write| {
            LiveEvents::new(write.log.clone(), cancel.clone(), &settings.http, &settings.api_keys)
        }),
        telemetry: Arc::new(Telemetry {
            metrics: metrics.clone(),
            roles: settings.roles.clone(),
            workers,
            progress,
            max_lag: settings.readiness.max_lag,
        }),
        access: Arc::new(Access::new(&settings.api_keys)),
        request_timeout: settings.http.request_timeout(),
        contract: Arc::new(crate::contract::asyncapi(&settings)),
        readiness: Arc::default(),
    };
    tasks.spawn(metrics_upkeep(metrics, cancel.clone()));
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listen on {}", settings.listen))?;
    let addr = listener.local_addr().context("read the listening address")?;
    let (http, shutdown) = (settings.http.clone(), cancel.clone());
    tasks.spawn(async move { crate::http::serve(listener, router(state), &http, shutdown).await });
    tracing::info!(%addr, roles = ?settings.roles, write_db = ?settings.write_db.kind, log = ?settings.log.kind,
        read_db = ?settings.read_db.kind, api_keys = ?settings.api_keys.iter().map(|key| &key.name).collect::<Vec<_>>(),
        "shop listening");
    Ok(RunningApp { addr, cancel, tasks })
}

/// Drains the histograms' buffers and drops idle gauges, every 5 s until
/// cancelled.
async fn metrics_upkeep(metrics: Arc<Metrics>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(5)) => metrics.upkeep(),
        }
    }
}

/// Opens the write side and the read store, each if one of the process's
/// roles needs it (and the data folder, if a database is a SQLite file).
async fn open_sides(
    settings: &Settings,
    metrics: &Metrics,
) -> anyhow::Result<(Option<WriteSide>, Option<Arc<dyn ReadStore>>)> {
    let embedded_files = settings.write_db.kind == DbKind::Sqlite || settings.read_db.kind == DbKind::Sqlite;
    if embedded_files {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("create data folder {}", settings.data_dir.display()))?;
    }
    let kafka = settings.log.kind == LogKind::Kafka;
    // A query process opens the write side to read customers' keys (the
    // order queries open personal data with them), to report the head
    // beside the projections' positions (`/api/admin/projections`) and to
    // tail the log for the live event stream (`/api/events/stream`); it
    // never writes an event.
    let needs_write = settings.plays(Role::Command)
        || settings.plays(Role::Query)
        || settings.plays(Role::Saga)
        || (settings.plays(Role::Relay) && kafka)
        || (settings.plays(Role::Projector) && !kafka);
    let needs_read = settings.plays(Role::Projector) || settings.plays(Role::Query);
    let write = match needs_write {
        true => Some(open_write_side_recorded(settings, metrics).await?),
        false => None,
    };
    let read_store = match needs_read {
        true => Some(open_read_store(settings).await?),
        false => None,
    };
    Ok((write, read_store))
}

/// The role workers of the process, as they are started.
struct Workers {
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    /// The relay's and the saga's loops, for `/ready` (projectors show theirs on `progress`).
    statuses: Vec<(Role, Arc<WorkerStatus>)>,
}

impl Workers {
    /// A supervisor per projection, each building and running its generations.
    fn spawn_projectors(
        &mut self,
        settings: &Settings,
        write: Option<&WriteSide>,
        read_store: &Arc<dyn ReadStore>,
        projections: &[Arc<dyn Projection>],
        progress: &Arc<Progress>,
    ) {
        for projection in projections {
            let sources =
                generation_sources(settings, write.map(|write| write.log.clone()), projection.name());
            let supervisor =
                Supervisor::new(projection.clone(), read_store.clone(), sources, progress.clone());
            let cancel = self.cancel.clone();
            self.tasks.spawn(async move { supervisor.run(cancel).await });
        }
    }

    /// The relay, from the event store to the topic, once the topic has the
    /// configured partitions.
    async fn spawn_relay(&mut self, settings: &Settings, write: &WriteSide) -> anyhow::Result<()> {
        let sink = KafkaSink::new(kafka_config(settings))?;
        let topic_partitions = sink.partition_count().await?;
        anyhow::ensure!(
            topic_partitions == Some(settings.log.partitions),
            "topic {} has {topic_partitions:?} partitions, the configuration says {}; run `shop migrate`",
            settings.log.topic,
            settings.log.partitions
        );
        let leases = write.leases.clone().context("the relay needs leases (write_db = postgres)")?;
        let relay = Relay::new(write.log.clone(), Arc::new(sink), leases);
        self.statuses.push((Role::Relay, relay.status()));
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move { relay.run(cancel).await });
        Ok(())
    }

    /// The checkout saga, leased where the write side has leases.
    fn spawn_saga(&mut self, write: &WriteSide, commands: &Arc<ShopCommands>) {
        let saga = ProcessRunner::new(
            Arc::new(CheckoutSaga::new(commands.clone())),
            write.log.clone(),
            write.store.clone(),
        );
        self.statuses.push((Role::Saga, saga.status()));
        let cancel = self.cancel.clone();
        let leases = write.leases.clone();
        self.tasks.spawn(async move {
            match leases {
                Some(leases) => saga.run_leased(leases, cancel).await,
                None => saga.run(cancel).await,
            }
        });
    }
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
