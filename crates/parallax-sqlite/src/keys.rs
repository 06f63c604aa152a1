//! The keys of data subjects ([`KeyStore`]), in the event store's file.
//!
//! A key store has a connection of its own to the file, beside the event
//! store's writer, with `secure_delete` on: SQLite overwrites what it
//! deletes with zeros instead of leaving it in free space. Forgetting a
//! key deletes its row, then checkpoints the write-ahead log into the file
//! and truncates it (`wal_checkpoint(TRUNCATE)`), so the log's older frames
//! that held the key are gone too. The key's bytes then are in no byte of
//! the database's files (`tests/keys.rs` searches them).
//!
//! A checkpoint waits for readers of older snapshots (up to the busy
//! timeout) and retries; when readers keep it from finishing, `forget`
//! fails after deleting the row, and forgetting again finishes the job.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use parallax_core::{DataKey, KeyStore, KeyStoreError};
use rusqlite::{params, Connection, OptionalExtension};

use crate::conn::{micros, open_writer};
use crate::error::AdapterError;

const SCHEMA: &str = include_str!("sql/keys.sql");

/// Checkpoints tried before `forget` gives up on readers.
const CHECKPOINT_ATTEMPTS: u32 = 5;

impl AdapterError for KeyStoreError {
    fn caused(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        KeyStoreError::new(context, source)
    }
    fn msg(message: impl Into<String>) -> Self {
        KeyStoreError::msg(message)
    }
}

/// Keys of data subjects in a SQLite file (the event store's, in the shop).
#[derive(Clone)]
pub struct SqliteKeyStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKeyStore").finish_non_exhaustive()
    }
}

impl SqliteKeyStore {
    /// Opens the key table in the file at `path` (creating both if needed).
    /// Blocks while it creates the schema: call it at startup.
    pub fn open(path: &Path) -> Result<Self, KeyStoreError> {
        let conn: Connection = open_writer(path, "FULL", "")?;
        conn.pragma_update(None, "secure_delete", true)
            .map_err(|e| KeyStoreError::new(format!("turn secure_delete on in {}", path.display()), e))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| KeyStoreError::new(format!("create the key table in {}", path.display()), e))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `job` on the connection, off the async runtime.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> Result<T, KeyStoreError> + Send + 'static,
    ) -> Result<T, KeyStoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || job(&mut conn.lock().unwrap_or_else(PoisonError::into_inner)))
            .await
            .map_err(|e| KeyStoreError::new("run a key store call off the async runtime", e))?
    }
}

fn read_key(conn: &Connection, subject: &str) -> Result<Option<DataKey>, KeyStoreError> {
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached("SELECT key FROM subject_keys WHERE subject = ?1")
        .and_then(|mut statement| statement.query_row([subject], |row| row.get(0)).optional())
        .map_err(|e| KeyStoreError::new("read a subject's key", e))?;
    bytes
        .map(|bytes| {
            DataKey::from_bytes(&bytes).ok_or_else(|| KeyStoreError::msg("a stored key is not 32 bytes"))
        })
        .transpose()
}

/// Folds the write-ahead log into the file and truncates it, retrying
/// while readers of older snapshots hold it.
fn truncate_wal(conn: &Connection) -> Result<(), KeyStoreError> {
    for attempt in 1..=CHECKPOINT_ATTEMPTS {
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(|e| KeyStoreError::new("checkpoint the write-ahead log", e))?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20 * u64::from(attempt)));
    }
    Err(KeyStoreError::msg(
        "the key is deleted, but readers kept the write-ahead log from being truncated: forget again",
    ))
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
    async fn key_for(&self, subject: &str) -> Result<DataKey, KeyStoreError> {
        let subject = subject.to_owned();
        self.run(move |conn| {
            // A customer's every checkout but the first reads only.
            if let Some(key) = read_key(conn, &subject)? {
                return Ok(key);
            }
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| KeyStoreError::new("begin a key transaction", e))?;
            // Another process may have created it since.
            if let Some(key) = read_key(&tx, &subject)? {
                return Ok(key);
            }
            let key = DataKey::generate();
            tx.execute(
                "INSERT INTO subject_keys (subject, key, created_at) VALUES (?1, ?2, ?3)",
                params![subject, key.as_bytes().as_slice(), micros(chrono::Utc::now())],
            )
            .map_err(|e| KeyStoreError::new("store a new key", e))?;
            tx.commit().map_err(|e| KeyStoreError::new("commit a new key", e))?;
            Ok(key)
        })
        .await
    }

    async fn key(&self, subject: &str) -> Result<Option<DataKey>, KeyStoreError> {
        let subject = subject.to_owned();
        self.run(move |conn| read_key(conn, &subject)).await
    }

    async fn forget(&self, subject: &str) -> Result<bool, KeyStoreError> {
        let subject = subject.to_owned();
        self.run(move |conn| {
            let deleted = conn
                .execute("DELETE FROM subject_keys WHERE subject = ?1", [&subject])
                .map_err(|e| KeyStoreError::new("delete a key", e))?;
            truncate_wal(conn)?;
            Ok(deleted > 0)
        })
        .await
    }
}
