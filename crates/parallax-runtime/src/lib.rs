//! # parallax-runtime
//!
//! The engines that drive Parallax's ports, in the order of the data flow:
//! ① [`command`] (command handler with a hot aggregate cache, optimistic
//! append, bounded retry, snapshots, idempotency keys), ③ [`relay`] (event
//! store → broker under a lease), ⑤ [`projector`] (projection step and
//! loop, checkpoint committed with the views, bounded attempts before an
//! event is dead-lettered) and [`dead_letters`] (retrying one after a fix),
//! [`process`] (process managers: events in, commands out), and ⑦
//! [`consistency`] (bounded waits for consistency tokens). [`status`] tells
//! what each worker loop is doing (for readiness probes and metrics).
//!
//! Every worker is a public, deterministic step function (`project_batch`,
//! `process_batch`) plus a thin `run(cancel)` loop with backoff; tests call
//! the step, production runs the loop.
//!
//! Depends on `parallax-core` and tokio; never on a database driver.
//!
//! ## A command, its event, a view, a query
//!
//! The engines on embedded SQLite (a distributed service swaps in
//! `parallax-postgres`, `parallax-kafka` and `parallax-cassandra`; a unit
//! test, the stores in memory of `parallax-testing`): a [`CommandHandler`]
//! decides and appends, a [`Projector`] folds the log
//! into a view and commits it with its checkpoint, and a query reads the
//! view.
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use parallax_core::{Aggregate, Codec, DocKey, DomainEvent, EventRecord, Projection};
//! use parallax_core::{ProjectionError, View, ViewReaderExt, ViewSpec, ViewTx};
//! use parallax_runtime::{CommandContext, CommandError, CommandHandler, Projector};
//! use parallax_sqlite::{SqliteEventStore, SqliteReadStore};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! #[serde(tag = "type", content = "data")]
//! enum Event {
//!     #[serde(rename = "counter.added")]
//!     Added { n: u32 },
//! }
//!
//! impl DomainEvent for Event {
//!     fn event_type(&self) -> &'static str {
//!         "counter.added"
//!     }
//! }
//!
//! /// A counter that never passes 10.
//! #[derive(Debug, Default, Clone, Serialize, Deserialize)]
//! struct Counter {
//!     total: u32,
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("the counter would pass 10")]
//! struct TooMany;
//!
//! impl Aggregate for Counter {
//!     const STREAM_TYPE: &'static str = "counter";
//!     type Command = u32;
//!     type Event = Event;
//!     type Error = TooMany;
//!
//!     fn handle(&self, n: &u32) -> Result<Vec<Event>, TooMany> {
//!         if self.total + n > 10 { Err(TooMany) } else { Ok(vec![Event::Added { n: *n }]) }
//!     }
//!
//!     fn apply(&mut self, Event::Added { n }: &Event) {
//!         self.total += n;
//!     }
//! }
//!
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! struct Total {
//!     total: u32,
//! }
//!
//! const TOTALS: View<Total> = View::owned("totals");
//!
//! struct Totals;
//!
//! #[async_trait]
//! impl Projection for Totals {
//!     fn name(&self) -> &'static str {
//!         "totals"
//!     }
//!
//!     fn views(&self) -> Vec<ViewSpec> {
//!         vec![TOTALS.spec()]
//!     }
//!
//!     async fn apply(&self, tx: &mut ViewTx<'_>, record: &EventRecord) -> Result<(), ProjectionError> {
//!         let Event::Added { n } =
//!             Codec::<Event>::new().decode_record(record).map_err(|e| ProjectionError::Poison(e.to_string()))?;
//!         let key = DocKey::partition(record.stream_in("counter").unwrap_or_default());
//!         let mut total = tx.get(&TOTALS, &key).await?.unwrap_or_default();
//!         total.total += n;
//!         tx.put(&TOTALS, key, &total);
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let events = SqliteEventStore::open(&dir.path().join("events.db"))?;
//! let views = Arc::new(SqliteReadStore::open(&dir.path().join("views.db"))?);
//! let counters = CommandHandler::<Counter>::new(Arc::new(events.clone()));
//!
//! counters.execute("a", &7, &CommandContext::new()).await?;
//! let refused = counters.execute("a", &4, &CommandContext::new()).await;
//! assert!(matches!(refused, Err(CommandError::Domain(TooMany))));
//!
//! let projector = Projector::new(Arc::new(Totals), Arc::new(events.log()), views.clone());
//! projector.catch_up().await?;
//! let total = views.get_doc(&TOTALS, &DocKey::partition("a")).await?;
//! assert_eq!(total.map(|t| t.total), Some(7));
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

pub mod command;
pub mod relay;
pub mod projector;
pub mod dead_letters;
pub mod process;
pub mod consistency;
pub mod generations;
pub mod retry;
pub mod status;
pub mod check;
mod worker;

pub use command::{CommandContext, CommandError, CommandHandler, Executed, Hydrated, LoadError, Lookups};
pub use consistency::{Freshness, Progress, WaitError};
pub use dead_letters::{retry_dead_letter, DeadLetterId, DeadLetterIdError, RetryError, RetryOutcome};
pub use generations::{ActiveGenerations, Generation, GenerationStore, Generations, Supervisor};
pub use process::{ProcessError, ProcessManager, ProcessRunner};
pub use projector::{error_chain, BatchOutcome, PartitionGap, Projector, ProjectorError};
pub use relay::{Relay, RelayError};
pub use retry::RetryPolicy;
pub use status::{WorkerReport, WorkerState, WorkerStatus};
pub use tokio_util::sync::CancellationToken;
