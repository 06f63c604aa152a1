//! Connections: how a database file is opened for writing and for reading,
//! the pool of read connections, and integer conversions at the SQL boundary.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::Type;
use rusqlite::{Connection, OpenFlags, Row};

use crate::error::AdapterError;

/// How long a connection waits for a lock held by another connection
/// (a checkpoint, another process) before it reports `SQLITE_BUSY`.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 32;

/// Read connections kept open between calls; more are opened under load and
/// closed when returned to a full pool.
const IDLE_READERS: usize = 4;

/// Opens (creating if needed) the file that `conn` will write: WAL mode, the
/// given `synchronous` level, a busy timeout, and the schema.
pub(crate) fn open_writer<E: AdapterError>(
    path: &Path,
    synchronous: &str,
    schema: &str,
) -> Result<Connection, E> {
    let at = path.display();
    let conn = Connection::open(path).map_err(|e| E::caused(format!("open {at}"), e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| E::caused(format!("set the busy timeout of {at}"), e))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| E::caused(format!("switch {at} to WAL mode"), e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(E::msg(format!(
            "{at} cannot use WAL mode (journal mode is {mode}); use a file on a local disk"
        )));
    }
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(|e| E::caused(format!("set synchronous={synchronous} on {at}"), e))?;
    keep_plans(&conn).map_err(|e| E::caused(format!("configure {at}"), e))?;
    conn.execute_batch(schema).map_err(|e| E::caused(format!("create the schema in {at}"), e))?;
    Ok(conn)
}

/// Opens an existing file for reading only (`query_only`), with a busy timeout.
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    keep_plans(&conn)?;
    Ok(conn)
}

/// Caches prepared statements and keeps their plans. Without the query planner
/// stability guarantee, SQLite recompiles a statement each time a new value is
/// bound to a parameter that could change its plan, such as the `LIMIT ?` of
/// every page and log read: a profile of `GET /api/customers/{id}/orders` spent
/// 16 % of the server's CPU re-preparing that one statement. Our statements
/// have one good plan whatever the values (an index range scan).
fn keep_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Read connections to one file, used from `spawn_blocking`. In WAL mode each
/// read statement sees a consistent snapshot and never waits for the writer.
///
/// At most [`READERS_PER_CORE`] reads per core run at once; more callers wait
/// their turn in the async runtime, not as blocked threads: a thousand
/// concurrent reads on two cores would otherwise be a thousand threads (and
/// connections) thrashing the scheduler.
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    running: tokio::sync::Semaphore,
}

/// Reads running at once, per core.
const READERS_PER_CORE: usize = 2;

impl ReadPool {
    pub(crate) fn new(path: &Path) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            running: tokio::sync::Semaphore::new(cores * READERS_PER_CORE),
        }
    }

    /// Runs `read` on a pooled connection, off the async runtime.
    pub(crate) async fn read<T, E, F>(self: &Arc<Self>, read: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: AdapterError,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let _turn = self.running.acquire().await.map_err(|e| E::caused("wait for a read connection", e))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = pool.take().map_err(|e| E::caused(format!("open {}", pool.path.display()), e))?;
            let result = read(&conn);
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|e| E::caused("run a read off the async runtime", e))?
    }

    /// Runs `read` on a pooled connection on the calling thread: for a point
    /// read or one page of a partition, work bounded by the page size on a
    /// file that never makes a reader wait for the writer (WAL). Handing such
    /// a read to a blocking thread and back costs more than the read itself
    /// (a profile of `GET /api/carts/{id}` spent 40 % of the server's CPU in
    /// those two context switches).
    pub(crate) fn read_now<T, E, F>(&self, read: F) -> Result<T, E>
    where
        E: AdapterError,
        F: FnOnce(&Connection) -> Result<T, E>,
    {
        let conn = self.take().map_err(|e| E::caused(format!("open {}", self.path.display()), e))?;
        let result = read(&conn);
        self.give_back(conn);
        result
    }

    fn take(&self) -> rusqlite::Result<Connection> {
        // A poisoned pool still holds usable connections: nothing is left half-done in it.
        let pooled = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
    }
}

/// A non-negative integer for a query parameter; values beyond SQLite's range
/// are clamped, which is what a bound ("after", "limit") means anyway.
pub(crate) fn clamp_i64<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// Column `idx` as a non-negative integer; a negative value is corrupt data.
pub(crate) fn u64_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, value))
}

/// Column `idx` as a hyphenated UUID.
pub(crate) fn uuid_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<uuid::Uuid> {
    let text = row.get_ref(idx)?.as_str()?;
    uuid::Uuid::parse_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// Column `idx` as JSON text decoded into `T`.
pub(crate) fn json_at<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text = row.get_ref(idx)?.as_str()?;
    serde_json::from_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// Microseconds since the Unix epoch, the stored form of every timestamp.
pub(crate) fn micros(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_micros()
}

/// Column `idx` as a timestamp stored by [`micros`].
pub(crate) fn timestamp_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<chrono::DateTime<chrono::Utc>> {
    let value: i64 = row.get(idx)?;
    chrono::DateTime::from_timestamp_micros(value).ok_or(rusqlite::Error::IntegralValueOutOfRange(idx, value))
}

#[cfg(test)]
mod tests {
    use rusqlite::{params, StatementStatus};

    use super::*;

    #[test]
    fn a_cached_statement_keeps_its_plan_when_its_limit_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t (x INTEGER PRIMARY KEY);
                 INSERT INTO t (x) VALUES (1), (2), (3), (4), (5);",
            )
            .unwrap();
        let conn = open_reader(&path).unwrap();
        let sql = "SELECT x FROM t WHERE x > ?1 ORDER BY x LIMIT ?2";
        for (after, limit, expected) in [(0, 2, vec![1, 2]), (1, 3, vec![2, 3, 4]), (3, 10, vec![4, 5])] {
            let mut statement = conn.prepare_cached(sql).unwrap();
            let rows: Vec<i64> = statement
                .query_map(params![after, limit], |row| row.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(rows, expected);
        }
        let statement = conn.prepare_cached(sql).unwrap();
        assert_eq!(statement.get_status(StatementStatus::RePrepare), 0, "re-prepared on a new LIMIT");
    }
}
