//! The thin loop around a log-driven worker's step: wait on the log when
//! caught up, back off after failures, stop on cancel.

use std::future::Future;
use std::time::Duration;

use parallax_core::{EventLog, Position};
use tokio_util::sync::CancellationToken;

use crate::projector::error_chain;
use crate::retry::Backoff;
use crate::status::{WorkerState, WorkerStatus};

/// How long a caught-up worker waits on the log before looking again anyway
/// (a writer in another process does not wake it).
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// What one step did.
pub(crate) enum Step {
    /// It covered events up to this position; step again at once.
    Progressed(Position),
    /// Nothing after this position yet.
    CaughtUp(Position),
}

/// Runs `step` until `cancel`, reporting on `status`.
pub(crate) async fn drive<F, Fut, E>(
    kind: &'static str,
    name: &str,
    log: &dyn EventLog,
    status: &WorkerStatus,
    cancel: &CancellationToken,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Step, E>>,
    E: std::error::Error + 'static,
{
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(5));
    tracing::info!(kind, name, "started");
    while !cancel.is_cancelled() {
        match step().await {
            Ok(Step::Progressed(at)) => {
                backoff.succeeded();
                status.reached(at);
            }
            Ok(Step::CaughtUp(at)) => {
                backoff.succeeded();
                status.reached(at);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = log.wait_beyond(at, IDLE_WAIT) => {}
                }
            }
            Err(error) => {
                status.failed(&error);
                let delay = backoff.failed();
                tracing::warn!(kind, name, error = %error_chain(&error), ?delay, "batch failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    status.set(WorkerState::Stopped);
    tracing::info!(kind, name, "stopped");
}
