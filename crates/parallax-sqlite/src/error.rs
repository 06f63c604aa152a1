//! How SQLite failures become the ports' errors.
//!
//! Every driver error is wrapped with a present-tense description of what was
//! being done ("read stream cart-1"); `Display` prints that, and the driver's
//! own message stays reachable through `source()`. Values read from disk that
//! do not decode are driver errors too (`FromSqlConversionFailure`), never
//! panics.

use std::fmt;
use std::sync::Arc;

use parallax_core::{ReadStoreError, StoreError};

/// The error type of a port, built from this crate's failures.
pub(crate) trait AdapterError: Sized + Send + 'static {
    /// A failure with a cause.
    fn caused(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self;
    /// A failure without a cause.
    fn msg(message: impl Into<String>) -> Self;
}

impl AdapterError for StoreError {
    fn caused(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::new(context, source)
    }
    fn msg(message: impl Into<String>) -> Self {
        StoreError::msg(message)
    }
}

impl AdapterError for ReadStoreError {
    fn caused(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        ReadStoreError::store(context, source)
    }
    fn msg(message: impl Into<String>) -> Self {
        ReadStoreError::msg(message)
    }
}

/// Whether a statement failed on a UNIQUE or PRIMARY KEY constraint.
pub(crate) fn is_unique_violation(error: &rusqlite::Error) -> bool {
    match error.sqlite_error() {
        Some(e) => {
            e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        }
        None => false,
    }
}

/// One driver failure reported to every request of a group commit.
#[derive(Debug, Clone)]
pub(crate) struct Shared(Arc<rusqlite::Error>);

impl Shared {
    pub(crate) fn new(error: rusqlite::Error) -> Self {
        Self(Arc::new(error))
    }
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
