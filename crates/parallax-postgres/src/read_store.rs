//! ⑥ The read store on PostgreSQL: views as JSON documents.
//!
//! All views share one `documents` table keyed by (view, partition,
//! clustering); the clustering key has `COLLATE "C"`, so a partition scans in
//! byte order, the port's order.
//!
//! [`ReadStore::commit`] runs in one transaction:
//! 1. every checkpoint is moved with a compare-and-set (`UPDATE … WHERE
//!    position = from`, or an insert that must not meet an existing row): a
//!    concurrent projector of the same partition blocks on the row and then
//!    finds it moved, so exactly one of them commits;
//! 2. the dead letters the batch resolves (a retry) are deleted, each of
//!    which must still be there ([`ReadStoreError::DeadLetterMissing`]): a
//!    concurrent retry of the same one waits on its row, then finds it gone;
//! 3. the documents the batch read are locked (transaction-scoped advisory
//!    locks on their keys, taken in one order, so absent documents lock too)
//!    and their revisions compared with those read;
//! 4. the net writes go in with one upsert and one delete, each write with a
//!    fresh revision, and the dead letters with them.
//!
//! Any refusal rolls everything back. The transaction commits durably (the
//! server's `synchronous_commit`): a checkpoint a query process has read, and
//! told a client with a consistency token it had reached, survives a crash
//! of the read DB. With `synchronous_commit = off` a crash lost views and
//! checkpoints together, which the projector re-applies, but a token already
//! answered could then be read against a view that had gone back.

use std::collections::BTreeMap;

use async_trait::async_trait;
use parallax_core::read_store::{fresh_revision, LowerBound};
use parallax_core::{
    Checkpoint, ClusteringRange, DeadLetter, DocKey, Document, Page, Partition, ReadStoreError, Revision,
    ViewAdmin, ViewBatch, ViewCommitter, ViewReader, ViewWrite,
};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};

use crate::error::{is_unique_violation, read_error};
use crate::store::{to_i64, to_u64};

/// The read store in one PostgreSQL database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PgReadStore {
    pool: PgPool,
}

impl PgReadStore {
    /// A read store over `pool` (whose database has the read schema: see
    /// [`crate::migrate_read`]).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Connects to `url`.
    pub async fn connect(url: &str) -> Result<Self, ReadStoreError> {
        let pool =
            crate::pool(url, 16).await.map_err(|e| ReadStoreError::store("connect the read store", e))?;
        Ok(Self::new(pool))
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The page read behind `scan` and `scan_json`, selecting the body as `$body`.
macro_rules! scan_sql {
    ($body:literal) => {
        concat!(
            "SELECT clustering, ",
            $body,
            " FROM documents WHERE view = $1 AND partition = $2 \
             AND ($3::text IS NULL OR (CASE WHEN $4 THEN clustering >= $3 ELSE clustering > $3 END)) \
             AND ($5::text IS NULL OR clustering < $5) \
             ORDER BY clustering LIMIT $6"
        )
    };
}

impl PgReadStore {
    /// One page of `partition` read by `sql` (from `scan_sql!`), each body
    /// read from its row by `body`.
    async fn page<B>(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
        sql: &'static str,
        body: fn(&PgRow) -> B,
    ) -> Result<Page<B>, ReadStoreError> {
        if limit == 0 {
            return Ok(Page { documents: Vec::new(), next_cursor: None });
        }
        let (lower, inclusive) = match range.lower_bound() {
            Some(LowerBound::Inclusive(key)) => (Some(key), true),
            Some(LowerBound::Exclusive(key)) => (Some(key), false),
            None => (None, false),
        };
        let rows = sqlx::query(sql)
            .bind(view)
            .bind(partition)
            .bind(lower)
            .bind(inclusive)
            .bind(&range.to)
            .bind(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| read_error(format!("scan {view}/{partition}"), e))?;
        let documents: Vec<Document<B>> = rows
            .iter()
            .map(|row| Document {
                key: DocKey::new(partition, row.get::<String, _>("clustering")),
                body: body(row),
            })
            .collect();
        Ok(Page::from_one_more(documents, limit))
    }
}

fn checkpoint_of(row: &PgRow) -> Checkpoint {
    Checkpoint { position: to_u64(row.get("position")), offset: to_u64(row.get("source_offset")) }
}

#[async_trait]
impl ViewReader for PgReadStore {
    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(serde_json::Value, Revision)>, ReadStoreError> {
        let row = sqlx::query(
            "SELECT body, revision FROM documents WHERE view = $1 AND partition = $2 AND clustering = $3",
        )
        .bind(view)
        .bind(&key.partition)
        .bind(&key.clustering)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| read_error(format!("get {view}/{}/{}", key.partition, key.clustering), e))?;
        Ok(row.map(|row| (row.get::<Json<serde_json::Value>, _>("body").0, to_u64(row.get("revision")))))
    }

    async fn get_many(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<(serde_json::Value, Revision)>>, ReadStoreError> {
        let views: Vec<&str> = keys.iter().map(|(view, _)| view.as_str()).collect();
        let partitions: Vec<&str> = keys.iter().map(|(_, key)| key.partition.as_str()).collect();
        let clusterings: Vec<&str> = keys.iter().map(|(_, key)| key.clustering.as_str()).collect();
        let rows = sqlx::query(
            "SELECT r.i, d.body, d.revision \
             FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS r(v, p, c, i) \
             JOIN documents d ON d.view = r.v AND d.partition = r.p AND d.clustering = r.c",
        )
        .bind(&views)
        .bind(&partitions)
        .bind(&clusterings)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| read_error("get a batch's documents", e))?;
        let mut found = vec![None; keys.len()];
        for row in rows {
            let at = usize::try_from(row.get::<i64, _>("i")).unwrap_or(0);
            if let Some(slot) = at.checked_sub(1).and_then(|at| found.get_mut(at)) {
                *slot = Some((row.get::<Json<serde_json::Value>, _>("body").0, to_u64(row.get("revision"))));
            }
        }
        Ok(found)
    }

    async fn scan(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page, ReadStoreError> {
        self.page(view, partition, range, limit, scan_sql!("body"), |row| {
            row.get::<Json<serde_json::Value>, _>("body").0
        })
        .await
    }

    async fn get_json(&self, view: &str, key: &DocKey) -> Result<Option<String>, ReadStoreError> {
        sqlx::query_scalar(
            "SELECT body::text FROM documents WHERE view = $1 AND partition = $2 AND clustering = $3",
        )
        .bind(view)
        .bind(&key.partition)
        .bind(&key.clustering)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| read_error(format!("get {view}/{}/{}", key.partition, key.clustering), e))
    }

    async fn scan_json(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page<String>, ReadStoreError> {
        self.page(view, partition, range, limit, scan_sql!("body::text AS body"), |row| row.get("body")).await
    }
}

#[async_trait]
impl ViewCommitter for PgReadStore {
    fn commits_atomically(&self) -> bool {
        true
    }

    async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError> {
        let projection = batch.projection.clone();
        let failed = |e| read_error(format!("commit a batch of {projection}"), e);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        move_checkpoints(&mut tx, &batch).await?;
        resolve_dead_letters(&mut tx, &batch).await?;
        check_reads(&mut tx, &batch).await?;
        apply_writes(&mut tx, &batch).await?;
        for letter in &batch.dead_letters {
            sqlx::query(
                "INSERT INTO dead_letters (projection, position, event_id, event_type, error) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&letter.projection)
            .bind(to_i64(letter.position))
            .bind(letter.event_id)
            .bind(&letter.event_type)
            .bind(&letter.error)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }

    async fn checkpoint(&self, projection: &str, partition: Partition) -> Result<Checkpoint, ReadStoreError> {
        let row = sqlx::query(
            "SELECT position, source_offset FROM checkpoints WHERE projection = $1 AND source_partition = $2",
        )
        .bind(projection)
        .bind(partition_i32(partition))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| read_error(format!("load the checkpoint of {projection}"), e))?;
        Ok(row.as_ref().map(checkpoint_of).unwrap_or_default())
    }

    async fn checkpoints(&self, projection: &str) -> Result<Vec<(Partition, Checkpoint)>, ReadStoreError> {
        let rows = sqlx::query(
            "SELECT source_partition, position, source_offset FROM checkpoints \
             WHERE projection = $1 ORDER BY source_partition",
        )
        .bind(projection)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| read_error(format!("load the checkpoints of {projection}"), e))?;
        Ok(rows
            .iter()
            .map(|row| {
                (u32::try_from(row.get::<i32, _>("source_partition")).unwrap_or(0), checkpoint_of(row))
            })
            .collect())
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, ReadStoreError> {
        let rows = sqlx::query(
            "SELECT projection, position, event_id, event_type, error FROM dead_letters \
             WHERE projection = $1 ORDER BY position, id",
        )
        .bind(projection)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| read_error(format!("list the dead letters of {projection}"), e))?;
        Ok(rows
            .iter()
            .map(|row| DeadLetter {
                projection: row.get("projection"),
                position: to_u64(row.get("position")),
                event_id: row.get("event_id"),
                event_type: row.get("event_type"),
                error: row.get("error"),
            })
            .collect())
    }
}

#[async_trait]
impl ViewAdmin for PgReadStore {
    async fn partitions(&self, view: &str) -> Result<Vec<String>, ReadStoreError> {
        sqlx::query_scalar(
            "SELECT partition FROM documents WHERE view = $1 GROUP BY partition ORDER BY partition COLLATE \"C\"",
        )
        .bind(view)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| read_error(format!("list the partitions of {view}"), e))
    }

    async fn drop_projection(&self, projection: &str, views: &[String]) -> Result<(), ReadStoreError> {
        let dropping = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("DELETE FROM documents WHERE view = ANY($1)").bind(views).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM checkpoints WHERE projection = $1")
                .bind(projection)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM dead_letters WHERE projection = $1")
                .bind(projection)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        };
        dropping.await.map_err(|e| read_error(format!("drop projection {projection}"), e))
    }
}

fn partition_i32(partition: Partition) -> i32 {
    i32::try_from(partition).unwrap_or(i32::MAX)
}

/// Compare-and-set of every checkpoint the batch moves.
async fn move_checkpoints(
    tx: &mut Transaction<'_, Postgres>,
    batch: &ViewBatch,
) -> Result<(), ReadStoreError> {
    let projection = &batch.projection;
    let failed = |e| read_error(format!("move the checkpoints of {projection}"), e);
    for movement in &batch.checkpoints {
        let moved = if movement.from == Checkpoint::default() {
            sqlx::query(
                "INSERT INTO checkpoints (projection, source_partition, position, source_offset) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(projection)
            .bind(partition_i32(movement.partition))
            .bind(to_i64(movement.to.position))
            .bind(to_i64(movement.to.offset))
            .execute(&mut **tx)
            .await
        } else {
            sqlx::query(
                "UPDATE checkpoints SET position = $5, source_offset = $6 \
                 WHERE projection = $1 AND source_partition = $2 AND position = $3 AND source_offset = $4",
            )
            .bind(projection)
            .bind(partition_i32(movement.partition))
            .bind(to_i64(movement.from.position))
            .bind(to_i64(movement.from.offset))
            .bind(to_i64(movement.to.position))
            .bind(to_i64(movement.to.offset))
            .execute(&mut **tx)
            .await
        };
        let moved = match moved {
            Ok(done) => done.rows_affected() == 1,
            Err(error) if is_unique_violation(&error) => false,
            Err(error) => return Err(failed(error)),
        };
        if !moved {
            let actual: Option<i64> = sqlx::query_scalar(
                "SELECT position FROM checkpoints WHERE projection = $1 AND source_partition = $2",
            )
            .bind(projection)
            .bind(partition_i32(movement.partition))
            .fetch_optional(&mut **tx)
            .await
            .map_err(failed)?;
            return Err(ReadStoreError::CheckpointMoved {
                projection: projection.clone(),
                partition: movement.partition,
                expected: movement.from.position,
                actual: actual.map_or(0, to_u64),
            });
        }
    }
    Ok(())
}

/// Deletes the dead letters the batch resolves, each of which must still be
/// there. A concurrent retry of the same one blocks on its row and then finds
/// it gone; positions are taken in order, so two batches cannot deadlock.
async fn resolve_dead_letters(
    tx: &mut Transaction<'_, Postgres>,
    batch: &ViewBatch,
) -> Result<(), ReadStoreError> {
    let projection = &batch.projection;
    let failed = |e| read_error(format!("resolve dead letters of {projection}"), e);
    let mut positions = batch.resolved_dead_letters.clone();
    positions.sort_unstable();
    positions.dedup();
    for position in positions {
        let removed = sqlx::query("DELETE FROM dead_letters WHERE projection = $1 AND position = $2")
            .bind(projection)
            .bind(to_i64(position))
            .execute(&mut **tx)
            .await
            .map_err(failed)?
            .rows_affected();
        if removed == 0 {
            return Err(ReadStoreError::DeadLetterMissing { projection: projection.clone(), position });
        }
    }
    Ok(())
}

/// Locks the documents the batch read and checks they are as it read them.
async fn check_reads(tx: &mut Transaction<'_, Postgres>, batch: &ViewBatch) -> Result<(), ReadStoreError> {
    if batch.reads.is_empty() {
        return Ok(());
    }
    let failed = |e| read_error(format!("check the reads of a batch of {}", batch.projection), e);
    let (mut views, mut partitions, mut clusterings, mut revisions) = (vec![], vec![], vec![], vec![]);
    for read in &batch.reads {
        views.push(read.view.as_str());
        partitions.push(read.key.partition.as_str());
        clusterings.push(read.key.clustering.as_str());
        revisions.push(to_i64(read.revision));
    }
    // One lock per key, taken in one global order so batches cannot deadlock.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM ( \
             SELECT DISTINCT hashtextextended(v || '/' || p || '/' || c, 0) AS k \
             FROM unnest($1::text[], $2::text[], $3::text[]) AS r(v, p, c) ORDER BY 1) AS keys",
    )
    .bind(&views)
    .bind(&partitions)
    .bind(&clusterings)
    .execute(&mut **tx)
    .await
    .map_err(failed)?;
    let changed = sqlx::query(
        "SELECT r.v, r.p, r.c FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS r(v, p, c, rev) \
         LEFT JOIN documents d ON d.view = r.v AND d.partition = r.p AND d.clustering = r.c \
         WHERE coalesce(d.revision, 0) <> r.rev LIMIT 1",
    )
    .bind(&views)
    .bind(&partitions)
    .bind(&clusterings)
    .bind(&revisions)
    .fetch_optional(&mut **tx)
    .await
    .map_err(failed)?;
    match changed {
        None => Ok(()),
        Some(row) => Err(ReadStoreError::Conflict {
            view: row.get("v"),
            partition: row.get("p"),
            clustering: row.get("c"),
        }),
    }
}

/// The batch's net writes: the last write of each document, as one upsert
/// and one delete.
async fn apply_writes(tx: &mut Transaction<'_, Postgres>, batch: &ViewBatch) -> Result<(), ReadStoreError> {
    let failed = |e| read_error(format!("write the views of {}", batch.projection), e);
    let mut last: BTreeMap<(&str, &str, &str), Option<&serde_json::Value>> = BTreeMap::new();
    for write in &batch.writes {
        match write {
            ViewWrite::Put { view, key, body, .. } => {
                last.insert((view, &key.partition, &key.clustering), Some(body));
            }
            ViewWrite::Delete { view, key, .. } => {
                last.insert((view, &key.partition, &key.clustering), None);
            }
        }
    }
    let revision = to_i64(fresh_revision());
    let (mut put_keys, mut bodies, mut deleted) = (vec![], vec![], vec![]);
    for (key, body) in last {
        match body {
            Some(body) => {
                put_keys.push(key);
                bodies.push(Json(body));
            }
            None => deleted.push(key),
        }
    }
    if !put_keys.is_empty() {
        let (views, partitions, clusterings) = split(&put_keys);
        sqlx::query(
            "INSERT INTO documents (view, partition, clustering, body, revision) \
             SELECT v, p, c, b, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[]) AS r(v, p, c, b) \
             ON CONFLICT (view, partition, clustering) \
             DO UPDATE SET body = excluded.body, revision = excluded.revision",
        )
        .bind(&views)
        .bind(&partitions)
        .bind(&clusterings)
        .bind(&bodies)
        .bind(revision)
        .execute(&mut **tx)
        .await
        .map_err(failed)?;
    }
    if !deleted.is_empty() {
        let (views, partitions, clusterings) = split(&deleted);
        sqlx::query(
            "DELETE FROM documents d USING unnest($1::text[], $2::text[], $3::text[]) AS r(v, p, c) \
             WHERE d.view = r.v AND d.partition = r.p AND d.clustering = r.c",
        )
        .bind(&views)
        .bind(&partitions)
        .bind(&clusterings)
        .execute(&mut **tx)
        .await
        .map_err(failed)?;
    }
    Ok(())
}

type Key<'a> = (&'a str, &'a str, &'a str);

fn split<'a>(keys: &[Key<'a>]) -> (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    let views = keys.iter().map(|k| k.0).collect();
    let partitions = keys.iter().map(|k| k.1).collect();
    let clusterings = keys.iter().map(|k| k.2).collect();
    (views, partitions, clusterings)
}
