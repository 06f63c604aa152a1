//! The baseline: plain batched upserts of as many documents as the rebuild
//! wrote, into an empty store of the same kind (SQLite, PostgreSQL; the
//! Cassandra writes are in [`super::cassandra`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{params, Connection};
use serde::Serialize;
use sqlx::PgPool;

use super::READ_STORE_SCHEMA;

/// A stored document.
#[derive(Debug, Clone)]
pub(super) struct Doc {
    pub(super) view: String,
    pub(super) partition: String,
    pub(super) clustering: String,
    pub(super) body: String,
}

pub(super) fn read_documents(path: &Path) -> anyhow::Result<Vec<Doc>> {
    let conn = Connection::open(path)?;
    let mut statement = conn.prepare("SELECT view, partition, clustering, body FROM documents")?;
    let rows = statement.query_map([], |row| {
        Ok(Doc { view: row.get(0)?, partition: row.get(1)?, clustering: row.get(2)?, body: row.get(3)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What the plain upserts did.
#[derive(Debug, Clone, Serialize)]
pub(super) struct UpsertLimit {
    /// Distinct documents cycled through.
    pub(super) distinct: u64,
    /// Upserts per second (the baseline).
    pub(super) per_sec: f64,
    /// How they were written.
    pub(super) shape: String,
    /// The same upserts written in other shapes, for comparison.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) others: Vec<LimitLine>,
}

impl UpsertLimit {
    /// The baseline's line, then the others.
    pub(super) fn lines(&self) -> Vec<LimitLine> {
        let first = LimitLine { shape: self.shape.clone(), per_sec: self.per_sec };
        std::iter::once(first).chain(self.others.iter().cloned()).collect()
    }
}

/// Upserts written in one shape.
#[derive(Debug, Clone, Serialize)]
pub(super) struct LimitLine {
    pub(super) shape: String,
    pub(super) per_sec: f64,
}

/// Upserts `count` documents (cycling through `docs`), `batch` per
/// transaction, into a fresh read store file at `path`, by one thread.
pub(super) fn upsert_limit(
    path: &Path,
    docs: &[Doc],
    count: u64,
    batch: usize,
) -> anyhow::Result<UpsertLimit> {
    anyhow::ensure!(!docs.is_empty(), "the rebuild wrote no documents");
    let conn = Connection::open(path)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "{} cannot use WAL", path.display());
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(READ_STORE_SCHEMA)?;
    let start = Instant::now();
    let mut done = 0u64;
    while done < count {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut upsert = conn.prepare_cached(
            "INSERT INTO documents (view, partition, clustering, body, revision) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (view, partition, clustering) \
             DO UPDATE SET body = excluded.body, revision = excluded.revision",
        )?;
        for _ in 0..batch.min((count - done) as usize) {
            let doc = &docs[(done % docs.len() as u64) as usize];
            upsert.execute(params![doc.view, doc.partition, doc.clustering, doc.body, done as i64])?;
            done += 1;
        }
        conn.execute_batch("COMMIT")?;
    }
    Ok(UpsertLimit {
        distinct: docs.len() as u64,
        per_sec: count as f64 / start.elapsed().as_secs_f64(),
        shape: format!("{batch} per transaction, one thread"),
        others: Vec::new(),
    })
}

/// Upserts `count` documents, `batch` per transaction, over `connections`
/// connections to the empty read store database of `pool`: connection `i`
/// cycles through the `i`-th share of `docs`, and a batch holds each of its
/// documents once (one statement cannot update a row twice).
pub(super) async fn pg_upsert_limit(
    pool: &PgPool,
    docs: Vec<Doc>,
    count: u64,
    batch: usize,
    connections: usize,
) -> anyhow::Result<UpsertLimit> {
    anyhow::ensure!(!docs.is_empty(), "the rebuild wrote no documents");
    let distinct = docs.len() as u64;
    let connections = connections.clamp(1, docs.len());
    let share = docs.len().div_ceil(connections);
    let docs = Arc::new(docs);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..connections {
        let (pool, docs) = (pool.clone(), docs.clone());
        let mine = (i * share).min(docs.len())..((i + 1) * share).min(docs.len());
        let todo = count / connections as u64 + u64::from((i as u64) < count % connections as u64);
        tasks.spawn(async move {
            let (len, mut done) = (mine.len(), 0u64);
            while done < todo && len > 0 {
                let n = batch.min(len).min(usize::try_from(todo - done).unwrap_or(usize::MAX));
                let at = |k: usize| &docs[mine.start + (done as usize + k) % len];
                let views: Vec<&str> = (0..n).map(|k| at(k).view.as_str()).collect();
                let partitions: Vec<&str> = (0..n).map(|k| at(k).partition.as_str()).collect();
                let clusterings: Vec<&str> = (0..n).map(|k| at(k).clustering.as_str()).collect();
                let bodies: Vec<&str> = (0..n).map(|k| at(k).body.as_str()).collect();
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO documents (view, partition, clustering, body, revision) \
                     SELECT v, p, c, b::jsonb, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) \
                     AS r(v, p, c, b) ON CONFLICT (view, partition, clustering) \
                     DO UPDATE SET body = excluded.body, revision = excluded.revision",
                )
                .bind(&views)
                .bind(&partitions)
                .bind(&clusterings)
                .bind(&bodies)
                .bind(i64::try_from(done).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                done += n as u64;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(UpsertLimit {
        distinct,
        per_sec: count as f64 / start.elapsed().as_secs_f64(),
        shape: format!("{batch} per transaction, {connections} connections"),
        others: Vec::new(),
    })
}
