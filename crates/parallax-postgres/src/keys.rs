//! The keys of data subjects ([`KeyStore`]) in the write database, table
//! `subject_keys`.
//!
//! Forgetting a key deletes its row, waits until every transaction of the
//! cluster that was running at the delete has ended (for up to 30 s: until
//! then a snapshot may still see the row), then rewrites the table (`VACUUM
//! FULL subject_keys`): a deleted row stays in its page as a dead tuple
//! until vacuumed, and a plain `VACUUM` only marks its space free; the
//! rewrite copies the live rows into new files and drops the old ones, so
//! the key's bytes are in no file of the table (`tests/keys.rs` reads the
//! table's file through the server). A transaction still running after
//! 30 s makes `forget` fail after the delete; forgetting again finishes
//! the job. A read-only transaction of the write database with a snapshot
//! from before the delete (it has no transaction id to wait for) keeps the
//! row in the rewritten files; the next forget after it ends removes it. It holds the table's lock for as long
//! as the copy takes, a few milliseconds for thousands of keys; checkouts
//! that need a key wait for it. The write-ahead log and base backups taken
//! before still hold the key until they are recycled or expire: keep them
//! no longer than a forgotten customer may wait, or keep keys in a KMS.

use async_trait::async_trait;
use parallax_core::{DataKey, KeyStore, KeyStoreError};
use sqlx::postgres::PgPool;
use sqlx::Row;

/// Keys of data subjects in PostgreSQL (the event store's database, in the shop).
#[derive(Debug, Clone)]
pub struct PgKeyStore {
    pool: PgPool,
}

impl PgKeyStore {
    /// Keys in the database of `pool`, migrated by [`crate::migrate_write`].
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// How long `forget` waits for the transactions older than its delete.
const FORGET_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn key_error(what: &str, error: sqlx::Error) -> KeyStoreError {
    KeyStoreError::new(what, error)
}

fn decode(bytes: &[u8]) -> Result<DataKey, KeyStoreError> {
    DataKey::from_bytes(bytes).ok_or_else(|| KeyStoreError::msg("a stored key is not 32 bytes"))
}

#[async_trait]
impl KeyStore for PgKeyStore {
    async fn key_for(&self, subject: &str) -> Result<DataKey, KeyStoreError> {
        if let Some(key) = self.key(subject).await? {
            return Ok(key);
        }
        let key = DataKey::generate();
        let inserted = sqlx::query(
            "INSERT INTO subject_keys (subject, key) VALUES ($1, $2) ON CONFLICT (subject) DO NOTHING",
        )
        .bind(subject)
        .bind(key.as_bytes().as_slice())
        .execute(&self.pool)
        .await
        .map_err(|e| key_error("store a new key", e))?;
        if inserted.rows_affected() == 1 {
            return Ok(key);
        }
        // Another writer created it first; its insert has committed (ours
        // waited for it), and this new statement sees it.
        self.key(subject).await?.ok_or_else(|| KeyStoreError::msg("a key created concurrently is gone"))
    }

    async fn key(&self, subject: &str) -> Result<Option<DataKey>, KeyStoreError> {
        let row = sqlx::query("SELECT key FROM subject_keys WHERE subject = $1")
            .bind(subject)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| key_error("read a subject's key", e))?;
        row.map(|row| decode(row.get::<&[u8], _>(0))).transpose()
    }

    async fn forget(&self, subject: &str) -> Result<bool, KeyStoreError> {
        let deleted: Option<String> = sqlx::query_scalar(
            "DELETE FROM subject_keys WHERE subject = $1 RETURNING pg_current_xact_id()::text",
        )
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| key_error("delete a key", e))?;
        // Without a row, a former forget may have left its dead tuple: any
        // transaction id from now on is past its delete.
        let after = match &deleted {
            Some(xid) => xid.clone(),
            None => sqlx::query_scalar("SELECT pg_current_xact_id()::text")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| key_error("take a transaction id", e))?,
        };
        self.wait_past(&after).await?;
        // Outside a transaction block, as VACUUM must be.
        sqlx::raw_sql("VACUUM FULL subject_keys")
            .execute(&self.pool)
            .await
            .map_err(|e| key_error("rewrite the key table without the deleted key", e))?;
        Ok(deleted.is_some())
    }
}

impl PgKeyStore {
    /// Waits until no transaction of the cluster that was running when
    /// transaction `xid` committed is still running: before that, a
    /// snapshot may still see the deleted row, and `VACUUM FULL` copies it
    /// into the new files (a transaction in another database counts too:
    /// it holds back the vacuum's own snapshot).
    async fn wait_past(&self, xid: &str) -> Result<(), KeyStoreError> {
        let deadline = std::time::Instant::now() + FORGET_WAIT;
        loop {
            let past: bool =
                sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot()) > ($1::text)::xid8")
                    .bind(xid)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| key_error("compare the oldest running transaction with the delete", e))?;
            if past {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(KeyStoreError::msg(
                    "the key is deleted, but a transaction older than the delete is still running, \
                     so its bytes stay in the table's files: forget again once it has ended",
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
