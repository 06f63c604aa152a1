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
