//! The read stores a rebuild writes to: the store of the kind `--store`
//! names, and the empty one of the same kind its baseline writes to.

use std::path::PathBuf;
use std::sync::Arc;

use parallax_cassandra::CassandraReadStore;
use parallax_core::ReadStore;
use parallax_postgres::PgReadStore;
use parallax_sqlite::SqliteReadStore;
use sqlx::PgPool;

use super::baseline::{pg_upsert_limit, read_documents, upsert_limit, Doc, UpsertLimit};
use super::cassandra::{cql_documents, cql_upsert_limit};
use super::{Args, Store, CQL_BATCH_ROWS, CQL_IN_FLIGHT};
use crate::scenarios::Context;
use crate::servers::{ScratchDb, ScratchKeyspace};

/// The read store of a rebuild, and the empty one of the same kind its
/// baseline writes to.
pub(super) enum Views {
    /// SQLite files in the run's data folder.
    Sqlite { path: PathBuf, store: SqliteReadStore, limit_path: PathBuf },
    /// PostgreSQL databases of the run's own.
    Postgres { store: PgReadStore, limit: PgPool, url: String, pool_size: u32 },
    /// Cassandra keyspaces of the run's own.
    Cassandra { store: Arc<CassandraReadStore>, limit: Box<CassandraReadStore>, nodes: String },
}

impl Views {
    /// Opens the read stores of kind `args.store`, in `databases` for
    /// PostgreSQL, in `keyspaces` for Cassandra.
    pub(super) async fn open(
        args: &Args,
        context: &Context,
        databases: &[ScratchDb],
        keyspaces: &[ScratchKeyspace],
    ) -> anyhow::Result<Self> {
        Ok(match args.store {
            Store::Sqlite => Views::Sqlite {
                path: context.data_dir.join("views.db"),
                store: SqliteReadStore::open(&context.data_dir.join("views.db"))?,
                limit_path: context.data_dir.join("limit-views.db"),
            },
            Store::Postgres => {
                let [views, limit] = databases else { anyhow::bail!("two databases") };
                let pool_size = args.postgres.pool_size;
                let pool = parallax_postgres::pool(&views.url, pool_size).await?;
                parallax_postgres::migrate_read(&pool).await?;
                let limit = parallax_postgres::pool(&limit.url, pool_size).await?;
                parallax_postgres::migrate_read(&limit).await?;
                Views::Postgres { store: PgReadStore::new(pool), limit, url: views.url.clone(), pool_size }
            }
            Store::Cassandra => {
                let [views, limit] = keyspaces else { anyhow::bail!("two keyspaces") };
                Views::Cassandra {
                    store: Arc::new(views.connect().await?),
                    limit: Box::new(limit.connect().await?),
                    nodes: args.cassandra.cassandra_nodes.clone(),
                }
            }
        })
    }

    pub(super) fn read_store(&self) -> Arc<dyn ReadStore> {
        match self {
            Views::Sqlite { store, .. } => Arc::new(store.clone()),
            Views::Postgres { store, .. } => Arc::new(store.clone()),
            Views::Cassandra { store, .. } => store.clone(),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Views::Sqlite { .. } => "SQLite WAL, synchronous=NORMAL".to_owned(),
            Views::Postgres { url, pool_size, .. } => format!(
                "PgReadStore on {} (a fresh database), durable commit per batch, a pool of {pool_size} \
                 connections",
                parallax_postgres::redact(url)
            ),
            Views::Cassandra { store, nodes, .. } => format!(
                "CassandraReadStore on {nodes} (a fresh keyspace, {}, replication factor 1, LOCAL_QUORUM; a table \
                 per view): per commit a serial read of the checkpoint, the rows in logged batches of \
                 {CQL_BATCH_ROWS} written USING TIMESTAMP <position> ({CQL_IN_FLIGHT} in flight), the rows of \
                 shared views (sales) by compare-and-set, one conditional batch per partition, then the checkpoint by compare-and-set",
                store.keyspace()
            ),
        }
    }

    /// Every document of the rebuilt views.
    pub(super) async fn documents(&self) -> anyhow::Result<Vec<Doc>> {
        match self {
            Views::Sqlite { path, .. } => read_documents(path),
            Views::Postgres { store, .. } => {
                let rows: Vec<(String, String, String, String)> =
                    sqlx::query_as("SELECT view, partition, clustering, body::text FROM documents")
                        .fetch_all(store.pool())
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(view, partition, clustering, body)| Doc { view, partition, clustering, body })
                    .collect())
            }
            Views::Cassandra { store, .. } => cql_documents(store).await,
        }
    }

    /// Upserts `count` of `docs`, `batch` per transaction, over `connections`
    /// (SQLite: one thread), into the empty store of the same kind (Cassandra:
    /// in the store's own write shape, then in others).
    pub(super) async fn upsert_limit(
        &self,
        docs: Vec<Doc>,
        count: u64,
        batch: usize,
        connections: usize,
    ) -> anyhow::Result<UpsertLimit> {
        match self {
            Views::Sqlite { limit_path, .. } => {
                let path = limit_path.clone();
                tokio::task::spawn_blocking(move || upsert_limit(&path, &docs, count, batch)).await?
            }
            Views::Postgres { limit, .. } => pg_upsert_limit(limit, docs, count, batch, connections).await,
            Views::Cassandra { limit, .. } => cql_upsert_limit(limit, docs, count).await,
        }
    }

    /// How the baseline wrote.
    pub(super) fn describe_limit(&self, batch: usize, connections: usize) -> String {
        match self {
            Views::Sqlite { .. } => format!(
                "with the read store's INSERT … ON CONFLICT statement, {batch} per transaction (the documents per \
                 commit the projectors achieved), one thread, into a fresh file with the read store's schema, \
                 WAL, synchronous=NORMAL"
            ),
            Views::Postgres { .. } => format!(
                "with the read store's INSERT … SELECT FROM unnest … ON CONFLICT DO UPDATE statement, {batch} per \
                 transaction (the documents per commit the projectors achieved), committed durably, over \
                 {connections} connections (one per projector committing at a time), each cycling through its own \
                 share of the documents, into a fresh database with the read store's migration"
            ),
            Views::Cassandra { limit, .. } => format!(
                "with the read store's own timestamped write (UPDATE … USING TIMESTAMP ? SET body = ?, rev = ?, \
                 marks = marks + ? WHERE p = ? AND c = ?, prepared, LOCAL_QUORUM), every row plainly (the store \
                 writes sales rows by compare-and-set), into a fresh keyspace with the read store's tables ({}), \
                 emptied before each line; the first line is the store's own shape for a commit's rows (the \
                 projectors committed {batch} documents per batch on average, {connections} projectors at a time)",
                limit.keyspace()
            ),
        }
    }

    pub(super) async fn close(self) {
        if let Views::Postgres { store, limit, .. } = self {
            store.pool().close().await;
            limit.close().await;
        }
    }
}
