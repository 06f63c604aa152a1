//! ⑥ The read store on SQLite: views as JSON documents, in a file of their own.
//!
//! All views share one `documents` table keyed by (view, partition,
//! clustering), `WITHOUT ROWID`, so a partition's documents are stored in
//! clustering order. The order is SQLite's default `BINARY` collation, which
//! compares the UTF-8 bytes: the byte order the port specifies.
//!
//! [`ViewCommitter::commit`] runs in one `BEGIN IMMEDIATE` transaction on the one
//! write connection: it reads the projection's checkpoints and the revisions
//! of the documents the batch read, refuses the batch (writing nothing) with
//! [`ReadStoreError::CheckpointMoved`] or [`ReadStoreError::Conflict`] unless
//! all are still as the batch saw them, then applies the writes in order
//! (each with a fresh revision), stores the dead letters and moves the
//! checkpoints. View writes and checkpoints commit together or not at all, so
//! no event's effect is applied twice. The dead letters a batch resolves are
//! deleted first, in the same transaction: one already gone refuses the batch
//! ([`ReadStoreError::DeadLetterMissing`]).
//!
//! Reads run on separate connections; in WAL mode they see the last commit
//! and never wait behind one. A point read (a document, a projection's
//! checkpoints) or a page of up to `MAX_PAGE_NOW` documents runs on the
//! calling thread: bounded work that costs less than a handoff to a blocking
//! thread. Every other SQLite call runs in `spawn_blocking`.
//!
//! Durability: the file runs with `synchronous=NORMAL`. A process crash loses
//! nothing committed; a power loss may lose the last commits, and with them
//! the checkpoint that covers them, so the projector re-applies those events
//! from the event store. Views can always be rebuilt from the log.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use parallax_core::read_store::{fresh_revision, LowerBound};
use parallax_core::{
    Checkpoint, ClusteringRange, DeadLetter, DocKey, Document, Page, Partition, ReadStoreError, Revision,
    ViewAdmin, ViewBatch, ViewCommitter, ViewReader, ViewWrite,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::conn::{clamp_i64, json_at, micros, open_writer, u64_at, uuid_at, ReadPool};

const SCHEMA: &str = include_str!("sql/read_store.sql");

/// Pages up to this many documents are read on the calling thread (a
/// query's page); longer scans go to a blocking thread.
const MAX_PAGE_NOW: usize = 1_000;

/// The read store in one SQLite file. Cheap to clone.
#[derive(Clone)]
pub struct SqliteReadStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The one write connection; commits take turns on it.
    writer: Mutex<Connection>,
    reads: Arc<ReadPool>,
}

impl std::fmt::Debug for SqliteReadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReadStore").finish_non_exhaustive()
    }
}

impl SqliteReadStore {
    /// Opens (creating if needed) the read store at `path`.
    ///
    /// A file written by an older layout is emptied first: views are derived
    /// data, and the projectors rebuild them from the event store.
    pub fn open(path: &Path) -> Result<Self, ReadStoreError> {
        drop_older_layout(path)?;
        let writer: Connection = open_writer(path, "NORMAL", SCHEMA)?;
        Ok(Self {
            inner: Arc::new(Inner { writer: Mutex::new(writer), reads: Arc::new(ReadPool::new(path)) }),
        })
    }

    /// One page of `partition`, each body read by `body`: on the calling
    /// thread when the page is small enough, else on a blocking one.
    async fn page<B: Send + 'static>(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
        body: fn(&rusqlite::Row<'_>, usize) -> rusqlite::Result<B>,
    ) -> Result<Page<B>, ReadStoreError> {
        if limit == 0 {
            // Nothing asked for: no documents, and no cursor to go on from.
            return Ok(Page { documents: Vec::new(), next_cursor: None });
        }
        if limit > MAX_PAGE_NOW {
            let (view, partition, range) = (view.to_owned(), partition.to_owned(), range.clone());
            return self
                .inner
                .reads
                .read(move |conn| scan(conn, &view, &partition, &range, limit, body))
                .await;
        }
        self.inner.reads.read_now(|conn| scan(conn, view, partition, range, limit, body))
    }
}

#[async_trait]
impl ViewReader for SqliteReadStore {
    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(serde_json::Value, Revision)>, ReadStoreError> {
        let keys = [(view.to_owned(), key.clone())];
        self.inner.reads.read_now(|conn| {
            documents(conn, &keys).map(|mut found| found.pop().flatten()).map_err(|e| {
                ReadStoreError::store(format!("get {view}/{}/{}", key.partition, key.clustering), e)
            })
        })
    }

    async fn get_many(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<(serde_json::Value, Revision)>>, ReadStoreError> {
        let keys = keys.to_vec();
        self.inner
            .reads
            .read(move |conn| {
                documents(conn, &keys).map_err(|e| ReadStoreError::store("get a batch's documents", e))
            })
            .await
    }

    async fn scan(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page, ReadStoreError> {
        self.page(view, partition, range, limit, json_at).await
    }

    async fn get_json(&self, view: &str, key: &DocKey) -> Result<Option<String>, ReadStoreError> {
        self.inner.reads.read_now(|conn| {
            conn.prepare_cached(
                "SELECT body FROM documents WHERE view = ?1 AND partition = ?2 AND clustering = ?3",
            )
            .and_then(|mut statement| {
                statement.query_row(params![view, key.partition, key.clustering], |row| row.get(0)).optional()
            })
            .map_err(|e| ReadStoreError::store(format!("get {view}/{}/{}", key.partition, key.clustering), e))
        })
    }

    async fn scan_json(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page<String>, ReadStoreError> {
        self.page(view, partition, range, limit, text_at).await
    }
}

#[async_trait]
impl ViewCommitter for SqliteReadStore {
    fn commits_atomically(&self) -> bool {
        true
    }

    async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A commit that panicked was rolled back when its transaction dropped.
            let mut conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            commit(&mut conn, &batch)
        })
        .await
        .map_err(|e| ReadStoreError::store("run a commit off the async runtime", e))?
    }

    async fn checkpoint(&self, projection: &str, partition: Partition) -> Result<Checkpoint, ReadStoreError> {
        self.inner.reads.read_now(|conn| {
            checkpoint(conn, projection, partition)
                .map_err(|e| ReadStoreError::store(format!("load the checkpoint of {projection}"), e))
        })
    }

    async fn checkpoints(&self, projection: &str) -> Result<Vec<(Partition, Checkpoint)>, ReadStoreError> {
        self.inner.reads.read_now(|conn| {
            checkpoints(conn, projection)
                .map_err(|e| ReadStoreError::store(format!("load the checkpoints of {projection}"), e))
        })
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, ReadStoreError> {
        let projection = projection.to_owned();
        self.inner
            .reads
            .read(move |conn| {
                dead_letters(conn, &projection)
                    .map_err(|e| ReadStoreError::store(format!("list the dead letters of {projection}"), e))
            })
            .await
    }
}

#[async_trait]
impl ViewAdmin for SqliteReadStore {
    async fn partitions(&self, view: &str) -> Result<Vec<String>, ReadStoreError> {
        let view = view.to_owned();
        self.inner
            .reads
            .read(move |conn| {
                let listed = || -> rusqlite::Result<Vec<String>> {
                    let mut statement = conn.prepare_cached(
                        "SELECT DISTINCT partition FROM documents WHERE view = ?1 ORDER BY partition",
                    )?;
                    let partitions = statement.query_map(params![view], |row| row.get(0))?;
                    partitions.collect()
                };
                listed().map_err(|e| ReadStoreError::store(format!("list the partitions of {view}"), e))
            })
            .await
    }

    async fn drop_projection(&self, projection: &str, views: &[String]) -> Result<(), ReadStoreError> {
        let inner = Arc::clone(&self.inner);
        let (projection, views) = (projection.to_owned(), views.to_vec());
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let mut dropping = || -> rusqlite::Result<()> {
                let tx = conn.transaction()?;
                for view in &views {
                    tx.execute("DELETE FROM documents WHERE view = ?1", params![view])?;
                }
                tx.execute("DELETE FROM checkpoints WHERE projection = ?1", params![projection])?;
                tx.execute("DELETE FROM dead_letters WHERE projection = ?1", params![projection])?;
                tx.commit()
            };
            dropping().map_err(|e| ReadStoreError::store(format!("drop projection {projection}"), e))
        })
        .await
        .map_err(|e| ReadStoreError::store("run a drop off the async runtime", e))?
    }
}

/// One page of `partition` (the read behind [`ReadStore::scan`] and
/// [`ReadStore::scan_json`]), each body read by `body`.
fn scan<B>(
    conn: &Connection,
    view: &str,
    partition: &str,
    range: &ClusteringRange,
    limit: usize,
    body: fn(&rusqlite::Row<'_>, usize) -> rusqlite::Result<B>,
) -> Result<Page<B>, ReadStoreError> {
    let lower = match range.lower_bound() {
        Some(LowerBound::Inclusive(key)) => Some((">=", key)),
        Some(LowerBound::Exclusive(key)) => Some((">", key)),
        None => None,
    };
    let mut sql = String::from("SELECT clustering, body FROM documents WHERE view = ?1 AND partition = ?2");
    let mut bounds: Vec<&str> = Vec::new();
    if let Some((op, key)) = lower {
        bounds.push(key);
        sql.push_str(&format!(" AND clustering {op} ?{}", bounds.len() + 2));
    }
    if let Some(to) = &range.to {
        bounds.push(to.as_str());
        sql.push_str(&format!(" AND clustering < ?{}", bounds.len() + 2));
    }
    sql.push_str(&format!(" ORDER BY clustering LIMIT ?{}", bounds.len() + 3));

    let read = || -> rusqlite::Result<Vec<Document<B>>> {
        let mut statement = conn.prepare_cached(&sql)?;
        let mut parameters: Vec<&dyn rusqlite::ToSql> = vec![&view, &partition];
        parameters.extend(bounds.iter().map(|b| b as &dyn rusqlite::ToSql));
        // One row more than asked tells whether anything follows.
        let fetch = clamp_i64(limit.saturating_add(1));
        parameters.push(&fetch);
        let rows = statement.query_map(parameters.as_slice(), |row| {
            Ok(Document { key: DocKey::new(partition, row.get::<_, String>(0)?), body: body(row, 1)? })
        })?;
        rows.collect()
    };
    let documents = read().map_err(|e| ReadStoreError::store(format!("scan {view}/{partition}"), e))?;
    Ok(Page::from_one_more(documents, limit))
}

/// A body column as the JSON text it is stored as.
fn text_at(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<String> {
    row.get(idx)
}

/// The documents at `keys`, with their revisions, in the order of `keys`.
type Found = Option<(serde_json::Value, Revision)>;

fn documents(conn: &Connection, keys: &[(String, DocKey)]) -> rusqlite::Result<Vec<Found>> {
    let mut statement = conn.prepare_cached(
        "SELECT body, revision FROM documents WHERE view = ?1 AND partition = ?2 AND clustering = ?3",
    )?;
    keys.iter()
        .map(|(view, key)| {
            statement
                .query_row(params![view, key.partition, key.clustering], |row| {
                    Ok((json_at(row, 0)?, u64_at(row, 1)?))
                })
                .optional()
        })
        .collect()
}

/// Empties a read store file whose layout predates the current one.
fn drop_older_layout(path: &Path) -> Result<(), ReadStoreError> {
    if !path.exists() {
        return Ok(());
    }
    let failed = |e| ReadStoreError::store(format!("check the layout of {}", path.display()), e);
    let conn = Connection::open(path).map_err(failed)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(failed)?;
    if version < 2 {
        tracing::warn!(path = %path.display(), "read store has an older layout; rebuilding the views");
        conn.execute_batch(
            "DROP TABLE IF EXISTS documents; DROP TABLE IF EXISTS checkpoints; DROP TABLE IF EXISTS dead_letters;",
        )
        .map_err(failed)?;
    }
    Ok(())
}

fn checkpoint_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint { position: u64_at(row, first)?, offset: u64_at(row, first + 1)? })
}

fn checkpoint(conn: &Connection, projection: &str, partition: Partition) -> rusqlite::Result<Checkpoint> {
    let mut statement = conn.prepare_cached(
        "SELECT position, source_offset FROM checkpoints WHERE projection = ?1 AND source_partition = ?2",
    )?;
    Ok(statement
        .query_row(params![projection, partition], |row| checkpoint_at(row, 0))
        .optional()?
        .unwrap_or_default())
}

fn checkpoints(conn: &Connection, projection: &str) -> rusqlite::Result<Vec<(Partition, Checkpoint)>> {
    let mut statement = conn.prepare_cached(
        "SELECT source_partition, position, source_offset FROM checkpoints \
         WHERE projection = ?1 ORDER BY source_partition",
    )?;
    let rows = statement.query_map([projection], |row| Ok((row.get(0)?, checkpoint_at(row, 1)?)))?;
    rows.collect()
}

fn revision(conn: &Connection, view: &str, key: &DocKey) -> rusqlite::Result<Revision> {
    let mut statement = conn.prepare_cached(
        "SELECT revision FROM documents WHERE view = ?1 AND partition = ?2 AND clustering = ?3",
    )?;
    Ok(statement
        .query_row(params![view, key.partition, key.clustering], |row| u64_at(row, 0))
        .optional()?
        .unwrap_or(0))
}

fn dead_letters(conn: &Connection, projection: &str) -> rusqlite::Result<Vec<DeadLetter>> {
    let mut statement = conn.prepare_cached(
        "SELECT projection, position, event_id, event_type, error FROM dead_letters \
         WHERE projection = ?1 ORDER BY position, rowid",
    )?;
    let rows = statement.query_map([projection], |row| {
        Ok(DeadLetter {
            projection: row.get(0)?,
            position: u64_at(row, 1)?,
            event_id: uuid_at(row, 2)?,
            event_type: row.get(3)?,
            error: row.get(4)?,
        })
    })?;
    rows.collect()
}

/// Commits a batch in one immediate transaction (ARCHITECTURE.md invariant
/// 8): the guards first, then the writes; a refusal rolls back.
fn commit(conn: &mut Connection, batch: &ViewBatch) -> Result<(), ReadStoreError> {
    let projection = &batch.projection;
    let failed = |e| ReadStoreError::store(format!("commit a batch of {projection}"), e);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(failed)?;
    // Dropping `tx` on a refusal rolls back; nothing was written.
    check_guards(&tx, batch)?;
    write_documents(&tx, batch)?;
    record_dead_letters(&tx, batch)?;
    move_checkpoints(&tx, batch)?;
    tx.commit().map_err(failed)
}

/// Refuses the batch unless every checkpoint it moves is where it started,
/// every dead letter it resolves is still there (removed here), and every
/// document it read is at the revision it read.
fn check_guards(tx: &Connection, batch: &ViewBatch) -> Result<(), ReadStoreError> {
    let projection = &batch.projection;
    let failed = |e| ReadStoreError::store(format!("commit a batch of {projection}"), e);
    for movement in &batch.checkpoints {
        let actual = checkpoint(tx, projection, movement.partition).map_err(failed)?;
        if actual != movement.from {
            return Err(ReadStoreError::CheckpointMoved {
                projection: projection.clone(),
                partition: movement.partition,
                expected: movement.from.position,
                actual: actual.position,
            });
        }
    }
    for &position in &batch.resolved_dead_letters {
        let removed = tx
            .prepare_cached("DELETE FROM dead_letters WHERE projection = ?1 AND position = ?2")
            .and_then(|mut statement| statement.execute(params![projection, clamp_i64(position)]))
            .map_err(failed)?;
        if removed == 0 {
            return Err(ReadStoreError::DeadLetterMissing { projection: projection.clone(), position });
        }
    }
    for read in &batch.reads {
        if revision(tx, &read.view, &read.key).map_err(failed)? != read.revision {
            return Err(ReadStoreError::Conflict {
                view: read.view.clone(),
                partition: read.key.partition.clone(),
                clustering: read.key.clustering.clone(),
            });
        }
    }
    Ok(())
}

/// The batch's puts and deletes, in order, all at one fresh revision.
fn write_documents(tx: &Connection, batch: &ViewBatch) -> Result<(), ReadStoreError> {
    let failed = |e| ReadStoreError::store(format!("commit a batch of {}", batch.projection), e);
    let revision = clamp_i64(fresh_revision());
    for write in &batch.writes {
        match write {
            ViewWrite::Put { view, key, body, .. } => {
                let body = serde_json::to_string(body).map_err(|e| {
                    ReadStoreError::store(format!("encode {view}/{}/{}", key.partition, key.clustering), e)
                })?;
                tx.prepare_cached(
                    "INSERT INTO documents (view, partition, clustering, body, revision) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (view, partition, clustering) \
                     DO UPDATE SET body = excluded.body, revision = excluded.revision",
                )
                .and_then(|mut statement| {
                    statement.execute(params![view, key.partition, key.clustering, body, revision])
                })
                .map_err(failed)?;
            }
            ViewWrite::Delete { view, key, .. } => {
                tx.prepare_cached(
                    "DELETE FROM documents WHERE view = ?1 AND partition = ?2 AND clustering = ?3",
                )
                .and_then(|mut statement| statement.execute(params![view, key.partition, key.clustering]))
                .map_err(failed)?;
            }
        }
    }
    Ok(())
}

fn record_dead_letters(tx: &Connection, batch: &ViewBatch) -> Result<(), ReadStoreError> {
    let failed = |e| ReadStoreError::store(format!("commit a batch of {}", batch.projection), e);
    let now = micros(chrono::Utc::now());
    for letter in &batch.dead_letters {
        tx.prepare_cached(
            "INSERT INTO dead_letters (projection, position, event_id, event_type, error, recorded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                letter.projection,
                clamp_i64(letter.position),
                letter.event_id.hyphenated().to_string(),
                letter.event_type,
                letter.error,
                now
            ])
        })
        .map_err(failed)?;
    }
    Ok(())
}

fn move_checkpoints(tx: &Connection, batch: &ViewBatch) -> Result<(), ReadStoreError> {
    let failed = |e| ReadStoreError::store(format!("commit a batch of {}", batch.projection), e);
    for movement in &batch.checkpoints {
        tx.prepare_cached(
            "INSERT INTO checkpoints (projection, source_partition, position, source_offset) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (projection, source_partition) \
             DO UPDATE SET position = excluded.position, source_offset = excluded.source_offset",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                batch.projection,
                movement.partition,
                clamp_i64(movement.to.position),
                clamp_i64(movement.to.offset)
            ])
        })
        .map_err(failed)?;
    }
    Ok(())
}
