//! The store: connection, reads and the `ReadStore` port; the schema and
//! prepared statements are in `store/schema.rs`, the commit's writes (the
//! protocol described in the crate docs) in `store/write.rs`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::{stream, StreamExt, TryStreamExt};
use parallax_core::read_store::{
    ClusteringRange, DeadLetter, DocKey, Document, LowerBound, Page, ReadStoreError, Revision, Stamp,
    StoredDocument, ViewAdmin, ViewBatch, ViewCommitter, ViewReader,
};
use parallax_core::{Checkpoint, Partition, Position, ViewSpec};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::unprepared::Statement;
pub use scylla::statement::Consistency;
use scylla::statement::SerialConsistency;
use scylla::value::CqlValue;

mod levels;
mod schema;
mod write;

pub use levels::{parse_consistency, ConsistencyError};
use levels::{serial_for, Levels};
use schema::{migrate, prepare_common, prepare_view, table_name, valid_keyspace, Statements, ViewTable};
use write::net_writes;

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
    /// Replication factor used when the keyspace is created; `None`: 3
    /// on a ring of 3 nodes or more, else 1, decided from the ring the
    /// driver finds when the store connects. A keyspace that exists with
    /// another factor is left as it is, with a warning.
    pub replication_factor: Option<u32>,
    /// The level of every read and write the store makes (default
    /// `LOCAL_QUORUM`); lightweight transactions and serial reads run at
    /// the matching serial level ([`CassandraConfig::serial_consistency`]).
    /// Exactly-once needs reads that overlap writes: see the crate docs.
    pub consistency: Consistency,
    /// How long the driver waits for a request's answer before it fails
    /// it: longer than the server's own timeouts (10 s at most by
    /// default), so a slow ring answers with its timeout first. The
    /// outcome of a write given up on is unknown; the crate docs say why
    /// that is safe.
    pub request_timeout: Duration,
    /// Fault injection for tests: a pause between a commit's rows and its
    /// checkpoints, which widens the window a crash can fall into. Read from
    /// `PARALLAX_CASSANDRA_PAUSE_BEFORE_CHECKPOINT_MS` by [`CassandraConfig::new`];
    /// never set it in production.
    pub pause_before_checkpoint: Option<Duration>,
}

impl CassandraConfig {
    /// The defaults: replication factor from the ring's size, `LOCAL_QUORUM`,
    /// requests given up after 12 s.
    pub fn new(nodes: impl IntoIterator<Item = impl Into<String>>, keyspace: impl Into<String>) -> Self {
        Self {
            nodes: nodes.into_iter().map(Into::into).collect(),
            keyspace: keyspace.into(),
            replication_factor: None,
            consistency: Consistency::LocalQuorum,
            request_timeout: Duration::from_secs(12),
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
            .field("consistency", &self.consistency)
            .field("request_timeout", &self.request_timeout)
            .field("pause_before_checkpoint", &self.pause_before_checkpoint)
            .finish()
    }
}

impl CassandraConfig {
    /// The serial level of lightweight transactions and serial reads:
    /// `SERIAL` when [`CassandraConfig::consistency`] spans datacenters
    /// (`QUORUM`, `ALL`), else `LOCAL_SERIAL`.
    pub fn serial_consistency(&self) -> SerialConsistency {
        serial_for(self.consistency)
    }
}

/// A session whose default execution profile carries the store's levels
/// and request timeout: every statement the store does not set them on
/// itself (DDL, `TRUNCATE`, unprepared reads) runs at them too.
async fn open_session(config: &CassandraConfig, levels: Levels) -> Result<Session, ReadStoreError> {
    if config.nodes.is_empty() {
        return Err(ReadStoreError::msg("no Cassandra contact point configured"));
    }
    let profile = ExecutionProfile::builder()
        .consistency(levels.consistency)
        .serial_consistency(Some(levels.serial))
        .request_timeout(Some(config.request_timeout))
        .build();
    SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(Duration::from_secs(10))
        .default_execution_profile_handle(profile.into_handle())
        .build()
        .await
        .map_err(|e| ReadStoreError::store(format!("connect to Cassandra at {}", config.nodes.join(",")), e))
}

/// The nodes of the ring the driver found (the contact points and their peers).
pub(crate) fn ring_size(session: &Session) -> usize {
    session.get_cluster_state().get_nodes_info().len()
}

/// The keyspace's replication factor: the configured one, else 3 on a
/// ring of 3 nodes or more and 1 on a smaller one. A keyspace that exists
/// keeps its own: it is what the store works with, and when it differs
/// from the one wanted a warning says so (changing it is an operator's
/// `ALTER KEYSPACE` and a full repair). A level that waits for more
/// replicas than the keyspace keeps is refused; one whose reads need not
/// meet the last write is warned about.
async fn replication_factor(session: &Session, config: &CassandraConfig) -> Result<u32, ReadStoreError> {
    let nodes = ring_size(session);
    let wanted = config.replication_factor.unwrap_or(if nodes >= 3 { 3 } else { 1 });
    let existing = schema::keyspace_replication(session, &config.keyspace).await?;
    if let Some(existing) = existing.filter(|&existing| existing != wanted) {
        tracing::warn!(
            keyspace = %config.keyspace,
            existing,
            wanted,
            nodes,
            "the keyspace exists with another replication factor; it keeps its own (ALTER KEYSPACE and a \
             full repair change it)"
        );
    }
    let factor = existing.unwrap_or(wanted);
    if factor as usize > nodes {
        tracing::warn!(keyspace = %config.keyspace, factor, nodes, "more replicas than nodes in the ring");
    }
    let levels = Levels::new(config.consistency);
    match levels.unfit_for(factor) {
        Some(why) if levels.replicas(factor) > factor => {
            Err(ReadStoreError::msg(format!("keyspace {}: {why}", config.keyspace)))
        }
        Some(why) => {
            tracing::warn!(keyspace = %config.keyspace, "{why}");
            Ok(factor)
        }
        None => Ok(factor),
    }
}

fn cql(what: impl Into<String>) -> impl FnOnce(scylla::errors::ExecutionError) -> ReadStoreError {
    let what = what.into();
    move |e| ReadStoreError::store(what, e)
}

/// Views, checkpoints and dead letters in a Cassandra keyspace. See the
/// crate docs for how a commit keeps every event's effect exactly once.
pub struct CassandraReadStore {
    session: Arc<Session>,
    keyspace: String,
    views: RwLock<HashMap<String, Arc<ViewTable>>>,
    replication_factor: u32,
    levels: Levels,
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
    /// and prepares every statement, each at the configured levels.
    pub async fn connect(
        config: &CassandraConfig,
        views: impl IntoIterator<Item = ViewSpec>,
    ) -> Result<Self, ReadStoreError> {
        valid_keyspace(&config.keyspace)?;
        let levels = Levels::new(config.consistency);
        let session = Arc::new(open_session(config, levels).await?);
        let keyspace = config.keyspace.clone();
        let replication_factor = replication_factor(&session, config).await?;
        let views: Vec<ViewSpec> = views.into_iter().collect();
        let mut tables = Vec::with_capacity(views.len());
        for view in &views {
            tables.push((view.clone(), table_name(&view.name)?));
        }
        migrate(&session, &keyspace, replication_factor, tables.iter().map(|(_, table)| table.as_str()))
            .await?;
        let mut prepared = HashMap::with_capacity(tables.len());
        for (spec, table) in &tables {
            prepared.insert(
                spec.name.clone(),
                Arc::new(prepare_view(&session, levels, &keyspace, table, spec.shared).await?),
            );
        }
        let statements = prepare_common(&session, levels, &keyspace).await?;
        Ok(Self {
            session,
            keyspace,
            views: RwLock::new(prepared),
            replication_factor,
            levels,
            pause_before_checkpoint: config.pause_before_checkpoint,
            statements,
            clock: AtomicI64::new(0),
        })
    }

    /// The keyspace.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// The keyspace's replication factor: the one it was created with
    /// (which a keyspace that existed keeps, whatever was configured).
    pub fn replication_factor(&self) -> u32 {
        self.replication_factor
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
                .query_unpaged(self.unprepared(format!("TRUNCATE {}.{table}", self.keyspace)), ())
                .await
                .map_err(cql(format!("truncate {table}")))?;
        }
        Ok(())
    }

    /// Drops a keyspace and everything in it (tests, tools).
    pub async fn drop_keyspace(config: &CassandraConfig) -> Result<(), ReadStoreError> {
        valid_keyspace(&config.keyspace)?;
        let session = open_session(config, Levels::new(config.consistency)).await?;
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

    /// A statement that is not prepared (DDL, `TRUNCATE`, a scan of
    /// partitions), at the store's levels like every prepared one (reads
    /// of `system_schema` excepted: `schema::local_read`).
    fn unprepared(&self, text: String) -> Statement {
        let mut statement = Statement::new(text);
        statement.set_consistency(self.levels.consistency);
        statement.set_serial_consistency(Some(self.levels.serial));
        statement
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
                schema::local_read(
                    "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?",
                ),
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
        let prepared =
            Arc::new(prepare_view(&self.session, self.levels, &self.keyspace, &table, false).await?);
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
}

#[async_trait]
impl ViewReader for CassandraReadStore {
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
}

#[async_trait]
impl ViewCommitter for CassandraReadStore {
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

        // Nothing from a stale batch; then the rows, before the checkpoints
        // that cover them; then the checkpoints, each by compare-and-set.
        let guards = self.refuse_stale(&projection, &moves, &reads).await?;
        self.write_rows(writes, &guards, &dead_letters).await?;
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

#[async_trait]
impl ViewAdmin for CassandraReadStore {
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
            let prepared =
                Arc::new(prepare_view(&self.session, self.levels, &self.keyspace, &table, shared).await?);
            self.views.write().unwrap_or_else(PoisonError::into_inner).insert(name, prepared);
        }
        Ok(())
    }

    async fn drop_projection(&self, projection: &str, views: &[String]) -> Result<(), ReadStoreError> {
        for view in views {
            let table = table_name(view)?;
            self.session
                .query_unpaged(self.unprepared(format!("DROP TABLE IF EXISTS {}.{table}", self.keyspace)), ())
                .await
                .map_err(cql(format!("drop the table of {view}")))?;
            self.views.write().unwrap_or_else(PoisonError::into_inner).remove(view);
        }
        for table in ["checkpoints", "dead_letters"] {
            self.session
                .query_unpaged(
                    self.unprepared(format!("DELETE FROM {}.{table} WHERE projection = ?", self.keyspace)),
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
            .query_iter(self.unprepared(statement), ())
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
}
