//! The store: connection, schema, prepared statements and the commit protocol
//! described in the crate docs.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::future::try_join_all;
use futures::{stream, StreamExt, TryStreamExt};
use parallax_core::read_store::{
    fresh_revision, ClusteringRange, DeadLetter, DocKey, Document, LowerBound, Page, ReadStore,
    ReadStoreError, Revision, Stamp, StoredDocument, ViewBatch, ViewWrite,
};
use parallax_core::{Checkpoint, Partition, Position, ViewSpec};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};

/// Rows per logged batch: small enough for Cassandra's batch size limits
/// with view documents of a few kilobytes, large enough to save round trips.
const BATCH_ROWS: usize = 64;
/// Logged batches and shared rows in flight at once per commit.
const IN_FLIGHT: usize = 8;
/// Attempts at a blind write to a shared row that keeps being changed.
const BLIND_ATTEMPTS: usize = 20;

/// Where the store's data lives.
#[derive(Clone, PartialEq, Eq)]
pub struct CassandraConfig {
    /// Contact points, `host:port` (the driver discovers the rest of the ring).
    pub nodes: Vec<String>,
    /// The keyspace holding the views, checkpoints and dead letters.
    pub keyspace: String,
    /// Replication factor used when the keyspace is created.
    pub replication_factor: u32,
    /// Fault injection for tests: a pause between a commit's rows and its
    /// checkpoints, which widens the window a crash can fall into. Read from
    /// `PARALLAX_CASSANDRA_PAUSE_BEFORE_CHECKPOINT_MS` by [`CassandraConfig::new`];
    /// never set it in production.
    pub pause_before_checkpoint: Option<Duration>,
}

impl CassandraConfig {
    /// One contact point, replication factor 1.
    pub fn new(nodes: impl IntoIterator<Item = impl Into<String>>, keyspace: impl Into<String>) -> Self {
        Self {
            nodes: nodes.into_iter().map(Into::into).collect(),
            keyspace: keyspace.into(),
            replication_factor: 1,
            pause_before_checkpoint: std::env::var(PAUSE_VARIABLE)
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis),
        }
    }
}

/// See [`CassandraConfig::pause_before_checkpoint`].
const PAUSE_VARIABLE: &str = "PARALLAX_CASSANDRA_PAUSE_BEFORE_CHECKPOINT_MS";

impl fmt::Debug for CassandraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraConfig")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("replication_factor", &self.replication_factor)
            .field("pause_before_checkpoint", &self.pause_before_checkpoint)
            .finish()
    }
}

/// The CQL table name of a view, or why it has none.
fn table_name(view: &str) -> Result<String, ReadStoreError> {
    let valid = !view.is_empty()
        && view.len() <= 46
        && view.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(ReadStoreError::msg(format!(
            "view name {view:?} does not map to a CQL table: use at most 46 letters, digits, '_' or '-'"
        )));
    }
    Ok(format!("v_{}", view.to_ascii_lowercase().replace('-', "_")))
}

fn valid_keyspace(keyspace: &str) -> Result<(), ReadStoreError> {
    let valid = !keyspace.is_empty()
        && keyspace.len() <= 48
        && keyspace.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && keyspace.starts_with(|c: char| c.is_ascii_lowercase());
    if valid {
        Ok(())
    } else {
        Err(ReadStoreError::msg(format!(
            "keyspace name {keyspace:?} is not valid: start with a letter, then at most 47 lowercase letters, digits or '_'"
        )))
    }
}

fn cql(what: impl Into<String>) -> impl FnOnce(scylla::errors::ExecutionError) -> ReadStoreError {
    let what = what.into();
    move |e| ReadStoreError::store(what, e)
}

/// A view's table and its statements.
struct ViewTable {
    shared: bool,
    get: PreparedStatement,
    /// Scans by lower bound (none, inclusive, exclusive) × upper bound (none, exclusive).
    scans: Vec<PreparedStatement>,
    /// Owned rows: timestamped upsert and delete.
    put: PreparedStatement,
    delete: PreparedStatement,
    /// Shared rows: compare-and-set on the revision.
    insert_if_absent: PreparedStatement,
    update_if: PreparedStatement,
    delete_if: PreparedStatement,
    revision_serial: PreparedStatement,
}

struct Statements {
    checkpoint: PreparedStatement,
    checkpoint_serial: PreparedStatement,
    checkpoints: PreparedStatement,
    checkpoint_insert: PreparedStatement,
    checkpoint_update: PreparedStatement,
    dead_letter_insert: PreparedStatement,
    dead_letters: PreparedStatement,
}

/// Views, checkpoints and dead letters in a Cassandra keyspace. See the
/// crate docs for how a commit keeps every event's effect exactly once.
pub struct CassandraReadStore {
    session: Arc<Session>,
    keyspace: String,
    views: RwLock<HashMap<String, Arc<ViewTable>>>,
    replication_factor: u32,
    pause_before_checkpoint: Option<Duration>,
    statements: Statements,
    /// Timestamps of writes outside any projector: wall-clock microseconds,
    /// strictly increasing within this store.
    clock: AtomicI64,
}

impl fmt::Debug for CassandraReadStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraReadStore")
            .field("keyspace", &self.keyspace)
            .field("views", &self.declared())
            .finish_non_exhaustive()
    }
}

impl CassandraReadStore {
    /// Connects, creates the keyspace and the tables of `views` if missing,
    /// and prepares every statement.
    pub async fn connect(
        config: &CassandraConfig,
        views: impl IntoIterator<Item = ViewSpec>,
    ) -> Result<Self, ReadStoreError> {
        valid_keyspace(&config.keyspace)?;
        if config.nodes.is_empty() {
            return Err(ReadStoreError::msg("no Cassandra contact point configured"));
        }
        let session = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .connection_timeout(Duration::from_secs(10))
            .build()
            .await
            .map_err(|e| {
                ReadStoreError::store(format!("connect to Cassandra at {}", config.nodes.join(",")), e)
            })?;
        let session = Arc::new(session);
        let keyspace = config.keyspace.clone();
        let views: Vec<ViewSpec> = views.into_iter().collect();
        let mut tables = Vec::with_capacity(views.len());
        for view in &views {
            tables.push((view.clone(), table_name(&view.name)?));
        }
        migrate(
            &session,
            &keyspace,
            config.replication_factor,
            tables.iter().map(|(_, table)| table.as_str()),
        )
        .await?;
        let mut prepared = HashMap::with_capacity(tables.len());
        for (spec, table) in &tables {
            prepared.insert(
                spec.name.clone(),
                Arc::new(prepare_view(&session, &keyspace, table, spec.shared).await?),
            );
        }
        let statements = prepare_common(&session, &keyspace).await?;
        Ok(Self {
            session,
            keyspace,
            views: RwLock::new(prepared),
            replication_factor: config.replication_factor,
            pause_before_checkpoint: config.pause_before_checkpoint,
            statements,
            clock: AtomicI64::new(0),
        })
    }

    /// The keyspace.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// The driver session (for tools and tests).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Empties every view table and the projection's bookkeeping: a rebuild
    /// from position 0 starts here.
    pub async fn truncate_all(&self) -> Result<(), ReadStoreError> {
        let mut tables: Vec<String> = Vec::new();
        for view in self.views.read().unwrap_or_else(PoisonError::into_inner).keys() {
            tables.push(table_name(view)?);
        }
        tables.extend(["checkpoints".to_owned(), "dead_letters".to_owned()]);
        for table in tables {
            self.session
                .query_unpaged(format!("TRUNCATE {}.{table}", self.keyspace), ())
                .await
                .map_err(cql(format!("truncate {table}")))?;
        }
        Ok(())
    }

    /// Drops a keyspace and everything in it (tests, tools).
    pub async fn drop_keyspace(config: &CassandraConfig) -> Result<(), ReadStoreError> {
        valid_keyspace(&config.keyspace)?;
        let session = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .build()
            .await
            .map_err(|e| ReadStoreError::store("connect to Cassandra", e))?;
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", config.keyspace), ())
            .await
            .map_err(cql("drop the keyspace"))?;
        Ok(())
    }

    fn view(&self, view: &str) -> Result<Arc<ViewTable>, ReadStoreError> {
        self.views.read().unwrap_or_else(PoisonError::into_inner).get(view).cloned().ok_or_else(|| {
            ReadStoreError::msg(format!(
                "view {view} is not declared in this Cassandra read store (declared: {})",
                self.declared()
            ))
        })
    }

    fn declared(&self) -> String {
        let views = self.views.read().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<&str> = views.keys().map(String::as_str).collect();
        names.sort_unstable();
        names.join(", ")
    }

    /// The next timestamp for a write outside any projector.
    fn tick(&self) -> i64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        let mut last = self.clock.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.clock.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// A view to read: declared, or created by another process since this
    /// one connected (a new generation's table, say), found in the schema.
    async fn readable(&self, view: &str) -> Result<Arc<ViewTable>, ReadStoreError> {
        if let Ok(table) = self.view(view) {
            return Ok(table);
        }
        let table = table_name(view)?;
        let found = self
            .session
            .query_unpaged(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?",
                (&self.keyspace, &table),
            )
            .await
            .map_err(cql(format!("look for the table of {view}")))?
            .into_rows_result()
            .map_err(|e| ReadStoreError::store(format!("look for the table of {view}"), e))?
            .rows_num();
        if found == 0 {
            return self.view(view);
        }
        // Reads do not depend on `shared`; a writer declares it.
        let prepared = Arc::new(prepare_view(&self.session, &self.keyspace, &table, false).await?);
        Ok(Arc::clone(
            self.views
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(view.to_owned())
                .or_insert(prepared),
        ))
    }

    async fn stored(&self, view: &str, key: &DocKey) -> Result<Option<StoredDocument>, ReadStoreError> {
        let table = self.readable(view).await?;
        let result = self
            .session
            .execute_unpaged(&table.get, (&key.partition, &key.clustering))
            .await
            .map_err(cql(format!("read {view}")))?;
        let rows = result.into_rows_result().map_err(|e| ReadStoreError::store(format!("read {view}"), e))?;
        let row = rows
            .maybe_first_row::<(Option<String>, Option<i64>, Option<BTreeMap<i32, i64>>)>()
            .map_err(|e| ReadStoreError::store(format!("decode a row of {view}"), e))?;
        let Some((Some(body), revision, marks)) = row else {
            return Ok(None);
        };
        let body = serde_json::from_str(&body)
            .map_err(|e| ReadStoreError::store(format!("document {view}/{key:?} is not JSON"), e))?;
        let marks = marks
            .unwrap_or_default()
            .into_iter()
            .map(|(partition, position)| Stamp {
                partition: partition as Partition,
                position: position as Position,
            })
            .collect();
        Ok(Some(StoredDocument { body, revision: revision.unwrap_or(0) as Revision, marks }))
    }

    async fn read_checkpoint(
        &self,
        projection: &str,
        partition: Partition,
        serial: bool,
    ) -> Result<Checkpoint, ReadStoreError> {
        let statement = if serial { &self.statements.checkpoint_serial } else { &self.statements.checkpoint };
        let result = self
            .session
            .execute_unpaged(statement, (projection, partition as i32))
            .await
            .map_err(cql("read a checkpoint"))?;
        let rows = result.into_rows_result().map_err(|e| ReadStoreError::store("read a checkpoint", e))?;
        let row = rows
            .maybe_first_row::<(Option<i64>, Option<i64>)>()
            .map_err(|e| ReadStoreError::store("decode a checkpoint", e))?;
        Ok(row.map_or_else(Checkpoint::default, |(position, offset)| Checkpoint {
            position: position.unwrap_or(0) as Position,
            offset: offset.unwrap_or(0) as u64,
        }))
    }

    async fn serial_revision(&self, view: &str, key: &DocKey) -> Result<Revision, ReadStoreError> {
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
    async fn write_shared(&self, write: &ViewWrite, expected: Revision) -> Result<bool, ReadStoreError> {
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
    async fn apply_shared(&self, write: &ViewWrite, guard: Option<Revision>) -> Result<(), ReadStoreError> {
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
    fn shared_statement(
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
    async fn apply_shared_partition(
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
            let mut batch = Batch::new(BatchType::Logged);
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
    fn owned_statement(
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

    async fn write_owned(&self, writes: Vec<&ViewWrite>) -> Result<(), ReadStoreError> {
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
                let mut batch = Batch::new(BatchType::Logged);
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

    async fn move_checkpoint(
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

fn marks_of(stamp: Option<Stamp>) -> BTreeMap<i32, i64> {
    stamp.map(|stamp| (stamp.partition as i32, stamp.position as i64)).into_iter().collect()
}

fn conflict(view: &str, key: &DocKey) -> ReadStoreError {
    ReadStoreError::Conflict {
        view: view.to_owned(),
        partition: key.partition.clone(),
        clustering: key.clustering.clone(),
    }
}

/// Whether a lightweight transaction applied, and, when it did not, the
/// current values of the row's columns it returned.
fn lwt(result: QueryResult, what: &str) -> Result<(bool, HashMap<String, Option<CqlValue>>), ReadStoreError> {
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

async fn migrate<'a>(
    session: &Session,
    keyspace: &str,
    replication_factor: u32,
    tables: impl Iterator<Item = &'a str>,
) -> Result<(), ReadStoreError> {
    let mut ddl = vec![
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': {}}}",
            replication_factor.max(1)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.checkpoints (projection text, source_partition int, \
             position bigint, source_offset bigint, PRIMARY KEY ((projection), source_partition))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.dead_letters (projection text, position bigint, \
             event_id uuid, event_type text, error text, PRIMARY KEY ((projection), position))"
        ),
    ];
    for table in tables {
        ddl.push(format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.{table} (p text, c text, body text, rev bigint, \
             marks map<int, bigint>, PRIMARY KEY ((p), c)) WITH CLUSTERING ORDER BY (c ASC)"
        ));
    }
    for statement in ddl {
        session
            .query_unpaged(statement.as_str(), ())
            .await
            .map_err(cql(format!("create the schema: {statement}")))?;
    }
    session
        .await_schema_agreement()
        .await
        .map_err(|e| ReadStoreError::store("wait for the schema to settle", e))?;
    Ok(())
}

async fn prepare(session: &Session, statement: String) -> Result<PreparedStatement, ReadStoreError> {
    let mut prepared = session
        .prepare(statement.as_str())
        .await
        .map_err(|e| ReadStoreError::store(format!("prepare {statement}"), e))?;
    prepared.set_consistency(Consistency::LocalQuorum);
    prepared.set_serial_consistency(Some(SerialConsistency::LocalSerial));
    Ok(prepared)
}

async fn prepare_serial(session: &Session, statement: String) -> Result<PreparedStatement, ReadStoreError> {
    let mut prepared = prepare(session, statement).await?;
    prepared.set_consistency(Consistency::LocalSerial);
    Ok(prepared)
}

async fn prepare_view(
    session: &Session,
    keyspace: &str,
    table: &str,
    shared: bool,
) -> Result<ViewTable, ReadStoreError> {
    let t = format!("{keyspace}.{table}");
    let mut scans = Vec::with_capacity(6);
    for lower in ["", " AND c >= ?", " AND c > ?"] {
        for upper in ["", " AND c < ?"] {
            scans.push(
                prepare(session, format!("SELECT c, body FROM {t} WHERE p = ?{lower}{upper} LIMIT ?"))
                    .await?,
            );
        }
    }
    let mut put = prepare(
        session,
        format!(
            "UPDATE {t} USING TIMESTAMP ? SET body = ?, rev = ?, marks = marks + ? WHERE p = ? AND c = ?"
        ),
    )
    .await?;
    put.set_is_idempotent(true);
    let mut delete =
        prepare(session, format!("DELETE FROM {t} USING TIMESTAMP ? WHERE p = ? AND c = ?")).await?;
    delete.set_is_idempotent(true);
    Ok(ViewTable {
        shared,
        get: prepare(session, format!("SELECT body, rev, marks FROM {t} WHERE p = ? AND c = ?")).await?,
        scans,
        put,
        delete,
        insert_if_absent: prepare(
            session,
            format!("INSERT INTO {t} (p, c, body, rev, marks) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"),
        )
        .await?,
        update_if: prepare(
            session,
            format!("UPDATE {t} SET body = ?, rev = ?, marks = marks + ? WHERE p = ? AND c = ? IF rev = ?"),
        )
        .await?,
        delete_if: prepare(session, format!("DELETE FROM {t} WHERE p = ? AND c = ? IF rev = ?")).await?,
        revision_serial: prepare_serial(session, format!("SELECT rev FROM {t} WHERE p = ? AND c = ?"))
            .await?,
    })
}

async fn prepare_common(session: &Session, keyspace: &str) -> Result<Statements, ReadStoreError> {
    let checkpoint =
        format!("SELECT position, source_offset FROM {keyspace}.checkpoints WHERE projection = ? AND source_partition = ?");
    Ok(Statements {
        checkpoint: prepare(session, checkpoint.clone()).await?,
        checkpoint_serial: prepare_serial(session, checkpoint).await?,
        checkpoints: prepare(
            session,
            format!("SELECT source_partition, position, source_offset FROM {keyspace}.checkpoints WHERE projection = ?"),
        )
        .await?,
        checkpoint_insert: prepare(
            session,
            format!(
                "INSERT INTO {keyspace}.checkpoints (projection, source_partition, position, source_offset) \
                 VALUES (?, ?, ?, ?) IF NOT EXISTS"
            ),
        )
        .await?,
        checkpoint_update: prepare(
            session,
            format!(
                "UPDATE {keyspace}.checkpoints SET position = ?, source_offset = ? \
                 WHERE projection = ? AND source_partition = ? IF position = ? AND source_offset = ?"
            ),
        )
        .await?,
        dead_letter_insert: prepare(
            session,
            format!(
                "INSERT INTO {keyspace}.dead_letters (projection, position, event_id, event_type, error) \
                 VALUES (?, ?, ?, ?, ?)"
            ),
        )
        .await?,
        dead_letters: prepare(
            session,
            format!("SELECT position, event_id, event_type, error FROM {keyspace}.dead_letters WHERE projection = ?"),
        )
        .await?,
    })
}

/// The batch's writes, the last one per document (a batch's writes apply in
/// order, so only the last of each document counts).
fn net_writes(writes: &[ViewWrite]) -> Vec<&ViewWrite> {
    let mut last: HashMap<(&str, &DocKey), usize> = HashMap::with_capacity(writes.len());
    for (index, write) in writes.iter().enumerate() {
        last.insert((write.view(), write.key()), index);
    }
    let mut indexes: Vec<usize> = last.into_values().collect();
    indexes.sort_unstable();
    indexes.into_iter().map(|index| &writes[index]).collect()
}

#[async_trait]
impl ReadStore for CassandraReadStore {
    async fn get(&self, view: &str, key: &DocKey) -> Result<Option<serde_json::Value>, ReadStoreError> {
        Ok(self.stored(view, key).await?.map(|stored| stored.body))
    }

    async fn get_with_revision(
        &self,
        view: &str,
        key: &DocKey,
    ) -> Result<Option<(serde_json::Value, Revision)>, ReadStoreError> {
        Ok(self.stored(view, key).await?.map(|stored| (stored.body, stored.revision)))
    }

    async fn get_many(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<(serde_json::Value, Revision)>>, ReadStoreError> {
        Ok(self
            .get_many_stored(keys)
            .await?
            .into_iter()
            .map(|found| found.map(|stored| (stored.body, stored.revision)))
            .collect())
    }

    async fn get_many_stored(
        &self,
        keys: &[(String, DocKey)],
    ) -> Result<Vec<Option<StoredDocument>>, ReadStoreError> {
        // Point reads pipelined on the driver's connections: one round trip's
        // latency for the lot, each served by its partition's replica.
        let reads: Vec<_> = keys.iter().map(|(view, key)| self.stored(view, key)).collect();
        stream::iter(reads).buffered(64).try_collect().await
    }

    fn commits_atomically(&self) -> bool {
        false
    }

    async fn declare_views(&self, views: &[ViewSpec]) -> Result<(), ReadStoreError> {
        let missing: Vec<ViewSpec> = {
            let declared = self.views.read().unwrap_or_else(PoisonError::into_inner);
            views
                .iter()
                .filter(|view| declared.get(&view.name).is_none_or(|table| table.shared != view.shared))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut tables = Vec::with_capacity(missing.len());
        for ViewSpec { name, shared } in missing {
            tables.push((name.clone(), table_name(&name)?, shared));
        }
        migrate(
            &self.session,
            &self.keyspace,
            self.replication_factor,
            tables.iter().map(|(_, t, _)| t.as_str()),
        )
        .await?;
        for (name, table, shared) in tables {
            let prepared = Arc::new(prepare_view(&self.session, &self.keyspace, &table, shared).await?);
            self.views.write().unwrap_or_else(PoisonError::into_inner).insert(name, prepared);
        }
        Ok(())
    }

    async fn drop_projection(&self, projection: &str, views: &[String]) -> Result<(), ReadStoreError> {
        for view in views {
            let table = table_name(view)?;
            self.session
                .query_unpaged(format!("DROP TABLE IF EXISTS {}.{table}", self.keyspace), ())
                .await
                .map_err(cql(format!("drop the table of {view}")))?;
            self.views.write().unwrap_or_else(PoisonError::into_inner).remove(view);
        }
        for table in ["checkpoints", "dead_letters"] {
            self.session
                .query_unpaged(
                    format!("DELETE FROM {}.{table} WHERE projection = ?", self.keyspace),
                    (projection,),
                )
                .await
                .map_err(cql(format!("drop the {table} of {projection}")))?;
        }
        Ok(())
    }

    async fn partitions(&self, view: &str) -> Result<Vec<String>, ReadStoreError> {
        self.readable(view).await?;
        let statement = format!("SELECT DISTINCT p FROM {}.{}", self.keyspace, table_name(view)?);
        let rows = self
            .session
            .query_iter(statement, ())
            .await
            .map_err(|e| ReadStoreError::store(format!("list the partitions of {view}"), e))?
            .rows_stream::<(String,)>()
            .map_err(|e| ReadStoreError::store(format!("decode the partitions of {view}"), e))?;
        let mut partitions: Vec<String> = rows
            .map_ok(|(partition,)| partition)
            .try_collect()
            .await
            .map_err(|e| ReadStoreError::store(format!("list the partitions of {view}"), e))?;
        // Token order on the wire; the port's order is bytes.
        partitions.sort_unstable();
        Ok(partitions)
    }

    async fn scan(
        &self,
        view: &str,
        partition: &str,
        range: &ClusteringRange,
        limit: usize,
    ) -> Result<Page, ReadStoreError> {
        let table = self.readable(view).await?;
        if limit == 0 {
            return Ok(Page { documents: Vec::new(), next_cursor: None });
        }
        let mut values = vec![CqlValue::Text(partition.to_owned())];
        let lower = match range.lower_bound() {
            None => 0,
            Some(LowerBound::Inclusive(from)) => {
                values.push(CqlValue::Text(from.to_owned()));
                1
            }
            Some(LowerBound::Exclusive(after)) => {
                values.push(CqlValue::Text(after.to_owned()));
                2
            }
        };
        let upper = match &range.to {
            None => 0,
            Some(to) => {
                values.push(CqlValue::Text(to.clone()));
                1
            }
        };
        let fetch = i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX);
        values.push(CqlValue::Int(fetch));
        let result = self
            .session
            .execute_unpaged(&table.scans[lower * 2 + upper], values)
            .await
            .map_err(cql(format!("scan {view}")))?;
        let rows = result.into_rows_result().map_err(|e| ReadStoreError::store(format!("scan {view}"), e))?;
        let mut documents = Vec::new();
        let mut more = false;
        for row in
            rows.rows::<(String, Option<String>)>().map_err(|e| ReadStoreError::store("decode a scan", e))?
        {
            let (clustering, body) = row.map_err(|e| ReadStoreError::store("decode a scanned row", e))?;
            let Some(body) = body else { continue };
            if documents.len() == limit {
                more = true;
                break;
            }
            let body = serde_json::from_str(&body).map_err(|e| {
                ReadStoreError::store(format!("document {view}/{partition}/{clustering} is not JSON"), e)
            })?;
            documents.push(Document { key: DocKey::new(partition, clustering), body });
        }
        let next_cursor =
            if more { documents.last().map(|document| document.key.clustering.clone()) } else { None };
        Ok(Page { documents, next_cursor })
    }

    async fn commit(&self, batch: ViewBatch) -> Result<(), ReadStoreError> {
        let ViewBatch { projection, checkpoints, reads, writes, dead_letters, resolved_dead_letters } = batch;
        if let Some(position) = resolved_dead_letters.first() {
            // Applying a retried event and removing its dead letter would
            // need one transaction; without, a crash or a concurrent retry
            // between the two applies it twice.
            return Err(ReadStoreError::msg(format!(
                "retrying a dead letter ({projection} at position {position}) is not supported on Cassandra, \
                 whose commits are not transactions: rebuild the projection instead (`shop rebuild \
                 <projection>` replays every event in order with the current code)"
            )));
        }
        let moves: Vec<_> = checkpoints.into_iter().filter(|movement| movement.to != movement.from).collect();
        let writes = net_writes(&writes);
        for write in &writes {
            self.view(write.view())?;
        }

        // 1. Nothing is written from a stale batch: every checkpoint must be
        //    where the batch started, every shared document at its revision.
        let current = try_join_all(
            moves.iter().map(|movement| self.read_checkpoint(&projection, movement.partition, true)),
        )
        .await?;
        for (movement, actual) in moves.iter().zip(current) {
            if actual != movement.from {
                return Err(ReadStoreError::CheckpointMoved {
                    projection,
                    partition: movement.partition,
                    expected: movement.from.position,
                    actual: actual.position,
                });
            }
        }
        let mut guards: HashMap<(&str, &DocKey), Revision> = HashMap::new();
        for guard in &reads {
            if self.view(&guard.view)?.shared {
                guards.insert((guard.view.as_str(), &guard.key), guard.revision);
            }
        }
        let revisions =
            try_join_all(guards.iter().map(|(&(view, key), _)| self.serial_revision(view, key))).await?;
        for ((&(view, key), &expected), actual) in guards.iter().zip(revisions) {
            if actual != expected {
                return Err(conflict(view, key));
            }
        }

        // 2. Rows, before the checkpoints that cover them: shared rows by
        //    compare-and-set, owned rows in logged batches by position.
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
            partitions.into_values().map(|writes| self.apply_shared_partition(writes, &guards)).collect();
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

        // 3. The checkpoints, each by compare-and-set.
        if let (Some(pause), false) = (self.pause_before_checkpoint, moves.is_empty()) {
            tracing::debug!(?pause, "fault injection: pausing between the rows and the checkpoints");
            tokio::time::sleep(pause).await;
        }
        for movement in &moves {
            self.move_checkpoint(&projection, movement.partition, movement.from, movement.to).await?;
        }
        Ok(())
    }

    async fn checkpoint(&self, projection: &str, partition: Partition) -> Result<Checkpoint, ReadStoreError> {
        self.read_checkpoint(projection, partition, false).await
    }

    async fn checkpoints(&self, projection: &str) -> Result<Vec<(Partition, Checkpoint)>, ReadStoreError> {
        let result = self
            .session
            .execute_unpaged(&self.statements.checkpoints, (projection,))
            .await
            .map_err(cql("read checkpoints"))?;
        let rows = result.into_rows_result().map_err(|e| ReadStoreError::store("read checkpoints", e))?;
        let mut found = Vec::new();
        for row in rows
            .rows::<(i32, Option<i64>, Option<i64>)>()
            .map_err(|e| ReadStoreError::store("decode checkpoints", e))?
        {
            let (partition, position, offset) =
                row.map_err(|e| ReadStoreError::store("decode a checkpoint", e))?;
            found.push((
                partition as Partition,
                Checkpoint {
                    position: position.unwrap_or(0) as Position,
                    offset: offset.unwrap_or(0) as u64,
                },
            ));
        }
        Ok(found)
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, ReadStoreError> {
        let result = self
            .session
            .execute_unpaged(&self.statements.dead_letters, (projection,))
            .await
            .map_err(cql("read dead letters"))?;
        let rows = result.into_rows_result().map_err(|e| ReadStoreError::store("read dead letters", e))?;
        let mut letters = Vec::new();
        for row in rows
            .rows::<(i64, uuid::Uuid, String, String)>()
            .map_err(|e| ReadStoreError::store("decode dead letters", e))?
        {
            let (position, event_id, event_type, error) =
                row.map_err(|e| ReadStoreError::store("decode a dead letter", e))?;
            letters.push(DeadLetter {
                projection: projection.to_owned(),
                position: position as Position,
                event_id,
                event_type,
                error,
            });
        }
        Ok(letters)
    }
}
