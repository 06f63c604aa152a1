//! The PostgreSQL primary lost under load, its standby promoted: the event
//! store on a primary with a synchronous standby (`scripts/services/postgres
//! start --standby`: nodes on 127.0.0.1:5433 and :5434), which every
//! process of the deployment reaches through the host list
//! `postgres://…@127.0.0.1:5433,127.0.0.1:5434/…` and so keeps to the
//! primary (`parallax_postgres::hosts`). The views stay on the single node
//! (5432), and Kafka is the single broker: the scenario is about the write
//! side.
//!
//! A round: SIGKILL to the primary's postmaster and every one of its
//! processes at once (the machine lost), the standby promoted at once (the
//! script's `promote`; a real deployment's failure detection would come
//! before it), then a command of the scenario's own sent until it is
//! accepted: the time from the kill to that answer is what the round
//! measures. Last, `start --standby` builds the old primary again as the
//! new one's synchronous standby, so the next round kills a primary that
//! has one.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use super::super::distributed::{services as single_services, Deployment, Services};
use super::{service_with, Measured};

/// How long the shop may take to accept a command again after the kill.
const LIMIT: Duration = Duration::from_secs(90);

/// `scripts/services/postgres <verb> --standby` (`promote` takes no option);
/// what it printed.
async fn pair(verb: &str) -> String {
    let args: &[&str] = if verb == "promote" { &[verb] } else { &[verb, "--standby"] };
    service_with("postgres", args).await
}

/// The single nodes' services with the event store on the standby pair;
/// starts the pair, or builds its standby again, when it needs it.
pub async fn services() -> Services {
    let write = pair("start").await.trim().to_owned();
    assert!(write.starts_with("postgres://"), "start --standby printed no URL: {write:?}");
    Services { write_postgres: Some(write), ..single_services().await }
}

/// Kills the primary, promotes the standby, measures how long until a
/// command is accepted, then gives the new primary a standby.
pub async fn kill_primary(deployment: &Deployment) -> Measured {
    // From just before the script sends SIGKILL: it returns only once
    // every process of the primary has exited, which may take a while.
    let killed = Instant::now();
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    pair("kill").await;
    let dead = killed.elapsed();
    pair("promote").await;
    let promoted = killed.elapsed();
    let took = accepted_again(&deployment.url("command"), killed).await;
    eprintln!(
        "-- after the kill: the primary's processes gone in {dead:?}, the standby promoted in {promoted:?}, \
         a command accepted in {took:?}"
    );
    for name in ["command", "relay"] {
        eprintln!("-- {name}'s log since the kill: {}", troubles(&deployment.log(name), &since));
    }
    pair("start").await;
    Measured { took, what: "commands accepted again" }
}

/// Registers a product of its own until the command process accepts it
/// (every try with one idempotency key, so a try whose answer was lost
/// counts once); the time from `since` to that answer.
async fn accepted_again(command: &str, since: Instant) -> Duration {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("an HTTP client");
    let sku = format!("FAILOVER-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let body = json!({ "sku": sku, "name": "Failover probe", "price_cents": 100, "stock": 1 });
    let mut last = String::new();
    let mut tries = Vec::new();
    while since.elapsed() < LIMIT {
        if !last.is_empty() {
            tries.push(format!(
                "{:.1}s {}",
                since.elapsed().as_secs_f64(),
                last.chars().take(60).collect::<String>()
            ));
        }
        let sent = client
            .post(format!("{command}/api/products"))
            .header("Idempotency-Key", format!("probe-{sku}"))
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status() == StatusCode::CREATED => {
                eprintln!("-- the probe's tries before: {}", tries.join(" | "));
                return since.elapsed();
            }
            Ok(answer) => last = format!("{}: {}", answer.status(), answer.text().await.unwrap_or_default()),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no command accepted within {LIMIT:?} of the primary's loss; the last answer: {last}");
}

/// What a process logged from `since` (an RFC 3339 time) on: its lines about
/// the primary, and how many warnings and errors, with the last of them.
fn troubles(log: &str, since: &str) -> String {
    let lines: Vec<&str> =
        log.lines().filter(|line| line.get(..since.len()).is_some_and(|at| at >= since)).collect();
    let primary: Vec<&str> = lines.iter().copied().filter(|line| line.contains("primary")).collect();
    let bad: Vec<&str> =
        lines.iter().copied().filter(|line| line.contains(" WARN ") || line.contains(" ERROR ")).collect();
    let last = bad.last().map_or_else(|| "none".to_owned(), |line| line.chars().take(300).collect());
    format!("{} warnings and errors, the last: {last}\n{}", bad.len(), primary.join("\n"))
}
