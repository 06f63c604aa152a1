//! Driver errors at the adapter's boundary.

use parallax_core::{ReadStoreError, StoreError};

/// A store error naming what failed, with the driver's error as its cause.
pub(crate) fn store_error(what: impl Into<String>, error: sqlx::Error) -> StoreError {
    StoreError::new(what, error)
}

/// A read store error naming what failed, with the driver's error as its cause.
pub(crate) fn read_error(what: impl Into<String>, error: sqlx::Error) -> ReadStoreError {
    ReadStoreError::store(what, error)
}

/// Whether the database rolled the transaction back in a way that makes a
/// retry safe and likely to succeed: a deadlock or a serialization failure.
pub(crate) fn is_retryable(error: &sqlx::Error) -> bool {
    sql_state(error).is_some_and(|code| matches!(code.as_str(), "40P01" | "40001"))
}

/// Whether the database refused a row because of a unique constraint.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    sql_state(error).is_some_and(|code| code == "23505")
}

fn sql_state(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}
