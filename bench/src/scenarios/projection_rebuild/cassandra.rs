//! Cassandra: the rebuilt views' documents read back, the baseline's
//! writes in the store's shape and others, and the unit costs of a commit.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use futures::{stream, StreamExt, TryStreamExt};
use parallax_cassandra::CassandraReadStore;
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use serde::Serialize;

use super::baseline::{Doc, LimitLine, UpsertLimit};
use super::{CQL_BATCH_ROWS, CQL_IN_FLIGHT, CQL_SHARED_SAMPLES, CQL_SINGLE_IN_FLIGHT, CQL_UNIT_SAMPLES};
use crate::stats::Latencies;

/// The CQL table of a view, as the Cassandra read store names it.
fn cql_table(view: &str) -> String {
    format!("v_{}", view.to_ascii_lowercase().replace('-', "_"))
}

/// Every document of the views in `store`'s keyspace.
pub(super) async fn cql_documents(store: &CassandraReadStore) -> anyhow::Result<Vec<Doc>> {
    let mut docs = Vec::new();
    for spec in shop::app::shop_view_specs() {
        let query = format!("SELECT p, c, body FROM {}.{}", store.keyspace(), cql_table(&spec.name));
        let mut rows =
            store.session().query_iter(query, ()).await?.rows_stream::<(String, String, Option<String>)>()?;
        while let Some((partition, clustering, body)) = rows.try_next().await? {
            if let Some(body) = body {
                docs.push(Doc { view: spec.name.clone(), partition, clustering, body });
            }
        }
    }
    Ok(docs)
}

async fn cql_prepare(
    session: &Session,
    cql: String,
    consistency: Consistency,
) -> anyhow::Result<PreparedStatement> {
    let mut statement = session.prepare(cql).await?;
    statement.set_consistency(consistency);
    statement.set_serial_consistency(Some(SerialConsistency::LocalSerial));
    Ok(statement)
}

/// The read store's timestamped write of a row, per view, prepared on `store`'s keyspace.
async fn cql_puts(store: &CassandraReadStore) -> anyhow::Result<HashMap<String, PreparedStatement>> {
    let mut puts = HashMap::new();
    for spec in shop::app::shop_view_specs() {
        let cql = format!(
            "UPDATE {}.{} USING TIMESTAMP ? SET body = ?, rev = ?, marks = marks + ? WHERE p = ? AND c = ?",
            store.keyspace(),
            cql_table(&spec.name)
        );
        let mut put = cql_prepare(store.session(), cql, Consistency::LocalQuorum).await?;
        put.set_is_idempotent(true);
        puts.insert(spec.name, put);
    }
    Ok(puts)
}

/// The values of a put: timestamp, body, revision, marks, partition, clustering.
type PutValues<'a> = (i64, &'a str, i64, BTreeMap<i32, i64>, &'a str, &'a str);

/// The values of the `i`-th write, of `doc`, at timestamp `i + 1`.
fn put_values(doc: &Doc, i: u64) -> PutValues<'_> {
    let at = i64::try_from(i).unwrap_or(i64::MAX - 1) + 1;
    (at, doc.body.as_str(), at, BTreeMap::from([(0, at)]), doc.partition.as_str(), doc.clustering.as_str())
}

/// How the baseline sends its rows to Cassandra.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CqlShape {
    /// Logged batches of `CQL_BATCH_ROWS`, `CQL_IN_FLIGHT` in flight: the store's shape.
    Logged,
    /// Unlogged batches of the same size.
    Unlogged,
    /// One row per statement, `CQL_SINGLE_IN_FLIGHT` in flight.
    Single,
}

impl CqlShape {
    fn describe(self) -> String {
        match self {
            CqlShape::Logged => {
                format!("logged, {CQL_BATCH_ROWS} rows each, {CQL_IN_FLIGHT} in flight (the store's shape)")
            }
            CqlShape::Unlogged => format!("unlogged, {CQL_BATCH_ROWS} rows each, {CQL_IN_FLIGHT} in flight"),
            CqlShape::Single => format!("none: one row per statement, {CQL_SINGLE_IN_FLIGHT} in flight"),
        }
    }
}

/// Writes `count` rows (cycling through `docs`) in each shape, into the
/// emptied tables of `limit`; the first line is the store's shape.
pub(super) async fn cql_upsert_limit(
    limit: &CassandraReadStore,
    docs: Vec<Doc>,
    count: u64,
) -> anyhow::Result<UpsertLimit> {
    anyhow::ensure!(!docs.is_empty(), "the rebuild wrote no documents");
    let puts = cql_puts(limit).await?;
    let mut lines = Vec::new();
    for shape in [CqlShape::Logged, CqlShape::Unlogged, CqlShape::Single] {
        limit.truncate_all().await?;
        let per_sec = cql_write(limit.session(), &puts, &docs, count, shape).await?;
        eprintln!("  baseline, batches {}: {per_sec:.0} rows/s", shape.describe());
        lines.push(LimitLine { shape: shape.describe(), per_sec });
    }
    let first = lines.remove(0);
    Ok(UpsertLimit { distinct: docs.len() as u64, per_sec: first.per_sec, shape: first.shape, others: lines })
}

/// Writes `count` rows, cycling through `docs`, in `shape`; returns rows per second.
async fn cql_write(
    session: &Session,
    puts: &HashMap<String, PreparedStatement>,
    docs: &[Doc],
    count: u64,
    shape: CqlShape,
) -> anyhow::Result<f64> {
    let (rows, in_flight) = match shape {
        CqlShape::Single => (1, CQL_SINGLE_IN_FLIGHT),
        CqlShape::Logged | CqlShape::Unlogged => (CQL_BATCH_ROWS, CQL_IN_FLIGHT),
    };
    let doc = |i: u64| &docs[(i % docs.len() as u64) as usize];
    let start = Instant::now();
    stream::iter((0..count).step_by(rows))
        .map(|from| async move {
            if shape == CqlShape::Single {
                let doc = doc(from);
                session.execute_unpaged(&puts[&doc.view], put_values(doc, from)).await?;
                return anyhow::Ok(());
            }
            let kind = if shape == CqlShape::Logged { BatchType::Logged } else { BatchType::Unlogged };
            let mut batch = Batch::new(kind);
            let mut values = Vec::with_capacity(rows);
            for i in from..(from + rows as u64).min(count) {
                batch.append_statement(puts[&doc(i).view].clone());
                values.push(put_values(doc(i), i));
            }
            session.batch(&batch, values).await?;
            Ok(())
        })
        .buffer_unordered(in_flight)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// A shared row's statements, to write it blind as the store does.
struct Shared<'a> {
    session: &'a Session,
    revision: &'a PreparedStatement,
    update: &'a PreparedStatement,
    body: &'a str,
}

impl Shared<'_> {
    /// Reads the row's revision at SERIAL, then sets it by compare-and-set
    /// on that revision; again while another write gets in between.
    async fn write_blind(&self, key: &str, stamp: i64) -> anyhow::Result<()> {
        let marks = BTreeMap::from([(0i32, stamp)]);
        for _ in 0..20 {
            let rows =
                self.session.execute_unpaged(self.revision, ("shared", key)).await?.into_rows_result()?;
            let current = rows.maybe_first_row::<(Option<i64>,)>()?.and_then(|(rev,)| rev).unwrap_or(0);
            let outcome = self
                .session
                .execute_unpaged(self.update, (self.body, current + 1, &marks, "shared", key, current))
                .await?
                .into_rows_result()?;
            if applied(&outcome)? {
                return Ok(());
            }
        }
        anyhow::bail!("a shared row kept being changed")
    }
}

/// Whether a conditional write applied (its outcome's first column).
fn applied(outcome: &scylla::response::query_result::QueryRowsResult) -> anyhow::Result<bool> {
    let row = outcome.maybe_first_row::<scylla::value::Row>()?;
    Ok(matches!(
        row.as_ref().and_then(|row| row.columns.first()),
        Some(Some(scylla::value::CqlValue::Boolean(true)))
    ))
}

/// What one kind of operation costs, timed one at a time.
#[derive(Debug, Clone, Serialize)]
pub(super) struct UnitCost {
    pub(super) what: String,
    pub(super) per_commit: String,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
}

/// The unit costs timed so far, in the order they were timed.
#[derive(Default)]
struct UnitCosts(Vec<UnitCost>);

impl UnitCosts {
    fn record(&mut self, what: &str, per_commit: &str, latencies: Latencies) {
        let summary = latencies.summary();
        eprintln!("  {what}: p50 {:.2} ms, p99 {:.2} ms", summary.p50_ms, summary.p99_ms);
        self.0.push(UnitCost {
            what: what.to_owned(),
            per_commit: per_commit.to_owned(),
            p50_ms: summary.p50_ms,
            p99_ms: summary.p99_ms,
        });
    }
}

/// The latencies of `$op` run `$samples` times (`CQL_UNIT_SAMPLES` unless
/// given), one after the other, `$i` counting from 0.
macro_rules! timed {
    ($i:ident => $op:expr) => {
        timed!(CQL_UNIT_SAMPLES, $i => $op)
    };
    ($samples:expr, $i:ident => $op:expr) => {{
        let mut latencies = Latencies::default();
        for $i in 0..$samples as u64 {
            let began = Instant::now();
            $op;
            latencies.record(began.elapsed());
        }
        latencies
    }};
}

/// Times, one at a time, the operations a Cassandra commit is made of, on
/// the keyspace of `store` (the baseline's), with rows like `sample`.
pub(super) async fn cql_unit_costs(
    store: &CassandraReadStore,
    sample: &[Doc],
) -> anyhow::Result<Vec<UnitCost>> {
    anyhow::ensure!(!sample.is_empty(), "the rebuild wrote no documents");
    let mut costs = UnitCosts::default();
    checkpoint_costs(store, &mut costs).await?;
    // The sales view: the shared view the rebuild writes most.
    let sales = shop_read::views::SALES.name();
    if let Some(shared) =
        shop::app::shop_view_specs().into_iter().find(|spec| spec.shared && spec.name == sales)
    {
        shared_row_costs(store, &shared.name, &sample[0].body, &mut costs).await?;
    }
    owned_row_costs(store, sample, &mut costs).await?;
    Ok(costs.0)
}

/// The checkpoint: its row made first, then read and moved as a commit does.
async fn checkpoint_costs(store: &CassandraReadStore, costs: &mut UnitCosts) -> anyhow::Result<()> {
    let (session, keyspace) = (store.session(), store.keyspace());
    let checkpoints = format!("{keyspace}.checkpoints");
    let insert = cql_prepare(
        session,
        format!(
            "INSERT INTO {checkpoints} (projection, source_partition, position, source_offset) VALUES (?, ?, ?, ?) \
             IF NOT EXISTS"
        ),
        Consistency::LocalQuorum,
    )
    .await?;
    session.execute_unpaged(&insert, ("bench", 0i32, 0i64, 0i64)).await?;
    let read = cql_prepare(
        session,
        format!(
            "SELECT position, source_offset FROM {checkpoints} WHERE projection = ? AND source_partition = ?"
        ),
        Consistency::LocalSerial,
    )
    .await?;
    let latencies = timed!(_i => session.execute_unpaged(&read, ("bench", 0i32)).await?);
    costs.record("read a checkpoint at SERIAL (Paxos)", "1, before any row", latencies);
    let update = cql_prepare(
        session,
        format!(
            "UPDATE {checkpoints} SET position = ?, source_offset = ? WHERE projection = ? AND source_partition = ? \
             IF position = ? AND source_offset = ?"
        ),
        Consistency::LocalQuorum,
    )
    .await?;
    let latencies = timed!(i => {
        let (from, to) = (i as i64, i as i64 + 1);
        session.execute_unpaged(&update, (to, to, "bench", 0i32, from, from)).await?
    });
    costs.record("move a checkpoint by compare-and-set (Paxos)", "1, after the rows", latencies);
    Ok(())
}

/// The statements that write the rows of a shared view's table.
struct SharedStatements {
    /// Makes a row (`IF NOT EXISTS`).
    insert: PreparedStatement,
    /// Reads a row's revision at SERIAL.
    revision: PreparedStatement,
    /// Sets a row by compare-and-set on its revision.
    update: PreparedStatement,
    /// Reads the revisions of rows of a partition at SERIAL (`c IN ?`).
    revisions: PreparedStatement,
}

impl SharedStatements {
    async fn prepare(session: &Session, table: &str) -> anyhow::Result<Self> {
        let insert = cql_prepare(
            session,
            format!("INSERT INTO {table} (p, c, body, rev, marks) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"),
            Consistency::LocalQuorum,
        )
        .await?;
        let revision = cql_prepare(
            session,
            format!("SELECT rev FROM {table} WHERE p = ? AND c = ?"),
            Consistency::LocalSerial,
        )
        .await?;
        let update = cql_prepare(
            session,
            format!(
                "UPDATE {table} SET body = ?, rev = ?, marks = marks + ? WHERE p = ? AND c = ? IF rev = ?"
            ),
            Consistency::LocalQuorum,
        )
        .await?;
        let revisions = cql_prepare(
            session,
            format!("SELECT c, rev FROM {table} WHERE p = ? AND c IN ?"),
            Consistency::LocalSerial,
        )
        .await?;
        Ok(Self { insert, revision, update, revisions })
    }
}

/// A shared row of `view`, written blind as the store writes one: its
/// revision read at SERIAL, then a compare-and-set on it; then a commit's
/// worth of them.
async fn shared_row_costs(
    store: &CassandraReadStore,
    view: &str,
    body: &str,
    costs: &mut UnitCosts,
) -> anyhow::Result<()> {
    let session = store.session();
    let table = format!("{}.{}", store.keyspace(), cql_table(view));
    let statements = SharedStatements::prepare(session, &table).await?;
    let SharedStatements { insert, revision, update, .. } = &statements;
    let marks = BTreeMap::from([(0i32, 0i64)]);
    session.execute_unpaged(insert, ("bench", "bench", body, 0i64, &marks)).await?;
    let latencies = timed!(i => {
        let rows = session.execute_unpaged(revision, ("bench", "bench")).await?.into_rows_result()?;
        let current = rows.maybe_first_row::<(Option<i64>,)>()?.and_then(|(rev,)| rev).unwrap_or(0);
        let marks = BTreeMap::from([(0i32, i as i64 + 1)]);
        session.execute_unpaged(update, (body, current + 1, &marks, "bench", "bench", current)).await?
    });
    costs.record(
        &format!("write a shared row ({view}): serial read + compare-and-set"),
        &format!("1 per row of a shared view, {CQL_IN_FLIGHT} in flight"),
        latencies,
    );
    shared_commit_costs(session, &statements, body, costs).await
}

/// A commit's worth of shared rows in one partition (the sales view has
/// one, `all`): as the store writes them, one at a time, and as one
/// conditional batch.
async fn shared_commit_costs(
    session: &Session,
    statements: &SharedStatements,
    body: &str,
    costs: &mut UnitCosts,
) -> anyhow::Result<()> {
    let marks = BTreeMap::from([(0i32, 0i64)]);
    let keys: Vec<String> = (0..CQL_BATCH_ROWS).map(|k| format!("bench-{k:03}")).collect();
    for key in &keys {
        session.execute_unpaged(&statements.insert, ("shared", key, body, 0i64, &marks)).await?;
    }
    let shared_write = Shared { session, revision: &statements.revision, update: &statements.update, body };
    let latencies = timed!(CQL_SHARED_SAMPLES, i => {
        stream::iter(&keys)
            .map(|key| shared_write.write_blind(key, i as i64 + 1))
            .buffer_unordered(CQL_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?
    });
    costs.record(
        &format!("{CQL_BATCH_ROWS} shared rows of one partition, each as above, {CQL_IN_FLIGHT} in flight"),
        "a sales commit's rows (the store's way)",
        latencies,
    );
    let latencies = timed!(CQL_SHARED_SAMPLES, i => {
        for key in &keys {
            shared_write.write_blind(key, i as i64 + 1).await?;
        }
    });
    costs.record(
        &format!("{CQL_BATCH_ROWS} shared rows of one partition, each as above, one at a time"),
        "(an alternative: no contention within the partition)",
        latencies,
    );
    let latencies =
        timed!(CQL_SHARED_SAMPLES, i => conditional_batch(session, statements, body, &keys, i).await?);
    costs.record(
        &format!(
            "the same {CQL_BATCH_ROWS} rows as one conditional batch: one SELECT … IN at SERIAL, one BATCH of \
             UPDATE … IF rev = ?"
        ),
        "(an alternative: one Paxos round per partition and commit)",
        latencies,
    );
    Ok(())
}

/// Writes the shared rows `keys` as one conditional batch, the `i`-th time:
/// their revisions read at SERIAL in one `SELECT … IN`, then one `BATCH` of
/// compare-and-sets on them.
async fn conditional_batch(
    session: &Session,
    statements: &SharedStatements,
    body: &str,
    keys: &[String],
    i: u64,
) -> anyhow::Result<()> {
    let rows = session.execute_unpaged(&statements.revisions, ("shared", keys)).await?.into_rows_result()?;
    let current: HashMap<String, i64> = rows
        .rows::<(String, Option<i64>)>()?
        .map(|row| row.map(|(c, rev)| (c, rev.unwrap_or(0))))
        .collect::<Result<_, _>>()?;
    let mut batch = Batch::new(BatchType::Logged);
    batch.set_serial_consistency(Some(SerialConsistency::LocalSerial));
    let marks = BTreeMap::from([(0i32, i as i64 + 1)]);
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        let at = current.get(key).copied().unwrap_or(0);
        batch.append_statement(statements.update.clone());
        values.push((body, at + 1, &marks, "shared", key, at));
    }
    let outcome = session.batch(&batch, values).await?.into_rows_result()?;
    anyhow::ensure!(applied(&outcome)?, "a conditional batch did not apply");
    Ok(())
}

/// Owned rows, as the store writes them, and a document read.
async fn owned_row_costs(
    store: &CassandraReadStore,
    sample: &[Doc],
    costs: &mut UnitCosts,
) -> anyhow::Result<()> {
    let (session, keyspace) = (store.session(), store.keyspace());
    let puts = cql_puts(store).await?;
    let doc = |i: u64| &sample[(i % sample.len() as u64) as usize];
    let base = 1u64 << 40;
    for (kind, what, per_commit) in [
        (BatchType::Logged, "a logged batch of 64 rows", "1 per 64 rows of owned views, 8 in flight"),
        (BatchType::Unlogged, "an unlogged batch of 64 rows", "none (the store's batches are logged)"),
    ] {
        let latencies = timed!(i => {
            let mut batch = Batch::new(kind);
            let mut values = Vec::with_capacity(CQL_BATCH_ROWS);
            for k in 0..CQL_BATCH_ROWS as u64 {
                let n = i * CQL_BATCH_ROWS as u64 + k;
                batch.append_statement(puts[&doc(n).view].clone());
                values.push(put_values(doc(n), base + n));
            }
            session.batch(&batch, values).await?
        });
        costs.record(what, per_commit, latencies);
    }
    let latencies =
        timed!(i => session.execute_unpaged(&puts[&doc(i).view], put_values(doc(i), base + i)).await?);
    costs.record(
        "one timestamped row (UPDATE … USING TIMESTAMP)",
        "a commit of a single owned row",
        latencies,
    );
    let mut gets = HashMap::new();
    for spec in shop::app::shop_view_specs() {
        let cql = format!(
            "SELECT body, rev, marks FROM {keyspace}.{} WHERE p = ? AND c = ?",
            cql_table(&spec.name)
        );
        gets.insert(spec.name, cql_prepare(session, cql, Consistency::LocalQuorum).await?);
    }
    let latencies = timed!(i => {
        let doc = doc(i);
        session.execute_unpaged(&gets[&doc.view], (&doc.partition, &doc.clustering)).await?
    });
    costs.record(
        "read a document (SELECT body, rev, marks)",
        "1 per document a batch reads, 64 in flight",
        latencies,
    );
    Ok(())
}
