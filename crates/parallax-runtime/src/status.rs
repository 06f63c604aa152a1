//! What each worker loop of this process is doing, for readiness probes and
//! metrics: every engine ([`Relay`](crate::Relay),
//! [`Projector`](crate::Projector), [`ProcessRunner`](crate::ProcessRunner))
//! keeps a [`WorkerStatus`] that its `run` loop updates after every step, and
//! hands out through `status()`. Reading it costs a lock, no I/O.

use std::sync::{Mutex, PoisonError};

use parallax_core::Position;

/// The state of a worker loop.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerState {
    /// Its loop has not completed a step yet.
    Starting,
    /// Its last step succeeded.
    Running,
    /// Waiting for the lease another process holds (relay, leased process
    /// manager): ready to take over.
    Standby,
    /// Its last step failed; it retries with backoff. The error, with its causes.
    Failing(String),
    /// Its loop has ended (the process is shutting down).
    Stopped,
}

impl WorkerState {
    /// Whether the worker does its job (or stands by for it): running or on standby.
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Running | Self::Standby)
    }

    /// A one-word name: `starting`, `running`, `standby`, `failing`, `stopped`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Standby => "standby",
            Self::Failing(_) => "failing",
            Self::Stopped => "stopped",
        }
    }
}

/// A worker's state as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerReport {
    /// What kind of worker: `relay`, `projector`, `process manager`.
    pub kind: &'static str,
    /// Its name (the projection's, the lease's, the process manager's).
    pub name: String,
    /// What it is doing.
    pub state: WorkerState,
    /// How far it got, where that is one position: the last position the
    /// relay published, the process manager's checkpoint.
    pub position: Option<Position>,
}

/// The shared, updatable state of one worker.
#[derive(Debug)]
pub struct WorkerStatus {
    report: Mutex<WorkerReport>,
}

impl WorkerStatus {
    /// A worker of `kind` named `name`, starting.
    pub fn new(kind: &'static str, name: impl Into<String>) -> Self {
        Self {
            report: Mutex::new(WorkerReport {
                kind,
                name: name.into(),
                state: WorkerState::Starting,
                position: None,
            }),
        }
    }

    /// A copy of the current report.
    pub fn report(&self) -> WorkerReport {
        self.report.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records the worker's state.
    pub fn set(&self, state: WorkerState) {
        self.report.lock().unwrap_or_else(PoisonError::into_inner).state = state;
    }

    /// Records a successful step that got to `position`.
    pub fn reached(&self, position: Position) {
        let mut report = self.report.lock().unwrap_or_else(PoisonError::into_inner);
        report.state = WorkerState::Running;
        report.position = Some(position);
    }

    /// Records a failed step.
    pub fn failed(&self, error: &(dyn std::error::Error + 'static)) {
        self.set(WorkerState::Failing(crate::error_chain(error)));
    }
}
