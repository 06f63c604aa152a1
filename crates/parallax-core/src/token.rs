//! ⑦ Consistency tokens: what a command's answer carries so that a later
//! query can wait until its view has absorbed the command's events.
//!
//! A token is opaque to clients. It names the log partition of the command's
//! stream and the global position of the command's last event. Within a
//! partition events are delivered in position order, so a view has absorbed
//! the write once its projection's checkpoint in that partition is at or
//! beyond the position; this holds across a broker hop as in the embedded
//! log (one partition).
//!
//! A token belongs to the tenant whose command it answers: a named tenant's
//! token carries its name (`p2.{partition}.{position}.{tenant}`), and a query
//! of another tenant refuses it ([`ConsistencyToken::parse_in`]).

use std::fmt;
use std::str::FromStr;

use crate::event::Position;
use crate::log::{Checkpoint, Partition};
use crate::tenant::Tenant;

/// The write a client wants to see reflected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsistencyToken {
    /// The log partition of the write's stream.
    pub partition: Partition,
    /// Global position of the last event of the write.
    pub position: Position,
}

const PREFIX: &str = "p2.";

impl ConsistencyToken {
    /// The token for a write whose last event is at `position` in `partition`.
    pub fn at(partition: Partition, position: Position) -> Self {
        Self { partition, position }
    }

    /// Whether a view whose checkpoint in [`Self::partition`] is `checkpoint`
    /// has absorbed this write.
    pub fn absorbed_by(&self, checkpoint: &Checkpoint) -> bool {
        checkpoint.position >= self.position
    }
}

impl ConsistencyToken {
    /// The token's text for a command of `tenant`.
    pub fn text_in(&self, tenant: &Tenant) -> String {
        match tenant.name() {
            Some(name) => format!("{self}.{name}"),
            None => self.to_string(),
        }
    }

    /// Reads a token's text for a query of `tenant`; a token of another
    /// tenant is refused.
    pub fn parse_in(text: &str, tenant: &Tenant) -> Result<Self, TokenError> {
        let (token, named) = split_tenant(text);
        if named != tenant.name() {
            return Err(TokenError(text.to_owned()));
        }
        token.parse()
    }
}

/// A token's text without its tenant, and the tenant it names: what
/// follows its third `.`, if any.
pub fn split_tenant(text: &str) -> (&str, Option<&str>) {
    match text.match_indices('.').nth(2) {
        Some((at, _)) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}.{}", self.partition, self.position)
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
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(partition, position)| Some(Self::at(partition.parse().ok()?, position.parse().ok()?)))
            .ok_or_else(|| TokenError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let token = ConsistencyToken::at(3, 1_234);
        assert_eq!(token.to_string(), "p2.3.1234");
        assert_eq!("p2.3.1234".parse::<ConsistencyToken>().unwrap(), token);
        for bad in ["", "p2.", "p2.3", "p2.x.4", "p2.3.-1", "p1.5", "3.4"] {
            assert!(bad.parse::<ConsistencyToken>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_tenant_token_names_its_tenant_and_no_other_tenant_reads_it() {
        let acme = Tenant::parse("acme").unwrap();
        let token = ConsistencyToken::at(3, 1_234);
        assert_eq!(token.text_in(&Tenant::DEFAULT), "p2.3.1234");
        assert_eq!(token.text_in(&acme), "p2.3.1234.acme");
        assert_eq!(ConsistencyToken::parse_in("p2.3.1234.acme", &acme).unwrap(), token);
        assert_eq!(ConsistencyToken::parse_in("p2.3.1234", &Tenant::DEFAULT).unwrap(), token);
        assert!(ConsistencyToken::parse_in("p2.3.1234.acme", &Tenant::DEFAULT).is_err());
        assert!(ConsistencyToken::parse_in("p2.3.1234", &acme).is_err());
        assert!(ConsistencyToken::parse_in("p2.3.1234.other", &acme).is_err());
        assert!(
            "p2.3.1234.acme".parse::<ConsistencyToken>().is_err(),
            "a tenant's token is not the default's"
        );
    }

    #[test]
    fn absorbed_once_the_partition_reaches_the_position() {
        let token = ConsistencyToken::at(1, 10);
        assert!(!token.absorbed_by(&Checkpoint { position: 9, offset: 4 }));
        assert!(token.absorbed_by(&Checkpoint { position: 10, offset: 5 }));
        assert!(token.absorbed_by(&Checkpoint { position: 12, offset: 6 }));
    }
}
