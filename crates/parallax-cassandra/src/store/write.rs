//! How a commit writes: owned rows with their event's position as the
//! write timestamp, shared rows by compare-and-set on their revision, and
//! checkpoints last (the crate docs give the reasoning).

use std::collections::{BTreeMap, HashMap};

use futures::future::try_join_all;
use futures::{stream, StreamExt, TryStreamExt};
use parallax_core::read_store::{
    fresh_revision, CheckpointMove, DeadLetter, DocKey, ReadGuard, ReadStoreError, Revision, Stamp, ViewWrite,
};
use parallax_core::{Checkpoint, Partition, Position};
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use super::{cql, CassandraReadStore, BATCH_ROWS, BLIND_ATTEMPTS, IN_FLIGHT};

impl CassandraReadStore {
    /// A logged batch at the store's levels (a batch takes its own, not
    /// its statements').
    fn batch(&self) -> Batch {
        let mut batch = Batch::new(BatchType::Logged);
        batch.set_consistency(self.levels.consistency);
        batch.set_serial_consistency(Some(self.levels.serial));
        batch
    }

    /// A commit's first step: nothing is written from a stale batch. Every
    /// checkpoint must be where the batch started, every shared document it
    /// read at the revision it read; the shared ones' revisions are returned
    /// as the guards their writes compare-and-set against.
    pub(super) async fn refuse_stale<'a>(
        &self,
        projection: &str,
        moves: &[CheckpointMove],
        reads: &'a [ReadGuard],
    ) -> Result<HashMap<(&'a str, &'a DocKey), Revision>, ReadStoreError> {
        let current = try_join_all(
            moves.iter().map(|movement| self.read_checkpoint(projection, movement.partition, true)),
        )
        .await?;
        for (movement, actual) in moves.iter().zip(current) {
            if actual != movement.from {
                return Err(ReadStoreError::CheckpointMoved {
                    projection: projection.to_owned(),
                    partition: movement.partition,
                    expected: movement.from.position,
                    actual: actual.position,
                });
            }
        }
        let mut guards = HashMap::new();
        for guard in reads {
            if self.view(&guard.view)?.shared {
                guards.insert((guard.view.as_str(), &guard.key), guard.revision);
            }
        }
        let revisions =
            try_join_all(guards.keys().map(|&(view, key)| self.serial_revision(view, key))).await?;
        for ((&(view, key), &expected), actual) in guards.iter().zip(revisions) {
            if actual != expected {
                return Err(conflict(view, key));
            }
        }
        Ok(guards)
    }

    /// A commit's second step: the rows, before the checkpoints that cover
    /// them. Shared rows by compare-and-set against `guards`, a partition's
    /// in one conditional batch; owned rows in logged batches by position;
    /// then the dead letters.
    pub(super) async fn write_rows(
        &self,
        writes: Vec<&ViewWrite>,
        guards: &HashMap<(&str, &DocKey), Revision>,
        dead_letters: &[DeadLetter],
    ) -> Result<(), ReadStoreError> {
        let mut shared = Vec::new();
        let mut owned = Vec::new();
        for write in writes {
            if self.view(write.view())?.shared {
                shared.push(write);
            } else {
                owned.push(write);
            }
        }
        let mut partitions: BTreeMap<(&str, &str), Vec<&ViewWrite>> = BTreeMap::new();
        for write in shared {
            partitions.entry((write.view(), write.key().partition.as_str())).or_default().push(write);
        }
        let shared: Vec<_> =
            partitions.into_values().map(|writes| self.apply_shared_partition(writes, guards)).collect();
        stream::iter(shared).buffer_unordered(IN_FLIGHT).try_collect::<Vec<()>>().await?;
        self.write_owned(owned).await?;
        try_join_all(dead_letters.iter().map(|letter| {
            self.session.execute_unpaged(
                &self.statements.dead_letter_insert,
                (
                    &letter.projection,
                    letter.position as i64,
                    letter.event_id,
                    &letter.event_type,
                    &letter.error,
                ),
            )
        }))
        .await
        .map_err(cql("store a dead letter"))?;
        Ok(())
    }

    pub(super) async fn serial_revision(&self, view: &str, key: &DocKey) -> Result<Revision, ReadStoreError> {
        let table = self.view(view)?;
        let result = self
            .session
            .execute_unpaged(&table.revision_serial, (&key.partition, &key.clustering))
            .await
            .map_err(cql(format!("read a revision of {view}")))?;
        let rows = result
            .into_rows_result()
            .map_err(|e| ReadStoreError::store(format!("read a revision of {view}"), e))?;
        let row = rows
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(|e| ReadStoreError::store(format!("decode a revision of {view}"), e))?;
        Ok(row.and_then(|(revision,)| revision).unwrap_or(0) as Revision)
    }

    /// One compare-and-set write to a shared row; `Ok(false)` when the row
    /// was not at `expected`.
    pub(super) async fn write_shared(
        &self,
        write: &ViewWrite,
        expected: Revision,
    ) -> Result<bool, ReadStoreError> {
        let view = write.view();
        let table = self.view(view)?;
        let key = write.key();
        let result = match write {
            ViewWrite::Put { body, stamp, .. } => {
                let body = body.to_string();
                let revision = fresh_revision() as i64;
                let marks = marks_of(*stamp);
                if expected == 0 {
                    self.session
                        .execute_unpaged(
                            &table.insert_if_absent,
                            (&key.partition, &key.clustering, body, revision, marks),
                        )
                        .await
                } else {
                    self.session
                        .execute_unpaged(
                            &table.update_if,
                            (body, revision, marks, &key.partition, &key.clustering, expected as i64),
                        )
                        .await
                }
            }
            ViewWrite::Delete { .. } => {
                if expected == 0 {
                    // Expected absent: deleting it changes nothing, if it still is.
                    return Ok(self.serial_revision(view, key).await? == 0);
                }
                self.session
                    .execute_unpaged(&table.delete_if, (&key.partition, &key.clustering, expected as i64))
                    .await
            }
        }
        .map_err(cql(format!("compare-and-set a row of {view}")))?;
        Ok(lwt(result, view)?.0)
    }

    /// Writes one shared row: against the revision the batch read it at
    /// (`Conflict` if it moved), or, written blind, against whatever it holds.
    pub(super) async fn apply_shared(
        &self,
        write: &ViewWrite,
        guard: Option<Revision>,
    ) -> Result<(), ReadStoreError> {
        let key = write.key();
        match guard {
            Some(expected) => {
                if self.write_shared(write, expected).await? {
                    Ok(())
                } else {
                    Err(conflict(write.view(), key))
                }
            }
            None => {
                for _ in 0..BLIND_ATTEMPTS {
                    let current = self.serial_revision(write.view(), key).await?;
                    if self.write_shared(write, current).await? {
                        return Ok(());
                    }
                }
                Err(conflict(write.view(), key))
            }
        }
    }

    /// The conditional statement and values of one write to a shared row
    /// at revision `expected`; `None` for deleting a row expected absent
    /// (nothing to write).
    pub(super) fn shared_statement(
        &self,
        write: &ViewWrite,
        expected: Revision,
    ) -> Result<Option<(PreparedStatement, Vec<CqlValue>)>, ReadStoreError> {
        let table = self.view(write.view())?;
        let key = write.key();
        let (p, c) = (CqlValue::Text(key.partition.clone()), CqlValue::Text(key.clustering.clone()));
        Ok(match write {
            ViewWrite::Put { body, stamp, .. } => {
                let body = CqlValue::Text(body.to_string());
                let revision = CqlValue::BigInt(fresh_revision() as i64);
                let marks = CqlValue::Map(
                    marks_of(*stamp)
                        .into_iter()
                        .map(|(partition, position)| (CqlValue::Int(partition), CqlValue::BigInt(position)))
                        .collect(),
                );
                if expected == 0 {
                    Some((table.insert_if_absent.clone(), vec![p, c, body, revision, marks]))
                } else {
                    Some((
                        table.update_if.clone(),
                        vec![body, revision, marks, p, c, CqlValue::BigInt(expected as i64)],
                    ))
                }
            }
            ViewWrite::Delete { .. } if expected == 0 => None,
            ViewWrite::Delete { .. } => {
                Some((table.delete_if.clone(), vec![p, c, CqlValue::BigInt(expected as i64)]))
            }
        })
    }

    /// Writes shared rows of one partition of one view together: one
    /// conditional batch (a single Paxos round for the partition) instead of
    /// one lightweight transaction per row, which would queue behind each
    /// other on the partition. Guarded rows must be at the revision the
    /// batch read them at; blind rows are read (serially) and written against
    /// what they hold, again if they moved meanwhile.
    pub(super) async fn apply_shared_partition(
        &self,
        writes: Vec<&ViewWrite>,
        guards: &HashMap<(&str, &DocKey), Revision>,
    ) -> Result<(), ReadStoreError> {
        let guard = |write: &ViewWrite| guards.get(&(write.view(), write.key())).copied();
        if let [write] = writes.as_slice() {
            return self.apply_shared(write, guard(write)).await;
        }
        let first = writes[0];
        let blind = writes.iter().any(|write| guard(write).is_none());
        for _ in 0..BLIND_ATTEMPTS {
            let expected = try_join_all(writes.iter().map(|write| async move {
                match guard(write) {
                    Some(revision) => Ok(revision),
                    None => self.serial_revision(write.view(), write.key()).await,
                }
            }))
            .await?;
            let mut batch = self.batch();
            let mut values = Vec::with_capacity(writes.len());
            for (write, expected) in writes.iter().zip(expected) {
                match self.shared_statement(write, expected)? {
                    Some((statement, row)) => {
                        batch.append_statement(statement);
                        values.push(row);
                    }
                    // Deleting a row expected absent: a blind one was just
                    // read absent; a guarded one is checked on its own.
                    None => {
                        if guard(write).is_some()
                            && self.serial_revision(write.view(), write.key()).await? != 0
                        {
                            return Err(conflict(write.view(), write.key()));
                        }
                    }
                }
            }
            if values.is_empty() {
                return Ok(());
            }
            let result = self
                .session
                .batch(&batch, values)
                .await
                .map_err(cql(format!("compare-and-set a partition of {}", first.view())))?;
            if lwt(result, first.view())?.0 {
                return Ok(());
            }
            if !blind {
                return Err(conflict(first.view(), first.key()));
            }
        }
        Err(conflict(first.view(), first.key()))
    }

    /// The statement and values of one owned (timestamped) write.
    pub(super) fn owned_statement(
        &self,
        write: &ViewWrite,
    ) -> Result<(PreparedStatement, Vec<CqlValue>), ReadStoreError> {
        let table = self.view(write.view())?;
        let key = write.key();
        let timestamp = match write.stamp() {
            Some(stamp) => i64::try_from(stamp.position).map_err(|_| {
                ReadStoreError::msg(format!("position {} exceeds a CQL timestamp", stamp.position))
            })?,
            None => self.tick(),
        };
        let (p, c) = (CqlValue::Text(key.partition.clone()), CqlValue::Text(key.clustering.clone()));
        Ok(match write {
            ViewWrite::Put { body, stamp, .. } => (
                table.put.clone(),
                vec![
                    CqlValue::BigInt(timestamp),
                    CqlValue::Text(body.to_string()),
                    CqlValue::BigInt(fresh_revision() as i64),
                    CqlValue::Map(
                        marks_of(*stamp)
                            .into_iter()
                            .map(|(partition, position)| {
                                (CqlValue::Int(partition), CqlValue::BigInt(position))
                            })
                            .collect(),
                    ),
                    p,
                    c,
                ],
            ),
            ViewWrite::Delete { .. } => (table.delete.clone(), vec![CqlValue::BigInt(timestamp), p, c]),
        })
    }

    pub(super) async fn write_owned(&self, writes: Vec<&ViewWrite>) -> Result<(), ReadStoreError> {
        let mut chunks = Vec::new();
        for chunk in writes.chunks(BATCH_ROWS) {
            let mut statements = Vec::with_capacity(chunk.len());
            for write in chunk {
                statements.push(self.owned_statement(write)?);
            }
            chunks.push(statements);
        }
        stream::iter(chunks)
            .map(|statements| async move {
                if let [(statement, values)] = statements.as_slice() {
                    self.session.execute_unpaged(statement, values).await.map_err(cql("write a view row"))?;
                    return Ok(());
                }
                let mut batch = self.batch();
                // Timestamped upserts and deletes: applying them twice
                // changes nothing, so the driver may send them again.
                batch.set_is_idempotent(true);
                let mut values = Vec::with_capacity(statements.len());
                for (statement, row) in statements {
                    batch.append_statement(statement);
                    values.push(row);
                }
                self.session.batch(&batch, values).await.map_err(cql("write a batch of view rows"))?;
                Ok::<(), ReadStoreError>(())
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    pub(super) async fn move_checkpoint(
        &self,
        projection: &str,
        partition: Partition,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<(), ReadStoreError> {
        let statements = &self.statements;
        let (position, offset) = (to.position as i64, to.offset as i64);
        let result = if from == Checkpoint::default() {
            self.session
                .execute_unpaged(
                    &statements.checkpoint_insert,
                    (projection, partition as i32, position, offset),
                )
                .await
        } else {
            self.session
                .execute_unpaged(
                    &statements.checkpoint_update,
                    (
                        position,
                        offset,
                        projection,
                        partition as i32,
                        from.position as i64,
                        from.offset as i64,
                    ),
                )
                .await
        }
        .map_err(cql("move a checkpoint"))?;
        let (applied, current) = lwt(result, "checkpoints")?;
        if applied {
            return Ok(());
        }
        let actual = match current.get("position") {
            Some(Some(CqlValue::BigInt(position))) => *position as Position,
            _ => self.read_checkpoint(projection, partition, true).await?.position,
        };
        Err(ReadStoreError::CheckpointMoved {
            projection: projection.to_owned(),
            partition,
            expected: from.position,
            actual,
        })
    }
}

pub(super) fn marks_of(stamp: Option<Stamp>) -> BTreeMap<i32, i64> {
    stamp.map(|stamp| (stamp.partition as i32, stamp.position as i64)).into_iter().collect()
}

pub(super) fn conflict(view: &str, key: &DocKey) -> ReadStoreError {
    ReadStoreError::Conflict {
        view: view.to_owned(),
        partition: key.partition.clone(),
        clustering: key.clustering.clone(),
    }
}

/// Whether a lightweight transaction applied, and, when it did not, the
/// current values of the row's columns it returned.
pub(super) fn lwt(
    result: QueryResult,
    what: &str,
) -> Result<(bool, HashMap<String, Option<CqlValue>>), ReadStoreError> {
    let rows = result.into_rows_result().map_err(|e| {
        ReadStoreError::store(format!("read the outcome of a conditional write to {what}"), e)
    })?;
    let names: Vec<String> = rows.column_specs().iter().map(|spec| spec.name().to_owned()).collect();
    let row = rows
        .maybe_first_row::<Row>()
        .map_err(|e| {
            ReadStoreError::store(format!("decode the outcome of a conditional write to {what}"), e)
        })?
        .ok_or_else(|| ReadStoreError::msg(format!("a conditional write to {what} returned no outcome")))?;
    let columns: HashMap<String, Option<CqlValue>> = names.into_iter().zip(row.columns).collect();
    let applied = matches!(columns.get("[applied]"), Some(Some(CqlValue::Boolean(true))));
    Ok((applied, columns))
}

/// The batch's writes, the last one per document (a batch's writes apply in
/// order, so only the last of each document counts).
pub(super) fn net_writes(writes: &[ViewWrite]) -> Vec<&ViewWrite> {
    let mut last: HashMap<(&str, &DocKey), usize> = HashMap::with_capacity(writes.len());
    for (index, write) in writes.iter().enumerate() {
        last.insert((write.view(), write.key()), index);
    }
    let mut indexes: Vec<usize> = last.into_values().collect();
    indexes.sort_unstable();
    indexes.into_iter().map(|index| &writes[index]).collect()
}
