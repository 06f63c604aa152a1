//! Retrying a dead letter after a fix.
//!
//! A dead letter is an event a projection failed to apply at its last
//! attempt (see [`crate::projector`]). Once the projection's code is fixed,
//! or whatever it tripped on is back, [`retry_dead_letter`] reads the event at
//! the dead letter's position from the event log, applies it with the
//! current code through a [`ViewTx`], and commits the view writes together
//! with the removal of the dead letter: in one transaction, and only if the
//! dead letter is still there. Two concurrent retries of one dead letter
//! therefore apply it once, and a retry that fails again changes nothing.
//!
//! A retried event is applied on the views' *current* state, after every
//! event the projection absorbed since it failed: out of its original order.
//! That is right for an event whose effect does not depend on what came
//! after it, and wrong for one whose effect later events built on. Rebuilding
//! the projection in a new generation ([`crate::generations`]; `shop rebuild
//! <projection>` in the shop) replays every event in order with the current
//! code: the order-preserving way.
//!
//! The read store must commit atomically (SQLite, PostgreSQL). A store
//! without transactions (Cassandra) is refused: a crash between the writes
//! and the removal of the dead letter would let a second retry apply the
//! event twice.
//!
//! A retry runs beside the projectors. Its commit is guarded by the
//! revisions of the documents it read, and a projector's batches guard
//! theirs while the projection has dead letters (see [`crate::projector`]),
//! so neither overwrites the other; the loser computes again.
//!
//! Dead letters are named `<projection>@<position>` ([`DeadLetterId`]). With
//! generations, a projection's dead letters are stored under its active
//! generation's name: retry through [`crate::GenerationStore`] for that
//! generation.

use std::fmt;
use std::str::FromStr;

use parallax_core::read_store::DeadLetter;
use parallax_core::{EventLog, LogError, Position, Projection, ReadStore, ReadStoreError, ViewBatch, ViewTx};

use crate::projector::{apply_caught, ApplyFailure};

/// How often a retry computes again when a projector changed a document it
/// read before it could commit.
const CONFLICT_ATTEMPTS: u32 = 10;

/// A dead letter's name: `<projection>@<position>`, e.g. `orders@1234`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeadLetterId {
    /// The projection (its logical name, whatever its generation).
    pub projection: String,
    /// The position of the event it could not apply.
    pub position: Position,
}

impl DeadLetterId {
    /// The id of `letter`.
    pub fn of(letter: &DeadLetter) -> Self {
        Self { projection: letter.projection.clone(), position: letter.position }
    }
}

impl fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.projection, self.position)
    }
}

/// A string that is not a [`DeadLetterId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a dead letter id: {reason}; an id is `<projection>@<position>`, e.g. `orders@1234`"
)]
pub struct DeadLetterIdError {
    input: String,
    reason: &'static str,
}

impl FromStr for DeadLetterId {
    type Err = DeadLetterIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let refuse = |reason| DeadLetterIdError { input: input.to_owned(), reason };
        let (projection, position) = input.rsplit_once('@').ok_or_else(|| refuse("it has no '@'"))?;
        if projection.is_empty() {
            return Err(refuse("the projection before '@' is empty"));
        }
        if position.is_empty() || !position.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse("the position after '@' is not a whole number"));
        }
        let position: Position =
            position.parse().map_err(|_| refuse("the position after '@' is too large"))?;
        if position == 0 {
            return Err(refuse("positions start at 1"));
        }
        Ok(Self { projection: projection.to_owned(), position })
    }
}

/// What a successful retry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOutcome {
    /// The dead letter, now removed.
    pub letter: DeadLetter,
    /// Documents the event wrote (put or deleted); 0 if the current code
    /// ignores it.
    pub writes: usize,
}

/// Why a dead letter was not retried. Nothing changed in any case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetryError {
    /// The projection has no dead letter there.
    #[error("{projection} has no dead letter at position {position}: it never failed there, or was retried already")]
    NotFound {
        /// The projection.
        projection: String,
        /// The position asked for.
        position: Position,
    },
    /// The read store commits without transactions.
    #[error(
        "retrying a dead letter of {projection} needs a read store whose commits are transactions, and this \
         one's are not (Cassandra): rebuild the projection instead, which replays every event in order \
         with the current code"
    )]
    NotAtomic {
        /// The projection.
        projection: String,
    },
    /// The event log has no event at the dead letter's position.
    #[error("the event log has no event at position {position}, where {projection} has a dead letter")]
    EventMissing {
        /// The projection.
        projection: String,
        /// The dead letter's position.
        position: Position,
    },
    /// The event at the position is not the one that was dead-lettered.
    #[error("the event at position {position} is {found}, not {expected}, the event dead-lettered there")]
    EventMismatch {
        /// The position.
        position: Position,
        /// The dead letter's event id.
        expected: uuid::Uuid,
        /// The id of the event the log has there.
        found: uuid::Uuid,
    },
    /// The projection still fails on the event: the dead letter stays.
    #[error(
        "{projection} still fails to apply the event at position {position} ({event_type}): {error}; \
         the dead letter stays"
    )]
    StillFails {
        /// The projection.
        projection: String,
        /// The event's position.
        position: Position,
        /// The event's type.
        event_type: String,
        /// What the projection said, or its panic's message.
        error: String,
    },
    /// Another retry removed the dead letter between this one's read and
    /// its commit (or its generation was dropped): this one applied nothing.
    #[error("the dead letter {projection}@{position} was resolved by another retry meanwhile; this one applied nothing")]
    ResolvedMeanwhile {
        /// The projection.
        projection: String,
        /// The dead letter's position.
        position: Position,
    },
    /// The event log could not be read.
    #[error("reading the event log")]
    Log(#[from] LogError),
    /// The read store failed.
    #[error("the read store")]
    ReadStore(#[from] ReadStoreError),
}

/// Applies the event of `projection`'s dead letter at `position` with the
/// current code and removes the dead letter, atomically, if it is still
/// there; see the module docs. `store` is the store as the projection's
/// projector sees it (its active generation), `log` the event log the
/// event is read from.
pub async fn retry_dead_letter(
    projection: &dyn Projection,
    log: &dyn EventLog,
    store: &dyn ReadStore,
    position: Position,
) -> Result<RetryOutcome, RetryError> {
    let name = projection.name();
    if !store.commits_atomically() {
        return Err(RetryError::NotAtomic { projection: name.to_owned() });
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let letter = store
            .dead_letters(name)
            .await?
            .into_iter()
            .find(|letter| letter.position == position)
            .ok_or_else(|| RetryError::NotFound { projection: name.to_owned(), position })?;
        let event = log
            .read(position.saturating_sub(1), 1)
            .await?
            .into_iter()
            .find(|event| event.position == position)
            .ok_or_else(|| RetryError::EventMissing { projection: name.to_owned(), position })?;
        if event.event_id != letter.event_id {
            return Err(RetryError::EventMismatch {
                position,
                expected: letter.event_id,
                found: event.event_id,
            });
        }
        let mut tx = ViewTx::new(store);
        if projection.handles(&event.event_type) {
            tx.prefetch(projection, [&event]).await?;
        }
        match apply_caught(projection, &mut tx, &event).await {
            Ok(()) => {}
            Err(ApplyFailure::Store(error)) => return Err(error.into()),
            Err(ApplyFailure::Failed(error)) => {
                return Err(RetryError::StillFails {
                    projection: name.to_owned(),
                    position,
                    event_type: event.event_type,
                    error,
                })
            }
        }
        let (writes, reads) = tx.into_writes();
        let written = writes.len();
        let batch = ViewBatch {
            projection: name.to_owned(),
            checkpoints: Vec::new(),
            reads,
            writes,
            dead_letters: Vec::new(),
            resolved_dead_letters: vec![position],
        };
        match store.commit(batch).await {
            Ok(()) => {
                tracing::info!(
                    projection = name,
                    position,
                    event_type = %letter.event_type,
                    writes = written,
                    "dead letter retried and removed"
                );
                return Ok(RetryOutcome { letter, writes: written });
            }
            Err(ReadStoreError::DeadLetterMissing { .. }) => {
                return Err(RetryError::ResolvedMeanwhile { projection: name.to_owned(), position })
            }
            Err(error @ ReadStoreError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => {
                tracing::debug!(projection = name, position, %error, "a projector wrote first; retrying again");
            }
            Err(error) => return Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse() {
        let id: DeadLetterId = "orders@1234".parse().expect("an id");
        assert_eq!(id, DeadLetterId { projection: "orders".into(), position: 1234 });
        assert_eq!(id.to_string(), "orders@1234");
        let generation: DeadLetterId = "a@b@7".parse().expect("the last '@' separates");
        assert_eq!((generation.projection.as_str(), generation.position), ("a@b", 7));
    }

    #[test]
    fn malformed_ids_say_why() {
        for (input, reason) in [
            ("orders", "has no '@'"),
            ("@12", "projection before '@' is empty"),
            ("orders@", "not a whole number"),
            ("orders@-1", "not a whole number"),
            ("orders@1.5", "not a whole number"),
            ("orders@99999999999999999999999", "too large"),
            ("orders@0", "start at 1"),
        ] {
            let error = input.parse::<DeadLetterId>().expect_err(input).to_string();
            assert!(error.contains(reason), "{input}: {error}");
            assert!(error.contains("`<projection>@<position>`"), "{input}: {error}");
        }
    }
}
