//! The keys of data subjects ([`KeyStore`]) in the write database, table
//! `subject_keys`.
//!
//! Forgetting a key deletes its row, then rewrites the table
//! (`VACUUM FULL subject_keys`): a deleted row stays in its page as a dead
//! tuple until vacuumed, and a plain `VACUUM` only marks its space free; the
//! rewrite copies the live rows into new files and drops the old ones, so
//! the key's bytes are in no file of the table (`tests/keys.rs` reads the
//! table's file through the server). It holds the table's lock for as long
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
        let deleted = sqlx::query("DELETE FROM subject_keys WHERE subject = $1")
            .bind(subject)
            .execute(&self.pool)
            .await
            .map_err(|e| key_error("delete a key", e))?;
        // Outside a transaction block, as VACUUM must be.
        sqlx::raw_sql("VACUUM FULL subject_keys")
            .execute(&self.pool)
            .await
            .map_err(|e| key_error("rewrite the key table without the deleted key", e))?;
        Ok(deleted.rows_affected() > 0)
    }
}
