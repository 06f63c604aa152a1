//! ③ Leases on PostgreSQL: a session advisory lock per name, held on a
//! connection of its own, with an epoch row that fences former holders.
//!
//! The lock lives as long as the holder's connection: a holder that crashes
//! (or whose connection drops) loses it at once, and a waiting worker, which
//! tries every [`PgLeases::retry`] interval, takes over with the next epoch.
//!
//! A holder that is alive proves it: while it holds the lease it waits in
//! [`Lease::lost`], which asks the lease connection for the epoch every
//! `retry` interval. A holder that stops asking (frozen by SIGSTOP, a paused
//! VM, a long stall, cut off by the network) loses the lease after
//! [`PgLeases::expire_after`]: the lease connection runs with
//! `idle_session_timeout` at that bound, so PostgreSQL ends the session and
//! releases the lock. The kernel still answers TCP keepalives for a
//! stopped process, so keepalives alone would not end it. On the holder's
//! side, an epoch check that gets no answer within the bound counts as lost.
//! A former holder that resumes finds its session gone in its next check,
//! and its next [`Lease::save`] finds a newer epoch and fails with
//! [`LeaseError::Lost`], so it cannot move a checkpoint its successor relies
//! on (what it published meanwhile duplicates positions the partition
//! already carried, which projectors skip: ARCHITECTURE.md invariants 7, 8).

use std::time::Duration;

use async_trait::async_trait;
use parallax_core::{Lease, LeaseError, Leases, Position};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::ConnectOptions;
use tokio::sync::Mutex;

use crate::error::store_error;
use crate::store::{to_i64, to_u64};

/// Grants leases from one database.
#[derive(Clone)]
pub struct PgLeases {
    pool: PgPool,
    retry: Duration,
    expire_after: Duration,
}

impl PgLeases {
    /// Leases in the database of `pool` (the write schema, see
    /// [`crate::migrate_write`]); each held lease opens a connection of its
    /// own with the pool's options as they are when it is taken (a pool on
    /// several hosts points them at the primary: [`crate::hosts`]).
    pub fn new(pool: PgPool) -> Self {
        Self { pool, retry: Duration::from_millis(250), expire_after: Duration::from_secs(5) }
    }

    /// How often a waiting worker tries to take the lease, and a holder
    /// checks it still has it.
    pub fn retry(mut self, every: Duration) -> Self {
        self.retry = every;
        self
    }

    /// How long a holder that stopped proving it is alive keeps the lease
    /// (at least a second, and well above `retry`; 5 s by default).
    pub fn expire_after(mut self, bound: Duration) -> Self {
        self.expire_after = bound.max(Duration::from_secs(1));
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
            .pool
            .connect_options()
            .connect()
            .await
            .map_err(|e| store_error(format!("connect to take lease {name}"), e))?;
        // PostgreSQL ends the session, and so releases the lock, when the
        // holder stops checking in (see the module docs).
        sqlx::query("SELECT set_config('idle_session_timeout', $1, false)")
            .bind(self.expire_after.as_millis().to_string())
            .execute(&mut conn)
            .await
            .map_err(|e| store_error(format!("bound the session of lease {name}"), e))?;
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
            expire_after: self.expire_after,
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
    expire_after: Duration,
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
            let check = sqlx::query_scalar::<_, i64>("SELECT epoch FROM leases WHERE name = $1")
                .bind(&self.name)
                .fetch_optional(&mut *conn);
            match tokio::time::timeout(self.expire_after, check).await {
                Ok(Ok(Some(epoch))) if to_u64(epoch) == self.epoch => {}
                Ok(Ok(_)) => return,
                Ok(Err(error)) => {
                    tracing::warn!(lease = %self.name, %error, "the lease's connection failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(lease = %self.name, "the lease's check got no answer in time");
                    return;
                }
            }
        }
    }
}
