//! A service of your own on Parallax: bank accounts that refuse to go below
//! zero. One aggregate with a rule, one projection, one query, embedded
//! SQLite, three routes. README.md, "Build your own service", walks through it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Path as Id, Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use parallax_core::{Aggregate, Codec, ConsistencyToken, DocKey, DomainEvent, EventRecord, Projection};
use parallax_core::{ProjectionError, ReadStore, View, ViewReaderExt, ViewSpec, ViewTx};
use parallax_runtime::{CancellationToken, CommandContext, CommandError, CommandHandler};
use parallax_runtime::{Freshness, Progress, Projector};
use parallax_sqlite::{SqliteEventStore, SqliteReadStore};
use serde::{Deserialize, Serialize};

/// What happened to an account: the events, stored and projected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    #[serde(rename = "account.deposited")]
    Deposited { cents: i64 },
    #[serde(rename = "account.withdrawn")]
    Withdrawn { cents: i64 },
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Deposited { .. } => "account.deposited",
            Self::Withdrawn { .. } => "account.withdrawn",
        }
    }
}

/// What a client asks of an account.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Deposit { cents: i64 },
    Withdraw { cents: i64 },
}

/// Why an account refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("an amount must be positive")]
    NotPositive,
    #[error("the balance is {0} cents")]
    Insufficient(i64),
}

/// The write side's state: all a decision needs.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
}

impl Aggregate for Account {
    const STREAM_TYPE: &'static str = "account";
    type Command = Command;
    type Event = Event;
    type Error = Refused;

    fn handle(&self, command: &Command) -> Result<Vec<Event>, Refused> {
        match *command {
            Command::Deposit { cents } | Command::Withdraw { cents } if cents <= 0 => {
                Err(Refused::NotPositive)
            }
            Command::Deposit { cents } => Ok(vec![Event::Deposited { cents }]),
            Command::Withdraw { cents } if cents > self.balance => Err(Refused::Insufficient(self.balance)),
            Command::Withdraw { cents } => Ok(vec![Event::Withdrawn { cents }]),
        }
    }

    fn apply(&mut self, event: &Event) {
        match event {
            Event::Deposited { cents } => self.balance += cents,
            Event::Withdrawn { cents } => self.balance -= cents,
        }
    }
}

/// The read side's document: what the query answers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Balance {
    pub cents: i64,
    pub movements: u64,
}

const BALANCES: View<Balance> = View::owned("balances");

/// Folds the events into one balance document per account.
struct Balances;

#[async_trait]
impl Projection for Balances {
    fn name(&self) -> &'static str {
        "balances"
    }

    fn views(&self) -> Vec<ViewSpec> {
        vec![BALANCES.spec()]
    }

    async fn apply(&self, tx: &mut ViewTx<'_>, record: &EventRecord) -> Result<(), ProjectionError> {
        let poison = |e: &dyn std::error::Error| ProjectionError::Poison(e.to_string());
        let event = Codec::<Event>::new().decode_record(record).map_err(|e| poison(&e))?;
        let account =
            record.stream_in("account").ok_or_else(|| ProjectionError::Poison(record.stream_id.clone()))?;
        let key = DocKey::partition(account);
        let mut balance = tx.get(&BALANCES, &key).await?.unwrap_or_default();
        balance.cents += match event {
            Event::Deposited { cents } => cents,
            Event::Withdrawn { cents } => -cents,
        };
        balance.movements += 1;
        tx.put(&BALANCES, key, &balance);
        Ok(())
    }
}

struct Bank {
    accounts: CommandHandler<Account>,
    views: Arc<dyn ReadStore>,
    freshness: Freshness,
}

type Answer = (StatusCode, Json<serde_json::Value>);

fn fail(status: StatusCode, error: impl ToString) -> Answer {
    (status, Json(serde_json::json!({ "error": error.to_string() })))
}

/// `POST /accounts/{id}`: the answer names the position a read may wait for.
async fn command(State(bank): State<Arc<Bank>>, Id(id): Id<String>, Json(command): Json<Command>) -> Answer {
    match bank.accounts.execute(&id, &command, &CommandContext::new()).await {
        Ok(done) => (StatusCode::OK, Json(serde_json::json!({ "position": done.position() }))),
        Err(CommandError::Domain(refused)) => fail(StatusCode::UNPROCESSABLE_ENTITY, refused),
        Err(other) => fail(StatusCode::SERVICE_UNAVAILABLE, other),
    }
}

#[derive(Deserialize)]
struct After {
    after: Option<u64>,
}

/// `GET /accounts/{id}?after=<position>`: the balance, once the view has
/// absorbed `after` (read your own writes).
async fn balance(State(bank): State<Arc<Bank>>, Id(id): Id<String>, Query(q): Query<After>) -> Answer {
    let token = ConsistencyToken::at(0, q.after.unwrap_or(0));
    if let Err(e) = bank.freshness.wait("balances", token, Duration::from_secs(5)).await {
        return fail(StatusCode::SERVICE_UNAVAILABLE, e);
    }
    match bank.views.get_doc(&BALANCES, &DocKey::partition(&id)).await {
        Ok(Some(balance)) => (StatusCode::OK, Json(serde_json::json!(balance))),
        Ok(None) => fail(StatusCode::NOT_FOUND, "no such account"),
        Err(e) => fail(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// The service on the SQLite files of `dir`, its projector running until
/// `stop` is cancelled.
pub fn service(dir: &Path, stop: CancellationToken) -> anyhow::Result<Router> {
    let events = SqliteEventStore::open(&dir.join("events.db"))?;
    let views: Arc<dyn ReadStore> = Arc::new(SqliteReadStore::open(&dir.join("views.db"))?);
    let progress = Arc::new(Progress::default());
    let projector = Projector::new(Arc::new(Balances), Arc::new(events.log()), views.clone())
        .with_progress(progress.clone());
    tokio::spawn(async move { projector.run(stop).await });
    let freshness = Freshness::new(views.clone(), progress);
    let bank = Bank { accounts: CommandHandler::new(Arc::new(events)), views, freshness };
    Ok(Router::new().route("/accounts/{id}", post(command).get(balance)).with_state(Arc::new(bank)))
}
