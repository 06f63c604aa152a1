//! ① Aggregates: pure, synchronous decisions over a stream of events.

use serde::{de::DeserializeOwned, Serialize};

use crate::codec::DomainEvent;

/// A consistency boundary: one event stream, one decision at a time.
///
/// `handle` decides which events a command produces, from the current state
/// alone; `apply` folds one event into the state. Both are pure: whatever a
/// decision needs from outside (a price, a product's existence) is looked up
/// by the caller and passed in inside the command.
///
/// The state is `Serialize` so it can be snapshotted; a new aggregate is
/// `Default` and has version 0.
pub trait Aggregate: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Persisted name of the stream category: stream ids are `"{STREAM_TYPE}-{id}"`.
    const STREAM_TYPE: &'static str;
    /// Schema version of the snapshotted state; a snapshot of another version
    /// is ignored and the state is rebuilt from events.
    const SNAPSHOT_VERSION: u32 = 1;

    /// What the aggregate can be asked to do.
    type Command: Send + Sync;
    /// What it records when it agrees.
    type Event: DomainEvent;
    /// Why it refuses.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides: the events this command produces, or why it is refused.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state. Must not fail: events are facts.
    fn apply(&mut self, event: &Self::Event);

    /// The stream id of the aggregate with this id, in the default tenant.
    fn stream_id(id: &str) -> String {
        Self::stream_id_in(&crate::Tenant::DEFAULT, id)
    }

    /// The stream id of the aggregate with this id in `tenant`.
    fn stream_id_in(tenant: &crate::Tenant, id: &str) -> String {
        crate::event::StreamId::new(tenant, Self::STREAM_TYPE, id).to_string()
    }
}
