//! Checking a service's stores after a run: the parts of a Jepsen-style
//! checker that know only Parallax's ports, so that every service built on
//! them can check itself (`shop check` is built from them).
//!
//! Each part reads; none writes to the stores it checks.
//!
//! - [`settle`] reads the event store to its head and waits until every
//!   projection's checkpoint reaches the last position of the store's events
//!   in each partition and the head stands still: the read side is
//!   eventually consistent, so comparing earlier would find differences that
//!   are only lag.
//! - [`check_events`] checks the events read in position order: no event id
//!   twice; per stream, versions 1..n, each one more than the highest before
//!   it in position order.
//! - [`fold`] rebuilds projections from exactly those events into a fresh
//!   read store, [`documents`] reads documents of a read store, and
//!   [`differences`] names every document where two such sets differ.
//! - [`compare_topic`] compares what a broker's topic carries with the
//!   store's events. Delivery is at-least-once, so a repeated event is
//!   allowed and only counted.

mod documents;
mod events;
mod fold;
mod settle;
mod topic;

pub use documents::{differences, documents, Documents};
pub use events::{check_events, EventFindings, EventViolation};
pub use fold::{fold, Fold, FoldError};
pub use settle::{read_events, settle, SettleError, Settled};
pub use topic::{compare_topic, TopicFindings, TopicMessage};

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use async_trait::async_trait;
    use parallax_core::{
        DocKey, EventLog, EventRecord, Projection, ProjectionError, ReadStore, View, ViewSpec, ViewTx,
    };
    use parallax_sqlite::SqliteReadStore;
    use serde_json::json;

    use super::events::tests::event;
    use super::fold::Recorded;
    use super::*;
    use crate::Projector;

    const TALLIES: View<serde_json::Value> = View::owned("tallies");

    /// Counts each stream's events.
    struct Tally;

    #[async_trait]
    impl Projection for Tally {
        fn name(&self) -> &'static str {
            "tally"
        }

        fn views(&self) -> Vec<ViewSpec> {
            vec![TALLIES.spec()]
        }

        async fn apply(&self, tx: &mut ViewTx<'_>, event: &EventRecord) -> Result<(), ProjectionError> {
            let key = DocKey::partition(&event.stream_id);
            let count = tx.get(&TALLIES, &key).await?.and_then(|doc| doc["count"].as_u64()).unwrap_or(0);
            tx.put(&TALLIES, key, &json!({ "count": count + 1 }));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_caught_up_read_store_settles_and_equals_the_fold() {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let open = |name: &str| -> Arc<dyn ReadStore> {
            Arc::new(SqliteReadStore::open(&folder.path().join(name)).expect("open a SQLite read store"))
        };
        let events = Arc::new(vec![event(1, "a", 1), event(2, "b", 1), event(3, "a", 2)]);
        let log: Arc<dyn EventLog> = Arc::new(Recorded(Arc::clone(&events)));
        let projections: Vec<Arc<dyn Projection>> = vec![Arc::new(Tally)];
        let read = open("read.db");

        let mut seen = Vec::new();
        let settled = settle(log.as_ref(), read.as_ref(), &projections, &mut seen, 1, Instant::now())
            .await
            .expect("settle");
        assert_eq!((settled.head, seen.len(), settled.behind.len()), (3, 3, 1), "{settled:?}");

        Projector::new(Arc::clone(&projections[0]), Arc::clone(&log), Arc::clone(&read))
            .catch_up()
            .await
            .expect("project");
        let deadline = Instant::now() + Duration::from_secs(10);
        let settled =
            settle(log.as_ref(), read.as_ref(), &projections, &mut seen, 1, deadline).await.expect("settle");
        assert_eq!(settled, Settled { head: 3, ..Settled::default() });

        let fold = fold(&projections, events, open("fold.db")).await.expect("fold");
        let tallies = |stream: &str| ("tallies".to_owned(), stream.to_owned());
        assert_eq!(fold.partitions, BTreeSet::from([tallies("a"), tallies("b")]));
        let key = ("tallies".to_owned(), "a".to_owned(), String::new());
        assert_eq!(fold.documents.get(&key), Some(&json!({ "count": 2 })));
        let actual = documents(read.as_ref(), &fold.partitions).await.expect("read the views");
        assert_eq!(differences(&fold.documents, &actual), Vec::<String>::new());
        assert_eq!(check_events(&seen).violations, []);
    }
}
