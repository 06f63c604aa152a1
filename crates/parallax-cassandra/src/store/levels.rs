//! The consistency levels the store reads and writes at: parsed from their
//! CQL names, and what they ask of a replication factor.

use scylla::statement::{Consistency, SerialConsistency};

/// The levels a store may be configured with, by their CQL names.
const ACCEPTED: &[(&str, Consistency)] = &[
    ("ONE", Consistency::One),
    ("TWO", Consistency::Two),
    ("THREE", Consistency::Three),
    ("QUORUM", Consistency::Quorum),
    ("ALL", Consistency::All),
    ("LOCAL_QUORUM", Consistency::LocalQuorum),
    ("LOCAL_ONE", Consistency::LocalOne),
];

/// A consistency level name the store cannot read and write at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}; use one of ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, LOCAL_ONE")]
pub struct ConsistencyError {
    reason: String,
}

/// The level named `name` (its CQL name, any case: `LOCAL_QUORUM`,
/// `local_quorum`). Refused: names that are no level, and the levels no
/// read can use (`ANY`, `EACH_QUORUM`) or that only serial reads and
/// lightweight transactions use (`SERIAL`, `LOCAL_SERIAL`: the store picks
/// those itself).
pub fn parse_consistency(name: &str) -> Result<Consistency, ConsistencyError> {
    let wanted = name.trim().to_ascii_uppercase();
    if let Some((_, level)) = ACCEPTED.iter().find(|(known, _)| *known == wanted) {
        return Ok(*level);
    }
    let reason = match wanted.as_str() {
        "ANY" | "EACH_QUORUM" => {
            format!("consistency {wanted} is for writes only: the read store reads at its one level too")
        }
        "SERIAL" | "LOCAL_SERIAL" => format!(
            "consistency {wanted} is a serial level: the store's lightweight transactions use it by \
             themselves (LOCAL_SERIAL, or SERIAL under QUORUM or ALL)"
        ),
        _ => format!("{name:?} is not a Cassandra consistency level"),
    };
    Err(ConsistencyError { reason })
}

/// The serial level that goes with `consistency`: `SERIAL` for the levels
/// that span datacenters, else `LOCAL_SERIAL`.
pub(super) fn serial_for(consistency: Consistency) -> SerialConsistency {
    match consistency {
        Consistency::Quorum | Consistency::All | Consistency::EachQuorum | Consistency::Serial => {
            SerialConsistency::Serial
        }
        _ => SerialConsistency::LocalSerial,
    }
}

/// The levels of a store's statements.
#[derive(Debug, Clone, Copy)]
pub(super) struct Levels {
    /// Every plain read and write.
    pub(super) consistency: Consistency,
    /// Lightweight transactions' Paxos rounds and serial reads.
    pub(super) serial: SerialConsistency,
}

impl Levels {
    pub(super) fn new(consistency: Consistency) -> Self {
        Self { consistency, serial: serial_for(consistency) }
    }

    /// The level of a serial read.
    pub(super) fn serial_read(self) -> Consistency {
        match self.serial {
            SerialConsistency::Serial => Consistency::Serial,
            SerialConsistency::LocalSerial => Consistency::LocalSerial,
        }
    }

    /// How many of `replication_factor` replicas a read or write at this
    /// level waits for (one datacenter).
    pub(super) fn replicas(self, replication_factor: u32) -> u32 {
        match self.consistency {
            Consistency::Any | Consistency::One | Consistency::LocalOne => 1,
            Consistency::Two => 2,
            Consistency::Three => 3,
            Consistency::All => replication_factor,
            _ => replication_factor / 2 + 1,
        }
    }

    /// Why this level cannot serve a keyspace of `replication_factor`
    /// replicas as the crate docs require, if it cannot: more replicas than
    /// there are (every request fails), or reads that need not meet the
    /// last write (a replayed event could be applied again).
    pub(super) fn unfit_for(self, replication_factor: u32) -> Option<String> {
        let replicas = self.replicas(replication_factor);
        if replicas > replication_factor {
            return Some(format!(
                "consistency {:?} waits for {replicas} replicas, the keyspace keeps {replication_factor}",
                self.consistency
            ));
        }
        (2 * replicas <= replication_factor).then(|| {
            format!(
                "consistency {:?} reads and writes {replicas} of {replication_factor} replicas: a read may \
                 miss the last write, and exactly-once needs them to overlap (use LOCAL_QUORUM)",
                self.consistency
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_any_case_and_others_are_refused_saying_why() {
        assert_eq!(parse_consistency("LOCAL_QUORUM"), Ok(Consistency::LocalQuorum));
        assert_eq!(parse_consistency(" quorum "), Ok(Consistency::Quorum));
        assert_eq!(parse_consistency("local_one"), Ok(Consistency::LocalOne));
        let typo = parse_consistency("LOCAL_QUOROM").expect_err("a typo");
        assert_eq!(
            typo.to_string(),
            "\"LOCAL_QUOROM\" is not a Cassandra consistency level; use one of ONE, TWO, THREE, QUORUM, ALL, \
             LOCAL_QUORUM, LOCAL_ONE"
        );
        assert!(parse_consistency("any")
            .expect_err("ANY")
            .to_string()
            .starts_with("consistency ANY is for writes"));
        assert!(parse_consistency("SERIAL").expect_err("SERIAL").to_string().contains("serial level"));
        assert!(parse_consistency("").is_err());
    }

    #[test]
    fn serial_levels_follow_the_scope_of_the_level() {
        assert_eq!(serial_for(Consistency::LocalQuorum), SerialConsistency::LocalSerial);
        assert_eq!(serial_for(Consistency::Quorum), SerialConsistency::Serial);
        assert_eq!(Levels::new(Consistency::All).serial_read(), Consistency::Serial);
    }

    #[test]
    fn a_level_must_overlap_its_writes_and_fit_the_replicas() {
        let quorum = Levels::new(Consistency::LocalQuorum);
        assert_eq!(quorum.replicas(3), 2);
        assert_eq!(quorum.unfit_for(3), None);
        assert_eq!(quorum.unfit_for(1), None);
        assert_eq!(Levels::new(Consistency::One).unfit_for(1), None);
        assert!(Levels::new(Consistency::One).unfit_for(3).is_some_and(|why| why.contains("overlap")));
        assert!(Levels::new(Consistency::Three).unfit_for(1).is_some_and(|why| why.contains("keeps 1")));
        assert_eq!(Levels::new(Consistency::All).unfit_for(3), None);
    }
}
