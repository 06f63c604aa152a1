//! # parallax-core
//!
//! The vocabulary and the ports of Parallax, in the order of the data flow:
//!
//! ① [`aggregate`] decides, ② [`event`], [`codec`] and [`store`] record,
//! ③④ [`log`] carries (with [`lease`] electing one relay), ⑤ [`projection`] applies, ⑥ [`read_store`] keeps the
//! views, ⑦ [`token`] lets a query wait for a command's effect; [`trace`]
//! carries one W3C trace context along the whole flow; [`keys`] seals personal
//! data under a key per data subject, so destroying the key erases it (crypto-shredding).
//!
//! This crate is pure: no async runtime, no database driver, no I/O. Ports are
//! small object-safe traits (`Arc<dyn EventStore>`) that move type-erased
//! [`event::EventRecord`]s; typed serde happens in one place, the
//! [`codec::Codec`]. Adapters (`parallax-sqlite`, ...) implement the ports;
//! engines (`parallax-runtime`) drive them.
//!
//! ## The write side: an aggregate
//!
//! An [`Aggregate`] decides from its own state alone and records events;
//! `parallax_runtime::CommandHandler` loads it from an [`EventStore`], runs
//! `handle` and appends the events, retrying on a concurrent append.
//!
//! ```
//! use parallax_core::{Aggregate, DomainEvent};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! #[serde(tag = "type")]
//! enum AccountEvent {
//!     #[serde(rename = "account.deposited")]
//!     Deposited { cents: i64 },
//!     #[serde(rename = "account.withdrawn")]
//!     Withdrawn { cents: i64 },
//! }
//!
//! impl DomainEvent for AccountEvent {
//!     fn event_type(&self) -> &'static str {
//!         match self {
//!             Self::Deposited { .. } => "account.deposited",
//!             Self::Withdrawn { .. } => "account.withdrawn",
//!         }
//!     }
//! }
//!
//! enum AccountCommand {
//!     Deposit(i64),
//!     Withdraw(i64),
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! enum Refused {
//!     #[error("an amount is positive")]
//!     NotPositive,
//!     #[error("the balance is {0} cents")]
//!     Insufficient(i64),
//! }
//!
//! #[derive(Default, Clone, Serialize, Deserialize)]
//! struct Account {
//!     balance: i64,
//! }
//!
//! impl Aggregate for Account {
//!     const STREAM_TYPE: &'static str = "account";
//!     type Command = AccountCommand;
//!     type Event = AccountEvent;
//!     type Error = Refused;
//!
//!     fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, Refused> {
//!         match *command {
//!             AccountCommand::Deposit(cents) | AccountCommand::Withdraw(cents) if cents <= 0 => {
//!                 Err(Refused::NotPositive)
//!             }
//!             AccountCommand::Deposit(cents) => Ok(vec![AccountEvent::Deposited { cents }]),
//!             AccountCommand::Withdraw(cents) if cents > self.balance => Err(Refused::Insufficient(self.balance)),
//!             AccountCommand::Withdraw(cents) => Ok(vec![AccountEvent::Withdrawn { cents }]),
//!         }
//!     }
//!
//!     fn apply(&mut self, event: &AccountEvent) {
//!         match event {
//!             AccountEvent::Deposited { cents } => self.balance += cents,
//!             AccountEvent::Withdrawn { cents } => self.balance -= cents,
//!         }
//!     }
//! }
//!
//! let mut account = Account::default();
//! for event in account.handle(&AccountCommand::Deposit(500)).unwrap() {
//!     account.apply(&event);
//! }
//! assert!(matches!(account.handle(&AccountCommand::Withdraw(900)), Err(Refused::Insufficient(500))));
//! assert_eq!(Account::stream_id("42"), "account-42");
//! ```
//!
//! ## The read side: a projection
//!
//! A [`Projection`] folds events into views, declared once as typed
//! [`View`] constants. The projector (`parallax_runtime::Projector`) hands
//! it a [`ViewTx`] per batch and commits the batch's writes with the
//! projection's checkpoint ([`ViewCommitter::commit`]); queries read the
//! same views through a [`ViewReader`].
//!
//! ```
//! use async_trait::async_trait;
//! use parallax_core::{DocKey, EventRecord, Projection, ProjectionError, View, ViewSpec, ViewTx};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Balance {
//!     cents: i64,
//! }
//!
//! /// Balances by account.
//! const BALANCES: View<Balance> = View::owned("balances");
//!
//! struct Balances;
//!
//! #[async_trait]
//! impl Projection for Balances {
//!     fn name(&self) -> &'static str {
//!         "balances"
//!     }
//!
//!     fn views(&self) -> Vec<ViewSpec> {
//!         vec![BALANCES.spec()]
//!     }
//!
//!     fn event_types(&self) -> Option<&'static [&'static str]> {
//!         Some(&["account.deposited", "account.withdrawn"])
//!     }
//!
//!     async fn apply(&self, tx: &mut ViewTx<'_>, event: &EventRecord) -> Result<(), ProjectionError> {
//!         let account = event
//!             .stream_in("account")
//!             .ok_or_else(|| ProjectionError::Poison(format!("{} is not an account", event.stream_id)))?;
//!         let cents: i64 = serde_json::from_str::<serde_json::Value>(&event.payload)
//!             .ok()
//!             .and_then(|payload| payload["cents"].as_i64())
//!             .ok_or_else(|| ProjectionError::Poison("no cents".into()))?;
//!         let key = DocKey::partition(account);
//!         let mut balance = tx.get(&BALANCES, &key).await?.unwrap_or_default();
//!         balance.cents += if event.event_type == "account.deposited" { cents } else { -cents };
//!         tx.put(&BALANCES, key, &balance);
//!         Ok(())
//!     }
//! }
//! ```
#![warn(missing_docs)]

pub mod aggregate;
pub mod event;
pub mod codec;
pub mod store;
pub mod log;
pub mod lease;
pub mod projection;
pub mod read_store;
pub mod view;
pub mod tenant;
pub mod token;
pub mod trace;
pub mod keys;

pub use aggregate::Aggregate;
pub use codec::{Codec, CodecError, DomainEvent, EventSchema, Upcaster};
pub use event::{EventRecord, Metadata, NewEvent, Position, StreamId};
pub use keys::{DataKey, KeyStore, KeyStoreError, OpenError, ERASED};
pub use lease::{Lease, LeaseError, Leases};
pub use log::{
    partition_for, Checkpoint, EventLog, EventSink, EventSource, LogError, LogSource, Outgoing, Partition,
    SourceBatch, SourcedEvent,
};
pub use projection::{Projection, ProjectionError, ViewTx};
pub use read_store::{
    furthest, CheckpointMove, ClusteringRange, DeadLetter, DocKey, Document, Page, ReadGuard, ReadStore,
    ReadStoreError, ReadStoreExt, ReadStoreLayer, Revision, Stamp, StoredDocument, ViewAdmin, ViewBatch,
    ViewCommitter, ViewReader, ViewReaderExt, ViewWrite,
};
pub use store::{
    AppendError, AppendOutcome, AppendRequest, EventStore, ExpectedVersion, IdempotencyRecord, Snapshot,
    StoreError, StoredIdempotency, StreamVersion,
};
pub use tenant::{Tenant, TenantError};
pub use token::{ConsistencyToken, TokenError};
pub use trace::{SpanId, TraceId, TraceParent, TraceParentError};
pub use view::{name_problem, View, ViewId, ViewSpec};
