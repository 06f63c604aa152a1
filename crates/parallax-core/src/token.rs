//! ⑦ Consistency tokens: what a command's answer carries so that a later
//! query can wait until its view has absorbed the command's events.
//!
//! A token is opaque to clients. Today it names the global position of the
//! command's last event; a view has absorbed it once the view's projection
//! checkpoint is at or beyond that position.

use std::fmt;
use std::str::FromStr;

use crate::event::Position;

/// The write a client wants to see reflected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsistencyToken {
    /// Global position of the last event of the write.
    pub position: Position,
}

const PREFIX: &str = "p1.";

impl ConsistencyToken {
    /// The token for a write whose last event is at `position`.
    pub fn at(position: Position) -> Self {
        Self { position }
    }

    /// Whether a view whose checkpoint is `checkpoint` has absorbed this write.
    pub fn absorbed_by(&self, checkpoint: Position) -> bool {
        checkpoint >= self.position
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.position)
    }
}

/// A token that does not parse.
#[derive(Debug, Clone, thiserror::Error)]
#[error("malformed consistency token {0:?}")]
pub struct TokenError(pub String);

impl FromStr for ConsistencyToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix(PREFIX)
            .and_then(|n| n.parse().ok())
            .map(Self::at)
            .ok_or_else(|| TokenError(s.to_owned()))
    }
}
