//! ③ Leases on PostgreSQL: a session advisory lock per name, held on a
//! connection of its own, with an epoch row that fences former holders.
//!
//! The lock lives as long as the holder's connection: a holder that crashes
//! (or whose connection drops) loses it at once, and a waiting worker, which
//! tries every [`PgLeases::retry`] interval, takes over with the next epoch.
//! A holder that merely stalled (a long pause, a partition) may not know yet;
//! its next [`Lease::save`] finds a newer epoch and fails with
//! [`LeaseError::Lost`], so it cannot move a checkpoint its successor relies on.

use std::time::Duration;

use async_trait::async_trait;
use parallax_core::{Lease, LeaseError, Leases, Position};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::ConnectOptions;
use tokio::sync::Mutex;

use crate::error::store_error;
use crate::store::{to_i64, to_u64};

/// Grants leases from one database.
#[derive(Clone)]
pub struct PgLeases {
    pool: PgPool,
    connect: PgConnectOptions,
    retry: Duration,
}

impl PgLeases {
    /// Leases in the database of `pool` (the write schema, see
    /// [`crate::migrate_write`]); each held lease opens a connection of its
    /// own with the pool's options.
    pub fn new(pool: PgPool) -> Self {
        let connect = pool.connect_options().as_ref().clone();
        Self { pool, connect, retry: Duration::from_millis(250) }
    }

    /// How often a waiting worker tries to take the lease, and a holder
    /// checks it still has it.
    pub fn retry(mut self, every: Duration) -> Self {
        self.retry = every;
        self
    }
}

/// The advisory lock key of a lease name.
fn lock_key(name: &str) -> String {
    format!("parallax lease {name}")
}

#[async_trait]
impl Leases for PgLeases {
    async fn acquire(&self, name: &str) -> Result<Box<dyn Lease>, LeaseError> {
        let mut conn = self
            .connect
            .connect()
            .await
            .map_err(|e| store_error(format!("connect to take lease {name}"), e))?;
        let mut waiting_logged = false;
        loop {
            let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(lock_key(name))
                .fetch_one(&mut conn)
                .await
                .map_err(|e| store_error(format!("try lease {name}"), e))?;
            if held {
                break;
            }
            if !waiting_logged {
                tracing::info!(lease = name, "another worker holds the lease; standing by");
                waiting_logged = true;
            }
            tokio::time::sleep(self.retry).await;
        }
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO leases (name, epoch, position) VALUES ($1, 1, 0) \
             ON CONFLICT (name) DO UPDATE SET epoch = leases.epoch + 1 RETURNING epoch",
        )
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| store_error(format!("take lease {name}"), e))?;
        Ok(Box::new(PgLease {
            name: name.to_owned(),
            epoch: to_u64(epoch),
            conn: Mutex::new(conn),
            pool: self.pool.clone(),
            check_every: self.retry,
        }))
    }
}

/// A lease held by this process.
struct PgLease {
    name: String,
    epoch: u64,
    /// Holds the advisory lock; dropping it closes the connection, which
    /// releases the lock.
    conn: Mutex<PgConnection>,
    pool: PgPool,
    check_every: Duration,
}

impl PgLease {
    fn lost(&self) -> LeaseError {
        LeaseError::Lost { name: self.name.clone(), epoch: self.epoch }
    }
}

#[async_trait]
impl Lease for PgLease {
    fn name(&self) -> &str {
        &self.name
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    async fn checkpoint(&self) -> Result<Position, LeaseError> {
        let position: i64 = sqlx::query_scalar("SELECT position FROM leases WHERE name = $1 AND epoch = $2")
            .bind(&self.name)
            .bind(to_i64(self.epoch))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(format!("read the checkpoint of lease {}", self.name), e))?
            .ok_or_else(|| self.lost())?;
        Ok(to_u64(position))
    }

    async fn save(&self, position: Position) -> Result<(), LeaseError> {
        let saved = sqlx::query("UPDATE leases SET position = $3 WHERE name = $1 AND epoch = $2")
            .bind(&self.name)
            .bind(to_i64(self.epoch))
            .bind(to_i64(position))
            .execute(&self.pool)
            .await
            .map_err(|e| store_error(format!("save the checkpoint of lease {}", self.name), e))?;
        match saved.rows_affected() {
            1 => Ok(()),
            _ => Err(self.lost()),
        }
    }

    async fn lost(&self) {
        loop {
            tokio::time::sleep(self.check_every).await;
            let mut conn = self.conn.lock().await;
            let epoch: Result<Option<i64>, _> =
                sqlx::query_scalar("SELECT epoch FROM leases WHERE name = $1")
                    .bind(&self.name)
                    .fetch_optional(&mut *conn)
                    .await;
            match epoch {
                Ok(Some(epoch)) if to_u64(epoch) == self.epoch => {}
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(lease = %self.name, %error, "the lease's connection failed");
                    return;
                }
            }
        }
    }
}
