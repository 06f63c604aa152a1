//! The shop in this process, wired as `shop serve` wires the chosen
//! shape, and what the shape needs from outside the process.

use std::sync::Arc;
use std::time::Duration;

use parallax_core::{EventLog, EventStore, KeyStore, Leases, Partition, ReadStore};
use parallax_kafka::{KafkaSink, KafkaSource};
use parallax_postgres::{PgEventStore, PgKeyStore, PgLeases, PgReadStore, PgStoreOptions};
use parallax_runtime::{CancellationToken, Freshness, ProcessRunner, Progress, Projector, Relay};
use parallax_sqlite::{SqliteEventStore, SqliteKeyStore, SqliteReadStore};
use shop::commands::ShopCommands;
use shop::saga::CheckoutSaga;
use shop_read::queries::answered_by;
use shop_read::ShopQueries;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Via;
use crate::probes::{Counted, Published};
use crate::scenarios::Context;
use crate::servers::{self, RunId, ScratchDb, ScratchKeyspace, ScratchTopic};

/// The shop in this process, wired as `shop serve` wires the chosen shape.
pub(crate) struct Shop {
    pub(crate) events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    /// The read store as the projectors see it: counting their batches.
    pub(crate) projected: Arc<Counted>,
    /// Partitions of the log (the embedded log has one).
    pub(crate) partitions: u32,
    /// What the relay published to each partition (over Kafka).
    published: Option<Arc<Published>>,
    /// The carts projection's checkpoint in each partition, as the watcher last read them.
    pub(crate) carts_at: watch::Receiver<Vec<u64>>,
    pub(crate) commands: Arc<ShopCommands>,
    pub(crate) freshness: Freshness,
    pub(crate) queries: ShopQueries,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

/// What the shape needs from outside the process: nothing embedded; over
/// Kafka, databases, a topic and, for Cassandra, a keyspace of the run's own.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) databases: Vec<ScratchDb>,
    pub(crate) topic: Option<ScratchTopic>,
    pub(crate) keyspaces: Vec<ScratchKeyspace>,
}

impl Scratch {
    pub(crate) async fn remove(self) {
        servers::clean_up(self.databases, self.topic).await;
        servers::drop_keyspaces(self.keyspaces).await;
    }
}

impl Shop {
    /// The embedded shape: SQLite files in the run's data folder.
    pub(crate) fn embedded(context: &Context, poll: Duration) -> anyhow::Result<Self> {
        let events = SqliteEventStore::open(&context.data_dir.join("events.db"))?;
        let keys: Arc<dyn KeyStore> = Arc::new(SqliteKeyStore::open(&context.data_dir.join("events.db"))?);
        let read: Arc<dyn ReadStore> = Arc::new(SqliteReadStore::open(&context.data_dir.join("views.db"))?);
        let projected = Arc::new(Counted::new(read.clone()));
        let log: Arc<dyn EventLog> = Arc::new(events.log());
        let store: Arc<dyn EventStore> = Arc::new(events);
        let progress = Arc::new(Progress::default());
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for projection in shop_read::all_projections() {
            let projector =
                Projector::new(projection, log.clone(), projected.clone()).with_progress(progress.clone());
            let cancel = cancel.clone();
            tasks.spawn(async move { projector.run(cancel).await });
        }
        let commands = Arc::new(ShopCommands::new(store.clone(), keys.clone()));
        let saga = ProcessRunner::new(Arc::new(CheckoutSaga::new(commands.clone())), log, store.clone());
        {
            let cancel = cancel.clone();
            tasks.spawn(async move { saga.run(cancel).await });
        }
        let parts = Parts {
            events: store,
            read,
            projected,
            partitions: 1,
            published: None,
            commands,
            progress,
            keys,
        };
        Ok(Self::finish(parts, cancel, tasks, poll))
    }

    /// The distributed shape's path in one process, on `scratch`'s databases
    /// (events, and views unless in Cassandra), topic and keyspace (views in Cassandra).
    /// Without `saga`, no checkout saga runs (orders stay as checked out).
    pub(crate) async fn over_kafka(
        (via, pool_size, saga): (Via, u32, bool),
        scratch: &Scratch,
        run: &RunId,
        poll: Duration,
    ) -> anyhow::Result<Self> {
        let (Some(events_db), Some(topic)) = (scratch.databases.first(), &scratch.topic) else {
            anyhow::bail!("an events database and a topic")
        };
        let write_pool = parallax_postgres::pool(&events_db.url, pool_size).await?;
        parallax_postgres::migrate_write(&write_pool).await?;
        let read: Arc<dyn ReadStore> = match (via, scratch.databases.get(1), scratch.keyspaces.first()) {
            (Via::Cassandra, _, Some(keyspace)) => Arc::new(keyspace.connect().await?),
            (_, Some(views_db), _) => {
                let read_pool = parallax_postgres::pool(&views_db.url, pool_size).await?;
                parallax_postgres::migrate_read(&read_pool).await?;
                Arc::new(PgReadStore::new(read_pool))
            }
            _ => anyhow::bail!("a views database or keyspace"),
        };
        let events = PgEventStore::new(write_pool.clone(), PgStoreOptions::default());
        let log: Arc<dyn EventLog> = Arc::new(events.log());
        let store: Arc<dyn EventStore> = Arc::new(events);
        let keys: Arc<dyn KeyStore> = Arc::new(PgKeyStore::new(write_pool.clone()));
        let leases: Arc<dyn Leases> = Arc::new(PgLeases::new(write_pool));
        let projected = Arc::new(Counted::new(read.clone()));
        let partitions = topic.config.partitions;
        let published = Arc::new(Published::new(Arc::new(KafkaSink::new(topic.config.clone())?), partitions));
        let progress = Arc::new(Progress::default());
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let relay = Relay::new(log.clone(), published.clone(), leases.clone());
        {
            let cancel = cancel.clone();
            tasks.spawn(async move { relay.run(cancel).await });
        }
        for projection in shop_read::all_projections() {
            let group = format!("parallax-bench-{run}.{}", projection.name());
            let source = Box::new(KafkaSource::new(&topic.config, &group)?);
            let projector =
                Projector::from_source(projection, source, projected.clone()).with_progress(progress.clone());
            let cancel = cancel.clone();
            tasks.spawn(async move { projector.run(cancel).await });
        }
        let commands = Arc::new(ShopCommands::new(store.clone(), keys.clone()));
        if saga {
            let saga = ProcessRunner::new(Arc::new(CheckoutSaga::new(commands.clone())), log, store.clone());
            let cancel = cancel.clone();
            tasks.spawn(async move { saga.run_leased(leases, cancel).await });
        }
        let parts = Parts {
            events: store,
            read,
            projected,
            partitions,
            published: Some(published),
            commands,
            progress,
            keys,
        };
        Ok(Self::finish(parts, cancel, tasks, poll))
    }

    /// Starts the `poll` watcher and puts the shop together.
    fn finish(parts: Parts, cancel: CancellationToken, mut tasks: JoinSet<()>, poll: Duration) -> Self {
        let Parts { events, read, projected, partitions, published, commands, progress, keys } = parts;
        let (carts_tx, carts_at) = watch::channel(vec![0; partitions as usize]);
        {
            let (read, cancel) = (read.clone(), cancel.clone());
            tasks.spawn(async move {
                while !cancel.is_cancelled() {
                    match read.checkpoints(answered_by::CARTS).await {
                        Ok(checkpoints) => {
                            carts_tx.send_if_modified(|seen| {
                                let mut moved = false;
                                for (partition, at) in checkpoints {
                                    if let Some(seen) = seen.get_mut(partition as usize) {
                                        moved |= std::mem::replace(seen, at.position) != at.position;
                                    }
                                }
                                moved
                            });
                        }
                        Err(error) => eprintln!("  the watcher could not read the checkpoints: {error}"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = cancel.cancelled() => {}
                    }
                }
            });
        }
        Self {
            events,
            carts_at,
            freshness: Freshness::new(read.clone(), progress),
            queries: ShopQueries::new(read.clone(), keys),
            read,
            projected,
            partitions,
            published,
            commands,
            cancel,
            tasks,
        }
    }

    /// Waits until every projection has absorbed the event store's head —
    /// over Kafka: until the relay has published it, then until every
    /// projection has absorbed the last event published to each partition;
    /// returns how long that took.
    pub(crate) async fn caught_up(&self) -> anyhow::Result<Duration> {
        self.caught_up_within(Duration::from_secs(300)).await
    }

    /// [`Shop::caught_up`], failing after `timeout`.
    pub(crate) async fn caught_up_within(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let began = Instant::now();
        let head = self.events.head().await?;
        let deadline = Instant::now() + timeout;
        let targets = match &self.published {
            None => vec![head],
            Some(published) => {
                while published.furthest() < head {
                    anyhow::ensure!(Instant::now() < deadline, "the relay did not publish up to {head}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                published.last()
            }
        };
        for projection in shop_read::all_projections() {
            for (partition, &target) in targets.iter().enumerate() {
                let partition = Partition::try_from(partition)?;
                while self.read.checkpoint(projection.name(), partition).await?.position < target {
                    anyhow::ensure!(Instant::now() < deadline, "{} did not catch up", projection.name());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        Ok(began.elapsed())
    }

    pub(crate) async fn stop(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// What a shape's wiring hands to [`Shop::finish`].
struct Parts {
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    projected: Arc<Counted>,
    partitions: u32,
    published: Option<Arc<Published>>,
    commands: Arc<ShopCommands>,
    progress: Arc<Progress>,
    keys: Arc<dyn KeyStore>,
}
