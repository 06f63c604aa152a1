//! ② ③ A write database on several hosts, one of them the primary: the URL
//! `postgres://user:password@host1:5433,host2:5434/db?…` names them all,
//! and the pool's connections go to whichever is the primary, as libpq's
//! `target_session_attrs=read-write` does (sqlx has no multi-host URLs).
//! Every host takes the URL's user, password, database and parameters; a
//! host without a port is on 5432.
//!
//! The pool starts on the first host, in the URL's order, that answers
//! `pg_is_in_recovery()` with false. Two things keep it on the primary:
//!
//! - every new connection asks again (`after_connect`); one that reached a
//!   standby is refused, and the pool's connect loop tries again;
//! - a follower task asks the pool's host every [`FOLLOW_EVERY`] on a
//!   connection of its own. When the host does not answer within 2 s, or
//!   has become a standby, the follower asks the hosts in turn, the lost
//!   one last, until one is a primary, and points the pool's future
//!   connections at it (`Pool::set_connect_options`). The pool's
//!   connections to the lost host fail their check before they are handed
//!   out and are replaced; its connect loop, which retries a refused host
//!   until the acquire timeout, reads the options again at each attempt.
//!   The leases' sessions connect with the pool's current options too
//!   ([`crate::PgLeases`]), so the relay and the saga follow with
//!   everything else.
//!
//! A host asked counts as down when it has not connected and answered
//! within the acquire timeout (10 s): on a loaded machine a connection
//! takes seconds to open, and a shorter bound would never find the
//! primary there. And while the host answers as the primary, the follower
//! opens a connection in a task of its own whenever the pool has none idle
//! and may open more (at most [`OPENERS`] at once). A caller's acquire
//! opens one too, but a caller that gives up drops it half-opened: an HTTP
//! handler whose client went away after 2 s, on a machine where opening a
//! connection takes longer than that. After the primary's loss the pool
//! holds no live connection, and callers alone might never get one again
//! (the fault suite's promotion scenario at a load average of 50 accepted
//! no command for 90 s).
//!
//! What it is not: a failover layer. It promotes nothing (an operator or
//! `scripts/services/postgres promote` does), retries no statement (a
//! transaction cut off by the loss has an unknown outcome, as on one host),
//! and does not tell two primaries apart (an old primary restarted as one
//! beside its promoted standby): it keeps to the host it is on while that
//! answers as a primary. The follower lives until the pool is closed
//! (`PgPool::close`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use parallax_core::StoreError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Semaphore;
use tokio::time::{timeout, Instant};

use crate::redact;

/// How often the follower asks the pool's host whether it is still the
/// primary (one `SELECT` on a connection of its own).
pub const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// How long the pool's host may take to answer, on the follower's open
/// connection, whether it still is the primary, before the follower looks
/// for the primary again.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// How many connections the follower opens for the pool at once.
pub const OPENERS: usize = 4;

/// One host of a multi-host URL.
#[derive(Clone)]
pub(crate) struct Host {
    /// `host:port` as the URL wrote it, for messages.
    name: String,
    options: PgConnectOptions,
}

/// The name only: the options hold the password.
impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Host").field(&self.name).finish()
    }
}

/// The hosts of `url`, each with the URL's other parts, when it names more
/// than one; `None` for a URL with a single host (which goes to sqlx as it is).
pub(crate) fn split_hosts(url: &str) -> Result<Option<Vec<Host>>, StoreError> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return Ok(None) };
    let authority_end = url[scheme_end..].find(['/', '?']).map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let hosts_start = authority.rfind('@').map_or(0, |i| i + 1);
    let list = &authority[hosts_start..];
    if !list.contains(',') {
        return Ok(None);
    }
    let (before, after) = (&url[..scheme_end + hosts_start], &url[authority_end..]);
    list.split(',')
        .map(|name| {
            if name.is_empty() {
                return Err(StoreError::msg(format!("an empty host in the host list of {}", redact(url))));
            }
            let options = PgConnectOptions::from_str(&format!("{before}{name}{after}"))
                .map_err(|e| StoreError::new(format!("parse host {name} of {}", redact(url)), e))?;
            Ok(Host { name: name.to_owned(), options })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A pool of at most `max_connections` to the primary among `hosts`,
/// following it (see the module docs). Asks the hosts again until `wait`
/// has passed (a pass over them, each given `wait` to answer, ends first).
pub(crate) async fn pool(
    url: &str,
    hosts: Vec<Host>,
    max_connections: u32,
    wait: Duration,
) -> Result<PgPool, StoreError> {
    let deadline = Instant::now() + wait;
    let (index, watch) = loop {
        match find_primary(&hosts, 0, wait).await {
            Ok(found) => break found,
            Err(reasons) if Instant::now() >= deadline => {
                return Err(StoreError::msg(format!(
                    "no primary among the hosts of {}: {}",
                    redact(url),
                    reasons.join("; ")
                )));
            }
            Err(_) => tokio::time::sleep(FOLLOW_EVERY).await,
        }
    };
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(wait)
        .after_connect(|conn, _| Box::pin(async move { refuse_standby(conn).await }))
        .connect_with(hosts[index].options.clone())
        .await
        .map_err(|e| StoreError::new(format!("connect to {} of {}", hosts[index].name, redact(url)), e))?;
    tracing::info!(host = %hosts[index].name, "the write database's primary");
    tokio::spawn(follow(pool.clone(), hosts, index, watch, wait));
    Ok(pool)
}

/// Fails for a connection to a standby, so the pool drops it and tries again.
async fn refuse_standby(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    if in_recovery(conn).await? {
        return Err(sqlx::Error::Configuration("a standby (in recovery), not the primary".into()));
    }
    Ok(())
}

async fn in_recovery(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(conn).await
}

/// Asks each host in turn, from the one at `first` on, giving each `bound`
/// to connect and answer; the first primary's index and a connection to it,
/// or why each host is not one. The bound is a caller's wait for a
/// connection, not less: on a loaded machine a connection takes seconds to
/// open (more than 2 s at a load average of 50), and a primary that does
/// not count as one for that would never be found.
async fn find_primary(
    hosts: &[Host],
    first: usize,
    bound: Duration,
) -> Result<(usize, PgConnection), Vec<String>> {
    let mut reasons = Vec::with_capacity(hosts.len());
    for index in (0..hosts.len()).map(|i| (first + i) % hosts.len()) {
        let host = &hosts[index];
        let asked = timeout(bound, async {
            let mut conn = host.options.connect().await?;
            let standby = in_recovery(&mut conn).await?;
            Ok::<_, sqlx::Error>((conn, standby))
        })
        .await;
        match asked {
            Ok(Ok((conn, false))) => return Ok((index, conn)),
            Ok(Ok((conn, true))) => {
                let _ = conn.close().await;
                reasons.push(format!("{} is a standby", host.name));
            }
            Ok(Err(error)) => reasons.push(format!("{}: {error}", host.name)),
            Err(_) => reasons.push(format!("{} did not answer within {bound:?}", host.name)),
        }
    }
    Err(reasons)
}

/// Keeps the pool's future connections on the primary until the pool
/// closes; `bound` is [`find_primary`]'s.
async fn follow(pool: PgPool, hosts: Vec<Host>, mut current: usize, watch: PgConnection, bound: Duration) {
    let mut watch = Some(watch);
    let mut lost_logged = false;
    let openers = Arc::new(Semaphore::new(OPENERS));
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        if pool.is_closed() {
            return;
        }
        if let Some(conn) = watch.as_mut() {
            if let Ok(Ok(false)) = timeout(ASK_TIMEOUT, in_recovery(conn)).await {
                keep_one_ready(&pool, &openers);
                continue;
            }
        }
        watch = None;
        if !lost_logged {
            tracing::warn!(host = %hosts[current].name, "the write database's primary is lost; asking the other hosts");
            lost_logged = true;
        }
        // The lost host last: dead without a word (no reset, a black hole),
        // it would take the whole bound of every search.
        match find_primary(&hosts, current + 1, bound).await {
            Ok((index, conn)) => {
                if index != current {
                    pool.set_connect_options(hosts[index].options.clone());
                    current = index;
                }
                tracing::info!(host = %hosts[index].name, "the write database's primary");
                watch = Some(conn);
                lost_logged = false;
            }
            Err(reasons) => tracing::debug!(?reasons, "no primary among the hosts yet"),
        }
    }
}

/// Opens a connection for the pool in a task of its own when none is idle
/// and the pool may open more, unless [`OPENERS`] are opening already. The
/// connection goes back to the pool, idle, when the task drops it; no
/// caller's timeout can cut it off half-opened.
fn keep_one_ready(pool: &PgPool, openers: &Arc<Semaphore>) {
    if pool.num_idle() > 0 || pool.size() >= pool.options().get_max_connections() {
        return;
    }
    let Ok(opening) = Arc::clone(openers).try_acquire_owned() else { return };
    let pool = pool.clone();
    tokio::spawn(async move {
        if let Err(error) = pool.acquire().await {
            tracing::debug!(%error, "could not open a connection to the write database's primary");
        }
        drop(opening);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(hosts: &[Host]) -> Vec<(String, u16)> {
        hosts.iter().map(|h| (h.options.get_host().to_owned(), h.options.get_port())).collect()
    }

    #[test]
    fn a_single_host_is_left_to_sqlx() {
        for url in [
            "postgres://u:p@127.0.0.1:5432/db",
            "postgres://u:p@db/db?sslmode=disable",
            "postgres://127.0.0.1/db",
            "postgres://u:p,q@db:5432/db",
        ] {
            assert!(split_hosts(url).expect(url).is_none(), "{url}");
        }
    }

    #[test]
    fn each_host_keeps_the_rest_of_the_url() {
        let hosts =
            split_hosts("postgres://shop:pw@10.0.0.1:5433,db-2,[::1]:5435/events?application_name=shop")
                .expect("a valid list")
                .expect("three hosts");
        assert_eq!(
            ports(&hosts),
            [("10.0.0.1".to_owned(), 5433), ("db-2".to_owned(), 5432), ("[::1]".to_owned(), 5435)]
        );
        for host in &hosts {
            assert_eq!(host.options.get_username(), "shop");
            assert_eq!(host.options.get_database(), Some("events"));
            assert_eq!(host.options.get_application_name(), Some("shop"));
        }
        assert_eq!(hosts[1].name, "db-2");
    }

    #[test]
    fn a_bad_host_list_is_named_without_its_password() {
        let error = split_hosts("postgres://u:secret@a:5433,,b:5434/db").expect_err("an empty host");
        assert!(
            error
                .to_string()
                .ends_with("an empty host in the host list of postgres://u:***@a:5433,,b:5434/db"),
            "{error}"
        );
        let error = split_hosts("postgres://u:secret@a:5433,b:port/db").expect_err("a bad port");
        assert!(
            error.to_string().contains("parse host b:port of postgres://u:***@a:5433,b:port/db"),
            "{error}"
        );
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
